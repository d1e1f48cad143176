// G.711 µ-law and A-law (ITU-T G.711), table-driven. The tables are built once from the
// ITU-T G.191 reference algorithm: µ-law quantises the top 14 bits of a 16-bit sample, A-law
// the top 13, so encoding indexes a table by the sample shifted right by 2 (resp. 3).

/** µ-law code → 16-bit linear (±32124). */
export const ULAW_TO_LINEAR = new Int16Array(256);
/** A-law code → 16-bit linear (±32256). */
export const ALAW_TO_LINEAR = new Int16Array(256);
// Indexed by (sample >> 2) + 8192 and (sample >> 3) + 4096: every 16-bit sample has an entry.
const LINEAR14_TO_ULAW = new Uint8Array(16384);
const LINEAR13_TO_ALAW = new Uint8Array(8192);

// G.191 ulaw_compress on a 16-bit sample.
function ulawCompress(lin: number): number {
  let absno = (lin < 0 ? (~lin >> 2) : (lin >> 2)) + 33;
  if (absno > 0x1fff) absno = 0x1fff;
  let segno = 1;
  for (let i = absno >> 6; i !== 0; i >>= 1) segno++;
  const high = 8 - segno;
  const low = 0x0f - ((absno >> segno) & 0x0f);
  let out = (high << 4) | low;
  if (lin >= 0) out |= 0x80;
  return out;
}

// G.191 ulaw_expand.
function ulawExpand(code: number): number {
  const sign = code < 0x80 ? -1 : 1;
  const m = ~code;
  const exponent = (m >> 4) & 7;
  const step = 4 << (exponent + 1);
  return sign * ((0x80 << exponent) + step * (m & 0x0f) + step / 2 - 4 * 33);
}

// G.191 alaw_compress on a 16-bit sample.
function alawCompress(lin: number): number {
  let ix = lin < 0 ? (~lin >> 4) : (lin >> 4);
  if (ix > 15) {
    let iexp = 1;
    while (ix > 16 + 15) { ix >>= 1; iexp++; }
    ix -= 16;
    ix += iexp << 4;
  }
  if (lin >= 0) ix |= 0x80;
  return ix ^ 0x55;
}

// G.191 alaw_expand.
function alawExpand(code: number): number {
  const ix = (code ^ 0x55) & 0x7f;
  const iexp = ix >> 4;
  let mant = ix & 0x0f;
  if (iexp > 0) mant += 16;
  mant = (mant << 4) + 8;
  if (iexp > 1) mant <<= iexp - 1;
  return code > 127 ? mant : -mant;
}

for (let c = 0; c < 256; c++) {
  ULAW_TO_LINEAR[c] = ulawExpand(c);
  ALAW_TO_LINEAR[c] = alawExpand(c);
}
// The compressors look only at the bits the tables keep, so one representative per entry is exact.
for (let i = 0; i < 16384; i++) LINEAR14_TO_ULAW[i] = ulawCompress((i - 8192) << 2);
for (let i = 0; i < 8192; i++) LINEAR13_TO_ALAW[i] = alawCompress((i - 4096) << 3);

export function linearToUlaw(sample: number): number { return LINEAR14_TO_ULAW[(sample >> 2) + 8192]!; }
export function linearToAlaw(sample: number): number { return LINEAR13_TO_ALAW[(sample >> 3) + 4096]!; }
export function ulawToLinear(code: number): number { return ULAW_TO_LINEAR[code & 0xff]!; }
export function alawToLinear(code: number): number { return ALAW_TO_LINEAR[code & 0xff]!; }

/** Encodes `n` samples of `pcm` into `out` (one byte each). */
export function ulawEncode(pcm: Int16Array, out: Uint8Array, n = pcm.length): void {
  for (let i = 0; i < n; i++) out[i] = LINEAR14_TO_ULAW[(pcm[i]! >> 2) + 8192]!;
}
export function alawEncode(pcm: Int16Array, out: Uint8Array, n = pcm.length): void {
  for (let i = 0; i < n; i++) out[i] = LINEAR13_TO_ALAW[(pcm[i]! >> 3) + 4096]!;
}
/** Decodes every byte of `data` into `out` (one sample each). */
export function ulawDecode(data: Uint8Array, out: Int16Array): void {
  for (let i = 0; i < data.length; i++) out[i] = ULAW_TO_LINEAR[data[i]!]!;
}
export function alawDecode(data: Uint8Array, out: Int16Array): void {
  for (let i = 0; i < data.length; i++) out[i] = ALAW_TO_LINEAR[data[i]!]!;
}
