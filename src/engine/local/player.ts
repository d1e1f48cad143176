// Kurento's PlayerEndpoint: a source that plays a media file (local path, file:// or
// http(s)://; WebM or MP4) to its sinks as RTP, paced in real time from the file's timestamps.
//
// Tracks whose codec the sink negotiated (VP8, H.264, Opus) are read by mediabunny and only
// re-packetized ("pass-through"); any other codec (VP9, AAC, Vorbis, MP3, or H.264 for a VP8
// sink...) is transcoded by an ffmpeg child process that reads the file itself and writes
// Matroska to a pipe, parsed here as it streams.
//
// URIs come from clients. http(s) media is read, by mediabunny and ffmpeg alike, through a
// loopback relay (http-relay.ts) that alone reaches the remote server, at allowed addresses
// only; local files are opened by their real path, inside the allowed folders; ffmpeg gets a
// protocol whitelist and a forced container format (no playlist demuxer ever runs); and errors
// reach clients as fixed texts of ours, the underlying text kept as `detail` for logs. Audio and video of a "pass" (one play from a
// position) share one time anchor, so they stay in sync; the RTP timestamps come from the wall
// clock at which each frame is due, so they run on across seeks, loops and pauses.
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RtpHeader, RtpPacket } from 'werift';
import {
  EncodedPacketSink, FilePathSource, Input, MATROSKA, MP4, QTFF, UrlSource, WEBM,
  type EncodedPacket, type InputAudioTrack, type InputFormat, type InputVideoTrack, type Source,
} from 'mediabunny';
import { addressPolicy } from '../../util/addresses.js';
import type { ElementId } from '../types.js';
import { HttpRelay } from './http-relay.js';
import { checkedRequest, HttpFailure, parseHttpUrl, type AddressPolicy } from './safe-http.js';
import { Element, type CodecInfo, type MediaUnit } from './element.js';
import { H264Packetizer, NAL_IDR, NAL_PPS, NAL_SPS, nalType, parseAvcC, splitAnnexB, splitAvcc } from './rtp/h264.js';
import { Vp8Packetizer, isVp8KeyframeData } from './rtp/vp8.js';

export type PlayerState = 'idle' | 'playing' | 'paused' | 'stopped' | 'eos';
export type PlayerErrorCode = 'invalid_uri' | 'invalid_media' | 'transcoder_failed' | 'read_failed' | 'invalid_state' | 'not_seekable';

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

/** A failure: `message` is a fixed text fit for clients, `detail` the underlying one (for logs). */
export class PlayerError extends Error {
  constructor(readonly code: PlayerErrorCode, message: string, readonly detail?: string) {
    super(message);
    this.name = 'PlayerError';
  }
}

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

/** What ffmpeg reads: the URI, its container (forced) and the only protocols it may use. */
interface FfmpegInput { uri: string; format?: 'matroska' | 'mov'; protocols: string }

type AV = 'audio' | 'video';

// ---- ffmpeg ---------------------------------------------------------------------------------

let ffmpegFound: string | null | undefined;

/**
 * The ffmpeg to transcode with: $NKMEDIA_FFMPEG, else `ffmpeg` on PATH (the system's, e.g.
 * Debian's), else the binary shipped in the optional npm package @ffmpeg-installer/ffmpeg.
 */
export function findFfmpeg(): string | undefined {
  if (ffmpegFound !== undefined) return ffmpegFound ?? undefined;
  const executable = (p: string) => { try { accessSync(p, fsConstants.X_OK); return true; } catch { return false; } };
  const env = process.env.NKMEDIA_FFMPEG;
  let found = env && executable(env) ? env : undefined;
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (found) break;
    if (dir && executable(join(dir, 'ffmpeg'))) found = join(dir, 'ffmpeg');
  }
  if (!found) {
    try {
      const p = (createRequire(import.meta.url)('@ffmpeg-installer/ffmpeg') as { path?: string }).path;
      if (p && executable(p)) found = p;
    } catch { /* not installed (it is optional) */ }
  }
  ffmpegFound = found ?? null;
  return found;
}

/** Transcoder processes alive now (each is reaped on stop/release; tests check none is left). */
const transcoders = new Set<ChildProcess>();
export function runningTranscoders(): number[] { return [...transcoders].map((c) => c.pid!).filter((p) => p !== undefined); }

// ---- frames ---------------------------------------------------------------------------------

