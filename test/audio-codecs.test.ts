// The audio codecs under the transcoder: G.711 µ-law/A-law, G.722 (64 kbit/s), the polyphase
// resampler and the Opus binding, checked on tones and, where ffmpeg is installed, against
// ffmpeg's own implementations (G.722 bit for bit, G.711 decode tables).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import {
  ALAW_TO_LINEAR, ULAW_TO_LINEAR, alawDecode, alawEncode, alawToLinear, linearToAlaw, linearToUlaw, ulawDecode,
  ulawEncode, ulawToLinear,
} from '../src/engine/local/audio/g711.js';
import { G722Decoder, G722Encoder } from '../src/engine/local/audio/g722.js';
import { Resampler } from '../src/engine/local/audio/resampler.js';
import { OpusDecoder, OpusEncoder } from '../src/engine/local/audio/opus.js';

const hasFfmpeg = spawnSync('ffmpeg', ['-version']).status === 0;
const ffmpeg = (args: string[], input: Buffer): Buffer =>
  execFileSync('ffmpeg', ['-v', 'error', ...args], { input, maxBuffer: 64 << 20 });

function tone(freq: number, rate: number, n: number, amp = 10000, phase0 = 0): Int16Array {
  const a = new Int16Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.round(amp * Math.sin(2 * Math.PI * freq * (i + phase0) / rate));
  return a;
}
/** Power of `freq` in `x` (Goertzel), in dB. */
function goertzelDb(x: ArrayLike<number>, freq: number, rate: number): number {
  const c = 2 * Math.cos((2 * Math.PI * freq) / rate);
  let s1 = 0, s2 = 0;
  for (let i = 0; i < x.length; i++) { const s = x[i]! + c * s1 - s2; s2 = s1; s1 = s; }
  const p = (s1 * s1 + s2 * s2 - c * s1 * s2) / (x.length * x.length);
  return 10 * Math.log10(p + 1e-12);
}
function rms(x: ArrayLike<number>, from = 0): number {
  let s = 0;
  for (let i = from; i < x.length; i++) s += x[i]! ** 2;
  return Math.sqrt(s / Math.max(1, x.length - from));
}
/** SNR of `y` against `x`, after finding the codec's delay (0..maxLag samples). */
function snrDb(x: Int16Array, y: Int16Array, maxLag: number, skip: number): number {
  let best = -Infinity;
  for (let lag = 0; lag <= maxLag; lag++) {
    let sig = 0, err = 0;
    for (let i = skip; i + lag < y.length && i < x.length; i++) { sig += x[i]! ** 2; err += (y[i + lag]! - x[i]!) ** 2; }
    best = Math.max(best, 10 * Math.log10(sig / (err + 1e-9)));
  }
  return best;
}
/** Something like speech for the codecs: a gliding tone with harmonics, noise, loud bursts. */
function speechLike(rate: number, seconds: number): Int16Array {
  const n = rate * seconds;
  const a = new Int16Array(n);
  let seed = 12345;
  for (let i = 0; i < n; i++) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    const t = i / rate;
    const f0 = 120 + 80 * Math.sin(2 * Math.PI * 0.7 * t);
    const env = 0.5 + 0.5 * Math.sin(2 * Math.PI * 3 * t);
    let v = 0;
    for (let h = 1; h <= 8; h++) v += (6000 / h) * Math.sin(2 * Math.PI * f0 * h * t);
    v = env * v + ((seed >>> 16) % 3000) - 1500;
    if (t > 1.2 && t < 1.35) v = 30000 * Math.sign(Math.sin(2 * Math.PI * 440 * t));   // clipping square
    a[i] = Math.max(-32768, Math.min(32767, Math.round(v)));
  }
  return a;
}

