/*
 * nkmedia_native: the forwarding plane. Moves SRTP between WebRTC endpoints without a trip
 * through JavaScript per packet.
 *
 * Why: through Node's dgram and werift, every forwarded packet costs a libuv receive, a call
 * into JS, werift's ICE/DTLS/SRTP/RTP layers and a dgram send: ~50-60 us of CPU on a 2-core VM
 * even with native crypto. Here the ICE sockets of connected endpoints are read with recvmmsg
 * on the JS thread itself (a uv_poll on one epoll descriptor, so no locking and no second
 * thread), packets of routed SSRCs are decrypted, re-headed (our SSRC, payload type, continuous
 * sequence numbers and timestamps), encrypted and written with sendmmsg, and while media flows
 * the plane wakes up at most once per batch window rather than once per packet.
 *
 * JS keeps the control: it attaches sockets (after the DTLS handshake, with the keys werift
 * negotiated), declares outputs (one per endpoint and media kind) and routes (incoming SSRC ->
 * outputs, decided from the element graph), and gets back, through one callback, every datagram
 * the plane does not forward itself: STUN, DTLS, SRTCP as received, and RTP of unrouted SSRCs
 * decrypted (werift handles those as before). The plane owns the receive side of an attached
 * socket entirely: SRTP rollover counters and RFC 3550 receive statistics for every SSRC (JS
 * copies them into werift's objects), and loss detection for NACKs (reported to JS, which drives
 * werift's NACK sender). Outputs own their stream state too (continuity, rollover counter,
 * retransmission ring, counters), and JS sends through them (planeSend) for media it forwards
 * itself, so the two paths can never disagree about a stream.
 *
 * Re-entrancy: the callback into JS may detach sockets or remove outputs. Pending sends are
 * flushed before each call, and sockets/outputs freed during a drain are only released after it.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "forward.h"
#include "rtp.h"
#include "srtp.h"

#define RECV_BATCH 32
#define RECV_BUF 8192
#define SEND_BATCH 64
#define SEND_BUF (RECV_BUF + 64)
#define MAX_SSRCS 16
#define RING 256
#define MAX_ROUNDS 4       /* recvmmsg rounds per socket per drain, so one socket cannot starve the rest */
#define MAX_LOSS_REPORT 150 /* as werift's NACK handler keeps at most 150 lost packets */

/* Sockets and outputs live in slots that are reused once released. What JS holds (and what
 * routes hold) is a handle: (generation << 16) | slot, the slot's generation changing each time
 * it is taken. A handle kept past its socket's or output's release (a route decided before, a
 * JS object not yet told) then names no live slot and is refused on every use, instead of
 * reaching whatever took the slot next. Generations run 1..0x7fff, so handles are positive
 * int32s (routes come as an Int32Array) and never 0 or -1. */
#define SLOT_BITS 16
#define SLOT_MASK ((1 << SLOT_BITS) - 1)
#define MAX_SLOTS (1 << SLOT_BITS)
#define GEN_LIMIT 0x7fff

/* werift's constants (rtp/src/srtp/context/context.ts). */
#define MAX_ROC_DISORDER 100
#define MAX_SEQUENCE_NUMBER 65535

typedef struct {
  uint32_t roc;
  uint16_t last;
  int processed;
} roc_t;

/* Per incoming SSRC on an attached socket. */
typedef struct {
  int used;
  uint32_t ssrc;
  roc_t roc;
  /* werift's StreamStatistics fields, kept the way werift computes them. */
  double packets, bytes, header_bytes, cycles, jitter_q4, last_arrival;
  int has_base, has_max, has_ts, has_arrival;
  uint16_t base_seq, max_seq;
  uint32_t last_ts;
  uint32_t clock;
  double last_at; /* monotonic ms */
  /* loss detection (video with NACK) */
  int nack, has_est;
  uint16_t est;
  /* route */
  int routed;
  uint8_t pt;
  uint32_t origin, route_clock;
  int32_t *outs; /* output handles */
  int nouts;
  double fwd_packets, fwd_bytes;
  /* for our reception reports: counts at the previous one (fraction lost) */
  double expected_prior, received_prior;
  /* the client's last sender report about this SSRC */
  double sr_count, sr_at;
  uint32_t sr_ntp_hi, sr_ntp_lo, sr_rtp, sr_packets, sr_octets;
} in_t;

typedef struct {
  int used, closing;
  int32_t handle; /* its own (slot and generation) */
  int fd;
  srtp_ctx *ctx;
  napi_ref ctx_ref;
  srtp_ctx *rtcp_ctx; /* optional: SRTCP receiver/sender reports are then read here */
  napi_ref rtcp_ref;
  srtp_ctx *rtcp_out; /* optional: our own SR/RR are then sent from here (send_reports) */
  napi_ref rtcp_out_ref;
  double rtcp_next; /* monotonic ms */
  in_t in[MAX_SSRCS];
} sock_t;

typedef struct {
  int used, closing;
  int32_t handle; /* its own */
  int32_t sock;   /* its socket's handle */
  struct sockaddr_in dest;
  int has_dest;
  srtp_ctx *ctx;
  napi_ref ctx_ref;
  uint32_t ssrc;
  uint8_t pt;
  int keep;
  /* continuity (stream-continuity.ts) */
  int has_key, has_last;
  uint32_t key_origin, key_ssrc, ts_off, last_ts;
  uint16_t seq_off, last_seq;
  double last_sent;
  roc_t roc;
  uint8_t *ring[RING];
  uint16_t ring_len[RING], ring_cap[RING];
  int32_t ring_seq[RING];
  double packets, octets, bytes, send_errors;
  double last_at;
  uint32_t last_ts_out;
  /* our sender reports: SRTCP index (werift's, carried over), CNAME, the last one sent */
  uint32_t srtcp_index;
  uint32_t clock; /* of the last packet sent, for the SR's RTP timestamp */
  char cname[64];
  uint8_t cname_len;
  double sr_sent_count, sr_sent_at;
  uint32_t sr_sent_compact;
  /* the client's last reception report about this stream */
  double rr_count, rr_at;
  uint32_t rr_fraction, rr_highest, rr_jitter, rr_lsr, rr_dlsr;
  int32_t rr_lost;
} out_t;

typedef struct {
  int fd;
  struct sockaddr_in dest;
  uint16_t len;
  uint8_t *data; /* a send slot, or the output's retransmission ring slot */
} pending_t;

static struct {
  int active;
  napi_env env;
  napi_ref cb;
  napi_ref resource;
  napi_async_context actx;
  int epfd;
  uv_poll_t poll;
  uv_timer_t timer;
  uv_timer_t rtcp_timer;
  int polling, timing, closing_handles;
  uint64_t batch_ms;
  int in_drain;
  sock_t **socks;
  uint16_t *sock_gen; /* per slot: the generation of its current (or last) socket */
  int nsocks;
  out_t **outs;
  uint16_t *out_gen;
  int nouts;
  pending_t pend[SEND_BATCH];
  uint8_t pend_buf[SEND_BATCH][SEND_BUF];
  int npend;
  struct mmsghdr rmsg[RECV_BATCH];
  struct iovec riov[RECV_BATCH];
  struct sockaddr_in raddr[RECV_BATCH];
  uint8_t rbuf[RECV_BATCH][RECV_BUF];
  uint8_t plain[RECV_BUF];
  double wakeups, datagrams, forwarded, to_js, auth_failures, send_errors, truncated, reports, reports_sent;
} P;

static inline uint32_t be32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint16_t be16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline void put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

static double mono_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}
static double real_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  /* werift reads Date.now() / 1000: millisecond resolution */
  return floor((double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6) / 1e3;
}

/* JS's ToInt32, for werift's `>>` on numbers. */
static double to_int32(double d) {
  if (!isfinite(d)) return 0;
  double m = fmod(trunc(d), 4294967296.0);
  if (m < 0) m += 4294967296.0;
  return m >= 2147483648.0 ? m - 4294967296.0 : m;
}

