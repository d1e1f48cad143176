// Where SIP meets sessions and calls: incoming INVITEs become echo or park sessions or calls to
// a user's API connections; `sip:` destinations of calls become outgoing INVITEs. Each SIP
// dialog is tied to one plain-RTP session (sdp_type "rtp"); either ending ends the other.
import type { Logger } from 'pino';
import { SipUserAgent, type IncomingCall, type ReinviteResponder } from '../sip/index.js';
import { parseUri, SipUriError } from '../sip/uri.js';
import { ApiError, toApiError, type ErrorTerm } from '../protocol/errors.js';
import type { SessionManager } from '../core/sessions/manager.js';
import type { Session } from '../core/sessions/session.js';
import type { CallManager } from '../core/calls/manager.js';
import type { Call } from '../core/calls/call.js';
import type { CallDestinationDriver, CallParty, LegControl, OutgoingLeg } from '../core/calls/types.js';
import type { Config } from '../config.js';
import { systemUser } from '../util/principals.js';

type SipConfig = Config['sip'];

/**
 * Sessions created for SIP dialogs belong to this system principal: shown as `sip`, but no login
 * (not even a user called "sip") can claim it; admins see them.
 */
export const SIP_USER = systemUser('sip');

/** SIP response for a call that ended before it was answered, by the NkMEDIA reason code. */
function failureResponse(term: ErrorTerm): { code: number; reason: string } {
  switch (term) {
    case 'call_rejected': return { code: 603, reason: 'Declined' };
    case 'no_answer': return { code: 480, reason: 'No Answer' };
    case 'no_destination': return { code: 404, reason: 'Not Found' };
    case 'timeout': return { code: 408, reason: 'Request Timeout' };
    default: return { code: 480, reason: 'Temporarily Unavailable' };
  }
}

export class SipGateway implements CallDestinationDriver {
  readonly schemes = ['sip', 'sips'] as const;
  readonly sdpType = 'rtp' as const;
  private seq = 0;
  private closing = false;

  private constructor(
    readonly ua: SipUserAgent,
    private readonly cfg: SipConfig,
    private readonly sessions: SessionManager,
    private readonly calls: CallManager,
    private readonly log: Logger,
  ) {
    // The promise goes back to the UA, which rejects the call (500) should it ever fail.
    ua.onInvite((call) => this.incoming(call));
    calls.registerDriver(this);
  }

  static async start(cfg: SipConfig, sessions: SessionManager, calls: CallManager, log: Logger): Promise<SipGateway | undefined> {
    if (cfg.udp_port === undefined && cfg.tcp_port === undefined) return undefined;
    const ua = await SipUserAgent.start({
      udp: cfg.udp_port !== undefined ? { host: cfg.host, port: cfg.udp_port } : undefined,
      tcp: cfg.tcp_port !== undefined ? { host: cfg.host, port: cfg.tcp_port } : undefined,
      publicHost: cfg.public_host,
      t1Ms: cfg.t1_ms,
      maxDialogs: cfg.max_dialogs,
      maxDialogsPerAddress: cfg.max_dialogs_per_address,
      register: cfg.register,
      credentials: (realm) => {
        const c = cfg.credentials.find((x) => x.realm === undefined || x.realm === realm);
        return c ? { username: c.username, password: c.password } : undefined;
      },
      logger: log.child({ layer: 'sip' }),
    });
    const gw = new SipGateway(ua, cfg, sessions, calls, log);
    log.info({ sip: ua.addresses() }, 'SIP listening');
    return gw;
  }

  addresses(): ReturnType<SipUserAgent['addresses']> { return this.ua.addresses(); }

  async close(): Promise<void> {
    this.closing = true;
    await this.ua.close();
  }

  private owner(callId: string): { user: string; connId: string } {
    return { user: SIP_USER, connId: `sip-${callId}` };
  }

  // ---- incoming INVITEs ----------------------------------------------------------------------

