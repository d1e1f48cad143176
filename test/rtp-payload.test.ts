// RTP payload (de)packetizers: VP8 (RFC 7741), H.264 (RFC 6184, mode 1), Opus; round trips and
// the depacketizer's handling of reordering and loss.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  Depacketizer, H264Packetizer, Vp8Packetizer, h264Format, joinAnnexB, opusFormat, opusPacketSamples, parseSps,
  parseVp8Descriptor, splitAnnexB, splitAvcc, vp8Format, vp8FrameSize, type Frame, type RtpInput,
} from '../src/engine/local/files/rtp/index.js';

/** A fake VP8 frame: the frame tag's P bit is 0 for keyframes; keyframes carry the start code and size. */
function vp8Frame(n: number, size: number, key: boolean): Buffer {
  const b = Buffer.alloc(size, n & 0xff);
  b[0] = key ? 0x10 : 0x11;
  if (key) {
    b[3] = 0x9d; b[4] = 0x01; b[5] = 0x2a;
    b.writeUInt16LE(640, 6);
    b.writeUInt16LE(480, 8);
  }
  return b;
}

/** Packets of consecutive frames, as a sender makes them (seq from `seq0`, 3000 ticks apart). */
function packetsOf(frames: Buffer[][], seq0 = 65530): RtpInput[] {
  const out: RtpInput[] = [];
  let seq = seq0;
  frames.forEach((payloads, i) => payloads.forEach((payload, j) => {
    out.push({ seq: seq & 0xffff, ts: (0xfffff000 + i * 3000) >>> 0, marker: j === payloads.length - 1, payload });
    seq++;
  }));
  return out;
}

const pushAll = (d: Depacketizer, ps: RtpInput[]): Frame[] => [...ps.flatMap((p) => d.push(p)), ...d.flush()];

test('VP8: descriptor with a 15-bit picture ID, frames split and joined back', () => {
  const pk = new Vp8Packetizer(1000, 0x7ffe);
  const frames = [vp8Frame(1, 3500, true), vp8Frame(2, 800, false), vp8Frame(3, 2000, false)];
  const payloads = frames.map((f) => pk.packetize(f));
  assert.deepEqual(payloads.map((p) => p.length), [4, 1, 3]);
  for (const p of payloads.flat()) assert.ok(p.length <= 1000);
  const d0 = parseVp8Descriptor(payloads[0]![0]!)!;
  assert.equal(d0.start, true);
  assert.equal(d0.pictureId, 0x7ffe);
  assert.equal(parseVp8Descriptor(payloads[0]![1]!)!.start, false);
  assert.equal(parseVp8Descriptor(payloads[2]![0]!)!.pictureId, 0, 'the picture ID wraps at 15 bits');
  const dep = new Depacketizer(vp8Format, { requireKeyframe: true });
  const out = pushAll(dep, packetsOf(payloads));
  assert.equal(out.length, 3);
  out.forEach((f, i) => assert.ok(f.data.equals(frames[i]!)));
  assert.equal(out[0]!.keyframe, true);
  assert.equal(out[1]!.keyframe, false);
  assert.deepEqual(vp8FrameSize(out[0]!.data), { width: 640, height: 480 });
  assert.equal(out[1]!.timestamp, (0xfffff000 + 3000) >>> 0);
});

test('VP8: reordered packets still make whole frames', () => {
  const pk = new Vp8Packetizer(500);
  const frames = [vp8Frame(1, 1800, true), vp8Frame(2, 1200, false), vp8Frame(3, 900, false)];
  const ps = packetsOf(frames.map((f) => pk.packetize(f)));
  // Swap neighbours and move one packet three places later.
  const shuffled = [ps[0]!, ps[2]!, ps[1]!, ps[4]!, ps[5]!, ps[6]!, ps[3]!, ...ps.slice(7)];
  const dep = new Depacketizer(vp8Format, { requireKeyframe: true });
  const out = pushAll(dep, shuffled);
  assert.equal(out.length, 3);
  out.forEach((f, i) => assert.ok(f.data.equals(frames[i]!)));
  assert.equal(dep.stats.dropped, 0);
});

