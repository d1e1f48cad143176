// Kurento's PlayerEndpoint: a source that plays a media file (local path, file:// or
// http(s)://; WebM or MP4) to its sinks as RTP, paced in real time from the file's timestamps.
//
// Tracks whose codec the sink negotiated (VP8, H.264, Opus) are read by mediabunny and only
// re-packetized ("pass-through"); any other codec (VP9, AAC, Vorbis, MP3, or H.264 for a VP8
// sink...) is transcoded by an ffmpeg child process that reads the file itself and writes
// Matroska to a pipe, parsed as it streams.
//
// URIs come from clients. http(s) media is read, by mediabunny and ffmpeg alike, through a
// loopback relay (http-relay.ts) that alone reaches the remote server, at allowed addresses
// only; local files are opened by their real path, inside the allowed folders; ffmpeg gets a
// protocol whitelist and a forced container format (no playlist demuxer ever runs); and errors
// reach clients as fixed texts of ours, the underlying text kept as `detail` for logs. Audio and video of a "pass" (one play from a
// position) share one time anchor, so they stay in sync; the RTP timestamps come from the wall
// clock at which each frame is due, so they run on across seeks, loops and pauses.
//
// This module is the element: opening the media, planning codecs, passes (start, seek, keyframe
// refresh, loops) and the end. Its parts: frame-source.ts (frames, pass-through reading),
// ffmpeg-transcoder.ts with mkv-reader.ts (the transcoder child and its output), rtp-pacing.ts
// (frames out as RTP when due).
import { realpath, stat } from 'node:fs/promises';
import { resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  EncodedPacketSink, FilePathSource, Input, MATROSKA, MP4, QTFF, UrlSource, WEBM,
  type EncodedPacket, type InputAudioTrack, type InputFormat, type InputVideoTrack, type Source,
} from 'mediabunny';
import { addressPolicy } from '../../../util/addresses.js';
import type { ElementId } from '../../types.js';
import { HttpRelay } from './http-relay.js';
import { checkedRequest, HttpFailure, parseHttpUrl, type AddressPolicy } from './safe-http.js';
import { Element, type CodecInfo, type MediaUnit } from '../graph/element.js';
import { PlayerError, type PlayerErrorCode } from './player-error.js';
import { descriptionBytes, H264Unpacker, PacketSource, type AV, type FrameSource, type SourceFrame } from './frame-source.js';
import { findFfmpeg, Transcoder, type FfmpegInput, type VideoTarget } from './ffmpeg-transcoder.js';
import { RtpPacer, type Paced } from './rtp-pacing.js';

export { PlayerError, type PlayerErrorCode } from './player-error.js';
export { findFfmpeg, runningTranscoders } from './ffmpeg-transcoder.js';

export type PlayerState = 'idle' | 'playing' | 'paused' | 'stopped' | 'eos';

/** Kurento's getVideoInfo, in milliseconds. */
export interface PlayerInfo {
  duration: number;
  is_seekable: boolean;
  first_position: number;
  last_position: number;
}

/** What the player reports; the engine forwards these (tagged) as events of the session. */
export type PlayerEvent =
  | { type: 'player_state'; elementId: ElementId; tag: string; state: 'playing' | 'paused' | 'stopped' | 'eos'; position: number }
  /** A play of the file ended and the next began; loops_left is null when looping forever. */
  | { type: 'player_loop'; elementId: ElementId; tag: string; loop: number; loops_left: number | null }
  /** `message` is one of our fixed texts (fit for clients); `detail` is for logs only. */
  | { type: 'error'; elementId: ElementId; tag: string; code: PlayerErrorCode; message: string; detail?: string };

