// Calls: an INVITE dialog seen from either side. IncomingCall is the UAS of an INVITE we
// received, OutgoingCall the UAC of one we sent. Both handle BYE, re-INVITE (hold/resume,
// target refresh), INFO and OPTIONS inside the dialog. They deal in SDP strings only.
//
// Listener exceptions are caught and logged: they must never break SIP processing.

import { EventEmitter } from 'node:events';
import { makeResponse, mediaType, parseCSeq, REASONS, SipRequest, type SipMessage, type SipResponse } from './message.js';
import { dialogAsUac, dialogAsUas, inDialogRequest, refreshTarget, tagOf, type Dialog } from './dialog.js';
import { parseNameAddr, type NameAddr } from './uri.js';
import type { ClientTransaction, ServerTransaction } from './transaction.js';
import type { Destination, Source, TransportName } from './transport.js';
import type { SipLogger } from './log.js';

export interface RequestHandlers {
  onProvisional?(res: SipResponse): void;
  /** The final response; transaction timeouts and transport errors arrive as 408 / 503. */
  onFinal(res: SipResponse): void;
  /** INVITE only: further 2xx after the first (retransmissions or other forks). */
  onExtra2xx?(res: SipResponse): void;
  /** After a 401/407 the request is resent once with credentials: the new request. */
  onResend?(req: SipRequest, tx: ClientTransaction): void;
  /** The CSeq number for the authenticated resend. */
  nextCSeq(): number;
  /** Credentials to use instead of the UA's lookup (REGISTER). */
  credentials?: { username: string; password: string };
}

/** What calls need from the user agent. */
export interface CallHost {
  readonly t1: number;
  readonly logger: SipLogger;
  /** Sends `req` in a client transaction (adding a Via if it has none). */
  request(req: SipRequest, dest: Destination, h: RequestHandlers): ClientTransaction;
  /** Sends outside any transaction (ACK for 2xx, 2xx retransmissions); errors are logged. */
  sendStateless(msg: SipMessage, dest: Destination): void;
  /** Next hop of a request (first Route, else Request-URI). Throws on unusable URIs. */
  destinationFor(req: SipRequest, transport: TransportName): Destination;
  addVia(req: SipRequest, transport: TransportName): void;
  /** Our Contact header value for `transport` (user part default 'nkmedia'). */
  contact(transport: TransportName, user?: string): string;
  /** Adds User-Agent/Server, Allow and Supported. */
  decorate(msg: SipMessage): void;
  callEnded(call: { readonly key: string }): void;
}

export interface CallEnd { by: 'local' | 'remote' | 'error'; code?: number; reason?: string }

/**
 * Returns `p` after marking it handled: callers who await it still see the rejection, but one
 * nobody awaits must not take the process down as an unhandled rejection.
 */
function handled<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}

/** Answers a re-INVITE: an SDP (200 OK) or a failure code. Resolves with the ACK's SDP. */
export type ReinviteResponder = (answer: string | { code: number; reason?: string }) => Promise<string | undefined>;

interface CommonEvents {
  /** The peer hung up (BYE received and answered 200), or the dialog died (408/481). */
  bye: [];
  /** A re-INVITE: `sdp` is undefined when the peer asks us for an offer. */
  reinvite: [sdp: string | undefined, respond: ReinviteResponder];
  /** INFO inside the dialog (already answered 200), e.g. DTMF relay. */
  info: [body: string, contentType: string | undefined];
  /** Emitted once when the call is over for any reason. */
  ended: [end: CallEnd];
}

export interface IncomingCallEvents extends CommonEvents {
  /** The caller cancelled before the answer (the INVITE got 487). */
  cancel: [];
  /** Late offer: the SDP answer carried by the ACK. */
  answer: [sdp: string];
  /** Our 200 OK got no ACK within 64·T1; a BYE was sent. */
  'ack-timeout': [];
}

export interface OutgoingCallEvents extends CommonEvents {
  trying: [];
  ringing: [info: { code: number; reason: string; sdp?: string }];
  answer: [sdp: string];
  failed: [info: { code: number; reason: string }];
}

export class SipCallError extends Error {
  override name = 'SipCallError';
  constructor(message: string, readonly code?: number) { super(message); }
}

