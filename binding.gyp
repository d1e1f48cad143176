# Builds the optional native addon: SRTP (native/srtp.c) everywhere, and the forwarding plane
# (native/forward.c: epoll, recvmmsg, sendmmsg) on Linux only; native/addon.c registers what
# was built. No OpenSSL library is linked: its symbols resolve at load time from the node binary,
# which statically contains (and exports) the OpenSSL whose headers node-gyp puts on the include
# path (<nodedir>/include/node/openssl).
{
  "targets": [
    {
      "target_name": "nkmedia_native",
      "sources": ["native/addon.c", "native/srtp.c"],
      "cflags": ["-std=c11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "xcode_settings": { "OTHER_CFLAGS": ["-std=c11", "-O2"] },
      "conditions": [
        ["OS==\"linux\"", {
          "sources": ["native/forward.c"],
          "defines": ["NKMEDIA_FORWARD=1"]
        }]
      ]
    }
  ]
}
