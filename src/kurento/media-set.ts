// Every Kurento object of the server, the client sessions that hold them, and their event
// subscriptions. Objects live while some session references them (KMS's ref/unref); a session
// whose WebSocket is gone has a grace time to `connect` back before its references are dropped,
// so a crashed application leaks nothing. Releasing is idempotent and cascades (a pipeline
// takes its elements with it); each object is announced destroyed exactly once.
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { EngineEvent, MediaEngine, MediaKind } from '../engine/types.js';
import type { SessionQuota } from '../core/sessions/quota.js';
import { KMS, KurentoError } from './errors.js';
import { Element, Pipeline, ServerManagerObject, SERVER_MANAGER_ID, EVENTS, ENGINE_EVENT, type MediaObject, type Principal } from './objects.js';
import { translateEngineEvent } from './events.js';
import { eventFrame, kurentoMediaType } from './wire.js';

/** Where a session's events go: its current WebSocket. */
export interface EventSink { send(frame: string): void }

export interface ClientSession {
  readonly id: string;
  readonly principal: Principal;
  sink?: EventSink;
  graceTimer?: NodeJS.Timeout;
  /** Objects this session references. */
  readonly refs: Set<MediaObject>;
  readonly subscriptions: Set<string>;
}

interface Subscription { session: ClientSession; object: MediaObject; type: string }

export interface MediaSetOptions { graceMs: number; maxObjectsPerUser: number; log: Logger }

export class MediaSet {
  private readonly objects = new Map<string, MediaObject>();
  private readonly byEngineId = new Map<string, Element>();
  private readonly sessions = new Map<string, ClientSession>();
  private readonly subscriptionsById = new Map<string, Subscription>();
  /** Objects held per user, against kurento.max_objects_per_user. */
  private readonly perUser = new Map<string, number>();
  readonly manager = new ServerManagerObject();
  private readonly unlisten: () => void;

  constructor(readonly engine: MediaEngine, readonly quota: SessionQuota, private readonly opts: MediaSetOptions) {
    this.objects.set(SERVER_MANAGER_ID, this.manager);
    this.unlisten = engine.onEvent((ev) => this.onEngineEvent(ev));
  }

  // ---- sessions ------------------------------------------------------------------------------

  /**
   * The session a request names (a new one when it names none). A session id someone else
   * holds, or one that expired, is an invalid session.
   */
  sessionFor(id: string | undefined, principal: Principal, sink: EventSink, opts: { mustExist: boolean }): ClientSession {
    if (id !== undefined) {
      const s = this.sessions.get(id);
      if (s) {
        if (s.principal.user !== principal.user) throw new KurentoError(KMS.INVALID_SESSION, 'Invalid session');
        if (s.sink !== sink) this.attach(s, sink);
        return s;
      }
      if (opts.mustExist) throw new KurentoError(KMS.INVALID_SESSION, 'Invalid session');
    }
    // Kept only once it holds a reference or a subscription (as KMS): requests that name no
    // session must not each leave one behind.
    return { id: id ?? randomUUID(), principal, sink, refs: new Set(), subscriptions: new Set() };
  }

  private remember(s: ClientSession): void {
    const known = this.sessions.get(s.id);
    if (known === s) return;
    if (known) throw new KurentoError(KMS.INVALID_SESSION, 'Invalid session');
    this.sessions.set(s.id, s);
  }

  private attach(s: ClientSession, sink: EventSink): void {
    clearTimeout(s.graceTimer);
    s.graceTimer = undefined;
    s.sink = sink;
  }

  /** The sink's WebSocket closed: its sessions wait the grace time for a `connect`. */
  detach(sink: EventSink): void {
    for (const s of [...this.sessions.values()]) {
      if (s.sink !== sink) continue;
      s.sink = undefined;
      if (s.refs.size === 0 && s.subscriptions.size === 0) { this.sessions.delete(s.id); continue; }
      clearTimeout(s.graceTimer);
      s.graceTimer = setTimeout(() => void this.expire(s), this.opts.graceMs);
      s.graceTimer.unref();
    }
  }

  /** Drops a session: its subscriptions, and its references (objects nobody else holds go). */
  async expire(s: ClientSession): Promise<void> {
    if (this.sessions.get(s.id) !== s) return;
    clearTimeout(s.graceTimer);
    this.sessions.delete(s.id);
    for (const sub of s.subscriptions) this.dropSubscription(sub);
    const held = [...s.refs];
    s.refs.clear();
    this.opts.log.info({ kurento_session: s.id, objects: held.length }, 'Kurento session ended; releasing what only it held');
    for (const o of held) {
      o.refs.delete(s.id);
      if (o.refs.size === 0) await this.release(o).catch((err: unknown) => this.opts.log.warn({ err, object: o.id }, 'release failed'));
    }
  }

