/*
 * nkmedia_native: SRTP/SRTCP packet protection (RFC 3711 AES-CM + HMAC-SHA1-80, RFC 7714
 * AEAD_AES_128_GCM) with already-derived session keys, byte-for-byte compatible with werift
 * 0.25.2's CipherAesCtr / CipherAesGcm.
 *
 * Why native: Node's public crypto API builds a new cipher (and HMAC) object per packet, which
 * costs ~6-7 us per 1000-byte packet. Here each context keeps its EVP_CIPHER_CTX with the key
 * schedule already expanded and only swaps the IV per packet, and HMAC-SHA1 starts from
 * precomputed inner/outer SHA-1 states, so the per-packet cost is the actual crypto plus one
 * N-API call (and, for the allocating variants, one buffer allocation).
 *
 * Linking: no OpenSSL library is linked; the EVP/SHA symbols resolve against the OpenSSL that is
 * statically built into the node binary (and exported by it), so the addon always uses exactly
 * the OpenSSL Node uses, with its CPU-specific assembly (AES-NI, SHA-NI/AVX2).
 *
 * Error convention: malformed arguments or plain packets passed to protect* are caller bugs and
 * throw; packets coming off the network that fail authentication or are too short/malformed make
 * unprotect* return null (cheaper than constructing an exception per bad packet, and it lets the
 * JS side throw werift's own SrtpAuthenticationError).
 *
 * Threading: a context is used from the JS thread that created it only (no locking).
 */
/* The low-level SHA1_* functions are deprecated in OpenSSL 3 but still exported, and they are the
 * cheapest way to resume HMAC from precomputed ipad/opad states (a struct copy, no provider
 * dispatch). */
#define OPENSSL_SUPPRESS_DEPRECATED 1

#include <node_api.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "srtp.h"

#define PROFILE_AES128_CM_HMAC_SHA1_80 1
#define PROFILE_AEAD_AES_128_GCM 7

#define CM_TAG_LEN 10
#define GCM_TAG_LEN 16
#define SRTCP_INDEX_LEN 4
#define RTP_MIN_HEADER 12
#define RTCP_MIN_HEADER 8

struct srtp_ctx_s {
  int profile;
  size_t tag_len;
  uint8_t salt[14];
  /* AES-CM: counter mode is its own inverse, so one context serves both directions.
   * GCM: separate encrypt and decrypt contexts (created eagerly; a context is cheap). */
  EVP_CIPHER_CTX *enc;
  EVP_CIPHER_CTX *dec;
  /* HMAC-SHA1 states after absorbing key^ipad and key^opad (AES-CM only). */
  SHA_CTX hmac_inner;
  SHA_CTX hmac_outer;
};

/* ---------- helpers ---------- */

static inline void put_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}
static inline uint32_t get_be32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint16_t get_be16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }

static napi_value throw_error(napi_env env, const char *msg) {
  napi_throw_error(env, NULL, msg);
  return NULL;
}
static napi_value null_value(napi_env env) {
  napi_value v;
  napi_get_null(env, &v);
  return v;
}

/* Size of the RTP header including CSRCs and the header extension (RFC 3550 5.3.1: the
 * extension length field counts 32-bit words after the 4-byte extension header). Returns 0 when
 * the header does not fit in `len` bytes. */
static size_t rtp_header_len(const uint8_t *p, size_t len) {
  if (len < RTP_MIN_HEADER) return 0;
  size_t off = RTP_MIN_HEADER + 4u * (p[0] & 0x0f);
  if (p[0] & 0x10) {
    if (off + 4 > len) return 0;
    off += 4 + 4u * get_be16(p + off + 2);
  }
  return off > len ? 0 : off;
}

/* HMAC-SHA1 over up to three pieces, truncated to 10 bytes. */
static void hmac_sha1_80(const srtp_ctx *c, const uint8_t *a, size_t alen, const uint8_t *b,
                         size_t blen, const uint8_t *d, size_t dlen, uint8_t out[CM_TAG_LEN]) {
  uint8_t inner[SHA_DIGEST_LENGTH], full[SHA_DIGEST_LENGTH];
  SHA_CTX s = c->hmac_inner;
  SHA1_Update(&s, a, alen);
  if (blen) SHA1_Update(&s, b, blen);
  if (dlen) SHA1_Update(&s, d, dlen);
  SHA1_Final(inner, &s);
  s = c->hmac_outer;
  SHA1_Update(&s, inner, sizeof inner);
  SHA1_Final(full, &s);
  memcpy(out, full, CM_TAG_LEN);
}