interface Pending2xx {
  seq: number;
  res: SipResponse;
  dest: Destination;
  interval: number;
  timer: NodeJS.Timeout;
  deadline: NodeJS.Timeout;
  resolve(ackSdp: string | undefined): void;
  reject(e: Error): void;
}

// The application has 64·T1 to answer a re-INVITE before we answer 500 for it.
const APP_REPLY_T1S = 64;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export abstract class SipCall<E extends CommonEvents & Record<keyof E, any[]> = CommonEvents> extends EventEmitter<E> {
  dialog?: Dialog;
  protected ended = false;
  /** Our re-INVITE in progress. */
  protected reinviting = false;
  /** The peer's re-INVITE not yet finished (answered and ACKed). */
  protected remoteReinvite?: ServerTransaction;
  protected pending2xx?: Pending2xx;
  private readonly timers = new Set<NodeJS.Timeout>();
  private endedResolve!: () => void;
  /** Resolves once the call has ended, for any reason. */
  readonly whenEnded = new Promise<void>((r) => { this.endedResolve = r; });

  constructor(protected readonly host: CallHost, readonly callId: string, readonly localTag: string, readonly transport: TransportName) {
    super();
  }

  /** Key the UA files this call under: Call-ID and our tag. */
  get key(): string { return `${this.callId}|${this.localTag}`; }
  get isEnded(): boolean { return this.ended; }

  protected fire(name: string, ...args: unknown[]): void {
    try {
      (this as unknown as EventEmitter).emit(name, ...args);
    } catch (e) {
      this.host.logger.warn({ callId: this.callId, event: name, err: e instanceof Error ? e.message : String(e) }, 'sip call listener threw');
    }
  }

  protected later(ms: number, f: () => void): NodeJS.Timeout {
    const t = setTimeout(() => { this.timers.delete(t); f(); }, ms);
    this.timers.add(t);
    return t;
  }

  protected cancelTimer(t: NodeJS.Timeout | undefined): void {
    if (!t) return;
    clearTimeout(t);
    this.timers.delete(t);
  }

  /** Ends the call once: clears every timer, tells the UA, emits 'ended'. */
  protected end(info: CallEnd): void {
    if (this.ended) return;
    this.ended = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    if (this.pending2xx) {
      const p = this.pending2xx;
      this.pending2xx = undefined;
      p.reject(new SipCallError('call ended before the ACK'));
    }
    if (this.remoteReinvite && !this.remoteReinvite.finalSent) this.remoteReinvite.reply(487);
    this.remoteReinvite = undefined;
    this.host.callEnded(this);
    this.endedResolve();
    this.fire('ended', info);
  }

  /** Drops all state without signalling (UA shutdown after its best effort). */
  abandon(): void {
    this.end({ by: 'local', reason: 'shutdown' });
  }

  // --- requests inside the dialog --------------------------------------------------------------

  /** A request (not ACK/CANCEL) the UA matched to this dialog. */
  onRequest(req: SipRequest, stx: ServerTransaction): void {
    const d = this.dialog;
    if (!d || this.ended) {
      stx.reply(481);
      return;
    }
    const seq = parseCSeq(req.get('CSeq') ?? '').seq;
    if (d.remoteSeq !== undefined && seq < d.remoteSeq) {
      stx.reply(500, 'CSeq out of order');
      return;
    }
    d.remoteSeq = seq;
    switch (req.method) {
      case 'BYE':
        stx.reply(200);
        this.end({ by: 'remote' });
        this.fire('bye');
        return;
      case 'INVITE':
        this.onReinvite(req, stx);
        return;
      case 'INFO':
        stx.reply(200);
        this.fire('info', req.body, req.get('Content-Type'));
        return;
      case 'OPTIONS': {
        const res = makeResponse(req, 200);
        this.host.decorate(res);
        res.add('Accept', 'application/sdp');
        stx.respond(res);
        return;
      }
      default:
        stx.reply(405, undefined, undefined, { Allow: 'INVITE, ACK, CANCEL, BYE, OPTIONS, INFO' });
    }
  }

  private onReinvite(req: SipRequest, stx: ServerTransaction): void {
    // §14.2: our own re-INVITE pending → 491; theirs still pending → 500 with Retry-After.
    if (this.reinviting) {
      stx.reply(491);
      return;
    }
    if (this.remoteReinvite || this.pending2xx) {
      stx.reply(500, 'Previous INVITE Pending', undefined, { 'Retry-After': String(Math.floor(Math.random() * 10)) });
      return;
    }
    if (req.body !== '' && mediaType(req.get('Content-Type')) !== 'application/sdp') {
      stx.reply(415, undefined, undefined, { Accept: 'application/sdp' });
      return;
    }
    if ((this as unknown as EventEmitter).listenerCount('reinvite') === 0) {
      stx.reply(488);
      return;
    }
    this.remoteReinvite = stx;
    const seq = parseCSeq(req.get('CSeq') ?? '').seq;
    // Nobody answering within 64·T1 must not leave the transaction open forever.
    const guard = this.later(APP_REPLY_T1S * this.host.t1, () => {
      if (!stx.finalSent) stx.reply(500, 'No Answer From Application');
      if (this.remoteReinvite === stx) this.remoteReinvite = undefined;
    });
    let used = false;
    const respond: ReinviteResponder = (answer) => handled(this.respondReinvite(req, stx, seq, guard, answer, () => {
      if (used) throw new SipCallError('re-INVITE already answered');
      used = true;
    }));
    this.fire('reinvite', req.body === '' ? undefined : req.body, respond);
  }

  private async respondReinvite(req: SipRequest, stx: ServerTransaction, seq: number, guard: NodeJS.Timeout,
    answer: string | { code: number; reason?: string }, once: () => void): Promise<string | undefined> {
    once();
    if (typeof answer !== 'string' && !(answer.code >= 300 && answer.code <= 699)) throw new RangeError('a re-INVITE failure needs a 3xx-6xx code');
    this.cancelTimer(guard);
    if (this.ended || stx.finalSent) throw new SipCallError('re-INVITE no longer pending');
    this.remoteReinvite = undefined;
    if (typeof answer !== 'string') {
      stx.reply(answer.code, answer.reason);
      return undefined;
    }
    refreshTarget(this.dialog!, req);
    const res = this.okWithSdp(req, answer);
    stx.respond(res);
    return this.retransmit2xx(res, stx.dest, seq);
  }

  /** A 200 OK to an INVITE of ours to answer, with Contact and SDP. */
  protected okWithSdp(req: SipRequest, sdp: string): SipResponse {
    const res = makeResponse(req, 200, undefined, this.localTag);
    for (const rr of req.getAll('Record-Route')) res.add('Record-Route', rr);
    res.add('Contact', this.host.contact(this.transport));
    this.host.decorate(res);
    res.add('Content-Type', 'application/sdp');
    res.body = sdp;
    return res;
  }

  /**
   * Retransmits our 2xx until the ACK (§13.3.1.4: T1 doubling up to T2). Resolves with the
   * ACK's SDP; after 64·T1 without ACK sends BYE, emits 'ack-timeout' and rejects.
   */
  protected retransmit2xx(res: SipResponse, dest: Destination, seq: number): Promise<string | undefined> {
    return new Promise((resolve, reject) => {
      const t1 = this.host.t1;
      const tick = (): void => {
        const p = this.pending2xx;
        if (!p) return;
        if (dest.transport === 'udp') this.host.sendStateless(p.res, p.dest);
        p.interval = Math.min(2 * p.interval, 8 * t1);
        p.timer = this.later(p.interval, tick);
      };
      const p: Pending2xx = {
        seq, res, dest, interval: t1,
        timer: this.later(t1, tick),
        deadline: this.later(64 * t1, () => {
          if (this.pending2xx !== p) return;
          this.cancelTimer(p.timer);
          this.pending2xx = undefined;
          this.host.logger.info({ callId: this.callId }, 'sip: no ACK for our 2xx, hanging up');
          this.sendBye();
          reject(new SipCallError('no ACK received', 408));
          this.fire('ack-timeout');
          this.end({ by: 'error', code: 408, reason: 'no ACK' });
        }),
        resolve, reject,
      };
      this.pending2xx = p;
    });
  }

  /** An ACK the UA matched to this dialog (2xx ACK: no transaction). */
  onAck(req: SipRequest): void {
    const p = this.pending2xx;
    if (!p) return;
    let seq: number;
    try {
      seq = parseCSeq(req.get('CSeq') ?? '').seq;
    } catch {
      return;
    }
    if (seq !== p.seq) return;
    this.cancelTimer(p.timer);
    this.cancelTimer(p.deadline);
    this.pending2xx = undefined;
    const sdpOk = req.body !== '' && (req.get('Content-Type') === undefined || mediaType(req.get('Content-Type')) === 'application/sdp');
    p.resolve(sdpOk ? req.body : undefined);
  }

  /** Sends BYE in the dialog (fire and forget). */
  protected sendBye(): Promise<void> {
    const d = this.dialog;
    if (!d) return Promise.resolve();
    return new Promise((resolve) => {
      try {
        const bye = inDialogRequest(d, 'BYE');
        this.host.decorate(bye);
        const dest = this.host.destinationFor(bye, d.transport);
        this.host.request(bye, dest, {
          onFinal: () => resolve(),
          nextCSeq: () => ++d.localSeq,
        });
      } catch (e) {
        this.host.logger.warn({ callId: this.callId, err: (e as Error).message }, 'sip: cannot send BYE');
        resolve();
      }
    });
  }

  /** Hangs up a confirmed call. Resolves when the BYE is answered (or timed out). */
  async bye(): Promise<void> {
    if (this.ended) return;
    const done = this.sendBye();
    this.end({ by: 'local' });
    await done;
  }

  /**
   * Sends a re-INVITE with a new offer (hold: a=sendonly, resume: a=sendrecv) and resolves
   * with the answer. Rejects with SipCallError(code) on failure; 408/481 end the call.
   */
  reinvite(sdp: string): Promise<string> {
    const d = this.dialog;
    if (!d || this.ended || !this.confirmed()) return handled(Promise.reject(new SipCallError('no confirmed dialog')));
    if (this.reinviting || this.remoteReinvite || this.pending2xx) return handled(Promise.reject(new SipCallError('another INVITE is in progress', 491)));
    this.reinviting = true;
    return handled(new Promise((resolve, reject) => {
      let req = inDialogRequest(d, 'INVITE');
      req.add('Contact', this.host.contact(d.transport));
      this.host.decorate(req);
      req.add('Content-Type', 'application/sdp');
      req.body = sdp;
      let dest: Destination;
      try {
        dest = this.host.destinationFor(req, d.transport);
      } catch (e) {
        this.reinviting = false;
        reject(e);
        return;
      }
      let ack: SipRequest | undefined;
      const sendAck = (res: SipResponse): void => {
        if (!ack) {
          const seq = parseCSeq(req.get('CSeq') ?? '').seq;
          ack = inDialogRequest(d, 'ACK', seq);
          for (const n of ['Authorization', 'Proxy-Authorization']) for (const v of req.getAll(n)) ack.add(n, v);
          this.host.addVia(ack, dest.transport);
        }
        if (tagOf(res.get('To')) === d.remoteTag) this.host.sendStateless(ack, this.host.destinationFor(ack, d.transport));
      };
      this.host.request(req, dest, {
        nextCSeq: () => ++d.localSeq,
        onResend: (r) => { req = r; },
        onExtra2xx: (res) => sendAck(res),
        onFinal: (res) => {
          this.reinviting = false;
          if (res.status >= 200 && res.status < 300) {
            sendAck(res);
            refreshTarget(d, res);
            if (res.body === '') {
              reject(new SipCallError('2xx to re-INVITE without SDP', 488));
              return;
            }
            resolve(res.body);
            return;
          }
          reject(new SipCallError(`re-INVITE failed: ${res.status} ${res.reason}`, res.status));
          if (res.status === 481 || res.status === 408) {
            // §14.1: the dialog is gone (481) or unreachable (408).
            if (res.status === 408) void this.sendBye();
            this.end({ by: 'error', code: res.status, reason: res.reason });
            this.fire('bye');
          }
        },
      });
    }));
  }

  protected abstract confirmed(): boolean;
}

