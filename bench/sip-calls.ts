// Transcoded call benchmark: N "SIP-like" calls, each two plain-RTP legs (sdp_type "rtp")
// bridged through the server. Leg A offers PCMU and sends 50 packets/s of real µ-law of a
// 1 kHz tone; leg B answers the server's offer with Opus and sends 50 packets/s of real Opus
// frames of the same tone (encoded once, replayed), so the server decodes, resamples and
// re-encodes both ways. Baseline: the same calls with B answering PCMU (pure forwarding).
// The server runs alone in its own process (CPU from /proc); the UDP peers run in this
// process, paced by the clock, and count what arrives. Reports only; asserts nothing.
//   npm run bench:sip   CALLS=1,10,50,100 then +STEP=50 while the server and the peers stay under
//   MAX_CPU=90 % of a core, nothing is lost and the server keeps up (MAX_QUEUE_MS=100), up to
//   MAX_CALLS=1000; SECONDS=10 WARMUP=2
//   MODES=pcmu,opus; SIGNAL=speech sends speech-like audio instead of the tone.
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import sdpTransform from 'sdp-transform';
import { NkMediaClient } from '../src/client/index.js';
import { ulawEncode } from '../src/engine/local/audio/g711.js';
import { OpusEncoder } from '../src/engine/local/audio/opus.js';
import { bind, mediaOf, toneShareWindowed } from '../test/helpers/rtp-peer.js';
import { decodeOpus, decodeUlaw } from '../test/helpers/tone.js';
import { cpuOf, fmt, rssOf, spawnServer } from './lib.js';

const CALLS = (process.env.CALLS ?? '1,10,50,100').split(',').map(Number);
const SECONDS = Number(process.env.SECONDS ?? 10);
const WARMUP = Number(process.env.WARMUP ?? 2);
const MAX_CPU = Number(process.env.MAX_CPU ?? 90);
const MAX_CALLS = Number(process.env.MAX_CALLS ?? 1000);
const MODES = (process.env.MODES ?? 'pcmu,opus').split(',') as Mode[];
const STEP = Number(process.env.STEP ?? 50);
const MAX_QUEUE_MS = Number(process.env.MAX_QUEUE_MS ?? 100);
const SIGNAL = process.env.SIGNAL === 'speech' ? 'speech' : 'tone';
const PTIME = 20;

type Mode = 'pcmu' | 'opus';

// ---- payloads: 20 ms frames of a 1 kHz tone at about -12 dBFS (or speech-like audio) ----

function tone(rate: number, n: number, offset: number): Int16Array {
  const a = new Int16Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.round(8000 * Math.sin((2 * Math.PI * 1000 * (offset + i)) / rate));
  return a;
}

/** As bench/transcode.ts: voiced harmonics with a moving pitch, noise, pauses (Opus costs more on it). */
function speechLike(rate: number, n: number, offset: number): Int16Array {
  const a = new Int16Array(n);
  let seed = 7 + offset;
  for (let k = 0; k < n; k++) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    const t = (offset + k) / rate;
    const f0 = 110 + 60 * Math.sin(2 * Math.PI * 0.4 * t);
    const talking = Math.sin(2 * Math.PI * 0.25 * t) > -0.3 ? 1 : 0.02;
    const env = talking * (0.4 + 0.6 * Math.abs(Math.sin(2 * Math.PI * 2.5 * t)));
    let v = 0;
    for (let h = 1; h <= 12 && f0 * h < rate / 2; h++) v += (5000 / h) * Math.sin(2 * Math.PI * f0 * h * t);
    a[k] = Math.max(-32768, Math.min(32767, Math.round(env * v + ((seed >>> 16) % 800) - 400)));
  }
  return a;
}

const signal = SIGNAL === 'speech' ? speechLike : tone;
/** Frames replayed in a loop: 1 s of the tone (a whole number of periods), 4 s of speech. */
const LOOP_FRAMES = SIGNAL === 'speech' ? 200 : 50;

