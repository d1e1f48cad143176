// The set of live calls, the directory of logged-in connections that calls ring, and the
// drivers for destinations rung elsewhere (the SIP user agent for `sip:` URIs).
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { ApiError, type ErrorTerm } from '../../protocol/errors.js';
import type { CallCreateRequest, CalleeType } from '../../protocol/call-schemas.js';
import type { Caller, SessionManager } from '../sessions/manager.js';
import { BACKEND } from '../../protocol/session-schemas.js';
import { Call, type CallStartResult, type Leg, type LegSpec } from './call.js';
import type { CallConnection, CallDestinationDriver, CallParty } from './types.js';

export const DEFAULT_RING_TIME = 30;
/** How long a callee's connection has to reply to an invite (the original: "at once"). */
export const INVITE_REPLY_TIMEOUT_MS = 10_000;

/** Schemes that always mean "a URI for a driver", even before one is registered. */
const DRIVER_SCHEMES = new Set(['sip', 'sips']);

export class CallManager {
  private readonly calls = new Map<string, Call>();
  private readonly conns = new Map<string, CallConnection>();
  private readonly byUser = new Map<string, Set<CallConnection>>();
  private readonly drivers = new Map<string, CallDestinationDriver>();
  inviteTimeoutMs = INVITE_REPLY_TIMEOUT_MS;
  /** Each new call, before it starts ringing (front doors follow its events from here). */
  readonly events = new EventEmitter<{ call: [call: Call] }>();

  constructor(private readonly sessions: SessionManager, private readonly log: Logger) {}

  get size(): number { return this.calls.size; }

  /**
   * Registers a driver for its URI schemes (the SIP user agent: `sip`, `sips`). Calls to a
   * scheme with no driver fail with `not_implemented`.
   */
  registerDriver(driver: CallDestinationDriver): void {
    for (const s of driver.schemes) this.drivers.set(s.toLowerCase(), driver);
  }

  // ---- the connection directory --------------------------------------------------------------

  /** A connection logged in: it can be called (by its user name or its id). */
  connectionUp(conn: CallConnection): void {
    this.conns.set(conn.id, conn);
    let set = this.byUser.get(conn.user);
    if (!set) this.byUser.set(conn.user, (set = new Set()));
    set.add(conn);
  }

  /** Logged-in connections of a user (the directory counts every one, callable or not). */
  connectionsOf(user: string): number { return this.byUser.get(user)?.size ?? 0; }

  /** A connection closed: the calls it placed end, the legs it was rung on leave their calls. */
  async connectionDown(conn: { id: string; user: string }): Promise<void> {
    if (this.conns.get(conn.id) !== undefined) {
      this.conns.delete(conn.id);
      const set = this.byUser.get(conn.user);
      for (const c of set ?? []) if (c.id === conn.id) set!.delete(c);
      if (set && set.size === 0) this.byUser.delete(conn.user);
    }
    await this.partyGone(conn.id);
  }

  /** A party (an API connection, or a SIP dialog standing in for one) is gone. */
  async partyGone(partyId: string): Promise<void> {
    await Promise.all([...this.calls.values()].map((c) => c.partyGone(partyId)));
  }

  // ---- destinations --------------------------------------------------------------------------

  /**
   * Resolves `callee` to the legs to ring: every connection of a user (`user:<name>`), one
   * connection (`session:<id>`), a URI for a driver (`sip:...`), or a bare name (a user or a
   * connection id, as `type` says; default both). The caller's own connection is never rung.
   */
  resolve(callee: string | string[], type: CalleeType | undefined, callerConnId: string): LegSpec[] {
    const specs: LegSpec[] = [];
    const seen = new Set<string>();
    const missing: string[] = [];
    const addConn = (kind: string, target: string, conn: CallConnection) => {
      if (conn.id === callerConnId || seen.has(conn.id)) return false;
      seen.add(conn.id);
      specs.push({ kind, target, user: conn.user, conn });
      return true;
    };
    const byUser = (name: string) => {
      let n = 0;
      for (const conn of this.byUser.get(name) ?? []) if (addConn('user', name, conn)) n++;
      return n > 0 || [...(this.byUser.get(name) ?? [])].some((c) => seen.has(c.id));
    };
    const bySession = (id: string) => {
      const conn = this.conns.get(id);
      return conn !== undefined && (addConn('session', id, conn) || seen.has(conn.id));
    };
    for (const dest of Array.isArray(callee) ? callee : [callee]) {
      const m = /^([A-Za-z][A-Za-z0-9+.-]*):(.+)$/.exec(dest);
      const scheme = m?.[1]!.toLowerCase();
      if (scheme === 'user') {
        if (!byUser(m![2]!)) missing.push(this.userMissing(m![2]!));
      } else if (scheme === 'session') {
        if (!bySession(m![2]!)) missing.push(`no connection '${m![2]}'`);
      } else if (scheme !== undefined && (DRIVER_SCHEMES.has(scheme) || this.drivers.has(scheme))) {
        this.addDriverLeg(specs, seen, scheme, dest);
      } else if (type === 'sip') {
        this.addDriverLeg(specs, seen, 'sip', `sip:${dest}`);
      } else if (type === 'user') {
        if (!byUser(dest)) missing.push(this.userMissing(dest));
      } else if (type === 'session') {
        if (!bySession(dest)) missing.push(`no connection '${dest}'`);
      } else {
        const found = byUser(dest);
        if (!bySession(dest) && !found) missing.push(`'${dest}' is neither a connected user nor a connection`);
      }
    }
    if (specs.length === 0) throw new ApiError('no_destination', missing.join('; ') || 'nobody else to ring');
    return specs;
  }

