// A streaming Matroska reader: what ffmpeg writes to a pipe, block by block as it comes.

export interface MkvTrack { number: number; type?: number; codecId?: string; codecPrivate?: Buffer }
export interface MkvBlock { track: number; time: number; data: Buffer; keyframe: boolean }

const MKV = {
  Segment: 0x18538067, Cluster: 0x1f43b675, Tracks: 0x1654ae6b, Info: 0x1549a966, BlockGroup: 0xa0, TrackEntry: 0xae,
  TrackNumber: 0xd7, TrackType: 0x83, CodecID: 0x86, CodecPrivate: 0x63a2, TimecodeScale: 0x2ad7b1, Timecode: 0xe7,
  SimpleBlock: 0xa3, Block: 0xa1,
};
const MKV_DESCEND = new Set([MKV.Segment, MKV.Cluster, MKV.Tracks, MKV.Info, MKV.BlockGroup, MKV.TrackEntry]);

/**
 * A streaming Matroska reader for what ffmpeg writes to a pipe: masters of interest are entered
 * (the Segment's size is unknown on a pipe), other elements are read whole or skipped.
 */
export class MkvStreamReader {
  private buf: Buffer = Buffer.alloc(0);
  readonly tracks = new Map<number, MkvTrack>();
  private track?: MkvTrack;
  private clusterTime = 0;
  private scale = 1e6;

  push(chunk: Buffer): MkvBlock[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const out: MkvBlock[] = [];
    let pos = 0;
    for (;;) {
      const id = readVint(this.buf, pos, true);
      if (!id) break;
      const size = readVint(this.buf, pos + id.length, false);
      if (!size) break;
      const start = pos + id.length + size.length;
      if (MKV_DESCEND.has(id.value)) {
        if (id.value === MKV.TrackEntry) this.track = { number: -1 };
        pos = start;
        continue;
      }
      if (size.unknown) throw new Error(`Matroska element ${id.value.toString(16)} of unknown size`);
      if (start + size.value > this.buf.length) break;
      const body = this.buf.subarray(start, start + size.value);
      pos = start + size.value;
      this.leaf(id.value, body, out);
    }
    this.buf = this.buf.subarray(pos);
    return out;
  }

  private leaf(id: number, body: Buffer, out: MkvBlock[]): void {
    const uint = () => body.readUIntBE(0, Math.min(6, body.length));
    switch (id) {
      case MKV.TrackNumber:
        if (this.track) { this.track.number = uint(); this.tracks.set(this.track.number, this.track); }
        break;
      case MKV.TrackType: if (this.track) this.track.type = uint(); break;
      case MKV.CodecID: if (this.track) this.track.codecId = body.toString('latin1').replace(/\0+$/, ''); break;
      case MKV.CodecPrivate: if (this.track) this.track.codecPrivate = Buffer.from(body); break;
      case MKV.TimecodeScale: this.scale = uint(); break;
      case MKV.Timecode: this.clusterTime = uint(); break;
      case MKV.SimpleBlock:
      case MKV.Block: {
        const tn = readVint(body, 0, false);
        if (!tn || body.length < tn.length + 3) return;
        const flags = body[tn.length + 2]!;
        if (flags & 0x06) throw new Error('laced Matroska blocks are not supported');
        out.push({
          track: tn.value,
          time: ((this.clusterTime + body.readInt16BE(tn.length)) * this.scale) / 1e9,
          data: Buffer.from(body.subarray(tn.length + 3)),
          keyframe: id === MKV.SimpleBlock ? (flags & 0x80) !== 0 : false,
        });
        break;
      }
      default: break; // EBML header, SeekHead, Cues, Tags, Void...: not needed
    }
  }
}

function readVint(b: Buffer, pos: number, keepMarker: boolean): { value: number; length: number; unknown: boolean } | undefined {
  if (pos >= b.length) return undefined;
  const first = b[pos]!;
  let length = 1;
  while (length <= 8 && !(first & (0x80 >> (length - 1)))) length++;
  if (length > 8) throw new Error('invalid EBML variable-length integer');
  if (pos + length > b.length) return undefined;
  let value = keepMarker ? first : first & (0xff >> length);
  let allOnes = (first & (0xff >> length)) === 0xff >> length;
  for (let i = 1; i < length; i++) {
    value = value * 256 + b[pos + i]!;
    if (b[pos + i] !== 0xff) allOnes = false;
  }
  return { value, length, unknown: !keepMarker && allOnes };
}
