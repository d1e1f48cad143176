// Keeping one binding registered (RFC 3261 §10.2): REGISTER with digest credentials, refresh
// before expiry, 423 Interval Too Brief handling, retry after failures, unREGISTER on stop.

import { randomBytes } from 'node:crypto';
import { parseUint, SipRequest, type SipResponse } from './message.js';
import { parseNameAddr, parseUri, type SipUri } from './uri.js';
import type { CallHost } from './call.js';
import type { TransportName } from './transport.js';

export interface RegisterConfig {
  /** sip: URI of the registrar (add ;transport=tcp for TCP). */
  registrar: string;
  /** Address of record, e.g. sip:alice@example.com. */
  aor: string;
  username: string;
  password: string;
  /** Requested binding lifetime in seconds (default 3600). */
  expires?: number;
}

export interface RegistrationStatus {
  aor: string;
  state: 'registered' | 'failed' | 'pending';
  /** Seconds granted by the registrar. */
  expires?: number;
  error?: string;
}

/** When to refresh a binding granted for `expires` seconds: halfway for short ones, else 60 s early. */
export function refreshDelayMs(expires: number): number {
  return Math.max(expires * 500, (expires - 60) * 1000);
}

export class Registration {
  state: RegistrationStatus['state'] = 'pending';
  expires?: number;
  error?: string;
  private readonly callId = randomBytes(12).toString('hex');
  private readonly tag = randomBytes(8).toString('hex');
  private cseq = 0;
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private readonly contactUri: string;
  private readonly contact: string;
  private readonly aorUri: SipUri;

  constructor(private readonly host: CallHost, readonly cfg: RegisterConfig, private readonly transport: TransportName) {
    this.aorUri = parseUri(cfg.aor);
    parseUri(cfg.registrar);
    this.contact = host.contact(transport, this.aorUri.user);
    this.contactUri = parseNameAddr(this.contact).uri;
  }

  status(): RegistrationStatus {
    const s: RegistrationStatus = { aor: this.cfg.aor, state: this.state };
    if (this.expires !== undefined) s.expires = this.expires;
    if (this.error !== undefined) s.error = this.error;
    return s;
  }

  start(): void {
    this.send(this.cfg.expires ?? 3600, (res, asked) => this.onResult(res, asked));
  }

  private send(expires: number, done: (res: SipResponse, asked: number) => void): void {
    const req = new SipRequest('REGISTER', this.cfg.registrar);
    req.add('Max-Forwards', '70');
    req.add('From', `<${this.cfg.aor}>;tag=${this.tag}`);
    req.add('To', `<${this.cfg.aor}>`);
    req.add('Call-ID', this.callId);
    req.add('CSeq', `${++this.cseq} REGISTER`);
    req.add('Contact', this.contact);
    req.add('Expires', String(expires));
    this.host.decorate(req);
    let dest;
    try {
      dest = this.host.destinationFor(req, this.transport);
    } catch (e) {
      this.fail(`bad registrar: ${(e as Error).message}`);
      return;
    }
    this.host.request(req, dest, {
      credentials: { username: this.cfg.username, password: this.cfg.password },
      nextCSeq: () => ++this.cseq,
      onFinal: (res) => done(res, expires),
    });
  }

  private onResult(res: SipResponse, asked: number): void {
    if (this.stopped) return;
    if (res.status >= 200 && res.status < 300) {
      const granted = this.grantedExpires(res) ?? asked;
      if (granted <= 0) {
        this.fail('registrar granted no binding');
        return;
      }
      this.state = 'registered';
      this.expires = granted;
      this.error = undefined;
      this.host.logger.info({ aor: this.cfg.aor, expires: granted }, 'sip registered');
      this.schedule(refreshDelayMs(granted));
      return;
    }
    if (res.status === 423) {
      let min: number | undefined;
      try {
        min = parseUint(res.get('Min-Expires') ?? '', 'Min-Expires', 2 ** 31);
      } catch { /* handled below */ }
      if (min !== undefined && min > asked) {
        this.send(min, (r, a) => this.onResult(r, a));
        return;
      }
    }
    this.fail(`${res.status} ${res.reason}`);
  }

  private fail(error: string): void {
    this.state = 'failed';
    this.error = error;
    this.expires = undefined;
    this.host.logger.warn({ aor: this.cfg.aor, error }, 'sip registration failed');
    // Retry later: 60·T1 (30 s with the default T1).
    this.schedule(60 * this.host.t1);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => { this.timer = undefined; this.start(); }, ms);
  }

  /** The lifetime of our binding: its Contact's expires parameter, else the Expires header. */
  private grantedExpires(res: SipResponse): number | undefined {
    const ours = parseUri(this.contactUri);
    for (const c of res.getAll('Contact')) {
      try {
        const na = parseNameAddr(c);
        const u = parseUri(na.uri);
        if (u.host === ours.host && (u.port ?? 5060) === (ours.port ?? 5060) && u.user === ours.user) {
          const e = na.params.get('expires');
          if (e) return parseUint(e, 'expires', 2 ** 31);
        }
      } catch { /* other bindings may be anything */ }
    }
    const h = res.get('Expires');
    if (h !== undefined) {
      try { return parseUint(h, 'Expires', 2 ** 31); } catch { return undefined; }
    }
    return undefined;
  }

  /** Stops refreshing; removes the binding if we hold one. Resolves when answered. */
  stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.state !== 'registered') return Promise.resolve();
    this.state = 'pending';
    return new Promise((resolve) => this.send(0, () => resolve()));
  }
}
