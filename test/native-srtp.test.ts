// The native SRTP addon against werift's own implementation: byte-for-byte identical output,
// round trips in both directions, rollover-counter tracking, rejection of bad packets, and a
// live werift-to-werift call over loopback with one side accelerated. The addon is part of the
// build (scripts/ensure-deps.mjs builds it), so these tests fail rather than skip without it.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, createHmac, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import {
  ProtectionProfileAeadAes128Gcm,
  ProtectionProfileAes128CmHmacSha1_80,
  RtpHeader,
  SrtcpSession,
  SrtpAuthenticationError,
  SrtpSession,
  type RTCDtlsTransport,
} from 'werift';
import {
  accelerate,
  available,
  isAccelerated,
  loadError,
  native,
  NativeSrtpContext,
  newSsrcState,
  protect,
  protectRtpPacket,
  unprotect,
  updateRolloverCount,
  type SrtpSsrcState,
} from '../src/engine/local/accel/native-srtp.js';
import { TestPeer } from './helpers/peer.js';

const PROFILES = [
  { name: 'AES128_CM_HMAC_SHA1_80', id: ProtectionProfileAes128CmHmacSha1_80, saltLength: 14, tag: 10 },
  { name: 'AEAD_AES_128_GCM', id: ProtectionProfileAeadAes128Gcm, saltLength: 12, tag: 16 },
] as const;
type Profile = (typeof PROFILES)[number];

const SIZES = [0, 1, 15, 16, 17, 31, 100, 200, 1000, 1200, 1400];

/** Two werift sessions facing each other (a's local keys are b's remote keys). */
function sessionPair(p: Profile): { a: SrtpSession; b: SrtpSession; aRtcp: SrtcpSession; bRtcp: SrtcpSession; keys: SessionKeys } {
  const keys: SessionKeys = {
    localMasterKey: randomBytes(16), localMasterSalt: randomBytes(p.saltLength),
    remoteMasterKey: randomBytes(16), remoteMasterSalt: randomBytes(p.saltLength),
  };
  const mirrored: SessionKeys = {
    localMasterKey: keys.remoteMasterKey, localMasterSalt: keys.remoteMasterSalt,
    remoteMasterKey: keys.localMasterKey, remoteMasterSalt: keys.localMasterSalt,
  };
  return {
    a: new SrtpSession({ keys, profile: p.id }), b: new SrtpSession({ keys: mirrored, profile: p.id }),
    aRtcp: new SrtcpSession({ keys, profile: p.id }), bRtcp: new SrtcpSession({ keys: mirrored, profile: p.id }),
    keys,
  };
}
interface SessionKeys { localMasterKey: Buffer; localMasterSalt: Buffer; remoteMasterKey: Buffer; remoteMasterSalt: Buffer }

// Fixed extension bytes: each HEADERS entry must build the same header every time it is called.
const EXT16 = randomBytes(16), EXT17 = randomBytes(17), EXT2 = randomBytes(2);

/** Header shapes the payload offset must be found past. */
const HEADERS: { name: string; make: (seq: number, ssrc: number) => RtpHeader; padding?: boolean }[] = [
  { name: 'plain', make: (seq, ssrc) => new RtpHeader({ payloadType: 96, sequenceNumber: seq, timestamp: 123456, ssrc, marker: true }) },
  { name: '3 CSRCs', make: (seq, ssrc) => new RtpHeader({ payloadType: 111, sequenceNumber: seq, timestamp: 9, ssrc, csrc: [1, 0xdeadbeef, 3] }) },
  {
    name: 'one-byte extensions',
    make: (seq, ssrc) => new RtpHeader({
      payloadType: 96, sequenceNumber: seq, timestamp: 1, ssrc,
      extensions: [{ id: 1, payload: Buffer.from([7]) }, { id: 3, payload: Buffer.from([1, 2, 3]) }, { id: 5, payload: EXT16 }],
    }),
  },
  {
    name: 'two-byte extension + CSRC',
    make: (seq, ssrc) => new RtpHeader({
      payloadType: 100, sequenceNumber: seq, timestamp: 2 ** 32 - 1, ssrc, csrc: [42], extensionProfile: 0x1000,
      extensions: [{ id: 200, payload: EXT17 }],
    }),
  },
  {
    name: 'padding + extension', padding: true,
    make: (seq, ssrc) => new RtpHeader({
      payloadType: 96, sequenceNumber: seq, timestamp: 5, ssrc, padding: true,
      extensions: [{ id: 2, payload: EXT2 }],
    }),
  },
];

