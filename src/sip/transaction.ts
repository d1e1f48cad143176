// RFC 3261 §17 transactions, with RFC 6026's "Accepted" state for INVITE 2xx.
//
// Timers (T2 = 8·T1 and T4 = 10·T1, i.e. 4 s and 5 s for the default T1 of 500 ms, so that a
// small test T1 scales everything):
//   client INVITE:  A (retransmit, UDP), B (64·T1 timeout), D (64·T1 UDP / 0 TCP wait in
//                   Completed), M (64·T1 in Accepted, absorbing 2xx retransmissions)
//   client other:   E (retransmit, UDP, capped at T2), F (64·T1 timeout), K (T4 UDP / 0 TCP)
//   server INVITE:  G (final response retransmit, UDP), H (64·T1 wait for ACK), I (T4 UDP / 0 TCP),
//                   L (64·T1 in Accepted)
//   server other:   J (64·T1 UDP / 0 TCP)
// The transaction user (the UA) gets callbacks; ACK for non-2xx is made here (§17.1.1.3).

import { makeResponse, parseCSeq, parseVia, SipRequest, type SipMessage, type SipResponse } from './message.js';
import type { Destination } from './transport.js';
import type { SipLogger } from './log.js';

export const MAGIC_COOKIE = 'z9hG4bK';

export interface TransactionEnv {
  t1: number;
  send(msg: SipMessage, dest: Destination): Promise<void>;
  logger: SipLogger;
}

export interface ClientUser {
  onResponse(res: SipResponse, tx: ClientTransaction): void;
  /** Timer B/F fired, or a transport error (RFC 3261 §8.1.3.1: treat as 408 / 503). */
  onFailure(code: 408 | 503, reason: string, tx: ClientTransaction): void;
}

type ClientState = 'calling' | 'trying' | 'proceeding' | 'accepted' | 'completed' | 'terminated';
type ServerState = 'trying' | 'proceeding' | 'accepted' | 'completed' | 'confirmed' | 'terminated';

abstract class Timed {
  private readonly timers = new Map<string, NodeJS.Timeout>();
  protected timer(name: string, ms: number, f: () => void): void {
    this.clear(name);
    this.timers.set(name, setTimeout(() => { this.timers.delete(name); f(); }, ms));
  }
  protected clear(name: string): void {
    const t = this.timers.get(name);
    if (t) clearTimeout(t);
    this.timers.delete(name);
  }
  protected clearAll(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }
}

export class ClientTransaction extends Timed {
  state: ClientState;
  readonly key: string;
  readonly isInvite: boolean;
  private interval: number;
  private ack?: SipRequest;

  constructor(
    private readonly layer: TransactionLayer,
    readonly request: SipRequest,
    readonly dest: Destination,
    private readonly user: ClientUser,
  ) {
    super();
    this.isInvite = request.method === 'INVITE';
    this.state = this.isInvite ? 'calling' : 'trying';
    this.key = clientKey(request);
    this.interval = layer.env.t1;
  }

  get reliable(): boolean { return this.dest.transport !== 'udp'; }

  start(): void {
    const t1 = this.layer.env.t1;
    this.transmit();
    if (this.isInvite) {
      if (!this.reliable) this.timer('A', this.interval, () => this.retransmitA());
      this.timer('B', 64 * t1, () => this.fail(408, 'Request Timeout'));
    } else {
      if (!this.reliable) this.timer('E', this.interval, () => this.retransmitE());
      this.timer('F', 64 * t1, () => this.fail(408, 'Request Timeout'));
    }
  }

  private transmit(msg: SipMessage = this.request): void {
    this.layer.env.send(msg, this.dest).catch((e: Error) => {
      if (this.state === 'terminated') return;
      this.layer.env.logger.debug({ err: e.message, key: this.key }, 'sip send failed');
      this.fail(503, 'Service Unavailable');
    });
  }

  private retransmitA(): void {
    if (this.state !== 'calling') return;
    this.transmit();
    this.interval *= 2;
    this.timer('A', this.interval, () => this.retransmitA());
  }

  private retransmitE(): void {
    if (this.state !== 'trying' && this.state !== 'proceeding') return;
    this.transmit();
    const t2 = 8 * this.layer.env.t1;
    this.interval = this.state === 'proceeding' ? t2 : Math.min(2 * this.interval, t2);
    this.timer('E', this.interval, () => this.retransmitE());
  }

  private fail(code: 408 | 503, reason: string): void {
    if (this.state === 'terminated' || this.state === 'completed' || this.state === 'accepted') return;
    this.terminate();
    this.user.onFailure(code, reason, this);
  }

