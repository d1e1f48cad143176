// The player's RTP pacing: frames queued per kind go out when due (their pass's time anchor
// plus their offset in the file), each as RTP packets of its kind's stream, with timestamps from
// the wall clock at which the frame is due, so they run on across seeks, loops and pauses.
// What is due, and when a pass or the play ends, is the player's (player.ts); this module holds
// the queues, the timer and the outgoing streams.
import { RtpHeader, RtpPacket } from 'werift';
import type { CodecInfo } from '../graph/element.js';
import type { AV, SourceFrame } from './frame-source.js';
import { H264Packetizer } from './rtp/h264.js';
import { Vp8Packetizer } from './rtp/vp8.js';

/** One outgoing RTP stream of the player (its own SSRC and numbering per codec). */
class RtpOut {
  readonly ssrc = (Math.random() * 0xffffffff) >>> 0;
  private seq = Math.floor(Math.random() * 0x10000);
  readonly tsBase = (Math.random() * 0xffffffff) >>> 0;
  private readonly vp8?: Vp8Packetizer;
  private readonly h264?: H264Packetizer;

  constructor(readonly codec: CodecInfo, maxPayload: number) {
    if (codec.mimeType === 'video/vp8') this.vp8 = new Vp8Packetizer(maxPayload);
    if (codec.mimeType === 'video/h264') this.h264 = new H264Packetizer(maxPayload);
  }

  packets(f: SourceFrame, ts: number): RtpPacket[] {
    let payloads: Buffer[];
    if (this.h264) payloads = this.h264.packetize(f.nals ?? []);
    else if (this.vp8) payloads = this.vp8.packetize(f.data ?? Buffer.alloc(0));
    else payloads = [f.data ?? Buffer.alloc(0)];
    const video = this.codec.mimeType.startsWith('video/');
    return payloads.map((payload, i) => {
      this.seq = (this.seq + 1) & 0xffff;
      const header = new RtpHeader({
        payloadType: video ? 96 : 111, sequenceNumber: this.seq, timestamp: ts >>> 0, ssrc: this.ssrc,
        marker: video && i === payloads.length - 1,
      });
      return new RtpPacket(header, payload);
    });
  }
}

/** What the pacer needs of a pass (one play of the file from a position). */
export interface PacedPass {
  t0: number;
  /** performance.now() at which file time t0 is due (shifted by pauses). */
  wall0: number;
  /** Video frames before t0 (from the keyframe on), sent at once with compressed timestamps. */
  catchUp: number;
}

/** A queued frame of a pass; catch-up frames carry their index. */
export interface Paced<P extends PacedPass> { pass: P; kind: AV; frame: SourceFrame; catchUpIndex?: number }

export interface PacerHost<P extends PacedPass> {
  /** Whether frames go out now. */
  isPlaying(): boolean;
  /** The clock frames are due by: performance.now(), held while paused. */
  clock(): number;
  /** A frame goes out: the codec its stream sends (undefined: dropped). */
  frameDue(q: Paced<P>): CodecInfo | undefined;
  /** One RTP packet of it. */
  send(kind: AV, rtp: RtpPacket, codec: CodecInfo): void;
  /** After every round of sending (the player looks for the end there). */
  afterTick(): void;
}

export class RtpPacer<P extends PacedPass> {
  private queues: Record<AV, Paced<P>[]> = { audio: [], video: [] };
  private readonly out: Partial<Record<AV, RtpOut>> = {};
  private readonly epoch = performance.now();
  private readonly lastRtpWall: Record<AV, number> = { audio: -Infinity, video: -Infinity };
  private timer?: NodeJS.Timeout;
  private roomWaiters: (() => void)[] = [];

  constructor(private readonly host: PacerHost<P>, private readonly maxPayload: number) {}

  push(q: Paced<P>): void { this.queues[q.kind].push(q); }

  /** Frames waiting, both kinds. */
  get queued(): number { return this.queues.audio.length + this.queues.video.length; }

  /** The timestamp of a pass's last queued frame of a kind (its t0 if none). */
  lastQueuedTs(pass: P, kind: AV): number {
    const q = this.queues[kind];
    for (let i = q.length - 1; i >= 0; i--) if (q[i]!.pass === pass) return q[i]!.frame.ts;
    return pass.t0;
  }

  /** How far ahead of the clock a frame of the pass at file time `ts` is, in ms. */
  aheadMs(pass: P, ts: number): number {
    return pass.wall0 + (ts - pass.t0) * 1000 - this.host.clock();
  }

  /** Resolves after the next round of sending (or clear()): a reader ahead of time waits on it. */
  waitForRoom(): Promise<void> {
    return new Promise<void>((resolve) => this.roomWaiters.push(resolve));
  }

  /** Sends what is due now unless a round is already scheduled. */
  kick(): void {
    if (!this.timer && this.host.isPlaying()) this.tick();
  }

  /** Stops the timer (a pause); tick() starts again. */
  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Stops, drops every queued frame and lets waiting readers go (they find their pass closed). */
  clear(): void {
    this.stop();
    this.queues = { audio: [], video: [] };
    this.releaseWaiters();
  }

  private releaseWaiters(): void {
    const waiters = this.roomWaiters;
    this.roomWaiters = [];
    for (const w of waiters) w();
  }

  /** Sends every frame that is due, then sleeps until the next one is. */
  readonly tick = (): void => {
    this.stop();
    if (!this.host.isPlaying()) return;
    const now = performance.now();
    for (;;) {
      let best: Paced<P> | undefined;
      let bestDue = Infinity;
      for (const kind of ['video', 'audio'] as const) {
        const q = this.queues[kind][0];
        if (!q) continue;
        const due = q.catchUpIndex !== undefined ? -Infinity : q.pass.wall0 + (q.frame.ts - q.pass.t0) * 1000;
        if (due < bestDue) { best = q; bestDue = due; }
      }
      if (!best) break;
      if (bestDue > now + 1) {
        this.timer = setTimeout(this.tick, Math.min(50, Math.max(1, bestDue - now)));
        break;
      }
      this.queues[best.kind].shift();
      this.send(best, bestDue);
    }
    this.releaseWaiters();
    this.host.afterTick();
  };

  private send(q: Paced<P>, due: number): void {
    const { pass, kind, frame } = q;
    const codec = this.host.frameDue(q);
    if (!codec) return;
    let out = this.out[kind];
    if (!out || out.codec.mimeType !== codec.mimeType) out = this.out[kind] = new RtpOut(codec, this.maxPayload);
    // Catch-up frames get timestamps 1 ms apart just before the pass's start.
    let rtpWall = q.catchUpIndex !== undefined ? pass.wall0 - (pass.catchUp - q.catchUpIndex) : due;
    if (rtpWall <= this.lastRtpWall[kind]) rtpWall = this.lastRtpWall[kind] + 0.05;
    this.lastRtpWall[kind] = rtpWall;
    const ts = out.tsBase + Math.round(((rtpWall - this.epoch) * out.codec.clockRate) / 1000);
    for (const rtp of out.packets(frame, ts)) this.host.send(kind, rtp, out.codec);
  }
}