/* werift 0.25.2's Context.updateRolloverCount (see native-srtp.ts). */
static void update_roc(roc_t *s, uint16_t seq) {
  if (!s->processed) {
    s->processed = 1;
  } else if (seq == 0) {
    if (s->last > MAX_ROC_DISORDER) s->roc++;
  } else if (s->last < MAX_ROC_DISORDER && seq > MAX_SEQUENCE_NUMBER - MAX_ROC_DISORDER) {
    if (s->roc > 0) s->roc--;
  } else if (seq < MAX_ROC_DISORDER && s->last > MAX_SEQUENCE_NUMBER - MAX_ROC_DISORDER) {
    s->roc++;
  }
  s->last = seq;
}

static int uint16_gt(uint16_t a, uint16_t b) {
  return (a > b && a - b < 0x8000) || (a < b && b - a > 0x8000);
}

/* ---------- handles ---------- */

/* The slot a handle names if it is still that slot's generation, else -1. */
static int slot_of(int32_t h, void *const *arr, const uint16_t *gen, int n) {
  if (h <= 0) return -1;
  int i = h & SLOT_MASK;
  uint16_t g = (uint16_t)((uint32_t)h >> SLOT_BITS);
  return i < n && arr[i] && gen[i] == g ? i : -1;
}
/* A live socket or output by handle (NULL if released, being released, or stale). */
static sock_t *sock_at(int32_t h) {
  int i = slot_of(h, (void *const *)P.socks, P.sock_gen, P.nsocks);
  return i >= 0 && !P.socks[i]->closing ? P.socks[i] : NULL;
}
static out_t *out_at(int32_t h) {
  int i = slot_of(h, (void *const *)P.outs, P.out_gen, P.nouts);
  return i >= 0 && !P.outs[i]->closing ? P.outs[i] : NULL;
}

/* ---------- sending ---------- */

static void flush_sends(void) {
  int i = 0;
  while (i < P.npend) {
    /* sendmmsg takes one descriptor: send the run of entries for the same socket together. */
    struct mmsghdr m[SEND_BATCH];
    struct iovec iov[SEND_BATCH];
    int fd = P.pend[i].fd, n = 0, j = i;
    while (j < P.npend && P.pend[j].fd == fd) {
      memset(&m[n], 0, sizeof m[n]);
      iov[n].iov_base = P.pend[j].data;
      iov[n].iov_len = P.pend[j].len;
      m[n].msg_hdr.msg_iov = &iov[n];
      m[n].msg_hdr.msg_iovlen = 1;
      m[n].msg_hdr.msg_name = &P.pend[j].dest;
      m[n].msg_hdr.msg_namelen = sizeof(struct sockaddr_in);
      n++;
      j++;
    }
    int done = 0;
    while (done < n) {
      int r = sendmmsg(fd, m + done, (unsigned)(n - done), MSG_DONTWAIT);
      if (r < 0) {
        if (errno == EINTR) continue;
        /* A full socket buffer or a vanished route: the datagrams are lost, as UDP allows. */
        P.send_errors += n - done;
        break;
      }
      if (r == 0) break;
      done += r;
    }
    i = j;
  }
  P.npend = 0;
}

/* Our header, sequence number and timestamp for one packet to `o`, encrypted into a pending
 * send slot. Returns the SRTP length or -1. */
static long emit_to(out_t *o, uint32_t origin, uint32_t ssrc_in, uint16_t seq_in, uint32_t ts_in,
                    int marker, const uint8_t *csrcs, int cc, const uint8_t *payload, size_t plen,
                    uint32_t clock, double now) {
  if (!o->used || o->closing || !o->has_dest) return -1;
  sock_t *s = sock_at(o->sock);
  if (!s || !s->used) return -1;
  size_t hlen = 12 + 4 * (size_t)cc;
  if (hlen + plen + srtp_tag_len(o->ctx) > SEND_BUF) return -1;
  /* continuity: stream-continuity.ts's continueStream */
  if (!o->has_key || o->key_origin != origin || o->key_ssrc != ssrc_in) {
    if (o->has_last) {
      double step = fmax(1, round(((now - o->last_sent) * clock) / 1000));
      o->seq_off = (uint16_t)(o->last_seq + 1 - seq_in);
      o->ts_off = (uint32_t)((uint64_t)o->last_ts + (uint64_t)step - ts_in);
    }
    o->has_key = 1;
    o->key_origin = origin;
    o->key_ssrc = ssrc_in;
  }
  uint16_t seq = (uint16_t)(seq_in + o->seq_off);
  uint32_t ts = ts_in + o->ts_off;
  if (!o->has_last || (uint16_t)(seq - o->last_seq) < 0x8000) {
    o->has_last = 1;
    o->last_seq = seq;
    o->last_ts = ts;
    o->last_sent = now;
  }
  if (P.npend == SEND_BATCH) flush_sends();
  uint8_t hdr[12 + 60];
  hdr[0] = (uint8_t)(0x80 | cc);
  hdr[1] = (uint8_t)((marker ? 0x80 : 0) | (o->pt & 0x7f));
  hdr[2] = (uint8_t)(seq >> 8);
  hdr[3] = (uint8_t)seq;
  put32(hdr + 4, ts);
  put32(hdr + 8, o->ssrc);
  if (cc) memcpy(hdr + 12, csrcs, 4 * (size_t)cc);
  update_roc(&o->roc, seq);
  /* Video is encrypted straight into its retransmission ring slot (sent from there too); the
   * ring has 256 slots and at most SEND_BATCH packets wait, so no slot is reused before it is
   * sent. Audio (never NACKed) uses a send slot. */
  size_t need = hlen + plen + srtp_tag_len(o->ctx);
  uint8_t *slot = P.pend_buf[P.npend];
  int ri = -1;
  if (o->keep) {
    int i = seq % RING;
    if (o->ring_cap[i] < need) {
      size_t cap = need < 1536 ? 1536 : need;
      uint8_t *b = realloc(o->ring[i], cap);
      if (b) { o->ring[i] = b; o->ring_cap[i] = (uint16_t)cap; }
    }
    if (o->ring_cap[i] >= need) { slot = o->ring[i]; ri = i; }
  }
  long n = srtp_rtp_protect(o->ctx, hdr, hlen, payload, plen, o->roc.roc, slot);
  if (n < 0) {
    if (ri >= 0) o->ring_seq[ri] = -1;
    return -1;
  }
  if (ri >= 0) {
    o->ring_len[ri] = (uint16_t)n;
    o->ring_seq[ri] = seq;
  }
  P.pend[P.npend].data = slot;
  P.pend[P.npend].fd = s->fd;
  P.pend[P.npend].dest = o->dest;
  P.pend[P.npend].len = (uint16_t)n;
  P.npend++;
  o->packets++;
  o->octets += (double)plen;
  o->bytes += (double)n;
  o->last_at = now;
  o->last_ts_out = ts;
  o->clock = clock;
  return n;
}

/* ---------- receiving ---------- */

static napi_value make_u32(napi_env env, double v) {
  napi_value r;
  napi_create_double(env, v, &r);
  return r;
}

/* Hands something to JS: kind 0 a datagram as received, 1 a decrypted RTP packet, 2 a loss
 * (a = ssrc, b = first lost seq, c = count), 3 a late packet (a = ssrc, b = its seq). */
