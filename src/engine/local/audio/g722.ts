// G.722 (ITU-T G.722, 64 kbit/s mode): 16 kHz audio split by a 24-tap QMF into two 8 kHz
// sub-bands, the lower coded with 6-bit ADPCM, the upper with 2-bit ADPCM; one octet per pair of
// input samples, (IH << 6) | IL. Integer arithmetic exactly as the recommendation's blocks
// (names in comments are its block names), so it interoperates bit for bit with other
// implementations (the tests compare with ffmpeg's). Linear samples are 16-bit, as in
// common practice (spandsp, ffmpeg): the QMF halves them into the codec's 15-bit range.

// QMF coefficients h(2i) in order; h(2i+1) = QMF[11 - i] (the filter is symmetric).
const QMF = [3, -11, 12, 32, -210, 951, 3876, -805, 362, -156, 53, -11];
// Lower band: quantiser decision levels (Q6), codes for positive/negative differences.
const Q6 = [0, 35, 72, 110, 150, 190, 233, 276, 323, 370, 422, 473, 530, 587, 650, 714, 786, 858, 940, 1023,
  1121, 1219, 1339, 1458, 1612, 1765, 1980, 2195, 2557, 2919];
const ILN = [0, 63, 62, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10,
  9, 8, 7, 6, 5, 4];
const ILP = [0, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, 47, 46, 45, 44, 43, 42, 41, 40, 39, 38,
  37, 36, 35, 34, 33, 32];
// Inverse quantisers: 6-bit (decoder output), 4-bit (predictor input), 2-bit (upper band).
const QM6 = new Int32Array([-136, -136, -136, -136, -24808, -21904, -19008, -16704, -14984, -13512, -12280,
  -11192, -10232, -9360, -8576, -7856, -7192, -6576, -6000, -5456, -4944, -4464, -4008, -3576, -3168, -2776,
  -2400, -2032, -1688, -1360, -1040, -728, 24808, 21904, 19008, 16704, 14984, 13512, 12280, 11192, 10232, 9360,
  8576, 7856, 7192, 6576, 6000, 5456, 4944, 4464, 4008, 3576, 3168, 2776, 2400, 2032, 1688, 1360, 1040, 728,
  432, 136, -432, -136]);
const QM4 = [0, -20456, -12896, -8968, -6288, -4240, -2584, -1200, 20456, 12896, 8968, 6288, 4240, 2584, 1200, 0];
const QM2 = [-7408, -1616, 7408, 1616];
// Log scale factor adaptation (LOGSCL/LOGSCH) and the inverse log table (SCALEL/SCALEH).
const RL42 = [0, 7, 6, 5, 4, 3, 2, 1, 7, 6, 5, 4, 3, 2, 1, 0];
const WL = [-60, -30, 58, 172, 334, 538, 1198, 3042];
const RH2 = [2, 1, 2, 1];
const WH = [0, -214, 798];
const ILB = [2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489, 2543, 2599, 2656, 2714, 2774, 2834,
  2896, 2960, 3025, 3091, 3158, 3228, 3298, 3371, 3444, 3520, 3597, 3676, 3756, 3838, 3922, 4008];

const sat16 = (x: number): number => (x > 32767 ? 32767 : x < -32768 ? -32768 : x);
/** Sign bit as the reference takes it (x >> 15 on 16-bit values): -1 or 0. */
const sgn = (x: number): number => (x < 0 ? -1 : 0);

/** The ADPCM state of one sub-band: the adaptive predictor (2 poles, 6 zeros) and scale factor. */
class Band {
  s = 0; sp = 0; sz = 0;
  nb = 0; det: number;
  readonly r = [0, 0, 0]; readonly p = [0, 0, 0]; readonly a = [0, 0, 0];
  readonly d = [0, 0, 0, 0, 0, 0, 0]; readonly b = [0, 0, 0, 0, 0, 0, 0];

  constructor(det: number) { this.det = det; }

