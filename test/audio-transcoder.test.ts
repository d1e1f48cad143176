// AudioTranscoder: codec chains keep a tone, packet counts and timestamps follow real time,
// re-framing, loss (PLC/FEC), jumps (resync, not a flood), reordering, duplicates, wrap-around,
// sequence restarts, garbage, and a property test that push never throws. Where ffmpeg is
// installed, the Opus it produces is decoded by ffmpeg from an Ogg file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fc from 'fast-check';
import {
  AudioTranscoder, codecFromMime, rtpClockRate, type AudioCodecName, type TranscodedPacket,
} from '../src/engine/local/audio/index.js';
import { alawDecode, alawEncode, ulawDecode, ulawEncode } from '../src/engine/local/audio/g711.js';
import { G722Decoder, G722Encoder } from '../src/engine/local/audio/g722.js';
import { OpusDecoder, OpusEncoder } from '../src/engine/local/audio/opus.js';

const hasFfmpeg = spawnSync('ffmpeg', ['-version']).status === 0;

interface Rtp { payload: Buffer; seq: number; ts: number; marker: boolean }

function tone(freq: number, rate: number, seconds: number, amp = 8000): Int16Array {
  const n = Math.round(rate * seconds);
  const a = new Int16Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.round(amp * Math.sin((2 * Math.PI * freq * i) / rate));
  return a;
}
function goertzelDb(x: ArrayLike<number>, freq: number, rate: number): number {
  const c = 2 * Math.cos((2 * Math.PI * freq) / rate);
  let s1 = 0, s2 = 0;
  for (let i = 0; i < x.length; i++) { const s = x[i]! + c * s1 - s2; s2 = s1; s1 = s; }
  return 10 * Math.log10((s1 * s1 + s2 * s2 - c * s1 * s2) / (x.length * x.length) + 1e-12);
}
/** The strongest frequency on a 10 Hz grid up to just below Nyquist. */
function dominant(x: ArrayLike<number>, rate: number): number {
  let best = 0, bestDb = -Infinity;
  for (let f = 50; f < rate / 2 - 100; f += 10) {
    const db = goertzelDb(x, f, rate);
    if (db > bestDb) { bestDb = db; best = f; }
  }
  return best;
}
function rmsDb(x: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i]! ** 2;
  return 10 * Math.log10(s / x.length + 1e-12);
}

/** What a sender of `codec` puts on the wire for `pcm` (at the codec's own rate; Opus 48 kHz). */
function send(codec: AudioCodecName, pcm: Int16Array, ptimeMs = 20, seq0 = 1000, ts0 = 123456): Rtp[] {
  const clock = rtpClockRate(codec);
  const rate = codec === 'G722' ? 16000 : codec === 'opus' ? 48000 : 8000;
  const n = (rate * ptimeMs) / 1000;
  const opus = codec === 'opus' ? new OpusEncoder(48000, { bitrate: 32000, complexity: 5, fec: true, expectedLossPerc: 10 }) : undefined;
  const g722 = new G722Encoder();
  const out: Rtp[] = [];
  for (let i = 0, k = 0; i + n <= pcm.length; i += n, k++) {
    const frame = pcm.subarray(i, i + n);
    let payload: Buffer;
    if (codec === 'opus') payload = opus!.encode(frame)!;
    else if (codec === 'G722') { payload = Buffer.alloc(n / 2); g722.encode(frame, payload); }
    else { payload = Buffer.alloc(n); (codec === 'PCMU' ? ulawEncode : alawEncode)(frame, payload); }
    out.push({ payload, seq: (seq0 + k) & 0xffff, ts: (ts0 + ((k * n * clock) / rate)) >>> 0, marker: k === 0 });
  }
  opus?.close();
  return out;
}

/** Feeds packets through a transcoder; outputs get consecutive sequence numbers, as an endpoint would give. */
function run(t: AudioTranscoder, packets: Rtp[]): { out: TranscodedPacket[]; perPush: number[] } {
  const out: TranscodedPacket[] = [];
  const perPush: number[] = [];
  for (const p of packets) {
    const r = t.push(p.payload, p.seq, p.ts, p.marker);
    perPush.push(r.length);
    out.push(...r);
  }
  return { out, perPush };
}
const asRtp = (ps: TranscodedPacket[], seq0 = 40000): Rtp[] =>
  ps.map((p, i) => ({ payload: p.payload, seq: (seq0 + i) & 0xffff, ts: p.timestamp, marker: p.marker }));

