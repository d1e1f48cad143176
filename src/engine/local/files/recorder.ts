// Kurento's RecorderEndpoint: a sink that writes the RTP it receives (from a session's proxy,
// i.e. what the client sends) into a WebM (VP8 + Opus) or MP4 (H.264 or VP8 + Opus) file.
// RTP is depacketized into frames (rtp/), frames are timed from their RTP
// timestamps and muxed by mediabunny. The file is written as the media comes, so that a server
// killed mid-way leaves a playable file up to its last second or so: WebM as clusters whose
// sizes read "unknown" until known (RecordingFile/EbmlLiveSizes below), MP4 as fragmented MP4.
// A normal end (stop(), release(), a write error) finalises it: WebM gets its Cues, duration and
// sizes, MP4 its fragment index.
import { open, stat, unlink, type FileHandle } from 'node:fs/promises';
import {
  EncodedAudioPacketSource, EncodedPacket, EncodedVideoPacketSource, Mp4OutputFormat, Output, StreamTarget, WebMOutputFormat,
  type StreamTargetChunk,
} from 'mediabunny';
import type { ElementId } from '../../types.js';
import { Element, type CodecInfo, type MediaUnit } from '../graph/element.js';
import { depacketizerFor, type Depacketizer, type Frame } from './rtp/index.js';
import { NAL_PPS, NAL_SPS, joinAnnexB, nalType, parseSps, splitAnnexB } from './rtp/h264.js';
import { opusPacketSamples } from './rtp/opus.js';
import { vp8FrameSize } from './rtp/vp8.js';
import { fragmentFinalizer } from '../accel/internals.js';

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
  /** MP4 video: media time (s) of the frame the current fragment began with. */
  fragmentFrom?: number;
}

const CONTAINER_CODECS: Record<RecordingFormat, string[]> = {
  webm: ['video/vp8', 'audio/opus'],
  mp4: ['video/h264', 'video/vp8', 'audio/opus'],
};

