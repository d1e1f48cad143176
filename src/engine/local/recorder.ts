// Kurento's RecorderEndpoint: a sink that writes the RTP it receives (from a session's proxy,
// i.e. what the client sends) into a WebM (VP8 + Opus) or MP4 (H.264 or VP8 + Opus) file.
// RTP is depacketized into frames (src/engine/local/rtp), frames are timed from their RTP
// timestamps and muxed by mediabunny, which writes Cues/duration (WebM) or the sample tables
// (MP4) when the file is finalised: on stop(), on release() and on a write error.
import { open, stat, unlink } from 'node:fs/promises';
import {
  EncodedAudioPacketSource, EncodedPacket, EncodedVideoPacketSource, FilePathTarget, Mp4OutputFormat, Output, WebMOutputFormat,
} from 'mediabunny';
import type { ElementId } from '../types.js';
import { Element, type CodecInfo, type MediaUnit } from './element.js';
import { depacketizerFor, type Depacketizer, type Frame } from './rtp/index.js';
import { NAL_PPS, NAL_SPS, joinAnnexB, nalType, parseSps, splitAnnexB } from './rtp/h264.js';
import { opusPacketSamples } from './rtp/opus.js';
import { vp8FrameSize } from './rtp/vp8.js';

export type RecordingFormat = 'webm' | 'mp4';
export type RecorderState = 'idle' | 'recording' | 'paused' | 'stopping' | 'stopped';
export type RecorderErrorCode = 'write_failed' | 'unsupported_codec' | 'no_media';

/** What the recorder reports; the engine forwards these (tagged) as events of the session. */
export type RecorderEvent =
  | { type: 'recorder_state'; elementId: ElementId; tag: string; state: 'recording' | 'paused' | 'stopped'; uri: string }
  | { type: 'error'; elementId: ElementId; tag: string; code: RecorderErrorCode; message: string };

export interface RecordingResult {
  path: string;
  format: RecordingFormat;
  /** Length of the file's timeline (paused time left out), in milliseconds. */
  durationMs: number;
  /** The tracks written; empty when no media came (then no file is left behind either). */
  tracks: ('audio' | 'video')[];
  bytes: number;
}

export interface RecorderOptions {
  /**
   * How long to wait, once one kind of media has arrived, for the other kind to show up before
   * the file is started without it (tracks cannot be added to a started file).
   */
  otherKindWaitMs?: number;
  /** The longest wait for a kind that sends packets but no usable first frame (no keyframe yet). */
  firstFrameWaitMs?: number;
}

type AV = 'audio' | 'video';

/** One incoming RTP stream of a kind: its depacketizer and the anchor of its RTP clock. */
interface InStream {
  key: string;
  codec: CodecInfo;
  dep?: Depacketizer;
  /** Arrival time (performance.now) of the first packet and its extended RTP timestamp. */
  anchorWall: number;
  anchorTs: number;
  lastTs32: number;
  cycles: number;
  lastKeyframeAsk: number;
}

interface Timed { kind: AV; time: number; data: Buffer; keyframe: boolean; codec: string }

/** One track of the file being written. */
interface OutTrack {
  kind: AV;
  codec: string;
  source: EncodedVideoPacketSource | EncodedAudioPacketSource;
  meta?: { decoderConfig: VideoDecoderConfig | AudioDecoderConfig };
  /** Video is written one frame late, so each frame's duration is known (the next one's start). */
  held?: Timed;
  lastTime: number;
  lastDuration: number;
  end: number;
}

const CONTAINER_CODECS: Record<RecordingFormat, string[]> = {
  webm: ['video/vp8', 'audio/opus'],
  mp4: ['video/h264', 'video/vp8', 'audio/opus'],
};

/** Writes still queued in the muxer beyond which frames are dropped (a disk that cannot keep up). */
const MAX_QUEUED_WRITES = 2000;

export class RecorderEndpoint extends Element {
  private st: RecorderState = 'idle';
  private path = '';
  private format: RecordingFormat = 'webm';
  private readonly inStreams: Partial<Record<AV, InStream>> = {};
  /** The common origin of the timeline: the first packet's arrival (either kind). */
  private origin?: number;
  private pausedAt = 0;
  private pausedTotal = 0;
  /** Frames that came before the file was started (its tracks are decided by what came). */
  private pending: Timed[] = [];
  /** First usable frame's decoder config per kind (decides the tracks). */
  private readonly configs: Partial<Record<AV, VideoDecoderConfig | AudioDecoderConfig>> = {};
  private readonly seen: Partial<Record<AV, number>> = {};
  private output?: Output;
  private readonly tracks: Partial<Record<AV, OutTrack>> = {};
  private chain: Promise<void> = Promise.resolve();
  private queued = 0;
  private decideTimer?: NodeJS.Timeout;
  private lastSps?: Buffer;
  private lastPps?: Buffer;
  private readonly reported = new Set<string>();
  private stopping?: Promise<RecordingResult>;
  private failed = false;
  private readonly otherKindWaitMs: number;
  private readonly firstFrameWaitMs: number;