static void call_js(int kind, int32_t sock, const uint8_t *data, size_t len,
                    const struct sockaddr_in *from, double a, double b, double c) {
  napi_env env = P.env;
  flush_sends(); /* the callback may detach sockets: nothing may wait on their descriptors */
  napi_value cb, argv[6], undef;
  if (napi_get_reference_value(env, P.cb, &cb) != napi_ok || !cb) return;
  napi_get_undefined(env, &undef);
  argv[0] = make_u32(env, kind);
  argv[1] = make_u32(env, sock);
  if (kind <= 1) {
    char ip[INET_ADDRSTRLEN] = "0.0.0.0";
    void *copy;
    if (napi_create_buffer_copy(env, len, data, &copy, &argv[2]) != napi_ok) return;
    inet_ntop(AF_INET, &from->sin_addr, ip, sizeof ip);
    napi_create_string_utf8(env, ip, NAPI_AUTO_LENGTH, &argv[3]);
    argv[4] = make_u32(env, ntohs(from->sin_port));
    argv[5] = undef;
  } else {
    argv[2] = make_u32(env, a);
    argv[3] = make_u32(env, b);
    argv[4] = make_u32(env, c);
    argv[5] = undef;
  }
  P.to_js++;
  if (napi_call_function(env, undef, cb, 6, argv, NULL) == napi_pending_exception) {
    napi_value err;
    napi_get_and_clear_last_exception(env, &err);
    napi_fatal_exception(env, err);
  }
}

static int find_free(sock_t *s) {
  for (int i = 0; i < MAX_SSRCS; i++)
    if (!s->in[i].used) return 1;
  return 0;
}

static in_t *find_in(sock_t *s, uint32_t ssrc, int create) {
  in_t *free_slot = NULL;
  for (int i = 0; i < MAX_SSRCS; i++) {
    if (s->in[i].used && s->in[i].ssrc == ssrc) return &s->in[i];
    if (!s->in[i].used && !free_slot) free_slot = &s->in[i];
  }
  if (!create || !free_slot) return NULL;
  memset(free_slot, 0, sizeof *free_slot);
  free_slot->used = 1;
  free_slot->ssrc = ssrc;
  free_slot->clock = 90000;
  return free_slot;
}

/* A compound SRTCP packet made only of sender reports, receiver reports and SDES (what clients
 * send every second or so) is read here: its report blocks about our outputs and its sender
 * info about our inputs are kept for JS to copy into werift at the next sync. Returns 0 for
 * anything else (feedback, BYE, failures), which then goes to werift as received. */
static int read_reports(sock_t *s, const uint8_t *p, size_t len, double now) {
  (void)now;
  long n = srtp_rtcp_unprotect(s->rtcp_ctx, p, len, P.plain);
  if (n < 8) return 0;
  const uint8_t *q = P.plain;
  size_t off = 0;
  /* first pass: every length consistent; only SR, RR and SDES? */
  int only_reports = 1;
  while (off < (size_t)n) {
    if (off + 4 > (size_t)n || (q[off] >> 6) != 2) return 0;
    uint8_t pt = q[off + 1];
    size_t plen = 4 * ((size_t)be16(q + off + 2) + 1);
    if (off + plen > (size_t)n) return 0;
    int rc = q[off] & 0x1f;
    size_t need = pt == 200 ? 28 + 24 * (size_t)rc : pt == 201 ? 8 + 24 * (size_t)rc : 4;
    if (need > plen) return 0;
    if (pt != 200 && pt != 201 && pt != 202) only_reports = 0;
    off += plen;
  }
  double at = real_s();
  for (off = 0; off < (size_t)n; off += 4 * ((size_t)be16(q + off + 2) + 1)) {
    uint8_t pt = q[off + 1];
    if (pt != 200 && pt != 201) continue;
    int rc = q[off] & 0x1f;
    const uint8_t *blocks = q + off + (pt == 200 ? 28 : 8);
    if (pt == 200) {
      in_t *in = find_in(s, be32(q + off + 4), 0);
      if (in) {
        in->sr_ntp_hi = be32(q + off + 8);
        in->sr_ntp_lo = be32(q + off + 12);
        in->sr_rtp = be32(q + off + 16);
        in->sr_packets = be32(q + off + 20);
        in->sr_octets = be32(q + off + 24);
        in->sr_at = at;
        in->sr_count++;
      }
    }
    for (int b = 0; b < rc; b++) {
      const uint8_t *r = blocks + 24 * b;
      uint32_t ssrc = be32(r);
      for (int i = 0; i < P.nouts; i++) {
        out_t *o = P.outs[i];
        if (!o || o->closing || o->sock != s->handle || o->ssrc != ssrc) continue;
        o->rr_fraction = r[4];
        int32_t lost = (int32_t)((uint32_t)r[5] << 16 | (uint32_t)r[6] << 8 | r[7]);
        if (lost & 0x800000) lost -= 0x1000000;
        o->rr_lost = lost;
        o->rr_highest = be32(r + 8);
        o->rr_jitter = be32(r + 12);
        o->rr_lsr = be32(r + 16);
        o->rr_dlsr = be32(r + 20);
        o->rr_at = at;
        o->rr_count++;
      }
    }
  }
  /* Reports mixed with feedback are recorded here and still go to werift (which needs the feedback). */
  if (!only_reports) return 0;
  P.reports++;
  return 1;
}

/* ---------- our own reports (RFC 3550 SR/RR, sent instead of werift's per-stream loops) ---------- */