/* RFC 3711 4.1.1 counter: (salt << 16) XOR (ssrc << 64) XOR (index << 16); werift writes the
 * index as roc (bytes 8..11) and seq (bytes 12..13). */
static void cm_iv(const srtp_ctx *c, uint32_t ssrc, uint32_t roc, uint16_t seq, uint8_t iv[16]) {
  memset(iv, 0, 16);
  put_be32(iv + 4, ssrc);
  put_be32(iv + 8, roc);
  iv[12] = (uint8_t)(seq >> 8);
  iv[13] = (uint8_t)seq;
  for (int i = 0; i < 14; i++) iv[i] ^= c->salt[i];
}

/* RFC 7714 8.1 (RTP): 00 00 || SSRC || ROC || SEQ, XOR salt. */
static void gcm_rtp_iv(const srtp_ctx *c, uint32_t ssrc, uint32_t roc, uint16_t seq,
                       uint8_t iv[12]) {
  memset(iv, 0, 12);
  put_be32(iv + 2, ssrc);
  put_be32(iv + 6, roc);
  iv[10] = (uint8_t)(seq >> 8);
  iv[11] = (uint8_t)seq;
  for (int i = 0; i < 12; i++) iv[i] ^= c->salt[i];
}

/* RFC 7714 9.1 (RTCP): 00 00 || SSRC || 00 00 || 0 || SRTCP index (31 bits), XOR salt. */
static void gcm_rtcp_iv(const srtp_ctx *c, uint32_t ssrc, uint32_t index, uint8_t iv[12]) {
  memset(iv, 0, 12);
  put_be32(iv + 2, ssrc);
  put_be32(iv + 8, index & 0x7fffffffu);
  for (int i = 0; i < 12; i++) iv[i] ^= c->salt[i];
}

/* AES-128-CTR from a fresh IV; the key schedule stays in the context. */
static int cm_crypt(srtp_ctx *c, const uint8_t iv[16], const uint8_t *in, size_t len,
                    uint8_t *out) {
  int outl = 0;
  if (EVP_EncryptInit_ex(c->enc, NULL, NULL, NULL, iv) != 1) return 0;
  if (len == 0) return 1;
  if (EVP_EncryptUpdate(c->enc, out, &outl, in, (int)len) != 1) return 0;
  return (size_t)outl == len;
}

/* AES-128-GCM encrypt: aad may be two pieces (RTCP AAD = header || E+index). */
static int gcm_seal(srtp_ctx *c, const uint8_t iv[12], const uint8_t *aad1, size_t aad1_len,
                    const uint8_t *aad2, size_t aad2_len, const uint8_t *in, size_t len,
                    uint8_t *out, uint8_t tag[GCM_TAG_LEN]) {
  int outl = 0;
  if (EVP_EncryptInit_ex(c->enc, NULL, NULL, NULL, iv) != 1) return 0;
  if (aad1_len && EVP_EncryptUpdate(c->enc, NULL, &outl, aad1, (int)aad1_len) != 1) return 0;
  if (aad2_len && EVP_EncryptUpdate(c->enc, NULL, &outl, aad2, (int)aad2_len) != 1) return 0;
  if (len && EVP_EncryptUpdate(c->enc, out, &outl, in, (int)len) != 1) return 0;
  if (EVP_EncryptFinal_ex(c->enc, out + len, &outl) != 1) return 0;
  return EVP_CIPHER_CTX_ctrl(c->enc, EVP_CTRL_AEAD_GET_TAG, GCM_TAG_LEN, tag) == 1;
}

/* AES-128-GCM decrypt + verify; returns 0 on authentication failure. */
static int gcm_open(srtp_ctx *c, const uint8_t iv[12], const uint8_t *aad1, size_t aad1_len,
                    const uint8_t *aad2, size_t aad2_len, const uint8_t *in, size_t len,
                    const uint8_t *tag, uint8_t *out) {
  int outl = 0;
  uint8_t tagcopy[GCM_TAG_LEN];
  memcpy(tagcopy, tag, GCM_TAG_LEN); /* the ctrl takes a non-const pointer */
  if (EVP_DecryptInit_ex(c->dec, NULL, NULL, NULL, iv) != 1) return 0;
  if (aad1_len && EVP_DecryptUpdate(c->dec, NULL, &outl, aad1, (int)aad1_len) != 1) return 0;
  if (aad2_len && EVP_DecryptUpdate(c->dec, NULL, &outl, aad2, (int)aad2_len) != 1) return 0;
  if (len && EVP_DecryptUpdate(c->dec, out, &outl, in, (int)len) != 1) return 0;
  if (EVP_CIPHER_CTX_ctrl(c->dec, EVP_CTRL_AEAD_SET_TAG, GCM_TAG_LEN, tagcopy) != 1) return 0;
  return EVP_DecryptFinal_ex(c->dec, out + len, &outl) == 1;
}