  sessionIds(principal: Principal): string[] {
    return [...this.sessions.values()].filter((s) => principal.admin || s.principal.user === principal.user).map((s) => s.id);
  }

  // ---- objects -------------------------------------------------------------------------------

  /** The object `id`, if this principal may see it (its user's, or any for admins). */
  lookup(id: unknown, principal: Principal): MediaObject {
    if (typeof id !== 'string' || id.length === 0) throw new KurentoError(KMS.MEDIA_OBJECT_NOT_FOUND, 'Object id missing or not a string');
    const o = this.objects.get(id);
    if (!o || o.released || (o !== this.manager && !principal.admin && o.owner !== principal.user)) {
      throw new KurentoError(KMS.MEDIA_OBJECT_NOT_FOUND, `Object '${id}' not found`);
    }
    return o;
  }

  pipelines(principal: Principal): Pipeline[] {
    return [...this.objects.values()].filter((o): o is Pipeline => o instanceof Pipeline && !o.released && (principal.admin || o.owner === principal.user));
  }

  /** Every pipeline, for listings (the NkMEDIA console). */
  allPipelines(): Pipeline[] {
    return [...this.objects.values()].filter((o): o is Pipeline => o instanceof Pipeline && !o.released);
  }

  add(o: MediaObject, session: ClientSession): void {
    this.objects.set(o.id, o);
    if (o instanceof Element) {
      this.byEngineId.set(o.engineId, o);
      o.pipeline.elements.add(o);
    }
    this.ref(o, session);
    this.perUser.set(o.owner, (this.perUser.get(o.owner) ?? 0) + 1);
    this.emit(this.manager, 'ObjectCreated', { object: o.id }, o.owner);
  }

  ref(o: MediaObject, session: ClientSession): void {
    if (o === this.manager) return;
    this.remember(session);
    o.refs.add(session.id);
    session.refs.add(o);
  }

  /** Drops a session's reference; the object goes with the last one. */
  async unref(o: MediaObject, session: ClientSession): Promise<void> {
    if (o === this.manager) return;
    o.refs.delete(session.id);
    session.refs.delete(o);
    if (o.refs.size === 0) await this.release(o);
  }

  /**
   * Releases an object (and a pipeline's elements): cut out of the graph, the engine element
   * freed, quota returned, subscriptions dropped, `ObjectDestroyed` announced.
   */
  async release(o: MediaObject): Promise<void> {
    if (o.released || o === this.manager) return;
    o.released = true;
    if (o instanceof Pipeline) {
      for (const el of [...o.elements]) await this.release(el);
    } else if (o instanceof Element) {
      // Sinks fed by this element lose that source (and hear about it).
      for (const el of o.pipeline.elements) {
        for (const [kind, link] of [...el.sources]) {
          if (link.source !== o) continue;
          el.sources.delete(kind);
          this.emit(o, 'ElementDisconnected', { sink: el.id, mediaType: kurentoMediaType(kind), sourceMediaDescription: link.sourceDescription, sinkMediaDescription: link.sinkDescription });
        }
      }
      o.sources.clear();
      if (o.stopping) await o.stopping.catch(() => undefined);
      try {
        await this.engine.release(o.engineId);
      } catch (err) {
        this.opts.log.warn({ err, object: o.id }, 'engine release failed');
      }
      this.byEngineId.delete(o.engineId);
      o.pipeline.elements.delete(o);
      this.quota.release(o.id);
    }
    this.objects.delete(o.id);
    for (const set of o.subscriptions.values()) for (const sub of set) this.dropSubscription(sub);
    for (const id of o.refs) this.sessions.get(id)?.refs.delete(o);
    o.refs.clear();
    const left = (this.perUser.get(o.owner) ?? 1) - 1;
    if (left <= 0) this.perUser.delete(o.owner); else this.perUser.set(o.owner, left);
    this.emit(this.manager, 'ObjectDestroyed', { objectId: o.id }, o.owner);
  }

  // ---- events --------------------------------------------------------------------------------

  subscribe(session: ClientSession, o: MediaObject, type: string): string {
    if (!EVENTS[o.type].includes(type)) throw new KurentoError(KMS.MEDIA_OBJECT_EVENT_NOT_SUPPORTED, `${o.type} has no event '${type}'`);
    this.remember(session);
    const id = randomUUID();
    this.subscriptionsById.set(id, { session, object: o, type });
    session.subscriptions.add(id);
    let set = o.subscriptions.get(type);
    if (!set) o.subscriptions.set(type, (set = new Set()));
    set.add(id);
    return id;
  }