// ---------------------------------------------------------------------------------------------

export class IncomingCall extends SipCall<IncomingCallEvents> {
  readonly from: NameAddr;
  readonly to: NameAddr;
  readonly requestUri: string;
  /** Where the INVITE came from (transport, IP, port). */
  readonly remote: Source;
  /** The SDP offer, or undefined for a late offer (then accept() sends ours). */
  readonly offer: string | undefined;
  private state: 'incoming' | 'answering' | 'confirmed' | 'ended' = 'incoming';
  private hangupAfterAck = false;

  constructor(host: CallHost, private readonly invite: SipRequest, private readonly stx: ServerTransaction, src: Source, localTag: string) {
    super(host, invite.get('Call-ID') ?? '', localTag, src.transport);
    this.from = parseNameAddr(invite.get('From') ?? '');
    this.to = parseNameAddr(invite.get('To') ?? '');
    this.requestUri = invite.uri;
    this.remote = { ...src };
    this.offer = invite.body === '' ? undefined : invite.body;
    this.dialog = dialogAsUas(invite, localTag, src.transport);
  }

  /** A header of the INVITE (first value), any case or compact form. */
  headers(name: string): string | undefined {
    return this.invite.get(name);
  }

  protected confirmed(): boolean { return this.state === 'confirmed'; }

