// The SIP user agent: receives and validates requests (RFC 3261 §8.2), routes them to
// transactions, calls and registrations, and sends INVITEs. It knows SIP messages and SDP
// strings only — nothing of media engines or sessions.

import { randomBytes } from 'node:crypto';
import { networkInterfaces } from 'node:os';
import net from 'node:net';
import {
  formatVia, makeResponse, mediaType, parseCSeq, parseUint, parseVia, SipRequest,
  type SipMessage, type SipParseError, type SipResponse, type Via,
} from './message.js';
import { authorization, pickChallenge } from './digest.js';
import { nextHopUri, tagOf } from './dialog.js';
import { IncomingCall, OutgoingCall, type CallHost, type RequestHandlers } from './call.js';
import { Registration, type RegisterConfig, type RegistrationStatus } from './registration.js';
import { MAGIC_COOKIE, TransactionLayer, type ClientTransaction, type ServerTransaction } from './transaction.js';
import { SipTransport, type Destination, type Source, type TransportName } from './transport.js';
import { formatNameAddr, parseNameAddr, parseUri, uriHost, SipUriError, type NameAddr } from './uri.js';
import { silentLogger, type SipLogger } from './log.js';

export interface SipUserAgentOptions {
  /** Listen on UDP (port 0: ephemeral). At least one of udp/tcp is required. */
  udp?: { host: string; port: number };
  /** Listen on TCP (port 0: ephemeral). */
  tcp?: { host: string; port: number };
  /** Host written in Via and Contact (default: the bound host; for 0.0.0.0 the first external IPv4). */
  publicHost?: string;
  /** User-Agent / Server header (default 'nkmedia-ts'). */
  userAgent?: string;
  /** RFC 3261 T1 in ms (default 500); every timer scales with it. */
  t1Ms?: number;
  /** Credentials for 401/407 challenges to our requests. */
  credentials?: (realm: string, targetUri: string) => { username: string; password: string } | undefined;
  /** Bindings to keep registered (refreshed before expiry, removed on close). */
  register?: RegisterConfig[];
  /** pino-compatible logger (default: silent). */
  logger?: SipLogger;
  /** Largest message accepted (default 64 KiB). */
  maxMessageBytes?: number;
  /** Incoming dialogs at once (default unlimited); more INVITEs get 503 with Retry-After. */
  maxDialogs?: number;
  /** Incoming dialogs at once from one source address (default unlimited). */
  maxDialogsPerAddress?: number;
}

/** Seconds a refused INVITE is told to wait (Retry-After of our 503s). */
const RETRY_AFTER_S = 30;

export interface InviteOptions {
  /** Our identity: a user part ('alice'), a URI ('sip:alice@example.com') or a name-addr. */
  from?: string;
  /** Transport when the target URI has no ;transport= (default: UDP if listening on UDP). */
  transport?: TransportName;
  /** Extra headers for the INVITE (core headers such as Via, From, To, CSeq are refused). */
  headers?: Record<string, string>;
  /** Give up (CANCEL, 'failed' 408) when not answered within this (default 180 000 ms). */
  timeoutMs?: number;
}

const ALLOW = 'INVITE, ACK, CANCEL, BYE, OPTIONS, INFO';
// Methods we recognise but do not serve (405 with Allow); anything else unknown is 501.
const KNOWN_UNSUPPORTED = new Set(['REGISTER', 'SUBSCRIBE', 'NOTIFY', 'REFER', 'MESSAGE', 'UPDATE', 'PRACK', 'PUBLISH']);
const IN_DIALOG_ONLY = new Set(['BYE', 'INFO']);
const RESERVED_HEADERS = new Set(['via', 'v', 'from', 'f', 'to', 't', 'call-id', 'i', 'cseq', 'max-forwards',
  'contact', 'm', 'content-length', 'l', 'content-type', 'c', 'route', 'record-route']);

function rand(bytes: number): string {
  return randomBytes(bytes).toString('hex');
}

