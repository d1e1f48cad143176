// One call (docs/API.md §10, on the Kurento wiring): the caller's `park` session, answered
// at once, and one independent `park` session per destination leg with our offer. The first leg
// to accept gets `set_answer` and is switched to `bridge` with the caller's session; every other
// leg is cancelled. The call ends when its caller or answering callee goes, hangs up, or when no
// leg can answer (all declined, ring time over); its sessions end with it.
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { ApiError, causeOf, type ErrorTerm, type StopCause } from '../../protocol/errors.js';
import { checkWebRtcSdp, type CandidateInit } from '../../protocol/sdp.js';
import type { CreateRequest, SdpObject } from '../../protocol/session-schemas.js';
import type { Caller, CreateResult, SessionManager } from '../sessions/manager.js';
import type { Session } from '../sessions/session.js';
import type { CallConnection, CallDestinationDriver, CallParty, InviteReply, LegControl, OutgoingLeg, PartyEvent } from './types.js';
import { systemUser } from '../../util/principals.js';

/** Owner of the legs rung on API connections: no login can claim it; the callee is a party. */
export const CALL_LEG_OWNER = systemUser('call');

export type CallState = 'ringing' | 'answered' | 'ended';

/**
 * starting: its session is being made; inviting: the invite is out; invited: the callee said
 * it will answer later; ringing; accepting: its answer is being applied; accepted: bridged.
 * Final: rejected (it declined), cancelled (another leg answered, or the call ended first),
 * failed (its session or invite failed, or its connection went), ended (it had answered).
 */
export type LegState = 'starting' | 'inviting' | 'invited' | 'ringing' | 'accepting' | 'accepted' | 'rejected' | 'cancelled' | 'failed' | 'ended';

const PENDING: ReadonlySet<LegState> = new Set(['starting', 'inviting', 'invited', 'ringing']);

/** A resolved destination: an API connection, or a URI rung by a driver. */
export interface LegSpec {
  /** How it was named: `user`, `session`, or the URI scheme (`sip`). */
  kind: string;
  /** The user name, connection id or URI. */
  target: string;
  /** The callee's user ('' for driver legs). */
  user: string;
  conn?: CallConnection;
  driver?: CallDestinationDriver;
}

export class Leg {
  state: LegState = 'starting';
  session?: Session;
  offer?: SdpObject;
  control?: LegControl;
  /** The callee's connection follows the call's own events. */
  following = false;
  callee?: Record<string, unknown>;
  /** What the callee is told before its invite is out (our ICE candidates), sent after it. */
  held: PartyEvent[] | undefined = [];
  readonly abort = new AbortController();
  endCause?: StopCause;

  constructor(readonly id: string, readonly spec: LegSpec) {}

  get pending(): boolean { return PENDING.has(this.state); }
  /** Whether the callee has been told of this leg (its invite is out). */
  get announced(): boolean { return this.offer !== undefined && this.state !== 'starting'; }
}

export interface CallEnv {
  sessions: SessionManager;
  log: Logger;
  /** How long a callee's connection has to reply to its invite. */
  inviteTimeoutMs: number;
  removed(call: Call): void;
}

export interface CallOptions {
  id: string;
  callerSessionId: string;
  /** The caller's side: its API connection (or a SIP dialog standing in for one). */
  party: CallParty;
  /** The caller's user (owner of the caller's session). */
  callerUser: string;
  callee: string | string[];
  calleeType?: string;
  callerInfo: Record<string, unknown>;
  ringTime: number;
  meta?: Record<string, unknown>;
  /** Trickle options of the call's create, applied to every session of the call. */
  noOfferTrickleIce?: boolean;
  noAnswerTrickleIce?: boolean;
  trickleIceTimeout?: number;
  /** SDP kind offered to API connections. */
  sdpType: 'webrtc' | 'rtp';
}

export interface CallStartResult { call_id: string; session_id: string; answer?: SdpObject }

function asApiError(err: unknown, fallback: ErrorTerm = 'session_failed'): ApiError {
  return err instanceof ApiError ? err : new ApiError(fallback);
}