  override onRequest(req: SipRequest, stx: ServerTransaction): void {
    if (this.state === 'incoming' && req.method === 'BYE') {
      // §15: a caller may end an early dialog with BYE; the INVITE then gets 487.
      stx.reply(200);
      this.onCancel();
      return;
    }
    if (req.method === 'INVITE' && this.state !== 'confirmed') {
      stx.reply(491);
      return;
    }
    super.onRequest(req, stx);
  }

  /**
   * The ACK for our 200 confirms the dialog at once, not a promise turn later: a request right
   * behind it in the same TCP read (a re-INVITE) must find the call confirmed, not get 491.
   */
  override onAck(req: SipRequest): void {
    const waiting = this.state === 'answering' && this.pending2xx !== undefined;
    super.onAck(req);
    if (waiting && this.pending2xx === undefined && !this.ended) this.state = 'confirmed';
  }

  /** Whether `stx` is this call's INVITE transaction (CANCEL matching). */
  isInvite(stx: ServerTransaction): boolean { return stx === this.stx; }

  /** Sends 180 Ringing (creates the early dialog). */
  ringing(): void {
    if (this.state !== 'incoming') return;
    const res = makeResponse(this.invite, 180, undefined, this.localTag);
    for (const rr of this.invite.getAll('Record-Route')) res.add('Record-Route', rr);
    res.add('Contact', this.host.contact(this.transport));
    this.host.decorate(res);
    this.stx.respond(res);
  }

