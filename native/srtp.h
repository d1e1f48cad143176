/* What native/srtp.c offers: its JS functions (srtp_init, called by addon.c), and for the
 * forwarding plane (native/forward.c) its SRTP contexts and RTP transforms, so the plane
 * encrypts and decrypts exactly as the JS-facing functions do. srtp.c depends on nothing else
 * of the addon's. */
#ifndef NKMEDIA_SRTP_H
#define NKMEDIA_SRTP_H
#include <node_api.h>
#include <stddef.h>
#include <stdint.h>

typedef struct srtp_ctx_s srtp_ctx;

/* The context inside a createContext() external, or NULL if `v` is not one. */
srtp_ctx *srtp_ctx_from_value(napi_env env, napi_value v);
size_t srtp_tag_len(const srtp_ctx *c);
/* Header length (CSRCs and extension included), 0 if it does not fit in `len`. */
size_t srtp_rtp_header_len(const uint8_t *p, size_t len);
/* `out` holds hlen + plen + tag; returns the bytes written or -1. */
long srtp_rtp_protect(srtp_ctx *c, const uint8_t *hdr, size_t hlen, const uint8_t *payload,
                      size_t plen, uint32_t roc, uint8_t *out);
/* `out` holds len - tag; returns the plain length or -1 (malformed or not authentic). */
long srtp_rtp_unprotect(srtp_ctx *c, const uint8_t *p, size_t len, uint32_t roc, uint8_t *out);

/* Encrypts (E = 1) with a 31-bit SRTCP index; `out` holds len + 4 + tag. Returns its length or -1. */
long srtp_rtcp_protect(srtp_ctx *c, const uint8_t *p, size_t len, uint32_t index, uint8_t *out);
/* `out` holds len; returns the plain RTCP length or -1 (malformed or not authentic). */
long srtp_rtcp_unprotect(srtp_ctx *c, const uint8_t *p, size_t len, uint8_t *out);

/* Adds the SRTP functions and `openssl` to the addon's exports; NULL on failure. */
napi_value srtp_init(napi_env env, napi_value exports);
#endif