/* ---------- argument plumbing ---------- */

static void ctx_free(srtp_ctx *c) {
  if (!c) return;
  if (c->enc) EVP_CIPHER_CTX_free(c->enc);
  if (c->dec) EVP_CIPHER_CTX_free(c->dec);
  OPENSSL_cleanse(c, sizeof *c);
  free(c);
}
static void ctx_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  ctx_free((srtp_ctx *)data);
}

/* A tag that marks externals created by this addon, so a foreign external is rejected. */
static const napi_type_tag CTX_TAG = {0x6e6b6d6564696173ULL, 0x7274705f63747831ULL};

static srtp_ctx *get_ctx(napi_env env, napi_value v) {
  void *data = NULL;
  bool ok = false;
  napi_valuetype t;
  /* Checked first: the tag check converts its argument to an object, which throws for null
   * (planeAttach's optional SRTCP context). */
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external) return NULL;
  if (napi_check_object_type_tag(env, v, &CTX_TAG, &ok) != napi_ok || !ok) return NULL;
  if (napi_get_value_external(env, v, &data) != napi_ok) return NULL;
  return (srtp_ctx *)data;
}

static int get_buf(napi_env env, napi_value v, const uint8_t **p, size_t *len) {
  void *data = NULL;
  if (napi_get_buffer_info(env, v, &data, len) != napi_ok) {
    /* Accept any Uint8Array, not only Buffer. */
    napi_typedarray_type t;
    napi_value ab;
    size_t off;
    if (napi_get_typedarray_info(env, v, &t, len, &data, &ab, &off) != napi_ok ||
        t != napi_uint8_array)
      return 0;
  }
  /* OpenSSL's update calls take int lengths; no RTP/RTCP packet comes anywhere near this. */
  if (*len > 0x3fffffff) return 0;
  *p = data ? (const uint8_t *)data : (const uint8_t *)"";
  return 1;
}

static int get_u32(napi_env env, napi_value v, uint32_t *out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok) return 0;
  if (!(d >= 0 && d <= 4294967295.0) || d != (double)(uint32_t)d) return 0;
  *out = (uint32_t)d;
  return 1;
}