  /**
   * Answers with 200 OK carrying `sdp` (our answer, or our offer for a late-offer INVITE).
   * Resolves on the ACK, with the ACK's SDP for a late offer; rejects when no ACK comes within
   * 64·T1 (then BYE is sent and 'ack-timeout' emitted) or when the call is no longer pending.
   */
  accept(sdp: string): Promise<string | undefined> {
    if (this.state !== 'incoming' || this.ended) return handled(Promise.reject(new SipCallError('call is not pending')));
    this.state = 'answering';
    const res = this.okWithSdp(this.invite, sdp);
    this.stx.respond(res);
    const seq = parseCSeq(this.invite.get('CSeq') ?? '').seq;
    return handled(this.retransmit2xx(res, this.stx.dest, seq).then((ackSdp) => {
      if (this.state === 'answering') this.state = 'confirmed';
      if (this.offer === undefined) {
        if (ackSdp === undefined) {
          void this.bye();
          throw new SipCallError('late offer: the ACK carried no SDP answer', 488);
        }
        this.fire('answer', ackSdp);
      }
      if (this.hangupAfterAck) void this.bye();
      return ackSdp;
    }, (e: unknown) => {
      this.state = 'ended';
      throw e;
    }));
  }

  /** Rejects the call with a final non-2xx response (default 486 Busy Here). */
  reject(code = 486, reason?: string, headers?: Record<string, string>): void {
    if (this.state !== 'incoming') return;
    if (code < 300 || code > 699) throw new RangeError('reject() needs a 3xx-6xx code');
    this.state = 'ended';
    this.stx.reply(code, reason ?? REASONS[code], this.localTag, headers);
    this.end({ by: 'local', code, ...(reason ? { reason } : {}) });
  }