  constructor(id: ElementId, tag: string, private readonly emit: (ev: RecorderEvent) => void, opts: RecorderOptions = {}) {
    super(id, tag);
    this.otherKindWaitMs = opts.otherKindWaitMs ?? 1000;
    this.firstFrameWaitMs = opts.firstFrameWaitMs ?? 4000;
  }

  get state(): RecorderState { return this.st; }
  get uri(): string { return this.path; }

  /**
   * Starts recording into `path` (created or truncated at once, so a bad path fails here).
   * Only once per element: a new recording is a new RecorderEndpoint.
   */
  async start(path: string, format: RecordingFormat = 'webm'): Promise<void> {
    if (this.st !== 'idle' || this.released) throw new Error(`recorder is ${this.released ? 'released' : this.st}`);
    if (format !== 'webm' && format !== 'mp4') throw new Error(`unknown recording format ${String(format)}`);
    this.path = path;
    this.format = format;
    await (await open(path, 'w')).close();
    this.st = 'recording';
    this.emitState('recording');
    // Video must begin with a keyframe: ask for one now rather than waiting for the next.
    this.sources.get('video')?.requestKeyframe(true);
  }

  /** Stops taking media; the paused time is left out of the file's timeline. */
  pause(): void {
    if (this.st !== 'recording') return;
    this.st = 'paused';
    this.pausedAt = performance.now();
    // Frames cut by the pause are not completed after it (their packets were dropped).
    for (const s of Object.values(this.inStreams)) s.dep?.reset();
    this.emitState('paused');
  }

  resume(): void {
    if (this.st !== 'paused') return;
    if (this.origin !== undefined) this.pausedTotal += performance.now() - this.pausedAt;
    this.st = 'recording';
    this.emitState('recording');
    this.sources.get('video')?.requestKeyframe(true);
  }

  /** Finishes the file (flushes, writes the index and duration). Safe to call more than once. */
  stop(): Promise<RecordingResult> {
    if (this.st === 'idle') {
      this.st = 'stopped';
      return Promise.resolve({ path: this.path, format: this.format, durationMs: 0, tracks: [], bytes: 0 });
    }
    this.stopping ??= this.finish();
    return this.stopping;
  }

  override async release(): Promise<void> {
    if (this.st !== 'idle') await this.stop().catch(() => undefined);
    await super.release();
  }

  // ---- media in -------------------------------------------------------------------------------

  accept(unit: MediaUnit): void {
    if (unit.kind === 'data' || this.st !== 'recording') return;
    const now = performance.now();
    const kind = unit.kind;
    const h = unit.rtp.header;
    const key = `${unit.origin}/${h.ssrc}/${unit.codec.mimeType}`;
    let s = this.inStreams[kind];
    if (!s || s.key !== key) {
      // A new stream (or a new source behind the proxy): its RTP clock is anchored afresh.
      const dep = depacketizerFor(unit.codec.mimeType);
      if (!dep) this.reportOnce(`codec:${unit.codec.mimeType}`, 'unsupported_codec', `cannot record ${unit.codec.mimeType}`);
      s = { key, codec: unit.codec, dep, anchorWall: now, anchorTs: h.timestamp, lastTs32: h.timestamp, cycles: 0, lastKeyframeAsk: now };
      this.inStreams[kind] = s;
    }
    this.origin ??= now;
    this.seen[kind] ??= now;
    if (!s.dep) return;
    const frames = s.dep.push({ seq: h.sequenceNumber, ts: h.timestamp, marker: h.marker, payload: unit.rtp.payload });
    if (kind === 'video' && s.dep.waitingForKeyframe && now - s.lastKeyframeAsk > 1000) {
      s.lastKeyframeAsk = now;
      this.sources.get('video')?.requestKeyframe(false);
    }
    for (const f of frames) this.onFrame(kind, s, f);
  }

  /** Media time (s) of a frame: its RTP time mapped through the stream's anchor, paused time removed. */
  private timeOf(s: InStream, ts32: number): number {
    // Extend the 32-bit timestamp (frames come in order, so one step is less than half a cycle).
    const d = (ts32 - s.lastTs32) | 0;
    const ext = s.cycles * 2 ** 32 + s.lastTs32 + d;
    s.cycles = Math.floor(ext / 2 ** 32);
    s.lastTs32 = ts32 >>> 0;
    const wall = s.anchorWall + ((ext - s.anchorTs) * 1000) / s.codec.clockRate;
    return (wall - this.origin! - this.pausedTotal) / 1000;
  }