/** Writes still queued in the muxer beyond which frames are dropped (a disk that cannot keep up). */
const MAX_QUEUED_WRITES = 2000;
/** WebM clusters and MP4 fragments are begun at a keyframe at least this far (s) into the last. */
const FRAGMENT_S = 1;
/** MP4: a video fragment this long (s) without a keyframe asks the sender for one. */
const FRAGMENT_KEYFRAME_ASK_S = 1.5;
/** MP4: a fragment this long (s) is cut without a keyframe (a sender ignoring the asks). */
const FRAGMENT_CUT_S = 2.5;

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
  private file?: RecordingFile;
  private lastFragmentAsk = 0;
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
   * Starts recording into `path` (created or truncated at once, so a bad path fails here; kept
   * open until the recording ends). Only once per element: a new recording is a new RecorderEndpoint.
   */
  async start(path: string, format: RecordingFormat = 'webm'): Promise<void> {
    if (this.st !== 'idle' || this.released) throw new Error(`recorder is ${this.released ? 'released' : this.st}`);
    if (format !== 'webm' && format !== 'mp4') throw new Error(`unknown recording format ${String(format)}`);
    this.path = path;
    this.format = format;
    const fh = await open(path, 'w');
    this.file = new RecordingFile(fh, format === 'webm', (err) => this.fail(err));
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
    // Both write as they go (see RecordingFile): WebM cluster by cluster with its sizes and Cues
    // patched in at the end, MP4 as fragments (a moov up front, then moof+mdat pairs) that each
    // play on their own; the sample tables of a plain MP4 would exist only once finalised.
    const format = this.format === 'webm'
      ? new WebMOutputFormat({ minimumClusterDuration: FRAGMENT_S })
      : new Mp4OutputFormat({ fastStart: 'fragmented', minimumFragmentDuration: FRAGMENT_S });
    const output = new Output({ format, target: new StreamTarget(this.file!.writable()) });
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
    if (this.format === 'mp4') this.keepFragmentShort(track, t);
    if (track.held) this.put(track, track.held, Math.max(0, track.held.time), Math.max(0.001, t.time - track.held.time));
    track.held = t;
  }

  /**
   * A fragmented MP4's fragment reaches the file only when complete, and mediabunny begins the
   * next one only at a video keyframe: with a sender's rare keyframes the file would lag (and the
   * fragment grow in memory) by a whole keyframe interval. So a long fragment asks the sender for
   * a keyframe; one that still gets too long (a sender ignoring asks) is cut at a delta frame,
   * which fragmented MP4 allows (players decode on from the last keyframe).
   */
  private keepFragmentShort(track: OutTrack, t: Timed): void {
    if (t.keyframe || track.fragmentFrom === undefined) { track.fragmentFrom = t.time; return; }
    const age = t.time - track.fragmentFrom;
    const now = performance.now();
    if (age >= FRAGMENT_KEYFRAME_ASK_S && now - this.lastFragmentAsk >= 1000) {
      this.lastFragmentAsk = now;
      this.sources.get('video')?.requestKeyframe(false);
    }
    // Not a public API of mediabunny (see internals.ts): without it fragments wait for keyframes.
    const cut = age >= FRAGMENT_CUT_S ? fragmentFinalizer(this.output) : undefined;
    if (cut) {
      track.fragmentFrom = t.time;
      this.enqueue(cut);
    }
  }

  private put(track: OutTrack, t: Timed, time: number, duration: number): void {
    track.lastTime = time;
    track.lastDuration = duration;
    track.end = Math.max(track.end, time + duration);
    const meta = track.meta;
    track.meta = undefined;
    if (meta && this.format === 'mp4') {
      // A fragmented MP4 has no edit list to say a track begins late (video waits for its first
      // keyframe), and players then count the delay twice in the duration: the first frame is
      // stretched back to the file's start instead (the first picture shows from the start).
      duration += time;
      time = 0;
    }
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
    // The muxer now writes the real sizes of what it marked unknown so far.
    this.file?.liveSizes?.stop();
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
    // Closed by finalize() or cancel() too; here also when no output was made or it failed.
    await this.file?.close().catch(() => undefined);
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

// ---- the file ---------------------------------------------------------------------------------

/**
 * WebM: the longest appended data waits in memory before it is written (what a crash can lose
 * of it). The muxer hands WebM over a block at a time; MP4 a whole fragment, written at once.
 */
const FILE_FLUSH_MS = 500;
/** Appended data gathered into one write, at most (fewer, larger writes than one per packet). */
const FILE_WRITE_BYTES = 64 * 1024;
/** Data handed over but not yet written beyond which the muxer is held back (a slow disk). */
const FILE_BACKLOG_BYTES = 4 * 1024 * 1024;

/**
 * The file a recording goes into, as the sink of mediabunny's StreamTarget (unchunked: the
 * muxer hands over what it has after each packet). Appended data is gathered and written within
 * FILE_FLUSH_MS (WebM) or at once (MP4); writes elsewhere (the muxer patching sizes and indexes)
 * are queued behind what came before, so the file ends up exactly as the muxer meant it. One
 * write at a time, in order. The first failed write is reported through `onError` and fails
 * every later one.
 */
class RecordingFile {
  /** Appended data not handed to the file yet: `run` bytes from `runStart`, in `parts`. */
  private parts: Uint8Array[] = [];
  private runStart = 0;
  private run = 0;
  private timer?: NodeJS.Timeout;
  private chain: Promise<void> = Promise.resolve();
  private backlog = 0;
  private error?: Error;
  private closing?: Promise<void>;
  private readonly gatherMs: number;
  /** WebM only: keeps the Segment and the Cluster being written readable if the process dies. */
  readonly liveSizes?: EbmlLiveSizes;

  constructor(private readonly fh: FileHandle, webm: boolean, private readonly onError: (err: Error) => void) {
    if (webm) this.liveSizes = new EbmlLiveSizes((pos, bytes) => this.put(bytes, pos));
    this.gatherMs = webm ? FILE_FLUSH_MS : 0;
  }

  /** The stream for `new StreamTarget(...)`; closing it (finalize or cancel) closes the file. */
  writable(): WritableStream<StreamTargetChunk> {
    return new WritableStream<StreamTargetChunk>({
      write: (chunk) => {
        if (this.error) throw this.error;
        this.put(chunk.data, chunk.position);
        this.liveSizes?.append(chunk.data, chunk.position);
        // Backpressure: the muxer waits (and the recorder's own queue grows) while the disk lags.
        return this.backlog > FILE_BACKLOG_BYTES ? this.chain : undefined;
      },
      close: () => this.close(),
    });
  }

  /** Writes everything handed over, then closes the file (once; later calls wait for it). */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.seal();
      await this.chain;
      await this.fh.close().catch(() => undefined);
      if (this.error) throw this.error;
    })();
    return this.closing;
  }

  private put(data: Uint8Array, pos: number): void {
    const end = pos + data.length;
    const runEnd = this.runStart + this.run;
    if (this.run > 0 && pos >= this.runStart && end <= runEnd) {
      this.patchRun(data, pos);
      return;
    }
    if (this.run > 0 && pos !== runEnd) {
      // Not an append: behind what is gathered it can go at once (queued after earlier writes
      // to the same bytes); overlapping it, what is gathered must go first.
      if (end <= this.runStart) { this.queue(Buffer.from(data), pos); return; }
      this.seal();
    }
    if (this.run === 0) this.runStart = pos;
    // A copy: the muxer's array is not ours to keep.
    this.parts.push(Buffer.from(data));
    this.run += data.length;
    if (this.run >= FILE_WRITE_BYTES || this.gatherMs === 0) this.seal();
    else this.timer ??= setTimeout(() => { this.timer = undefined; this.seal(); }, this.gatherMs).unref();
  }

  /** Overwrites bytes inside the gathered run (size fields of what is still in memory). */
  private patchRun(data: Uint8Array, pos: number): void {
    let at = this.runStart;
    for (const part of this.parts) {
      const from = Math.max(pos, at);
      const to = Math.min(pos + data.length, at + part.length);
      if (from < to) part.set(data.subarray(from - pos, to - pos), from - at);
      at += part.length;
    }
  }

  /** Hands the gathered run to the file. */
  private seal(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.run === 0) return;
    const data = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts);
    this.queue(data, this.runStart);
    this.runStart += this.run;
    this.parts = [];
    this.run = 0;
  }

  private queue(data: Uint8Array, pos: number): void {
    this.backlog += data.length;
    this.chain = this.chain.then(async () => {
      try {
        if (this.error) return;
        for (let off = 0; off < data.length;) {
          const { bytesWritten } = await this.fh.write(data, off, data.length - off, pos + off);
          off += bytesWritten;
        }
      } catch (err) {
        if (!this.error) {
          this.error = err as Error;
          this.onError(this.error);
        }
      } finally {
        this.backlog -= data.length;
      }
    });
  }
}

