// Opus through libopus compiled to WebAssembly, as shipped by the npm package @evan/opus (MIT).
// Its JS wrapper is not used: it prefers prebuilt native addons and its decode has no way to ask
// for packet-loss concealment or FEC of a given duration. Its wasm exports the plain libopus C
// API (opus_encode, opus_decode with frame_size and decode_fec, the ctls), which this file binds
// directly. One wasm instance per process holds every encoder and decoder; calls are
// synchronous, so all of them share one scratch area for PCM and packets.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';

export type OpusRate = 8000 | 12000 | 16000 | 24000 | 48000;

/** Longest Opus packet duration (120 ms) at 48 kHz: the most PCM one call may produce. */
export const OPUS_MAX_SAMPLES = 5760;
/** Biggest packet accepted or produced (a 120 ms packet of 20 ms frames fits easily). */
export const OPUS_MAX_PACKET = 4000;

const APPLICATION_VOIP = 2048;
const CTL = {
  setBitrate: 4002, setComplexity: 4010, setInbandFec: 4012, setPacketLossPerc: 4014, setDtx: 4016,
  setSignal: 4024, setVbr: 4006, setVbrConstraint: 4020, resetState: 4028, getLookahead: 4027,
} as const;
const SIGNAL_VOICE = 3001;

interface OpusExports {
  memory: WebAssembly.Memory;
  malloc(n: number): number;
  free(p: number): void;
  opus_encoder_get_size(channels: number): number;
  opus_encoder_init(st: number, rate: number, channels: number, application: number): number;
  opus_encode(st: number, pcm: number, frameSize: number, data: number, maxBytes: number): number;
  opus_encoder_ctl_set(st: number, req: number, value: number): number;
  opus_encoder_ctl_get(st: number, req: number): number;
  opus_decoder_get_size(channels: number): number;
  opus_decoder_init(st: number, rate: number, channels: number): number;
  opus_decode(st: number, data: number, len: number, pcm: number, frameSize: number, decodeFec: number): number;
  opus_decoder_ctl_set(st: number, req: number, value: number): number;
  _initialize?: () => void;
}

class OpusWasm {
  readonly x: OpusExports;
  /** Scratch: PCM (OPUS_MAX_SAMPLES int16, 2-aligned) and one packet. */
  readonly pcmPtr: number;
  readonly pktPtr: number;
  private mem: ArrayBuffer;
  private u8: Uint8Array;
  private i16: Int16Array;

  constructor() {
    const require = createRequire(import.meta.url);
    // The SIMD build where the engine validates SIMD (Node 20 does), as the package itself picks.
    const simdProbe = Uint8Array.of(0, 97, 115, 109, 1, 0, 0, 0, 1, 4, 1, 96, 0, 0, 3, 2, 1, 0, 10, 9, 1, 7, 0, 65, 0, 253, 15, 26, 11);
    const file = require.resolve(`@evan/opus/wasm/${WebAssembly.validate(simdProbe) ? 'simd' : 'opus'}.wasm`);
    const module = new WebAssembly.Module(readFileSync(file));
    const noop = (): number => 0;
    const instance = new WebAssembly.Instance(module, {
      wasi_snapshot_preview1: { fd_seek: noop, fd_write: noop, fd_close: noop, proc_exit: noop },
      env: { emscripten_notify_memory_growth: noop },   // views are refreshed lazily instead
    });
    this.x = instance.exports as unknown as OpusExports;
    this.x._initialize?.();
    this.pcmPtr = this.malloc(OPUS_MAX_SAMPLES * 2);
    this.pktPtr = this.malloc(OPUS_MAX_PACKET);
    this.mem = this.x.memory.buffer;
    this.u8 = new Uint8Array(this.mem);
    this.i16 = new Int16Array(this.mem);
  }

  malloc(n: number): number {
    const p = this.x.malloc(n);
    if (p === 0) throw new Error('opus: out of wasm memory');
    return p;
  }

  /** Typed views of wasm memory, re-made after the memory grew (growth detaches the old buffer). */
  views(): { u8: Uint8Array; i16: Int16Array } {
    if (this.x.memory.buffer !== this.mem) {
      this.mem = this.x.memory.buffer;
      this.u8 = new Uint8Array(this.mem);
      this.i16 = new Int16Array(this.mem);
    }
    return { u8: this.u8, i16: this.i16 };
  }
}

let wasm: OpusWasm | undefined;
/** Loads and compiles libopus once per process (first use costs a few tens of ms). */
function opus(): OpusWasm { return (wasm ??= new OpusWasm()); }

// Frees native state of encoders/decoders dropped without close().
const finalizer = new FinalizationRegistry<number>((ptr) => opus().x.free(ptr));