  /** A response whose branch and CSeq method match this transaction. */
  receive(res: SipResponse): void {
    const t1 = this.layer.env.t1;
    const s = res.status;
    if (this.isInvite) {
      switch (this.state) {
        case 'calling':
        case 'proceeding':
          if (s < 200) {
            this.state = 'proceeding';
            this.clear('A');
            this.clear('B');
            this.user.onResponse(res, this);
          } else if (s < 300) {
            this.state = 'accepted';
            this.clearAll();
            this.timer('M', 64 * t1, () => this.terminate());
            this.user.onResponse(res, this);
          } else {
            this.state = 'completed';
            this.clearAll();
            this.ack = ackForFailure(this.request, res);
            this.transmit(this.ack);
            this.timer('D', this.reliable ? 0 : 64 * t1, () => this.terminate());
            this.user.onResponse(res, this);
          }
          return;
        case 'accepted':
          // 2xx retransmissions (or 2xx from other forks) go up: the UA ACKs each one.
          if (s >= 200 && s < 300) this.user.onResponse(res, this);
          return;
        case 'completed':
          if (s >= 300 && this.ack) this.transmit(this.ack);
          return;
        default:
          return;
      }
    }
    if (this.state !== 'trying' && this.state !== 'proceeding') return;
    if (s < 200) {
      this.state = 'proceeding';
      this.user.onResponse(res, this);
      return;
    }
    this.state = 'completed';
    this.clearAll();
    this.timer('K', this.reliable ? 0 : 10 * t1, () => this.terminate());
    this.user.onResponse(res, this);
  }

  terminate(): void {
    if (this.state === 'terminated') return;
    this.state = 'terminated';
    this.clearAll();
    this.layer.removeClient(this);
  }
}

export class ServerTransaction extends Timed {
  state: ServerState;
  readonly key: string;
  readonly isInvite: boolean;
  private last?: SipResponse;
  private interval: number;
  /** Called when an INVITE's non-2xx final response got no ACK within Timer H. */
  onNoAck?: () => void;

  constructor(private readonly layer: TransactionLayer, readonly request: SipRequest, public dest: Destination) {
    super();
    this.isInvite = request.method === 'INVITE';
    this.state = this.isInvite ? 'proceeding' : 'trying';
    this.key = serverKey(request);
    this.interval = layer.env.t1;
  }

  get reliable(): boolean { return this.dest.transport !== 'udp'; }
  get finalSent(): boolean { return this.state !== 'trying' && this.state !== 'proceeding'; }
  get lastStatus(): number | undefined { return this.last?.status; }

  /** Sends a response through the transaction; ignored once a final response went out. */
  respond(res: SipResponse): void {
    if (this.finalSent) return;
    const t1 = this.layer.env.t1;
    this.last = res;
    this.send(res);
    if (res.status < 200) {
      this.state = 'proceeding';
      return;
    }
    if (this.isInvite && res.status < 300) {
      // RFC 6026: the UA retransmits the 2xx; we only absorb INVITE retransmissions.
      this.state = 'accepted';
      this.timer('L', 64 * t1, () => this.terminate());
    } else if (this.isInvite) {
      this.state = 'completed';
      if (!this.reliable) this.timer('G', this.interval, () => this.retransmitG());
      this.timer('H', 64 * t1, () => {
        this.terminate();
        this.onNoAck?.();
      });
    } else {
      this.state = 'completed';
      this.timer('J', this.reliable ? 0 : 64 * t1, () => this.terminate());
    }
  }

  /** Shorthand: a response built from the request. */
  reply(status: number, reason?: string, toTag?: string, extra?: Record<string, string>): SipResponse {
    const res = makeResponse(this.request, status, reason, toTag);
    for (const [k, v] of Object.entries(extra ?? {})) res.add(k, v);
    this.respond(res);
    return res;
  }

  private send(res: SipResponse): void {
    this.layer.env.send(res, this.dest).catch((e: Error) => {
      this.layer.env.logger.debug({ err: e.message, key: this.key }, 'sip response send failed');
    });
  }

  private retransmitG(): void {
    if (this.state !== 'completed' || !this.last) return;
    this.send(this.last);
    this.interval = Math.min(2 * this.interval, 8 * this.layer.env.t1);
    this.timer('G', this.interval, () => this.retransmitG());
  }

  /** A retransmission of the request: resend the last response (§17.2.1, §17.2.2). */
  retransmitted(): void {
    if (this.state === 'accepted' || this.state === 'confirmed' || this.state === 'terminated') return;
    if (this.last) this.send(this.last);
  }

