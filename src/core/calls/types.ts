// What the call layer needs from the outside: the parties it talks to and the drivers that ring
// destinations it does not ring itself (SIP). Plain data and small interfaces only: how a party
// hears the call (NkMEDIA events, SIP responses) is the party's business.
import type { SdpObject } from '../../protocol/session-schemas.js';
import type { CandidateInit } from '../../protocol/sdp.js';
import type { StopCause } from '../../protocol/errors.js';

/** A call, as its parties know it (they may keep per-call state keyed on it). */
export interface CallRef { readonly id: string }

/** What concerns one party of a call alone. */
export type PartyEvent =
  /** Our answer to the party's offer (the caller's session). */
  | { type: 'answer'; sessionId: string; answer: SdpObject }
  /** One of our ICE candidates for the party's session, and the end of them. */
  | { type: 'candidate'; sessionId: string; candidate: Required<CandidateInit> }
  | { type: 'candidateEnd'; sessionId: string }
  /** The party's leg left the call for a reason it did not cause (another leg answered, the call ended...). */
  | { type: 'legEnded'; sessionId: string; cause: StopCause };

/**
 * One side of a call: the caller (an API connection, or a SIP dialog standing in for one) or a
 * callee's connection. The call tells it what concerns it alone, and whether it follows the
 * call's own events (`ringing`, `accepted`, `hangup`, published to followers by the front door).
 */
export interface CallParty {
  readonly id: string;
  notify(call: CallRef, ev: PartyEvent): void;
  /** From now on the party hears the call's own events (`on`), or no more. */
  follow(call: CallRef, on: boolean): void;
}

/** What a callee's connection is rung with. */
export interface Invitation {
  /** The kind of destination it was rung as: `user` or `session`. */
  kind: string;
  /** The leg's media session, which the callee answers. */
  sessionId: string;
  offer: SdpObject;
  /** The `caller` object of the call's `create`, and the calling user. */
  caller: Record<string, unknown>;
  callerUser: string;
}

/** A callee's reply to its invite: it declined, or will answer (and whether it follows the call). */
export type InviteReply = { willAnswer: false } | { willAnswer: true; follow: boolean };

/** A logged-in connection that calls can ring (by its user name or its id). */
export interface CallConnection extends CallParty {
  readonly user: string;
  /**
   * Rings the callee. Sends at once (before resolving): what the call notifies after calling it
   * reaches the callee after the invite. Rejects when no reply comes within `timeoutMs`, when
   * `signal` aborts, or when the connection closes.
   */
  invite(call: CallRef, inv: Invitation, opts: { timeoutMs: number; signal: AbortSignal }): Promise<InviteReply>;
}


/**
 * One destination being rung by a driver (e.g. one SIP INVITE). The driver reports what the
 * remote party does through these methods; they never throw except `accept`.
 */
export interface OutgoingLeg {
  readonly callId: string;
  /** The leg's media session (type `park` until it is answered, then `bridge` with the caller's). */
  readonly sessionId: string;
  /** Our offer for this leg (its `sdp_type` is the driver's `sdpType`). */
  readonly offer: SdpObject;
  /** The `caller` object of the call's `create` (for display), and the calling user. */
  readonly caller: Record<string, unknown>;
  readonly callerUser: string;
  /** The remote party is alerting (SIP 180). */
  ringing(callee?: Record<string, unknown>): void;
  /**
   * The remote party answered (SIP 200 with its SDP): the leg gets the answer and is bridged
   * with the caller; every other leg is cancelled. Rejects with ApiError (`already_answered`,
   * `call_not_found`, `invalid_sdp`...) when it cannot be; the driver then hangs up (BYE).
   */
  accept(answer: SdpObject, callee?: Record<string, unknown>): Promise<void>;
  /** The remote party declined (SIP 4xx-6xx) or could not be reached; `reason` is free text. */
  reject(reason?: string): void;
  /** The remote party hung up after answering (SIP BYE): the call ends. */
  hangup(reason?: string): void;
}

/** What the call does to a leg a driver rang. */
export interface LegControl {
  /**
   * The leg is over from the call's side: another leg answered, the call ended or timed out.
   * `answered` says whether this leg had answered (SIP: BYE) or not (SIP: CANCEL).
   */
  end(cause: StopCause, answered: boolean): void;
}

/**
 * A driver for destinations of some URI schemes, e.g. the SIP user agent for `sip:` and
 * `sips:`. Registered at startup with `CallManager.registerDriver`; until one is registered
 * for a scheme, calls to it fail with `not_implemented`.
 */
export interface CallDestinationDriver {
  /** URI schemes it rings, lower case, without the colon: e.g. ["sip", "sips"]. */
  readonly schemes: readonly string[];
  /** The kind of SDP its legs are offered ("rtp" for SIP). */
  readonly sdpType: 'webrtc' | 'rtp';
  /** Checks a destination when the call is created (throw ApiError, e.g. `invalid_uri`). */
  check?(uri: string): void;
  /**
   * Owner of the leg's media session (who may see it and whose going away stops it).
   * Default: the caller's user and connection.
   */
  legOwner?(uri: string): { user: string; connId: string };
  /** Starts ringing `uri` with the leg's offer; the returned control ends it. */
  invite(uri: string, leg: OutgoingLeg): LegControl | Promise<LegControl>;
}

/** Alias kept for the lead's naming: the SIP user agent implements this. */
export type SipCallBridge = CallDestinationDriver;
