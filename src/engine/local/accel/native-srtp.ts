// Native SRTP/SRTCP acceleration for werift sessions.
//
// werift protects every packet through Node's public crypto API, building a fresh cipher and
// HMAC object per packet (~6-7 us per 1000-byte packet each way), which alone eats most of the
// per-forwarded-packet CPU budget. The optional addon in native/srtp.c (built into
// build/Release/nkmedia_native.node by scripts/ensure-deps.mjs) keeps one OpenSSL context per
// key and only swaps the IV per packet. This module loads it when present and patches a werift
// SrtpSession/SrtcpSession instance so werift's own transport uses it, keeping werift's packet
// format, rollover-counter tracking and error behaviour (SrtpAuthenticationError) unchanged.
// When the addon is missing or fails to load, `available` is false and everything here degrades
// to werift's pure-JS path.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import {
  ProtectionProfileAeadAes128Gcm,
  ProtectionProfileAes128CmHmacSha1_80,
  RtpHeader,
  SrtpAuthenticationError,
  type SrtcpSession,
  type SrtpSession,
} from 'werift';
import { replaceSrtcpTransforms, replaceSrtpTransforms } from './internals.js';

/** An opaque native context (an N-API external holding the OpenSSL state for one key set). */
export type NativeHandle = { readonly __nkmediaSrtpContext: true };

/**
 * The addon's functions (native/srtp.c documents the wire formats). Each transform has an
 * allocating form returning a new Buffer and an `...Into` form that writes into `out` (which
 * must be large enough and must not overlap the input) and returns the byte count. The `Into`
 * forms are the fast ones: a Buffer made by N-API costs ~0.7 us, more than the crypto, while a
 * Buffer.allocUnsafe slice of Node's pool costs ~0.05 us.
 * Errors: bad arguments and malformed *plain* packets throw (caller bugs); SRTP/SRTCP input that
 * fails authentication or is malformed gives null (allocating form) or -1 (`Into` form).
 */
export interface NativeSrtpBinding {
  /** profile 1 = AES128_CM_HMAC_SHA1_80 (needs authKey), 7 = AEAD_AES_128_GCM. Session keys, not master keys. */
  createContext(profile: number, sessionKey: Uint8Array, sessionSalt: Uint8Array, authKey?: Uint8Array): NativeHandle;
  /** Output length: plain.length + tag. */
  protectRtp(ctx: NativeHandle, plainRtp: Uint8Array, rolloverCounter: number): Buffer;
  protectRtpInto(ctx: NativeHandle, plainRtp: Uint8Array, rolloverCounter: number, out: Uint8Array): number;
  /** Same as protectRtp with the serialised header and the payload in separate buffers (no header parsing). */
  protectRtpParts(ctx: NativeHandle, header: Uint8Array, payload: Uint8Array, rolloverCounter: number): Buffer;
  protectRtpPartsInto(ctx: NativeHandle, header: Uint8Array, payload: Uint8Array, rolloverCounter: number, out: Uint8Array): number;
  /** Output length: srtp.length - tag (header + payload, padding included, as werift returns it). */
  unprotectRtp(ctx: NativeHandle, srtp: Uint8Array, rolloverCounter: number): Buffer | null;
  unprotectRtpInto(ctx: NativeHandle, srtp: Uint8Array, rolloverCounter: number, out: Uint8Array): number;
  /** Always encrypts (E flag set); srtcpIndex is 31 bits. Output length: plain.length + 4 + tag. */
  protectRtcp(ctx: NativeHandle, plainRtcp: Uint8Array, srtcpIndex: number): Buffer;
  protectRtcpInto(ctx: NativeHandle, plainRtcp: Uint8Array, srtcpIndex: number, out: Uint8Array): number;
  /** Accepts E = 0 (authenticated-only) packets too. Output length: srtcp.length - 4 - tag. */
  unprotectRtcp(ctx: NativeHandle, srtcp: Uint8Array): Buffer | null;
  unprotectRtcpInto(ctx: NativeHandle, srtcp: Uint8Array, out: Uint8Array): number;
  /** The OpenSSL version the addon resolved at load (the one inside node). */
  readonly openssl: string;
  /** The packet types the forwarding plane takes for RTCP on a muxed port (native/rtp.h). */
  readonly rtcpMuxRange: readonly [number, number];
}

