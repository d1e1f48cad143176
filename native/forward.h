/* The forwarding plane (native/forward.c, Linux only: epoll, recvmmsg, sendmmsg), registered by
 * addon.c when it is built. It uses srtp.h; nothing else uses it. */
#ifndef NKMEDIA_FORWARD_H
#define NKMEDIA_FORWARD_H
#include <node_api.h>

/* Adds the plane's functions (plane*) to the addon's exports; NULL on failure. */
napi_value forward_init(napi_env env, napi_value exports);
#endif
