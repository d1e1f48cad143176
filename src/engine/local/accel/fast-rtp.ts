// A faster RtpHeader.deSerialize for werift: the same fields and the same results (property
// tested against werift's own), without the bit reader, array spreads and subarray objects
// werift's version makes per packet — every incoming RTP packet passes through it. Headers
// whose extension block runs past the packet are refused (see readPastEnd).
import { RtpHeader } from 'werift';
import { replaceRtpHeaderParser, weriftRtpHeaderParser } from './internals.js';

type Extension = { id: number; payload: Buffer };

/** werift's original parser (kept for the equivalence tests). */
export const weriftDeserialize: (raw: Buffer) => RtpHeader = weriftRtpHeaderParser;

/** What werift uses once installed. */
export function deserializeRtpHeader(raw: Buffer): RtpHeader {
  const h = new RtpHeader();
  const b0 = raw[0]!;
  h.version = b0 >> 6;
  h.padding = (b0 & 0x20) !== 0;
  h.extension = (b0 & 0x10) !== 0;
  const cc = b0 & 0x0f;
  h.csrcLength = cc;
  const b1 = raw[1]!;
  h.marker = (b1 & 0x80) !== 0;
  h.payloadType = b1 & 0x7f;
  h.sequenceNumber = raw.readUInt16BE(2);
  h.timestamp = raw.readUInt32BE(4);
  h.ssrc = raw.readUInt32BE(8);
  let off = 12;
  if (cc > 0) {
    const csrc = new Array<number>(cc);
    for (let i = 0; i < cc; i++) csrc[i] = raw.readUInt32BE(12 + i * 4);
    h.csrc = csrc;
    off += cc * 4;
  }
  if (h.extension) {
    const profile = raw.readUInt16BE(off);
    h.extensionProfile = profile as RtpHeader['extensionProfile'];
    off += 2;
    const length = raw.readUInt16BE(off) * 4;
    h.extensionLength = length;
    off += 2;
    const end = off + length;
    const exts: Extension[] = [];
    if (profile === 0xbede) {
      while (off < end) {
        const b = raw[off];
        if (b === 0) { off++; continue; }
        // Past the buffer: refused (see readPastEnd).
        if (b === undefined) readPastEnd();
        const id = b >> 4;
        const len = (b & 0x0f) + 1;
        off++;
        if (id === 15) break;
        exts.push({ id, payload: raw.subarray(off, off + len) });
        off += len;
      }
    } else if (profile === 0x1000) {
      while (off < end) {
        const b = raw[off];
        if (b === 0) { off++; continue; }
        if (b === undefined) readPastEnd();
        const id = b;
        off++;
        const len = raw[off];
        if (len === undefined) readPastEnd();
        off++;
        exts.push({ id, payload: raw.subarray(off, off + len) });
        off += len;
      }
    } else {
      const payload = raw.subarray(off, off + length);
      exts.push({ id: 0, payload });
      off += payload.length;
    }
    h.extensions = exts;
  }
  h.payloadOffset = off;
  if (h.padding) h.paddingSize = raw[raw.length - 1]!;
  return h;
}

/**
 * werift walks on past the end of the buffer: `undefined` bytes are neither 0 nor 15, so it
 * adds extensions with NaN ids and empty payloads until `end`, spreading the array each time —
 * quadratic: one 30-byte packet claiming a 48 KiB extension block costs werift ~17 s of CPU.
 * SRTP parses the header before authenticating it, so anyone who can reach the port could stall
 * the server. We refuse such packets instead (werift's SRTP layer drops them as unauthentic).
 */
function readPastEnd(): never {
  throw new MalformedRtpHeader('RTP header extension runs past the end of the packet');
}
export class MalformedRtpHeader extends Error {}

let installed = false;

/** Makes werift parse incoming RTP headers with deserializeRtpHeader (once per process). */
export function installFastRtpParser(): void {
  if (installed) return;
  installed = true;
  replaceRtpHeaderParser(deserializeRtpHeader);
}