function ulawFrames(): Buffer[] {
  const out: Buffer[] = [];
  for (let f = 0; f < LOOP_FRAMES; f++) {
    const b = Buffer.alloc(160);
    ulawEncode(signal(8000, 160, f * 160), b);
    out.push(b);
  }
  return out;
}

/** Opus as a phone or browser sends it (48 kHz mono, 32 kbit/s), after 10 warm-up frames. */
function opusFrames(): Buffer[] {
  const enc = new OpusEncoder(48000, { bitrate: 32000, complexity: 9, fec: true, expectedLossPerc: 5 });
  const out: Buffer[] = [];
  for (let f = 0; f < LOOP_FRAMES + 10; f++) {
    const p = enc.encode(signal(48000, 960, f * 960));
    if (!p) throw new Error('opus encode failed');
    if (f >= 10) out.push(Buffer.from(p));
  }
  enc.close();
  return out;
}

const PAYLOADS = { pcmu: ulawFrames(), opus: opusFrames() };

// ---- a light RTP peer: counts what arrives, sends when the scheduler says ----

interface Target { address: string; port: number }

class Leg {
  sent = 0;
  received = 0;
  /** Packets with another payload type than the one negotiated (should stay 0), and those types. */
  other = 0;
  readonly otherPts = new Set<number>();
  /** When set, payloads of the negotiated type are kept here (to check the audio). */
  keep?: Buffer[];
  to?: Target;
  pt = 0;
  samples = 160;
  payloads: Buffer[] = PAYLOADS.pcmu;
  expectPt = 0;
  private seq = Math.floor(Math.random() * 65536);
  private ts = Math.floor(Math.random() * 2 ** 32);
  private readonly ssrc = Math.floor(Math.random() * 2 ** 32);
  /** Offset of this leg's packets within the 20 ms period (spreads the load). */
  readonly phase = Math.random() * PTIME;

  private constructor(readonly rtp: dgram.Socket, readonly rtcp: dgram.Socket) {
    rtp.on('message', (m) => {
      if (m.length < 12) return;
      const b1 = m[1]!;
      if (b1 >= 192 && b1 <= 223) return;   // RTCP
      if ((b1 & 0x7f) === this.expectPt) {
        this.received++;
        if (this.keep && this.keep.length < 500) this.keep.push(Buffer.from(m.subarray(12 + (m[0]! & 0x0f) * 4)));
      } else {
        this.other++;
        this.otherPts.add(b1 & 0x7f);
      }
    });
    rtcp.on('message', () => undefined);
  }

  static async open(): Promise<Leg> {
    for (let i = 0; i < 50; i++) {
      const rtp = await bind('127.0.0.1', 0);
      const port = rtp.address().port;
      if (port % 2 === 1) { rtp.close(); continue; }
      try {
        return new Leg(rtp, await bind('127.0.0.1', port + 1));
      } catch {
        rtp.close();
      }
    }
    throw new Error('no RTP port pair');
  }

  get port(): number { return this.rtp.address().port; }

  sendOne(): void {
    const payload = this.payloads[this.sent % this.payloads.length]!;
    const b = Buffer.allocUnsafe(12 + payload.length);
    b[0] = 0x80;
    b[1] = (this.sent === 0 ? 0x80 : 0) | this.pt;
    b.writeUInt16BE(this.seq, 2);
    b.writeUInt32BE(this.ts, 4);
    b.writeUInt32BE(this.ssrc, 8);
    payload.copy(b, 12);
    this.rtp.send(b, this.to!.port, this.to!.address);
    this.seq = (this.seq + 1) & 0xffff;
    this.ts = (this.ts + this.samples) >>> 0;
    this.sent++;
  }

  close(): Promise<void> {
    return Promise.all([this.rtp, this.rtcp].map((s) => new Promise<void>((r) => s.close(() => r())))).then(() => undefined);
  }
}

/** Sends every leg's packets on time (by the clock, catching up after late ticks). */
class Pacer {
  private timer?: NodeJS.Timeout;
  private start = 0;
  constructor(private readonly legs: Leg[]) {}
  run(): void {
    this.start = performance.now();
    const tick = (): void => {
      const t = performance.now() - this.start;
      for (const l of this.legs) {
        const due = t < l.phase ? 0 : Math.floor((t - l.phase) / PTIME) + 1;
        while (l.sent < due) l.sendOne();
      }
    };
    this.timer = setInterval(tick, 2);
  }
  stop(): void { clearInterval(this.timer); }
}

