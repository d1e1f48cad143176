# Builds the optional native SRTP addon (native/srtp.c). No OpenSSL library is linked: its
# symbols resolve at load time from the node binary, which statically contains (and exports) the
# OpenSSL whose headers node-gyp puts on the include path (<nodedir>/include/node/openssl).
{
  "targets": [
    {
      "target_name": "nkmedia_native",
      "sources": ["native/srtp.c"],
      "cflags": ["-std=c11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "xcode_settings": { "OTHER_CFLAGS": ["-std=c11", "-O2"] }
    }
  ]
}