/* createContext(profile, sessionKey, sessionSalt, authKey?) */
static napi_value create_context(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 3) return throw_error(env, "createContext(profile, sessionKey, sessionSalt, authKey?)");
  uint32_t profile;
  const uint8_t *key, *salt, *auth = NULL;
  size_t key_len, salt_len, auth_len = 0;
  if (!get_u32(env, argv[0], &profile)) return throw_error(env, "profile must be a number");
  if (!get_buf(env, argv[1], &key, &key_len) || key_len != 16)
    return throw_error(env, "sessionKey must be a 16-byte Buffer");
  if (!get_buf(env, argv[2], &salt, &salt_len)) return throw_error(env, "sessionSalt must be a Buffer");

  srtp_ctx *c = calloc(1, sizeof *c);
  if (!c) return throw_error(env, "out of memory");
  c->profile = (int)profile;
  if (profile == PROFILE_AES128_CM_HMAC_SHA1_80) {
    if (salt_len < 14) { ctx_free(c); return throw_error(env, "AES-CM sessionSalt must be 14 bytes"); }
    if (argc < 4 || !get_buf(env, argv[3], &auth, &auth_len) || auth_len == 0) {
      ctx_free(c);
      return throw_error(env, "AES-CM needs the session auth key (20 bytes)");
    }
    c->tag_len = CM_TAG_LEN;
    memcpy(c->salt, salt, 14);
    c->enc = EVP_CIPHER_CTX_new();
    if (!c->enc || EVP_EncryptInit_ex(c->enc, EVP_aes_128_ctr(), NULL, key, NULL) != 1) {
      ctx_free(c);
      return throw_error(env, "EVP aes-128-ctr init failed");
    }
    /* HMAC key block (RFC 2104): keys longer than the block are hashed first. */
    uint8_t k[SHA_CBLOCK], pad[SHA_CBLOCK];
    memset(k, 0, sizeof k);
    if (auth_len > SHA_CBLOCK) SHA1(auth, auth_len, k);
    else memcpy(k, auth, auth_len);
    for (int i = 0; i < SHA_CBLOCK; i++) pad[i] = k[i] ^ 0x36;
    SHA1_Init(&c->hmac_inner);
    SHA1_Update(&c->hmac_inner, pad, SHA_CBLOCK);
    for (int i = 0; i < SHA_CBLOCK; i++) pad[i] = k[i] ^ 0x5c;
    SHA1_Init(&c->hmac_outer);
    SHA1_Update(&c->hmac_outer, pad, SHA_CBLOCK);
    OPENSSL_cleanse(k, sizeof k);
    OPENSSL_cleanse(pad, sizeof pad);
  } else if (profile == PROFILE_AEAD_AES_128_GCM) {
    /* werift keeps a 14-byte session salt for GCM too; RFC 7714 uses its first 12 bytes. */
    if (salt_len < 12) { ctx_free(c); return throw_error(env, "GCM sessionSalt must be 12 bytes"); }
    c->tag_len = GCM_TAG_LEN;
    memcpy(c->salt, salt, 12);
    c->enc = EVP_CIPHER_CTX_new();
    c->dec = EVP_CIPHER_CTX_new();
    if (!c->enc || !c->dec ||
        EVP_EncryptInit_ex(c->enc, EVP_aes_128_gcm(), NULL, key, NULL) != 1 ||
        EVP_DecryptInit_ex(c->dec, EVP_aes_128_gcm(), NULL, key, NULL) != 1) {
      ctx_free(c);
      return throw_error(env, "EVP aes-128-gcm init failed");
    }
  } else {
    ctx_free(c);
    return throw_error(env, "unsupported SRTP profile (1 = AES128_CM_HMAC_SHA1_80, 7 = AEAD_AES_128_GCM)");
  }

  napi_value ext;
  if (napi_create_external(env, c, ctx_finalize, NULL, &ext) != napi_ok) {
    ctx_free(c);
    return NULL;
  }
  napi_type_tag_object(env, ext, &CTX_TAG);
  return ext;
}

/* ---------- packet transforms (no N-API; `out` must not overlap the input) ---------- */

/* header || E(payload) || tag. Header and payload may live in separate buffers (werift
 * serialises the header on its own). `out` holds hlen + plen + tag_len. Returns the bytes
 * written, or -1 if OpenSSL fails. */
static long rtp_protect(srtp_ctx *c, const uint8_t *hdr, size_t hlen, const uint8_t *payload,
                        size_t plen, uint32_t roc, uint8_t *out) {
  uint32_t ssrc = get_be32(hdr + 8);
  uint16_t seq = get_be16(hdr + 2);
  memcpy(out, hdr, hlen);
  if (c->profile == PROFILE_AES128_CM_HMAC_SHA1_80) {
    uint8_t iv[16], rocb[4];
    cm_iv(c, ssrc, roc, seq, iv);
    if (!cm_crypt(c, iv, payload, plen, out + hlen)) return -1;
    put_be32(rocb, roc);
    /* RFC 3711 4.2: tag over the authenticated portion (header + encrypted payload) || ROC */
    hmac_sha1_80(c, out, hlen + plen, rocb, 4, NULL, 0, out + hlen + plen);
  } else {
    uint8_t iv[12];
    gcm_rtp_iv(c, ssrc, roc, seq, iv);
    if (!gcm_seal(c, iv, hdr, hlen, NULL, 0, payload, plen, out + hlen, out + hlen + plen))
      return -1;
  }
  return (long)(hlen + plen + c->tag_len);
}

/* `out` holds len - tag_len. Returns the plain packet's length (header + payload, padding
 * included, as werift returns it), or -1 when the packet is malformed or does not authenticate. */
