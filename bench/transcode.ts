// Audio transcoding cost: CPU microseconds per 20 ms packet through AudioTranscoder for each
// direction, and how many PCMU↔Opus calls (both directions, 50 packets/s each) a core could
// carry. Input is speech-like (voiced harmonics with a moving pitch, noise, pauses), since
// Opus's cost depends on the signal. Reports only; asserts nothing.
//   node --import tsx bench/transcode.ts        (ROUNDS=5 SECONDS=10 by default)
import { AudioTranscoder, rtpClockRate, type AudioCodecName } from '../src/engine/local/audio/index.js';
import { alawEncode, ulawEncode } from '../src/engine/local/audio/g711.js';
import { G722Encoder } from '../src/engine/local/audio/g722.js';
import { OpusEncoder } from '../src/engine/local/audio/opus.js';

const ROUNDS = Number(process.env.ROUNDS ?? 5);
const SECONDS = Number(process.env.SECONDS ?? 10);

function speechLike(rate: number, seconds: number): Int16Array {
  const a = new Int16Array(rate * seconds);
  let seed = 7;
  for (let i = 0; i < a.length; i++) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    const t = i / rate;
    const f0 = 110 + 60 * Math.sin(2 * Math.PI * 0.4 * t);
    const talking = Math.sin(2 * Math.PI * 0.25 * t) > -0.3 ? 1 : 0.02;   // pauses between phrases
    const env = talking * (0.4 + 0.6 * Math.abs(Math.sin(2 * Math.PI * 2.5 * t)));
    let v = 0;
    for (let h = 1; h <= 12 && f0 * h < rate / 2; h++) v += (5000 / h) * Math.sin(2 * Math.PI * f0 * h * t);
    a[i] = Math.round(env * v + ((seed >>> 16) % 800) - 400);
  }
  return a;
}

/** A sender's 20 ms payloads of `codec` (Opus as a browser sends it: 48 kHz, 32 kbit/s). */
function payloads(codec: AudioCodecName): Buffer[] {
  const rate = codec === 'opus' ? 48000 : codec === 'G722' ? 16000 : 8000;
  const pcm = speechLike(rate, SECONDS);
  const n = rate / 50;
  const opus = codec === 'opus' ? new OpusEncoder(48000, { bitrate: 32000, complexity: 9, fec: true, expectedLossPerc: 5 }) : undefined;
  const g722 = new G722Encoder();
  const out: Buffer[] = [];
  for (let i = 0; i + n <= pcm.length; i += n) {
    const f = pcm.subarray(i, i + n);
    if (opus) { out.push(opus.encode(f)!); continue; }
    const b = Buffer.alloc(codec === 'G722' ? n / 2 : n);
    if (codec === 'G722') g722.encode(f, b);
    else (codec === 'PCMU' ? ulawEncode : alawEncode)(f, b);
    out.push(b);
  }
  opus?.close();
  return out;
}

const cache = new Map<AudioCodecName, Buffer[]>();
const median = (xs: number[]): number => [...xs].sort((p, q) => p - q)[xs.length >> 1]!;

/** Median CPU µs per input packet over ROUNDS passes of SECONDS of audio (after one warm-up). */
function measure(from: AudioCodecName, to: AudioCodecName, opts: { opusComplexity?: number } = {}): { us: number; out: number } {
  if (!cache.has(from)) cache.set(from, payloads(from));
  const ps = cache.get(from)!;
  const t = new AudioTranscoder(from, to, opts);
  const step = (rtpClockRate(from) * 20) / 1000;
  let k = 0, out = 0;
  const pass = (): void => {
    for (const p of ps) { out += t.push(p, k & 0xffff, (k * step) >>> 0, false).length; k++; }
  };
  pass();
  const samples: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const c0 = process.cpuUsage();
    pass();
    const c = process.cpuUsage(c0);
    samples.push((c.user + c.system) / ps.length);
  }
  t.close();
  return { us: median(samples), out: out / (ROUNDS + 1) / ps.length };
}

const rows: [string, number, number][] = [];
const row = (label: string, from: AudioCodecName, to: AudioCodecName, opts = {}): number => {
  const { us, out } = measure(from, to, opts);
  rows.push([label, us, out]);
  return us;
};

console.log(`audio transcoding, ${SECONDS} s of speech-like audio per pass, median of ${ROUNDS} passes, 20 ms packets`);
const up = row('PCMU → Opus', 'PCMU', 'opus');
const down = row('Opus → PCMU', 'opus', 'PCMU');
row('G722 → Opus', 'G722', 'opus');
row('Opus → G722', 'opus', 'G722');
row('PCMA → G722 (8k→16k)', 'PCMA', 'G722');
row('G722 → PCMU (16k→8k)', 'G722', 'PCMU');
for (const c of [0, 3, 8, 10]) row(`PCMU → Opus, complexity ${c}`, 'PCMU', 'opus', { opusComplexity: c });
for (const c of [0, 3, 8, 10]) row(`G722 → Opus, complexity ${c}`, 'G722', 'opus', { opusComplexity: c });

console.log('\n| direction | CPU µs / packet | packets out / in |');
console.log('|---|---:|---:|');
for (const [label, us, out] of rows) console.log(`| ${label} | ${us.toFixed(1)} | ${out.toFixed(2)} |`);
const perCall = 50 * (up + down);
console.log(`\nPCMU ↔ Opus call (complexity 5, both directions at 50 packets/s): ${(perCall / 1e4).toFixed(2)} % of a core,`
  + ` about ${Math.floor(1e6 / perCall)} transcoded calls per core`);