/** Domain events of a call (its `events` emitter). */
export interface CallEvents {
  /** A callee is being alerted (`leg.callee`: its description, if it gave one). */
  ringing: [leg: Leg];
  /** A callee answered: the caller's session has the answer. */
  accepted: [leg: Leg];
  /** The call ended, and why (its followers hear it; then nobody follows it any more). */
  hangup: [cause: StopCause];
}

export class Call {
  readonly id: string;
  state: CallState = 'ringing';
  readonly legs: Leg[] = [];
  callerSession?: Session;
  answeredLeg?: Leg;
  endCause?: StopCause;
  readonly startTime = Date.now();
  answerTime?: number;
  private endError?: ApiError;
  private ringTimer?: NodeJS.Timeout;
  private ringDeadline = 0;
  private lastFailure?: ApiError;
  /** The call's domain events, for layers that act on them (the SIP gateway for a phone's call). */
  readonly events = new EventEmitter<CallEvents>();
  /** Listeners on the call's media sessions' domain events, by session id (to detach them). */
  private readonly watching = new Map<string, () => void>();

  constructor(private readonly env: CallEnv, readonly opts: CallOptions) {
    this.id = opts.id;
  }

  get callerUser(): string { return this.opts.callerUser; }
  get party(): CallParty { return this.opts.party; }
  get callerSessionId(): string { return this.opts.callerSessionId; }
  get ended(): boolean { return this.state === 'ended'; }

  /** The leg an API connection was invited on, if any. */
  legOf(connId: string): Leg | undefined { return this.legs.find((l) => l.spec.conn?.id === connId); }

  /** The caller, every callee user and admins may see the call. */
  visibleTo(who: { user: string; admin: boolean }): boolean {
    return who.admin || who.user === this.callerUser || this.legs.some((l) => l.spec.user !== '' && l.spec.user === who.user);
  }

  // ---- starting ------------------------------------------------------------------------------

  /**
   * Starts the caller's session with its offer, then rings every destination. Resolves once
   * the caller's offer is processed (with `waitAnswer`, once our answer to it exists).
   */
  async start(specs: LegSpec[], offer: SdpObject, who: Caller, subscribe: boolean, waitAnswer: boolean): Promise<CallStartResult> {
    const { party } = this;
    // The caller hears the call's events from the start (as a session's creator does).
    if (subscribe) party.follow(this, true);
    const req: CreateRequest = {
      type: 'park',
      offer,
      // The caller's session outlives a leg leaving the bridge; the call decides when it ends.
      stop_after_peer: false,
      ...this.trickleOptions(offer.sdp_type ?? 'webrtc'),
    };
    const created = this.env.sessions.create(req, who, this.callerSessionId, { user: this.callerUser, connId: party.id }, { onSession: (s) => this.watch(s) });
    this.callerSession = this.env.sessions.lookup(this.callerSessionId);
    // Until a callee accepts, nobody but the call answers or wires the call's sessions.
    this.callerSession?.lock(this, 'the call is ringing: its sessions are wired by the call until it is answered');
    try {
      await created;
    } catch (err) {
      this.abandon();
      throw err;
    }
    if (this.ended) throw this.endError ?? new ApiError('call_not_found');
    this.armRingTimer(this.opts.ringTime * 1000);
    this.env.log.info({ call: this.id, user: this.callerUser, legs: specs.length }, 'call started');
    for (const spec of specs) this.launch(new Leg(this.env.sessions.newId(), spec));
    const result: CallStartResult = { call_id: this.id, session_id: this.callerSessionId };
    if (!waitAnswer) return result;
    try {
      const { answer } = await this.callerSession!.waitReply();
      return { ...result, answer };
    } catch (err) {
      const e = asApiError(err);
      await this.end(e.term, e.detail);
      throw e;
    }
  }

  private trickleOptions(sdpType: string): Partial<CreateRequest> {
    // Plain RTP has no ICE: the trickle options mean nothing there (and are refused).
    if (sdpType !== 'webrtc') return {};
    const o = this.opts;
    return {
      ...(o.noOfferTrickleIce !== undefined ? { no_offer_trickle_ice: o.noOfferTrickleIce } : {}),
      ...(o.noAnswerTrickleIce !== undefined ? { no_answer_trickle_ice: o.noAnswerTrickleIce } : {}),
      ...(o.trickleIceTimeout !== undefined ? { trickle_ice_timeout: o.trickleIceTimeout } : {}),
    };
  }