const EBML_HEADER_ID = 0x1a45dfa3;
const SEGMENT_ID = 0x18538067;
const CLUSTER_ID = 0x1f43b675;
/** What a Cluster holds: Timestamp, SimpleBlock, BlockGroup, Position, PrevSize. */
const CLUSTER_CHILDREN = new Set([0xe7, 0xa3, 0xa0, 0xa7, 0xab]);

/**
 * mediabunny writes a WebM's Segment and each Cluster with a size covering what they hold when
 * begun (a header; a timestamp) and patches in the real size when they are complete. Read before
 * that (a killed server), the Segment would end after its header and the last Cluster after its
 * timestamp: players would see no media, or lose the Cluster being written (up to a keyframe
 * interval). Following the bytes appended, this marks both "unknown size" (all ones, as in live
 * WebM streams, where a Cluster ends where the next top-level element begins) as soon as they
 * are written; the muxer's own patches of the real sizes come later and overwrite the marks, so
 * a finished file is what mediabunny made. (mediabunny's appendOnly mode would write unknown
 * sizes itself, but then no SeekHead, Duration or Cluster sizes: a poorer finished file.)
 */
class EbmlLiveSizes {
  /** The next byte to read; bytes up to `skipTo` are an element's payload. */
  private pos = 0;
  private skipTo = 0;
  private head: number[] = [];
  private headAt = 0;
  private level: 'file' | 'segment' | 'cluster' | 'off' = 'file';
  private cluster = { sizeAt: 0, sizeLen: 0, end: 0, marked: false };