export interface PlayerOptions {
  /** The ffmpeg binary for transcoding; default: findFfmpeg(). */
  ffmpeg?: string;
  /** Largest RTP payload, bytes (the endpoint adds the RTP header and SRTP tag). */
  maxPayload?: number;
  /**
   * Addresses or CIDR networks http(s) media may come from although not public (public ones
   * always may); false: no http(s) at all. Default: public addresses only.
   */
  httpAllow?: readonly string[] | false;
  /** Folders local files must really be inside (symlinks resolved); unset: anywhere. */
  localRoots?: readonly string[];
}

/** The containers played (what the docs promise): no playlist formats such as HLS. */
const PLAYABLE_FORMATS: InputFormat[] = [MATROSKA, WEBM, MP4, QTFF];
const NOT_PLAYABLE = 'not a playable WebM/MP4';
// ---- the element ----------------------------------------------------------------------------

/** How far ahead of its due time a frame is read. */
const LOOKAHEAD_MS = 1000;
/** A (re)start begins this long after the pass is ready (plus 1 ms per catch-up frame). */
const START_DELAY_MS = 30;
/** Urgent keyframe requests are served at most this often (each one re-reads from a keyframe). */
const REFRESH_INTERVAL_MS = 1000;
/** A pass-through keyframe further back than this is not re-sent; the next one is awaited. */
const MAX_CATCH_UP_S = 5;

interface TrackPlan {
  kind: AV;
  track: InputVideoTrack | InputAudioTrack;
  /** The file's codec (mediabunny's name). */
  fileCodec: string;
  /** What the sinks get. */
  out: CodecInfo;
  passThrough: boolean;
}

/** One play of the file from a position: its sources and its time anchor. */
interface Pass {
  t0: number;
  /** performance.now() at which file time t0 is due (shifted by pauses). */
  wall0: number;
  play: number;
  sources: Partial<Record<AV, FrameSource>>;
  transcoder?: Transcoder;
  ended: Partial<Record<AV, boolean>>;
  lastEnd: number;
  closed: boolean;
  /** Video frames before t0 (from the keyframe on), sent at once with compressed timestamps. */
  catchUp: number;
}

type Queued = Paced<Pass>;

const CODEC_MIME: Record<string, CodecInfo> = {
  vp8: { mimeType: 'video/vp8', clockRate: 90000 },
  avc: { mimeType: 'video/h264', clockRate: 90000 },
  opus: { mimeType: 'audio/opus', clockRate: 48000 },
};

/** Elements that know the codec they send their client (WebRtcEndpoint.sendCodec). */
interface SendCodecAware { sendCodec(kind: AV): CodecInfo | undefined }
const isSendCodecAware = (e: unknown): e is SendCodecAware => typeof (e as Partial<SendCodecAware>).sendCodec === 'function';

export class PlayerEndpoint extends Element {
  private st: PlayerState = 'idle';
  private uri = '';
  private input?: Input;
  private ffmpegInput?: FfmpegInput;
  /** The loopback relay of an http(s) URI (closed with the input). */
  private relay?: HttpRelay;
  private infoData?: PlayerInfo;
  private plans: TrackPlan[] = [];
  private loops = 0;
  private passes: Pass[] = [];
  /** The pass whose frames play now (position is read from its anchor). */
  private playhead?: Pass;
  private pausedAt = 0;
  private lastRefresh = -Infinity;
  private refreshTimer?: NodeJS.Timeout;
  /** Serializes start/seek/refresh/stop (each replaces the passes). */
  private op: Promise<unknown> = Promise.resolve();
  private readonly maxPayload: number;
  private readonly ffmpeg?: string;
  /** Where http(s) media may come from; undefined: no http(s). */
  private readonly allowAddress?: AddressPolicy;
  private readonly localRoots?: readonly string[];
  /** Sends the queued frames when due (rtp-pacing.ts). */
  private readonly pacer: RtpPacer<Pass>;