  /** The call could not start: gone without a trace (no events; the create fails). */
  private abandon(): void {
    if (this.ended) return;
    this.state = 'ended';
    clearTimeout(this.ringTimer);
    this.env.removed(this);
    this.unwatch(this.callerSessionId);
    this.opts.party.follow(this, false);
    this.events.removeAllListeners();
  }

  /** Starts one leg: its session (a slave of the caller's), then the invite. */
  private launch(leg: Leg): void {
    this.legs.push(leg);
    const driver = leg.spec.driver;
    const sdpType = driver ? driver.sdpType : this.opts.sdpType;
    // A leg belongs to no login: the callee acts on it as a party, and it counts against the
    // caller's limits (whoever is rung, a call never uses up the callee's own allowance).
    const charge = { user: this.callerUser, connId: this.party.id };
    const owner = driver
      ? { ...(driver.legOwner?.(leg.spec.target) ?? { user: this.callerUser, connId: this.party.id }), charge }
      : { user: CALL_LEG_OWNER, connId: `${this.id}/${leg.id}`, charge, parties: [leg.spec.user] };
    const req: CreateRequest = {
      type: 'park',
      sdp_type: sdpType,
      // A slave of the caller's session: it stops when that one does.
      master_id: this.callerSessionId,
      stop_after_peer: true,
      wait_reply: true,
      // It must not time out before the ring time does.
      wait_timeout: this.opts.ringTime + 60,
      ...this.trickleOptions(sdpType),
    };
    // Internal path: the leg may name the caller's session (another user's) as its master.
    const who: Caller = { user: owner.user, admin: true, connId: owner.connId };
    const created = this.env.sessions.create(req, who, leg.id, owner, { onSession: (s) => this.watch(s) });
    leg.session = this.env.sessions.lookup(leg.id);
    leg.session?.lock(this, 'the call has not been answered: accept it with the call\'s `accepted` command');
    void this.runLeg(leg, created);
  }

  private async runLeg(leg: Leg, created: Promise<CreateResult>): Promise<void> {
    let offer: SdpObject | undefined;
    try {
      offer = (await created).offer;
      if (!offer) throw new ApiError('offer_not_set');
    } catch (err) {
      this.unwatch(leg.id);
      this.legFailed(leg, asApiError(err));
      return;
    }
    if (!leg.pending) return;
    leg.offer = offer;
    leg.state = 'inviting';
    if (leg.spec.driver) await this.inviteByDriver(leg, leg.spec.driver);
    else await this.inviteConnection(leg, leg.spec.conn!, offer);
  }

  private async inviteConnection(leg: Leg, conn: CallConnection, offer: SdpObject): Promise<void> {
    const replied = conn.invite(this, {
      kind: leg.spec.kind, sessionId: leg.id, offer, caller: this.opts.callerInfo, callerUser: this.callerUser,
    }, { timeoutMs: this.env.inviteTimeoutMs, signal: leg.abort.signal });
    // Our candidates for this leg found before the invite went out follow it now.
    const held = leg.held ?? [];
    leg.held = undefined;
    for (const e of held) conn.notify(this, e);
    let reply: InviteReply;
    try {
      reply = await replied;
    } catch {
      if (leg.pending) this.legFailed(leg, new ApiError('timeout'));
      return;
    }
    if (leg.state === 'inviting' && !reply.willAnswer) {
      this.reject(leg, 'the invite was declined');
      return;
    }
    if (!leg.pending && leg.state !== 'accepting' && leg.state !== 'accepted') return;
    if (leg.state === 'inviting') leg.state = 'invited';
    if (reply.willAnswer && reply.follow && !leg.following) this.follow(leg, true);
  }

  private async inviteByDriver(leg: Leg, driver: CallDestinationDriver): Promise<void> {
    leg.held = undefined;
    try {
      leg.control = await driver.invite(leg.spec.target, this.outgoingLeg(leg));
    } catch (err) {
      this.legFailed(leg, asApiError(err, 'internal_error'));
      return;
    }
    // The call moved on while the driver was starting: end what it started.
    if (!leg.pending && leg.state !== 'accepting' && leg.state !== 'accepted' && leg.endCause) {
      this.safely(() => leg.control!.end(leg.endCause!, leg.state === 'ended'));
    }
  }