test('G.711 round trip of every 16-bit value stays within half a quantisation step', () => {
  for (const [name, enc, dec, table] of [
    ['µ-law', linearToUlaw, ulawToLinear, ULAW_TO_LINEAR], ['A-law', linearToAlaw, alawToLinear, ALAW_TO_LINEAR],
  ] as const) {
    const top = Math.max(...table);
    assert.equal(top, name === 'µ-law' ? 32124 : 32256, `${name} largest level`);
    let prev = -Infinity;
    for (let x = -32768; x <= 32767; x++) {
      const code = enc(x);
      const y = dec(code);
      assert.ok(y >= prev, `${name} is monotonic at ${x}`);
      prev = y;
      // Levels are the centres of their intervals: the step is the distance to the neighbour
      // code (the mantissa's low bit), and a sample lies in the interval of its level.
      const step = Math.abs(y - dec(code ^ 1));
      const bound = Math.abs(x) > top ? Math.abs(x) - top + step / 2 : step / 2;
      assert.ok(Math.abs(x - y) <= bound, `${name} ${x} → ${y}, step ${step}`);
    }
    // Every level encodes back to itself (µ-law's two zeros both become +0).
    for (let c = 0; c < 256; c++) assert.equal(dec(enc(dec(c))), dec(c), `${name} code ${c}`);
  }
  // The array forms agree with the scalar ones.
  const pcm = speechLike(8000, 1);
  const u = new Uint8Array(pcm.length), a = new Uint8Array(pcm.length);
  ulawEncode(pcm, u); alawEncode(pcm, a);
  const du = new Int16Array(pcm.length), da = new Int16Array(pcm.length);
  ulawDecode(u, du); alawDecode(a, da);
  for (let i = 0; i < pcm.length; i++) {
    assert.equal(u[i], linearToUlaw(pcm[i]!)); assert.equal(a[i], linearToAlaw(pcm[i]!));
    assert.equal(du[i], ulawToLinear(u[i]!)); assert.equal(da[i], alawToLinear(a[i]!));
  }
});

test('G.711 against ffmpeg: same decode tables; encodings differ only by one level at decision edges', { skip: !hasFfmpeg && 'no ffmpeg' }, () => {
  const codes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  const all = new Int16Array(65536).map((_, i) => i - 32768);
  for (const [fmt, enc, table] of [['mulaw', linearToUlaw, ULAW_TO_LINEAR], ['alaw', linearToAlaw, ALAW_TO_LINEAR]] as const) {
    const dec = ffmpeg(['-f', fmt, '-ar', '8000', '-ac', '1', '-i', '-', '-f', 's16le', '-'], codes);
    assert.deepEqual(new Int16Array(dec.buffer, dec.byteOffset, 256), table, `${fmt} decode table`);
    // ffmpeg picks the nearest level; G.711 (and G.191, followed here) has decision levels at
    // interval edges, so the two disagree by one level near the edges, and nowhere else.
    const theirs = ffmpeg(['-f', 's16le', '-ar', '8000', '-ac', '1', '-i', '-', '-f', fmt, '-'], Buffer.from(all.buffer));
    const sorted = Array.from(table).sort((p, q) => p - q);
    let differ = 0;
    for (let i = 0; i < all.length; i++) {
      const mine = table[enc(all[i]!)]!, their = table[theirs[i]!]!;
      if (mine === their) continue;
      differ++;
      assert.equal(Math.abs(sorted.indexOf(mine) - sorted.indexOf(their)), 1, `${fmt} at ${all[i]}: ${mine} vs ${their}`);
    }
    assert.ok(differ < all.length * 0.02, `${fmt}: ${differ} values differ`);
  }
});

