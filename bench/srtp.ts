// SRTP cost per packet: werift's JS path vs the native addon, for 200- and 1200-byte payloads in
// both profiles. "session" is a werift SrtpSession patched by accelerate() (what the transport
// calls, including werift's header serialisation and ROC tracking); "addon" is the raw native
// call on an already-serialised packet (the protect()/protectRtpPacket() path).
//   node --import tsx bench/srtp.ts        (ROUNDS=7 BATCH=2000 by default)
import { randomBytes } from 'node:crypto';
import { ProtectionProfileAeadAes128Gcm, ProtectionProfileAes128CmHmacSha1_80, RtpHeader, SrtpSession } from 'werift';
import { accelerate, available, loadError, native, NativeSrtpContext } from '../src/engine/local/accel/native-srtp.js';

const ROUNDS = Number(process.env.ROUNDS ?? 7);
const BATCH = Number(process.env.BATCH ?? 2000);
const SIZES = [200, 1200];
const PROFILES = [
  { name: 'AES_CM_HMAC_SHA1_80', id: ProtectionProfileAes128CmHmacSha1_80, salt: 14 },
  { name: 'AEAD_AES_128_GCM', id: ProtectionProfileAeadAes128Gcm, salt: 12 },
];

if (!available) {
  console.error(`native addon unavailable (${loadError}); run node scripts/ensure-deps.mjs`);
  process.exit(1);
}

function pair(profile: number, salt: number): { tx: () => SrtpSession; rx: () => SrtpSession } {
  const k1 = randomBytes(16), s1 = randomBytes(salt), k2 = randomBytes(16), s2 = randomBytes(salt);
  return {
    tx: () => new SrtpSession({ keys: { localMasterKey: k1, localMasterSalt: s1, remoteMasterKey: k2, remoteMasterSalt: s2 }, profile }),
    rx: () => new SrtpSession({ keys: { localMasterKey: k2, localMasterSalt: s2, remoteMasterKey: k1, remoteMasterSalt: s1 }, profile }),
  };
}

/** Median over ROUNDS of µs per call, each round timing BATCH calls after `prepare`. */
function measure(prepare: () => void, run: (i: number) => void): number {
  const perCall: number[] = [];
  for (let r = 0; r < ROUNDS + 1; r++) {
    prepare();
    const t0 = performance.now();
    for (let i = 0; i < BATCH; i++) run(i);
    const us = ((performance.now() - t0) * 1000) / BATCH;
    if (r > 0) perCall.push(us); // round 0 warms up the JIT
  }
  perCall.sort((a, b) => a - b);
  return perCall[Math.floor(perCall.length / 2)]!;
}

/** Encrypt then decrypt cost for one sender/receiver pair, sequence numbers running on. */
function bench(tx: SrtpSession, rx: SrtpSession, size: number, raw?: { enc: NativeSrtpContext; dec: NativeSrtpContext }): { enc: number; dec: number } {
  const payload = randomBytes(size);
  const ssrc = 0x12345678;
  let seq = 60000; // crosses the 16-bit wrap during the run, so ROC handling is exercised
  const header = () => new RtpHeader({ payloadType: 96, sequenceNumber: seq, timestamp: seq * 3000, ssrc, marker: true });
  const plains: Buffer[] = [];
  const packets: Buffer[] = [];
  let roc = 0;
  const enc = measure(
    () => {
      if (!raw) return;
      plains.length = 0;
      for (let i = 0; i < BATCH; i++) { seq = (seq + 1) & 0xffff; const h = header(); plains.push(Buffer.concat([h.serialize(h.serializeSize), payload])); }
    },
    raw
      ? (i) => { const p = plains[i]!; const s = (p[2]! << 8) | p[3]!; if (s === 0) roc++; raw.enc.protectRtp(p, roc); }
      : () => { seq = (seq + 1) & 0xffff; tx.encrypt(payload, header()); },
  );
  // Decrypt: a fresh batch encrypted (untimed) by a native sender with its own running state.
  const feeder = new SrtpSession(tx.config);
  accelerate(feeder);
  let dseq = 20000;
  let droc = 0;
  const dec = measure(
    () => {
      packets.length = 0;
      for (let i = 0; i < BATCH; i++) {
        dseq = (dseq + 1) & 0xffff;
        packets.push(feeder.encrypt(payload, new RtpHeader({ payloadType: 96, sequenceNumber: dseq, timestamp: 1, ssrc, marker: true })));
      }
    },
    raw
      ? (i) => { const p = packets[i]!; if (((p[2]! << 8) | p[3]!) === 0) droc++; if (!raw.dec.unprotectRtp(p, droc)) throw new Error('auth'); }
      : (i) => { rx.decrypt(packets[i]!); },
  );
  return { enc, dec };
}

const rows: string[][] = [];
const f = (n: number) => n.toFixed(2);
for (const p of PROFILES) {
  for (const size of SIZES) {
    const keys = pair(p.id, p.salt);
    const js = bench(keys.tx(), keys.rx(), size);
    const accTx = keys.tx(), accRx = keys.rx();
    accelerate(accTx); accelerate(accRx);
    const acc = bench(accTx, accRx, size);
    const raw = bench(keys.tx(), keys.rx(), size, {
      enc: NativeSrtpContext.forRtp(keys.tx().localContext),
      dec: NativeSrtpContext.forRtp(keys.rx().remoteContext),
    });
    for (const op of ['enc', 'dec'] as const) {
      rows.push([p.name, String(size), op === 'enc' ? 'protect' : 'unprotect', f(js[op]), f(acc[op]), f(raw[op]), `${(js[op] / acc[op]).toFixed(1)}x`]);
    }
    rows.push([p.name, String(size), 'forward (dec+enc)', f(js.enc + js.dec), f(acc.enc + acc.dec), f(raw.enc + raw.dec), `${((js.enc + js.dec) / (acc.enc + acc.dec)).toFixed(1)}x`]);
  }
}

const head = ['profile', 'payload B', 'op', 'werift JS µs', 'accelerated session µs', 'raw addon µs', 'speedup (session)'];
const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
const line = (r: string[]) => `| ${r.map((c, i) => (i < 3 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
console.log(`node ${process.version}, ${native!.openssl}, median of ${ROUNDS} rounds x ${BATCH} packets (wall time per packet, one thread)`);
console.log(line(head));
console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
for (const r of rows) console.log(line(r));