static long rtp_unprotect(srtp_ctx *c, const uint8_t *p, size_t len, uint32_t roc, uint8_t *out) {
  if (len < RTP_MIN_HEADER + c->tag_len) return -1;
  size_t body = len - c->tag_len; /* header + encrypted payload */
  size_t hlen = rtp_header_len(p, body);
  if (hlen == 0) return -1;
  size_t plen = body - hlen;
  uint32_t ssrc = get_be32(p + 8);
  uint16_t seq = get_be16(p + 2);
  if (c->profile == PROFILE_AES128_CM_HMAC_SHA1_80) {
    uint8_t tag[CM_TAG_LEN], rocb[4], iv[16];
    put_be32(rocb, roc);
    hmac_sha1_80(c, p, body, rocb, 4, NULL, 0, tag);
    if (CRYPTO_memcmp(tag, p + body, CM_TAG_LEN) != 0) return -1;
    memcpy(out, p, hlen);
    cm_iv(c, ssrc, roc, seq, iv);
    if (!cm_crypt(c, iv, p + hlen, plen, out + hlen)) return -1;
  } else {
    uint8_t iv[12];
    memcpy(out, p, hlen);
    gcm_rtp_iv(c, ssrc, roc, seq, iv);
    if (!gcm_open(c, iv, p, hlen, NULL, 0, p + hlen, plen, p + body, out + hlen)) {
      /* Do not leave unauthenticated plaintext in a caller-supplied buffer. */
      OPENSSL_cleanse(out, body);
      return -1;
    }
  }
  /* Same check as werift's finalizeSrtpRtpHeader: with the P bit set, the (decrypted) last byte
   * is a padding count that must fit in the payload; otherwise the packet is rejected. */
  if (p[0] & 0x20) {
    if (plen == 0) return -1;
    uint8_t pad = out[body - 1];
    if (pad == 0 || pad > plen) return -1;
  }
  return (long)body;
}

/* Always encrypts (E = 1). `out` holds len + 4 + tag_len. */
static long rtcp_protect(srtp_ctx *c, const uint8_t *p, size_t len, uint32_t index, uint8_t *out) {
  uint32_t ssrc = get_be32(p + 4);
  size_t plen = len - RTCP_MIN_HEADER;
  uint8_t eidx[4];
  put_be32(eidx, index | 0x80000000u);
  memcpy(out, p, RTCP_MIN_HEADER);
  if (c->profile == PROFILE_AES128_CM_HMAC_SHA1_80) {
    /* RFC 3711 3.4: header || E(payload) || E+index || tag(header..index) */
    uint8_t iv[16];
    cm_iv(c, ssrc, index >> 16, (uint16_t)(index & 0xffff), iv);
    if (!cm_crypt(c, iv, p + RTCP_MIN_HEADER, plen, out + RTCP_MIN_HEADER)) return -1;
    memcpy(out + len, eidx, 4);
    hmac_sha1_80(c, out, len + 4, NULL, 0, NULL, 0, out + len + 4);
  } else {
    /* RFC 7714 9.3/17: header || E(payload) || tag || E+index, AAD = header || E+index */
    uint8_t iv[12];
    gcm_rtcp_iv(c, ssrc, index, iv);
    if (!gcm_seal(c, iv, p, RTCP_MIN_HEADER, eidx, 4, p + RTCP_MIN_HEADER, plen,
                  out + RTCP_MIN_HEADER, out + len))
      return -1;
    memcpy(out + len + GCM_TAG_LEN, eidx, 4);
  }
  return (long)(len + SRTCP_INDEX_LEN + c->tag_len);
}

/* Handles E = 0 (authenticated only) too, as werift does. `out` holds len - 4 - tag_len. */
static long rtcp_unprotect(srtp_ctx *c, const uint8_t *p, size_t len, uint8_t *out) {
  if (len < RTCP_MIN_HEADER + c->tag_len + SRTCP_INDEX_LEN) return -1;
  uint32_t ssrc = get_be32(p + 4);
  if (c->profile == PROFILE_AES128_CM_HMAC_SHA1_80) {
    size_t idx_off = len - CM_TAG_LEN - SRTCP_INDEX_LEN;
    uint8_t tag[CM_TAG_LEN];
    hmac_sha1_80(c, p, len - CM_TAG_LEN, NULL, 0, NULL, 0, tag);
    if (CRYPTO_memcmp(tag, p + len - CM_TAG_LEN, CM_TAG_LEN) != 0) return -1;
    uint32_t eidx = get_be32(p + idx_off);
    if (!(eidx & 0x80000000u)) {
      memcpy(out, p, idx_off);
      return (long)idx_off;
    }
    uint32_t index = eidx & 0x7fffffffu;
    uint8_t iv[16];
    memcpy(out, p, RTCP_MIN_HEADER);
    cm_iv(c, ssrc, index >> 16, (uint16_t)(index & 0xffff), iv);
    if (!cm_crypt(c, iv, p + RTCP_MIN_HEADER, idx_off - RTCP_MIN_HEADER, out + RTCP_MIN_HEADER))
      return -1;
    return (long)idx_off;
  }
  size_t idx_off = len - SRTCP_INDEX_LEN;
  size_t tag_off = idx_off - GCM_TAG_LEN;
  uint32_t eidx = get_be32(p + idx_off);
  uint8_t iv[12];
  gcm_rtcp_iv(c, ssrc, eidx, iv);
  if (eidx & 0x80000000u) {
    memcpy(out, p, RTCP_MIN_HEADER);
    if (!gcm_open(c, iv, p, RTCP_MIN_HEADER, p + idx_off, 4, p + RTCP_MIN_HEADER,
                  tag_off - RTCP_MIN_HEADER, p + tag_off, out + RTCP_MIN_HEADER)) {
      OPENSSL_cleanse(out, tag_off);
      return -1;
    }
  } else {
    /* Unencrypted SRTCP: the whole packet is AAD, the GCM plaintext is empty. */
    if (!gcm_open(c, iv, p, tag_off, p + idx_off, 4, NULL, 0, p + tag_off, out)) return -1;
    memcpy(out, p, tag_off);
  }
  return (long)tag_off;
}

