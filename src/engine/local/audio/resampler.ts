// A streaming rational resampler (polyphase FIR, Kaiser-windowed sinc): conceptually upsample by
// L, low-pass, keep every M-th sample, but only the taps that touch real input are computed.
// Made for telephony rates (8k↔16k, and anything with a small L/M): output counts are exact
// (after T input samples, ceil(T·L/M) outputs in total), so RTP timestamps can be derived from
// sample counts. Group delay is (taps-1)/2 samples at the upsampled rate (~1.5 ms).

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));

/** Zeroth-order modified Bessel function of the first kind (for the Kaiser window). */
function besselI0(x: number): number {
  let sum = 1, term = 1;
  for (let k = 1; k < 50; k++) {
    term *= (x / (2 * k)) ** 2;
    sum += term;
    if (term < sum * 1e-12) break;
  }
  return sum;
}

/**
 * Low-pass prototype at the upsampled rate: cutoff `fc` (fraction of that rate), `n` taps,
 * Kaiser β, DC gain `gain`.
 */
function designLowPass(n: number, fc: number, beta: number, gain: number): Float64Array {
  const h = new Float64Array(n);
  const mid = (n - 1) / 2;
  const i0b = besselI0(beta);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const t = i - mid;
    const sinc = t === 0 ? 2 * fc : Math.sin(2 * Math.PI * fc * t) / (Math.PI * t);
    const w = besselI0(beta * Math.sqrt(1 - (t / mid) ** 2)) / i0b;
    h[i] = sinc * w;
    sum += h[i]!;
  }
  for (let i = 0; i < n; i++) h[i] = (h[i]! * gain) / sum;
  return h;
}

export class Resampler {
  readonly up: number;
  readonly down: number;
  /** Phase p's taps, newest input first: phases[p][k] multiplies x[base - k]. */
  private readonly phases: Float64Array[];
  private readonly tapsPerPhase: number;
  /** The last tapsPerPhase-1 input samples, then room for new input. */
  private buf: Float64Array;
  /** Position of the next output in the upsampled domain, relative to buffered input. */
  private t = 0;

  /**
   * @param tapsPerPhase FIR length per polyphase branch (for 2:1 decimation the filter spans
   *   2·tapsPerPhase input samples). 32 with β=7 gives ~70 dB stopband and a transition band
   *   of ~1.1 kHz centred on 4 kHz between 8k and 16k.
   */
  constructor(readonly inRate: number, readonly outRate: number, tapsPerPhase = 32) {
    if (!(inRate > 0 && outRate > 0) || !Number.isInteger(inRate) || !Number.isInteger(outRate)) {
      throw new RangeError(`bad resampling rates ${inRate} → ${outRate}`);
    }
    const g = gcd(inRate, outRate);
    this.up = outRate / g;
    this.down = inRate / g;
    if (this.up > 64 || this.down > 64) throw new RangeError(`resampling ratio ${this.up}/${this.down} too fine`);
    // Decimating by M spreads the filter over M× more input samples to keep the same sharpness.
    const span = tapsPerPhase * Math.max(1, Math.ceil(this.down / this.up));
    const n = span * this.up;
    // Cutoff midway through the transition band: at 8 kHz output that is 4 kHz, with the
    // stopband starting just above Nyquist so alias products stay above the voice band.
    const fc = 0.5 / Math.max(this.up, this.down);
    const proto = designLowPass(n, fc, 7, this.up);
    this.tapsPerPhase = span;
    this.phases = [];
    for (let p = 0; p < this.up; p++) {
      const taps = new Float64Array(span);
      for (let k = 0; k < span; k++) taps[k] = proto[p + k * this.up] ?? 0;
      this.phases.push(taps);
    }
    this.buf = new Float64Array(span - 1 + 4096);
  }

  /** How many outputs `push` of `n` more input samples will give. */
  outputCount(n: number): number {
    const total = (this.tapsPerPhase - 1 + n) * this.up;
    const start = this.t + (this.tapsPerPhase - 1) * this.up;
    return start >= total ? 0 : Math.ceil((total - start) / this.down);
  }

  /** Resamples `input` and returns the new output samples (a fresh array). */
  push(input: Int16Array): Int16Array {
    const keep = this.tapsPerPhase - 1;
    const n = input.length;
    if (this.buf.length < keep + n) {
      const b = new Float64Array(keep + n);
      b.set(this.buf.subarray(0, keep));
      this.buf = b;
    }
    const buf = this.buf;
    for (let i = 0; i < n; i++) buf[keep + i] = input[i]!;
    const out = new Int16Array(this.outputCount(n));
    const L = this.up, M = this.down;
    // t counts upsampled positions from the first new input; base indexes buf.
    let t = this.t;
    for (let o = 0; o < out.length; o++) {
      const base = keep + Math.floor(t / L);
      const taps = this.phases[t % L]!;
      let acc = 0;
      for (let k = 0; k < taps.length; k++) acc += taps[k]! * buf[base - k]!;
      const v = Math.round(acc);
      out[o] = v > 32767 ? 32767 : v < -32768 ? -32768 : v;
      t += M;
    }
    // Keep the last `keep` samples as history for the next call.
    buf.copyWithin(0, n, n + keep);
    this.t = t - n * L;
    return out;
  }

  /** Forgets the history (after a discontinuity). */
  reset(): void {
    this.buf.fill(0);
    this.t = 0;
  }
}