/** A frame from the file (or the transcoder), in the form its RTP packetizer takes. */
interface SourceFrame {
  /** Presentation time in the file's timeline, seconds. */
  ts: number;
  duration: number;
  keyframe: boolean;
  /** VP8 frame or Opus packet. */
  data?: Buffer;
  /** H.264 access unit as NAL units (SPS/PPS put before each IDR). */
  nals?: Buffer[];
}

interface FrameSource {
  next(): Promise<SourceFrame | null>;
  close(): Promise<void>;
}

const toBuffer = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength);
const descriptionBytes = (d: AllowSharedBufferSource): Buffer =>
  ArrayBuffer.isView(d) ? Buffer.from(d.buffer, d.byteOffset, d.byteLength) : Buffer.from(d as ArrayBuffer);

/** H.264 NAL units from a container: AVCC with the track's avcC, or Annex B without one. */
class H264Unpacker {
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
class PacketSource implements FrameSource {
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

// ---- Matroska from ffmpeg's pipe ------------------------------------------------------------

interface MkvTrack { number: number; type?: number; codecId?: string; codecPrivate?: Buffer }
interface MkvBlock { track: number; time: number; data: Buffer; keyframe: boolean }

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

// ---- the transcoder -------------------------------------------------------------------------

type VideoTarget = 'video/vp8' | 'video/h264';

/**
 * One ffmpeg process for the tracks of a pass that need transcoding. It reads the URI from
 * `start` (accurate seek: its first video frame is a keyframe at that point) and is throttled
 * by the pipe: its output is not read while enough frames wait.
 */
class Transcoder {
  private readonly child: ChildProcess;
  private readonly reader = new MkvStreamReader();
  private readonly queues: Record<AV, SourceFrame[]> = { audio: [], video: [] };
  private readonly waiting: Record<AV, (() => void) | undefined> = { audio: undefined, video: undefined };
  private readonly units = new Map<number, { kind: AV; h264?: H264Unpacker }>();
  private readonly lastTs: Record<AV, number | undefined> = { audio: undefined, video: undefined };
  private ended = false;
  private killed = false;
  private error?: PlayerError;
  private stderr = '';
  private produced = 0;
  private readonly exited: Promise<void>;