  /** What a driver may do with its leg. */
  private outgoingLeg(leg: Leg): OutgoingLeg {
    return {
      callId: this.id,
      sessionId: leg.id,
      offer: leg.offer!,
      caller: this.opts.callerInfo,
      callerUser: this.callerUser,
      ringing: (callee) => this.safely(() => this.ringing(leg, callee)),
      accept: (answer, callee) => this.accept(leg, answer, callee),
      reject: (reason) => { if (leg.pending) this.reject(leg, reason); },
      hangup: (reason) => {
        if (leg === this.answeredLeg) void this.end('api_hangup', reason);
        else if (leg.pending) this.reject(leg, reason);
      },
    };
  }

  // ---- the callees' commands -----------------------------------------------------------------

  private assertOpen(leg: Leg): void {
    if (this.ended) throw new ApiError('call_not_found');
    if (leg.state === 'rejected') throw new ApiError('not_invited', 'you declined this call');
    if (this.answeredLeg) throw new ApiError('already_answered');
    if (!leg.pending) throw new ApiError('not_invited', `your invite ended${leg.endCause ? `: ${new ApiError(leg.endCause.term, leg.endCause.detail).message}` : ''}`);
  }

  ringing(leg: Leg, callee?: Record<string, unknown>): void {
    this.assertOpen(leg);
    leg.state = 'ringing';
    if (callee) leg.callee = callee;
    this.events.emit('ringing', leg);
  }

  /** The leg's callee answers: its session gets the answer and is bridged with the caller's. */
  async accept(leg: Leg, answer: SdpObject, callee?: Record<string, unknown>): Promise<void> {
    this.assertOpen(leg);
    // A bad SDP is refused before the call is taken, so another leg can still answer.
    if (leg.offer?.sdp_type !== 'rtp' && (answer.sdp_type ?? 'webrtc') === 'webrtc') checkWebRtcSdp(answer.sdp);
    const session = leg.session;
    const callerSession = this.callerSession;
    if (!session || session.isStopped || !callerSession || callerSession.isStopped) throw new ApiError('not_invited', 'your invite ended');
    const before = leg.state;
    this.answeredLeg = leg;
    leg.state = 'accepting';
    if (callee) leg.callee = callee;
    const remainingMs = this.ringDeadline - Date.now();
    clearTimeout(this.ringTimer);
    try {
      await session.setAnswer(answer, this);
    } catch (err) {
      // The answer was refused (the session is unharmed): the call rings on.
      if (!this.ended && this.answeredLeg === leg && leg.state === 'accepting') {
        this.answeredLeg = undefined;
        leg.state = before;
        this.armRingTimer(remainingMs);
      }
      throw err;
    }
    if (this.ended) throw new ApiError('call_not_found');
    for (const other of this.legs) {
      if (other !== leg && other.pending) this.cancelLeg(other, 'answered_elsewhere');
    }
    // Answered: the parties may now switch their sessions (e.g. to echo and back).
    session.unlock(this);
    callerSession.unlock(this);
    try {
      await session.setType({ type: 'bridge', peer: callerSession });
    } catch (err) {
      const e = asApiError(err);
      await this.end(e.term, e.detail);
      throw e;
    }
    if (this.ended) throw new ApiError('call_not_found');
    leg.state = 'accepted';
    this.state = 'answered';
    this.answerTime = Date.now();
    this.env.log.info({ call: this.id, leg: leg.id, user: leg.spec.user || leg.spec.target }, 'call answered');
    this.events.emit('accepted', leg);
  }

  /** The leg's callee declines (or its invite was refused). */
  reject(leg: Leg, detail?: string): void {
    if (this.ended) throw new ApiError('call_not_found');
    if (leg.state === 'rejected') throw new ApiError('not_invited', 'you declined this call already');
    if (leg === this.answeredLeg) throw new ApiError('already_answered');
    if (!leg.pending) throw new ApiError(this.answeredLeg ? 'already_answered' : 'not_invited');
    this.env.log.info({ call: this.id, leg: leg.id, detail }, 'call leg declined');
    this.finishLeg(leg, 'rejected', { term: 'call_rejected' }, { tell: false, unfollow: true });
    void leg.session?.stop('call_rejected');
    this.checkAllDone();
  }