static double real_precise(void) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* One compound packet for a socket: an SR for each output that has sent media, then an RR
 * (from the first output's SSRC) with a reception report block for each incoming SSRC, then
 * SDES CNAME chunks; encrypted with the first output's SRTCP index. The blocks go in an RR of
 * their own rather than inside the SR: RFC 3550 allows both, and some stacks (werift's router)
 * only read report blocks from RRs. */
static void send_reports(sock_t *s) {
  out_t *outs[4];
  int no = 0;
  for (int i = 0; i < P.nouts && no < 4; i++) {
    out_t *o = P.outs[i];
    if (o && !o->closing && o->sock == s->handle && o->has_dest) outs[no++] = o;
  }
  if (!no) return;
  uint8_t pkt[1024], enc[1024 + 64];
  size_t off = 0;
  double real = real_precise(), now = mono_ms();
  uint32_t ntp_hi = (uint32_t)((uint64_t)floor(real) + 2208988800ULL);
  uint32_t ntp_lo = (uint32_t)((real - floor(real)) * 4294967296.0);
  uint32_t compact = ((ntp_hi & 0xffff) << 16) | (ntp_lo >> 16);
  for (int k = 0; k < no; k++) {
    out_t *o = outs[k];
    if (o->packets <= 0) continue;
    double elapsed = o->last_at > 0 ? now - o->last_at : 0;
    uint32_t rtp = o->last_ts_out + (uint32_t)llround(elapsed * o->clock / 1000.0);
    pkt[off] = 0x80;
    pkt[off + 1] = 200;
    pkt[off + 2] = 0;
    pkt[off + 3] = 6; /* 28 bytes */
    put32(pkt + off + 4, o->ssrc);
    put32(pkt + off + 8, ntp_hi);
    put32(pkt + off + 12, ntp_lo);
    put32(pkt + off + 16, rtp);
    put32(pkt + off + 20, (uint32_t)fmod(o->packets, 4294967296.0));
    put32(pkt + off + 24, (uint32_t)fmod(o->octets, 4294967296.0));
    off += 28;
    o->sr_sent_count++;
    o->sr_sent_at = real;
    o->sr_sent_compact = compact;
  }
  size_t start = off;
  int rc = 0;
  off += 8;
  for (int i = 0; i < MAX_SSRCS && rc < 31; i++) {
    in_t *in = &s->in[i];
    if (!in->used || in->packets == 0 || !in->has_max) continue;
    double expected = in->cycles + in->max_seq - in->base_seq + 1;
    double lost = expected - in->packets;
    if (lost < 0) lost = 0;
    if (lost > 0x7fffff) lost = 0x7fffff;
    double exp_int = expected - in->expected_prior, rec_int = in->packets - in->received_prior;
    in->expected_prior = expected;
    in->received_prior = in->packets;
    double lost_int = exp_int - rec_int;
    uint32_t fraction = exp_int == 0 || lost_int <= 0 ? 0 : (uint32_t)fmin(255, floor(lost_int * 256 / exp_int));
    uint8_t *r = pkt + off;
    put32(r, in->ssrc);
    r[4] = (uint8_t)fraction;
    uint32_t l = (uint32_t)lost;
    r[5] = (uint8_t)(l >> 16); r[6] = (uint8_t)(l >> 8); r[7] = (uint8_t)l;
    put32(r + 8, (uint32_t)fmod(in->cycles + in->max_seq, 4294967296.0));
    put32(r + 12, (uint32_t)fmax(0, floor(in->jitter_q4 / 16)));
    uint32_t lsr = 0, dlsr = 0;
    if (in->sr_count > 0) {
      double delay = real - in->sr_at;
      lsr = ((in->sr_ntp_hi & 0xffff) << 16) | (in->sr_ntp_lo >> 16);
      if (delay > 0 && delay < 65536) dlsr = (uint32_t)(delay * 65536);
    }
    put32(r + 16, lsr);
    put32(r + 20, dlsr);
    off += 24;
    rc++;
  }
  if (rc > 0 || start == 0) {
    /* an RR leads when no SR does (a compound packet starts with SR or RR) */
    pkt[start] = (uint8_t)(0x80 | rc);
    pkt[start + 1] = 201;
    uint16_t words = (uint16_t)((off - start) / 4 - 1);
    pkt[start + 2] = (uint8_t)(words >> 8);
    pkt[start + 3] = (uint8_t)words;
    put32(pkt + start + 4, outs[0]->ssrc); /* leads only when no output has sent: outs[0] */
  } else {
    off = start;
  }
  /* SDES: a CNAME chunk per output that has one */
  size_t sdes = off;
  int chunks = 0;
  off += 4;
  for (int k = 0; k < no; k++) {
    out_t *o = outs[k];
    if (!o->cname_len || off + 8 + o->cname_len + 4 > sizeof pkt - 64) continue;
    put32(pkt + off, o->ssrc);
    pkt[off + 4] = 1;
    pkt[off + 5] = o->cname_len;
    memcpy(pkt + off + 6, o->cname, o->cname_len);
    off += 6 + o->cname_len;
    do pkt[off++] = 0; while (off % 4); /* the END item and padding to a word */
    chunks++;
  }
  if (chunks) {
    pkt[sdes] = (uint8_t)(0x80 | chunks);
    pkt[sdes + 1] = 202;
    uint16_t words = (uint16_t)((off - sdes) / 4 - 1);
    pkt[sdes + 2] = (uint8_t)(words >> 8);
    pkt[sdes + 3] = (uint8_t)words;
  } else {
    off = sdes;
  }
  /* The SRTCP index is kept per SSRC (the leading packet's, as werift does): never reused for
   * one SSRC, also after werift takes over again (detach hands the indexes back). */
  out_t *f = outs[0];
  for (int k = 0; k < no; k++) if (outs[k]->packets > 0) { f = outs[k]; break; }
  uint32_t idx = f->srtcp_index + 1; /* werift: index++, back to 0 at 2^31 */
  if (idx >> 31) idx = 0;
  f->srtcp_index = idx;
  long n = srtp_rtcp_protect(s->rtcp_out, pkt, off, idx, enc);
  if (n < 0) return;
  if (sendto(s->fd, enc, (size_t)n, MSG_DONTWAIT, (struct sockaddr *)&f->dest, sizeof f->dest) > 0) P.reports_sent++;
  else P.send_errors++;
}

/* Every 100 ms: the sockets whose next report is due (every 0.5-1.5 s, as werift's loops). */
static void on_rtcp_timer(uv_timer_t *t) {
  (void)t;
  if (!P.active) return;
  double now = mono_ms();
  for (int i = 0; i < P.nsocks; i++) {
    sock_t *s = P.socks[i];
    if (!s || s->closing || !s->rtcp_out || now < s->rtcp_next) continue;
    s->rtcp_next = now + 500 + (double)(rand() % 1000);
    send_reports(s);
  }
}

static void handle(int si, uint8_t *p, size_t len, const struct sockaddr_in *from, double now) {
  sock_t *s = P.socks[si];
  /* RTP or RTCP by the first byte (werift's isMedia), then RTCP by the second (rtp.h, RFC 5761).
   * Anything else (STUN, DTLS, SRTCP other than plain reports) is werift's business, as
   * received. werift's own isRtcp stops at 208: what reaches it with 209-223 it tries as SRTP,
   * which only RTP with payload types 64-95 would pass, and RFC 5761 rules those out. */
  int media = len >= 12 && p[0] > 127 && p[0] < 192;
  int rtp = media && !RTCP_MUX_IS_RTCP(p[1]);
  if (media && !rtp && s->rtcp_ctx && read_reports(s, p, len, now)) return;
  if (!rtp) { call_js(0, s->handle, p, len, from, 0, 0, 0); return; }
  /* An SSRC gets a slot only once one of its packets authenticates, so forged packets cannot
   * fill the table. With the table full, an SSRC stays werift's (as received). */
  in_t *in = find_in(s, be32(p + 8), 0);
  int fresh = in == NULL;
  if (fresh && !find_free(s)) { call_js(0, s->handle, p, len, from, 0, 0, 0); return; }
  uint16_t seq = be16(p + 2);
  roc_t guess = fresh ? (roc_t){0, 0, 0} : in->roc;
  update_roc(&guess, seq);
  long n = srtp_rtp_unprotect(s->ctx, p, len, guess.roc, P.plain);
  if (n < 0) { P.auth_failures++; return; } /* werift drops these too */
  if (fresh) in = find_in(s, be32(p + 8), 1);
  in->roc = guess;
  uint8_t *q = P.plain;
  size_t hlen = srtp_rtp_header_len(q, (size_t)n);
  if (hlen == 0) return;
  size_t pad = (q[0] & 0x20) ? q[n - 1] : 0;
  if (hlen + pad > (size_t)n) return;
  size_t plen = (size_t)n - hlen - pad;
  uint32_t ts = be32(q + 4);
  uint8_t pt = q[1] & 0x7f;

  /* werift's StreamStatistics.add */
  int in_order = !in->has_max || uint16_gt(seq, in->max_seq);
  in->packets++;
  in->bytes += (double)plen;
  in->header_bytes += (double)hlen;
  in->last_at = now;
  if (!in->has_base) { in->has_base = 1; in->base_seq = seq; }
  if (in_order) {
    double arrival = trunc(real_s() * in->clock);
    if (in->has_max && seq < in->max_seq) in->cycles += 65536;
    in->has_max = 1;
    in->max_seq = seq;
    if ((!in->has_ts || ts != in->last_ts) && in->packets > 1) {
      double diff = fabs(arrival - (in->has_arrival ? in->last_arrival : 0) -
                         ((double)ts - (in->has_ts ? (double)in->last_ts : 0)));
      /* werift: jitter_q4 += diff - ((jitter_q4 + 8) >> 4), a shift of a 32-bit integer */
      in->jitter_q4 += diff - floor(to_int32(in->jitter_q4 + 8) / 16);
    }
    in->has_arrival = 1;
    in->last_arrival = arrival;
    in->has_ts = 1;
    in->last_ts = ts;
  }

  /* Loss detection for NACKs (werift's NackHandler.addPacket, which JS then drives). */
  int late = 0;
  if (in->nack) {
    if (!in->has_est) {
      in->has_est = 1;
      in->est = seq;
    } else {
      uint16_t d = (uint16_t)(seq - in->est);
      if (d != 0 && d < 0x8000) {
        if (d > 1) {
          int lost = d - 1, first = (uint16_t)(in->est + 1);
          if (lost > MAX_LOSS_REPORT) { first = (uint16_t)(seq - MAX_LOSS_REPORT); lost = MAX_LOSS_REPORT; }
          in->est = seq;
          call_js(2, s->handle, NULL, 0, NULL, in->ssrc, first, lost);
          if (!P.socks[si] || P.socks[si]->closing) return;
        }
        in->est = seq;
      } else if (d != 0) {
        late = 1;
      }
    }
  }
  if (late) {
    call_js(3, s->handle, NULL, 0, NULL, in->ssrc, seq, 0);
    if (!P.socks[si] || P.socks[si]->closing) return;
  }

  if (in->routed && pt == in->pt) {
    int cc = q[0] & 0x0f;
    int marker = (q[1] & 0x80) != 0;
    for (int i = 0; i < in->nouts; i++) {
      out_t *o = out_at(in->outs[i]); /* a stale handle (output gone, slot reused) is skipped */
      if (o && emit_to(o, in->origin, in->ssrc, seq, ts, marker, q + 12, cc, q + hlen, plen, in->route_clock, now) > 0)
        P.forwarded++;
    }
    /* Handled here even with no output (a parked session): nothing to do in JS. */
    in->fwd_packets++;
    in->fwd_bytes += (double)(hlen + plen);
    return;
  }
  call_js(1, s->handle, q, (size_t)n, from, 0, 0, 0);
}

static void free_sock(int i);
static void free_out(int i);

/* Frees what was detached while a drain was running. */
static void reap(void) {
  for (int i = 0; i < P.nsocks; i++) if (P.socks[i] && P.socks[i]->closing) free_sock(i);
  for (int i = 0; i < P.nouts; i++) if (P.outs[i] && P.outs[i]->closing) free_out(i);
}

/* Reads every ready socket; returns the datagrams handled. */
static int drain(void) {
  struct epoll_event ev[64];
  int handled = 0;
  P.in_drain = 1;
  P.wakeups++;
  int n = epoll_wait(P.epfd, ev, 64, 0);
  double now = mono_ms();
  for (int e = 0; e < n; e++) {
    int si = slot_of((int32_t)ev[e].data.u32, (void *const *)P.socks, P.sock_gen, P.nsocks);
    if (si < 0) continue;
    for (int round = 0; round < MAX_ROUNDS; round++) {
      sock_t *s = P.socks[si];
      if (!s || s->closing) break;
      int r = recvmmsg(s->fd, P.rmsg, RECV_BATCH, MSG_DONTWAIT, NULL);
      if (r <= 0) break;
      /* The kernel rewrote the address lengths of the entries it filled: restore them. */
      for (int i = 0; i < r; i++) P.rmsg[i].msg_hdr.msg_namelen = sizeof P.raddr[i];
      for (int i = 0; i < r; i++) {
        P.datagrams++;
        handled++;
        int flags = P.rmsg[i].msg_hdr.msg_flags;
        P.rmsg[i].msg_hdr.msg_flags = 0;
        if (flags & MSG_TRUNC) { P.truncated++; continue; }
        if (P.raddr[i].sin_family != AF_INET) continue;
        handle(si, P.rbuf[i], P.rmsg[i].msg_len, &P.raddr[i], now);
        if (!P.socks[si] || P.socks[si]->closing) break;
      }
      if (r < RECV_BATCH) break;
    }
  }
  flush_sends();
  P.in_drain = 0;
  reap();
  return handled;
}

static void on_timer(uv_timer_t *t);
static void on_poll(uv_poll_t *h, int status, int events);

/* One drain inside a callback scope (so JS called from it runs its microtasks after), then
 * either a batch window (media is flowing: sleep, let packets gather) or back to polling. */
static void run_drain(void) {
  napi_env env = P.env;
  napi_handle_scope hs;
  napi_value resource;
  napi_callback_scope cs;
  napi_open_handle_scope(env, &hs);
  napi_get_reference_value(env, P.resource, &resource);
  napi_open_callback_scope(env, resource, P.actx, &cs);
  int handled = drain();
  napi_close_callback_scope(env, cs);
  napi_close_handle_scope(env, hs);
  if (!P.active) return;
  if (handled >= 2 && P.batch_ms > 0) {
    if (P.polling) { uv_poll_stop(&P.poll); P.polling = 0; }
    uv_timer_start(&P.timer, on_timer, P.batch_ms, 0);
    P.timing = 1;
  } else if (!P.polling) {
    P.timing = 0;
    uv_poll_start(&P.poll, UV_READABLE, on_poll);
    P.polling = 1;
  }
}

static void on_poll(uv_poll_t *h, int status, int events) {
  (void)h; (void)status; (void)events;
  if (P.active) run_drain();
}
static void on_timer(uv_timer_t *t) {
  (void)t;
  P.timing = 0;
  if (!P.active) return;
  run_drain();
  if (P.active && !P.timing && !P.polling) { uv_poll_start(&P.poll, UV_READABLE, on_poll); P.polling = 1; }
}

/* ---------- bookkeeping ---------- */

static void free_sock(int i) {
  sock_t *s = P.socks[i];
  if (!s) return;
  for (int k = 0; k < MAX_SSRCS; k++) free(s->in[k].outs);
  if (s->ctx_ref) napi_delete_reference(P.env, s->ctx_ref);
  if (s->rtcp_ref) napi_delete_reference(P.env, s->rtcp_ref);
  if (s->rtcp_out_ref) napi_delete_reference(P.env, s->rtcp_out_ref);
  free(s);
  P.socks[i] = NULL;
}

static void free_out(int i) {
  out_t *o = P.outs[i];
  if (!o) return;
  for (int k = 0; k < RING; k++) free(o->ring[k]);
  if (o->ctx_ref) napi_delete_reference(P.env, o->ctx_ref);
  free(o);
  P.outs[i] = NULL;
}

/* Puts `item` in the first free slot (growing the table), takes that slot's next generation
 * and returns the item's handle, or -1 (out of memory, or every slot taken). */
static int32_t slot_in(void ***arr, uint16_t **gen, int *n, void *item) {
  int i = 0;
  while (i < *n && (*arr)[i]) i++;
  if (i == *n) {
    if (*n >= MAX_SLOTS) return -1;
    int old = *n, cap = old ? old * 2 : 16;
    if (cap > MAX_SLOTS) cap = MAX_SLOTS;
    void **a = realloc(*arr, sizeof(void *) * (size_t)cap);
    if (!a) return -1;
    *arr = a;
    uint16_t *g = realloc(*gen, sizeof(uint16_t) * (size_t)cap);
    if (!g) return -1; /* the larger table is kept; *n still says how much of it is in use */
    *gen = g;
    for (int k = old; k < cap; k++) { a[k] = NULL; g[k] = 0; }
    *n = cap;
  }
  (*gen)[i] = (uint16_t)((*gen)[i] % GEN_LIMIT + 1);
  (*arr)[i] = item;
  return (int32_t)(((uint32_t)(*gen)[i] << SLOT_BITS) | (uint32_t)i);
}

/* ---------- N-API plumbing ---------- */

static napi_value throw_msg(napi_env env, const char *m) {
  napi_throw_error(env, NULL, m);
  return NULL;
}
static napi_value num(napi_env env, double v) { return make_u32(env, v); }
static napi_value undefined(napi_env env) { napi_value u; napi_get_undefined(env, &u); return u; }

static int arg_int(napi_env env, napi_value v, int *out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || d != trunc(d) || d < -2147483648.0 || d > 2147483647.0) return 0;
  *out = (int)d;
  return 1;
}
static int arg_u32(napi_env env, napi_value v, uint32_t *out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || d != trunc(d) || d < 0 || d > 4294967295.0) return 0;
  *out = (uint32_t)d;
  return 1;
}
static int arg_buf(napi_env env, napi_value v, uint8_t **p, size_t *len) {
  void *data = NULL;
  if (napi_get_buffer_info(env, v, &data, len) == napi_ok) { *p = data; return 1; }
  napi_typedarray_type t;
  napi_value ab;
  size_t off;
  if (napi_get_typedarray_info(env, v, &t, len, &data, &ab, &off) != napi_ok) return 0;
  if (t == napi_uint16_array) *len *= 2;
  else if (t == napi_int32_array || t == napi_uint32_array || t == napi_float32_array) *len *= 4;
  else if (t == napi_float64_array) *len *= 8;
  else if (t != napi_uint8_array) return 0;
  *p = data;
  return 1;
}