  constructor(ffmpeg: string, input: FfmpegInput, private readonly start: number, want: { video?: VideoTarget; audio?: boolean }) {
    const args = ['-hide_banner', '-nostdin', '-loglevel', 'error'];
    if (start > 0) args.push('-ss', start.toFixed(3));
    // Only the protocols the input needs, and the container mediabunny recognised: ffmpeg must
    // not probe its way into a demuxer that opens other URLs (HLS, concat...).
    args.push('-protocol_whitelist', input.protocols);
    if (input.format) args.push('-f', input.format);
    args.push('-i', input.uri, '-map_metadata', '-1');
    // Keyframes every second, so a new listener never waits long for a picture.
    const gop = ['-g', '60', '-force_key_frames', 'expr:gte(t,n_forced*1)', '-pix_fmt', 'yuv420p'];
    if (want.video === 'video/vp8') {
      args.push('-map', '0:v:0', '-c:v', 'libvpx', '-deadline', 'realtime', '-cpu-used', '8', '-b:v', '1M', '-auto-alt-ref', '0', '-lag-in-frames', '0', '-error-resilient', '1', ...gop);
    } else if (want.video === 'video/h264') {
      args.push('-map', '0:v:0', '-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-profile:v', 'baseline', '-bf', '0', ...gop);
    }
    if (want.audio) args.push('-map', '0:a:0', '-c:a', 'libopus', '-b:a', '64k', '-ar', '48000', '-ac', '2', '-frame_duration', '20');
    args.push('-f', 'matroska', '-cluster_time_limit', '100', 'pipe:1');
    this.child = spawn(ffmpeg, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    transcoders.add(this.child);
    this.exited = new Promise((resolve) => {
      const done = (err?: PlayerError) => {
        if (this.ended) return;
        transcoders.delete(this.child);
        this.error ??= err;
        this.ended = true;
        this.wake();
        resolve();
      };
      this.child.once('close', (code, signal) => {
        if (this.killed || code === 0) { done(); return; }
        const why = this.stderr.trim().split('\n').slice(-3).join(' ') || `exit ${code ?? signal}`;
        done(new PlayerError(this.produced === 0 ? 'invalid_media' : 'transcoder_failed', 'transcoding failed', `ffmpeg: ${why}`));
      });
      // A failed spawn (no such binary) may not be followed by 'close'.
      this.child.once('error', (err) => done(new PlayerError('transcoder_failed', 'transcoding failed', `ffmpeg: ${err.message}`)));
    });
    this.child.stderr!.on('data', (d: Buffer) => { this.stderr = (this.stderr + d.toString()).slice(-4000); });
    this.child.stdout!.on('data', (d: Buffer) => this.onData(d));
  }

  get pid(): number | undefined { return this.child.pid; }

  private onData(chunk: Buffer): void {
    let blocks: MkvBlock[];
    try {
      blocks = this.reader.push(chunk);
    } catch (err) {
      this.error = new PlayerError('transcoder_failed', 'transcoding failed', `ffmpeg output: ${(err as Error).message}`);
      void this.close();
      return;
    }
    for (const b of blocks) {
      let unit = this.units.get(b.track);
      if (!unit) {
        const t = this.reader.tracks.get(b.track);
        if (!t) continue;
        const kind: AV = t.type === 1 ? 'video' : 'audio';
        unit = { kind, h264: t.codecId === 'V_MPEG4/ISO/AVC' ? new H264Unpacker(t.codecPrivate) : undefined };
        this.units.set(b.track, unit);
      }
      const ts = this.start + Math.max(0, b.time);
      const prev = this.lastTs[unit.kind];
      const duration = prev === undefined || ts <= prev ? (unit.kind === 'audio' ? 0.02 : 1 / 30) : ts - prev;
      this.lastTs[unit.kind] = ts;
      this.produced++;
      if (unit.h264) {
        const { nals, keyframe } = unit.h264.nals(b.data);
        this.queues[unit.kind].push({ ts, duration, keyframe, nals });
      } else {
        this.queues[unit.kind].push({ ts, duration, keyframe: unit.kind === 'audio' || b.keyframe || isVp8KeyframeData(b.data), data: b.data });
      }
    }
    if (this.queues.audio.length + this.queues.video.length > 300) this.child.stdout!.pause();
    this.wake();
  }

  private wake(): void {
    for (const k of ['audio', 'video'] as const) {
      const w = this.waiting[k];
      this.waiting[k] = undefined;
      w?.();
    }
  }

  view(kind: AV): FrameSource {
    return {
      next: async () => {
        for (;;) {
          const f = this.queues[kind].shift();
          if (f) {
            if (this.queues.audio.length + this.queues.video.length < 100) this.child.stdout!.resume();
            return f;
          }
          if (this.error) throw this.error;
          if (this.ended) return null;
          this.child.stdout!.resume();
          await new Promise<void>((resolve) => { this.waiting[kind] = resolve; });
        }
      },
      close: () => this.close(),
    };
  }

  /** Kills ffmpeg and waits until it is reaped. */
  async close(): Promise<void> {
    if (!this.ended && this.child.exitCode === null && this.child.signalCode === null) {
      this.killed = true;
      this.child.kill('SIGKILL');
    }
    // 'close' comes only once the pipes are closed: a paused stdout with unread output would hold it.
    this.child.stdout!.destroy();
    this.child.stderr!.destroy();
    await this.exited;
  }
}

// ---- RTP out --------------------------------------------------------------------------------

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

interface Queued { pass: Pass; kind: AV; frame: SourceFrame; catchUpIndex?: number }

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
  private readonly queues: Record<AV, Queued[]> = { audio: [], video: [] };
  private readonly out: Partial<Record<AV, RtpOut>> = {};
  private readonly epoch = performance.now();
  private lastRtpWall: Record<AV, number> = { audio: -Infinity, video: -Infinity };
  /** The pass whose frames play now (position is read from its anchor). */
  private playhead?: Pass;
  private pausedAt = 0;
  private timer?: NodeJS.Timeout;
  private roomWaiters: (() => void)[] = [];
  private lastRefresh = -Infinity;
  private refreshTimer?: NodeJS.Timeout;
  /** Serializes start/seek/refresh/stop (each replaces the passes). */
  private op: Promise<unknown> = Promise.resolve();
  private readonly maxPayload: number;
  private readonly ffmpeg?: string;
  /** Where http(s) media may come from; undefined: no http(s). */
  private readonly allowAddress?: AddressPolicy;
  private readonly localRoots?: readonly string[];