  private onFrame(kind: AV, s: InStream, f: Frame): void {
    const t: Timed = { kind, time: this.timeOf(s, f.timestamp), data: f.data, keyframe: f.keyframe, codec: s.codec.mimeType };
    if (t.codec === 'video/h264') this.fixH264(t);
    if (!this.output) {
      if (this.failed) return;
      if (!this.configs[kind]) {
        const cfg = this.configFor(t);
        if (!cfg) return; // not a usable first frame (e.g. no SPS yet): wait for the next
        this.configs[kind] = cfg;
      }
      this.pending.push(t);
      this.maybeStartFile();
      return;
    }
    this.write(t);
  }

  /** H.264 keyframes must carry SPS/PPS for the file; a client may send them separately. */
  private fixH264(t: Timed): void {
    const nals = splitAnnexB(t.data);
    const sps = nals.find((n) => nalType(n) === NAL_SPS);
    const pps = nals.find((n) => nalType(n) === NAL_PPS);
    if (sps) this.lastSps = sps;
    if (pps) this.lastPps = pps;
    if (t.keyframe && (!sps || !pps) && this.lastSps && this.lastPps) {
      t.data = joinAnnexB([...(sps ? [] : [this.lastSps]), ...(pps ? [] : [this.lastPps]), ...nals]);
    }
  }

  private configFor(t: Timed): VideoDecoderConfig | AudioDecoderConfig | undefined {
    if (!CONTAINER_CODECS[this.format].includes(t.codec)) {
      this.reportOnce(`container:${t.codec}`, 'unsupported_codec', `${t.codec} cannot be recorded into ${this.format.toUpperCase()}; that track is left out`);
      return undefined;
    }
    if (t.codec === 'audio/opus') return { codec: 'opus', numberOfChannels: 2, sampleRate: 48000 };
    if (!t.keyframe) return undefined;
    if (t.codec === 'video/vp8') {
      const size = vp8FrameSize(t.data);
      return size && { codec: 'vp8', codedWidth: size.width, codedHeight: size.height };
    }
    const sps = splitAnnexB(t.data).find((n) => nalType(n) === NAL_SPS);
    if (!sps) return undefined;
    try {
      const p = parseSps(sps);
      return { codec: p.codec, codedWidth: p.width, codedHeight: p.height };
    } catch {
      return undefined;
    }
  }

  /**
   * The file's tracks are decided by what arrived: every kind that sent packets, once each has
   * a usable first frame, or after a grace period without the other kind / a keyframe.
   */
  private maybeStartFile(force = false): void {
    if (this.output || this.failed) return;
    const now = performance.now();
    const kinds = (['audio', 'video'] as const).filter((k) => this.seen[k] !== undefined);
    const first = Math.min(...kinds.map((k) => this.seen[k]!));
    const allReady = kinds.length > 0 && kinds.every((k) => this.configs[k]);
    const otherWaitOver = kinds.length === 2 || now - first >= this.otherKindWaitMs;
    const ready = force || (allReady && otherWaitOver) || (now - first >= this.firstFrameWaitMs && kinds.some((k) => this.configs[k]));
    if (!ready) {
      this.decideTimer ??= setTimeout(() => { this.decideTimer = undefined; this.maybeStartFile(); }, 100);
      return;
    }
    clearTimeout(this.decideTimer);
    this.decideTimer = undefined;
    const withConfig = (['video', 'audio'] as const).filter((k) => this.configs[k]);
    if (withConfig.length === 0) return;
    this.openFile(withConfig);
  }

  private openFile(kinds: AV[]): void {
    const format = this.format === 'webm' ? new WebMOutputFormat() : new Mp4OutputFormat({ fastStart: false });
    const output = new Output({ format, target: new FilePathTarget(this.path) });
    this.output = output;
    for (const kind of kinds) {
      const cfg = this.configs[kind]!;
      const codec = this.pending.find((p) => p.kind === kind)!.codec;
      let source: EncodedVideoPacketSource | EncodedAudioPacketSource;
      if (kind === 'video') {
        source = new EncodedVideoPacketSource(codec === 'video/vp8' ? 'vp8' : 'avc');
        output.addVideoTrack(source);
      } else {
        source = new EncodedAudioPacketSource('opus');
        output.addAudioTrack(source);
      }
      this.tracks[kind] = { kind, codec, source, meta: { decoderConfig: cfg }, lastTime: -Infinity, lastDuration: kind === 'video' ? 1 / 30 : 0.02, end: 0 };
    }
    this.enqueue(() => output.start());
    // What came before the start goes in, in time order (the kinds interleaved).
    const pending = this.pending.sort((a, b) => a.time - b.time);
    this.pending = [];
    for (const t of pending) this.write(t);
  }