/* The socket or output a JS argument names (NULL if it is not a live handle). */
static sock_t *get_sock(napi_env env, napi_value v) {
  int h;
  return arg_int(env, v, &h) ? sock_at(h) : NULL;
}
static out_t *get_out(napi_env env, napi_value v) {
  int h;
  return arg_int(env, v, &h) ? out_at(h) : NULL;
}

#define ARGS(n)                                                              \
  size_t argc = n;                                                           \
  napi_value argv[n];                                                        \
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL; \
  if (argc < n) return throw_msg(env, "too few arguments")

/* planeStart(callback(kind, sock, a, b, c), batchMs) */
static napi_value plane_start(napi_env env, napi_callback_info info) {
  ARGS(2);
  if (P.active || P.closing_handles) return throw_msg(env, "forwarding plane already started");
  int batch;
  if (!arg_int(env, argv[1], &batch) || batch < 0 || batch > 20) return throw_msg(env, "batchMs must be 0-20");
  napi_valuetype t;
  napi_typeof(env, argv[0], &t);
  if (t != napi_function) return throw_msg(env, "callback must be a function");
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) return throw_msg(env, "no event loop");
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return throw_msg(env, "epoll_create1 failed");
  napi_value resource, name;
  napi_create_object(env, &resource);
  napi_create_string_utf8(env, "nkmedia.forward", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, resource, name, &P.actx);
  napi_create_reference(env, resource, 1, &P.resource);
  napi_create_reference(env, argv[0], 1, &P.cb);
  P.env = env;
  P.epfd = ep;
  /* The receive vector never changes but for what recvmmsg writes back (see drain). */
  for (int i = 0; i < RECV_BATCH; i++) {
    P.riov[i].iov_base = P.rbuf[i];
    P.riov[i].iov_len = RECV_BUF;
    memset(&P.rmsg[i], 0, sizeof P.rmsg[i]);
    P.rmsg[i].msg_hdr.msg_iov = &P.riov[i];
    P.rmsg[i].msg_hdr.msg_iovlen = 1;
    P.rmsg[i].msg_hdr.msg_name = &P.raddr[i];
    P.rmsg[i].msg_hdr.msg_namelen = sizeof P.raddr[i];
  }
  P.batch_ms = (uint64_t)batch;
  uv_poll_init(loop, &P.poll, ep);
  uv_timer_init(loop, &P.timer);
  uv_timer_init(loop, &P.rtcp_timer);
  uv_unref((uv_handle_t *)&P.poll);
  uv_unref((uv_handle_t *)&P.timer);
  uv_unref((uv_handle_t *)&P.rtcp_timer);
  uv_timer_start(&P.rtcp_timer, on_rtcp_timer, 100, 100);
  uv_poll_start(&P.poll, UV_READABLE, on_poll);
  P.polling = 1;
  P.active = 1;
  return undefined(env);
}