  private async incoming(call: IncomingCall): Promise<void> {
    let user: string | undefined;
    try {
      const raw = parseUri(call.requestUri).user;
      user = raw ? decodeURIComponent(raw) : undefined;
    } catch {
      // Not a SIP URI, or a user part whose %-escapes are not UTF-8 (sip:%E0@…): nobody here.
      // (decodeURIComponent used to throw outside any catch: one INVITE took the server down.)
      user = undefined;
    }
    this.log.info({ sip_call: call.callId, to: call.requestUri, from: call.from.uri }, 'SIP INVITE');
    if (this.closing) { call.reject(503, 'Shutting Down'); return; }
    if (!user) { call.reject(404, 'Not Found'); return; }
    try {
      if (user === this.cfg.echo_user || user === this.cfg.park_user) await this.toSession(call, user === this.cfg.echo_user ? 'echo' : 'park');
      else if (this.cfg.calls_to_users) await this.toUser(call, user);
      else call.reject(404, 'Not Found');
    } catch (err) {
      const e = toApiError(err);
      this.log.info({ sip_call: call.callId, err: e.message }, 'SIP INVITE refused');
      // Out of capacity is temporary: the phone may try again later (RFC 3261 §21.5.4).
      if (e.term === 'too_many_sessions' || e.term === 'out_of_resources') call.reject(503, 'Too Many Calls', { 'Retry-After': '30' });
      else call.reject(e.term === 'invalid_sdp' ? 488 : e.term === 'no_destination' || e.term === 'user_not_found' ? 404 : 500, e.message.slice(0, 120));
    }
  }

  /** An echo or park session answering the INVITE (late offers get our offer in the 200). */
  private async toSession(call: IncomingCall, type: 'echo' | 'park'): Promise<void> {
    const id = this.sessions.newId();
    const owner = this.owner(call.callId);
    const caller = { user: SIP_USER, admin: false, connId: owner.connId };
    const base = { type, session_meta: { sip_call_id: call.callId, sip_from: call.from.uri } };
    const reply = call.offer !== undefined
      ? await this.sessions.create({ ...base, offer: { sdp: call.offer, sdp_type: 'rtp' }, wait_reply: true }, caller, id, owner)
      : await this.sessions.create({ ...base, sdp_type: 'rtp', wait_reply: true }, caller, id, owner);
    const session = this.sessions.lookup(reply.session_id)!;
    this.tie(call, session);
    const ourSdp = (reply.answer ?? reply.offer)!.sdp;
    try {
      const ackSdp = await call.accept(ourSdp);
      if (call.offer === undefined) {
        if (!ackSdp) throw new ApiError('missing_sdp', 'late offer: the ACK carried no answer');
        await session.setAnswer({ sdp: ackSdp, sdp_type: 'rtp' });
      }
    } catch (err) {
      await session.stop('session_failed', `SIP: ${(err as Error).message}`);
    }
  }

  /** Ties a dialog and a session: either ending ends the other; re-INVITEs re-offer. */
  private tie(call: IncomingCall, session: Session): void {
    let over = false;
    call.on('reinvite', (sdp, respond) => { void this.reinvite(session, sdp, respond); });
    call.once('ended', (end) => {
      over = true;
      void session.stop('user_stop', end.by === 'remote' ? 'SIP BYE' : `SIP ${end.code ?? ''} ${end.reason ?? ''}`.trim());
    });
    void session.whenStopped.then(() => { if (!over) void call.bye().catch(() => undefined); }, () => undefined);
  }

  private async reinvite(session: Session, sdp: string | undefined, respond: ReinviteResponder): Promise<void> {
    if (sdp === undefined) {
      // An offerless re-INVITE asks for our offer; re-offering ours is not supported here.
      await respond({ code: 488, reason: 'Offerless re-INVITE not supported' }).catch(() => undefined);
      return;
    }
    try {
      const answer = await session.reoffer(sdp);
      await respond(answer);
    } catch (err) {
      this.log.info({ session: session.id, err: String(err) }, 're-INVITE refused');
      await respond({ code: 488, reason: 'Not Acceptable Here' }).catch(() => undefined);
    }
  }

