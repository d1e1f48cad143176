// Sans-IO RTP depacketizing: packets in (any order, with loss), whole frames out. The codec
// specifics (where a frame starts, how payloads join) are a PayloadFormat; this part reorders
// by sequence number, cuts frames at the marker bit (or a timestamp change), drops frames that
// lost a packet and, for video, waits for a keyframe after a loss, since later frames reference
// the lost one and would decode into garbage.

/** The RTP fields depacketizing needs (a werift RtpPacket's header and payload fit this). */
export interface RtpInput {
  seq: number;
  ts: number;
  marker: boolean;
  payload: Buffer;
}

export interface Frame {
  data: Buffer;
  /** The frame's RTP timestamp (32 bits, as sent). */
  timestamp: number;
  keyframe: boolean;
}

export interface PayloadFormat {
  /** Whether a payload begins a frame (used at the start and after a loss). */
  isFrameStart(payload: Buffer): boolean;
  /** Joins a frame's payloads (complete, in order); null when they do not make a frame. */
  assemble(payloads: Buffer[]): { data: Buffer; keyframe: boolean } | null;
  /** Every packet is a frame of its own (audio). */
  readonly singlePacket?: boolean;
}

export interface DepacketizerOptions {
  /**
   * A missing packet counts as lost once a packet this many sequence numbers after it has
   * arrived. Reordering deeper than that is treated as loss.
   */
  reorderWindow?: number;
  /** Drop frames until a keyframe, at the start and after each loss (video). */
  requireKeyframe: boolean;
}

export interface DepacketizerStats {
  frames: number;
  /** Frames dropped: incomplete, unusable, or not decodable for want of a keyframe. */
  dropped: number;
  /** Packets that came after their place had been given up (or twice). */
  late: number;
  /** Gaps given up as lost. */
  losses: number;
}

const seqDiff = (a: number, b: number): number => {
  // a - b in 16-bit sequence space, as a signed number.
  const d = (a - b) & 0xffff;
  return d >= 0x8000 ? d - 0x10000 : d;
};

export class Depacketizer {
  private next?: number;
  private readonly buffer = new Map<number, RtpInput>();
  private current: RtpInput[] = [];
  /** Packets are skipped until a frame start (at the start, after a loss). */
  private skipping = true;
  /** The timestamp of the frame a loss broke: its other packets are not a new start. */
  private brokenTs?: number;
  private needKeyframe: boolean;
  private readonly window: number;
  readonly stats: DepacketizerStats = { frames: 0, dropped: 0, late: 0, losses: 0 };

  constructor(private readonly format: PayloadFormat, private readonly opts: DepacketizerOptions) {
    this.window = opts.reorderWindow ?? 64;
    this.needKeyframe = opts.requireKeyframe;
  }

  /** Whether frames are being held back until a keyframe comes (a reason to ask for one). */
  get waitingForKeyframe(): boolean { return this.needKeyframe; }

  push(p: RtpInput): Frame[] {
    const out: Frame[] = [];
    if (this.next === undefined) this.next = p.seq;
    const d = seqDiff(p.seq, this.next);
    if (d < 0 || this.buffer.has(p.seq)) { this.stats.late++; return out; }
    this.buffer.set(p.seq, p);
    this.drain(out);
    // A gap that packets far beyond it have overtaken is a loss: give it up and go on.
    while (this.buffer.size > 0 && !this.buffer.has(this.next)) {
      let furthest = 0;
      let nearest = Infinity;
      for (const s of this.buffer.keys()) {
        const ds = seqDiff(s, this.next);
        if (ds > furthest) furthest = ds;
        if (ds < nearest) nearest = ds;
      }
      if (furthest < this.window) break;
      this.lose(nearest);
      this.drain(out);
    }
    return out;
  }

  /** Gives up every gap now (end of stream, pause): the complete frames still held come out. */
  flush(): Frame[] {
    const out: Frame[] = [];
    this.drain(out);
    while (this.buffer.size > 0) {
      let nearest = Infinity;
      for (const s of this.buffer.keys()) nearest = Math.min(nearest, seqDiff(s, this.next!));
      this.lose(nearest);
      this.drain(out);
    }
    // A frame without its marker packet may be complete, but that cannot be known: drop it.
    if (this.current.length > 0) { this.stats.dropped++; this.current = []; }
    return out;
  }

  /** Forgets everything, as for a new stream (a keyframe is needed again for video). */
  reset(): void {
    this.next = undefined;
    this.buffer.clear();
    this.current = [];
    this.skipping = true;
    this.brokenTs = undefined;
    this.needKeyframe = this.opts.requireKeyframe;
  }

  private lose(skip: number): void {
    this.stats.losses++;
    if (this.current.length > 0) {
      this.brokenTs = this.current[0]!.ts;
      this.current = [];
      this.stats.dropped++;
    } else {
      // The lost packets may have started the next frame: its remaining packets are no start.
      this.brokenTs = undefined;
    }
    this.skipping = true;
    if (this.opts.requireKeyframe) this.needKeyframe = true;
    this.next = (this.next! + skip) & 0xffff;
  }

  private drain(out: Frame[]): void {
    for (;;) {
      const p = this.buffer.get(this.next!);
      if (!p) return;
      this.buffer.delete(this.next!);
      this.next = (this.next! + 1) & 0xffff;
      this.take(p, out);
    }
  }

  private take(p: RtpInput, out: Frame[]): void {
    // A new timestamp ends the frame before it even without a marker (a sender that sets none).
    if (this.current.length > 0 && p.ts !== this.current[0]!.ts) this.finish(out);
    if (this.skipping) {
      const start = this.format.isFrameStart(p.payload) && p.ts !== this.brokenTs;
      if (!start) {
        // The marker ends the broken frame: the next packet starts a fresh one.
        if (p.marker || this.format.singlePacket) { this.skipping = false; this.brokenTs = undefined; }
        return;
      }
      this.skipping = false;
      this.brokenTs = undefined;
    }
    this.current.push(p);
    if (p.marker || this.format.singlePacket) this.finish(out);
  }

  private finish(out: Frame[]): void {
    const packets = this.current;
    this.current = [];
    const frame = this.format.assemble(packets.map((x) => x.payload));
    if (!frame) {
      this.stats.dropped++;
      if (this.opts.requireKeyframe) this.needKeyframe = true;
      return;
    }
    if (this.needKeyframe && !frame.keyframe) { this.stats.dropped++; return; }
    this.needKeyframe = false;
    this.stats.frames++;
    out.push({ data: frame.data, timestamp: packets[0]!.ts, keyframe: frame.keyframe });
  }
}