  /** A client candidate from the caller (no leg) or from a callee's leg. */
  async candidate(leg: Leg | undefined, c: { candidate: string; sdpMid?: string; sdpMLineIndex: number } | 'end'): Promise<void> {
    if (this.ended) throw new ApiError('call_not_found');
    let session: Session | undefined;
    if (leg) {
      if (leg !== this.answeredLeg) this.assertOpen(leg);
      session = leg.session;
    } else {
      session = this.callerSession;
    }
    if (!session || session.isStopped) throw new ApiError('call_not_found');
    if (c === 'end') session.clientCandidatesEnd();
    else await session.addClientCandidate(c);
  }

  /** `hangup` from a party: the caller's side or the answering callee end the call; a ringing callee declines. */
  async hangup(leg: Leg | undefined, reason?: string): Promise<void> {
    if (this.ended) throw new ApiError('call_not_found');
    if (leg && leg !== this.answeredLeg) {
      this.reject(leg, reason);
      return;
    }
    await this.end('api_hangup', reason);
  }

  // ---- ending --------------------------------------------------------------------------------

  /** Ends the call: everyone still in it hears `hangup`, and every session of the call stops. */
  async end(term: ErrorTerm, detail?: string): Promise<void> {
    if (this.ended) return;
    this.state = 'ended';
    clearTimeout(this.ringTimer);
    const cause = causeOf(term, detail);
    this.endCause = cause;
    this.endError = new ApiError(term, detail);
    this.env.removed(this);
    this.env.log.info({ call: this.id, reason: term, detail }, 'call ended');
    for (const leg of this.legs) {
      // Followers hear the call's `hangup`; the others are told their leg ended.
      if (leg.pending) this.finishLeg(leg, 'cancelled', cause, { tell: !leg.following, unfollow: false });
      else if (leg.state === 'accepting' || leg.state === 'accepted') this.finishLeg(leg, 'ended', cause, { tell: !leg.following, unfollow: false });
    }
    this.events.emit('hangup', cause);
    this.events.removeAllListeners();
    // Legs first, so that they stop with the call's reason rather than their master's.
    const sessions = [...this.legs.map((l) => l.session), this.callerSession];
    await Promise.all(sessions.map((s) => s?.stop(term, detail)));
  }

  /** A connection went away: the caller's ends the call, a callee's leaves it. */
  async partyGone(connId: string): Promise<void> {
    if (this.ended) return;
    if (this.party.id === connId) {
      await this.end('caller_disconnected');
      return;
    }
    const leg = this.legOf(connId);
    if (!leg) return;
    if (leg === this.answeredLeg) {
      await this.end('callee_disconnected');
    } else if (leg.pending) {
      this.finishLeg(leg, 'failed', { term: 'callee_disconnected' }, { tell: false, unfollow: true });
      this.lastFailure = new ApiError('callee_disconnected');
      await leg.session?.stop('callee_disconnected');
      this.checkAllDone();
    }
  }

  /** Another leg answered (or the leg failed): it leaves the call and its callee is told. */
  private cancelLeg(leg: Leg, term: ErrorTerm): void {
    this.finishLeg(leg, 'cancelled', { term }, { tell: true, unfollow: true });
    void leg.session?.stop(term);
  }

  private legFailed(leg: Leg, err: ApiError): void {
    if (this.ended || !leg.pending) return;
    // A leg that fails because the caller's session stopped: the call ends for that reason.
    if (this.callerSession?.isStopped) {
      const e = this.callerSession.stopError ?? new ApiError('session_stopped');
      void this.end(e.term, e.detail);
      return;
    }
    this.env.log.info({ call: this.id, leg: leg.id, reason: err.message }, 'call leg failed');
    this.lastFailure = err;
    this.finishLeg(leg, 'failed', causeOf(err.term, err.detail), { tell: leg.announced, unfollow: true });
    void leg.session?.stop(err.term, err.detail);
    this.checkAllDone();
  }

  /** No leg can answer any more: the call ends. */
  private checkAllDone(): void {
    if (this.ended || this.answeredLeg) return;
    if (this.legs.some((l) => l.pending)) return;
    if (this.legs.some((l) => l.state === 'rejected')) {
      void this.end('call_rejected');
      return;
    }
    const last = this.lastFailure;
    void this.end('no_destination', `no destination could be rung${last ? ` (${last.message})` : ''}`);
  }