  /**
   * A call to a user's API connections (docs/API.md §12): the phone is the caller. It hears ringing
   * while they ring, gets its 200 when one accepts, a failure response otherwise.
   */
  private async toUser(call: IncomingCall, user: string): Promise<void> {
    if (call.offer === undefined) { call.reject(488, 'Calls to users need an SDP offer in the INVITE'); return; }
    const partyId = `sip-${call.callId}-${++this.seq}`;
    let callId: string | undefined;
    let answer: string | undefined;
    let answered = false;
    let finished = false;
    const finish = (term: ErrorTerm): void => {
      if (finished) return;
      finished = true;
      if (answered) void call.bye().catch(() => undefined);
      else { const r = failureResponse(term); call.reject(r.code, r.reason); }
    };
    // The phone is the call's party: it follows the call through its domain events (below), so
    // what the call tells its caller (our answer, in the create's reply) needs no other path.
    const party: CallParty = { id: partyId, notify: () => undefined, follow: () => undefined };
    const follow = (c: Call): void => {
      c.events.on('ringing', () => call.ringing());
      c.events.on('accepted', () => {
        if (!answer || answered || finished) return;
        answered = true;
        call.accept(answer).catch(() => { if (callId) void this.calls.hangup(callId, 'SIP: no ACK'); });
      });
      c.events.on('hangup', (cause) => finish(cause.term));
    };
    call.once('cancel', () => { finished = true; if (callId) void this.calls.hangup(callId, 'SIP CANCEL'); });
    call.once('ended', () => { if (!finished && callId) { finished = true; void this.calls.hangup(callId, 'SIP BYE'); } });
    call.on('reinvite', (sdp, respond) => {
      const s = result?.session_id ? this.sessions.lookup(result.session_id) : undefined;
      if (s) void this.reinvite(s, sdp, respond);
      else void respond({ code: 491, reason: 'Request Pending' }).catch(() => undefined);
    });
    let result: { call_id: string; session_id: string; answer?: { sdp: string } } | undefined;
    result = await this.calls.create({
      callee: user,
      type: 'user',
      offer: { sdp: call.offer, sdp_type: 'rtp' },
      wait_reply: true,
      caller: { sip_from: call.from.uri, ...(call.from.display ? { display: call.from.display } : {}) },
    }, party, { user: SIP_USER, admin: false, connId: partyId }, { onCall: follow });
    callId = result.call_id;
    answer = result.answer?.sdp;
    call.ringing();
  }

  // ---- outgoing INVITEs (call legs to sip: destinations) -------------------------------------

  check(uri: string): void {
    try {
      parseUri(uri);
    } catch (err) {
      throw new ApiError('invalid_uri', err instanceof SipUriError ? err.message : String(err));
    }
  }

  legOwner(uri: string): { user: string; connId: string } {
    return { user: SIP_USER, connId: `sip-out-${uri}` };
  }

  invite(uri: string, leg: OutgoingLeg): LegControl {
    const out = this.ua.invite(uri, leg.offer.sdp, { from: leg.callerUser && /^[\w.+-]+$/.test(leg.callerUser) ? leg.callerUser : this.cfg.from_user });
    let answered = false;
    let over = false;
    out.on('ringing', () => leg.ringing({ sip_uri: uri }));
    out.once('answer', (sdp) => {
      answered = true;
      leg.accept({ sdp, sdp_type: 'rtp' }, { sip_uri: uri }).catch((err) => {
        this.log.info({ uri, err: String(err) }, 'SIP answer not taken');
        void out.bye().catch(() => undefined);
      });
    });
    out.once('failed', ({ code, reason }) => { over = true; leg.reject(`SIP ${code} ${reason}`); });
    out.on('reinvite', (sdp, respond) => {
      const s = this.sessions.lookup(leg.sessionId);
      if (s) void this.reinvite(s, sdp, respond);
      else void respond({ code: 481, reason: 'Call Does Not Exist' }).catch(() => undefined);
    });
    out.once('ended', (end) => {
      if (over) return;
      over = true;
      if (answered) leg.hangup(end.by === 'remote' ? 'SIP BYE' : `SIP ${end.code ?? ''} ${end.reason ?? ''}`.trim());
    });
    return {
      end: (_reason, wasAnswered) => {
        if (over) return;
        over = true;
        if (wasAnswered || answered) void out.bye().catch(() => undefined);
        else out.cancel();
      },
    };
  }
}