// The addon sits at <repo>/build/Release; this file runs from src/engine/local/accel (tsx) or
// dist/engine/local/accel (compiled), both four levels below the repo root.
export const ADDON_PATH = fileURLToPath(new URL('../../../../build/Release/nkmedia_native.node', import.meta.url));

function load(): { binding?: NativeSrtpBinding; error?: string } {
  // An escape hatch to compare against / fall back to werift's JS path without rebuilding.
  if (process.env.NKMEDIA_NATIVE_SRTP === '0') return { error: 'disabled by NKMEDIA_NATIVE_SRTP=0' };
  if (!existsSync(ADDON_PATH)) return { error: `${ADDON_PATH} is not built` };
  try {
    return { binding: createRequire(import.meta.url)(ADDON_PATH) as NativeSrtpBinding };
  } catch (e) {
    return { error: `cannot load ${ADDON_PATH}: ${(e as Error).message}` };
  }
}
const loaded = load();

/** The raw addon, when it loaded. */
export const native: NativeSrtpBinding | undefined = loaded.binding;
/** Whether native SRTP is usable in this process. */
export const available: boolean = native !== undefined;
/** Why it is not (for a startup log line). */
export const loadError: string | undefined = loaded.error;

function requireNative(): NativeSrtpBinding {
  if (!native) throw new Error(`native SRTP unavailable: ${loadError ?? 'unknown reason'}`);
  return native;
}

/** werift's per-direction SRTP context (keys and per-SSRC state) as typed by werift. */
export type WeriftSrtpContext = SrtpSession['localContext'];
export type WeriftSrtcpContext = SrtcpSession['localContext'];
/** werift's per-SSRC rollover state; werift's contexts hold these in srtpSSRCStates. */
export type SrtpSsrcState = ReturnType<WeriftSrtpContext['getSrtpSsrcState']>;

/** One direction's native context, built from werift's (or any) session keys. */
export class NativeSrtpContext {
  readonly tagLength: number;

  private constructor(readonly profile: number, readonly handle: NativeHandle, private readonly binding: NativeSrtpBinding) {
    this.tagLength = profile === ProtectionProfileAeadAes128Gcm ? 16 : 10;
  }

  static create(profile: number, sessionKey: Uint8Array, sessionSalt: Uint8Array, authKey?: Uint8Array): NativeSrtpContext {
    const b = requireNative();
    if (profile !== ProtectionProfileAes128CmHmacSha1_80 && profile !== ProtectionProfileAeadAes128Gcm) {
      throw new Error(`unsupported SRTP profile ${profile}`);
    }
    return new NativeSrtpContext(profile, b.createContext(profile, sessionKey, sessionSalt, authKey), b);
  }

  /** The RTP half of a werift context (srtpSession* keys). */
  static forRtp(ctx: WeriftSrtpContext | WeriftSrtcpContext): NativeSrtpContext {
    return NativeSrtpContext.create(ctx.profile, ctx.srtpSessionKey, ctx.srtpSessionSalt, ctx.srtpSessionAuthTag);
  }

  /** The RTCP half of a werift context (srtcpSession* keys). */
  static forRtcp(ctx: WeriftSrtpContext | WeriftSrtcpContext): NativeSrtpContext {
    return NativeSrtpContext.create(ctx.profile, ctx.srtcpSessionKey, ctx.srtcpSessionSalt, ctx.srtcpSessionAuthTag);
  }

