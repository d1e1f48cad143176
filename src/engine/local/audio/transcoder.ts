// A sans-IO audio transcoder between RTP streams whose codecs differ (a SIP phone on
// PCMU/PCMA/G722 and a browser on Opus): RTP payloads in, RTP payloads with timestamps out; no
// sockets, no timers. Each push decodes, fills or skips gaps, resamples where the PCM rates
// differ, re-frames to the output ptime and encodes.
//
// Timing: output timestamps count output samples from a random base, so they advance exactly
// with the audio that goes out. A short gap in the input (lost packets, or a sender that skipped
// a little) is filled (Opus: FEC/PLC; others: silence) so that the output stays continuous with
// real time. A long gap (silence suppression, DTX, a long outage) is not filled with a burst of
// filler: the output timestamp jumps by the same time and the next packet carries the marker.
import { randomBytes } from 'node:crypto';
import { alawDecode, alawEncode, ulawDecode, ulawEncode } from './g711.js';
import { G722Decoder, G722Encoder } from './g722.js';
import { OpusDecoder, OpusEncoder, type OpusRate } from './opus.js';
import { Resampler } from './resampler.js';

export type AudioCodecName = 'PCMU' | 'PCMA' | 'G722' | 'opus';
export interface TranscodedPacket { payload: Buffer; timestamp: number; marker: boolean }
/** Counters for monitoring (and for tests: `faults` counts internal errors push swallowed). */
export interface AudioTranscoderStats {
  packetsIn: number;
  packetsOut: number;
  /** Late or duplicate packets dropped, and packets of a sequence jump not (yet) followed. */
  dropped: number;
  /** Payloads the decoder refused (garbage Opus) or that carried no audio. */
  invalid: number;
  /** Audio filled in for gaps (PLC, FEC or silence), in ms. */
  concealedMs: number;
  /** Times the output clock jumped (long gaps, restarts). */
  resyncs: number;
  faults: number;
}
export interface AudioTranscoderOptions {
  /** Output packetisation in ms, default 20 (Opus: 10, 20, 40, 60, 80, 100 or 120). */
  ptimeMs?: number;
  /** Opus encoder bit rate, default 24000 bit/s. */
  opusBitrate?: number;
  /** Opus encoder complexity 0-10, default 5 (see bench/transcode.ts for the cost). */
  opusComplexity?: number;
  /** Opus in-band FEC for an expected loss of 5 %, default true. */
  opusFec?: boolean;
}

const CLOCK: Record<AudioCodecName, number> = { PCMU: 8000, PCMA: 8000, G722: 8000, opus: 48000 };
/** The PCM rate each codec works at (G.722 samples at 16 kHz but its RTP clock is 8 kHz, RFC 3551). */
const NATIVE_RATE: Record<AudioCodecName, number> = { PCMU: 8000, PCMA: 8000, G722: 16000, opus: 16000 };

/** Gaps up to this long are filled; longer ones make the output timestamp jump. */
const MAX_FILL_MS = 120;
/** A forward jump longer than this is taken for a sender restart rather than elapsed time. */
const MAX_JUMP_MS = 60_000;
/** Sequence numbers this far behind the newest are late or duplicates; further away, a jump. */
const MAX_MISORDER = 100;
const MAX_DROPOUT = 3000;
const OPUS_PTIMES = [10, 20, 40, 60, 80, 100, 120];

/** RTP clock rate of a codec (RFC 3551; Opus always 48000, RFC 7587). */
export function rtpClockRate(c: AudioCodecName): number { return CLOCK[c]; }

/** 'audio/PCMU', 'audio/opus' (any case) → the codec; undefined for anything else. */
export function codecFromMime(mime: string): AudioCodecName | undefined {
  if (typeof mime !== 'string') return undefined;
  switch (mime.trim().toLowerCase()) {
    case 'audio/pcmu': return 'PCMU';
    case 'audio/pcma': return 'PCMA';
    case 'audio/g722': return 'G722';
    case 'audio/opus': return 'opus';
    default: return undefined;
  }
}

