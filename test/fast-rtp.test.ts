// The fast RTP header parser installed into werift gives exactly werift's own results: same
// fields for valid packets of every shape (CSRCs, one- and two-byte extensions, padding), and
// the same outcome (a header or an error) for arbitrary bytes — except packets whose extension
// walk runs off the end, which it refuses where werift would spend seconds making garbage.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { RtpHeader, RtpPacket } from 'werift';
import { deserializeRtpHeader, installFastRtpParser, MalformedRtpHeader, weriftDeserialize } from '../src/engine/local/accel/fast-rtp.js';

type Outcome = { error: true } | { error: false; h: Record<string, unknown> };

function outcome(parse: (b: Buffer) => RtpHeader, b: Buffer): Outcome {
  try {
    const h = parse(b);
    return {
      error: false,
      h: {
        version: h.version, padding: h.padding, paddingSize: h.paddingSize, extension: h.extension, marker: h.marker,
        payloadOffset: h.payloadOffset, payloadType: h.payloadType, sequenceNumber: h.sequenceNumber, timestamp: h.timestamp,
        ssrc: h.ssrc, csrcLength: h.csrcLength, csrc: [...h.csrc], extensionProfile: h.extensionProfile, extensionLength: h.extensionLength,
        extensions: h.extensions.map((e) => ({ id: e.id, payload: Buffer.from(e.payload).toString('hex') })),
      },
    };
  } catch {
    return { error: true };
  }
}

/** Where the header's extension block claims to end (bytes), or -1 if there is none. */
function extensionEnd(b: Buffer): number {
  if (b.length < 12 || (b[0]! & 0x10) === 0) return -1;
  const at = 12 + (b[0]! & 0x0f) * 4;
  return b.length < at + 4 ? -1 : at + 4 + b.readUInt16BE(at + 2) * 4;
}

function same(b: Buffer): void {
  let refused = false;
  try {
    deserializeRtpHeader(b);
  } catch (err) {
    refused = err instanceof MalformedRtpHeader;
  }
  if (refused) {
    // Refused: the extension block is longer than the packet (werift would walk on for as long
    // as it claims), or its last element's length byte is missing (werift's offset turns NaN).
    if (extensionEnd(b) <= b.length) {
      const w = outcome(weriftDeserialize, b);
      assert.ok(w.error || Number.isNaN(w.h.payloadOffset), b.toString('hex'));
    }
    return;
  }
  assert.deepEqual(outcome(deserializeRtpHeader, b), outcome(weriftDeserialize, b), b.toString('hex'));
}

describe('fast RTP header parser', () => {
  it('matches werift on packets werift itself writes (csrcs, extensions, padding)', () => {
    fc.assert(fc.property(
      fc.record({
        marker: fc.boolean(), payloadType: fc.integer({ min: 0, max: 127 }), sequenceNumber: fc.integer({ min: 0, max: 0xffff }),
        timestamp: fc.integer({ min: 0, max: 0xffffffff }), ssrc: fc.integer({ min: 0, max: 0xffffffff }),
        csrc: fc.array(fc.integer({ min: 0, max: 0xffffffff }), { maxLength: 15 }),
        twoByte: fc.boolean(),
        extensions: fc.array(fc.record({ id: fc.integer({ min: 1, max: 14 }), payload: fc.uint8Array({ minLength: 1, maxLength: 16 }) }), { maxLength: 5 }),
        payload: fc.uint8Array({ maxLength: 300 }),
      }),
      (p) => {
        const header = new RtpHeader({
          marker: p.marker, payloadType: p.payloadType, sequenceNumber: p.sequenceNumber, timestamp: p.timestamp, ssrc: p.ssrc,
          csrc: p.csrc, csrcLength: p.csrc.length, extensionProfile: p.twoByte ? 0x1000 : 0xbede,
          extensions: p.extensions.map((e) => ({ id: e.id, payload: Buffer.from(e.payload) })),
        });
        same(new RtpPacket(header, Buffer.from(p.payload)).serialize());
      },
    ), { numRuns: 2000 });
  });

  it('matches werift on arbitrary bytes (same header or both refuse)', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 0, maxLength: 120 }), (bytes) => same(Buffer.from(bytes))), { numRuns: 5000 });
    // Version 2 with the extension bit and odd lengths, where the walk runs off the end.
    fc.assert(fc.property(fc.uint8Array({ minLength: 12, maxLength: 40 }), fc.boolean(), (bytes, two) => {
      const b = Buffer.from(bytes);
      b[0] = 0x90 | (b[0]! & 0x20); // no CSRCs: the extension header sits at byte 12
      if (b.length >= 16) {
        b.writeUInt16BE(two ? 0x1000 : 0xbede, 12);
        b.writeUInt16BE(b.readUInt16BE(14) % 12, 14); // lengths around the packet's own size
      }
      same(b);
    }), { numRuns: 5000 });
  });

  it('refuses an extension block longer than the packet instead of walking off its end', () => {
    const b = Buffer.alloc(30, 0x11);
    b[0] = 0x90;
    b.writeUInt16BE(0xbede, 12);
    b.writeUInt16BE(0x2f60, 14); // claims 48 KiB of extensions in a 30-byte packet
    assert.throws(() => deserializeRtpHeader(b), MalformedRtpHeader);
    b.writeUInt16BE(0x1000, 12);
    assert.throws(() => deserializeRtpHeader(b), MalformedRtpHeader);
  });

  it('is what werift uses once installed', () => {
    installFastRtpParser();
    const pkt = new RtpPacket(new RtpHeader({ payloadType: 111, sequenceNumber: 7, timestamp: 960, ssrc: 42 }), Buffer.from('abc'));
    const back = RtpPacket.deSerialize(pkt.serialize());
    assert.equal(back.header.sequenceNumber, 7);
    assert.equal(back.payload.toString(), 'abc');
    assert.notEqual(RtpHeader.deSerialize, weriftDeserialize);
  });
});
