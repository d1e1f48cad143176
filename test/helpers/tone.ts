// Real audio for media tests: Opus frames of a sine tone to send, and decoding what arrived
// (Opus or G.711) back to samples, to check by the tone's energy that audio came through.
import { OpusDecoder, OpusEncoder } from '../../src/engine/local/audio/opus.js';
import { ulawDecode } from '../../src/engine/local/audio/g711.js';

/** `count` 20 ms Opus frames (48 kHz mono) of a `freq` Hz tone at about -12 dBFS. */
export function opusTone(freq: number, count: number): Buffer[] {
  const enc = new OpusEncoder(48000, { bitrate: 32000, complexity: 5, fec: false, expectedLossPerc: 0 });
  const frames: Buffer[] = [];
  const pcm = new Int16Array(960);
  for (let f = 0; f < count; f++) {
    for (let i = 0; i < 960; i++) pcm[i] = Math.round(8000 * Math.sin((2 * Math.PI * freq * (f * 960 + i)) / 48000));
    const out = enc.encode(pcm);
    if (!out) throw new Error('opus encode failed');
    frames.push(Buffer.from(out));
  }
  enc.close();
  return frames;
}

/** Decodes Opus payloads to 48 kHz mono samples (undecodable ones are skipped). */
export function decodeOpus(payloads: Buffer[]): Int16Array {
  const dec = new OpusDecoder(48000);
  const parts: Int16Array[] = [];
  for (const p of payloads) {
    const pcm = dec.decode(p);
    if (pcm) parts.push(Int16Array.from(pcm));
  }
  dec.close();
  const out = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

/** Decodes µ-law payloads to 8 kHz samples. */
export function decodeUlaw(payloads: Buffer[]): Int16Array {
  const out = new Int16Array(payloads.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of payloads) { const pcm = new Int16Array(p.length); ulawDecode(p, pcm); out.set(pcm, o); o += p.length; }
  return out;
}