/** Decodes what a receiver of `codec` gets, each packet placed by its timestamp (8 or 16 kHz). */
function receive(codec: AudioCodecName, ps: TranscodedPacket[]): { pcm: Int16Array; rate: number } {
  const rate = codec === 'G722' || codec === 'opus' ? 16000 : 8000;
  const perTick = rate / rtpClockRate(codec);
  const opus = codec === 'opus' ? new OpusDecoder(16000) : undefined;
  const g722 = new G722Decoder();
  const placed = ps.map((p) => {
    let s: Int16Array;
    if (codec === 'opus') s = opus!.decode(p.payload)!;
    else if (codec === 'G722') { s = new Int16Array(p.payload.length * 2); g722.decode(p.payload, s); }
    else { s = new Int16Array(p.payload.length); (codec === 'PCMU' ? ulawDecode : alawDecode)(p.payload, s); }
    return { at: ((p.timestamp - ps[0]!.timestamp) >>> 0) * perTick, s };
  });
  opus?.close();
  const pcm = new Int16Array(placed.reduce((m, p) => Math.max(m, p.at + p.s.length), 0));
  for (const p of placed) pcm.set(p.s, p.at);
  return { pcm, rate };
}

/** Timestamp steps between consecutive packets (mod 2^32). */
const steps = (ps: TranscodedPacket[]): number[] => ps.slice(1).map((p, i) => (p.timestamp - ps[i]!.timestamp) >>> 0);

test('codecFromMime and rtpClockRate', () => {
  assert.equal(codecFromMime('audio/PCMU'), 'PCMU');
  assert.equal(codecFromMime('AUDIO/pcma'), 'PCMA');
  assert.equal(codecFromMime('audio/g722'), 'G722');
  assert.equal(codecFromMime('audio/OPUS'), 'opus');
  assert.equal(codecFromMime('audio/G729'), undefined);
  assert.equal(codecFromMime('video/VP8'), undefined);
  assert.deepEqual((['PCMU', 'PCMA', 'G722', 'opus'] as const).map(rtpClockRate), [8000, 8000, 8000, 48000]);
  assert.throws(() => new AudioTranscoder('PCMU', 'opus', { ptimeMs: 30 }), RangeError);
  assert.throws(() => new AudioTranscoder('toString' as AudioCodecName, 'opus'), RangeError);
});

for (const freq of [440, 1000]) {
  test(`PCMU → Opus → PCMU keeps a ${freq} Hz tone; 50 packets/s in, 50 out, steps 960 then 160`, () => {
    const input = tone(freq, 8000, 2);
    const a = new AudioTranscoder('PCMU', 'opus');
    const b = new AudioTranscoder('opus', 'PCMU');
    const sent = send('PCMU', input);
    const { out: opus, perPush } = run(a, sent);
    assert.equal(sent.length, 100);
    assert.equal(opus.length, 100);
    assert.ok(perPush.every((n) => n === 1), 'one packet out per packet in');
    assert.ok(steps(opus).every((s) => s === 960));
    assert.deepEqual(opus.map((p) => p.marker), [true, ...Array(99).fill(false)]);
    const { out: back } = run(b, asRtp(opus));
    assert.equal(back.length, 100);
    assert.ok(steps(back).every((s) => s === 160));
    assert.ok(back.every((p) => p.payload.length === 160));
    const { pcm } = receive('PCMU', back);
    const tail = pcm.subarray(2000);
    assert.ok(Math.abs(dominant(tail, 8000) - freq) <= 10, `dominant ${dominant(tail, 8000)} Hz`);
    const level = rmsDb(tail) - rmsDb(input.subarray(2000));
    assert.ok(Math.abs(level) < 3, `level ${level.toFixed(2)} dB`);
    a.close(); b.close();
  });
}

