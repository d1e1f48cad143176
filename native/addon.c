/*
 * nkmedia_native: the addon's entry point. It registers SRTP (srtp.c, everywhere) and, where it
 * is built (Linux: binding.gyp defines NKMEDIA_FORWARD), the forwarding plane (forward.c), so
 * the dependency runs one way: addon.c -> forward.c -> srtp.c. Without the plane the JS side
 * finds no plane* functions and reports it unavailable (forwarding-plane.ts).
 */
#include <node_api.h>

#include "rtp.h"
#include "srtp.h"
#ifdef NKMEDIA_FORWARD
#include "forward.h"
#endif

/* rtcpMuxRange: [first, last] RTCP packet types on a muxed port (rtp.h), for the test that
 * keeps the TS side's range the same. */
static int export_rtcp_range(napi_env env, napi_value exports) {
  napi_value arr, first, last;
  if (napi_create_array_with_length(env, 2, &arr) != napi_ok || napi_create_uint32(env, RTCP_MUX_FIRST, &first) != napi_ok ||
      napi_create_uint32(env, RTCP_MUX_LAST, &last) != napi_ok || napi_set_element(env, arr, 0, first) != napi_ok ||
      napi_set_element(env, arr, 1, last) != napi_ok)
    return 0;
  return napi_set_named_property(env, exports, "rtcpMuxRange", arr) == napi_ok;
}

static napi_value init(napi_env env, napi_value exports) {
  if (!srtp_init(env, exports)) return NULL;
#ifdef NKMEDIA_FORWARD
  if (!forward_init(env, exports)) return NULL;
#endif
  if (!export_rtcp_range(env, exports)) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
