// VP8 over RTP (RFC 7741): the payload descriptor, packetizing a frame into payloads and
// joining payloads back into a frame, plus the few facts of the VP8 frame header we need.
import type { PayloadFormat } from './depacketizer.js';

export interface Vp8Descriptor {
  /** Start of a VP8 partition. */
  start: boolean;
  partitionId: number;
  pictureId?: number;
  /** Length of the descriptor: the VP8 data begins here. */
  size: number;
}

/** Parses the payload descriptor; undefined when the payload is too short for it. */
export function parseVp8Descriptor(p: Buffer): Vp8Descriptor | undefined {
  if (p.length < 1) return undefined;
  const b0 = p[0]!;
  let i = 1;
  let pictureId: number | undefined;
  if (b0 & 0x80) {
    if (p.length < 2) return undefined;
    const b1 = p[i++]!;
    if (b1 & 0x80) {
      if (p.length < i + 1) return undefined;
      if (p[i]! & 0x80) {
        if (p.length < i + 2) return undefined;
        pictureId = ((p[i]! & 0x7f) << 8) | p[i + 1]!;
        i += 2;
      } else {
        pictureId = p[i]! & 0x7f;
        i += 1;
      }
    }
    if (b1 & 0x40) i++; // TL0PICIDX
    if (b1 & 0x30) i++; // TID/Y/KEYIDX
  }
  if (i > p.length) return undefined;
  return { start: (b0 & 0x10) !== 0, partitionId: b0 & 0x0f, pictureId, size: i };
}

/** Whether a VP8 frame (not an RTP payload) is a keyframe: bit 0 of the frame tag is 0. */
export function isVp8KeyframeData(frame: Buffer): boolean {
  return frame.length >= 3 && (frame[0]! & 0x01) === 0;
}

/** Width and height from a VP8 keyframe's header (RFC 6386 §9.1); undefined for other frames. */
export function vp8FrameSize(frame: Buffer): { width: number; height: number } | undefined {
  if (!isVp8KeyframeData(frame) || frame.length < 10) return undefined;
  if (frame[3] !== 0x9d || frame[4] !== 0x01 || frame[5] !== 0x2a) return undefined;
  return { width: frame.readUInt16LE(6) & 0x3fff, height: frame.readUInt16LE(8) & 0x3fff };
}

/**
 * Cuts VP8 frames into RTP payloads of at most `maxPayload` bytes. Each carries a descriptor
 * with a 15-bit picture ID (receivers use it to tell frames apart and notice lost ones).
 */
export class Vp8Packetizer {
  private pictureId: number;

  constructor(private readonly maxPayload = 1200, firstPictureId = Math.floor(Math.random() * 0x8000)) {
    this.pictureId = firstPictureId & 0x7fff;
  }

  packetize(frame: Buffer): Buffer[] {
    const room = this.maxPayload - 4;
    if (room <= 0) throw new RangeError('maxPayload too small for VP8');
    const out: Buffer[] = [];
    const pid = this.pictureId;
    this.pictureId = (this.pictureId + 1) & 0x7fff;
    for (let off = 0; off < frame.length || out.length === 0; off += room) {
      const chunk = frame.subarray(off, off + room);
      const p = Buffer.allocUnsafe(4 + chunk.length);
      p[0] = 0x80 | (off === 0 ? 0x10 : 0); // X, S on the first, partition 0
      p[1] = 0x80; // I: a picture ID follows
      p[2] = 0x80 | (pid >> 8); // M: 15 bits
      p[3] = pid & 0xff;
      chunk.copy(p, 4);
      out.push(p);
      if (frame.length === 0) break;
    }
    return out;
  }
}

/** VP8 for the depacketizer: a frame starts at S=1 with partition 0. */
export const vp8Format: PayloadFormat = {
  isFrameStart(payload) {
    const d = parseVp8Descriptor(payload);
    return !!d && d.start && d.partitionId === 0;
  },
  assemble(payloads) {
    const parts: Buffer[] = [];
    for (const [i, p] of payloads.entries()) {
      const d = parseVp8Descriptor(p);
      if (!d) return null;
      if (i === 0 && !(d.start && d.partitionId === 0)) return null;
      parts.push(p.subarray(d.size));
    }
    const data = Buffer.concat(parts);
    if (data.length === 0) return null;
    return { data, keyframe: isVp8KeyframeData(data) };
  },
};