/** Where responses to a request go (§18.2.2, RFC 3581 rport). Always an IP: no DNS. */
export function responseDestination(via: Via, src: Source): Destination {
  if (src.transport === 'tcp') {
    const d: Destination = { transport: 'tcp', host: src.host, port: via.port ?? 5060 };
    if (src.connId !== undefined) d.connId = src.connId;
    return d;
  }
  if (via.params.has('rport')) return { transport: 'udp', host: src.host, port: src.port };
  return { transport: 'udp', host: src.host, port: via.port ?? 5060 };
}

export class SipUserAgent implements CallHost {
  readonly t1: number;
  readonly logger: SipLogger;
  private transport!: SipTransport;
  private readonly tx: TransactionLayer;
  private readonly calls = new Map<string, IncomingCall | OutgoingCall>();
  /** Incoming dialogs by call key → source address, and their count per address. */
  private readonly incoming = new Map<string, string>();
  private readonly incomingByAddress = new Map<string, number>();
  private readonly regs: Registration[] = [];
  private handler?: (call: IncomingCall) => void | Promise<void>;
  private host = '127.0.0.1';
  private closing = false;
  private closed?: Promise<void>;

  private constructor(private readonly opts: SipUserAgentOptions) {
    this.t1 = opts.t1Ms ?? 500;
    this.logger = opts.logger ?? silentLogger;
    this.tx = new TransactionLayer({ t1: this.t1, logger: this.logger, send: (m, d) => this.transport.send(m, d) });
  }

  static async start(opts: SipUserAgentOptions): Promise<SipUserAgent> {
    if (!opts.udp && !opts.tcp) throw new Error('SipUserAgent needs a udp or tcp listener');
    if (opts.t1Ms !== undefined && !(opts.t1Ms >= 1)) throw new Error('t1Ms must be >= 1');
    const ua = new SipUserAgent(opts);
    ua.transport = await SipTransport.start({
      ...(opts.udp ? { udp: opts.udp } : {}),
      ...(opts.tcp ? { tcp: opts.tcp } : {}),
      maxMessageBytes: opts.maxMessageBytes ?? 65536,
      logger: ua.logger,
      onMessage: (m, s) => ua.onMessage(m, s),
      onBadMessage: (e, s) => ua.onBadMessage(e, s),
    });
    ua.host = uriHost(opts.publicHost ?? defaultHost(opts.udp?.host ?? opts.tcp!.host));
    try {
      for (const r of opts.register ?? []) ua.regs.push(new Registration(ua, r, ua.defaultTransport(r.registrar)));
    } catch (e) {
      await ua.transport.close();
      throw e;
    }
    for (const r of ua.regs) r.start();
    return ua;
  }

  addresses(): { udp?: { host: string; port: number }; tcp?: { host: string; port: number } } {
    return this.transport.addresses();
  }

  /**
   * Handler for new incoming calls; without one, INVITEs are answered 480. A handler that
   * throws (or returns a promise that rejects) has its call rejected with 500 if still pending.
   */
  onInvite(handler: (call: IncomingCall) => void | Promise<void>): void {
    this.handler = handler;
  }

  registrations(): RegistrationStatus[] {
    return this.regs.map((r) => r.status());
  }

  counters(): { transactions: number; dialogs: number; sockets: number } {
    return { transactions: this.tx.count, dialogs: this.calls.size, sockets: this.transport.socketCount() };
  }

