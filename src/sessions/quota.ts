// Admission of media sessions: a count cap and a descriptor budget for the whole server, and per
// user a count cap and (with a configured port range) at most half of that range. Each session
// is charged to a user — its owner, or for a call leg the user who placed the call — so ringing
// someone never uses up the callee's own allowance. System principals (SIP) have their own caps
// at the SIP layer and only meet the server-wide ones here.
import { ApiError } from '../protocol/errors.js';
import { displayUser, isSystemUser } from '../util/principals.js';

export type SessionKind = 'webrtc' | 'rtp';

export interface QuotaLimits {
  maxSessions: number;
  /** Descriptors all sessions together may hold. */
  sessionDescriptors: number;
  maxSessionsPerUser: number;
  /** Descriptors (UDP ports) one session of each kind holds. */
  weights: Record<SessionKind, number>;
  /** Port range sizes, when ranges are configured. */
  portRanges: Partial<Record<SessionKind, number>>;
}

interface Held { user: string; kind: SessionKind; weight: number }
interface UserUse { sessions: number; ports: Record<SessionKind, number> }

export const UNLIMITED: QuotaLimits = {
  maxSessions: Infinity, sessionDescriptors: Infinity, maxSessionsPerUser: Infinity,
  weights: { webrtc: 1, rtp: 4 }, portRanges: {},
};

export class SessionQuota {
  private readonly held = new Map<string, Held>();
  private readonly users = new Map<string, UserUse>();
  private descriptors = 0;

  constructor(readonly limits: QuotaLimits) {}

  get sessions(): number { return this.held.size; }
  get descriptorsHeld(): number { return this.descriptors; }

  /** Sessions charged to a user now. */
  sessionsOf(user: string): number { return this.users.get(user)?.sessions ?? 0; }

  /** Reserves room for session `id`; throws `too_many_sessions` naming the cap that is reached. */
  reserve(id: string, user: string, kind: SessionKind): void {
    if (this.held.has(id)) return;
    const l = this.limits;
    const weight = l.weights[kind];
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
      if (range !== undefined && use.ports[kind] + weight > Math.max(weight, Math.floor(range / 2))) {
        throw new ApiError('too_many_sessions', `user ${displayUser(user)} holds ${use.ports[kind]} of the ${range} media ports; one user may hold at most half`);
      }
    }
    use.sessions++;
    use.ports[kind] += weight;
    this.users.set(user, use);
    this.held.set(id, { user, kind, weight });
    this.descriptors += weight;
  }

  release(id: string): void {
    const h = this.held.get(id);
    if (!h) return;
    this.held.delete(id);
    this.descriptors -= h.weight;
    const use = this.users.get(h.user);
    if (!use) return;
    use.sessions--;
    use.ports[h.kind] -= h.weight;
    if (use.sessions <= 0) this.users.delete(h.user);
  }
}