  /** LOGSCL/SCALEL (lower) or LOGSCH/SCALEH (upper): adapts the quantiser scale. */
  adaptScale(w: number, max: number, shift: number): void {
    let nb = ((this.nb * 127) >> 7) + w;
    nb = nb < 0 ? 0 : nb > max ? max : nb;
    this.nb = nb;
    const s = shift - (nb >> 11);
    const wd = ILB[(nb >> 6) & 31]!;
    this.det = (s < 0 ? wd << -s : wd >> s) << 2;
  }

  /** Block 4: reconstruction and predictor adaptation from the quantised difference `dx`. */
  update(dx: number): void {
    const { r, p, a, d, b } = this;   // index 0 unused in r, p, a: [1] and [2] are the delays
    const r0 = sat16(this.s + dx);
    const p0 = sat16(this.sz + dx);
    // UPPOL2
    const sg0 = sgn(p0), sg1 = sgn(p[1]!), sg2 = sgn(p[2]!);
    const wd1 = sat16(a[1]! * 4);
    let wd2 = sg0 === sg1 ? -wd1 : wd1;
    if (wd2 > 32767) wd2 = 32767;
    let wd3 = (wd2 >> 7) + (sg0 === sg2 ? 128 : -128) + ((a[2]! * 32512) >> 15);
    wd3 = wd3 > 12288 ? 12288 : wd3 < -12288 ? -12288 : wd3;
    const ap2 = wd3;
    // UPPOL1
    let ap1 = sat16((sg0 === sg1 ? 192 : -192) + ((a[1]! * 32640) >> 15));
    const lim = sat16(15360 - ap2);
    ap1 = ap1 > lim ? lim : ap1 < -lim ? -lim : ap1;
    // UPZERO, then DELAYA for the zero section
    const g = dx === 0 ? 0 : 128;
    const sgd = sgn(dx);
    for (let i = 6; i > 0; i--) {
      const bp = sat16((sgn(d[i]!) === sgd ? g : -g) + ((b[i]! * 32640) >> 15));
      b[i] = bp;
    }
    d[0] = dx;
    for (let i = 6; i > 0; i--) d[i] = d[i - 1]!;
    // DELAYA for the pole section
    r[2] = r[1]!; r[1] = r0;
    p[2] = p[1]!; p[1] = p0;
    a[2] = ap2; a[1] = ap1;
    // FILTEP
    this.sp = sat16(((a[1] * sat16(r[1] * 2)) >> 15) + ((a[2] * sat16(r[2]! * 2)) >> 15));
    // FILTEZ
    let sz = 0;
    for (let i = 6; i > 0; i--) sz += (b[i]! * sat16(d[i]! * 2)) >> 15;
    this.sz = sat16(sz);
    // PREDIC
    this.s = sat16(this.sp + this.sz);
  }
}

/**
 * The QMF's last 24 input values, oldest first, as a window into a doubled ring (each value
 * stored twice, 24 apart) so that no copying is needed per sample pair.
 */
class QmfDelay {
  private readonly ring = new Int32Array(48);
  /** Index of the oldest value; the window is ring[pos .. pos+23]. */
  pos = 0;

  push2(a: number, b: number): Int32Array {
    const r = this.ring;
    const p = this.pos;
    // The two oldest leave; the new pair becomes window positions 22 and 23.
    r[p] = r[p + 24] = a;
    r[p + 1] = r[p + 25] = b;
    this.pos = p + 2 === 24 ? 0 : p + 2;
    return r;
  }
}