// ---- calls ----

interface Call { a: Leg; b: Leg; aId: string; bId: string }

/** `m=<kind> 0` lines refusing the offer's other m-lines, so the answer has as many. */
function refuseOthers(offer: string): string {
  return sdpTransform.parse(offer).media.slice(1)
    .map((m) => `m=${m.type} 0 ${m.protocol} ${String(m.payloads ?? '').split(' ')[0] || '0'}\r\n`).join('');
}

async function openCall(client: NkMediaClient, mode: Mode): Promise<Call> {
  const [a, b] = await Promise.all([Leg.open(), Leg.open()]);
  const offerA = `v=0\r\no=bench 1 1 IN IP4 127.0.0.1\r\ns=bench\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio ${a.port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n`;
  const ra = await client.createSession({ type: 'park', offer: { sdp: offerA, sdp_type: 'rtp' }, wait_reply: true });
  a.to = mediaOf(ra.answer!.sdp);
  const rb = await client.createSession({ type: 'bridge', peer_id: ra.session_id, sdp_type: 'rtp', wait_reply: true } as never);
  const offerB = rb.offer!.sdp;
  const mb = mediaOf(offerB);
  const codec = mode === 'opus' ? { name: 'opus', rate: '48000/2', pt: mb.pts.get('OPUS') } : { name: 'PCMU', rate: '8000', pt: mb.pts.get('PCMU') };
  if (codec.pt === undefined) throw new Error(`the server's offer has no ${codec.name}`);
  const answerB = `v=0\r\no=bench 2 1 IN IP4 127.0.0.1\r\ns=bench\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio ${b.port} RTP/AVP ${codec.pt}\r\na=rtpmap:${codec.pt} ${codec.name}/${codec.rate}\r\na=ptime:20\r\na=sendrecv\r\n${refuseOthers(offerB)}`;
  await client.setAnswer(rb.session_id, { sdp: answerB, sdp_type: 'rtp' });
  b.to = mb;
  a.pt = 0; a.expectPt = 0; a.samples = 160; a.payloads = PAYLOADS.pcmu;
  b.pt = codec.pt; b.expectPt = codec.pt;
  b.samples = mode === 'opus' ? 960 : 160;
  b.payloads = mode === 'opus' ? PAYLOADS.opus : PAYLOADS.pcmu;
  return { a, b, aId: ra.session_id, bId: rb.session_id };
}

async function inBatches<T, R>(items: T[], size: number, f: (x: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += size) out.push(...await Promise.all(items.slice(i, i + size).map(f)));
  return out;
}

interface Row {
  mode: Mode; calls: number; load: number; pktsIn: number; serverCpu: number; usPerPkt: number;
  cpuPerCall: number; callsPerCore: number; deliveryAB: number; deliveryBA: number; queueMs: number; other: string;
  benchCpu: number; otherCpu: number; rssMb: number; toneA?: number; toneB?: number;
}