  private write(t: Timed): void {
    const track = this.tracks[t.kind];
    if (!track) return;
    if (t.codec !== track.codec) {
      this.reportOnce(`switch:${t.kind}:${t.codec}`, 'unsupported_codec', `${t.kind} codec changed to ${t.codec} during the recording; dropped`);
      return;
    }
    if (this.queued > MAX_QUEUED_WRITES) { this.reportOnce('slow', 'write_failed', 'the disk does not keep up: frames dropped'); return; }
    if (t.kind === 'audio') {
      if (t.time < track.lastTime + track.lastDuration / 2) return; // late or overlapping
      const duration = opusPacketSamples(t.data) / 48000 || 0.02;
      this.put(track, t, Math.max(0, t.time), duration);
      return;
    }
    // Video: whole milliseconds (WebM's resolution), strictly increasing: frames sent in a
    // burst (a source catching up to a keyframe) must not share a timestamp.
    const last = track.held?.time ?? track.lastTime;
    t.time = Math.round(t.time * 1000) / 1000;
    if (t.time <= last + 0.0005) t.time = Math.round((last + 0.001) * 1000) / 1000;
    if (track.held) this.put(track, track.held, Math.max(0, track.held.time), Math.max(0.001, t.time - track.held.time));
    track.held = t;
  }

  private put(track: OutTrack, t: Timed, time: number, duration: number): void {
    track.lastTime = time;
    track.lastDuration = duration;
    track.end = Math.max(track.end, time + duration);
    const meta = track.meta;
    track.meta = undefined;
    const packet = new EncodedPacket(t.data, t.keyframe ? 'key' : 'delta', time, duration);
    this.enqueue(() => (track.source as EncodedVideoPacketSource).add(packet, meta as EncodedVideoChunkMetadata | undefined));
  }

  private enqueue(op: () => Promise<void>): void {
    this.queued++;
    this.chain = this.chain.then(async () => {
      this.queued--;
      if (this.failed) return;
      try {
        await op();
      } catch (err) {
        this.fail(err);
      }
    });
  }

  private fail(err: unknown): void {
    if (this.failed) return;
    this.failed = true;
    this.emit({ type: 'error', elementId: this.id, tag: this.tag, code: 'write_failed', message: `recording ${this.path}: ${(err as Error).message}` });
    // Keep what was written playable: finish the file as on a stop.
    void this.stop();
  }

  private async finish(): Promise<RecordingResult> {
    this.st = 'stopping';
    clearTimeout(this.decideTimer);
    this.decideTimer = undefined;
    // Complete frames still held in reorder buffers go in.
    for (const [kind, s] of Object.entries(this.inStreams) as [AV, InStream][]) {
      for (const f of s.dep?.flush() ?? []) this.onFrame(kind, s, f);
    }
    if (!this.output && !this.failed) this.maybeStartFile(true);
    for (const track of Object.values(this.tracks)) {
      if (track.held) { this.put(track, track.held, Math.max(0, track.held.time), track.lastDuration); track.held = undefined; }
    }
    await this.chain;
    const output = this.output;
    let finalised = false;
    if (output && output.state === 'started') {
      try {
        await output.finalize();
        finalised = true;
      } catch (err) {
        this.emit({ type: 'error', elementId: this.id, tag: this.tag, code: 'write_failed', message: `finishing ${this.path}: ${(err as Error).message}` });
        await output.cancel().catch(() => undefined);
      }
    } else if (output) {
      await output.cancel().catch(() => undefined);
    }
    const tracks = finalised ? (['video', 'audio'] as const).filter((k) => this.tracks[k]) : [];
    if (!output) {
      // No media came: the empty file made at start() would only mislead.
      this.reportOnce('nomedia', 'no_media', `nothing was recorded into ${this.path}`);
      await unlink(this.path).catch(() => undefined);
    }
    const durationMs = tracks.length ? Math.round(Math.max(...tracks.map((k) => this.tracks[k]!.end)) * 1000) : 0;
    const bytes = await stat(this.path).then((s) => s.size, () => 0);
    this.st = 'stopped';
    this.emitState('stopped');
    return { path: this.path, format: this.format, durationMs, tracks, bytes };
  }

  private emitState(state: 'recording' | 'paused' | 'stopped'): void {
    this.emit({ type: 'recorder_state', elementId: this.id, tag: this.tag, state, uri: this.path });
  }

  private reportOnce(key: string, code: RecorderErrorCode, message: string): void {
    if (this.reported.has(key)) return;
    this.reported.add(key);
    this.emit({ type: 'error', elementId: this.id, tag: this.tag, code, message });
  }
}
