// H.264 over RTP (RFC 6184, packetization-mode 1): single NAL unit packets, STAP-A
// aggregation of small NAL units (SPS/PPS), FU-A fragmentation of large ones. Also the NAL
// unit framings files use (Annex B start codes, AVCC length prefixes) and the SPS facts a
// container needs (size, codec string).
import type { PayloadFormat } from './depacketizer.js';

const STAP_A = 24;
const FU_A = 28;
export const NAL_IDR = 5;
export const NAL_SPS = 7;
export const NAL_PPS = 8;
export const NAL_AUD = 9;

export const nalType = (nal: Buffer): number => nal[0]! & 0x1f;

/** Splits Annex B data (start-code separated) into NAL units. */
export function splitAnnexB(data: Buffer): Buffer[] {
  const nals: Buffer[] = [];
  let start = -1;
  let i = 0;
  while (i + 2 < data.length) {
    if (data[i] === 0 && data[i + 1] === 0 && data[i + 2] === 1) {
      if (start >= 0) {
        // A 4-byte start code's leading zero belongs to it, not to the NAL before.
        let end = i;
        if (end > start && data[end - 1] === 0) end--;
        if (end > start) nals.push(data.subarray(start, end));
      }
      i += 3;
      start = i;
    } else {
      i++;
    }
  }
  if (start >= 0 && start < data.length) nals.push(data.subarray(start));
  return nals;
}

export function joinAnnexB(nals: Buffer[]): Buffer {
  const code = Buffer.from([0, 0, 0, 1]);
  return Buffer.concat(nals.flatMap((n) => [code, n]));
}

/** Splits length-prefixed (AVCC, as in MP4/Matroska) data into NAL units. */
export function splitAvcc(data: Buffer, lengthSize = 4): Buffer[] {
  const nals: Buffer[] = [];
  let i = 0;
  while (i + lengthSize <= data.length) {
    const n = data.readUIntBE(i, lengthSize);
    i += lengthSize;
    if (n === 0 || i + n > data.length) break;
    nals.push(data.subarray(i, i + n));
    i += n;
  }
  return nals;
}

/** The avcC record (the "description" of H.264 in MP4/Matroska): SPS, PPS and the NAL length size. */
export function parseAvcC(avcc: Buffer): { lengthSize: number; sps: Buffer[]; pps: Buffer[] } {
  if (avcc.length < 7 || avcc[0] !== 1) throw new Error('not an avcC record');
  const lengthSize = (avcc[4]! & 0x03) + 1;
  let i = 5;
  const sps: Buffer[] = [];
  const pps: Buffer[] = [];
  const nSps = avcc[i++]! & 0x1f;
  for (let k = 0; k < nSps && i + 2 <= avcc.length; k++) {
    const n = avcc.readUInt16BE(i);
    sps.push(avcc.subarray(i + 2, i + 2 + n));
    i += 2 + n;
  }
  const nPps = i < avcc.length ? avcc[i++]! : 0;
  for (let k = 0; k < nPps && i + 2 <= avcc.length; k++) {
    const n = avcc.readUInt16BE(i);
    pps.push(avcc.subarray(i + 2, i + 2 + n));
    i += 2 + n;
  }
  return { lengthSize, sps, pps };
}

/**
 * Cuts an access unit (its NAL units) into RTP payloads of at most `maxPayload` bytes:
 * consecutive small NAL units share a STAP-A, a NAL unit too large for one packet becomes FU-A
 * fragments, the rest go as single NAL unit packets. The last payload gets the marker bit.
 */
export class H264Packetizer {
  constructor(private readonly maxPayload = 1200) {}

  packetize(nals: Buffer[]): Buffer[] {
    const out: Buffer[] = [];
    let stap: Buffer[] = [];
    let stapSize = 1;
    const flushStap = () => {
      if (stap.length === 1) out.push(stap[0]!);
      else if (stap.length > 1) {
        // F is the OR of the parts', NRI their maximum (RFC 6184 §5.7.1).
        let f = 0;
        let nri = 0;
        for (const n of stap) { f |= n[0]! & 0x80; nri = Math.max(nri, n[0]! & 0x60); }
        const parts: Buffer[] = [Buffer.from([f | nri | STAP_A])];
        for (const n of stap) {
          const len = Buffer.allocUnsafe(2);
          len.writeUInt16BE(n.length);
          parts.push(len, n);
        }
        out.push(Buffer.concat(parts));
      }
      stap = [];
      stapSize = 1;
    };
    for (const nal of nals) {
      if (nal.length === 0) continue;
      if (nal.length + 2 + stapSize <= this.maxPayload) {
        stap.push(nal);
        stapSize += nal.length + 2;
        continue;
      }
      flushStap();
      if (nal.length <= this.maxPayload) {
        stap.push(nal);
        stapSize += nal.length + 2;
        continue;
      }
      // FU-A: the NAL header's F/NRI go to the indicator, its type to the FU header.
      const indicator = (nal[0]! & 0xe0) | FU_A;
      const type = nal[0]! & 0x1f;
      const room = this.maxPayload - 2;
      for (let off = 1; off < nal.length; off += room) {
        const chunk = nal.subarray(off, off + room);
        const first = off === 1;
        const last = off + room >= nal.length;
        const p = Buffer.allocUnsafe(2 + chunk.length);
        p[0] = indicator;
        p[1] = (first ? 0x80 : 0) | (last ? 0x40 : 0) | type;
        chunk.copy(p, 2);
        out.push(p);
      }
    }
    flushStap();
    return out;
  }
}

/** The NAL units carried by one RTP payload; FU-A fragments come back as marked pieces. */
type PayloadNals = { kind: 'nals'; nals: Buffer[] } | { kind: 'fu'; start: boolean; end: boolean; header: number; data: Buffer };