static void on_closed(uv_handle_t *h) {
  (void)h;
  if (--P.closing_handles == 0) { close(P.epfd); P.epfd = -1; }
}

/* planeStop(): detaches everything (JS restarts its own reading first). */
static napi_value plane_stop(napi_env env, napi_callback_info info) {
  (void)info;
  if (!P.active) return undefined(env);
  if (P.in_drain) return throw_msg(env, "planeStop called from the plane's own callback");
  P.active = 0;
  for (int i = 0; i < P.nsocks; i++) free_sock(i);
  for (int i = 0; i < P.nouts; i++) free_out(i);
  P.npend = 0;
  P.closing_handles = 3;
  uv_close((uv_handle_t *)&P.poll, on_closed);
  uv_close((uv_handle_t *)&P.timer, on_closed);
  uv_close((uv_handle_t *)&P.rtcp_timer, on_closed);
  P.polling = P.timing = 0;
  napi_delete_reference(env, P.cb);
  napi_delete_reference(env, P.resource);
  napi_async_destroy(env, P.actx);
  return undefined(env);
}

/* planeAttach(fd, remoteCtx, remoteRtcpCtx | null): reads `fd` from now on; returns the
 * socket's index. With an SRTCP context, plain report packets are read natively (read_reports). */
static napi_value plane_attach(napi_env env, napi_callback_info info) {
  ARGS(3);
  if (!P.active) return throw_msg(env, "forwarding plane not started");
  int fd;
  if (!arg_int(env, argv[0], &fd) || fd < 0) return throw_msg(env, "bad descriptor");
  srtp_ctx *ctx = srtp_ctx_from_value(env, argv[1]);
  if (!ctx) return throw_msg(env, "remoteCtx must be an SRTP context");
  for (int i = 0; i < P.nsocks; i++)
    if (P.socks[i] && !P.socks[i]->closing && P.socks[i]->fd == fd) return throw_msg(env, "descriptor already attached");
  sock_t *s = calloc(1, sizeof *s);
  if (!s) return throw_msg(env, "out of memory");
  s->used = 1;
  s->fd = fd;
  s->ctx = ctx;
  napi_create_reference(env, argv[1], 1, &s->ctx_ref);
  s->rtcp_ctx = srtp_ctx_from_value(env, argv[2]);
  if (s->rtcp_ctx) napi_create_reference(env, argv[2], 1, &s->rtcp_ref);
  int32_t h = slot_in((void ***)&P.socks, &P.sock_gen, &P.nsocks, s);
  if (h < 0) {
    napi_delete_reference(env, s->ctx_ref);
    if (s->rtcp_ref) napi_delete_reference(env, s->rtcp_ref);
    free(s);
    return throw_msg(env, "out of memory or sockets");
  }
  s->handle = h;
  /* The event names the handle: one for a socket released meanwhile is recognised as stale. */
  struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)h};
  if (epoll_ctl(P.epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
    P.socks[h & SLOT_MASK] = NULL;
    napi_delete_reference(env, s->ctx_ref);
    if (s->rtcp_ref) napi_delete_reference(env, s->rtcp_ref);
    free(s);
    return throw_msg(env, "epoll_ctl failed");
  }
  return num(env, h);
}

/* planeDetach(sock): stops reading it (what is queued stays for whoever reads next). */
static napi_value plane_detach(napi_env env, napi_callback_info info) {
  ARGS(1);
  sock_t *s = get_sock(env, argv[0]);
  if (!s) return undefined(env);
  epoll_ctl(P.epfd, EPOLL_CTL_DEL, s->fd, NULL);
  if (P.in_drain) {
    flush_sends();
    s->closing = 1;
  } else {
    free_sock(s->handle & SLOT_MASK);
  }
  return undefined(env);
}

/* planeSeedInput(sock, ssrc, roc, lastSeq, processed, clockRate, nack): an SSRC's state as
 * werift had it, or (roc etc. ignored when the SSRC is already known) its clock and NACK use. */
static napi_value plane_seed_input(napi_env env, napi_callback_info info) {
  ARGS(7);
  sock_t *s = get_sock(env, argv[0]);
  uint32_t ssrc, roc, last, processed, clock, nack;
  if (!s) return throw_msg(env, "unknown socket");
  if (!arg_u32(env, argv[1], &ssrc) || !arg_u32(env, argv[2], &roc) || !arg_u32(env, argv[3], &last) ||
      last > 65535 || !arg_u32(env, argv[4], &processed) || !arg_u32(env, argv[5], &clock) || clock == 0 ||
      !arg_u32(env, argv[6], &nack))
    return throw_msg(env, "bad input seed");
  in_t *in = find_in(s, ssrc, 0);
  if (!in) {
    in = find_in(s, ssrc, 1);
    if (!in) return num(env, 0);
    in->roc.roc = roc;
    in->roc.last = (uint16_t)last;
    in->roc.processed = processed != 0;
  }
  in->clock = clock;
  in->nack = nack != 0;
  return num(env, 1);
}

/* planeSetRtcp(sock, localRtcpCtx): the plane sends this socket's sender/receiver reports from
 * now on (JS stops werift's loops). */