  constructor(id: ElementId, tag: string, private readonly emit: (ev: PlayerEvent) => void, opts: PlayerOptions = {}) {
    super(id, tag);
    this.maxPayload = opts.maxPayload ?? 1100;
    this.pacer = new RtpPacer<Pass>({
      isPlaying: () => this.st === 'playing',
      clock: () => (this.st === 'paused' ? this.pausedAt : performance.now()),
      frameDue: (q) => this.frameDue(q),
      send: (kind, rtp, codec) => this.forward({ kind, rtp, codec, origin: this.id }),
      afterTick: () => this.checkEos(),
    }, this.maxPayload);
    this.ffmpeg = opts.ffmpeg ?? findFfmpeg();
    if (opts.httpAllow !== false) this.allowAddress = addressPolicy(opts.httpAllow ?? []);
    this.localRoots = opts.localRoots;
  }

  get state(): PlayerState { return this.st; }
  get currentUri(): string { return this.uri; }

  /** A player is a source only: media sent to it is ignored. */
  accept(_unit: MediaUnit): void { /* nothing plays into a player */ }

  /**
   * Opens `uri` and plays it `loops` times (0 = forever). Rejects with a PlayerError
   * ('invalid_uri': cannot be opened; 'invalid_media': not playable), also reported as an event.
   */
  start(uri: string, loops = 0): Promise<PlayerInfo> {
    return this.serial(async () => {
      if (this.released) throw new PlayerError('invalid_state', 'player released');
      await this.closeAll();
      await this.disposeInput();
      this.uri = uri;
      this.loops = Math.max(0, Math.floor(loops));
      try {
        await this.open(uri);
        this.st = 'playing';
        await this.openPass(this.infoData!.first_position / 1000, 'start', 1);
      } catch (err) {
        const e = this.explain(err, 'invalid_media');
        this.st = 'stopped';
        await this.closeAll();
        await this.disposeInput();
        this.emitError(e);
        throw e;
      }
      this.emitState('playing');
      return this.infoData!;
    });
  }

  pause(): void {
    if (this.st !== 'playing') return;
    this.st = 'paused';
    this.pausedAt = performance.now();
    this.pacer.stop();
    this.emitState('paused');
  }

  /** Continues from where pause() left. */
  resume(): void {
    if (this.st !== 'paused') return;
    const shift = performance.now() - this.pausedAt;
    for (const p of this.passes) p.wall0 += shift;
    this.st = 'playing';
    this.emitState('playing');
    this.pacer.tick();
  }

  /** Stops playing and closes the file (and any ffmpeg). start() may follow. */
  stop(): Promise<void> {
    return this.serial(async () => {
      if (this.st === 'idle' || this.st === 'stopped') return;
      const position = this.position();
      this.st = 'stopped';
      await this.closeAll();
      await this.disposeInput();
      this.emit({ type: 'player_state', elementId: this.id, tag: this.tag, state: 'stopped', position });
    });
  }

  /** Jumps to `ms` (playing or paused). */
  seek(ms: number): Promise<void> {
    return this.serial(async () => {
      if (this.st !== 'playing' && this.st !== 'paused') throw new PlayerError('invalid_state', `cannot seek while ${this.st}`);
      const info = this.infoData!;
      if (!info.is_seekable) throw new PlayerError('not_seekable', 'not seekable');
      const t = Math.min(Math.max(ms, info.first_position), info.last_position) / 1000;
      const play = this.playhead?.play ?? 1;
      await this.closeAll();
      await this.openPass(t, 'seek', play);
    });
  }

  /** Where playback is, in ms of the file's timeline. */
  position(): number {
    const p = this.playhead;
    if (!p) return this.infoData?.first_position ?? 0;
    const now = this.st === 'paused' ? this.pausedAt : performance.now();
    const t = Math.min(Math.max(p.t0 + (now - p.wall0) / 1000, p.t0), Math.max(p.t0, p.lastEnd));
    return Math.round(t * 1000);
  }

  info(): PlayerInfo | undefined { return this.infoData; }

