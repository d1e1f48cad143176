// Simulcast: which of a publisher's layers a listener gets, and switching between layers only
// at a keyframe of the new layer (no freeze beyond the next keyframe, no broken picture).
// Sans-IO: fed packets' layer facts, answers "send it or not".

/** A listener's choice: a quality (ranked by the publisher's bitrate per layer) or a rid. */
export type LayerChoice = 'high' | 'medium' | 'low' | string;

export interface LayeredPacket {
  /** The rid of the layer the packet belongs to. */
  layer: string;
  /** 0 = the layer with the highest bitrate now; `layerCount - 1` the lowest. */
  rank: number;
  layerCount: number;
  keyframe: boolean;
}

export class LayerSelector {
  private current?: string;
  choice: LayerChoice = 'high';

  get currentLayer(): string | undefined { return this.current; }

  private wanted(p: LayeredPacket): boolean {
    switch (this.choice) {
      case 'high': return p.rank === 0;
      case 'medium': return p.rank === Math.min(1, p.layerCount - 1);
      case 'low': return p.rank === p.layerCount - 1;
      default: return p.layer === this.choice;
    }
  }

  /**
   * Whether to forward this packet, and whether a keyframe should be asked for (we want a
   * layer we are not on yet). The old layer keeps flowing until the new one has a keyframe.
   */
  decide(p: LayeredPacket): { send: boolean; needKeyframe: boolean } {
    const wanted = this.wanted(p);
    if (p.layer === this.current) return { send: true, needKeyframe: false };
    if (wanted) {
      if (p.keyframe) {
        this.current = p.layer;
        return { send: true, needKeyframe: false };
      }
      return { send: false, needKeyframe: true };
    }
    return { send: false, needKeyframe: false };
  }

  /** The current layer stopped (e.g. the source changed): start over. */
  reset(): void { this.current = undefined; }
}

/** Whether an RTP payload starts a keyframe (VP8: RFC 7741; H264: RFC 6184). */
export function isKeyframe(mimeType: string, payload: Buffer): boolean {
  if (payload.length < 2) return false;
  if (mimeType === 'video/vp8') {
    let i = 0;
    const b0 = payload[i++]!;
    const start = (b0 & 0x10) !== 0 && (b0 & 0x0f) === 0;
    if (!start) return false;
    if (b0 & 0x80) {
      const x = payload[i++]!;
      if (x & 0x80) i += (payload[i]! & 0x80) ? 2 : 1; // PictureID
      if (x & 0x40) i++; // TL0PICIDX
      if (x & 0x30) i++; // TID/KEYIDX
    }
    return i < payload.length && (payload[i]! & 0x01) === 0;
  }
  if (mimeType === 'video/h264') {
    const type = payload[0]! & 0x1f;
    if (type === 5 || type === 7) return true;
    if (type === 28) return (payload[1]! & 0x80) !== 0 && (payload[1]! & 0x1f) === 5;
    if (type === 24) {
      for (let i = 1; i + 2 < payload.length;) {
        const size = payload.readUInt16BE(i);
        const t = payload[i + 2]! & 0x1f;
        if (t === 5 || t === 7) return true;
        i += 2 + size;
      }
    }
    return false;
  }
  // Other codecs: no layer switching gate (every packet may start a switch).
  return true;
}
