# Builds the optional native addon: SRTP (native/srtp.c) and the forwarding plane
# (native/forward.c). No OpenSSL library is linked: its symbols resolve at load time from the node binary, which statically contains (and exports) the
# OpenSSL whose headers node-gyp puts on the include path (<nodedir>/include/node/openssl).
{
  "targets": [
    {
      "target_name": "nkmedia_native",
      "sources": ["native/srtp.c", "native/forward.c"],
      "cflags": ["-std=c11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "xcode_settings": { "OTHER_CFLAGS": ["-std=c11", "-O2"] }
    }
  ]
}