  /** The UA answered a matching CANCEL with 200: the INVITE gets 487. */
  onCancel(): void {
    if (this.state !== 'incoming') return;
    this.state = 'ended';
    this.stx.reply(487, undefined, this.localTag);
    this.end({ by: 'remote', code: 487, reason: 'cancelled' });
    this.fire('cancel');
  }

  /** Hangs up: BYE once confirmed (after the ACK if it is still due), else 603 Decline. */
  override async bye(): Promise<void> {
    if (this.state === 'incoming') {
      this.reject(603);
      return;
    }
    if (this.state === 'answering') {
      // §15: no BYE before the ACK (or its timeout, which sends BYE itself).
      this.hangupAfterAck = true;
      await this.whenEnded;
      return;
    }
    this.state = 'ended';
    await super.bye();
  }

  override abandon(): void {
    if (this.state === 'incoming' && !this.stx.finalSent) this.stx.reply(480, undefined, this.localTag);
    this.state = 'ended';
    super.abandon();
  }
}

// ---------------------------------------------------------------------------------------------

export class OutgoingCall extends SipCall<OutgoingCallEvents> {
  private state: 'calling' | 'early' | 'confirmed' | 'ended' = 'calling';
  private invite: SipRequest;
  private tx?: ClientTransaction;
  private dest?: Destination;
  private gotProvisional = false;
  private cancelRequested = false;
  private cancelSent = false;
  private failOverride?: { code: number; reason: string };
  private ack?: SipRequest;
  private answerTimer?: NodeJS.Timeout;

  constructor(host: CallHost, invite: SipRequest, transport: TransportName, private readonly timeoutMs: number) {
    super(host, invite.get('Call-ID') ?? '', tagOf(invite.get('From')) ?? '', transport);
    this.invite = invite;
  }

  protected confirmed(): boolean { return this.state === 'confirmed'; }

  /** Sends the INVITE (called by the UA right after construction). */
  start(): void {
    try {
      this.dest = this.host.destinationFor(this.invite, this.transport);
    } catch (e) {
      this.failLater(503, (e as Error).message);
      return;
    }
    this.answerTimer = this.later(this.timeoutMs, () => {
      this.failOverride = { code: 408, reason: 'No Answer' };
      this.cancel();
    });
    let seq = parseCSeq(this.invite.get('CSeq') ?? '').seq;
    this.tx = this.host.request(this.invite, this.dest, {
      nextCSeq: () => ++seq,
      onResend: (req, tx) => {
        this.invite = req;
        this.tx = tx;
        this.gotProvisional = false;
        this.cancelSent = false;
      },
      onProvisional: (res) => this.onProvisional(res),
      onFinal: (res) => this.onFinal(res),
      onExtra2xx: (res) => this.on2xx(res),
    });
  }

  private failLater(code: number, reason: string): void {
    // Listeners attach after invite() returns: report on a later turn.
    this.later(0, () => this.fail(code, reason));
  }

  private fail(code: number, reason: string): void {
    if (this.ended) return;
    const f = this.failOverride ?? { code, reason };
    this.state = 'ended';
    this.end({ by: 'error', ...f });
    this.fire('failed', f);
  }

  private onProvisional(res: SipResponse): void {
    if (this.state === 'ended') return;
    this.gotProvisional = true;
    if (res.status === 100) {
      this.fire('trying');
    } else {
      this.state = 'early';
      this.fire('ringing', { code: res.status, reason: res.reason, ...(res.body !== '' ? { sdp: res.body } : {}) });
    }
    if (this.cancelRequested) this.sendCancel();
  }

  private onFinal(res: SipResponse): void {
    if (res.status >= 200 && res.status < 300) {
      this.on2xx(res);
      return;
    }
    this.fail(res.status, res.reason);
  }