  private userMissing(name: string): string {
    return this.byUser.has(name) ? `user '${name}' has no connection but the caller's` : `user '${name}' is not connected`;
  }

  private addDriverLeg(specs: LegSpec[], seen: Set<string>, scheme: string, uri: string): void {
    const driver = this.drivers.get(scheme);
    if (!driver) throw new ApiError('not_implemented', `calls to ${scheme}: destinations (no SIP user agent is configured)`);
    driver.check?.(uri);
    if (seen.has(uri)) return;
    seen.add(uri);
    specs.push({ kind: scheme, target: uri, user: '', driver });
  }

  // ---- calls ---------------------------------------------------------------------------------

  /**
   * Places a call from `party` (an API connection, or a SIP dialog for incoming SIP calls):
   * the caller's session is created with its offer, then every destination is rung. Resolves
   * with the call id and the caller's session id (and our answer, with `wait_reply`). `onCall`
   * gets the Call before it starts ringing, to follow its domain events.
   */
  async create(req: CallCreateRequest, party: CallParty, who: Caller, hooks: { onCall?(call: Call): void } = {}): Promise<CallStartResult> {
    if (req.backend !== undefined && req.backend !== BACKEND) throw new ApiError('unknown_backend');
    const id = req.call_id ?? `call-${randomUUID()}`;
    if (this.calls.has(id)) throw new ApiError('call_already_exists');
    const specs = this.resolve(req.callee, req.type, party.id);
    const call = new Call({
      sessions: this.sessions,
      log: this.log,
      inviteTimeoutMs: this.inviteTimeoutMs,
      removed: (c) => { if (this.calls.get(c.id) === c) this.calls.delete(c.id); },
    }, {
      id,
      callerSessionId: this.sessions.newId(),
      party,
      callerUser: who.user,
      callee: req.callee,
      calleeType: req.type,
      callerInfo: req.caller ?? {},
      ringTime: req.ring_time ?? DEFAULT_RING_TIME,
      meta: req.call_meta ?? req.meta,
      noOfferTrickleIce: req.no_offer_trickle_ice,
      noAnswerTrickleIce: req.no_answer_trickle_ice,
      trickleIceTimeout: req.trickle_ice_timeout,
      sdpType: req.sdp_type ?? 'webrtc',
    });
    this.calls.set(id, call);
    this.events.emit('call', call);
    hooks.onCall?.(call);
    return call.start(specs, req.offer, who, req.subscribe !== false, req.wait_reply === true);
  }

  /** The call if `who` may see it (its caller, a callee's user, an admin); else `call_not_found`. */
  get(id: string, who: { user: string; admin: boolean }): Call {
    const call = this.calls.get(id);
    if (!call || call.ended || !call.visibleTo(who)) throw new ApiError('call_not_found');
    return call;
  }

  lookup(id: string): Call | undefined { return this.calls.get(id); }

  /** The leg `connId` was rung on: `not_invited` for anyone else who may see the call. */
  legFor(call: Call, connId: string): Leg {
    const leg = call.legOf(connId);
    if (!leg) throw new ApiError('not_invited', call.party.id === connId ? 'you placed this call' : undefined);
    return leg;
  }

  list(who: { user: string; admin: boolean }): Call[] {
    return [...this.calls.values()].filter((c) => !c.ended && c.visibleTo(who));
  }

  /** Ends a call from outside the API (e.g. a SIP caller's BYE or CANCEL): `api_hangup`. */
  async hangup(id: string, reason?: string): Promise<void> {
    await this.calls.get(id)?.end('api_hangup', reason);
  }

  async endAll(term: ErrorTerm): Promise<void> {
    await Promise.all([...this.calls.values()].map((c) => c.end(term)));
  }
}