static napi_value plane_set_rtcp(napi_env env, napi_callback_info info) {
  ARGS(2);
  sock_t *s = get_sock(env, argv[0]);
  if (!s) return throw_msg(env, "unknown socket");
  srtp_ctx *ctx = srtp_ctx_from_value(env, argv[1]);
  if (!ctx) return throw_msg(env, "localRtcpCtx must be an SRTP context");
  if (s->rtcp_out_ref) napi_delete_reference(env, s->rtcp_out_ref);
  s->rtcp_out = ctx;
  napi_create_reference(env, argv[1], 1, &s->rtcp_out_ref);
  s->rtcp_next = mono_ms() + 500 + (double)(rand() % 1000);
  return undefined(env);
}

/* planeSeedOutputRtcp(out, cname, srtcpIndex): what our reports about this output say and the
 * SRTCP index werift had reached for its SSRC. */
static napi_value plane_seed_output_rtcp(napi_env env, napi_callback_info info) {
  ARGS(3);
  out_t *o = get_out(env, argv[0]);
  if (!o) return throw_msg(env, "unknown output");
  size_t n = 0;
  uint32_t idx;
  if (napi_get_value_string_utf8(env, argv[1], o->cname, sizeof o->cname, &n) != napi_ok || !arg_u32(env, argv[2], &idx) ||
      idx > 0x7fffffffu)
    return throw_msg(env, "bad RTCP seed");
  o->cname_len = (uint8_t)n;
  o->srtcp_index = idx;
  return undefined(env);
}

/* planeAddOutput(sock, localCtx, ssrc, payloadType, keepForNack): returns the output's index. */
static napi_value plane_add_output(napi_env env, napi_callback_info info) {
  ARGS(5);
  sock_t *s = get_sock(env, argv[0]);
  if (!s) return throw_msg(env, "unknown socket");
  srtp_ctx *ctx = srtp_ctx_from_value(env, argv[1]);
  uint32_t ssrc, pt, keep;
  if (!ctx) return throw_msg(env, "localCtx must be an SRTP context");
  if (!arg_u32(env, argv[2], &ssrc) || !arg_u32(env, argv[3], &pt) || pt > 127 || !arg_u32(env, argv[4], &keep))
    return throw_msg(env, "bad output");
  out_t *o = calloc(1, sizeof *o);
  if (!o) return throw_msg(env, "out of memory");
  o->used = 1;
  o->sock = s->handle;
  o->ctx = ctx;
  o->ssrc = ssrc;
  o->pt = (uint8_t)pt;
  o->keep = keep != 0;
  for (int i = 0; i < RING; i++) o->ring_seq[i] = -1;
  napi_create_reference(env, argv[1], 1, &o->ctx_ref);
  int32_t h = slot_in((void ***)&P.outs, &P.out_gen, &P.nouts, o);
  if (h < 0) { napi_delete_reference(env, o->ctx_ref); free(o); return throw_msg(env, "out of memory or outputs"); }
  o->handle = h;
  return num(env, h);
}

/* planeSeedOutput(out, roc, rocLast, rocProcessed, lastSeq | -1, lastTs, msSinceLastSent) */
static napi_value plane_seed_output(napi_env env, napi_callback_info info) {
  ARGS(7);
  out_t *o = get_out(env, argv[0]);
  uint32_t roc, last, processed, ts;
  int lseq;
  double age;
  if (!o) return throw_msg(env, "unknown output");
  if (!arg_u32(env, argv[1], &roc) || !arg_u32(env, argv[2], &last) || last > 65535 || !arg_u32(env, argv[3], &processed) ||
      !arg_int(env, argv[4], &lseq) || lseq < -1 || lseq > 65535 || !arg_u32(env, argv[5], &ts) ||
      napi_get_value_double(env, argv[6], &age) != napi_ok || !(age >= 0))
    return throw_msg(env, "bad output seed");
  o->roc.roc = roc;
  o->roc.last = (uint16_t)last;
  o->roc.processed = processed != 0;
  o->has_key = 0;
  o->has_last = lseq >= 0;
  if (lseq >= 0) {
    o->last_seq = (uint16_t)lseq;
    o->last_ts = ts;
    o->last_sent = mono_ms() - age;
  }
  return undefined(env);
}

/* planeSetDest(out, ipv4, port) */
static napi_value plane_set_dest(napi_env env, napi_callback_info info) {
  ARGS(3);
  out_t *o = get_out(env, argv[0]);
  char ip[64];
  size_t n;
  uint32_t port;
  if (!o) return throw_msg(env, "unknown output");
  if (napi_get_value_string_utf8(env, argv[1], ip, sizeof ip, &n) != napi_ok || !arg_u32(env, argv[2], &port) ||
      port == 0 || port > 65535)
    return throw_msg(env, "bad destination");
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, ip, &a.sin_addr) != 1) return throw_msg(env, "destination is not an IPv4 address");
  o->dest = a;
  o->has_dest = 1;
  return undefined(env);
}

/* planeRemoveOutput(out): returns [packets, octets, bytes, lastSeq | -1, lastTs, msSinceLastSent, roc, rocLast, rocProcessed, srtcpIndex]. */
static napi_value out_state(napi_env env, out_t *o) {
  napi_value arr;
  double now = mono_ms();
  double v[10] = {o->packets, o->octets, o->bytes, o->has_last ? o->last_seq : -1, o->last_ts,
                  o->has_last ? now - o->last_sent : 0, o->roc.roc, o->roc.last, o->roc.processed, o->srtcp_index};
  napi_create_array_with_length(env, 10, &arr);
  for (uint32_t i = 0; i < 10; i++) napi_set_element(env, arr, i, num(env, v[i]));
  return arr;
}

static napi_value plane_remove_output(napi_env env, napi_callback_info info) {
  ARGS(1);
  out_t *o = get_out(env, argv[0]);
  if (!o) return undefined(env);
  napi_value state = out_state(env, o);
  if (P.in_drain) { flush_sends(); o->closing = 1; }
  else free_out(o->handle & SLOT_MASK);
  return state;
}

/* planeSetRoute(sock, ssrc, payloadType, origin, clockRate, Int32Array outs | null): packets of
 * `ssrc` with that payload type go to those outputs natively; null sends them to JS again. */
static napi_value plane_set_route(napi_env env, napi_callback_info info) {
  ARGS(6);
  sock_t *s = get_sock(env, argv[0]);
  uint32_t ssrc, pt, origin, clock;
  if (!s) return throw_msg(env, "unknown socket");
  if (!arg_u32(env, argv[1], &ssrc) || !arg_u32(env, argv[2], &pt) || pt > 127 || !arg_u32(env, argv[3], &origin) ||
      !arg_u32(env, argv[4], &clock) || clock == 0)
    return throw_msg(env, "bad route");
  in_t *in = find_in(s, ssrc, 1);
  if (!in) return num(env, 0);
  napi_valuetype t;
  napi_typeof(env, argv[5], &t);
  if (t == napi_null || t == napi_undefined) {
    in->routed = 0;
    return num(env, 1);
  }
  uint8_t *p;
  size_t len;
  if (!arg_buf(env, argv[5], &p, &len) || len % 4) return throw_msg(env, "outs must be an Int32Array");
  int n = (int)(len / 4);
  /* Output handles, checked when each packet goes out (an output may go before the route does). */
  int32_t *outs = n ? malloc(sizeof(int32_t) * (size_t)n) : NULL;
  if (n && !outs) return throw_msg(env, "out of memory");
  if (n) memcpy(outs, p, len);
  free(in->outs);
  in->outs = outs;
  in->nouts = n;
  in->pt = (uint8_t)pt;
  in->origin = origin;
  in->route_clock = clock;
  in->routed = 1;
  return num(env, 1);
}

/* planeClearRoutes(sock | -1): every route of a socket (or of all) back to JS. */
static napi_value plane_clear_routes(napi_env env, napi_callback_info info) {
  ARGS(1);
  int which;
  if (!arg_int(env, argv[0], &which)) return throw_msg(env, "bad socket");
  for (int i = 0; i < P.nsocks; i++) {
    if (!P.socks[i] || (which >= 0 && which != P.socks[i]->handle)) continue;
    for (int k = 0; k < MAX_SSRCS; k++) P.socks[i]->in[k].routed = 0;
  }
  return undefined(env);
}