  /**
   * Calls `target` (a sip: URI or name-addr) with the SDP offer `sdp`. Returns at once; the call
   * reports 'trying', 'ringing', 'answer' or 'failed'. Throws on unusable targets or options.
   */
  invite(target: string, sdp: string, opts: InviteOptions = {}): OutgoingCall {
    if (this.closing) throw new Error('SipUserAgent is closed');
    if (sdp.trim() === '') throw new Error('invite() needs an SDP offer');
    const to = target.includes('<') ? parseNameAddr(target) : { uri: target.trim(), params: new Map<string, string | null>() };
    parseUri(to.uri);
    to.params.delete('tag');
    const req = new SipRequest('INVITE', to.uri);
    const transport = this.defaultTransport(to.uri, opts.transport);
    const from = this.fromAddress(opts.from);
    from.params.set('tag', rand(8));
    req.add('Max-Forwards', '70');
    req.add('From', formatNameAddr(from));
    req.add('To', formatNameAddr(to));
    req.add('Call-ID', `${rand(12)}@${this.host}`);
    req.add('CSeq', `${1 + Math.floor(Math.random() * 10000)} INVITE`);
    for (const [k, v] of Object.entries(opts.headers ?? {})) {
      if (RESERVED_HEADERS.has(k.toLowerCase())) throw new Error(`header ${k} cannot be set`);
      if (/[\r\n]/.test(k + v)) throw new Error('header names and values cannot contain line breaks');
      req.add(k, v);
    }
    const dest = this.destinationFor(req, transport);
    req.add('Contact', this.contact(dest.transport));
    this.decorate(req);
    req.add('Content-Type', 'application/sdp');
    req.body = sdp;
    const call = new OutgoingCall(this, req, dest.transport, opts.timeoutMs ?? 180_000);
    this.calls.set(call.key, call);
    call.start();
    return call;
  }

  /** Hangs up or cancels every call, removes registrations, closes sockets, clears timers. */
  close(): Promise<void> {
    this.closed ??= this.doClose();
    return this.closed;
  }

