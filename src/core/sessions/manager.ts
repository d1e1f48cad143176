// The set of live media sessions: creation (ids, duplicates, visibility of peers), lookup with
// ownership, and the routing of engine events to their session.
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { ApiError, type ErrorTerm } from '../../protocol/errors.js';
import { checkSdp } from '../../protocol/sdp.js';
import { BACKEND, FOREIGN_TYPES, type CreateRequest, type SdpObject, type SessionType } from '../../protocol/session-schemas.js';
import type { MediaEngine } from '../../engine/types.js';
import { Session, type Owner, type SessionRegistry, type TypeTarget } from './session.js';
import type { RoomManager } from '../rooms/manager.js';
import { playableUri, type MediaPaths } from './media-paths.js';
import { SessionQuota, UNLIMITED } from './quota.js';

/** The fields of create/set_type that choose a type and what it points at. */
export interface TypeFields { type: string; peer_id?: string; room_id?: string; publisher_id?: string; uri?: string; loops?: number }

/** Who is asking: a user, possibly an admin, on one connection. */
export interface Caller {
  user: string;
  admin: boolean;
  connId: string;
}

export interface CreateResult { session_id: string; room_id?: string; offer?: SdpObject; answer?: SdpObject }

export interface SessionManagerEvents {
  /** A session was made and is about to start (listen to its events from here). */
  session: [session: Session];
}

export class SessionManager implements SessionRegistry {
  /** Announces each new session before it starts (the API publishes their events from here). */
  readonly events = new EventEmitter<SessionManagerEvents>();
  private readonly sessions = new Map<string, Session>();
  private readonly byTag = new Map<string, Session>();
  private seq = 0;
  private readonly unsubscribeEngine: () => void;

  constructor(
    private readonly engine: MediaEngine,
    readonly rooms: RoomManager,
    readonly paths: MediaPaths,
    private readonly log: Logger,
    readonly quota: SessionQuota = new SessionQuota(UNLIMITED),
  ) {
    this.unsubscribeEngine = engine.onEvent((ev) => this.byTag.get(ev.tag)?.onEngineEvent(ev));
  }

  get size(): number { return this.sessions.size; }

  /** A fresh session id (used by the API to subscribe its creator before the session starts). */
  newId(): string { return `session-${randomUUID()}`; }

  /** Fails early on what would make creation fail, so nothing is started for a bad request. */
  checkCreate(req: CreateRequest, caller: Caller, id: string): void {
    if (req.backend !== undefined && req.backend !== BACKEND) throw new ApiError('unknown_backend');
    if (this.sessions.has(id)) throw new ApiError('duplicated_session_id');
    if (req.type === 'bridge' && req.peer_id === id) throw new ApiError('invalid_value', 'peer_id: a session cannot bridge with itself');
    this.resolveType(req, caller);
    const sdpType = req.offer ? (req.offer.sdp_type ?? 'webrtc') : (req.sdp_type ?? 'webrtc');
    if (req.offer) checkSdp(req.offer.sdp, sdpType);
    if (sdpType === 'rtp' && (req.no_offer_trickle_ice || req.no_answer_trickle_ice || req.offer?.trickle_ice)) {
      throw new ApiError('invalid_parameters', 'plain RTP (sdp_type "rtp") has no ICE: trickle and candidate buffering options do not apply');
    }
    if (req.master_id !== undefined) this.getFor(req.master_id, caller, 'unknown_peer');
  }

  /**
   * Resolves and checks a type request: required fields, the peer (yours), the room (it must
   * exist when named), the publisher (any user's, but it must be publishing).
   */
  resolveType(req: TypeFields, caller: Caller): TypeTarget {
    if ((FOREIGN_TYPES as readonly string[]).includes(req.type)) throw new ApiError('not_implemented', `type "${req.type}" (not a Kurento-backend type)`);
    const type = req.type as SessionType;
    switch (type) {
      case 'bridge':
        if (!req.peer_id) throw new ApiError('missing_field', 'peer_id');
        return { type, peer: this.getFor(req.peer_id, caller, 'unknown_peer') };
      case 'publish':
        if (req.room_id !== undefined) this.rooms.get(req.room_id);
        return { type, roomId: req.room_id };
      case 'listen': {
        if (!req.publisher_id) throw new ApiError('missing_field', 'publisher_id');
        const publisher = this.sessions.get(req.publisher_id);
        // Listening leaves the target untouched whatever it is (docs/API.md §5.1).
        if (!publisher || publisher.isStopped || publisher.type !== 'publish' || !publisher.room) throw new ApiError('invalid_publisher');
        if (req.room_id !== undefined && req.room_id !== publisher.room.id) throw new ApiError('invalid_publisher', `it publishes in another room`);
        return { type, publisher };
      }
      case 'play':
        if (!req.uri) throw new ApiError('missing_field', 'uri');
        return { type, uri: playableUri(this.paths, caller.user, req.uri), loops: req.loops ?? 0 };
      default:
        return { type };
    }
  }