  // These use the `Into` forms with pooled Buffer.allocUnsafe output (see NativeSrtpBinding);
  // the results are ordinary pooled Buffers, as werift's Buffer.concat results are.

  protectRtp(plain: Uint8Array, rolloverCounter: number): Buffer {
    const out = Buffer.allocUnsafe(plain.length + this.tagLength);
    this.binding.protectRtpInto(this.handle, plain, rolloverCounter, out);
    return out;
  }

  /** `header` is a complete serialised RTP header (werift's header.serialize()). */
  protectRtpParts(header: Uint8Array, payload: Uint8Array, rolloverCounter: number): Buffer {
    const out = Buffer.allocUnsafe(header.length + payload.length + this.tagLength);
    this.binding.protectRtpPartsInto(this.handle, header, payload, rolloverCounter, out);
    return out;
  }

  /** Throws werift's SrtpAuthenticationError on failure, like werift's decrypt. */
  unprotectRtp(srtp: Uint8Array, rolloverCounter: number): Buffer {
    const n = srtp.length - this.tagLength;
    if (n < 12) throw new SrtpAuthenticationError('Failed to authenticate SRTP packet');
    const out = Buffer.allocUnsafe(n);
    if (this.binding.unprotectRtpInto(this.handle, srtp, rolloverCounter, out) < 0) {
      throw new SrtpAuthenticationError('Failed to authenticate SRTP packet');
    }
    return out;
  }

  protectRtcp(plain: Uint8Array, srtcpIndex: number): Buffer {
    const out = Buffer.allocUnsafe(plain.length + 4 + this.tagLength);
    this.binding.protectRtcpInto(this.handle, plain, srtcpIndex, out);
    return out;
  }

  /** Throws werift's SrtpAuthenticationError on failure, like werift's decrypt. */
  unprotectRtcp(srtcp: Uint8Array): Buffer {
    const n = srtcp.length - 4 - this.tagLength;
    if (n < 8) throw new SrtpAuthenticationError('Failed to authenticate SRTCP packet');
    const out = Buffer.allocUnsafe(n);
    if (this.binding.unprotectRtcpInto(this.handle, srtcp, out) < 0) {
      throw new SrtpAuthenticationError('Failed to authenticate SRTCP packet');
    }
    return out;
  }
}

// werift's constants (rtp/src/srtp/context/context.ts).
const MAX_ROC_DISORDER = 100;
const MAX_SEQUENCE_NUMBER = 65535;

/**
 * An exact port of werift 0.25.2's Context.updateRolloverCount (RFC 3711 3.3.1 as werift reads
 * it), for callers that keep their own SsrcState without a werift context. The accelerated
 * sessions call werift's own method instead, so they cannot drift from werift.
 */
export function updateRolloverCount(sequenceNumber: number, s: SrtpSsrcState): void {
  if (!s.rolloverHasProcessed) {
    s.rolloverHasProcessed = true;
  } else if (sequenceNumber === 0) {
    if (s.lastSequenceNumber > MAX_ROC_DISORDER) s.rolloverCounter++;
  } else if (s.lastSequenceNumber < MAX_ROC_DISORDER && sequenceNumber > MAX_SEQUENCE_NUMBER - MAX_ROC_DISORDER) {
    if (s.rolloverCounter > 0) s.rolloverCounter--;
  } else if (sequenceNumber < MAX_ROC_DISORDER && s.lastSequenceNumber > MAX_SEQUENCE_NUMBER - MAX_ROC_DISORDER) {
    s.rolloverCounter++;
  }
  s.lastSequenceNumber = sequenceNumber;
}

/** A fresh per-SSRC state, as werift creates them. */
export function newSsrcState(ssrc: number): SrtpSsrcState {
  return { ssrc, rolloverCounter: 0, lastSequenceNumber: 0 };
}

/**
 * Protects an already-serialised RTP packet, advancing `state` (the state of that packet's SSRC)
 * exactly as werift's encryptRtp does.
 */