test('G.722 keeps a 1 kHz tone (SNR, Goertzel) and a 6 kHz upper-band tone; silence stays silent', () => {
  for (const [freq, minSnr] of [[1000, 30], [6000, 15]] as const) {
    const x = tone(freq, 16000, 16000);
    const code = new Uint8Array(8000);
    assert.equal(new G722Encoder().encode(x, code), 8000);
    const y = new Int16Array(16000);
    assert.equal(new G722Decoder().decode(code, y), 16000);
    const snr = snrDb(x, y, 64, 800);
    assert.ok(snr > minSnr, `${freq} Hz: SNR ${snr.toFixed(1)} dB`);
    const tail = y.subarray(1600);
    const at = goertzelDb(tail, freq, 16000);
    for (const other of [300, 500, 1500, 2500, 4000, 5000, 7000].filter((f) => f !== freq)) {
      assert.ok(at - goertzelDb(tail, other, 16000) > 30, `${freq} Hz over ${other} Hz`);
    }
    assert.ok(Math.abs(20 * Math.log10(rms(tail) / rms(x, 1600))) < 1, `${freq} Hz level`);
  }
  const silence = new Int16Array(16000);
  const code = new Uint8Array(8000);
  new G722Encoder().encode(silence, code);
  const y = new Int16Array(16000);
  new G722Decoder().decode(code, y);
  assert.ok(y.every((v) => Math.abs(v) <= 4), `silence decodes to at most ±${Math.max(...y.map(Math.abs))}`);
});

test('G.722 is bit-exact with ffmpeg, encoder and decoder, on speech-like audio with clipping', { skip: !hasFfmpeg && 'no ffmpeg' }, () => {
  const pcm = speechLike(16000, 2);
  const mine = new Uint8Array(pcm.length / 2);
  // Encoded in 20 ms packets as the transcoder does: state carries across calls.
  const enc = new G722Encoder();
  for (let i = 0; i < pcm.length; i += 320) enc.encode(pcm.subarray(i, i + 320), mine.subarray(i / 2));
  const theirs = ffmpeg(['-f', 's16le', '-ar', '16000', '-ac', '1', '-i', '-', '-c:a', 'g722', '-f', 'g722', '-'], Buffer.from(pcm.buffer));
  assert.equal(theirs.length, mine.length);
  assert.ok(Buffer.from(mine).equals(theirs), 'encoded octets equal');

  const theirPcm = ffmpeg(['-f', 'g722', '-i', '-', '-f', 's16le', '-ar', '16000', '-'], theirs);
  const myPcm = new Int16Array(pcm.length);
  const dec = new G722Decoder();
  for (let i = 0; i < theirs.length; i += 160) dec.decode(theirs.subarray(i, i + 160), myPcm.subarray(i * 2));
  assert.ok(Buffer.from(myPcm.buffer).equals(theirPcm), 'decoded samples equal');
});

test('resampler: 16k→8k passes 1 kHz and removes 6 kHz; 8k→16k passes 1 kHz without its 7 kHz image', () => {
  const gainDb = (r: Resampler, x: Int16Array, f: number, outRate: number): number => {
    const y = r.push(x);
    const tail = y.subarray(200);
    return goertzelDb(tail, f, outRate) - goertzelDb(x.subarray(200), f, r.inRate);
  };
  assert.ok(Math.abs(gainDb(new Resampler(16000, 8000), tone(1000, 16000, 16000), 1000, 8000)) < 0.2);
  const down6k = new Resampler(16000, 8000).push(tone(6000, 16000, 16000)).subarray(200);
  // 6 kHz would alias to 2 kHz at 8 kHz.
  assert.ok(rms(down6k) < 10000 * 0.001, `6 kHz leaks at rms ${rms(down6k).toFixed(1)}`);
  assert.ok(goertzelDb(down6k, 2000, 8000) < 20 * Math.log10(10000 / 2) - 60);
  assert.ok(Math.abs(gainDb(new Resampler(8000, 16000), tone(1000, 8000, 8000), 1000, 16000)) < 0.2);
  const up = new Resampler(8000, 16000).push(tone(1000, 8000, 8000)).subarray(400);
  assert.ok(goertzelDb(up, 1000, 16000) - goertzelDb(up, 7000, 16000) > 60, 'image rejected');
});