test('G722 → Opus → PCMA keeps 440 Hz and 1000 Hz tones', () => {
  for (const freq of [440, 1000]) {
    const input = tone(freq, 16000, 2);
    const a = new AudioTranscoder('G722', 'opus');
    const b = new AudioTranscoder('opus', 'PCMA');
    const { out: opus } = run(a, send('G722', input));
    assert.equal(opus.length, 100);
    assert.ok(steps(opus).every((s) => s === 960));
    const { out: back } = run(b, asRtp(opus));
    assert.equal(back.length, 100);
    assert.ok(steps(back).every((s) => s === 160));
    const { pcm } = receive('PCMA', back);
    const tail = pcm.subarray(2000);
    assert.ok(Math.abs(dominant(tail, 8000) - freq) <= 10, `${freq}: dominant ${dominant(tail, 8000)} Hz`);
    const level = rmsDb(tail) - rmsDb(input.subarray(4000));
    assert.ok(Math.abs(level) < 3, `${freq}: level ${level.toFixed(2)} dB`);
    a.close(); b.close();
  }
});

test('Opus (a browser at 48 kHz) → G722 and → PCMU keep the tone, RTP clock 8000 for both', () => {
  const sent = send('opus', tone(1000, 48000, 2));
  for (const to of ['G722', 'PCMU'] as const) {
    const t = new AudioTranscoder('opus', to);
    const { out } = run(t, sent);
    assert.equal(out.length, 100);
    assert.ok(steps(out).every((s) => s === 160), `${to} steps 160`);
    assert.ok(out.every((p) => p.payload.length === 160), `${to}: 160 octets per 20 ms`);
    const { pcm, rate } = receive(to, out);
    const tail = pcm.subarray(rate / 4);
    assert.ok(Math.abs(dominant(tail, rate) - 1000) <= 10, `${to}: dominant ${dominant(tail, rate)}`);
    t.close();
  }
});

test('PCMU ↔ G722 (resampled 8k ↔ 16k) keeps the tone', () => {
  const a = new AudioTranscoder('PCMU', 'G722');
  const b = new AudioTranscoder('G722', 'PCMU');
  const { out: g } = run(a, send('PCMU', tone(1000, 8000, 1)));
  assert.equal(g.length, 50);
  const { out: back } = run(b, asRtp(g));
  assert.equal(back.length, 50);
  const { pcm } = receive('PCMU', back);
  assert.equal(dominant(pcm.subarray(1000), 8000), 1000);
  a.close(); b.close();
});

test('re-framing: 30 ms PCMU → 20 ms Opus, 60 ms Opus → 20 ms PCMU, 10 ms → 20 ms, 40 ms Opus out', () => {
  const pcmu30 = send('PCMU', tone(440, 8000, 3), 30);
  assert.equal(pcmu30.length, 100);
  const a = new AudioTranscoder('PCMU', 'opus');
  const { out, perPush } = run(a, pcmu30);
  assert.equal(out.length, 150);
  assert.deepEqual(perPush.slice(0, 4), [1, 2, 1, 2]);
  assert.ok(steps(out).every((s) => s === 960));

  const opus60 = send('opus', tone(440, 48000, 3), 60);
  const b = new AudioTranscoder('opus', 'PCMU');
  const r = run(b, opus60);
  assert.equal(r.out.length, 150);
  assert.ok(r.perPush.every((n) => n === 3));
  assert.ok(steps(r.out).every((s) => s === 160));

  const c = new AudioTranscoder('PCMU', 'G722');
  const r10 = run(c, send('PCMU', tone(440, 8000, 1), 10));
  assert.equal(r10.out.length, 50);
  assert.ok(steps(r10.out).every((s) => s === 160));

  const d = new AudioTranscoder('PCMU', 'opus', { ptimeMs: 40 });
  const r40 = run(d, send('PCMU', tone(440, 8000, 2)));
  assert.equal(r40.out.length, 50);
  assert.ok(steps(r40.out).every((s) => s === 1920));
  for (const t of [a, b, c, d]) t.close();
});

test('lost packets are filled (PCMU: silence, Opus: FEC/PLC): output stays continuous in time', () => {
  const pcmu = send('PCMU', tone(440, 8000, 2)).filter((_, i) => i !== 10 && i !== 11 && i !== 40);
  const a = new AudioTranscoder('PCMU', 'opus');
  const { out, perPush } = run(a, pcmu);
  assert.equal(out.length, 100, 'the three missing 20 ms are sent as filler');
  assert.equal(perPush[10], 3, 'two filler packets and the packet itself');
  assert.equal(a.stats.concealedMs, 60);
  assert.ok(steps(out).every((s) => s === 960));
  assert.ok(out.slice(1).every((p) => !p.marker));

  const opus = send('opus', tone(1000, 48000, 2)).filter((_, i) => i !== 30 && i !== 60 && i !== 61);
  const b = new AudioTranscoder('opus', 'PCMU');
  const r = run(b, opus);
  assert.equal(r.out.length, 100);
  assert.ok(steps(r.out).every((s) => s === 160));
  const { pcm } = receive('PCMU', r.out);
  // The concealed 20 ms (FEC for a single loss) still carries the tone, not silence.
  const lost = pcm.subarray(30 * 160, 31 * 160);
  assert.ok(rmsDb(lost) > rmsDb(pcm.subarray(2000, 4000)) - 6, `concealed level ${rmsDb(lost).toFixed(1)} dB`);
  a.close(); b.close();
});