/* planeSend(out, origin, ssrcIn, seq, ts, marker, payload, clockRate, csrcs?): one packet JS
 * forwards itself, through the output's stream state; sent at once. Returns the SRTP length or -1. */
static napi_value plane_send(napi_env env, napi_callback_info info) {
  ARGS(9);
  out_t *o = get_out(env, argv[0]);
  uint32_t origin, ssrc, seq, ts, marker, clock;
  uint8_t *payload, *csrc = NULL;
  size_t plen, clen = 0;
  if (!o) return num(env, -1);
  if (!arg_u32(env, argv[1], &origin) || !arg_u32(env, argv[2], &ssrc) || !arg_u32(env, argv[3], &seq) || seq > 65535 ||
      !arg_u32(env, argv[4], &ts) || !arg_u32(env, argv[5], &marker) || !arg_buf(env, argv[6], &payload, &plen) ||
      !arg_u32(env, argv[7], &clock) || clock == 0)
    return throw_msg(env, "bad packet");
  napi_valuetype t;
  napi_typeof(env, argv[8], &t);
  if (t != napi_undefined && t != napi_null && (!arg_buf(env, argv[8], &csrc, &clen) || clen % 4 || clen > 60))
    return throw_msg(env, "csrcs must be up to 15 big-endian 32-bit words");
  long n = emit_to(o, origin, ssrc, (uint16_t)seq, ts, marker != 0, csrc, (int)(clen / 4), payload, plen, clock, mono_ms());
  if (!P.in_drain) flush_sends();
  return num(env, (double)n);
}

/* planeRetransmit(out, seqs: number[]): resends what is still in the ring; returns how many. */
static napi_value plane_retransmit(napi_env env, napi_callback_info info) {
  ARGS(2);
  out_t *o = get_out(env, argv[0]);
  if (!o || !o->has_dest) return num(env, 0);
  sock_t *s = sock_at(o->sock);
  if (!s) return num(env, 0);
  uint32_t n = 0, sent = 0;
  napi_get_array_length(env, argv[1], &n);
  for (uint32_t k = 0; k < n && k < 1024; k++) {
    napi_value v;
    uint32_t seq;
    if (napi_get_element(env, argv[1], k, &v) != napi_ok || !arg_u32(env, v, &seq) || seq > 65535) continue;
    int i = seq % RING;
    if (o->ring_seq[i] != (int32_t)seq || !o->ring[i]) continue;
    if (sendto(s->fd, o->ring[i], o->ring_len[i], MSG_DONTWAIT, (struct sockaddr *)&o->dest, sizeof o->dest) > 0) sent++;
    else P.send_errors++;
  }
  return num(env, sent);
}

#define IN_FIELDS 25
/* planeInputStats(sock, Float64Array out): IN_FIELDS numbers per known SSRC (see forwarding-plane.ts); returns the count. */
static napi_value plane_input_stats(napi_env env, napi_callback_info info) {
  ARGS(2);
  sock_t *s = get_sock(env, argv[0]);
  if (!s) return num(env, 0);
  uint8_t *p;
  size_t len;
  if (!arg_buf(env, argv[1], &p, &len)) return throw_msg(env, "need a Float64Array");
  double *d = (double *)p;
  size_t cap = len / (8 * IN_FIELDS);
  int count = 0;
  double now = mono_ms();
  for (int k = 0; k < MAX_SSRCS && (size_t)count < cap; k++) {
    in_t *in = &s->in[k];
    if (!in->used) continue;
    double *r = d + (size_t)count * IN_FIELDS;
    r[0] = in->ssrc; r[1] = in->packets; r[2] = in->bytes; r[3] = in->header_bytes;
    r[4] = in->has_base ? in->base_seq : -1; r[5] = in->has_max ? in->max_seq : -1; r[6] = in->cycles;
    r[7] = in->jitter_q4; r[8] = in->has_arrival ? in->last_arrival : -1; r[9] = in->has_ts ? (double)in->last_ts : -1;
    r[10] = in->packets ? now - in->last_at : -1; r[11] = in->fwd_packets; r[12] = in->fwd_bytes;
    r[13] = in->roc.roc; r[14] = in->roc.last; r[15] = in->roc.processed; r[16] = in->routed; r[17] = in->has_est ? in->est : -1;
    r[18] = in->sr_count; r[19] = in->sr_ntp_hi; r[20] = in->sr_ntp_lo; r[21] = in->sr_rtp; r[22] = in->sr_packets;
    r[23] = in->sr_octets; r[24] = in->sr_at;
    count++;
  }
  return num(env, count);
}

/* planeOutputStats(out, Float64Array(14)) fills [packets, octets, bytes, msSinceLastPacket | -1, lastTimestamp, sendErrors,
 * rrCount, rrFraction, rrLost, rrHighest, rrJitter, rrLsr, rrDlsr, rrAt (s since 1970),
 * srSent, srCompactNtp, srSentAt (s since 1970)]. */
static napi_value plane_output_stats(napi_env env, napi_callback_info info) {
  ARGS(2);
  out_t *o = get_out(env, argv[0]);
  if (!o) return num(env, 0);
  uint8_t *p;
  size_t len;
  if (!arg_buf(env, argv[1], &p, &len) || len < 17 * sizeof(double)) return throw_msg(env, "need a Float64Array of 17");
  double v[17] = {o->packets, o->octets, o->bytes, o->packets ? mono_ms() - o->last_at : -1, o->last_ts_out, o->send_errors,
                  o->rr_count, o->rr_fraction, o->rr_lost, o->rr_highest, o->rr_jitter, o->rr_lsr, o->rr_dlsr, o->rr_at,
                  o->sr_sent_count, o->sr_sent_compact, o->sr_sent_at};
  memcpy(p, v, sizeof v);
  return num(env, 1);
}

/* planeCounters(): what the plane did since it started. */
static napi_value plane_counters(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value o;
  napi_create_object(env, &o);
  napi_set_named_property(env, o, "wakeups", num(env, P.wakeups));
  napi_set_named_property(env, o, "datagrams", num(env, P.datagrams));
  napi_set_named_property(env, o, "forwarded", num(env, P.forwarded));
  napi_set_named_property(env, o, "toJs", num(env, P.to_js));
  napi_set_named_property(env, o, "authFailures", num(env, P.auth_failures));
  napi_set_named_property(env, o, "sendErrors", num(env, P.send_errors));
  napi_set_named_property(env, o, "truncated", num(env, P.truncated));
  napi_set_named_property(env, o, "reports", num(env, P.reports));
  napi_set_named_property(env, o, "reportsSent", num(env, P.reports_sent));
  int socks = 0, outs = 0;
  for (int i = 0; i < P.nsocks; i++) socks += P.socks[i] != NULL;
  for (int i = 0; i < P.nouts; i++) outs += P.outs[i] != NULL;
  napi_set_named_property(env, o, "sockets", num(env, socks));
  napi_set_named_property(env, o, "outputs", num(env, outs));
  return o;
}

#define FN(name, fn) {name, NULL, fn, NULL, NULL, NULL, napi_enumerable, NULL}

napi_value forward_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      FN("planeStart", plane_start),         FN("planeStop", plane_stop),
      FN("planeAttach", plane_attach),       FN("planeDetach", plane_detach),
      FN("planeSeedInput", plane_seed_input), FN("planeAddOutput", plane_add_output),
      FN("planeSeedOutput", plane_seed_output), FN("planeSetDest", plane_set_dest),
      FN("planeRemoveOutput", plane_remove_output), FN("planeSetRoute", plane_set_route),
      FN("planeClearRoutes", plane_clear_routes), FN("planeSend", plane_send),
      FN("planeRetransmit", plane_retransmit), FN("planeInputStats", plane_input_stats),
      FN("planeOutputStats", plane_output_stats), FN("planeCounters", plane_counters),
      FN("planeSetRtcp", plane_set_rtcp),      FN("planeSeedOutputRtcp", plane_seed_output_rtcp),
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}