  /** ACK matching this INVITE transaction. Returns false when it must go to the UA (2xx ACK). */
  ack(): boolean {
    if (this.state === 'completed') {
      this.state = 'confirmed';
      this.clearAll();
      this.timer('I', this.reliable ? 0 : 10 * this.layer.env.t1, () => this.terminate());
      return true;
    }
    return this.state === 'confirmed';
  }

  terminate(): void {
    if (this.state === 'terminated') return;
    this.state = 'terminated';
    this.clearAll();
    this.layer.removeServer(this);
  }
}

/** Builds the ACK for a non-2xx final response to `invite` (RFC 3261 §17.1.1.3). */
export function ackForFailure(invite: SipRequest, res: SipResponse): SipRequest {
  const ack = new SipRequest('ACK', invite.uri);
  const via = invite.getAll('Via')[0];
  if (via) ack.add('Via', via);
  ack.add('Max-Forwards', '70');
  for (const r of invite.getAll('Route')) ack.add('Route', r);
  for (const n of ['From', 'Call-ID']) ack.add(n, invite.get(n) ?? '');
  ack.add('To', res.get('To') ?? invite.get('To') ?? '');
  ack.add('CSeq', `${parseCSeq(invite.get('CSeq') ?? '').seq} ACK`);
  return ack;
}

function clientKey(msg: SipMessage): string {
  const via = parseVia(msg.getAll('Via')[0] ?? '');
  const method = parseCSeq(msg.get('CSeq') ?? '').method;
  return `${via.branch ?? ''}|${method}`;
}

/** Matching of requests to server transactions (§17.2.3), with the RFC 2543 fallback. */
export function serverKey(req: SipRequest, asMethod?: string): string {
  const via = parseVia(req.getAll('Via')[0] ?? '');
  let method = asMethod ?? req.method;
  if (method === 'ACK') method = 'INVITE';
  const sentBy = `${via.host}:${via.port ?? ''}`;
  if (via.branch?.startsWith(MAGIC_COOKIE)) return `${via.branch}|${sentBy}|${method}`;
  const cseq = parseCSeq(req.get('CSeq') ?? '').seq;
  const fromTag = /;\s*tag\s*=\s*([^;\s]+)/i.exec(req.get('From') ?? '')?.[1] ?? '';
  return `2543|${req.get('Call-ID')}|${fromTag}|${cseq}|${sentBy}|${via.branch ?? ''}|${method}`;
}

export class TransactionLayer {
  private readonly clients = new Map<string, ClientTransaction>();
  private readonly servers = new Map<string, ServerTransaction>();

  constructor(readonly env: TransactionEnv) {}

  get count(): number { return this.clients.size + this.servers.size; }

  /** Creates and starts a client transaction. The request must carry a unique branch. */
  request(req: SipRequest, dest: Destination, user: ClientUser): ClientTransaction {
    const tx = new ClientTransaction(this, req, dest, user);
    this.clients.set(tx.key, tx);
    tx.start();
    return tx;
  }

  /** The client transaction a response belongs to (§17.1.3), if any. Never throws. */
  matchResponse(res: SipResponse): ClientTransaction | undefined {
    try {
      return this.clients.get(clientKey(res));
    } catch {
      return undefined;
    }
  }

  createServer(req: SipRequest, dest: Destination): ServerTransaction {
    const tx = new ServerTransaction(this, req, dest);
    this.servers.set(tx.key, tx);
    return tx;
  }

  /** The server transaction a request (or ACK, or CANCEL's INVITE with asMethod) matches. */
  matchRequest(req: SipRequest, asMethod?: string): ServerTransaction | undefined {
    try {
      return this.servers.get(serverKey(req, asMethod));
    } catch {
      return undefined;
    }
  }

  /** Live server transactions, for merged-request detection (§8.2.2.2). */
  serverTransactions(): IterableIterator<ServerTransaction> {
    return this.servers.values();
  }

  removeClient(tx: ClientTransaction): void {
    if (this.clients.get(tx.key) === tx) this.clients.delete(tx.key);
  }

  removeServer(tx: ServerTransaction): void {
    if (this.servers.get(tx.key) === tx) this.servers.delete(tx.key);
  }

  /** Terminates everything (UA shutdown): no timer survives. */
  closeAll(): void {
    for (const tx of [...this.clients.values()]) tx.terminate();
    for (const tx of [...this.servers.values()]) tx.terminate();
  }
}