test('a long silence (timestamp jump, sequence continuous) resyncs: no flood, marker, time kept', () => {
  const first = send('PCMU', tone(440, 8000, 1));
  const later = send('PCMU', tone(440, 8000, 1), 20, 1000 + first.length, 123456 + 8000 * 6);  // 5 s of silence
  const a = new AudioTranscoder('PCMU', 'opus');
  const r = run(a, [...first, ...later]);
  assert.ok(r.perPush.every((n) => n <= 1), 'never more than one packet per push');
  assert.equal(r.out.length, 100);
  const jumpAt = r.out.findIndex((p, i) => i > 0 && p.marker);
  assert.equal(jumpAt, 50);
  assert.equal((r.out[50]!.timestamp - r.out[49]!.timestamp) >>> 0, 960 + 5 * 48000, 'the output clock moved 5 s too');
  assert.ok(steps(r.out).filter((s) => s !== 960).length === 1);

  // Opus DTX from a browser: 400 ms hops during silence; PCMU out resyncs at each, no filler.
  const talk = send('opus', tone(1000, 48000, 1));
  const dtx = [1, 2, 3].map((k) => ({ ...talk.at(-1)!, seq: (talk.at(-1)!.seq + k) & 0xffff, ts: (talk.at(-1)!.ts + k * 19200) >>> 0, payload: Buffer.from([0xf8]) }));
  const b = new AudioTranscoder('opus', 'PCMU');
  const rb = run(b, [...talk, ...dtx]);
  assert.ok(rb.perPush.every((n) => n <= 2));
  assert.equal(rb.out.filter((p) => p.marker).length, 4, 'first packet and after each hop');
  a.close(); b.close();
});

test('reordered packets: the late one is dropped; duplicates are dropped; timestamps only go forward', () => {
  const sent = send('PCMU', tone(440, 8000, 1));
  const order = [...sent.slice(0, 10), sent[11]!, sent[10]!, sent[12]!, sent[12]!, ...sent.slice(13)];
  const a = new AudioTranscoder('PCMU', 'opus');
  const r = run(a, order);
  assert.equal(r.out.length, 50);
  assert.equal(r.perPush[11], 0, 'late packet');
  assert.equal(r.perPush[13], 0, 'duplicate');
  assert.equal(a.stats.dropped, 2);
  assert.ok(steps(r.out).every((s) => s === 960));
  a.close();
});

test('sequence and timestamp wrap-around are seamless', () => {
  const sent = send('PCMU', tone(440, 8000, 2), 20, 65500, 2 ** 32 - 8000);
  const a = new AudioTranscoder('PCMU', 'opus');
  const r = run(a, sent);
  assert.equal(r.out.length, 100);
  assert.ok(steps(r.out).every((s) => s === 960));
  assert.equal(r.out.filter((p) => p.marker).length, 1);
  const b = new AudioTranscoder('opus', 'PCMU');
  const rb = run(b, asRtp(r.out, 65530).map((p) => ({ ...p, ts: (p.ts + 2 ** 32 - 48000 - r.out[0]!.timestamp) >>> 0 })));
  assert.equal(rb.out.length, 100);
  assert.ok(steps(rb.out).every((s) => s === 160));
  a.close(); b.close();
});