/* ---------- N-API wrappers ----------
 * Each transform comes in two flavours: `fn(...)` allocates and returns a new Buffer, and
 * `fnInto(..., out)` writes into a caller-supplied buffer and returns the byte count. The second
 * exists because a fresh N-API buffer costs ~0.7 us (its own malloc'd backing store tracked by
 * the GC) — more than the crypto itself — whereas JS can hand in a slice of Node's pooled
 * Buffer.allocUnsafe memory for ~0.05 us. */

/* Resolves the output: a new buffer of `need` bytes, or the caller's (argument `outv`), which
 * must be large enough and must not overlap the input. */
static int overlaps(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen) {
  return a && b && alen && blen && a < b + blen && b < a + alen;
}
static uint8_t *output(napi_env env, napi_value outv, size_t need, napi_value *result,
                       const uint8_t *in1, size_t in1_len, const uint8_t *in2, size_t in2_len) {
  uint8_t *out = NULL;
  if (outv == NULL) {
    if (napi_create_buffer(env, need ? need : 1, (void **)&out, result) != napi_ok) return NULL;
    return out;
  }
  const uint8_t *o;
  size_t olen;
  if (!get_buf(env, outv, &o, &olen)) { throw_error(env, "out must be a Buffer"); return NULL; }
  if (olen < need) { napi_throw_range_error(env, NULL, "out buffer too small"); return NULL; }
  if (overlaps(o, need, in1, in1_len) || overlaps(o, need, in2, in2_len)) {
    napi_throw_range_error(env, NULL, "out must not overlap the input");
    return NULL;
  }
  return (uint8_t *)o;
}

/* The return value for `n` bytes written (n < 0: failure → null / -1). */
static napi_value finish(napi_env env, napi_value outv, napi_value result, long n, size_t need) {
  napi_value v;
  if (outv != NULL) {
    napi_create_int32(env, (int32_t)n, &v);
    return v;
  }
  if (n < 0) return null_value(env);
  if ((size_t)n == need) return result;
  /* Only reached for zero-length outputs (the allocation was rounded up to 1 byte). */
  napi_create_buffer(env, 0, NULL, &v);
  return v;
}

static napi_value do_protect_rtp(napi_env env, napi_callback_info info, int into) {
  size_t argc = 4;
  napi_value argv[4];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < (size_t)(3 + into)) return throw_error(env, "missing arguments");
  srtp_ctx *c = get_ctx(env, argv[0]);
  const uint8_t *p;
  size_t len;
  uint32_t roc;
  if (!c) return throw_error(env, "not an SRTP context");
  if (!get_buf(env, argv[1], &p, &len)) return throw_error(env, "packet must be a Buffer");
  if (!get_u32(env, argv[2], &roc)) return throw_error(env, "rolloverCounter must be a uint32");
  size_t hlen = rtp_header_len(p, len);
  if (hlen == 0) return throw_error(env, "malformed RTP packet (header longer than packet)");
  size_t need = len + c->tag_len;
  napi_value result = NULL, outv = into ? argv[3] : NULL;
  uint8_t *out = output(env, outv, need, &result, p, len, NULL, 0);
  if (!out) return NULL;
  long n = rtp_protect(c, p, hlen, p + hlen, len - hlen, roc, out);
  if (n < 0) return throw_error(env, "OpenSSL failed to encrypt");
  return finish(env, outv, result, n, need);
}
/* protectRtp(ctx, plainRtpPacket, rolloverCounter): Buffer */
static napi_value protect_rtp(napi_env env, napi_callback_info info) { return do_protect_rtp(env, info, 0); }
/* protectRtpInto(ctx, plainRtpPacket, rolloverCounter, out): number */
static napi_value protect_rtp_into(napi_env env, napi_callback_info info) { return do_protect_rtp(env, info, 1); }