interface PcmDecoder {
  /** Samples of a payload; undefined when the payload is not valid for the codec. */
  decode(payload: Uint8Array): Int16Array | undefined;
  /** `samples` of filler for audio that never came; `next` is the packet after the gap. */
  conceal(samples: number, next: Uint8Array | undefined): Int16Array;
  close(): void;
}
interface PcmEncoder {
  encode(frame: Int16Array): Buffer | undefined;
  close(): void;
}

function makeDecoder(c: AudioCodecName, rate: number): PcmDecoder {
  const silence = (n: number): Int16Array => new Int16Array(n);
  switch (c) {
    case 'PCMU': return { decode: (p) => { const o = new Int16Array(p.length); ulawDecode(p, o); return o; }, conceal: silence, close() {} };
    case 'PCMA': return { decode: (p) => { const o = new Int16Array(p.length); alawDecode(p, o); return o; }, conceal: silence, close() {} };
    case 'G722': {
      const d = new G722Decoder();
      return { decode: (p) => { const o = new Int16Array(p.length * 2); d.decode(p, o); return o; }, conceal: silence, close() {} };
    }
    case 'opus': {
      const d = new OpusDecoder(rate as OpusRate);
      const quantum = rate / 400;   // PLC/FEC work in multiples of 2.5 ms
      return {
        decode: (p) => d.decode(p),
        conceal(samples, next) {
          const out = new Int16Array(samples);
          let at = 0;
          // Whole 2.5 ms units by libopus (FEC only fits the end of the gap), any odd rest silent.
          const units = Math.floor(samples / quantum) * quantum;
          while (at < units) {
            const n = Math.min(units - at, 1920);
            const last = at + n >= units;
            const pcm = d.conceal(n, last ? next : undefined);
            if (!pcm) break;
            out.set(pcm.subarray(0, n), at);
            at += n;
          }
          return out;
        },
        close: () => d.close(),
      };
    }
  }
}

function makeEncoder(c: AudioCodecName, rate: number, o: AudioTranscoderOptions): PcmEncoder {
  switch (c) {
    case 'PCMU': return { encode: (f) => { const b = Buffer.allocUnsafe(f.length); ulawEncode(f, b); return b; }, close() {} };
    case 'PCMA': return { encode: (f) => { const b = Buffer.allocUnsafe(f.length); alawEncode(f, b); return b; }, close() {} };
    case 'G722': {
      const e = new G722Encoder();
      return { encode: (f) => { const b = Buffer.allocUnsafe(f.length >> 1); e.encode(f, b); return b; }, close() {} };
    }
    case 'opus': {
      const fec = o.opusFec ?? true;
      const e = new OpusEncoder(rate as OpusRate, {
        bitrate: o.opusBitrate ?? 24000, complexity: o.opusComplexity ?? 5, fec, expectedLossPerc: fec ? 5 : 0,
      });
      return { encode: (f) => e.encode(f), close: () => e.close() };
    }
  }
}

export class AudioTranscoder {
  private readonly dec: PcmDecoder;
  private readonly enc: PcmEncoder;
  private readonly resampler: Resampler | undefined;
  /** PCM rate out of the decoder. */
  private readonly decRate: number;
  private readonly inClock: number;
  private readonly outClock: number;
  /** PCM samples per input RTP tick, and output RTP ticks per PCM sample. */
  private readonly inSamplesPerTick: number;
  private readonly outTicksPerSample: number;
  private readonly frameSamples: number;
  private readonly frameTicks: number;
  private readonly maxFillTicks: number;
  private readonly maxJumpTicks: number;
  private readonly base = randomBytes(4).readUInt32BE(0);

  private closed = false;
  private started = false;
  /** Newest accepted sequence number, and a far-off one waiting to be confirmed by its successor. */
  private highSeq = 0;
  private probation: number | undefined;
  /** Input timestamp where the audio handed on so far ends. */
  private nextTs = 0;
  /** Duration of the last decoded packet, in input ticks (to estimate time across a restart). */
  private lastDurTicks = 0;
  /** Output ticks (from `base`) of the next frame, and PCM waiting to fill it. */
  private outTicks = 0;
  private pending = new Int16Array(4096);
  private pendingLen = 0;
  private markNext = true;
  readonly stats: AudioTranscoderStats = { packetsIn: 0, packetsOut: 0, dropped: 0, invalid: 0, concealedMs: 0, resyncs: 0, faults: 0 };

