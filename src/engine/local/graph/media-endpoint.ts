// What every endpoint toward a client shares (WebRTC and plain RTP): per-direction flow
// counters with up/down events and rates, the simulcast layer choice, audio transcoding when
// a source's codec is not the one negotiated with our client, and error reporting.
import { ReceiverEstimatedMaxBitrate, RtcpPayloadSpecificFeedback } from 'werift';
import type { EngineEvent, MediaKind, MediaStats } from '../../types.js';
import { Element, type CodecInfo, type MediaUnit } from './element.js';
import { LayerSelector, type LayerChoice } from './simulcast.js';
import { AudioAdapter } from './audio-adapter.js';

/** No packet for this long marks a flow "down". */
export const FLOW_DOWN_MS = 2000;
/** Keyframe requests to one client: at most one per second, one per 300 ms for new sinks. */
export const KEYFRAME_INTERVAL_MS = 1000;
export const URGENT_KEYFRAME_INTERVAL_MS = 300;
const REMB_INTERVAL_MS = 1000;

export interface Flow { packets: number; bytes: number; bitrate: number; lastAt: number; up: boolean; sampledBytes: number; sampledAt: number }
const newFlow = (): Flow => ({ packets: 0, bytes: 0, bitrate: 0, lastAt: 0, up: false, sampledBytes: 0, sampledAt: 0 });

export abstract class MediaEndpoint extends Element {
  readonly inbound: Record<MediaKind, Flow> = { audio: newFlow(), video: newFlow(), data: newFlow() };
  readonly outbound: Record<MediaKind, Flow> = { audio: newFlow(), video: newFlow(), data: newFlow() };
  /** Which layer of a simulcast source our client gets. */
  readonly layers = new LayerSelector();
  private readonly audioAdapter = new AudioAdapter();
  private readonly mismatchReported = new Set<string>();
  private lastKeyframeRequest = -Infinity;
  private keyframeTimer?: NodeJS.Timeout;
  keyframeRequestsSent = 0;
  protected maxBitrate: number | null = null;
  private rembTimer?: NodeJS.Timeout;

  constructor(id: string, tag: string, protected readonly emit: (ev: EngineEvent) => void) {
    super(id, tag);
  }

  /** The codec this endpoint takes for a kind (a player picks pass-through or transcoding by it). */
  abstract sendCodec(kind: 'audio' | 'video'): CodecInfo | undefined;
  /** Whether media can flow to our client now. */
  protected abstract get isConnected(): boolean;
  /** Asks our client for a video keyframe now; false when it sends no video. */
  protected abstract sendKeyframeRequest(): boolean;
  /** Sends a REMB with `bps` toward our client (when it sends anything). */
  protected abstract sendRemb(bps: number): void;

  /**
   * A new source for what our client receives. Before our client is connected its keyframe
   * would be dropped (and would use up the source's keyframe-request budget): subclasses
   * ask on connecting instead.
   */
  override sourceChanged(kind: MediaKind): void {
    if (this.isConnected) super.sourceChanged(kind);
  }

  /** A keyframe request to our client, merged: immediate if the last one is old enough, else deferred. */
  override requestKeyframe(urgent: boolean): void {
    if (this.released || this.keyframeTimer) return;
    const wait = this.lastKeyframeRequest + (urgent ? URGENT_KEYFRAME_INTERVAL_MS : KEYFRAME_INTERVAL_MS) - performance.now();
    if (wait <= 0) { this.keyframeRequestNow(); return; }
    this.keyframeTimer = setTimeout(() => { this.keyframeTimer = undefined; this.keyframeRequestNow(); }, wait);
  }

  private keyframeRequestNow(): void {
    if (this.released || !this.sendKeyframeRequest()) return;
    this.lastKeyframeRequest = performance.now();
    this.keyframeRequestsSent++;
  }

  /** REMB toward the client every second while a limit is set. */
  setMaxBitrate(bps: number | null): void {
    this.maxBitrate = bps;
    clearInterval(this.rembTimer);
    this.rembTimer = undefined;
    if (bps === null) return;
    const send = (): void => { if (!this.released && this.isConnected) this.sendRemb(bps); };
    send();
    this.rembTimer = setInterval(send, REMB_INTERVAL_MS);
  }

  protected count(flow: Flow, direction: 'in' | 'out', media: MediaKind, bytes: number): void {
    this.countMany(flow, direction, media, 1, bytes, 0);
  }