/* The header buffer is taken as the whole header (werift's serialize() output): no parsing. */
static napi_value do_protect_rtp_parts(napi_env env, napi_callback_info info, int into) {
  size_t argc = 5;
  napi_value argv[5];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < (size_t)(4 + into)) return throw_error(env, "missing arguments");
  srtp_ctx *c = get_ctx(env, argv[0]);
  const uint8_t *h, *p;
  size_t hlen, plen;
  uint32_t roc;
  if (!c) return throw_error(env, "not an SRTP context");
  if (!get_buf(env, argv[1], &h, &hlen) || hlen < RTP_MIN_HEADER)
    return throw_error(env, "header must be a Buffer of at least 12 bytes");
  if (!get_buf(env, argv[2], &p, &plen)) return throw_error(env, "payload must be a Buffer");
  if (!get_u32(env, argv[3], &roc)) return throw_error(env, "rolloverCounter must be a uint32");
  size_t need = hlen + plen + c->tag_len;
  napi_value result = NULL, outv = into ? argv[4] : NULL;
  uint8_t *out = output(env, outv, need, &result, h, hlen, p, plen);
  if (!out) return NULL;
  long n = rtp_protect(c, h, hlen, p, plen, roc, out);
  if (n < 0) return throw_error(env, "OpenSSL failed to encrypt");
  return finish(env, outv, result, n, need);
}
/* protectRtpParts(ctx, serialisedHeader, payload, rolloverCounter): Buffer */
static napi_value protect_rtp_parts(napi_env env, napi_callback_info info) { return do_protect_rtp_parts(env, info, 0); }
/* protectRtpPartsInto(ctx, serialisedHeader, payload, rolloverCounter, out): number */
static napi_value protect_rtp_parts_into(napi_env env, napi_callback_info info) { return do_protect_rtp_parts(env, info, 1); }

static napi_value do_unprotect_rtp(napi_env env, napi_callback_info info, int into) {
  size_t argc = 4;
  napi_value argv[4];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < (size_t)(3 + into)) return throw_error(env, "missing arguments");
  srtp_ctx *c = get_ctx(env, argv[0]);
  const uint8_t *p;
  size_t len;
  uint32_t roc;
  if (!c) return throw_error(env, "not an SRTP context");
  if (!get_buf(env, argv[1], &p, &len)) return throw_error(env, "packet must be a Buffer");
  if (!get_u32(env, argv[2], &roc)) return throw_error(env, "rolloverCounter must be a uint32");
  napi_value outv = into ? argv[3] : NULL;
  if (len < RTP_MIN_HEADER + c->tag_len) return finish(env, outv, NULL, -1, 0);
  size_t need = len - c->tag_len;
  napi_value result = NULL;
  uint8_t *out = output(env, outv, need, &result, p, len, NULL, 0);
  if (!out) return NULL;
  return finish(env, outv, result, rtp_unprotect(c, p, len, roc, out), need);
}
/* unprotectRtp(ctx, srtpPacket, rolloverCounter): Buffer | null */
static napi_value unprotect_rtp(napi_env env, napi_callback_info info) { return do_unprotect_rtp(env, info, 0); }
/* unprotectRtpInto(ctx, srtpPacket, rolloverCounter, out): number (-1 = rejected) */
static napi_value unprotect_rtp_into(napi_env env, napi_callback_info info) { return do_unprotect_rtp(env, info, 1); }

static napi_value do_protect_rtcp(napi_env env, napi_callback_info info, int into) {
  size_t argc = 4;
  napi_value argv[4];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < (size_t)(3 + into)) return throw_error(env, "missing arguments");
  srtp_ctx *c = get_ctx(env, argv[0]);
  const uint8_t *p;
  size_t len;
  uint32_t index;
  if (!c) return throw_error(env, "not an SRTP context");
  if (!get_buf(env, argv[1], &p, &len)) return throw_error(env, "packet must be a Buffer");
  if (!get_u32(env, argv[2], &index) || index > 0x7fffffffu)
    return throw_error(env, "srtcpIndex must be a 31-bit unsigned integer");
  if (len < RTCP_MIN_HEADER) return throw_error(env, "RTCP packet shorter than 8 bytes");
  size_t need = len + SRTCP_INDEX_LEN + c->tag_len;
  napi_value result = NULL, outv = into ? argv[3] : NULL;
  uint8_t *out = output(env, outv, need, &result, p, len, NULL, 0);
  if (!out) return NULL;
  long n = rtcp_protect(c, p, len, index, out);
  if (n < 0) return throw_error(env, "OpenSSL failed to encrypt");
  return finish(env, outv, result, n, need);
}
/* protectRtcp(ctx, plainRtcp, srtcpIndex): Buffer */
static napi_value protect_rtcp(napi_env env, napi_callback_info info) { return do_protect_rtcp(env, info, 0); }
/* protectRtcpInto(ctx, plainRtcp, srtcpIndex, out): number */
static napi_value protect_rtcp_into(napi_env env, napi_callback_info info) { return do_protect_rtcp(env, info, 1); }