  constructor(readonly from: AudioCodecName, readonly to: AudioCodecName, opts: AudioTranscoderOptions = {}) {
    if (!Object.hasOwn(CLOCK, from) || !Object.hasOwn(CLOCK, to)) throw new RangeError(`unknown codec ${from} or ${to}`);
    const ptime = opts.ptimeMs ?? 20;
    if (to === 'opus' ? !OPUS_PTIMES.includes(ptime) : !(Number.isInteger(ptime) && ptime >= 5 && ptime <= 200)) {
      throw new RangeError(`ptime ${ptime} ms is not possible for ${to}`);
    }
    // Opus decodes and encodes at whatever rate the other side has, so G.711 ↔ Opus needs no
    // resampling at all (libopus works natively at 8 and 16 kHz).
    const decRate = from === 'opus' ? NATIVE_RATE[to] : NATIVE_RATE[from];
    const encRate = to === 'opus' ? decRate : NATIVE_RATE[to];
    this.decRate = decRate;
    this.inClock = CLOCK[from];
    this.outClock = CLOCK[to];
    this.inSamplesPerTick = decRate / this.inClock;
    this.outTicksPerSample = this.outClock / encRate;
    this.frameSamples = (encRate * ptime) / 1000;
    this.frameTicks = this.frameSamples * this.outTicksPerSample;
    this.maxFillTicks = (this.inClock * MAX_FILL_MS) / 1000;
    this.maxJumpTicks = (this.inClock * MAX_JUMP_MS) / 1000;
    this.resampler = decRate === encRate ? undefined : new Resampler(decRate, encRate);
    this.dec = makeDecoder(from, decRate);
    try {
      this.enc = makeEncoder(to, encRate, opts);
    } catch (e) {
      this.dec.close();
      throw e;
    }
  }

  /**
   * One incoming RTP packet's payload with its RTP sequence number and timestamp (in `from`'s
   * RTP clock). Returns the packets to send, timestamps in `to`'s RTP clock, starting from a
   * random base. Never throws: what cannot be used is dropped.
   */
  push(payload: Buffer, seq: number, timestamp: number, marker: boolean): TranscodedPacket[] {
    if (this.closed || !(payload instanceof Uint8Array)) return [];
    this.stats.packetsIn++;
    try {
      // Coerced here, inside the try: odd numbers (NaN, fractions, > 32 bits) must not throw either.
      return this.process(payload, Number(seq) & 0xffff, Number(timestamp) >>> 0, marker === true);
    } catch {
      // Not expected; if it happens, start over cleanly rather than break the call.
      this.stats.faults++;
      this.pendingLen = 0;
      this.started = false;
      this.markNext = true;
      return [];
    }
  }