export interface OpusEncoderOptions {
  /** Target bit rate in bit/s. */
  bitrate: number;
  /** 0-10: CPU against quality. */
  complexity: number;
  /** In-band FEC (LBRR), used by libopus when `expectedLossPerc` > 0. */
  fec: boolean;
  expectedLossPerc: number;
}

/** A mono Opus encoder for voice (OPUS_APPLICATION_VOIP, signal voice, DTX off). */
export class OpusEncoder {
  private ptr: number;

  constructor(readonly rate: OpusRate, o: OpusEncoderOptions) {
    const w = opus();
    this.ptr = w.malloc(w.x.opus_encoder_get_size(1));
    const ok = w.x.opus_encoder_init(this.ptr, rate, 1, APPLICATION_VOIP) === 0
      && w.x.opus_encoder_ctl_set(this.ptr, CTL.setBitrate, o.bitrate) === 0
      && w.x.opus_encoder_ctl_set(this.ptr, CTL.setComplexity, o.complexity) === 0
      && w.x.opus_encoder_ctl_set(this.ptr, CTL.setSignal, SIGNAL_VOICE) === 0
      && w.x.opus_encoder_ctl_set(this.ptr, CTL.setInbandFec, o.fec ? 1 : 0) === 0
      && w.x.opus_encoder_ctl_set(this.ptr, CTL.setPacketLossPerc, o.expectedLossPerc) === 0
      && w.x.opus_encoder_ctl_set(this.ptr, CTL.setDtx, 0) === 0;
    if (!ok) {
      w.x.free(this.ptr);
      throw new RangeError(`opus: cannot configure an encoder at ${rate} Hz with ${JSON.stringify(o)}`);
    }
    finalizer.register(this, this.ptr, this);
  }

  /**
   * Encodes one frame (`pcm.length` samples: 2.5-120 ms at the encoder's rate). Returns a copy
   * of the packet, or undefined if libopus refused (wrong frame size, closed encoder).
   */
  encode(pcm: Int16Array): Buffer | undefined {
    if (this.ptr === 0 || pcm.length > OPUS_MAX_SAMPLES) return undefined;
    const w = opus();
    let v = w.views();
    v.i16.set(pcm, w.pcmPtr >> 1);
    const n = w.x.opus_encode(this.ptr, w.pcmPtr, pcm.length, w.pktPtr, OPUS_MAX_PACKET);
    if (n < 0) return undefined;
    v = w.views();
    return Buffer.from(v.u8.subarray(w.pktPtr, w.pktPtr + n));
  }

  close(): void {
    if (this.ptr === 0) return;
    finalizer.unregister(this);
    opus().x.free(this.ptr);
    this.ptr = 0;
  }
}

/** A mono Opus decoder (stereo packets are downmixed by libopus). */
export class OpusDecoder {
  private ptr: number;

  constructor(readonly rate: OpusRate) {
    const w = opus();
    this.ptr = w.malloc(w.x.opus_decoder_get_size(1));
    if (w.x.opus_decoder_init(this.ptr, rate, 1) !== 0) {
      w.x.free(this.ptr);
      throw new RangeError(`opus: cannot make a decoder at ${rate} Hz`);
    }
    finalizer.register(this, this.ptr, this);
  }

  /** Decodes a packet; undefined if it is not valid Opus (or too big). Returns a copy. */
  decode(packet: Uint8Array): Int16Array | undefined {
    if (packet.length === 0 || packet.length > OPUS_MAX_PACKET) return undefined;
    return this.run(packet, OPUS_MAX_SAMPLES, 0);
  }

  /**
   * Audio for `samples` that never arrived (a multiple of 2.5 ms): concealment (PLC), or, given
   * the packet that follows the gap, its in-band FEC for the last part of the gap where present.
   */
  conceal(samples: number, next?: Uint8Array): Int16Array | undefined {
    if (samples <= 0 || samples > OPUS_MAX_SAMPLES || samples % (this.rate / 400) !== 0) return undefined;
    if (next && next.length > 0 && next.length <= OPUS_MAX_PACKET) {
      const fec = this.run(next, samples, 1);
      if (fec) return fec;
    }
    return this.run(undefined, samples, 0);
  }

  private run(packet: Uint8Array | undefined, frameSize: number, fec: 0 | 1): Int16Array | undefined {
    if (this.ptr === 0) return undefined;
    const w = opus();
    if (packet) w.views().u8.set(packet, w.pktPtr);
    const n = w.x.opus_decode(this.ptr, packet ? w.pktPtr : 0, packet ? packet.length : 0, w.pcmPtr, frameSize, fec);
    if (n <= 0) return n === 0 ? new Int16Array(0) : undefined;
    const start = w.pcmPtr >> 1;
    return w.views().i16.slice(start, start + n);
  }

  close(): void {
    if (this.ptr === 0) return;
    finalizer.unregister(this);
    opus().x.free(this.ptr);
    this.ptr = 0;
  }
}