export function protect(ctx: NativeSrtpContext, plain: Uint8Array, state: SrtpSsrcState): Buffer {
  if (plain.length < 12) throw new Error('RTP packet shorter than its fixed header');
  updateRolloverCount((plain[2]! << 8) | plain[3]!, state);
  return ctx.protectRtp(plain, state.rolloverCounter);
}

/**
 * Unprotects an SRTP packet with werift's decryptRtp semantics: the ROC guess is made on a copy
 * of `state` and only committed when the packet authenticates. Throws SrtpAuthenticationError.
 */
export function unprotect(ctx: NativeSrtpContext, srtp: Uint8Array, state: SrtpSsrcState): Buffer {
  if (srtp.length < 12 + ctx.tagLength) throw new SrtpAuthenticationError('Failed to authenticate SRTP packet');
  const next = { ...state };
  updateRolloverCount((srtp[2]! << 8) | srtp[3]!, next);
  const out = ctx.unprotectRtp(srtp, next.rolloverCounter);
  Object.assign(state, next);
  return out;
}

interface Accelerated { rtpLocal: NativeSrtpContext; rtpRemote: NativeSrtpContext }

/**
 * A packet the forwarding plane already decrypted, on its way through werift's receive path:
 * the accelerated decrypt hands it on as is (once). Set it just before emitting the packet.
 */
let predecrypted: Buffer | undefined;
export function markDecrypted(buf: Buffer): void { predecrypted = buf; }

/** The native contexts of an accelerated session (the forwarding plane uses the same keys). */
export function nativeContexts(srtpSession: SrtpSession): Accelerated | undefined {
  return acceleratedRtp.get(srtpSession);
}

/** The native SRTCP contexts of an accelerated SRTCP session. */
export function nativeRtcpContexts(srtcpSession: SrtcpSession): AcceleratedRtcp | undefined {
  return acceleratedRtcp.get(srtcpSession);
}
interface AcceleratedRtcp { rtcpLocal: NativeSrtpContext; rtcpRemote: NativeSrtpContext }
/** The werift sessions running on the addon, with their native contexts. */
const acceleratedRtp = new WeakMap<SrtpSession, Accelerated>();
const acceleratedRtcp = new WeakMap<SrtcpSession, AcceleratedRtcp>();

/** Whether this werift session instance already runs on the addon. */
export function isAccelerated(session: SrtpSession | SrtcpSession): boolean {
  return acceleratedRtp.has(session as SrtpSession) || acceleratedRtcp.has(session as SrtcpSession);
}

/**
 * Switches one werift connection's SRTP (and optionally SRTCP) session to the addon by replacing
 * the instance's encrypt/decrypt with native-backed ones of identical semantics: same bytes on
 * the wire, same per-SSRC rollover counters (werift's own state objects and update method, so
 * the JS and native paths can be swapped at any time), same SrtpAuthenticationError on bad input.
 * Call it with dtlsTransport.srtp / dtlsTransport.srtcp after the DTLS handshake; werift builds a
 * new session object when it re-keys (updateSrtpSession), which then needs accelerating again.
 * Returns false, changing nothing, when the addon is not available. Idempotent.
 */