  /** Frees the codec state (wasm memory). push() returns nothing afterwards. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.dec.close();
    this.enc.close();
    this.pending = new Int16Array(0);
    this.pendingLen = 0;
  }

  private process(payload: Uint8Array, seq: number, ts: number, marker: boolean): TranscodedPacket[] {
    const out: TranscodedPacket[] = [];
    if (!this.started) {
      // The timeline starts with the first packet that has audio in it.
      const pcm = this.dec.decode(payload);
      if (pcm === undefined || pcm.length === 0) { this.stats.invalid++; return out; }
      this.started = true;
      this.accept(seq, ts, pcm, out);
      return out;
    }

    let gap = 0;                  // input ticks between the audio so far and this packet
    let jump: number | undefined; // when resyncing: input ticks to move the output clock on by
    const dSeq = ((seq - this.highSeq) << 16) >> 16;
    if (dSeq <= 0 && dSeq >= -MAX_MISORDER) { this.stats.dropped++; return out; }   // duplicate, or late: its time is past
    if (dSeq <= 0 || dSeq > MAX_DROPOUT) {
      // A sequence jump: a restarted sender, or one stray packet. Follow it once its successor comes.
      if (this.probation === undefined || seq !== ((this.probation + 1) & 0xffff)) {
        this.probation = seq;
        this.stats.dropped++;
        return out;
      }
      jump = this.lastDurTicks;
    } else {
      gap = (ts - this.nextTs) | 0;
      // Beyond what is worth filling: time passed (trust the timestamps) unless they jumped
      // absurdly or went back, where the sequence numbers tell roughly how much time passed.
      if (gap > this.maxFillTicks && gap <= this.maxJumpTicks) jump = gap;
      else if (gap > this.maxJumpTicks || gap < -this.maxFillTicks) jump = (dSeq - 1) * this.lastDurTicks;
    }
    this.highSeq = seq;
    this.probation = undefined;

    if (jump !== undefined) {
      this.resync(jump, out);
      this.nextTs = ts;
      gap = 0;
    } else if (gap > 0) {
      // A short hole: lost packets (Opus conceals, using this packet's FEC for the end of the
      // hole) or a talkspurt start after a short pause (marker: plain silence).
      const n = Math.round(gap * this.inSamplesPerTick);
      if (n > 0) {
        this.append(marker ? new Int16Array(n) : this.dec.conceal(n, payload), out);
        this.stats.concealedMs += (n * 1000) / this.decRate;
      }
      this.nextTs = ts;
    }

    let pcm = this.dec.decode(payload);
    if (pcm === undefined || pcm.length === 0) { this.stats.invalid++; return out; }   // the hole is filled later
    if (gap < 0) {
      // Overlaps audio already handed on (a resent or re-timed packet): keep only what is new.
      const skip = Math.round(-gap * this.inSamplesPerTick);
      if (skip >= pcm.length) return out;
      pcm = pcm.subarray(skip);
      ts = (ts - gap) >>> 0;
    }
    this.accept(seq, ts, pcm, out);
    return out;
  }

  /** Hands on decoded audio that starts at input timestamp `ts`. */
  private accept(seq: number, ts: number, pcm: Int16Array, out: TranscodedPacket[]): void {
    this.highSeq = seq;
    this.probation = undefined;
    const durTicks = Math.round(pcm.length / this.inSamplesPerTick);
    this.lastDurTicks = durTicks;
    this.nextTs = (ts + durTicks) >>> 0;
    this.append(pcm, out);
  }

  /** Ends the current frame (padded with silence) and moves the output clock on by `inTicks`. */
  private resync(inTicks: number, out: TranscodedPacket[]): void {
    let padTicks = 0;
    if (this.pendingLen > 0) {
      const pad = this.frameSamples - this.pendingLen;
      this.emit(new Int16Array(pad), out);
      padTicks = pad * this.outTicksPerSample;
    }
    const ticks = Math.round((inTicks * this.outClock) / this.inClock) - padTicks;
    if (ticks > 0) this.outTicks += ticks;
    this.markNext = true;
    this.stats.resyncs++;
  }

  /** Adds decoded PCM, resampled to the encoder's rate. */
  private append(pcm: Int16Array, out: TranscodedPacket[]): void {
    this.emit(this.resampler ? this.resampler.push(pcm) : pcm, out);
  }

  /** Adds PCM at the encoder's rate and encodes every complete frame. */
  private emit(s: Int16Array, out: TranscodedPacket[]): void {
    if (this.pendingLen + s.length > this.pending.length) {
      const grown = new Int16Array(Math.max(this.pending.length * 2, this.pendingLen + s.length));
      grown.set(this.pending.subarray(0, this.pendingLen));
      this.pending = grown;
    }
    this.pending.set(s, this.pendingLen);
    this.pendingLen += s.length;
    const fs = this.frameSamples;
    let at = 0;
    for (; at + fs <= this.pendingLen; at += fs) {
      const payload = this.enc.encode(this.pending.subarray(at, at + fs));
      const timestamp = (this.base + this.outTicks) >>> 0;
      this.outTicks += this.frameTicks;
      if (payload === undefined) continue;
      out.push({ payload, timestamp, marker: this.markNext });
      this.stats.packetsOut++;
      this.markNext = false;
    }
    if (at > 0) {
      this.pending.copyWithin(0, at, this.pendingLen);
      this.pendingLen -= at;
    }
  }
}
