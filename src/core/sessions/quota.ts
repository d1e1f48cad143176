// Admission of media sessions: a count cap and a descriptor budget for the whole server, per
// connection a count cap, and per user a count cap and (with a configured port range) at most
// half of that range. Each session is charged to a user and a connection — its owner's, or for a
// call leg the ones that placed the call — so ringing
// someone never uses up the callee's own allowance. System principals (SIP) have their own caps
// at the SIP layer and only meet the server-wide ones here.
import { ApiError } from '../../protocol/errors.js';
import { displayUser, isSystemUser } from '../../util/principals.js';

export type SessionKind = 'webrtc' | 'rtp';

export interface QuotaLimits {
  maxSessions: number;
  /** Descriptors all sessions together may hold. */
  sessionDescriptors: number;
  maxSessionsPerConnection: number;
  maxSessionsPerUser: number;
  /** Descriptors (UDP ports) one session of each kind holds. */
  weights: Record<SessionKind, number>;
  /** Port range sizes, when ranges are configured. */
  portRanges: Partial<Record<SessionKind, number>>;
  /** The share of a port range one user may hold (default one half). */
  portSharePerUser?: number;
}

/** Who a session counts against. */
export interface Charge { user: string; connId: string }

interface Held extends Charge { kind: SessionKind; weight: number }
interface UserUse { sessions: number; ports: Record<SessionKind, number> }

export const UNLIMITED: QuotaLimits = {
  maxSessions: Infinity, sessionDescriptors: Infinity, maxSessionsPerConnection: Infinity, maxSessionsPerUser: Infinity,
  weights: { webrtc: 1, rtp: 4 }, portRanges: {},
};

export class SessionQuota {
  private readonly held = new Map<string, Held>();
  private readonly users = new Map<string, UserUse>();
  private readonly conns = new Map<string, number>();
  private descriptors = 0;

  constructor(readonly limits: QuotaLimits) {}

  /** Reserves room for session `id`; throws `too_many_sessions` naming the cap that is reached. */
  reserve(id: string, { user, connId }: Charge, kind: SessionKind): void {
    if (this.held.has(id)) return;
    const l = this.limits;
    const weight = l.weights[kind];
    const onConn = this.conns.get(connId) ?? 0;
    if (onConn >= l.maxSessionsPerConnection) {
      throw new ApiError('too_many_sessions', `this connection already has ${onConn} sessions (limit ${l.maxSessionsPerConnection} per connection)`);
    }
    if (this.held.size >= l.maxSessions) {
      throw new ApiError('too_many_sessions', `the server holds its maximum of ${l.maxSessions} sessions`);
    }
    if (this.descriptors + weight > l.sessionDescriptors) {
      throw new ApiError('too_many_sessions', `the server has no descriptors left for another session (${this.held.size} sessions hold ${this.descriptors} of ${l.sessionDescriptors})`);
    }
    const use = this.users.get(user) ?? { sessions: 0, ports: { webrtc: 0, rtp: 0 } };
    if (!isSystemUser(user)) {
      if (use.sessions >= l.maxSessionsPerUser) {
        throw new ApiError('too_many_sessions', `user ${displayUser(user)} has ${use.sessions} sessions (limit ${l.maxSessionsPerUser} per user)`);
      }
      const range = l.portRanges[kind];
      const share = l.portSharePerUser ?? 0.5;
      if (range !== undefined && use.ports[kind] + weight > Math.max(weight, Math.floor(range * share))) {
        throw new ApiError('too_many_sessions', `user ${displayUser(user)} holds ${use.ports[kind]} of the ${range} media ports; one user may hold at most ${share === 0.5 ? 'half' : `${Math.round(share * 100)}%`}`);
      }
    }
    use.sessions++;
    use.ports[kind] += weight;
    this.users.set(user, use);
    this.conns.set(connId, onConn + 1);
    this.held.set(id, { user, connId, kind, weight });
    this.descriptors += weight;
  }

  release(id: string): void {
    const h = this.held.get(id);
    if (!h) return;
    this.held.delete(id);
    this.descriptors -= h.weight;
    const onConn = (this.conns.get(h.connId) ?? 1) - 1;
    if (onConn <= 0) this.conns.delete(h.connId); else this.conns.set(h.connId, onConn);
    const use = this.users.get(h.user);
    if (!use) return;
    use.sessions--;
    use.ports[h.kind] -= h.weight;
    if (use.sessions <= 0) this.users.delete(h.user);
  }
}