export function accelerate(srtpSession: SrtpSession, srtcpSession?: SrtcpSession): boolean {
  if (!native) return false;
  const b = native;
  const srtp = srtpSession;
  if (!acceleratedRtp.has(srtp)) {
    const local = srtp.localContext;
    const remote = srtp.remoteContext;
    const rtpLocal = NativeSrtpContext.forRtp(local);
    const rtpRemote = NativeSrtpContext.forRtp(remote);
    const { handle, tagLength } = rtpRemote;
    const minLength = 12 + tagLength;

    // werift: SrtpContext.decryptRtp. The ROC is guessed on the SSRC's state and rolled back if
    // the packet fails to authenticate, which is what werift's copy-then-commit does, without
    // allocating a copy per packet.
    const decrypt = (buf: Buffer): Buffer => {
      if (buf === predecrypted) { predecrypted = undefined; return buf; }
      if (buf.length < minLength) throw new SrtpAuthenticationError('Failed to authenticate SRTP packet');
      const ssrc = buf.readUInt32BE(8);
      const existing = remote.srtpSSRCStates[ssrc];
      const s = existing ?? newSsrcState(ssrc);
      const roc = s.rolloverCounter;
      const last = s.lastSequenceNumber;
      const processed = s.rolloverHasProcessed;
      remote.updateRolloverCount(buf.readUInt16BE(2), s);
      const out = Buffer.allocUnsafe(buf.length - tagLength);
      if (b.unprotectRtpInto(handle, buf, s.rolloverCounter, out) < 0) {
        if (existing) { s.rolloverCounter = roc; s.lastSequenceNumber = last; s.rolloverHasProcessed = processed; }
        throw new SrtpAuthenticationError('Failed to authenticate SRTP packet');
      }
      if (!existing) remote.srtpSSRCStates[ssrc] = s;
      return out;
    };

    // werift: SrtpContext.encryptRtp; the header is serialised by werift itself (which also
    // updates header.payloadOffset/extension as a side effect callers may rely on).
    const encrypt = (payload: Buffer, header: RtpHeader): Buffer => {
      const s = local.getSrtpSsrcState(header.ssrc);
      local.updateRolloverCount(header.sequenceNumber, s);
      return rtpLocal.protectRtpParts(header.serialize(header.serializeSize), payload, s.rolloverCounter);
    };
    replaceSrtpTransforms(srtp, { encrypt, decrypt });
    acceleratedRtp.set(srtp, { rtpLocal, rtpRemote });
  }

  const srtcp = srtcpSession;
  if (srtcp && !acceleratedRtcp.has(srtcp)) {
    const local = srtcp.localContext;
    const rtcpLocal = NativeSrtpContext.forRtcp(local);
    const rtcpRemote = NativeSrtpContext.forRtcp(srtcp.remoteContext);

    const decrypt = (buf: Buffer): Buffer => rtcpRemote.unprotectRtcp(buf);

    // werift: SrtcpContext.encryptRTCP. werift tests `index >> 2147483647`, which JS evaluates
    // as `>> 31`: the index wraps to 0 once it reaches 2^31.
    const encrypt = (rawRtcp: Buffer): Buffer => {
      const s = local.getSrtcpSsrcState(rawRtcp.readUInt32BE(4));
      s.srtcpIndex++;
      if (s.srtcpIndex >> 31) s.srtcpIndex = 0;
      return rtcpLocal.protectRtcp(rawRtcp, s.srtcpIndex);
    };
    replaceSrtcpTransforms(srtcp, { encrypt, decrypt });
    acceleratedRtcp.set(srtcp, { rtcpLocal, rtcpRemote });
  }
  return true;
}

/**
 * Protects an already-serialised RTP packet for sending on a werift connection (e.g. a forwarded
 * packet rewritten in place), sharing the connection's per-SSRC rollover state with werift's own
 * sendRtp. Uses the addon when the session is accelerated (accelerating it if possible), else
 * falls back to werift's JS encrypt.
 */
export function protectRtpPacket(srtpSession: SrtpSession, plain: Buffer): Buffer {
  const srtp = srtpSession;
  if (!acceleratedRtp.has(srtp)) accelerate(srtp);
  const acc = acceleratedRtp.get(srtp);
  if (acc) {
    const local = srtp.localContext;
    const s = local.getSrtpSsrcState(plain.readUInt32BE(8));
    local.updateRolloverCount(plain.readUInt16BE(2), s);
    return acc.rtpLocal.protectRtp(plain, s.rolloverCounter);
  }
  const header = RtpHeader.deSerialize(plain);
  return srtp.encrypt(plain.subarray(header.payloadOffset), header);
}
