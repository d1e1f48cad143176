// The transcoder: one ffmpeg child process per pass of the player, for the tracks whose codec
// the sinks do not take as is. It reads the media itself (a local file, or the player's loopback
// relay), with a protocol whitelist and a forced container format, and writes Matroska to a pipe,
// parsed as it streams; its output is not read while enough frames wait.
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { PlayerError } from './player-error.js';
import { H264Unpacker, type AV, type FrameSource, type SourceFrame } from './frame-source.js';
import { MkvStreamReader, type MkvBlock } from './mkv-reader.js';
import { isVp8KeyframeData } from './rtp/vp8.js';

/** What ffmpeg reads: the URI, its container (forced) and the only protocols it may use. */
export interface FfmpegInput { uri: string; format?: 'matroska' | 'mov'; protocols: string }

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

export type VideoTarget = 'video/vp8' | 'video/h264';

/**
 * One ffmpeg process for the tracks of a pass that need transcoding. It reads the URI from
 * `start` (accurate seek: its first video frame is a keyframe at that point) and is throttled
 * by the pipe: its output is not read while enough frames wait.
 */
export class Transcoder {
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