  constructor(id: ElementId, tag: string, private readonly emit: (ev: PlayerEvent) => void, opts: PlayerOptions = {}) {
    super(id, tag);
    this.maxPayload = opts.maxPayload ?? 1100;
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
    clearTimeout(this.timer);
    this.timer = undefined;
    this.emitState('paused');
  }

  /** Continues from where pause() left. */
  resume(): void {
    if (this.st !== 'paused') return;
    const shift = performance.now() - this.pausedAt;
    for (const p of this.passes) p.wall0 += shift;
    this.st = 'playing';
    this.emitState('playing');
    this.tick();
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
    for (const q of initial) this.queues[q.kind].push(q);
    if (mode !== 'loop') this.playhead = pass;
    for (const [kind, src] of Object.entries(pass.sources) as [AV, FrameSource][]) {
      if (!pass.ended[kind]) void this.pump(pass, kind, src);
    }
    if (mode !== 'loop') this.lastRefresh = performance.now();
    this.checkPassEnd(pass);
    this.tick();
  }

  /** Reads a source into its queue, staying LOOKAHEAD_MS ahead of the clock. */
  private async pump(pass: Pass, kind: AV, src: FrameSource): Promise<void> {
    for (;;) {
      while (!pass.closed && this.aheadMs(pass, this.lastQueuedTs(pass, kind)) > LOOKAHEAD_MS) {
        await new Promise<void>((resolve) => this.roomWaiters.push(resolve));
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
        if (!this.timer && this.st === 'playing') this.tick(); // the end may already be due
        return;
      }
      pass.lastEnd = Math.max(pass.lastEnd, f.ts + f.duration);
      this.queues[kind].push({ pass, kind, frame: f });
      if (!this.timer && this.st === 'playing') this.tick();
    }
  }

  private lastQueuedTs(pass: Pass, kind: AV): number {
    const q = this.queues[kind];
    for (let i = q.length - 1; i >= 0; i--) if (q[i]!.pass === pass) return q[i]!.frame.ts;
    return pass.t0;
  }

  private aheadMs(pass: Pass, ts: number): number {
    const now = this.st === 'paused' ? this.pausedAt : performance.now();
    return pass.wall0 + (ts - pass.t0) * 1000 - now;
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

  // ---- pacing ---------------------------------------------------------------------------------

  /** Sends every frame that is due, then sleeps until the next one is. */
  private tick = (): void => {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.st !== 'playing') return;
    const now = performance.now();
    for (;;) {
      let best: Queued | undefined;
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
    const waiters = this.roomWaiters;
    this.roomWaiters = [];
    for (const w of waiters) w();
    this.checkEos();
  };

  private send(q: Queued, due: number): void {
    const { pass, kind, frame } = q;
    if (pass !== this.playhead && pass.play > (this.playhead?.play ?? 0)) {
      this.playhead = pass;
      this.emit({ type: 'player_loop', elementId: this.id, tag: this.tag, loop: pass.play - 1, loops_left: this.loops === 0 ? null : this.loops - pass.play + 1 });
    }
    const plan = this.plans.find((p) => p.kind === kind);
    if (!plan) return;
    let out = this.out[kind];
    if (!out || out.codec.mimeType !== plan.out.mimeType) out = this.out[kind] = new RtpOut(plan.out, this.maxPayload);
    // Catch-up frames get timestamps 1 ms apart just before the pass's start.
    let rtpWall = q.catchUpIndex !== undefined ? pass.wall0 - (pass.catchUp - q.catchUpIndex) : due;
    if (rtpWall <= this.lastRtpWall[kind]) rtpWall = this.lastRtpWall[kind] + 0.05;
    this.lastRtpWall[kind] = rtpWall;
    const ts = out.tsBase + Math.round(((rtpWall - this.epoch) * out.codec.clockRate) / 1000);
    for (const rtp of out.packets(frame, ts)) this.forward({ kind, rtp, codec: out.codec, origin: this.id });
  }

  private checkEos(): void {
    if (this.st !== 'playing' || this.queues.audio.length + this.queues.video.length > 0) return;
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
    clearTimeout(this.timer);
    this.timer = undefined;
    const passes = this.passes;
    this.passes = [];
    for (const p of passes) p.closed = true;
    this.queues.audio = [];
    this.queues.video = [];
    const waiters = this.roomWaiters;
    this.roomWaiters = [];
    for (const w of waiters) w();
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
