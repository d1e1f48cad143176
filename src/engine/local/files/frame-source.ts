// Frames as the player sends them (one per video picture or audio packet, H.264 as NAL units),
// and their pass-through source: a track read by mediabunny from a packet on.
import type { EncodedPacket, EncodedPacketSink } from 'mediabunny';
import { NAL_IDR, NAL_SPS, nalType, parseAvcC, splitAnnexB, splitAvcc } from './rtp/h264.js';

export type AV = 'audio' | 'video';

/** A frame from the file (or the transcoder), in the form its RTP packetizer takes. */
export interface SourceFrame {
  /** Presentation time in the file's timeline, seconds. */
  ts: number;
  duration: number;
  keyframe: boolean;
  /** VP8 frame or Opus packet. */
  data?: Buffer;
  /** H.264 access unit as NAL units (SPS/PPS put before each IDR). */
  nals?: Buffer[];
}

export interface FrameSource {
  next(): Promise<SourceFrame | null>;
  close(): Promise<void>;
}

const toBuffer = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength);
export const descriptionBytes = (d: AllowSharedBufferSource): Buffer =>
  ArrayBuffer.isView(d) ? Buffer.from(d.buffer, d.byteOffset, d.byteLength) : Buffer.from(d as ArrayBuffer);

/** H.264 NAL units from a container: AVCC with the track's avcC, or Annex B without one. */
export class H264Unpacker {
  private lengthSize = 4;
  private sps: Buffer[] = [];
  private pps: Buffer[] = [];
  private readonly annexB: boolean;

  constructor(avcc: Buffer | undefined) {
    this.annexB = !avcc;
    if (avcc) ({ lengthSize: this.lengthSize, sps: this.sps, pps: this.pps } = parseAvcC(avcc));
  }

  nals(data: Buffer): { nals: Buffer[]; keyframe: boolean } {
    const nals = this.annexB ? splitAnnexB(data) : splitAvcc(data, this.lengthSize);
    const keyframe = nals.some((n) => nalType(n) === NAL_IDR);
    if (keyframe && !nals.some((n) => nalType(n) === NAL_SPS)) return { nals: [...this.sps, ...this.pps, ...nals], keyframe };
    return { nals, keyframe };
  }
}

/** A pass-through track read by mediabunny, from a packet on. */
export class PacketSource implements FrameSource {
  private readonly it: AsyncGenerator<EncodedPacket, void, unknown>;

  constructor(sink: EncodedPacketSink, start: EncodedPacket, private readonly h264?: H264Unpacker) {
    this.it = sink.packets(start);
  }

  async next(): Promise<SourceFrame | null> {
    const r = await this.it.next();
    if (r.done) return null;
    const p = r.value;
    const data = toBuffer(p.data);
    if (this.h264) {
      const { nals, keyframe } = this.h264.nals(data);
      return { ts: p.timestamp, duration: p.duration, keyframe, nals };
    }
    return { ts: p.timestamp, duration: p.duration, keyframe: p.type === 'key', data };
  }

  async close(): Promise<void> { await this.it.return(undefined).catch(() => undefined); }
}