/** Lower-band quantiser (QUANTL): the interval of |el| among Q6·det, found by bisection. */
function quantL(wd: number, det: number): number {
  // First i in 1..29 with wd < (Q6[i]·det) >> 12, else 30; thresholds rise with i.
  let lo = 1, hi = 30;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (wd < ((Q6[mid]! * det) >> 12)) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** G.722 encoder, 64 kbit/s: 16 kHz 16-bit samples in, one octet per two samples out. */
export class G722Encoder {
  private readonly low = new Band(32);
  private readonly high = new Band(8);
  private readonly delay = new QmfDelay();

  /** Encodes `n` (even) samples of `pcm` into `out`, n / 2 octets. */
  encode(pcm: Int16Array, out: Uint8Array, n = pcm.length): number {
    const low = this.low, high = this.high, delay = this.delay;
    let o = 0;
    for (let j = 0; j + 1 < n; j += 2) {
      // Transmit QMF: shift in two samples, keep one output per band.
      const x = delay.push2(pcm[j]!, pcm[j + 1]!);
      const w = delay.pos;
      let sumOdd = 0, sumEven = 0;
      for (let i = 0; i < 12; i++) {
        sumOdd += x[w + 2 * i]! * QMF[i]!;
        sumEven += x[w + 2 * i + 1]! * QMF[11 - i]!;
      }
      const xl = (sumEven + sumOdd) >> 14;
      const xh = (sumEven - sumOdd) >> 14;

      // Lower band: SUBTRA, QUANTL
      const el = sat16(xl - low.s);
      const wdl = el >= 0 ? el : -(el + 1);
      const i = quantL(wdl, low.det);
      const il = el < 0 ? ILN[i]! : ILP[i]!;
      // INVQAL, then scale and predictor adaptation
      const ril = il >> 2;
      const dl = (low.det * QM4[ril]!) >> 15;
      low.adaptScale(WL[RL42[ril]!]!, 18432, 8);
      low.update(dl);

      // Upper band: SUBTRA, QUANTH
      const eh = sat16(xh - high.s);
      const wdh = eh >= 0 ? eh : -(eh + 1);
      const mih = wdh >= ((564 * high.det) >> 12) ? 2 : 1;
      const ih = eh < 0 ? (mih === 2 ? 0 : 1) : (mih === 2 ? 2 : 3);
      const dh = (high.det * QM2[ih]!) >> 15;
      high.adaptScale(WH[RH2[ih]!]!, 22528, 10);
      high.update(dh);

      out[o++] = (ih << 6) | il;
    }
    return o;
  }
}

/** G.722 decoder, 64 kbit/s: each octet gives two 16 kHz 16-bit samples. */
export class G722Decoder {
  private readonly low = new Band(32);
  private readonly high = new Band(8);
  private readonly delay = new QmfDelay();

  /** Decodes every octet of `data` into `out` (2 × data.length samples). */
  decode(data: Uint8Array, out: Int16Array): number {
    const low = this.low, high = this.high, delay = this.delay;
    let o = 0;
    for (let j = 0; j < data.length; j++) {
      const code = data[j]!;
      const il = code & 0x3f;
      const ih = code >> 6;
      // Lower band: INVQBL, RECONS, LIMIT
      let rl = low.s + ((low.det * QM6[il]!) >> 15);
      rl = rl > 16383 ? 16383 : rl < -16384 ? -16384 : rl;
      // INVQAL and adaptation (from the 4-bit code, as in the encoder)
      const ril = il >> 2;
      const dl = (low.det * QM4[ril]!) >> 15;
      low.adaptScale(WL[RL42[ril]!]!, 18432, 8);
      low.update(dl);
      // Upper band: INVQAH, RECONS, LIMIT, adaptation
      const dh = (high.det * QM2[ih]!) >> 15;
      let rh = dh + high.s;
      rh = rh > 16383 ? 16383 : rh < -16384 ? -16384 : rh;
      high.adaptScale(WH[RH2[ih]!]!, 22528, 10);
      high.update(dh);
      // Receive QMF
      const x = delay.push2(rl + rh, rl - rh);
      const w = delay.pos;
      let out1 = 0, out2 = 0;
      for (let i = 0; i < 12; i++) {
        out2 += x[w + 2 * i]! * QMF[i]!;
        out1 += x[w + 2 * i + 1]! * QMF[11 - i]!;
      }
      out[o++] = sat16(out1 >> 11);
      out[o++] = sat16(out2 >> 11);
    }
    return o;
  }
}