  /**
   * Creates and starts a session. The caller has already subscribed its connection to the
   * session's events under `id`, so it misses none (docs/API.md §5, `subscribe`); `onSession`
   * gets the session object before it starts, to listen to its domain events.
   */
  async create(req: CreateRequest, caller: Caller, id: string, owner: Owner, hooks: { onSession?(s: Session): void } = {}): Promise<CreateResult> {
    this.checkCreate(req, caller, id);
    const target = this.resolveType(req, caller);
    const kind = (req.offer ? req.offer.sdp_type : req.sdp_type) ?? 'webrtc';
    // Charged before anything is bound; released when the session is removed, however it ends.
    this.quota.reserve(id, owner.charge ?? owner, kind);
    const session = new Session({ engine: this.engine, registry: this, rooms: this.rooms, paths: this.paths, log: this.log }, id, ++this.seq, req, owner);
    this.sessions.set(id, session);
    this.byTag.set(session.tag, session);
    // Before it starts: whoever acts on its events misses none.
    this.events.emit('session', session);
    hooks.onSession?.(session);
    if (req.master_id !== undefined) session.linkMaster(this.getFor(req.master_id, caller, 'unknown_peer'));
    this.log.info({ session: id, type: req.type, role: session.role, user: caller.user }, 'session created');
    const started = session.start(target);
    if (req.wait_reply) {
      // The reply goes as soon as our SDP exists: gathering and wiring the type go on meanwhile
      // (on a remote media node each is a round trip the client need not wait for). A failure
      // after that stops the session, which the client hears as `destroyed`.
      started.catch(() => undefined);
      await Promise.race([started, session.waitReply().then(() => undefined, () => undefined)]);
    } else {
      await started;
    }
    if (session.isStopped) {
      // Fails only once `destroyed` is out: the creator's subscription must outlive it.
      await session.whenDestroyed;
      throw session.stopError ?? new ApiError('session_failed');
    }
    // Publish and listen replies name their room (docs/API.md §5).
    const room = session.room ? { room_id: session.room.id } : {};
    if (!req.wait_reply) return { session_id: id, ...room };
    try {
      return { session_id: id, ...room, ...(await session.waitReply()) };
    } catch (err) {
      // The original stops a session whose wait_reply failed, and fails the request with it.
      const e = err instanceof ApiError ? err : new ApiError('session_failed');
      await session.stop(e.term, e.detail);
      // The session may have stopped itself (no_ice_candidates) and still be releasing: the
      // creator's subscription is dropped after this throw, so it must have seen `destroyed`.
      await session.whenDestroyed;
      throw e;
    }
  }

  /** The session if this caller may see it; another user's session is "not found". */
  getFor(id: string, caller: Caller, notFound: ErrorTerm = 'session_not_found'): Session {
    const s = this.sessions.get(id);
    if (!s || s.isStopped || !s.visibleTo(caller)) throw new ApiError(notFound);
    return s;
  }

  lookup(id: string): Session | undefined { return this.sessions.get(id); }

  list(caller: Caller): Session[] {
    return [...this.sessions.values()].filter((s) => s.visibleTo(caller));
  }

  removed(session: Session): void {
    if (this.sessions.get(session.id) === session) {
      this.sessions.delete(session.id);
      this.quota.release(session.id);
    }
    this.byTag.delete(session.tag);
  }

  /** Stops every session a connection created (`registered_down`, docs/API.md §8). */
  async stopOwnedBy(connId: string, term: ErrorTerm): Promise<void> {
    const owned = [...this.sessions.values()].filter((s) => s.owner.connId === connId);
    await Promise.all(owned.map((s) => s.stop(term)));
  }

  async stopAll(term: ErrorTerm): Promise<void> {
    await Promise.all([...this.sessions.values()].map((s) => s.stop(term)));
  }

  close(): void { this.unsubscribeEngine(); }
}