  constructor(private readonly mark: (pos: number, bytes: Uint8Array) => void) {}

  /** From here on the muxer writes the real sizes (finalising): leave everything as it comes. */
  stop(): void { this.level = 'off'; }

  append(data: Uint8Array, at: number): void {
    if (this.level === 'off' || at + data.length <= this.pos) return; // a patch of bytes already read
    if (at > this.pos) { this.level = 'off'; return; } // a gap: not the stream expected, leave it be
    let i = this.pos - at;
    while (i < data.length && this.level !== 'off') {
      if (this.pos < this.skipTo) {
        const n = Math.min(this.skipTo - this.pos, data.length - i);
        i += n;
        this.pos += n;
        continue;
      }
      if (this.head.length === 0) this.headAt = this.pos;
      this.head.push(data[i++]!);
      this.pos++;
      const h = readElementHead(this.head);
      if (h === undefined) continue; // the rest of the head is in the next write
      this.head = [];
      if (h === null) this.level = 'off';
      else this.element(h.id, this.headAt, h.idLen, h.sizeLen, h.size);
    }
  }

  private element(id: number, at: number, idLen: number, sizeLen: number, size: number | undefined): void {
    const dataAt = at + idLen + sizeLen;
    if (this.level === 'file') {
      if (id === EBML_HEADER_ID && size !== undefined) this.skipTo = dataAt + size;
      else if (id === SEGMENT_ID) {
        if (size !== undefined) this.mark(at + idLen, unknownSize(sizeLen));
        this.level = 'segment';
      } else this.level = 'off';
      return;
    }
    if (this.level === 'cluster') {
      if (CLUSTER_CHILDREN.has(id) && size !== undefined) {
        // A block past the Cluster's declared end: that size was the muxer's placeholder.
        const c = this.cluster;
        if (at >= c.end && !c.marked) {
          c.marked = true;
          this.mark(c.sizeAt, unknownSize(c.sizeLen));
        }
        this.skipTo = dataAt + size;
        return;
      }
      this.level = 'segment'; // the Cluster is over: this is the Segment's next element
    }
    if (id === CLUSTER_ID) {
      this.cluster = { sizeAt: at + idLen, sizeLen, end: size === undefined ? Infinity : dataAt + size, marked: size === undefined };
      this.level = 'cluster';
    } else if (size !== undefined) this.skipTo = dataAt + size;
    else this.level = 'off';
  }
}

/**
 * An EBML element's ID and size from its first bytes: undefined while more bytes are needed,
 * null if they are not an element head; `size` undefined for the "unknown size" mark.
 */
function readElementHead(b: number[]): { id: number; idLen: number; sizeLen: number; size: number | undefined } | undefined | null {
  const idLen = vintLength(b[0]!);
  if (idLen === 0 || idLen > 4) return null;
  if (b.length <= idLen) return undefined;
  const sizeLen = vintLength(b[idLen]!);
  if (sizeLen === 0) return null;
  if (b.length < idLen + sizeLen) return undefined;
  let id = 0;
  for (let i = 0; i < idLen; i++) id = id * 256 + b[i]!;
  const firstMask = 0xff >> sizeLen;
  let size = b[idLen]! & firstMask;
  let allOnes = size === firstMask;
  for (let i = 1; i < sizeLen; i++) {
    size = size * 256 + b[idLen + i]!;
    allOnes &&= b[idLen + i] === 0xff;
  }
  return { id, idLen, sizeLen, size: allOnes ? undefined : size };
}

/** The length of an EBML variable-size integer from its first byte (0: not one). */
function vintLength(first: number): number {
  for (let n = 1; n <= 8; n++) if (first & (0x80 >> (n - 1))) return n;
  return 0;
}

/** EBML's "unknown size" in `len` bytes: the length marker, then all ones. */
function unknownSize(len: number): Uint8Array {
  const b = new Uint8Array(len).fill(0xff);
  b[0] = 0xff >> (len - 1);
  return b;
}