test('VP8: a lost packet drops its frame and the frames after it until a keyframe', () => {
  const pk = new Vp8Packetizer(500);
  const frames = [vp8Frame(1, 1200, true), vp8Frame(2, 1200, false), vp8Frame(3, 300, false), vp8Frame(4, 1200, true), vp8Frame(5, 300, false)];
  const ps = packetsOf(frames.map((f) => pk.packetize(f)));
  const lost = ps.filter((_, i) => i !== 4); // the middle packet of frame 2
  const dep = new Depacketizer(vp8Format, { requireKeyframe: true, reorderWindow: 2 });
  const out = pushAll(dep, lost);
  assert.deepEqual(out.map((f) => f.data[12]), [1, 4, 5].map((n) => n & 0xff));
  assert.ok(dep.stats.losses >= 1);
  assert.ok(dep.stats.dropped >= 2, 'frame 2 (broken) and 3 (no keyframe) dropped');
});

test('VP8: the stream must start with a keyframe; a lost first packet of a frame is no start', () => {
  const pk = new Vp8Packetizer(500);
  const frames = [vp8Frame(1, 300, false), vp8Frame(2, 1200, true), vp8Frame(3, 300, false)];
  const ps = packetsOf(frames.map((f) => pk.packetize(f)));
  const dep = new Depacketizer(vp8Format, { requireKeyframe: true });
  assert.deepEqual(pushAll(dep, ps).map((f) => f.data[12]), [2, 3]);
  // Starting in the middle of a frame: its tail is skipped.
  const dep2 = new Depacketizer(vp8Format, { requireKeyframe: true });
  assert.deepEqual(pushAll(dep2, ps.slice(2)).map((f) => f.data[12]), []);
  assert.equal(dep2.waitingForKeyframe, true);
});

test('VP8: late and duplicate packets are ignored', () => {
  const pk = new Vp8Packetizer(500);
  const frames = [vp8Frame(1, 300, true), vp8Frame(2, 300, false), vp8Frame(3, 300, false)];
  const ps = packetsOf(frames.map((f) => pk.packetize(f)));
  const dep = new Depacketizer(vp8Format, { requireKeyframe: true });
  const out = [...dep.push(ps[0]!), ...dep.push(ps[0]!), ...dep.push(ps[1]!), ...dep.push(ps[0]!), ...dep.push(ps[2]!)];
  assert.equal(out.length, 3);
  assert.equal(dep.stats.late, 2);
});

// An SPS (baseline, 320x240) and PPS as x264 writes them.
const SPS = Buffer.from('6742c00dd90141fb0110000003001000000303c0f142a480', 'hex');
const PPS = Buffer.from('68cb83cb20', 'hex');
/** High profile 1280x720 (with the chroma and bit depth fields baseline lacks). */
const SPS_HIGH = Buffer.from('6764001facd9405005bb0110000003001000000303c0f1831960', 'hex');

test('H.264: the SPS gives the picture size and codec string', () => {
  assert.deepEqual(parseSps(SPS), { width: 320, height: 240, codec: 'avc1.42c00d' });
  assert.deepEqual(parseSps(SPS_HIGH), { width: 1280, height: 720, codec: 'avc1.64001f' });
});