test('a sender restart (sequence jump) is followed once confirmed; a single stray packet is ignored', () => {
  const sent = send('PCMU', tone(440, 8000, 1));
  const stray = { ...sent[20]!, seq: (sent[20]!.seq + 20000) & 0xffff };
  const restarted = send('PCMU', tone(440, 8000, 1), 20, 7, 999);
  const a = new AudioTranscoder('PCMU', 'opus');
  const r = run(a, [...sent.slice(0, 20), stray, ...sent.slice(20, 30), ...restarted]);
  assert.equal(r.perPush[20], 0, 'stray dropped');
  assert.ok(r.perPush.slice(21, 31).every((n) => n === 1), 'the stream goes on');
  assert.equal(r.perPush[31], 0, 'first packet of the new sequence waits for confirmation');
  assert.equal(r.out.filter((p) => p.marker).length, 2);
  assert.equal(r.out.length, 30 + 49);
  assert.equal(a.stats.resyncs, 1);
  assert.ok(steps(r.out).every((s) => s >= 960 && s < 960 * 4), 'forward, without a time jump');
  a.close();
});

test('garbage and empty payloads: nothing thrown, dropped, and covered as lost audio', () => {
  const sent = send('opus', tone(1000, 48000, 1));
  const bad = [Buffer.from([0x03]), Buffer.alloc(0), Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff]), Buffer.alloc(2000, 0x7b)];
  const mixed = sent.map((p, i) => (i % 10 === 5 ? { ...p, payload: bad[(i / 10) % bad.length | 0]! } : p));
  const b = new AudioTranscoder('opus', 'PCMU');
  const r = run(b, mixed);
  assert.ok(r.out.length >= 49 && r.out.length <= 50, `${r.out.length} packets`);
  assert.ok(steps(r.out).every((s) => s === 160));
  assert.equal(b.stats.invalid, 5);
  assert.equal(b.stats.faults, 0);
  const a = new AudioTranscoder('PCMU', 'opus');
  assert.deepEqual(a.push(Buffer.alloc(0), 1, 0, false), []);
  assert.deepEqual(a.push(null as unknown as Buffer, 2, 0, false), []);
  assert.equal(a.push(Buffer.alloc(160, 0xff), 3, 160, false).length, 1);
  a.close(); b.close();
  assert.deepEqual(a.push(Buffer.alloc(160, 0xff), 4, 320, false), [], 'closed');
});

test('property: push never throws, and what comes out is well-formed and moves forward in time', () => {
  const pairs: [AudioCodecName, AudioCodecName][] = [['PCMU', 'opus'], ['opus', 'PCMU'], ['G722', 'PCMA'], ['opus', 'G722'], ['PCMA', 'G722']];
  const validOpus = send('opus', tone(700, 48000, 0.2)).map((p) => p.payload);
  const payload = fc.oneof(
    fc.uint8Array({ maxLength: 400 }).map((a) => Buffer.from(a)),
    fc.constantFrom(...validOpus),
  );
  const num = fc.oneof(fc.integer(), fc.double(), fc.integer({ min: 0, max: 2 ** 32 - 1 }), fc.constantFrom(NaN, -1, 2 ** 40, Infinity));
  const packet = fc.record({ payload, seq: fc.oneof(num, fc.integer({ min: 0, max: 70 })), ts: num, marker: fc.boolean() });
  fc.assert(fc.property(fc.constantFrom(...pairs), fc.array(packet, { maxLength: 40 }), ([from, to], packets) => {
    const t = new AudioTranscoder(from, to);
    let last: number | undefined;
    try {
      for (const p of packets) {
        for (const o of t.push(p.payload, p.seq, p.ts, p.marker)) {
          assert.ok(Buffer.isBuffer(o.payload) && o.payload.length > 0);
          assert.ok(Number.isInteger(o.timestamp) && o.timestamp >= 0 && o.timestamp < 2 ** 32);
          if (last !== undefined) assert.ok(((o.timestamp - last) | 0) > 0, 'forward');
          last = o.timestamp;
        }
      }
      assert.equal(t.stats.faults, 0, 'no internal error was swallowed');
    } finally {
      t.close();
    }
  }), { numRuns: 150 });
});