  /** `packets` more packets, the last one `ageMs` ago (the native plane reports in batches). */
  protected countMany(flow: Flow, direction: 'in' | 'out', media: MediaKind, packets: number, bytes: number, ageMs: number): void {
    flow.packets += packets;
    flow.bytes += bytes;
    flow.lastAt = Math.max(flow.lastAt, performance.now() - ageMs);
    if (!flow.up) {
      flow.up = true;
      this.emit({ type: 'media_flow', elementId: this.id, tag: this.tag, direction, media, state: 'up' });
    }
  }

  /** Rates over the last period and up → down transitions (called by the engine's shared timer). */
  checkFlows(now: number): void {
    for (const [direction, flows] of [['in', this.inbound], ['out', this.outbound]] as const) {
      for (const media of ['audio', 'video', 'data'] as const) {
        const f = flows[media];
        if (f.sampledAt > 0) f.bitrate = Math.round(((f.bytes - f.sampledBytes) * 8 * 1000) / Math.max(1, now - f.sampledAt));
        f.sampledBytes = f.bytes;
        f.sampledAt = now;
        if (f.up && now - f.lastAt > FLOW_DOWN_MS) {
          f.up = false;
          this.emit({ type: 'media_flow', elementId: this.id, tag: this.tag, direction, media, state: 'down' });
        }
      }
    }
  }

  protected flowStats(): { inbound: Record<MediaKind, MediaStats>; outbound: Record<MediaKind, MediaStats> } {
    const base = (f: Flow): MediaStats => ({ packets: f.packets, bytes: f.bytes, bitrate: f.bitrate });
    return {
      inbound: { audio: base(this.inbound.audio), video: base(this.inbound.video), data: base(this.inbound.data) },
      outbound: { audio: base(this.outbound.audio), video: base(this.outbound.video), data: base(this.outbound.data) },
    };
  }

  /** Which simulcast layer our client gets from a simulcast source. */
  setVideoLayer(choice: LayerChoice): void {
    if (this.layers.choice === choice) return;
    this.layers.choice = choice;
    this.sources.get('video')?.requestKeyframe(true);
  }

  /**
   * Whether a unit goes to our client: a simulcast unit only when its layer is the one chosen
   * (a switch asks the source for a keyframe of the new layer); anything else always.
   */
  protected layerAllows(unit: Extract<MediaUnit, { rtp: unknown }>): boolean {
    if (!unit.layer) return true;
    const d = this.layers.decide(unit.layer);
    if (d.needKeyframe) this.sources.get('video')?.requestKeyframe(true);
    return d.send;
  }

  /**
   * Media of another codec than the one negotiated for `target`: audio is transcoded (the
   * packets to send instead, possibly none yet); anything else is reported once and dropped
   * (returns undefined) — never silently.
   */
  protected adapt(unit: Extract<MediaUnit, { rtp: unknown }>, target: CodecInfo): MediaUnit[] | undefined {
    if (unit.kind === 'audio') {
      const out = this.audioAdapter.adapt(unit, target);
      if (out) return out;
    }
    const key = `${unit.codec.mimeType}>${target.mimeType}`;
    if (!this.mismatchReported.has(key)) {
      this.mismatchReported.add(key);
      this.emitError(`codec mismatch: ${unit.codec.mimeType} cannot be sent as ${target.mimeType}`, 'codec_mismatch');
    }
    return undefined;
  }

  protected emitError(message: string, code?: string): void {
    this.emit({ type: 'error', elementId: this.id, tag: this.tag, message, ...(code ? { code } : {}) });
  }

  override async release(): Promise<void> {
    clearTimeout(this.keyframeTimer);
    clearInterval(this.rembTimer);
    this.audioAdapter.close();
    await super.release();
  }
}

/** A REMB feedback packet: the bitrate as an 18-bit mantissa and a 6-bit exponent. */
export function rembFeedback(bps: number, senderSsrc: number, ssrcs: number[]): RtcpPayloadSpecificFeedback {
  let mantissa = Math.max(0, Math.floor(bps));
  let exp = 0;
  while (mantissa > 0x3ffff) { mantissa >>>= 1; exp++; }
  const remb = new ReceiverEstimatedMaxBitrate({
    senderSsrc, mediaSsrc: 0, ssrcNum: ssrcs.length, brExp: exp, brMantissa: mantissa,
    bitrate: BigInt(mantissa) << BigInt(exp), ssrcFeedbacks: ssrcs,
  });
  return new RtcpPayloadSpecificFeedback({ feedback: remb });
}