  /**
   * A sink needs a keyframe. Urgent requests (a new sink) re-read the video from the keyframe
   * at or before the current position (pass-through: the frames since are sent at once; the
   * transcoder restarts there and begins with a keyframe), at most once a second; others wait
   * for the next keyframe (the transcoder makes one every second).
   */
  override requestKeyframe(urgent: boolean): void {
    if (!urgent || this.released || (this.st !== 'playing' && this.st !== 'paused') || this.refreshTimer) return;
    const wait = this.lastRefresh + REFRESH_INTERVAL_MS - performance.now();
    const go = () => {
      this.refreshTimer = undefined;
      void this.serial(async () => {
        if (this.st !== 'playing' && this.st !== 'paused') return;
        const t = this.position() / 1000;
        const play = this.playhead?.play ?? 1;
        await this.closeAll();
        await this.openPass(t, 'refresh', play);
      }).catch(() => undefined);
    };
    if (wait <= 0) go();
    else this.refreshTimer = setTimeout(go, wait);
  }

  override async release(): Promise<void> {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = undefined;
    await this.stop().catch(() => undefined);
    await this.serial(async () => { await this.closeAll(); await this.disposeInput(); });
    await super.release();
  }

  // ---- opening --------------------------------------------------------------------------------

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const r = this.op.then(fn, fn);
    this.op = r.catch(() => undefined);
    return r;
  }

  private async open(uri: string): Promise<void> {
    let seekable = true;
    let source: Source;
    if (/^https?:\/\//i.test(uri)) {
      const allow = this.allowAddress;
      if (!allow) throw new PlayerError('invalid_uri', 'http(s) is disabled on this server');
      let url: URL;
      try {
        url = parseHttpUrl(uri);
        // A one-byte range request tells "cannot be opened" from "cannot be played", and
        // whether the server can seek (206) or only stream the whole file (200).
        const probe = await checkedRequest(url, { allow, range: 'bytes=0-0' });
        probe.body.destroy();
        if (probe.status >= 400) throw new PlayerError('invalid_uri', `HTTP ${probe.status}`);
        seekable = probe.status === 206;
      } catch (err) {
        if (err instanceof HttpFailure) throw new PlayerError('invalid_uri', err.message, err.detail);
        throw err;
      }
      this.relay = await HttpRelay.open(url, allow);
      // No retries: a failed read is reported (the relay knows why), not hidden by backoff.
      source = new UrlSource(this.relay.url, { getRetryDelay: () => null, handleUnhandledError: () => undefined });
      this.ffmpegInput = { uri: this.relay.url, protocols: 'http,tcp' };
    } else {
      let path = uri;
      if (/^file:/i.test(uri)) {
        try { path = fileURLToPath(uri); } catch (err) { throw new PlayerError('invalid_uri', 'not a valid file URI', (err as Error).message); }
      } else if (/^[a-z][a-z0-9+.-]*:\/\//i.test(uri)) {
        throw new PlayerError('invalid_uri', 'unsupported scheme');
      }
      const real = await this.localFile(path);
      source = new FilePathSource(real);
      this.ffmpegInput = { uri: `file:${real}`, protocols: 'file' };
    }
    const input = new Input({ source, formats: PLAYABLE_FORMATS });
    this.input = input;
    let video: InputVideoTrack | null;
    let audio: InputAudioTrack | null;
    try {
      const format = await input.getFormat();
      this.ffmpegInput.format = format === MP4 || format === QTFF ? 'mov' : 'matroska';
      [video, audio] = await Promise.all([input.getPrimaryVideoTrack(), input.getPrimaryAudioTrack()]);
    } catch (err) {
      throw this.explain(err, 'invalid_media');
    }
    if (!video && !audio) throw new PlayerError('invalid_media', 'no audio or video track');
    const tracks = [video, audio].filter((t): t is InputVideoTrack | InputAudioTrack => !!t);
    const first = Math.max(0, await input.getFirstTimestamp(tracks));
    const duration = await input.computeDuration(tracks);
    this.infoData = {
      duration: Math.round(duration * 1000), is_seekable: seekable,
      first_position: Math.round(first * 1000), last_position: Math.round(duration * 1000),
    };
    this.plans = [];
    if (video) this.plans.push({ kind: 'video', track: video, fileCodec: (await video.getCodec()) ?? 'unknown', out: CODEC_MIME.vp8!, passThrough: false });
    if (audio) this.plans.push({ kind: 'audio', track: audio, fileCodec: (await audio.getCodec()) ?? 'unknown', out: CODEC_MIME.opus!, passThrough: false });
  }

  /** What each sink (through pass-throughs) negotiated with its client, for a kind. */
  private sinkCodec(kind: AV): CodecInfo | undefined {
    const seen = new Set<Element>();
    const walk = (els: Iterable<Element>): CodecInfo | undefined => {
      for (const el of els) {
        if (seen.has(el)) continue;
        seen.add(el);
        const c = isSendCodecAware(el) ? el.sendCodec(kind) : walk(el.sinks[kind]);
        if (c) return c;
      }
      return undefined;
    };
    return walk(this.sinks[kind]);
  }

  /** Pass-through when the file's codec is what the sink takes; else transcode to the sink's codec. */
  private planCodecs(): void {
    for (const p of this.plans) {
      const sink = this.sinkCodec(p.kind);
      const file = CODEC_MIME[p.fileCodec];
      const fileFits = !!file && file.mimeType.startsWith(p.kind);
      if (sink && !['video/vp8', 'video/h264', 'audio/opus'].includes(sink.mimeType)) {
        throw new PlayerError('invalid_media', `the sink's ${sink.mimeType} cannot be produced`);
      }
      p.passThrough = fileFits && (!sink || sink.mimeType === file!.mimeType);
      p.out = p.passThrough ? file! : sink ?? (p.kind === 'video' ? CODEC_MIME.vp8! : CODEC_MIME.opus!);
    }
  }

  private async openPass(t0: number, mode: 'start' | 'seek' | 'refresh' | 'loop', play: number, wall0?: number): Promise<void> {
    this.planCodecs();
    const pass: Pass = { t0, wall0: 0, play, sources: {}, ended: {}, lastEnd: t0, closed: false, catchUp: 0 };
    this.passes.push(pass);
    const initial: Queued[] = [];
    const transcode = this.plans.filter((p) => !p.passThrough);
    try {
      if (transcode.length > 0) {
        if (!this.ffmpeg) throw new PlayerError('invalid_media', 'needs transcoding, and the server has no ffmpeg', transcode.map((p) => p.fileCodec).join('/'));
        const v = transcode.find((p) => p.kind === 'video');
        pass.transcoder = new Transcoder(this.ffmpeg, this.ffmpegInput!, t0, { video: v?.out.mimeType as VideoTarget | undefined, audio: transcode.some((p) => p.kind === 'audio') });
        for (const p of transcode) pass.sources[p.kind] = pass.transcoder.view(p.kind);
      }
      for (const p of this.plans.filter((x) => x.passThrough)) {
        const sink = new EncodedPacketSink(p.track);
        let start: EncodedPacket | null;
        if (p.kind === 'video') {
          start = await sink.getKeyPacket(t0, { verifyKeyPackets: true });
          if (start && t0 - start.timestamp > MAX_CATCH_UP_S && mode === 'refresh') start = await sink.getNextKeyPacket(start);
        } else {
          start = await sink.getPacket(t0);
        }
        start ??= await sink.getFirstPacket();
        if (!start) { pass.ended[p.kind] = true; continue; }
        const avcc = p.fileCodec === 'avc' ? (await (p.track as InputVideoTrack).getDecoderConfig())?.description : undefined;
        const h264 = p.fileCodec === 'avc' ? new H264Unpacker(avcc ? descriptionBytes(avcc) : undefined) : undefined;
        pass.sources[p.kind] = new PacketSource(sink, start, h264);
      }
      // The first frame of each source: a transcoder is ready once it has produced, and the
      // frames of pass-through video between its keyframe and t0 are the catch-up.
      for (const [kind, src] of Object.entries(pass.sources) as [AV, FrameSource][]) {
        for (;;) {
          const f = await src.next();
          if (pass.closed) return;
          if (!f) { pass.ended[kind] = true; break; }
          pass.lastEnd = Math.max(pass.lastEnd, f.ts + f.duration);
          if (kind === 'video' && f.ts < t0 - 0.0005 && mode !== 'loop') {
            initial.push({ pass, kind, frame: f, catchUpIndex: pass.catchUp++ });
            continue;
          }
          initial.push({ pass, kind, frame: f });
          break;
        }
      }
    } catch (err) {
      pass.closed = true;
      await this.closePass(pass);
      throw this.explain(err, 'invalid_media');
    }
    const now = this.st === 'paused' ? this.pausedAt : performance.now();
    pass.wall0 = wall0 ?? now + START_DELAY_MS + pass.catchUp;
    for (const q of initial) this.pacer.push(q);
    if (mode !== 'loop') this.playhead = pass;
    for (const [kind, src] of Object.entries(pass.sources) as [AV, FrameSource][]) {
      if (!pass.ended[kind]) void this.pump(pass, kind, src);
    }
    if (mode !== 'loop') this.lastRefresh = performance.now();
    this.checkPassEnd(pass);
    this.pacer.tick();
  }

  /** Reads a source into its queue, staying LOOKAHEAD_MS ahead of the clock. */
  private async pump(pass: Pass, kind: AV, src: FrameSource): Promise<void> {
    for (;;) {
      while (!pass.closed && this.pacer.aheadMs(pass, this.pacer.lastQueuedTs(pass, kind)) > LOOKAHEAD_MS) {
        await this.pacer.waitForRoom();
      }
      if (pass.closed) return;
      let f: SourceFrame | null;
      try {
        f = await src.next();
      } catch (err) {
        if (!pass.closed) this.failed(this.explain(err, 'read_failed'));
        return;
      }
      if (pass.closed) return;
      if (!f) {
        pass.ended[kind] = true;
        this.checkPassEnd(pass);
        this.pacer.kick(); // the end may already be due
        return;
      }
      pass.lastEnd = Math.max(pass.lastEnd, f.ts + f.duration);
      this.pacer.push({ pass, kind, frame: f });
      this.pacer.kick();
    }
  }

  /** All sources of a pass ran out: the next play is opened right after it (or the end comes). */
  private checkPassEnd(pass: Pass): void {
    if (pass.closed || !(['audio', 'video'] as const).every((k) => !pass.sources[k] || pass.ended[k])) return;
    if (this.passes[this.passes.length - 1] !== pass) return;
    if (this.loops !== 0 && pass.play >= this.loops) return; // the last play: eos once drained
    const wall0 = pass.wall0 + (pass.lastEnd - pass.t0) * 1000;
    void this.serial(async () => {
      if (pass.closed) return;
      await this.openPass(this.infoData!.first_position / 1000, 'loop', pass.play + 1, wall0);
    }).catch((err) => this.failed(this.explain(err, 'read_failed')));
  }

  // ---- pacing (rtp-pacing.ts) ------------------------------------------------------------------

  /** A frame goes out: a new play announces itself; the codec its kind is sent in. */
  private frameDue(q: Queued): CodecInfo | undefined {
    const { pass, kind } = q;
    if (pass !== this.playhead && pass.play > (this.playhead?.play ?? 0)) {
      this.playhead = pass;
      this.emit({ type: 'player_loop', elementId: this.id, tag: this.tag, loop: pass.play - 1, loops_left: this.loops === 0 ? null : this.loops - pass.play + 1 });
    }
    return this.plans.find((p) => p.kind === kind)?.out;
  }

  private checkEos(): void {
    if (this.st !== 'playing' || this.pacer.queued > 0) return;
    const last = this.passes[this.passes.length - 1];
    if (!last || last.closed) return;
    if (!(['audio', 'video'] as const).every((k) => !last.sources[k] || last.ended[k])) return;
    if (this.loops === 0 || last.play < this.loops) return; // the next play is being opened
    this.st = 'eos';
    this.playhead = last;
    const position = Math.round(last.lastEnd * 1000);
    void this.serial(() => this.closeAll());
    this.emit({ type: 'player_state', elementId: this.id, tag: this.tag, state: 'eos', position });
  }

  // ---- teardown -------------------------------------------------------------------------------

  private failed(err: PlayerError): void {
    if (this.st !== 'playing' && this.st !== 'paused') return;
    this.emitError(err);
    void this.stop();
  }

  private async closePass(pass: Pass): Promise<void> {
    pass.closed = true;
    await Promise.all(Object.values(pass.sources).map((s) => s.close().catch(() => undefined)));
    await pass.transcoder?.close();
  }

  private async closeAll(): Promise<void> {
    const passes = this.passes;
    this.passes = [];
    for (const p of passes) p.closed = true;
    this.pacer.clear();
    await Promise.all(passes.map((p) => this.closePass(p)));
  }

  private async disposeInput(): Promise<void> {
    this.input?.dispose();
    this.input = undefined;
    this.ffmpegInput = undefined;
    const relay = this.relay;
    this.relay = undefined;
    await relay?.close();
  }

  private emitState(state: 'playing' | 'paused' | 'stopped' | 'eos'): void {
    this.emit({ type: 'player_state', elementId: this.id, tag: this.tag, state, position: this.position() });
  }

  private emitError(err: PlayerError): void {
    this.emit({ type: 'error', elementId: this.id, tag: this.tag, code: err.code, message: err.message, ...(err.detail ? { detail: err.detail } : {}) });
  }

  /**
   * A failure as clients hear it: a PlayerError as it is (its text is ours), anything else
   * (mediabunny, the file system) as a fixed text with its own kept as detail. When reading
   * over http failed, the relay's words say why (an HTTP status, "cannot connect"...).
   */
  private explain(err: unknown, code: PlayerErrorCode): PlayerError {
    const upstream = this.relay?.lastFailure;
    const own = err instanceof PlayerError ? err : undefined;
    if (own && (!upstream || own.code === 'invalid_uri' || own.code === 'invalid_state' || own.code === 'not_seekable')) return own;
    const detail = [own?.detail ?? (err instanceof Error ? err.message : String(err)), upstream?.detail].filter(Boolean).join('; ');
    const text = upstream?.message ?? (code === 'invalid_media' ? NOT_PLAYABLE : 'cannot read the media');
    return new PlayerError(own?.code ?? code, text, detail || undefined);
  }

  /** A local file by its real path (symlinks resolved), which must be in an allowed folder. */
  private async localFile(path: string): Promise<string> {
    let real: string;
    try {
      real = await realpath(path);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new PlayerError('invalid_uri', code === 'ENOENT' || code === 'ENOTDIR' ? 'no such file' : 'cannot open the file', `${path}: ${code ?? (err as Error).message}`);
    }
    if (this.localRoots) {
      const roots = await Promise.all(this.localRoots.map((r) => realpath(r).catch(() => resolve(r))));
      if (!roots.some((r) => real === r || real.startsWith(r.endsWith(sep) ? r : r + sep))) {
        throw new PlayerError('invalid_uri', 'file not allowed (outside the media folders)', real);
      }
    }
    const st = await stat(real).catch((err: NodeJS.ErrnoException) => { throw new PlayerError('invalid_uri', 'cannot open the file', `${real}: ${err.code ?? err.message}`); });
    if (!st.isFile()) throw new PlayerError('invalid_uri', 'not a file', real);
    return real;
  }
}