test('property: a realistic stream with loss, reordering and duplicates keeps one packet per 20 ms', () => {
  const sent = send('PCMU', tone(440, 8000, 2));
  fc.assert(fc.property(fc.array(fc.constantFrom('ok', 'ok', 'ok', 'lose', 'swap', 'dup'), { minLength: 100, maxLength: 100 }), (fate) => {
    const order: Rtp[] = [];
    // Holes stay within what is filled (120 ms: six packets, counting one a swap delays); a
    // longer one makes the output clock jump instead, by design (tested on its own above).
    let lostRun = 0;
    for (let i = 0; i < sent.length; i++) {
      let f = i === 0 ? 'ok' : fate[i];   // the stream starts with its first packet
      if (f === 'lose' && lostRun >= 5) f = 'ok';
      lostRun = f === 'lose' ? lostRun + 1 : 0;
      if (f === 'lose' && i > 0 && i < sent.length - 1) continue;
      if (f === 'swap' && i + 1 < sent.length && order.at(-1) !== sent[i + 1]) { order.push(sent[i + 1]!, sent[i]!); i++; continue; }
      order.push(sent[i]!);
      if (f === 'dup') order.push(sent[i]!);
    }
    const t = new AudioTranscoder('PCMU', 'opus');
    const { out } = run(t, order);
    t.close();
    assert.equal(t.stats.faults, 0);
    assert.equal(t.stats.packetsOut, out.length);
    // Every 20 ms up to the last packet is covered exactly once, at exact 960 steps.
    assert.equal(out.length, 100);
    assert.ok(steps(out).every((s) => s === 960));
  }), { numRuns: 60 });
});

/** A minimal Ogg Opus file (RFC 7845) of mono packets, 20 ms each. */
function oggOpus(packets: Buffer[], inputRate: number): Buffer {
  const crcTable = new Uint32Array(256).map((_, i) => {
    let r = i << 24;
    for (let k = 0; k < 8; k++) r = r & 0x80000000 ? (r << 1) ^ 0x04c11db7 : r << 1;
    return r >>> 0;
  });
  const pages: Buffer[] = [];
  let seq = 0;
  const page = (data: Buffer, granule: bigint, flags: number): void => {
    const lacing: number[] = [];
    let n = data.length;
    for (; n >= 255; n -= 255) lacing.push(255);
    lacing.push(n);
    const h = Buffer.alloc(27 + lacing.length);
    h.write('OggS', 0); h[4] = 0; h[5] = flags;
    h.writeBigInt64LE(granule, 6); h.writeUInt32LE(0x4e4b4d41, 14); h.writeUInt32LE(seq++, 18);
    h[26] = lacing.length; lacing.forEach((l, i) => { h[27 + i] = l; });
    const p = Buffer.concat([h, data]);
    let crc = 0;
    for (const byte of p) crc = ((crc << 8) ^ crcTable[((crc >>> 24) ^ byte) & 0xff]!) >>> 0;
    p.writeUInt32LE(crc, 22);
    pages.push(p);
  };
  const head = Buffer.alloc(19);
  head.write('OpusHead', 0); head[8] = 1; head[9] = 1; head.writeUInt16LE(0, 10); head.writeUInt32LE(inputRate, 12);
  page(head, 0n, 0x02);
  const vendor = 'nkmedia-ts test';
  const tags = Buffer.alloc(8 + 4 + vendor.length + 4);
  tags.write('OpusTags', 0); tags.writeUInt32LE(vendor.length, 8); tags.write(vendor, 12);
  page(tags, 0n, 0);
  packets.forEach((p, i) => page(p, BigInt((i + 1) * 960), i === packets.length - 1 ? 0x04 : 0));
  return Buffer.concat(pages);
}

test('ffmpeg decodes the Opus made from PCMU and from G722 and hears the tone', { skip: !hasFfmpeg && 'no ffmpeg' }, () => {
  for (const [from, input] of [['PCMU', tone(440, 8000, 2)], ['G722', tone(1000, 16000, 2)]] as const) {
    const t = new AudioTranscoder(from, 'opus');
    const { out } = run(t, send(from, input));
    t.close();
    const ogg = oggOpus(out.map((p) => p.payload), from === 'G722' ? 16000 : 8000);
    const raw = execFileSync('ffmpeg', ['-v', 'error', '-xerror', '-f', 'ogg', '-i', '-', '-f', 's16le', '-ac', '1', '-ar', '8000', '-'], { input: ogg });
    const pcm = new Int16Array(raw.buffer, raw.byteOffset, raw.length >> 1);
    assert.ok(Math.abs(pcm.length - 16000) <= 160, `${from}: ${pcm.length} samples for 2 s`);
    const want = from === 'G722' ? 1000 : 440;
    const tail = pcm.subarray(2000, 15000);
    assert.ok(Math.abs(dominant(tail, 8000) - want) <= 10, `${from}: dominant ${dominant(tail, 8000)} Hz`);
    assert.ok(Math.abs(rmsDb(tail) - rmsDb(input.subarray(4000))) < 3);
  }
});