test('H.264: STAP-A for small NAL units, FU-A for large ones, single NAL otherwise; round trip', () => {
  const idr = Buffer.alloc(5000, 0x33);
  idr[0] = 0x65;
  const p = Buffer.alloc(900, 0x44);
  p[0] = 0x41;
  const pk = new H264Packetizer(1200);
  const au1 = pk.packetize([SPS, PPS, idr]);
  assert.equal(au1[0]![0]! & 0x1f, 24, 'SPS+PPS aggregated');
  assert.ok(au1.slice(1).every((x) => (x[0]! & 0x1f) === 28), 'the IDR fragmented');
  assert.equal(au1[1]![1]! & 0x80, 0x80, 'FU start');
  assert.equal(au1[au1.length - 1]![1]! & 0x40, 0x40, 'FU end');
  for (const x of au1) assert.ok(x.length <= 1200);
  const au2 = pk.packetize([p]);
  assert.equal(au2.length, 1);
  assert.equal(au2[0]![0]! & 0x1f, 1, 'single NAL unit');
  const dep = new Depacketizer(h264Format, { requireKeyframe: true });
  const out = pushAll(dep, packetsOf([au1, au2]));
  assert.equal(out.length, 2);
  assert.equal(out[0]!.keyframe, true);
  assert.deepEqual(splitAnnexB(out[0]!.data).map((n) => n.toString('hex')), [SPS, PPS, idr].map((n) => n.toString('hex')));
  assert.ok(out[1]!.data.equals(joinAnnexB([p])));
  assert.equal(out[1]!.keyframe, false);
});

test('H.264: a lost FU-A fragment drops the access unit; deltas wait for the next IDR', () => {
  const idr = Buffer.alloc(3000, 0x33);
  idr[0] = 0x65;
  const delta = Buffer.alloc(2500, 0x44);
  delta[0] = 0x41;
  const pk = new H264Packetizer(1000);
  const aus = [pk.packetize([SPS, PPS, idr]), pk.packetize([delta]), pk.packetize([delta]), pk.packetize([SPS, PPS, idr])];
  const ps = packetsOf(aus);
  const firstOfDelta = aus[0]!.length;
  const lossy = ps.filter((_, i) => i !== firstOfDelta + 1);
  const dep = new Depacketizer(h264Format, { requireKeyframe: true, reorderWindow: 3 });
  const out = pushAll(dep, lossy);
  assert.deepEqual(out.map((f) => f.keyframe), [true, true]);
});

test('H.264: Annex B and AVCC framings', () => {
  const nals = [SPS, PPS, Buffer.from([0x65, 1, 2, 3])];
  assert.deepEqual(splitAnnexB(joinAnnexB(nals)).map((n) => n.toString('hex')), nals.map((n) => n.toString('hex')));
  // 3-byte start codes too.
  const three = Buffer.concat([Buffer.from([0, 0, 1]), SPS, Buffer.from([0, 0, 1]), PPS]);
  assert.equal(splitAnnexB(three).length, 2);
  const avcc = Buffer.concat(nals.flatMap((n) => { const l = Buffer.alloc(4); l.writeUInt32BE(n.length); return [l, n]; }));
  assert.deepEqual(splitAvcc(avcc).map((n) => n.toString('hex')), nals.map((n) => n.toString('hex')));
});

test('Opus: one packet per frame; loss leaves a gap, nothing waits', () => {
  const frames = Array.from({ length: 10 }, (_, i) => Buffer.from([0x78, i, i, i]));
  const ps = frames.map((f, i) => ({ seq: (65534 + i) & 0xffff, ts: i * 960, marker: false, payload: f }));
  const dep = new Depacketizer(opusFormat, { requireKeyframe: false, reorderWindow: 3 });
  const reordered = [ps[0]!, ps[2]!, ps[1]!, ps[3]!, ps[5]!, ps[6]!, ps[7]!, ps[8]!, ps[9]!]; // 4 lost
  const out = pushAll(dep, reordered);
  assert.deepEqual(out.map((f) => f.data[1]), [0, 1, 2, 3, 5, 6, 7, 8, 9]);
  assert.deepEqual(out.map((f) => f.timestamp), [0, 1, 2, 3, 5, 6, 7, 8, 9].map((i) => i * 960));
  // TOC config 15 (hybrid FB 20 ms), code 0: 960 samples; code 3 with 3 frames of 2.5 ms (config 16).
  assert.equal(opusPacketSamples(Buffer.from([0x78])), 960);
  assert.equal(opusPacketSamples(Buffer.from([0x83, 3])), 360);
});