/** Busy CPU time of the whole machine (all cores), in microseconds, from /proc/stat. */
function machineBusy(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal ...
  return (f[0]! + f[1]! + f[2]! + f[5]! + f[6]! + f[7]!) * 10_000;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function measure(mode: Mode, calls: number): Promise<Row> {
  const server = await spawnServer();
  const client = await NkMediaClient.connect(server.url);
  try {
    await client.login('bench');
    const list = await inBatches(Array.from({ length: calls }, () => mode), 10, (m) => openCall(client, m));
    const legs = list.flatMap((c) => [c.a, c.b]);
    const pacer = new Pacer(legs);
    pacer.run();
    await sleep(WARMUP * 1000);
    const load = loadavg()[0]!;
    const snap = () => ({
      aSent: list.reduce((n, c) => n + c.a.sent, 0), bSent: list.reduce((n, c) => n + c.b.sent, 0),
      aRx: list.reduce((n, c) => n + c.a.received, 0), bRx: list.reduce((n, c) => n + c.b.received, 0),
      other: legs.reduce((n, l) => n + l.other, 0),
    });
    const probe = list[0]!;
    probe.a.keep = [];
    probe.b.keep = [];
    const s0 = snap();
    const c0 = cpuOf(server.pid);
    const b0 = process.cpuUsage();
    const m0 = machineBusy();
    const t0 = performance.now();
    await sleep(SECONDS * 1000);
    pacer.stop();
    const s1 = snap();
    const c1 = cpuOf(server.pid);
    const b1 = process.cpuUsage(b0);
    const m1 = machineBusy();
    const secs = (performance.now() - t0) / 1000;
    const rssMb = rssOf(server.pid) / 2 ** 20;
    // Drain: what the server still holds (queued in its sockets) arrives after the senders stop.
    const rxOf = (x: { aRx: number; bRx: number }) => x.aRx + x.bRx;
    let last = rxOf(s1);
    let lastAt = performance.now();
    for (const end = lastAt + 15_000; performance.now() < end && performance.now() - lastAt < 500;) {
      await sleep(20);
      const now = rxOf(snap());
      if (now !== last) { last = now; lastAt = performance.now(); }
    }
    const sf = snap();
    const pkts = s1.aSent - s0.aSent + s1.bSent - s0.bSent;
    const delivered = s1.aRx - s0.aRx + s1.bRx - s0.bRx;
    const cpuUs = c1 - c0;
    const benchUs = b1.user + b1.system;
    const keptA = probe.a.keep;
    const keptB = probe.b.keep;
    probe.a.keep = probe.b.keep = undefined;
    const toneA = SIGNAL === 'tone' ? toneShareWindowed(decodeUlaw(keptA), 8000, 1000) : undefined;
    const toneB = SIGNAL === 'tone' ? toneShareWindowed(mode === 'opus' ? decodeOpus(keptB) : decodeUlaw(keptB), mode === 'opus' ? 48000 : 8000, 1000) : undefined;
    const serverCpu = (cpuUs / 1e6 / secs) * 100;
    const cpuPerCall = serverCpu / calls;
    await inBatches(list, 20, async (c) => {
      await client.destroySession(c.bId).catch(() => undefined);
      await client.destroySession(c.aId).catch(() => undefined);
    });
    await Promise.all(legs.map((l) => l.close()));
    return {
      mode, calls, load, pktsIn: pkts / secs, serverCpu, usPerPkt: cpuUs / delivered, cpuPerCall, callsPerCore: 100 / cpuPerCall,
      deliveryAB: sf.bRx / sf.aSent, deliveryBA: sf.aRx / sf.bSent, queueMs: ((rxOf(sf) - rxOf(s1)) / (delivered / secs)) * 1000,
      other: s1.other - s0.other ? `${s1.other - s0.other} packets of payload types ${[...new Set(legs.flatMap((l) => [...l.otherPts]))].join(',')}` : '',
      benchCpu: (benchUs / 1e6 / secs) * 100, otherCpu: Math.max(0, ((m1 - m0 - cpuUs - benchUs) / 1e6 / secs) * 100), rssMb, toneA, toneB,
    };
  } finally {
    await client.close();
    await server.stop();
  }
}

async function idleCpu(): Promise<number> {
  const server = await spawnServer();
  try {
    await sleep(1000);
    const c0 = cpuOf(server.pid);
    const t0 = performance.now();
    await sleep(3000);
    return ((cpuOf(server.pid) - c0) / 1e6 / ((performance.now() - t0) / 1000)) * 100;
  } finally {
    await server.stop();
  }
}

const label = (m: Mode) => (m === 'opus' ? 'PCMU<->Opus' : 'PCMU<->PCMU');
const header = ['calls', 'codecs', 'pkts/s in', 'server CPU', 'us/pkt', 'CPU/call', 'calls/core', 'A->B rx', 'B->A rx', 'queue', 'bench CPU', 'other CPU', 'load1', 'srv RSS', ...(SIGNAL === 'tone' ? ['1kHz A/B'] : [])];
const widths = [6, 12, 10, 11, 7, 9, 11, 8, 8, 7, 10, 10, 6, 8, 10];
const line = (cells: string[]) => cells.map((c, i) => (i === 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' ');
const pct = (x: number, d = 1) => `${fmt(x * 100, d)}%`;

function printRow(r: Row): void {
  console.log(line([String(r.calls), label(r.mode), fmt(r.pktsIn, 0), `${fmt(r.serverCpu, 1)}%`, fmt(r.usPerPkt, 1), `${fmt(r.cpuPerCall, 2)}%`,
    fmt(r.callsPerCore, 0), pct(r.deliveryAB), pct(r.deliveryBA), `${fmt(r.queueMs, 0)}ms`, `${fmt(r.benchCpu, 0)}%`, `${fmt(r.otherCpu, 0)}%`, fmt(r.load, 2), `${fmt(r.rssMb, 0)}MB`,
    ...(r.toneA !== undefined ? [`${pct(r.toneA, 0)}/${pct(r.toneB!, 0)}`] : [])])
    + (r.other ? `  (${r.other})` : ''));
}

console.log(`plain-RTP calls bridged through the server (${SIGNAL}): ${SECONDS} s measured after ${WARMUP} s warm-up, 50 packets/s per leg each way`);
console.log(`load average before: ${loadavg().map((x) => fmt(x, 2)).join(' ')}, ${cpus().length} cores`);
console.log(`idle server: ${fmt(await idleCpu(), 2)}% of a core`);
console.log(line(header));
let n = CALLS[0]!;
for (let i = 0; n <= MAX_CALLS; i++) {
  let stop = false;
  for (const mode of MODES) {
    const r = await measure(mode, n);
    printRow(r);
    // The machine no longer keeps up: the server (or the peers) at MAX_CPU, or packets lost.
    if (r.serverCpu >= MAX_CPU || r.benchCpu >= MAX_CPU || Math.min(r.deliveryAB, r.deliveryBA) < 0.99 || r.queueMs > MAX_QUEUE_MS) stop = true;
  }
  if (stop) break;
  n = i + 1 < CALLS.length ? CALLS[i + 1]! : n + STEP;
}
console.log(`load average after: ${loadavg().map((x) => fmt(x, 2)).join(' ')}`);
console.log(`
How measured: each row starts a fresh server (node bin/nkmedia.mjs serve, compiled, loopback only) in
its own process and sets up N calls over the API: session A is a park session given leg A's
PCMU-only RTP offer, session B a bridge to A whose RTP offer leg B answers with Opus (transcoded
both ways) or PCMU (forwarded). Both legs send 20 ms packets, 50/s each, paced by the clock and
spread over the 20 ms period: A real µ-law, B real Opus (48 kHz mono, 32 kbit/s, complexity 9),
encoded once from ${SIGNAL === 'tone' ? 'a 1 kHz tone' : 'speech-like audio'} and replayed in a loop. After ${WARMUP} s of warm-up, ${SECONDS} s are measured.
server CPU: user+system time of the server process from /proc/<pid>/stat (10 ms ticks) over wall
time, % of one core. us/pkt: that CPU time over the packets the peers received (each one went
through the server once, transcoded or forwarded). CPU/call = server CPU / N; calls/core = 100% /
CPU/call (idle server and fixed costs included, no headroom). A->B rx (B->A rx): packets of the
negotiated payload type received by leg B (A) / packets sent by leg A (B), over the whole run,
counted after the senders stop and arrivals cease. queue: packets still arriving after the stop
over the delivery rate (Little's law: the mean time packets waited in the server's socket
buffers; grows without bound when the server falls behind, before any loss). The
peers run in this process ("bench CPU"); "other CPU" is the rest of the machine's busy time (all
cores, /proc/stat) in that window; load1 is the 1-minute load average at its start. 1kHz A/B:
share of the power at 1 kHz in the decoded audio one call's legs received (tone only). Rows grow
past the list by ${STEP} calls until the server or the peers reach ${MAX_CPU}% of a core, packets
are lost or the queue passes ${MAX_QUEUE_MS} ms.`);