static napi_value do_unprotect_rtcp(napi_env env, napi_callback_info info, int into) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < (size_t)(2 + into)) return throw_error(env, "missing arguments");
  srtp_ctx *c = get_ctx(env, argv[0]);
  const uint8_t *p;
  size_t len;
  if (!c) return throw_error(env, "not an SRTP context");
  if (!get_buf(env, argv[1], &p, &len)) return throw_error(env, "packet must be a Buffer");
  napi_value outv = into ? argv[2] : NULL;
  if (len < RTCP_MIN_HEADER + c->tag_len + SRTCP_INDEX_LEN) return finish(env, outv, NULL, -1, 0);
  size_t need = len - SRTCP_INDEX_LEN - c->tag_len;
  napi_value result = NULL;
  uint8_t *out = output(env, outv, need, &result, p, len, NULL, 0);
  if (!out) return NULL;
  return finish(env, outv, result, rtcp_unprotect(c, p, len, out), need);
}
/* unprotectRtcp(ctx, srtcpPacket): Buffer | null */
static napi_value unprotect_rtcp(napi_env env, napi_callback_info info) { return do_unprotect_rtcp(env, info, 0); }
/* unprotectRtcpInto(ctx, srtcpPacket, out): number (-1 = rejected) */
static napi_value unprotect_rtcp_into(napi_env env, napi_callback_info info) { return do_unprotect_rtcp(env, info, 1); }

/* ---------- entry points for the forwarding plane (forward.c) ---------- */

srtp_ctx *srtp_ctx_from_value(napi_env env, napi_value v) { return get_ctx(env, v); }
size_t srtp_tag_len(const srtp_ctx *c) { return c->tag_len; }
size_t srtp_rtp_header_len(const uint8_t *p, size_t len) { return rtp_header_len(p, len); }
long srtp_rtp_protect(srtp_ctx *c, const uint8_t *hdr, size_t hlen, const uint8_t *payload,
                      size_t plen, uint32_t roc, uint8_t *out) {
  return rtp_protect(c, hdr, hlen, payload, plen, roc, out);
}
long srtp_rtp_unprotect(srtp_ctx *c, const uint8_t *p, size_t len, uint32_t roc, uint8_t *out) {
  return rtp_unprotect(c, p, len, roc, out);
}
long srtp_rtcp_protect(srtp_ctx *c, const uint8_t *p, size_t len, uint32_t index, uint8_t *out) {
  if (len < RTCP_MIN_HEADER) return -1;
  return rtcp_protect(c, p, len, index, out);
}
long srtp_rtcp_unprotect(srtp_ctx *c, const uint8_t *p, size_t len, uint8_t *out) {
  return rtcp_unprotect(c, p, len, out);
}

#define FN(name, fn) {name, NULL, fn, NULL, NULL, NULL, napi_enumerable, NULL}

napi_value srtp_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      FN("createContext", create_context),
      FN("protectRtp", protect_rtp),
      FN("protectRtpInto", protect_rtp_into),
      FN("protectRtpParts", protect_rtp_parts),
      FN("protectRtpPartsInto", protect_rtp_parts_into),
      FN("unprotectRtp", unprotect_rtp),
      FN("unprotectRtpInto", unprotect_rtp_into),
      FN("protectRtcp", protect_rtcp),
      FN("protectRtcpInto", protect_rtcp_into),
      FN("unprotectRtcp", unprotect_rtcp),
      FN("unprotectRtcpInto", unprotect_rtcp_into),
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok)
    return NULL;
  napi_value v;
  if (napi_create_string_utf8(env, OpenSSL_version(OPENSSL_VERSION), NAPI_AUTO_LENGTH, &v) == napi_ok)
    napi_set_named_property(env, exports, "openssl", v);
  return exports;
}