  unsubscribe(session: ClientSession, id: unknown): void {
    const sub = typeof id === 'string' ? this.subscriptionsById.get(id) : undefined;
    // KMS answers unsubscribing from something gone without complaint: the object may have been released.
    if (sub && sub.session !== session) throw new KurentoError(KMS.MEDIA_OBJECT_NOT_FOUND, 'Subscription not found');
    if (typeof id === 'string') this.dropSubscription(id);
  }

  private dropSubscription(id: string): void {
    const sub = this.subscriptionsById.get(id);
    if (!sub) return;
    this.subscriptionsById.delete(id);
    sub.session.subscriptions.delete(id);
    sub.object.subscriptions.get(sub.type)?.delete(id);
  }

  /**
   * Sends `type` to every session subscribed to it on `o`; with `about`, only to sessions of
   * that user and admins (the shared ServerManager's events name other users' objects).
   */
  emit(o: MediaObject, type: string, data: Record<string, unknown>, about?: string): void {
    const subs = o.subscriptions.get(type);
    if (!subs || subs.size === 0) return;
    const frame = eventFrame(o.id, type, data, o.sendTagsInEvents ? o.tagList() : []);
    for (const id of subs) {
      const s = this.subscriptionsById.get(id)?.session;
      if (s && (about === undefined || s.principal.admin || s.principal.user === about)) s.sink?.send(frame);
    }
  }

  /** Refuses a new object when its user already holds the most allowed (pipelines and elements together). */
  checkRoom(user: string): void {
    const n = this.perUser.get(user) ?? 0;
    if (n >= this.opts.maxObjectsPerUser) throw new KurentoError(KMS.NOT_ENOUGH_RESOURCES, `user ${user} holds ${n} Kurento objects (limit ${this.opts.maxObjectsPerUser})`);
  }

  private onEngineEvent(ev: EngineEvent): void {
    const el = this.byEngineId.get(ev.elementId);
    if (!el || el.released) return;
    for (const out of translateEngineEvent(el, ev)) this.emit(el, out.type, out.data);
    this.emitEngineEvent(el, ev);
    if (ev.type === 'player_state' && ev.state === 'eos') this.onEndOfStream(el);
  }

  /**
   * The extension event (ENGINE_EVENT): the engine event as it is, less the engine's own ids and
   * tag (the element is named by its Kurento id) and less an error's `detail` (the engine's log
   * words, not for clients).
   */
  private emitEngineEvent(el: Element, ev: EngineEvent): void {
    if (!el.subscriptions.get(ENGINE_EVENT)?.size && !el.pipeline.subscriptions.get(ENGINE_EVENT)?.size) return;
    const { elementId: _id, tag: _tag, ...rest } = ev as EngineEvent & { detail?: unknown };
    delete rest.detail;
    const data = { element: el.id, event: rest };
    this.emit(el, ENGINE_EVENT, data);
    this.emit(el.pipeline, ENGINE_EVENT, data);
  }

  /** A player's end: recorders fed by it that asked to, stop (stopOnEndOfStream). */
  private onEndOfStream(player: Element): void {
    for (const el of player.pipeline.elements) {
      if (el.elementType !== 'RecorderEndpoint' || !el.recording?.stopOnEndOfStream || el.uriState === 'STOP') continue;
      if (![...el.sources.values()].some((l) => l.source === player)) continue;
      el.uriState = 'STOP';
      el.finished = true;
      el.stopping = this.engine.recorderStop(el.engineId).catch((err: unknown) => this.opts.log.warn({ err, object: el.id }, 'recorder stop failed'));
    }
  }

  /** Connections of the pipeline whose source is `source` (optionally one kind). */
  sinkLinks(source: Element, kind?: MediaKind): { sink: Element; kind: MediaKind; sourceDescription: string; sinkDescription: string }[] {
    const out = [];
    for (const el of source.pipeline.elements) {
      for (const [k, link] of el.sources) {
        if (link.source === source && (kind === undefined || k === kind)) out.push({ sink: el, kind: k, sourceDescription: link.sourceDescription, sinkDescription: link.sinkDescription });
      }
    }
    return out;
  }

  async close(): Promise<void> {
    this.unlisten();
    for (const s of this.sessions.values()) clearTimeout(s.graceTimer);
    for (const p of this.allPipelines()) await this.release(p);
    for (const o of [...this.objects.values()]) await this.release(o);
    this.sessions.clear();
  }
}