  private async doClose(): Promise<void> {
    this.closing = true;
    const waits: Promise<unknown>[] = [];
    for (const call of [...this.calls.values()]) waits.push(call.bye().catch(() => undefined));
    for (const r of this.regs) waits.push(r.stop());
    // Best effort, bounded: a peer that never answers must not hold shutdown for 32 s.
    let cap: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(waits),
      new Promise<void>((r) => { cap = setTimeout(r, Math.min(64 * this.t1, 4000)); }),
    ]);
    clearTimeout(cap);
    for (const call of [...this.calls.values()]) call.abandon();
    this.tx.closeAll();
    await this.transport.close();
  }

  // --- CallHost ------------------------------------------------------------------------------

  request(req: SipRequest, dest: Destination, h: RequestHandlers): ClientTransaction {
    if (!req.has('Via')) this.addVia(req, dest.transport);
    const run = (r: SipRequest, authDone: boolean): ClientTransaction => {
      let finalSeen = false;
      return this.tx.request(r, dest, {
        onResponse: (res) => {
          if (res.status < 200) {
            if (!finalSeen) h.onProvisional?.(res);
            return;
          }
          if (finalSeen) {
            if (res.status < 300) h.onExtra2xx?.(res);
            return;
          }
          finalSeen = true;
          if ((res.status === 401 || res.status === 407) && !authDone) {
            const retry = this.authenticated(r, res, dest, h);
            if (retry) {
              const tx = run(retry, true);
              h.onResend?.(retry, tx);
              return;
            }
          }
          h.onFinal(res);
        },
        onFailure: (code, reason) => {
          if (finalSeen) return;
          finalSeen = true;
          h.onFinal(makeResponse(r, code, reason));
        },
      });
    };
    return run(req, false);
  }

  /** The request resent with credentials for the challenge in `res`, if we have any (§22.2). */
  private authenticated(req: SipRequest, res: SipResponse, dest: Destination, h: RequestHandlers): SipRequest | undefined {
    if (req.method === 'CANCEL' || req.method === 'ACK') return undefined;
    const challengeHeader = res.status === 401 ? 'WWW-Authenticate' : 'Proxy-Authenticate';
    const answerHeader = res.status === 401 ? 'Authorization' : 'Proxy-Authorization';
    const challenge = pickChallenge(res.getAll(challengeHeader));
    if (!challenge) return undefined;
    const creds = h.credentials ?? this.credentialsFor(challenge.realm, req.uri);
    if (!creds) return undefined;
    const again = new SipRequest(req.method, req.uri);
    again.headers = req.headers.filter((x) => x.name !== 'Via' && x.name !== answerHeader).map((x) => ({ ...x }));
    again.body = req.body;
    again.set('CSeq', `${h.nextCSeq()} ${req.method}`);
    again.add(answerHeader, authorization({ challenge, username: creds.username, password: creds.password, method: req.method, uri: req.uri }));
    this.addVia(again, dest.transport);
    return again;
  }

  private credentialsFor(realm: string, uri: string): { username: string; password: string } | undefined {
    const c = this.opts.credentials?.(realm, uri);
    if (c) return c;
    // A registration's credentials also serve requests to the same registrar host (a trunk),
    // and only there: digest responses must not be handed to any host that asks.
    let host: string;
    try { host = parseUri(uri).host; } catch { return undefined; }
    for (const r of this.opts.register ?? []) {
      try {
        if (parseUri(r.registrar).host === host) return { username: r.username, password: r.password };
      } catch { /* skip */ }
    }
    return undefined;
  }

  sendStateless(msg: SipMessage, dest: Destination): void {
    this.transport.send(msg, dest).catch((e: Error) => this.logger.debug({ err: e.message }, 'sip stateless send failed'));
  }

  destinationFor(req: SipRequest, preferred: TransportName): Destination {
    const uri = nextHopUri(req);
    if (uri.scheme === 'sips') throw new SipUriError('sips: (TLS) is not supported');
    const param = uri.params.get('transport')?.toLowerCase();
    let transport: TransportName;
    if (param === undefined || param === null) {
      transport = this.transport.has(preferred) ? preferred : preferred === 'udp' ? 'tcp' : 'udp';
    } else if (param === 'udp' || param === 'tcp') {
      transport = param;
      if (!this.transport.has(transport)) throw new SipUriError(`no ${param.toUpperCase()} listener for ${req.uri}`);
    } else {
      throw new SipUriError(`transport ${param} is not supported`);
    }
    return { transport, host: uri.host, port: uri.port ?? 5060 };
  }

  addVia(req: SipRequest, transport: TransportName): void {
    const port = this.transport.addresses()[transport]?.port ?? 5060;
    req.headers.unshift({ name: 'Via', value: `SIP/2.0/${transport.toUpperCase()} ${this.host}:${port};branch=${MAGIC_COOKIE}${rand(10)};rport` });
  }

  contact(transport: TransportName, user = 'nkmedia'): string {
    const port = this.transport.addresses()[transport]?.port ?? 5060;
    return `<sip:${user}@${this.host}:${port}${transport === 'tcp' ? ';transport=tcp' : ''}>`;
  }

  decorate(msg: SipMessage): void {
    const ua = this.opts.userAgent ?? 'nkmedia-ts';
    if (msg.kind === 'request') {
      msg.set('User-Agent', ua);
      if (msg.method === 'INVITE' || msg.method === 'OPTIONS' || msg.method === 'REGISTER') msg.set('Allow', ALLOW);
    } else {
      msg.set('Server', ua);
      const method = msg.get('CSeq')?.split(/\s+/)[1];
      if ((method === 'INVITE' || method === 'OPTIONS') && msg.status < 300) msg.set('Allow', ALLOW);
    }
  }

  callEnded(call: { readonly key: string }): void {
    this.calls.delete(call.key);
    const host = this.incoming.get(call.key);
    if (host === undefined) return;
    this.incoming.delete(call.key);
    const n = (this.incomingByAddress.get(host) ?? 1) - 1;
    if (n <= 0) this.incomingByAddress.delete(host); else this.incomingByAddress.set(host, n);
  }

  /** Incoming dialogs now (total, or from one address). */
  incomingDialogs(host?: string): number {
    return host === undefined ? this.incoming.size : this.incomingByAddress.get(host) ?? 0;
  }

  private defaultTransport(uri: string, preferred?: TransportName): TransportName {
    const p = preferred ?? (this.opts.udp ? 'udp' : 'tcp');
    try {
      const t = parseUri(uri).params.get('transport')?.toLowerCase();
      if (t === 'tcp' || t === 'udp') return t;
    } catch { /* destinationFor reports it */ }
    return p;
  }

  private fromAddress(from: string | undefined): NameAddr {
    if (from === undefined) {
      const reg = this.opts.register?.[0];
      return { uri: reg ? reg.aor : `sip:nkmedia@${this.host}`, params: new Map() };
    }
    if (from.includes('<')) return parseNameAddr(from);
    if (/^sips?:/i.test(from)) {
      parseUri(from);
      return { uri: from, params: new Map() };
    }
    if (!/^[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+$/.test(from)) throw new SipUriError(`bad from user ${JSON.stringify(from)}`);
    return { uri: `sip:${from}@${this.host}`, params: new Map() };
  }

  // --- incoming ------------------------------------------------------------------------------

  private onMessage(msg: SipMessage, src: Source): void {
    if (msg.kind === 'response') this.onResponse(msg, src);
    else this.onRequest(msg, src);
  }

  private onResponse(res: SipResponse, src: Source): void {
    // §8.1.3.3: more than one Via means the response was not meant for us.
    if (res.getAll('Via').length !== 1) {
      this.logger.debug({ src }, 'sip response with several Vias dropped');
      return;
    }
    const tx = this.tx.matchResponse(res);
    if (tx) {
      tx.receive(res);
      return;
    }
    // A 2xx to an INVITE after its transaction ended: re-ACK it (retransmission or late fork).
    let cseq;
    try { cseq = parseCSeq(res.get('CSeq') ?? ''); } catch { return; }
    if (cseq.method === 'INVITE' && res.status >= 200 && res.status < 300) {
      const call = this.calls.get(`${res.get('Call-ID')}|${tagOf(res.get('From'))}`);
      if (call instanceof OutgoingCall) call.on2xx(res);
    }
  }

  /** A message that failed to parse: answer 400 when it is a request we can route back. */
  private onBadMessage(err: SipParseError, src: Source): void {
    const req = err.partial;
    if (!req || req.kind !== 'request' || req.method === 'ACK') return;
    const via = this.topVia(req, src);
    const dest = via ? responseDestination(via, src) : this.connectionBack(req, src);
    if (!dest) return;
    this.sendStateless(makeResponse(req, 400, reasonPhrase(err.message), rand(8)), dest);
  }

  /**
   * Where to answer a request whose top Via is unusable: over UDP nowhere (the Via is the only
   * return address, §18.2.2); over TCP back on the request's own connection, which is the path
   * a response takes anyway — but only while it is open, never a new connection.
   */
  private connectionBack(req: SipRequest, src: Source): Destination | undefined {
    if (src.transport !== 'tcp' || src.connId === undefined || !req.has('Via')) return undefined;
    return { transport: 'tcp', host: src.host, port: src.port, connId: src.connId, connOnly: true };
  }

  /** Parses the top Via and adds received/rport (§18.2.1, RFC 3581). Undefined: unusable. */
  private topVia(req: SipRequest, src: Source): Via | undefined {
    const first = req.getAll('Via')[0];
    if (first === undefined) return undefined;
    let via: Via;
    try {
      via = parseVia(first);
    } catch {
      return undefined;
    }
    const ip = uriHost(src.host);
    if (via.host !== ip) via.params.set('received', src.host);
    if (via.params.has('rport')) {
      via.params.set('rport', String(src.port));
      via.params.set('received', src.host);
    }
    req.setTopVia(formatVia(via));
    return via;
  }

  private onRequest(req: SipRequest, src: Source): void {
    const via = this.topVia(req, src);
    if (!via) {
      const back = req.method === 'ACK' ? undefined : this.connectionBack(req, src);
      if (back) {
        const res = makeResponse(req, 400, 'Bad Via header', rand(8));
        this.decorate(res);
        this.sendStateless(res, back);
      } else {
        this.logger.debug({ src, method: req.method }, 'sip request without a usable Via dropped');
      }
      return;
    }
    const dest = responseDestination(via, src);
    const isAck = req.method === 'ACK';
    const bad = (code: number, reason?: string, extra?: Record<string, string>): void => {
      if (isAck) return;
      const res = makeResponse(req, code, reason, rand(8));
      for (const [k, v] of Object.entries(extra ?? {})) res.add(k, v);
      this.decorate(res);
      this.sendStateless(res, dest);
    };
    const problem = this.validate(req);
    if (problem) {
      this.logger.debug({ src, method: req.method, problem: problem.reason }, 'sip bad request');
      bad(problem.code, problem.reason);
      return;
    }
    if (isAck) {
      this.onAck(req);
      return;
    }
    const existing = this.tx.matchRequest(req);
    if (existing) {
      existing.retransmitted();
      return;
    }
    if (req.method === 'CANCEL') {
      this.onCancel(req, dest);
      return;
    }
    const toTag = tagOf(req.get('To'));
    if (!toTag && this.closing) {
      bad(503, 'Shutting Down');
      return;
    }
    if (!toTag && this.isMerged(req)) {
      bad(482, 'Loop Detected');
      return;
    }
    const unsupported = req.getAll('Require').filter((o) => o !== '');
    if (unsupported.length > 0) {
      bad(420, undefined, { Unsupported: unsupported.join(', ') });
      return;
    }
    if (!KNOWN_UNSUPPORTED.has(req.method) && !['INVITE', 'OPTIONS', 'BYE', 'INFO'].includes(req.method)) {
      bad(501);
      return;
    }
    const stx = this.tx.createServer(req, dest);
    if (KNOWN_UNSUPPORTED.has(req.method)) {
      stx.reply(405, undefined, rand(8), { Allow: ALLOW });
      return;
    }
    if (toTag) {
      const call = this.calls.get(`${req.get('Call-ID')}|${toTag}`);
      if (!call || !call.dialog || call.dialog.remoteTag !== (tagOf(req.get('From')) ?? '')) {
        stx.reply(481);
        return;
      }
      call.onRequest(req, stx);
      return;
    }
    if (req.method === 'OPTIONS') {
      const res = makeResponse(req, 200, undefined, rand(8));
      this.decorate(res);
      res.add('Accept', 'application/sdp');
      stx.respond(res);
      return;
    }
    if (IN_DIALOG_ONLY.has(req.method)) {
      stx.reply(481, undefined, rand(8));
      return;
    }
    this.handleInvite(req, stx, src);
  }

  /** The §8.2 checks that need no state. Returns the response to send, if any. */
  private validate(req: SipRequest): { code: number; reason: string } | undefined {
    if (req.version !== 'SIP/2.0') return { code: 505, reason: 'Version Not Supported' };
    for (const h of ['From', 'To', 'Call-ID', 'CSeq']) {
      if (!req.has(h) || req.get(h) === '') return { code: 400, reason: `Missing ${h} header` };
    }
    let cseq;
    try {
      cseq = parseCSeq(req.get('CSeq')!);
    } catch (e) {
      return { code: 400, reason: `Bad CSeq header: ${(e as Error).message}` };
    }
    if (cseq.method !== req.method) return { code: 400, reason: 'CSeq method does not match the request method' };
    for (const h of ['From', 'To']) {
      try {
        parseNameAddr(req.get(h)!);
      } catch {
        return { code: 400, reason: `Bad ${h} header` };
      }
    }
    const mf = req.get('Max-Forwards');
    if (mf !== undefined) {
      try { parseUint(mf, 'Max-Forwards', 255); } catch { return { code: 400, reason: 'Bad Max-Forwards header' }; }
    }
    if (!/^sips?:/i.test(req.uri)) return { code: 416, reason: 'Unsupported URI Scheme' };
    try {
      parseUri(req.uri);
    } catch {
      return { code: 400, reason: 'Bad Request-URI' };
    }
    if (req.method === 'INVITE') {
      const contact = req.getAll('Contact')[0];
      if (contact === undefined) return { code: 400, reason: 'Missing Contact header' };
      try { parseUri(parseNameAddr(contact).uri); } catch { return { code: 400, reason: 'Bad Contact header' }; }
    }
    return undefined;
  }

  /** §8.2.2.2: same From tag, Call-ID and CSeq as a transaction in progress, other branch. */
  private isMerged(req: SipRequest): boolean {
    const callId = req.get('Call-ID');
    const fromTag = tagOf(req.get('From'));
    const cseq = req.get('CSeq');
    if (!fromTag) return false;
    for (const s of this.tx.serverTransactions()) {
      const o = s.request;
      if (o.get('Call-ID') === callId && tagOf(o.get('From')) === fromTag && o.get('CSeq') === cseq && !tagOf(o.get('To'))) return true;
    }
    return false;
  }

  private onAck(req: SipRequest): void {
    const stx = this.tx.matchRequest(req);
    if (stx && stx.ack()) return;
    const call = this.calls.get(`${req.get('Call-ID')}|${tagOf(req.get('To'))}`);
    if (call && call.dialog?.remoteTag === (tagOf(req.get('From')) ?? '')) call.onAck(req);
  }

  private onCancel(req: SipRequest, dest: Destination): void {
    const inv = this.tx.matchRequest(req, 'INVITE');
    const stx = this.tx.createServer(req, dest);
    if (!inv) {
      stx.reply(481, undefined, rand(8));
      return;
    }
    const call = [...this.calls.values()].find((c): c is IncomingCall => c instanceof IncomingCall && c.isInvite(inv));
    stx.reply(200, undefined, call?.localTag ?? rand(8));
    call?.onCancel();
  }

  private handleInvite(req: SipRequest, stx: ServerTransaction, src: Source): void {
    const localTag = rand(8);
    if (req.body !== '') {
      const ct = req.get('Content-Type');
      if (ct === undefined) {
        stx.reply(400, 'Missing Content-Type header', localTag);
        return;
      }
      if (mediaType(ct) !== 'application/sdp') {
        stx.reply(415, undefined, localTag, { Accept: 'application/sdp' });
        return;
      }
    }
    if (!this.handler) {
      stx.reply(480, undefined, localTag);
      return;
    }
    // Each dialog holds a media session and its ports: a flood of INVITEs meets a cap, not the
    // descriptor limit.
    const max = this.opts.maxDialogs ?? Infinity;
    const maxHere = this.opts.maxDialogsPerAddress ?? Infinity;
    if (this.incoming.size >= max || this.incomingDialogs(src.host) >= maxHere) {
      this.logger.info({ src, dialogs: this.incoming.size, from_address: this.incomingDialogs(src.host) }, 'sip INVITE refused: too many dialogs');
      stx.reply(503, 'Too Many Calls', localTag, { 'Retry-After': String(RETRY_AFTER_S) });
      return;
    }
    stx.reply(100);
    let call: IncomingCall;
    try {
      call = new IncomingCall(this, req, stx, src, localTag);
    } catch (e) {
      stx.reply(400, reasonPhrase((e as Error).message), localTag);
      return;
    }
    this.calls.set(call.key, call);
    this.incoming.set(call.key, src.host);
    this.incomingByAddress.set(src.host, this.incomingDialogs(src.host) + 1);
    const failed = (e: unknown): void => {
      this.logger.warn({ err: e instanceof Error ? e.message : String(e) }, 'sip invite handler threw');
      call.reject(500);
    };
    try {
      // An async handler's rejection is caught too: it must not become an unhandled rejection.
      Promise.resolve(this.handler(call)).catch(failed);
    } catch (e) {
      failed(e);
    }
  }
}

/** A reason phrase from an error message: printable ASCII, one line, short. */
function reasonPhrase(s: string): string {
  const r = s.replace(/[^\x20-\x7e]/g, '?').slice(0, 100).trim();
  return r === '' ? 'Bad Request' : r.charAt(0).toUpperCase() + r.slice(1);
}

function defaultHost(bound: string): string {
  if (bound !== '0.0.0.0' && bound !== '::') return bound;
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (!a.internal && a.family === 'IPv4') return a.address;
  }
  return net.isIPv6(bound) ? '::1' : '127.0.0.1';
}