  private finishLeg(leg: Leg, state: LegState, cause: StopCause, how: { tell: boolean; unfollow: boolean }): void {
    const wasAnnounced = leg.announced;
    const answered = state === 'ended';
    leg.state = state;
    leg.endCause = cause;
    leg.held = undefined;
    leg.abort.abort();
    const conn = leg.spec.conn;
    if (conn) {
      if (how.unfollow && leg.following) this.follow(leg, false);
      if (how.tell && wasAnnounced) conn.notify(this, { type: 'legEnded', sessionId: leg.id, cause });
    }
    if (leg.control) {
      const control = leg.control;
      this.safely(() => control.end(cause, answered));
    }
  }

  // ---- events --------------------------------------------------------------------------------

  /**
   * Whether a callee's connection follows the call's own events: from its invite reply on, and as
   * its `accepted` says (docs/API.md §10).
   */
  follow(leg: Leg, on: boolean): void {
    const conn = leg.spec.conn;
    if (!conn || (on && this.ended)) return;
    leg.following = on;
    conn.follow(this, on);
  }

  /** Follows a media session of the call through its domain events (from before it starts). */
  private watch(session: Session): void {
    const sid = session.id;
    const onAnswer = (answer: SdpObject) => this.onSessionEvent(sid, { type: 'answer', sessionId: sid, answer });
    const onCandidate = (candidate: Required<CandidateInit>) => this.onSessionEvent(sid, { type: 'candidate', sessionId: sid, candidate });
    const onEnd = () => this.onSessionEvent(sid, { type: 'candidateEnd', sessionId: sid });
    const onStopped = () => this.onSessionEvent(sid, 'stopped');
    session.events.on('answer', onAnswer).on('candidate', onCandidate).on('candidateEnd', onEnd).on('stopped', onStopped);
    this.watching.set(sid, () => {
      session.events.off('answer', onAnswer).off('candidate', onCandidate).off('candidateEnd', onEnd).off('stopped', onStopped);
    });
  }

  private unwatch(sessionId: string): void {
    this.watching.get(sessionId)?.();
    this.watching.delete(sessionId);
  }

  /**
   * Events of the call's sessions: SDPs and candidates go to their party (as call events, in the
   * body the session's own event has), ends end legs or the call.
   */
  private onSessionEvent(sid: string, ev: PartyEvent | 'stopped'): void {
    if (sid === this.callerSessionId) {
      if (ev === 'stopped') this.callerSessionGone();
      else if (ev.type === 'answer' || !this.ended) this.party.notify(this, ev);
      return;
    }
    const leg = this.legs.find((l) => l.id === sid);
    if (!leg) return;
    if (ev === 'stopped') { this.legSessionGone(leg); return; }
    if (ev.type !== 'candidate' && ev.type !== 'candidateEnd') return;
    const conn = leg.spec.conn;
    if (!conn || !(leg.pending || leg.state === 'accepting' || leg.state === 'accepted')) return;
    if (leg.held) leg.held.push(ev);
    else conn.notify(this, ev);
  }

  private callerSessionGone(): void {
    if (this.ended) return;
    const e = this.callerSession?.stopError ?? new ApiError('session_stopped');
    void this.end(e.term, e.detail);
  }

  private legSessionGone(leg: Leg): void {
    if (this.ended) return;
    // A leg is a slave of the caller's session: when that one stopped first, its reason ends the call.
    const caller = this.callerSession?.isStopped ? this.callerSession.stopError : undefined;
    const e = caller ?? leg.session?.stopError ?? new ApiError('session_stopped');
    if (leg === this.answeredLeg) void this.end(e.term, e.detail);
    else if (leg.pending) this.legFailed(leg, e);
  }

  private armRingTimer(ms: number): void {
    clearTimeout(this.ringTimer);
    this.ringDeadline = Date.now() + Math.max(0, ms);
    this.ringTimer = setTimeout(() => {
      if (!this.answeredLeg) void this.end('no_answer');
    }, Math.max(0, ms));
  }

  private safely(f: () => void): void {
    try { f(); } catch (err) { this.env.log.debug({ call: this.id, err: String(err) }, 'call leg callback failed'); }
  }
}