test('resampler streams: any chunking gives the same samples and exact counts', () => {
  for (const [a, b] of [[16000, 8000], [8000, 16000], [48000, 16000], [8000, 48000]] as const) {
    const x = tone(440, a, a / 2);
    const whole = new Resampler(a, b).push(x);
    assert.equal(whole.length, Math.ceil((x.length * b) / a));
    const r = new Resampler(a, b);
    const parts: Int16Array[] = [];
    const sizes = [1, 7, 160, 333, 0, 80, 2];
    for (let i = 0, k = 0; i < x.length; k++) {
      const n = sizes[k % sizes.length]!;
      parts.push(r.push(x.subarray(i, i + n)));
      i += n;
    }
    const joined = new Int16Array(parts.reduce((s, p) => s + p.length, 0));
    parts.reduce((at, p) => (joined.set(p, at), at + p.length), 0);
    assert.deepEqual(joined, whole, `${a} → ${b}`);
  }
});

test('Opus binding: mono voice at 8 and 16 kHz, PLC and FEC of the requested length, garbage refused', () => {
  for (const rate of [8000, 16000] as const) {
    const n = rate / 50;
    const enc = new OpusEncoder(rate, { bitrate: 24000, complexity: 5, fec: true, expectedLossPerc: 5 });
    const dec = new OpusDecoder(rate);
    const x = tone(1000, rate, rate * 2);
    const packets: Buffer[] = [];
    for (let i = 0; i < x.length; i += n) packets.push(enc.encode(x.subarray(i, i + n))!);
    assert.equal(packets.length, 100);
    assert.ok(packets.every((p) => p.length > 10 && p.length < 120), 'about 24 kbit/s');
    const out: number[] = [];
    for (const [i, p] of packets.entries()) {
      // Packet 60 is lost: FEC from packet 61 stands in for it.
      if (i === 60) continue;
      if (i === 61) {
        const fec = dec.conceal(n, p)!;
        assert.equal(fec.length, n);
        out.push(...fec);
      }
      const pcm = dec.decode(p)!;
      assert.equal(pcm.length, n);
      out.push(...pcm);
    }
    const tail = out.slice(rate / 2);
    assert.ok(goertzelDb(tail, 1000, rate) - goertzelDb(tail, 2500, rate) > 30, `${rate}: tone kept`);
    // The recovered packet carries the tone too.
    const recovered = out.slice(60 * n, 61 * n);
    assert.ok(rms(recovered) > 10000 / Math.SQRT2 / 2, `${rate}: FEC/PLC level ${rms(recovered).toFixed(0)}`);
    assert.equal(dec.conceal(n)!.length, n, 'PLC');
    assert.equal(dec.conceal(n + 1), undefined, 'PLC only in 2.5 ms steps');
    assert.equal(dec.decode(Buffer.from([0x03])), undefined, 'code 3 packet without its count byte');
    assert.equal(dec.decode(Buffer.alloc(0)), undefined);
    enc.close(); dec.close();
    assert.equal(enc.encode(x.subarray(0, n)), undefined, 'closed');
    assert.equal(dec.decode(packets[0]!), undefined, 'closed');
  }
});

test('Opus binding: hundreds of live encoders and decoders (wasm memory grows) keep working', () => {
  const encs = Array.from({ length: 400 }, () => new OpusEncoder(16000, { bitrate: 24000, complexity: 0, fec: false, expectedLossPerc: 0 }));
  const decs = Array.from({ length: 400 }, () => new OpusDecoder(16000));
  const x = tone(440, 16000, 320);
  // Each encoder's first packet, in state that lives among all the others, must be the same.
  const packets = encs.map((e) => e.encode(x)!);
  for (const [i, p] of packets.entries()) {
    assert.ok(p.equals(packets[0]!), `encoder ${i} agrees with the first`);
    assert.equal(decs[i]!.decode(p)!.length, 320);
  }
  for (const e of encs) e.close();
  for (const d of decs) d.close();
});