/** A payload for `h`: with the P bit, the last byte counts the padding (as werift checks). */
function payloadFor(size: number, padded?: boolean): Buffer {
  const b = randomBytes(Math.max(size, padded ? 4 : 0));
  if (padded) { b.fill(0, b.length - 4); b[b.length - 1] = 4; }
  return b;
}

const plainOf = (h: RtpHeader, payload: Buffer) => Buffer.concat([h.serialize(h.serializeSize), payload]);

function snapshot(states: Record<number, SrtpSsrcState>): Record<number, SrtpSsrcState> {
  return JSON.parse(JSON.stringify(states)) as Record<number, SrtpSsrcState>;
}

describe('native SRTP addon', () => {
  it('is built and loads (run `node scripts/ensure-deps.mjs` to build it)', () => {
    assert.ok(available, `native addon unavailable: ${loadError}`);
    assert.match(native!.openssl, /OpenSSL/);
  });

  it('rejects bad arguments with exceptions', () => {
    const b = native!;
    assert.throws(() => b.createContext(3, randomBytes(16), randomBytes(14), randomBytes(20)), /profile/);
    assert.throws(() => b.createContext(1, randomBytes(15), randomBytes(14), randomBytes(20)), /16-byte/);
    assert.throws(() => b.createContext(1, randomBytes(16), randomBytes(14)), /auth key/);
    const ctx = b.createContext(7, randomBytes(16), randomBytes(12));
    assert.throws(() => b.protectRtp({} as never, Buffer.alloc(20), 0), /not an SRTP context/);
    assert.throws(() => b.protectRtp(ctx, Buffer.alloc(11), 0), /malformed/);
    assert.throws(() => b.protectRtp(ctx, Buffer.alloc(12), -1), /rolloverCounter/);
    // An extension header whose length runs past the packet.
    const bad = Buffer.alloc(20); bad[0] = 0x90; bad.writeUInt16BE(0xbede, 12); bad.writeUInt16BE(5, 14);
    assert.throws(() => b.protectRtp(ctx, bad, 0), /malformed/);
    assert.throws(() => b.protectRtcp(ctx, Buffer.alloc(7), 1), /shorter/);
    assert.throws(() => b.protectRtcp(ctx, Buffer.alloc(8), 2 ** 31), /31-bit/);
  });

  it('the `Into` forms write into the caller\'s buffer, report -1 on rejection, and guard the output', () => {
    for (const p of PROFILES) {
      const { a, aRtcp } = sessionPair(p);
      const nat = NativeSrtpContext.forRtp(a.localContext);
      const plain = plainOf(HEADERS[1]!.make(1, 2), randomBytes(100));
      const out = Buffer.alloc(plain.length + p.tag + 5, 0xee);
      assert.equal(native!.protectRtpInto(nat.handle, plain, 3, out), plain.length + p.tag);
      assert.ok(out.subarray(0, plain.length + p.tag).equals(nat.protectRtp(plain, 3)), 'protectRtpInto == protectRtp');
      assert.equal(out[out.length - 1], 0xee, 'nothing written past the packet');
      const back = Buffer.alloc(plain.length);
      assert.equal(native!.unprotectRtpInto(nat.handle, out.subarray(0, plain.length + p.tag), 3, back), plain.length);
      assert.ok(back.equals(plain), 'unprotectRtpInto restores the packet');
      assert.equal(native!.unprotectRtpInto(nat.handle, out.subarray(0, plain.length + p.tag), 4, back), -1);
      assert.equal(native!.unprotectRtpInto(nat.handle, Buffer.alloc(5), 0, back), -1);
      assert.throws(() => native!.protectRtpInto(nat.handle, plain, 0, Buffer.alloc(plain.length)), RangeError);
      const shared = Buffer.alloc(plain.length * 3);
      plain.copy(shared);
      assert.throws(() => native!.protectRtpInto(nat.handle, shared.subarray(0, plain.length), 0, shared.subarray(10)), /overlap/);
      const rtcp = NativeSrtpContext.forRtcp(aRtcp.localContext);
      const plainRtcp = randomBytes(40);
      const enc = Buffer.alloc(40 + 4 + p.tag);
      assert.equal(native!.protectRtcpInto(rtcp.handle, plainRtcp, 9, enc), enc.length);
      assert.ok(enc.equals(aRtcp.localContext.cipher.encryptRTCP(plainRtcp, 9)), 'protectRtcpInto == werift');
      const dec = Buffer.alloc(40);
      assert.equal(native!.unprotectRtcpInto(rtcp.handle, enc, dec), 40);
      assert.ok(dec.equals(plainRtcp), 'unprotectRtcpInto restores the packet');
      enc[20]! ^= 1;
      assert.equal(native!.unprotectRtcpInto(rtcp.handle, enc, dec), -1);
    }
  });

  for (const p of PROFILES) {
    describe(p.name, () => {
      it('RTP: native output is byte-identical to werift, and each side decrypts the other', () => {
        const { a } = sessionPair(p);
        const ctx = a.localContext;
        const nat = NativeSrtpContext.forRtp(ctx);
        let n = 0;
        for (const shape of HEADERS) {
          for (const size of SIZES) {
            for (const roc of [0, 1, 0xffff, 0xffffffff]) {
              const seq = (n++ * 7919) & 0xffff;
              const ssrc = (Math.random() * 2 ** 32) >>> 0;
              const header = shape.make(seq, ssrc);
              const payload = payloadFor(size, shape.padding);
              const plain = plainOf(header, payload);
              const what = `${shape.name} size ${size} roc ${roc}`;

              const js = ctx.cipher.encryptRtp(shape.make(seq, ssrc), payload, roc);
              const viaWhole = nat.protectRtp(plain, roc);
              const viaParts = native!.protectRtpParts(nat.handle, header.serialize(header.serializeSize), payload, roc);
              assert.equal(viaWhole.length, plain.length + p.tag, what);
              assert.ok(viaWhole.equals(js), `protectRtp == werift: ${what}`);
              assert.ok(viaParts.equals(js), `protectRtpParts == werift: ${what}`);
              assert.ok(nat.protectRtpParts(header.serialize(header.serializeSize), payload, roc).equals(js), `pooled parts: ${what}`);
              assert.ok(native!.unprotectRtp(nat.handle, js, roc)!.equals(plain), `allocating unprotect: ${what}`);

              assert.ok(nat.unprotectRtp(js, roc).equals(plain), `native decrypts werift: ${what}`);
              assert.ok(ctx.cipher.decryptRtp(viaWhole, roc)[0].equals(plain), `werift decrypts native: ${what}`);
              // The wrong ROC is an authentication failure, not garbage.
              assert.equal(native!.unprotectRtp(nat.handle, js, (roc + 1) >>> 0), null, what);
            }
          }
        }
      });

      it('RTP: tampered, truncated and badly padded packets are rejected like werift does', () => {
        const { a } = sessionPair(p);
        const ctx = a.localContext;
        const nat = NativeSrtpContext.forRtp(ctx);
        const header = HEADERS[2]!.make(1000, 0x1234);
        const packet = ctx.cipher.encryptRtp(header, randomBytes(300), 0);
        for (const at of [0, 1, 2, 5, 9, 13, 20, packet.length - p.tag - 1, packet.length - p.tag, packet.length - 1]) {
          for (const bit of [0x01, 0x80]) {
            const bad = Buffer.from(packet);
            bad[at]! ^= bit;
            assert.equal(native!.unprotectRtp(nat.handle, bad, 0), null, `byte ${at} bit ${bit}`);
            assert.throws(() => ctx.cipher.decryptRtp(bad, 0), SrtpAuthenticationError, `werift too: byte ${at}`);
            assert.throws(() => nat.unprotectRtp(bad, 0), SrtpAuthenticationError);
          }
        }
        for (const len of [0, 1, 11, 12, 12 + p.tag - 1, 30, packet.length - 1]) {
          assert.equal(native!.unprotectRtp(nat.handle, packet.subarray(0, len), 0), null, `truncated to ${len}`);
        }
        // Correctly authenticated, but the P bit's padding count is 0 or larger than the payload.
        for (const padCount of [0, 200]) {
          const h = HEADERS[0]!.make(7, 7); h.padding = true;
          const payload = randomBytes(50); payload[49] = padCount;
          const enc = ctx.cipher.encryptRtp(h, payload, 0);
          assert.equal(native!.unprotectRtp(nat.handle, enc, 0), null, `padding ${padCount}`);
          assert.throws(() => ctx.cipher.decryptRtp(enc, 0), SrtpAuthenticationError);
        }
        // An extension length pointing past the end is malformed, not a crash.
        const h2 = Buffer.from(packet); h2.writeUInt16BE(0xffff, 14);
        assert.equal(native!.unprotectRtp(nat.handle, h2, 0), null);
      });

      it('RTCP: byte-identical to werift both ways, including unencrypted SRTCP (E = 0)', () => {
        const { aRtcp } = sessionPair(p);
        const ctx = aRtcp.localContext;
        const nat = NativeSrtpContext.forRtcp(ctx);
        for (const size of [8, 12, 28, 100, 500, 1300]) {
          for (const index of [1, 2, 0xffff, 0x10000, 0x7fffffff]) {
            const plain = randomBytes(size);
            plain[0] = 0x81; plain[1] = 200 + (size % 6);
            const js = ctx.cipher.encryptRTCP(plain, index);
            const nt = nat.protectRtcp(plain, index);
            assert.ok(nt.equals(js), `size ${size} index ${index}`);
            assert.ok(nat.unprotectRtcp(js).equals(plain), 'native decrypts werift SRTCP');
            assert.ok(ctx.cipher.decryptRTCP(nt)[0].equals(plain), 'werift decrypts native SRTCP');
            for (const at of [0, 4, 8, nt.length - 5, nt.length - 1]) {
              const bad = Buffer.from(nt); bad[at]! ^= 0x40;
              assert.equal(native!.unprotectRtcp(nat.handle, bad), null, `tampered byte ${at}`);
              assert.throws(() => ctx.cipher.decryptRTCP(bad), SrtpAuthenticationError);
            }
          }
          assert.equal(native!.unprotectRtcp(nat.handle, Buffer.alloc(8 + p.tag + 3)), null);
          // Authenticated-only SRTCP, built by hand from the session keys.
          const plain = randomBytes(size); plain[0] = 0x80; plain[1] = 201;
          const index = Buffer.alloc(4); index.writeUInt32BE(77);
          let unencrypted: Buffer;
          if (p.id === ProtectionProfileAes128CmHmacSha1_80) {
            const tag = createHmac('sha1', ctx.srtcpSessionAuthTag).update(plain).update(index).digest().subarray(0, 10);
            unencrypted = Buffer.concat([plain, index, tag]);
          } else {
            const iv = Buffer.alloc(12); plain.copy(iv, 2, 4, 8); index.copy(iv, 8);
            for (let i = 0; i < 12; i++) iv[i]! ^= ctx.srtcpSessionSalt[i]!;
            const gcm = createCipheriv('aes-128-gcm', ctx.srtcpSessionKey, iv);
            gcm.setAAD(Buffer.concat([plain, index])); gcm.final();
            unencrypted = Buffer.concat([plain, gcm.getAuthTag(), index]);
          }
          assert.ok(ctx.cipher.decryptRTCP(unencrypted)[0].equals(plain), 'werift accepts the hand-built packet');
          assert.ok(nat.unprotectRtcp(unencrypted).equals(plain), `unencrypted SRTCP size ${size}`);
          const bad = Buffer.from(unencrypted); bad[size - 1]! ^= 1;
          assert.equal(native!.unprotectRtcp(nat.handle, bad), null);
        }
      });

      it('accelerated sessions match werift across sequence wrap (rollover) and reordering', () => {
        // Two senders with the same keys, one accelerated; two receivers likewise.
        const { a: jsTx, b: jsRx, keys } = sessionPair(p);
        const mirrored = { localMasterKey: keys.remoteMasterKey, localMasterSalt: keys.remoteMasterSalt, remoteMasterKey: keys.localMasterKey, remoteMasterSalt: keys.localMasterSalt };
        const natTx = new SrtpSession({ keys, profile: p.id });
        const natRx = new SrtpSession({ keys: mirrored, profile: p.id });
        assert.ok(accelerate(natTx) && accelerate(natRx), 'accelerate() succeeds');
        assert.ok(isAccelerated(natTx) && isAccelerated(natRx), 'sessions marked accelerated');
        assert.ok(accelerate(natTx), 'idempotent');

        const seqs: number[] = [];
        for (let s = 65500; s <= 65535; s++) seqs.push(s);
        seqs.push(0, 65534, 1, 2, 65535, 3); // late packets from before the wrap
        for (let s = 4; s < 200; s++) seqs.push(s);
        for (let wrap = 0; wrap < 3; wrap++) for (let s = 65400; s < 65536 + 150; s++) seqs.push(s & 0xffff);
        const ssrcs = [0x11111111, 0xfffffffe];
        for (const seq of seqs) {
          for (const ssrc of ssrcs) {
            const shape = HEADERS[seq % HEADERS.length]!;
            const payload = payloadFor(seq % 1300, shape.padding);
            const js = jsTx.encrypt(payload, shape.make(seq, ssrc));
            const nt = natTx.encrypt(payload, shape.make(seq, ssrc));
            assert.ok(nt.equals(js), `encrypt seq ${seq}`);
            const plain = plainOf(shape.make(seq, ssrc), payload);
            assert.ok(natRx.decrypt(js).equals(plain), `native decrypt seq ${seq}`);
            assert.ok(jsRx.decrypt(nt).equals(plain), `werift decrypt seq ${seq}`);
          }
        }
        assert.deepEqual(snapshot(natTx.localContext.srtpSSRCStates), snapshot(jsTx.localContext.srtpSSRCStates));
        assert.deepEqual(snapshot(natRx.remoteContext.srtpSSRCStates), snapshot(jsRx.remoteContext.srtpSSRCStates));
        assert.equal(natTx.localContext.srtpSSRCStates[ssrcs[0]!]!.rolloverCounter, 4, 'wrapped four times');
      });

      it('a rejected packet leaves the rollover state untouched, like werift', () => {
        const { a: tx, b: jsRx, keys } = sessionPair(p);
        const natRx = new SrtpSession({ keys: { localMasterKey: keys.remoteMasterKey, localMasterSalt: keys.remoteMasterSalt, remoteMasterKey: keys.localMasterKey, remoteMasterSalt: keys.localMasterSalt }, profile: p.id });
        assert.ok(accelerate(natRx), 'accelerate() succeeds');
        const send = (seq: number) => tx.encrypt(randomBytes(100), HEADERS[0]!.make(seq, 99));
        for (const seq of [65533, 65534, 65535]) { const pkt = send(seq); natRx.decrypt(pkt); jsRx.decrypt(pkt); }
        const wrapped = send(0);
        const bad = Buffer.from(wrapped); bad[bad.length - 1]! ^= 1;
        const before = snapshot(natRx.remoteContext.srtpSSRCStates);
        assert.throws(() => natRx.decrypt(bad), SrtpAuthenticationError);
        assert.throws(() => jsRx.decrypt(bad), SrtpAuthenticationError);
        assert.deepEqual(snapshot(natRx.remoteContext.srtpSSRCStates), before);
        assert.deepEqual(snapshot(jsRx.remoteContext.srtpSSRCStates), before);
        // A bad first packet from an unknown SSRC creates no state.
        const stranger = tx.encrypt(randomBytes(10), HEADERS[0]!.make(5, 1234)); stranger[20]! ^= 1;
        assert.throws(() => natRx.decrypt(stranger), SrtpAuthenticationError);
        assert.throws(() => natRx.decrypt(stranger.subarray(0, 12)), SrtpAuthenticationError);
        assert.equal(natRx.remoteContext.srtpSSRCStates[1234], undefined);
        natRx.decrypt(wrapped);
        assert.equal(natRx.remoteContext.srtpSSRCStates[99]!.rolloverCounter, 1);
      });

      it('accelerated SRTCP sessions match werift (indexes, both directions, rejection)', () => {
        const { aRtcp: jsTx, bRtcp: jsRx, keys } = sessionPair(p);
        const natTx = new SrtcpSession({ keys, profile: p.id });
        const natRx = new SrtcpSession({ keys: { localMasterKey: keys.remoteMasterKey, localMasterSalt: keys.remoteMasterSalt, remoteMasterKey: keys.localMasterKey, remoteMasterSalt: keys.localMasterSalt }, profile: p.id });
        // Only SRTCP: the RTP session argument is a throwaway.
        assert.ok(accelerate(new SrtpSession({ keys, profile: p.id }), natTx), 'accelerate() succeeds for SRTCP');
        assert.ok(accelerate(new SrtpSession({ keys, profile: p.id }), natRx), 'accelerate() succeeds for SRTCP');
        assert.ok(isAccelerated(natTx) && isAccelerated(natRx), 'SRTCP sessions marked accelerated');
        // Near the 2^31 index wrap, and across two SSRCs.
        for (const s of [natTx, jsTx]) s.localContext.getSrtcpSsrcState(0xabc).srtcpIndex = 2 ** 31 - 3;
        for (let i = 0; i < 10; i++) {
          const plain = randomBytes(28 + i * 4); plain[0] = 0x80; plain[1] = 200; plain.writeUInt32BE(i % 2 ? 0xabc : 0xdef, 4);
          const js = jsTx.encrypt(plain);
          const nt = natTx.encrypt(plain);
          assert.ok(nt.equals(js), `packet ${i}`);
          assert.ok(natRx.decrypt(js).equals(plain), 'native SRTCP decrypt');
          assert.ok(jsRx.decrypt(nt).equals(plain), 'werift SRTCP decrypt');
          const bad = Buffer.from(nt); bad[9]! ^= 1;
          assert.throws(() => natRx.decrypt(bad), SrtpAuthenticationError);
        }
        assert.deepEqual(natTx.localContext.srtcpSSRCStates, jsTx.localContext.srtcpSSRCStates);
      });

      it('protect()/unprotect() and protectRtpPacket() for already-serialised packets', () => {
        const { a, b } = sessionPair(p);
        const tx = NativeSrtpContext.forRtp(a.localContext);
        const rx = NativeSrtpContext.forRtp(b.remoteContext);
        const txState = newSsrcState(5), rxState = newSsrcState(5);
        const sent = natPackets(65530, 20, 5);
        for (const plain of sent) {
          const enc = protect(tx, plain, txState);
          assert.ok(unprotect(rx, enc, rxState).equals(plain), 'unprotect() restores the packet');
          assert.ok(b.decrypt(enc).equals(plain), 'werift receiver agrees');
        }
        assert.equal(txState.rolloverCounter, 1);
        assert.deepEqual(rxState, txState);
        const bad = protect(tx, sent[0]!, { ...txState }); bad[bad.length - 1]! ^= 1;
        const before = { ...rxState };
        assert.throws(() => unprotect(rx, bad, rxState), SrtpAuthenticationError);
        assert.deepEqual(rxState, before);

        // On a werift session: shares ROC state with the session's own encrypt.
        const { a: js, b: peer } = sessionPair(p);
        const viaSession = new SrtpSession({ keys: keysOf(js), profile: p.id });
        for (const plain of natPackets(65533, 6, 9)) {
          const enc = protectRtpPacket(viaSession, plain);
          assert.ok(enc.equals(js.encrypt(plain.subarray(12), RtpHeader.deSerialize(plain))), 'protectRtpPacket == werift encrypt');
          assert.ok(peer.decrypt(enc).equals(plain), 'werift peer decrypts protectRtpPacket output');
        }
        assert.ok(isAccelerated(viaSession), 'protectRtpPacket accelerated the session');
        assert.deepEqual(snapshot(viaSession.localContext.srtpSSRCStates), snapshot(js.localContext.srtpSSRCStates));
      });
    });
  }

  it('the exported updateRolloverCount is an exact port of werift\'s', () => {
    const ctx = sessionPair(PROFILES[0]).a.localContext;
    const seq = fc.oneof(fc.integer({ min: 0, max: 65535 }), fc.integer({ min: 65380, max: 65535 }), fc.integer({ min: 0, max: 160 }), fc.constant(0));
    fc.assert(fc.property(fc.array(seq, { maxLength: 300 }), (seqs) => {
      const ours = newSsrcState(1), theirs = newSsrcState(1);
      for (const s of seqs) {
        updateRolloverCount(s, ours);
        ctx.updateRolloverCount(s, theirs);
        assert.deepEqual(ours, theirs);
      }
    }), { numRuns: 500 });
  });

  for (const p of PROFILES) {
    it(`end to end (${p.name}): RTP and RTCP flow both ways when one werift peer is accelerated`, { timeout: 30000 }, async () => {
      const a = new TestPeer();
      const b = new TestPeer();
      try {
        const offer = await a.makeOffer();
        const answer = await b.answerOffer({ sdp: offer.sdp });
        // werift-to-werift picks GCM; force the profile under test on both sides before DTLS
        // starts (each transport gets its own array; werift's shared default stays untouched).
        for (const t of [...a.pc.dtlsTransports, ...b.pc.dtlsTransports]) (t as unknown as { srtpProfiles: number[] }).srtpProfiles = [p.id];
        await a.takeAnswer({ sdp: answer.sdp });
        for (const c of offer.candidates) await b.addCandidate(c);
        for (const c of answer.candidates) await a.addCandidate(c);
        await Promise.all([a.waitConnected(), b.waitConnected()]);

        const transport: RTCDtlsTransport = a.pc.dtlsTransports[0]!;
        await waitFor(() => transport.srtpStarted, 5000, 'SRTP started');
        assert.equal(transport.srtp.config.profile, p.id, 'negotiated the profile under test');
        assert.ok(accelerate(transport.srtp, transport.srtcp), 'accelerate() succeeds on the live transport');
        // Count traffic through the accelerated functions (the transport looks them up per packet).
        const count = { rtpIn: 0, rtpOut: 0, rtcpIn: 0, rtcpOut: 0 };
        const { srtp, srtcp } = transport;
        const [dRtp, eRtp, dRtcp, eRtcp] = [srtp.decrypt, srtp.encrypt, srtcp.decrypt, srtcp.encrypt];
        srtp.decrypt = (buf) => { count.rtpIn++; return dRtp(buf); };
        srtp.encrypt = (payload, header) => { count.rtpOut++; return eRtp(payload, header); };
        srtcp.decrypt = (buf) => { count.rtcpIn++; return dRtcp(buf); };
        srtcp.encrypt = (raw) => { count.rtcpOut++; return eRtcp(raw); };

        a.startSending(); b.startSending();
        await waitFor(() => b.from('audio', a.tag).length >= 25 && b.from('video', a.tag).length >= 25, 10000, 'b receives a');
        await waitFor(() => a.from('audio', b.tag).length >= 25 && a.from('video', b.tag).length >= 25, 10000, 'a receives b');
        // PLIs each way exercise SRTCP through the accelerated side in both directions.
        await b.video!.receiver.sendRtcpPLI(a.video!.sender.ssrc);
        await a.video!.receiver.sendRtcpPLI(b.video!.sender.ssrc);
        await waitFor(() => a.pliReceived >= 1 && b.pliReceived >= 1, 5000, 'PLIs both ways');
        assert.ok(count.rtpIn >= 50 && count.rtpOut >= 50, JSON.stringify(count));
        assert.ok(count.rtcpIn >= 1 && count.rtcpOut >= 1, JSON.stringify(count));
        // Nothing was dropped on the accelerated side's receive path: every packet b sent that
        // arrived was decrypted and delivered in order.
        const got = a.from('video', b.tag).map((r) => r.seq);
        for (let i = 1; i < got.length; i++) assert.equal((got[i]! - got[i - 1]! + 0x10000) & 0xffff, 1, 'video seq continuous at a');
      } finally {
        await a.close();
        await b.close();
      }
    });
  }
});

function keysOf(s: SrtpSession): SessionKeys { return s.config.keys; }

/** `n` serialised RTP packets with consecutive sequence numbers from `seq` (wrapping). */
function natPackets(seq: number, n: number, ssrc: number): Buffer[] {
  return Array.from({ length: n }, (_, i) => plainOf(HEADERS[0]!.make((seq + i) & 0xffff, ssrc), randomBytes(60 + i)));
}

async function waitFor(check: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