function payloadNals(p: Buffer): PayloadNals | null {
  if (p.length < 1) return null;
  const type = p[0]! & 0x1f;
  if (type >= 1 && type <= 23) return { kind: 'nals', nals: [p] };
  if (type === STAP_A) {
    const nals: Buffer[] = [];
    let i = 1;
    while (i + 2 <= p.length) {
      const n = p.readUInt16BE(i);
      i += 2;
      if (n === 0 || i + n > p.length) return null;
      nals.push(p.subarray(i, i + n));
      i += n;
    }
    return nals.length > 0 ? { kind: 'nals', nals } : null;
  }
  if (type === FU_A) {
    if (p.length < 3) return null;
    const fu = p[1]!;
    return { kind: 'fu', start: (fu & 0x80) !== 0, end: (fu & 0x40) !== 0, header: (p[0]! & 0xe0) | (fu & 0x1f), data: p.subarray(2) };
  }
  return null; // STAP-B, MTAPs, FU-B: not in packetization-mode 1
}

/**
 * H.264 for the depacketizer: frames come out as Annex B access units; a keyframe is an access
 * unit with an IDR slice.
 */
export const h264Format: PayloadFormat = {
  isFrameStart(payload) {
    const n = payloadNals(payload);
    return !!n && (n.kind === 'nals' || n.start);
  },
  assemble(payloads) {
    const nals: Buffer[] = [];
    let fu: Buffer[] | undefined;
    for (const p of payloads) {
      const n = payloadNals(p);
      if (!n) return null;
      if (n.kind === 'nals') {
        if (fu) return null; // a fragmented NAL unit never ended
        nals.push(...n.nals);
        continue;
      }
      if (n.start) {
        if (fu) return null;
        fu = [Buffer.from([n.header]), n.data];
      } else {
        if (!fu) return null;
        fu.push(n.data);
      }
      if (n.end) { nals.push(Buffer.concat(fu)); fu = undefined; }
    }
    if (fu || nals.length === 0) return null;
    return { data: joinAnnexB(nals), keyframe: nals.some((n) => nalType(n) === NAL_IDR) };
  },
};

/** Removes emulation prevention bytes (00 00 03 → 00 00) from a NAL unit's payload. */
function unescapeRbsp(nal: Buffer): Buffer {
  const out: number[] = [];
  for (let i = 0; i < nal.length; i++) {
    if (i >= 2 && nal[i] === 3 && nal[i - 1] === 0 && nal[i - 2] === 0 && out.length >= 2 && out[out.length - 1] === 0 && out[out.length - 2] === 0) continue;
    out.push(nal[i]!);
  }
  return Buffer.from(out);
}

class BitReader {
  private pos = 0;
  constructor(private readonly b: Buffer) {}
  bit(): number {
    const byte = this.b[this.pos >> 3];
    if (byte === undefined) throw new RangeError('SPS too short');
    const v = (byte >> (7 - (this.pos & 7))) & 1;
    this.pos++;
    return v;
  }
  bits(n: number): number { let v = 0; for (let i = 0; i < n; i++) v = v * 2 + this.bit(); return v; }
  ue(): number {
    let zeros = 0;
    while (this.bit() === 0) { if (++zeros > 31) throw new RangeError('bad Exp-Golomb code'); }
    return 2 ** zeros - 1 + this.bits(zeros);
  }
  se(): number { const k = this.ue(); return k % 2 === 1 ? (k + 1) / 2 : -(k / 2); }
}

/** Picture size and the WebCodecs codec string ("avc1.PPCCLL") from an SPS NAL unit. */
export function parseSps(sps: Buffer): { width: number; height: number; codec: string } {
  const hex = (n: number) => n.toString(16).padStart(2, '0');
  const codec = `avc1.${hex(sps[1]!)}${hex(sps[2]!)}${hex(sps[3]!)}`;
  const r = new BitReader(unescapeRbsp(sps.subarray(1)));
  const profile = r.bits(8);
  r.bits(16); // constraint flags, level
  r.ue(); // seq_parameter_set_id
  let chroma = 1;
  if ([100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135].includes(profile)) {
    chroma = r.ue();
    if (chroma === 3) r.bit();
    r.ue(); r.ue(); r.bit(); // bit depths, qpprime
    if (r.bit()) {
      for (let i = 0; i < (chroma === 3 ? 12 : 8); i++) {
        if (!r.bit()) continue;
        let last = 8;
        let next = 8;
        for (let j = 0; j < (i < 6 ? 16 : 64); j++) {
          if (next !== 0) next = (last + r.se() + 256) % 256;
          last = next === 0 ? last : next;
        }
      }
    }
  }
  r.ue(); // log2_max_frame_num_minus4
  const pocType = r.ue();
  if (pocType === 0) r.ue();
  else if (pocType === 1) {
    r.bit(); r.se(); r.se();
    const n = r.ue();
    for (let i = 0; i < n; i++) r.se();
  }
  r.ue(); r.bit(); // max_num_ref_frames, gaps
  const wMbs = r.ue() + 1;
  const hMaps = r.ue() + 1;
  const frameMbsOnly = r.bit();
  if (!frameMbsOnly) r.bit();
  r.bit(); // direct_8x8_inference
  let [cl, cr, ct, cb] = [0, 0, 0, 0];
  if (r.bit()) { cl = r.ue(); cr = r.ue(); ct = r.ue(); cb = r.ue(); }
  const cropX = chroma === 1 || chroma === 2 ? 2 : 1;
  const cropY = (chroma === 1 ? 2 : 1) * (2 - frameMbsOnly);
  return { width: wMbs * 16 - (cl + cr) * cropX, height: (2 - frameMbsOnly) * hMaps * 16 - (ct + cb) * cropY, codec };
}