  /** Any 2xx: the first confirms the dialog, repeats are re-ACKed, other forks are hung up. */
  on2xx(res: SipResponse): void {
    const remoteTag = tagOf(res.get('To'));
    if (this.dialog && this.state !== 'calling' && this.state !== 'early') {
      if (remoteTag === this.dialog.remoteTag) {
        if (this.ack) this.host.sendStateless(this.ack, this.host.destinationFor(this.ack, this.dialog.transport));
      } else {
        this.hangUpFork(res);
      }
      return;
    }
    if (this.ended) {
      this.hangUpFork(res);
      return;
    }
    const d = dialogAsUac(this.invite, res, this.transport);
    this.dialog = d;
    this.ack = inDialogRequest(d, 'ACK', d.localSeq);
    for (const n of ['Authorization', 'Proxy-Authorization']) for (const v of this.invite.getAll(n)) this.ack.add(n, v);
    this.host.addVia(this.ack, this.transport);
    try {
      this.host.sendStateless(this.ack, this.host.destinationFor(this.ack, this.transport));
    } catch (e) {
      this.host.logger.warn({ callId: this.callId, err: (e as Error).message }, 'sip: cannot send ACK');
    }
    this.cancelTimer(this.answerTimer);
    if (this.cancelRequested) {
      // The 200 crossed our CANCEL: the call exists now, so ACK (done) and hang up.
      this.state = 'confirmed';
      void this.bye();
      this.fireFailedAfterEnd(this.failOverride ?? { code: 487, reason: 'Request Terminated' });
      return;
    }
    if (res.body === '' || (res.has('Content-Type') && mediaType(res.get('Content-Type')) !== 'application/sdp')) {
      this.state = 'confirmed';
      void this.bye();
      this.fireFailedAfterEnd({ code: 488, reason: 'No SDP answer in 2xx' });
      return;
    }
    this.state = 'confirmed';
    this.fire('answer', res.body);
  }

  private fireFailedAfterEnd(f: { code: number; reason: string }): void {
    this.fire('failed', f);
  }

  /** ACK and BYE for a dialog we do not want (a second fork's 2xx, or one after giving up). */
  private hangUpFork(res: SipResponse): void {
    try {
      const d = dialogAsUac(this.invite, res, this.transport);
      const ack = inDialogRequest(d, 'ACK', d.localSeq);
      this.host.addVia(ack, this.transport);
      this.host.sendStateless(ack, this.host.destinationFor(ack, this.transport));
      const bye = inDialogRequest(d, 'BYE');
      this.host.decorate(bye);
      this.host.request(bye, this.host.destinationFor(bye, this.transport), { onFinal: () => undefined, nextCSeq: () => ++d.localSeq });
    } catch (e) {
      this.host.logger.debug({ callId: this.callId, err: (e as Error).message }, 'sip: cannot hang up extra dialog');
    }
  }

  /**
   * Cancels the call before the final response. CANCEL goes out once a provisional response
   * arrived (§9.1); a 200 that crosses it is ACKed and hung up. After the answer: bye().
   */
  cancel(): void {
    if (this.state === 'confirmed') {
      void this.bye();
      return;
    }
    if (this.ended || this.cancelRequested) return;
    this.cancelRequested = true;
    if (!this.tx) {
      this.fail(487, 'Request Terminated');
      return;
    }
    if (this.gotProvisional) this.sendCancel();
    // §9.1: without a final response 64·T1 after CANCEL, give up on the INVITE.
    this.later(64 * this.host.t1, () => {
      this.tx?.terminate();
      this.fail(487, 'Request Terminated');
    });
  }

  private sendCancel(): void {
    if (this.cancelSent || !this.dest) return;
    this.cancelSent = true;
    const inv = this.invite;
    const c = new SipRequest('CANCEL', inv.uri);
    c.add('Via', inv.getAll('Via')[0] ?? '');
    c.add('Max-Forwards', '70');
    for (const r of inv.getAll('Route')) c.add('Route', r);
    for (const n of ['From', 'To', 'Call-ID']) c.add(n, inv.get(n) ?? '');
    c.add('CSeq', `${parseCSeq(inv.get('CSeq') ?? '').seq} CANCEL`);
    this.host.decorate(c);
    this.host.request(c, this.dest, { onFinal: () => undefined, nextCSeq: () => 0 });
  }

  /** Hangs up: BYE after the answer, CANCEL before it. */
  override async bye(): Promise<void> {
    if (this.state === 'calling' || this.state === 'early') {
      this.cancel();
      await this.whenEnded;
      return;
    }
    this.state = 'ended';
    await super.bye();
  }

  override abandon(): void {
    this.tx?.terminate();
    this.state = 'ended';
    super.abandon();
  }
}
