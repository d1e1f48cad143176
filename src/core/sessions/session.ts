// One media session: SDP sequencing for both roles, trickle ICE and server-side candidate
// buffering, timers, master/slave links, the type's wiring and the session's events
// (docs/API.md §5, §7, §8). It talks to media only through the engine interface.
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { ApiError, causeOf, type ErrorTerm, type StopCause } from '../../protocol/errors.js';
import { checkSdp, countCandidates, insertCandidates, stripCandidates, type CandidateInit } from '../../protocol/sdp.js';
import { BACKEND, SESSION_TYPES, type CreateRequest, type SdpObject, type SessionType } from '../../protocol/session-schemas.js';
import type { ConnectionState, ElementId, EngineEvent, MediaEngine, MediaKind, Placement } from '../../engine/types.js';
import { EngineError, MEDIA_KINDS, NODE_DOWN } from '../../engine/types.js';
import { CandidateCollector } from './candidate-collector.js';
import type { RoomManager } from '../rooms/manager.js';
import type { Room } from '../rooms/room.js';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { pathToFileURL } from 'node:url';
import { recordingTarget, type MediaPaths } from './media-paths.js';
import { deferred, SerialQueue, withTimeout, type Deferred } from '../../util/deferred.js';
import { Lock, withLocks } from '../../util/lock-set.js';
import type { Charge } from './quota.js';
import { typeExtOf, type TypeState } from './type-state.js';

/** How long get_offer/get_answer/wait_reply wait for an SDP that is not buffered (docs/API.md §5). */
export const SDP_WAIT_MS = 5000;

export interface Owner {
  user: string;
  connId: string;
  /** Who the session counts against for limits (default: the owner). A call leg: the caller. */
  charge?: Charge;
  /** Other users who may see and act on the session (a call leg's callee). */
  parties?: readonly string[];
}

export interface SessionRegistry {
  lookup(id: string): Session | undefined;
  removed(session: Session): void;
}

export interface SessionEnv {
  engine: MediaEngine;
  registry: SessionRegistry;
  rooms: RoomManager;
  paths: MediaPaths;
  log: Logger;
}

/** A session type with what it points at, resolved and checked by the session manager. */
export interface TypeTarget {
  type: SessionType;
  /** bridge: the other session. */
  peer?: Session;
  /** publish: the room to join (absent: a new room). */
  roomId?: string;
  /** listen: the publishing session. */
  publisher?: Session;
  /** play: a checked URI (file path or http(s)) and how many times (0 = forever). */
  uri?: string;
  loops?: number;
}

type Role = 'offeree' | 'offerer';
type State = 'starting' | 'wait_answer' | 'ready' | 'stopped';

interface MuteState { audio: boolean; video: boolean; data: boolean }

/** What a change of type did to the sessions it holds: who is rewired once it is done, who stops. */
interface TypeChange { rewire: Set<Session>; stops: Session[] }

/** Domain events of a session (its `events` emitter). */
export interface SessionEvents {
  /** The session exists and is starting (its info is readable). */
  created: [];
  /** The transport to the client (ICE/DTLS, or RTP) came up or went down. */
  connection: [status: 'up' | 'down'];
  /** Media of one kind started or stopped flowing from (`in`) or to (`out`) the client. */
  mediaFlow: [flow: { direction: 'in' | 'out'; media: MediaKind; state: 'up' | 'down' }];
  /** The recording's state; `error` when it stopped because of one. */
  recorder: [rec: { state: 'recording' | 'paused' | 'stopped'; path: string; error?: string }];
  /** The player's state (position in ms); `error` (and its code) when it stopped because of one. */
  player: [play: { state: 'playing' | 'paused' | 'stopped' | 'eos'; position?: number; error?: string; code?: string }];
  /** The type or what it points at changed (read `typeState`). */
  typeChanged: [];
  /** Something at the endpoint the client can act on (a data message too large, a codec mismatch). */
  problem: [p: { code?: string; text: string }];
  /** Video is not forwarded between two peers that negotiated different codecs (audio is). */
  codecMismatch: [m: { media: 'video'; detail: string }];
  /** Our answer to the client's offer, or the client's answer to ours, is set. */
  answer: [answer: SdpObject];
  /** A candidate of ours for the client (trickle ICE). */
  candidate: [candidate: Required<Pick<CandidateInit, 'candidate' | 'sdpMLineIndex'>> & { sdpMid: string }];
  /** Our candidates are complete. */
  candidateEnd: [];
  /** The session stopped, and why (its elements are released). */
  stopped: [cause: StopCause];
}

export class Session {
  readonly id: string;
  readonly tag: string;
  readonly role: Role;
  readonly owner: Owner;
  /** What the session is (its type) and what that type points at: one of the shapes of TypeState. */
  typeState: TypeState = { type: 'park' };
  get type(): SessionType { return this.typeState.type; }
  /** The type's fields as the wire names them (`type_ext`). */
  get typeExt(): Record<string, unknown> { return typeExtOf(this.typeState); }
  state: State = 'starting';
  offer?: SdpObject;
  answer?: SdpObject;
  masterId?: string;
  readonly slaveIds = new Set<string>();
  readonly mute: MuteState;
  bitrate?: number;
  videoLayer: string;
  /** Why it stopped (once stopped). */
  stopCause?: StopCause;
  /** Why the session stopped, as an error for requests that were waiting on it. */
  stopError?: ApiError;
  readonly startTime = Date.now();
  stopTime?: number;

  private endpoint?: ElementId;
  /** What this session's client sends, for every consumer (echo, bridge peer, ...). */
  proxy?: ElementId;
  /** The element currently feeding our endpoint (what our client hears and sees). */
  private downSource?: ElementId;
  private downKinds: MediaKind[] = [];
  /** The active recording, if any, and how many default file names were handed out. */
  private recorder?: { id: ElementId; path: string; format: 'webm' | 'mp4' };
  private recordings = 0;
  /** The player of a `play` session. */
  private player?: ElementId;
  /** A player being started by a switch to `play` (not yet `player`). */
  private startingPlayer?: ElementId;
  private remoteSet = false;
  private readonly pendingClientCandidates: CandidateInit[] = [];
  private clientCollector?: CandidateCollector;
  private backendCollector?: CandidateCollector;
  /** Backend candidates found before the SDP they belong to was announced. */
  private heldCandidateEvents: (CandidateInit | 'end')[] | undefined = [];
  private timer?: NodeJS.Timeout;
  private readonly offerReady: Deferred<SdpObject> = deferred();
  private readonly answerReady: Deferred<SdpObject> = deferred();
  private readonly stopped: Deferred<void> = deferred();
  private readonly destroyed: Deferred<void> = deferred();
  /** Orders this session's own commands (and its SDP steps), one at a time. */
  private readonly queue = new SerialQueue();
  /**
   * Guards this session's wiring: its type (typeState, room membership, player) and its downlink.
   * Whoever changes them holds it, whichever session asked (a peer bridging onto this one, or
   * leaving it); a change touching several sessions takes all their locks at once (withLocks, in
   * id order, so two cannot deadlock). A command may wait for wiring locks while holding its queue
   * turn, but nothing holding a wiring lock ever waits for a queue, a lock it holds, or a stop.
   */
  private readonly wiring: Lock;
  private connection: ConnectionState = 'new';
  /** Elements being released after a switch (an old player): a stop waits for them. */
  private readonly releasing = new Set<Promise<void>>();
  private readonly mediaIn = new Map<MediaKind, 'up' | 'down'>();
  /** While set, only the holder of this key may answer or wire the session (a ringing call). */
  private lockKey?: object;
  private lockReason = '';
  private readonly mediaOut = new Map<MediaKind, 'up' | 'down'>();
  /**
   * The session's domain events, for the layers that act on them (calls, the SIP gateway):
   * typed, in the domain's terms. Front doors translate them to their own wire.
   */
  readonly events = new EventEmitter<SessionEvents>();

  constructor(
    private readonly env: SessionEnv,
    id: string,
    seq: number,
    readonly opts: CreateRequest,
    owner: Owner,
  ) {
    this.id = id;
    this.tag = `${id}#${seq}`;
    this.wiring = new Lock(id);
    this.owner = owner;
    this.role = opts.offer ? 'offeree' : 'offerer';
    this.mute = { audio: opts.mute_audio ?? false, video: opts.mute_video ?? false, data: opts.mute_data ?? false };
    this.bitrate = opts.bitrate;
    this.videoLayer = opts.video_layer ?? 'high';
  }

  get isStopped(): boolean { return this.state === 'stopped'; }

  /** Admins, the owner and the session's parties see it and act on it. */
  visibleTo(who: { user: string; admin: boolean }): boolean {
    return who.admin || this.owner.user === who.user || (this.owner.parties?.includes(who.user) ?? false);
  }
  /** Resolves once the session has stopped (whatever stopped it). */
  get whenStopped(): Promise<void> { return this.stopped.promise; }
  /** Resolves once the stop is complete: elements released, `destroyed` sent to subscribers. */
  get whenDestroyed(): Promise<void> { return this.destroyed.promise; }
  /** Plain RTP (SIP) or WebRTC: fixed by the offer, or by `sdp_type` when we offer. */
  get sdpType(): 'webrtc' | 'rtp' { return (this.role === 'offeree' ? this.opts.offer?.sdp_type : this.opts.sdp_type) ?? 'webrtc'; }
  get stopAfterPeer(): boolean { return this.opts.stop_after_peer ?? true; }
  get trickleTimeoutMs(): number { return this.opts.trickle_ice_timeout ?? 5000; }

  /** Longest a client may have to wait for our SDP: buffering can hold it for the trickle timeout. */
  get replyWaitMs(): number {
    const buffering = this.opts.no_offer_trickle_ice || this.opts.no_answer_trickle_ice;
    return SDP_WAIT_MS + (buffering ? this.trickleTimeoutMs : 0);
  }

  // ---- life cycle ----------------------------------------------------------------------------

  /** Starts the session; resolves once the first SDP step is under way (errors stop it). */
  start(target: TypeTarget): Promise<void> {
    this.events.emit('created');
    this.armTimer(this.opts.wait_timeout ?? 60, 'wait');
    return this.queue.run(async () => {
      try {
        // Both elements at once, kept together (`with`): one round trip to a remote node, not two.
        const mine = { tag: this.tag, placement: { ...this.placementFor(target), with: this.tag } };
        const made = await Promise.allSettled([
          this.own(this.env.engine.createPassThrough(mine)),
          this.own(this.sdpType === 'rtp' ? this.env.engine.createRtpEndpoint(mine) : this.env.engine.createWebRtcEndpoint(mine)),
        ]);
        if (this.isStopped) {
          // Stopped while they were made: the stop released nothing of them, so they go here.
          for (const r of made) if (r.status === 'fulfilled') await this.env.engine.release(r.value).catch(() => undefined);
          throw this.stopError ?? new ApiError('session_stopped');
        }
        if (made[0].status === 'fulfilled') this.proxy = made[0].value;
        if (made[1].status === 'fulfilled') this.endpoint = made[1].value;
        for (const r of made) if (r.status === 'rejected') throw r.reason;
        const endpoint = this.endpoint!;
        // The uplink does not depend on the SDP: it is connected while the offer is processed.
        const uplink = this.applyUplink();
        uplink.catch(() => undefined);
        if (this.bitrate) await this.env.engine.setMaxBitrate(endpoint, this.bitrate);
        if (this.videoLayer !== 'high') await this.env.engine.setVideoLayer(endpoint, this.videoLayer);
        // Joining the type now (rooms, bridge peers); the media is wired once the answer exists.
        await this.changeType(target);
        if (this.role === 'offeree') await this.takeClientSdp('offer', { ...this.opts.offer! });
        else await this.makeOffer();
        await uplink;
      } catch (err) {
        await this.failWith(err);
      }
    });
  }

  /**
   * Where this session's media should live when there are several media nodes: with what it will
   * hear or feed (its bridge peer, its publisher, its master), or wherever there is room.
   */
  private placementFor(target: TypeTarget): Placement {
    if (target.type === 'listen' && target.publisher?.proxy) return { near: target.publisher.proxy, room: target.publisher.room?.id };
    if (target.type === 'bridge' && target.peer?.proxy) return { near: target.peer.proxy };
    const master = this.masterId !== undefined ? this.env.registry.lookup(this.masterId) : undefined;
    if (master?.proxy) return { near: master.proxy };
    return {};
  }

  /** Resolves with the SDP the creator waits for (`wait_reply`). */
  async waitReply(): Promise<{ offer?: SdpObject; answer?: SdpObject }> {
    const which = this.role === 'offerer' ? 'offer' : 'answer';
    const sdp = await this.waitSdp(which, this.replyWaitMs);
    return which === 'offer' ? { offer: sdp } : { answer: sdp };
  }

  waitSdp(which: 'offer' | 'answer', ms = this.replyWaitMs): Promise<SdpObject> {
    if (this.isStopped) return Promise.reject(this.stopError ?? new ApiError('session_stopped'));
    const d = which === 'offer' ? this.offerReady : this.answerReady;
    const stop = this.stopped.promise.then(() => { throw this.stopError ?? new ApiError('session_stopped'); });
    return withTimeout(Promise.race([d.promise, stop]), ms, () => new ApiError('timeout'));
  }

  async stop(term: ErrorTerm, detail?: string): Promise<void> {
    if (this.isStopped) return;
    this.state = 'stopped';
    this.stopTime = Date.now();
    this.stopCause = causeOf(term, detail);
    this.stopError = new ApiError(term, detail);
    clearTimeout(this.timer);
    this.clientCollector?.cancel();
    this.backendCollector?.cancel();
    this.heldCandidateEvents = undefined;
    this.offerReady.reject(this.stopError);
    this.answerReady.reject(this.stopError);
    this.stopped.resolve();
    this.env.registry.removed(this);
    this.env.log.info({ session: this.id, reason: term, detail }, 'session stopped');
    for (const peerId of [this.masterId, ...this.slaveIds]) {
      if (peerId) void this.env.registry.lookup(peerId)?.peerStopped(this.id);
    }
    // Our own type is left now; the bridge peer is told under its lock, later: whoever stops us may
    // hold that lock (a switch whose cascade stops us), so a stop never waits for one.
    const peerId = this.leaveType();
    if (peerId !== undefined) void this.peerLeft(peerId);
    // A recording is finalised before anything goes (docs/API.md §5.6).
    await this.stopRecorder().catch((err) => this.env.log.warn({ session: this.id, err: String(err) }, 'recorder stop failed'));
    const elements = [this.endpoint, this.proxy, this.player].filter((e): e is string => e !== undefined);
    this.endpoint = undefined;
    this.proxy = undefined;
    this.player = undefined;
    await Promise.all([...elements.map((e) => this.env.engine.release(e).catch(() => undefined)), ...this.releasing]);
    this.events.emit('stopped', this.stopCause);
    this.events.removeAllListeners();
    this.destroyed.resolve();
  }

  // ---- locking -------------------------------------------------------------------------------

  /**
   * Reserves answering and wiring (set_answer, set_type, being a bridge peer) for the holder of
   * `key`: a call locks its sessions while it rings, so that a rung callee cannot hear the caller
   * before accepting. Everything else (get_info, stats, mutes, candidates) stays open.
   */
  lock(key: object, reason: string): void {
    this.lockKey = key;
    this.lockReason = reason;
  }

  unlock(key: object): void {
    if (this.lockKey === key) this.lockKey = undefined;
  }

  private assertUnlocked(key?: object): void {
    if (this.lockKey !== undefined && this.lockKey !== key) throw new ApiError('invalid_operation', this.lockReason);
  }

  // ---- master / slave ------------------------------------------------------------------------

  linkMaster(master: Session): void {
    this.masterId = master.id;
    master.slaveIds.add(this.id);
  }

  private async peerStopped(peerId: string): Promise<void> {
    if (this.masterId === peerId) this.masterId = undefined;
    else if (!this.slaveIds.delete(peerId)) return;
    if (this.stopAfterPeer) await this.stop('peer_stopped');
  }

  // ---- SDP sequencing ------------------------------------------------------------------------

  /** The client's answer to our offer (API `set_answer`, or a slave with set_master_answer). */
  setAnswer(answer: SdpObject, key?: object): Promise<void> {
    return this.queue.run(async () => {
      this.assertLive();
      this.assertUnlocked(key);
      if (this.role !== 'offerer' || !this.offer) throw new ApiError('offer_not_set');
      if (this.answer || this.clientCollector) throw new ApiError('answer_already_set');
      // The answer is of the offer's kind; a client that says otherwise is mistaken.
      if (answer.sdp_type !== undefined && answer.sdp_type !== this.sdpType) throw new ApiError('invalid_sdp', `the offer was sdp_type "${this.sdpType}", the answer says "${answer.sdp_type}"`);
      checkSdp(answer.sdp, this.sdpType);
      await this.takeClientSdp('answer', { ...answer });
    });
  }

  /**
   * A new offer from the remote of a live plain-RTP session (a SIP re-INVITE: hold, resume,
   * a moved phone): the endpoint keeps its ports and returns our answer.
   */
  reoffer(sdp: string): Promise<string> {
    return this.queue.run(async () => {
      this.assertLive();
      if (this.sdpType !== 'rtp' || !this.answer) throw new ApiError('invalid_state', 're-offers are for established plain RTP sessions');
      checkSdp(sdp, 'rtp');
      const ep = this.requireEndpoint();
      return this.engineCall(() => this.env.engine.processOffer(ep, sdp));
    });
  }

  /** A client SDP: processed now, or after its candidates are collected (no_*_trickle_ice). */
  private async takeClientSdp(which: 'offer' | 'answer', sdp: SdpObject): Promise<void> {
    const buffer = which === 'offer' ? this.opts.no_offer_trickle_ice : this.opts.no_answer_trickle_ice;
    if (which === 'offer') this.offer = sdp;
    if (sdp.trickle_ice && buffer && this.sdpType === 'webrtc') {
      this.clientCollector = new CandidateCollector(this.trickleTimeoutMs, (candidates) => {
        void this.queue.run(() => this.consolidateClientSdp(which, sdp, candidates)).catch((err) => this.failWith(err));
      });
      // Candidates that raced ahead of the SDP belong to this collection.
      for (const c of this.pendingClientCandidates.splice(0)) this.clientCollector.add(c);
      return;
    }
    await this.processClientSdp(which, sdp);
  }

  private async consolidateClientSdp(which: 'offer' | 'answer', sdp: SdpObject, candidates: CandidateInit[]): Promise<void> {
    if (this.isStopped) return;
    if (candidates.length + countCandidates(sdp.sdp) === 0) {
      await this.stop('no_ice_candidates');
      return;
    }
    const full: SdpObject = { ...sdp, sdp: insertCandidates(sdp.sdp, candidates), trickle_ice: false };
    if (which === 'offer') this.offer = full;
    await this.processClientSdp(which, full);
  }

  private async processClientSdp(which: 'offer' | 'answer', sdp: SdpObject): Promise<void> {
    const ep = this.requireEndpoint();
    if (which === 'offer') {
      const answerSdp = await this.engineCall(() => this.env.engine.processOffer(ep, sdp.sdp));
      this.remoteSet = true;
      await this.flushClientCandidates();
      // The answer object echoes the client's offer object with our fields (docs/API.md §5).
      if (this.sdpType === 'rtp') {
        await this.backendSdpReady('answer', { ...sdp, sdp: answerSdp, sdp_type: 'rtp', trickle_ice: false, backend: BACKEND });
        return;
      }
      const answer: SdpObject = { ...sdp, sdp: stripCandidates(answerSdp), sdp_type: 'webrtc', trickle_ice: true, backend: BACKEND };
      await this.announceBackendSdp('answer', answer);
    } else {
      await this.engineCall(() => this.env.engine.processAnswer(ep, sdp.sdp));
      this.remoteSet = true;
      await this.flushClientCandidates();
      await this.answerSet(sdp);
    }
  }

  private async makeOffer(): Promise<void> {
    const ep = this.requireEndpoint();
    if (this.sdpType === 'rtp') {
      // Plain RTP has no data channel; the address is in the SDP, nothing to gather.
      const sdp = await this.engineCall(() => this.env.engine.generateOffer(ep, { audio: true, video: true, data: false }));
      await this.backendSdpReady('offer', { sdp, sdp_type: 'rtp', trickle_ice: false, backend: BACKEND });
      return;
    }
    const sdp = await this.engineCall(() => this.env.engine.generateOffer(ep, { audio: true, video: true, data: true }));
    const offer: SdpObject = { sdp: stripCandidates(sdp), sdp_type: 'webrtc', trickle_ice: true, backend: BACKEND };
    await this.announceBackendSdp('offer', offer);
  }

  /** Our SDP: announced at once with trickled candidates, or held until gathering is complete. */
  private async announceBackendSdp(which: 'offer' | 'answer', sdp: SdpObject): Promise<void> {
    const buffer = which === 'offer' ? this.opts.no_offer_trickle_ice : this.opts.no_answer_trickle_ice;
    const ep = this.requireEndpoint();
    if (buffer) {
      this.heldCandidateEvents = undefined;
      this.backendCollector = new CandidateCollector(this.trickleTimeoutMs, (candidates) => {
        void this.queue.run(async () => {
          if (this.isStopped) return;
          if (candidates.length === 0) { await this.stop('no_ice_candidates'); return; }
          const full: SdpObject = { ...sdp, sdp: insertCandidates(sdp.sdp, candidates), trickle_ice: false };
          await this.backendSdpReady(which, full);
        }).catch((err) => this.failWith(err));
      });
      await this.engineCall(() => this.env.engine.gatherCandidates(ep));
      return;
    }
    await this.backendSdpReady(which, sdp);
    // Candidates found so far were held so that the SDP is announced before them.
    const held = this.heldCandidateEvents ?? [];
    this.heldCandidateEvents = undefined;
    for (const c of held) this.emitBackendCandidate(c);
    await this.engineCall(() => this.env.engine.gatherCandidates(ep));
  }

  private async backendSdpReady(which: 'offer' | 'answer', sdp: SdpObject): Promise<void> {
    if (which === 'offer') {
      this.offer = sdp;
      this.state = 'wait_answer';
      this.offerReady.resolve(sdp);
    } else {
      await this.answerSet(sdp);
    }
  }

  /** The session has both SDPs: announce, re-arm the timer and wire the type. */
  private async answerSet(answer: SdpObject): Promise<void> {
    this.answer = answer;
    this.state = 'ready';
    if (this.role === 'offeree') this.offerReady.resolve(this.offer!);
    this.answerReady.resolve(answer);
    this.armTimer(this.opts.ready_timeout ?? 86400, 'ready');
    const master = this.masterId ? this.env.registry.lookup(this.masterId) : undefined;
    if (this.opts.set_master_answer && master) {
      master.setAnswer(answer).catch((err) => void master.failWith(err));
    } else {
      this.events.emit('answer', answer);
    }
    await withLocks(() => [this.wiring], () => this.applyType());
  }

  // ---- candidates ----------------------------------------------------------------------------

  /** A client candidate (API `set_candidate`). */
  async addClientCandidate(c: CandidateInit): Promise<void> {
    this.assertLive();
    if (this.sdpType === 'rtp') throw new ApiError('invalid_operation', 'plain RTP sessions (sdp_type "rtp") take no ICE candidates');
    if (this.clientCollector) { this.clientCollector.add(c); return; }
    if (!this.remoteSet) { this.pendingClientCandidates.push(c); return; }
    const ep = this.requireEndpoint();
    await this.engineCall(() => this.env.engine.addIceCandidate(ep, c));
  }

  /** The client's end of candidates (API `set_candidate_end`). */
  clientCandidatesEnd(): void {
    this.assertLive();
    if (this.sdpType === 'rtp') return;
    this.clientCollector?.end();
  }

  private async flushClientCandidates(): Promise<void> {
    const ep = this.requireEndpoint();
    for (const c of this.pendingClientCandidates.splice(0)) {
      await this.env.engine.addIceCandidate(ep, c).catch((err) => this.env.log.debug({ session: this.id, err: String(err) }, 'candidate refused'));
    }
  }

  private emitBackendCandidate(c: CandidateInit | 'end'): void {
    if (c === 'end') this.events.emit('candidateEnd');
    else this.events.emit('candidate', { sdpMid: c.sdpMid ?? '', sdpMLineIndex: c.sdpMLineIndex, candidate: c.candidate });
  }

  // ---- engine events -------------------------------------------------------------------------

  onEngineEvent(ev: EngineEvent): void {
    if (this.isStopped) return;
    switch (ev.type) {
      case 'ice_candidate':
        if (this.backendCollector) this.backendCollector.add(ev.candidate);
        else if (this.heldCandidateEvents) this.heldCandidateEvents.push(ev.candidate);
        else this.emitBackendCandidate(ev.candidate);
        break;
      case 'ice_gathering_done':
        if (this.backendCollector) this.backendCollector.end();
        else if (this.heldCandidateEvents) this.heldCandidateEvents.push('end');
        else this.emitBackendCandidate('end');
        break;
      case 'connection_state': {
        const wasUp = this.connection === 'connected';
        this.connection = ev.state;
        const up = ev.state === 'connected';
        if (up !== wasUp) this.events.emit('connection', up ? 'up' : 'down');
        break;
      }
      case 'media_flow':
        (ev.direction === 'in' ? this.mediaIn : this.mediaOut).set(ev.media, ev.state);
        this.events.emit('mediaFlow', { direction: ev.direction, media: ev.media, state: ev.state });
        break;
      case 'recorder_state':
        this.events.emit('recorder', { state: ev.state, path: ev.uri });
        break;
      case 'player_state':
        if (ev.elementId === this.player || ev.elementId === this.startingPlayer) this.events.emit('player', { state: ev.state, position: Math.round(ev.position) });
        break;
      case 'player_loop':
        // As the original: a finite play announces the loops it has left as a type change.
        if (ev.elementId === this.player && ev.loops_left !== null) {
          if (this.typeState.type === 'play') this.typeState = { ...this.typeState, loops: ev.loops_left };
          this.events.emit('typeChanged');
        }
        break;
      case 'error':
        if (ev.code === NODE_DOWN) {
          // Its media node is gone (a worker died, a remote node was lost): so is this session's media.
          this.env.log.warn({ session: this.id, message: ev.message }, 'media node down');
          setImmediate(() => void this.stop('media_node_down', ev.message));
          break;
        }
        // Clients get the element's message (a fixed text); its detail (ffmpeg's, Node's words) stays in the log.
        this.env.log.warn({ session: this.id, code: ev.code, message: ev.message, detail: 'detail' in ev ? ev.detail : undefined }, 'engine element error');
        if (ev.elementId === this.player) this.events.emit('player', { state: 'stopped', error: ev.message, ...(ev.code ? { code: ev.code } : {}) });
        else if (ev.elementId === this.recorder?.id) this.events.emit('recorder', { state: 'stopped', path: this.recorder.path, error: ev.message });
        else if (ev.elementId === this.endpoint) this.endpointError(ev.code, ev.message);
        break;
    }
  }

  /**
   * Something went wrong at our endpoint. The client is told what it can act on (a data-channel
   * message too large for the other side, a codec mismatch); an exception inside the endpoint's
   * own code stops this session (isolated: every other session goes on).
   */
  private endpointError(code: string | undefined, message: string): void {
    if (code === 'element_failed') {
      // Not from inside the failing callback: the endpoint is released once werift unwinds.
      setImmediate(() => void this.stop('session_failed', 'internal error in the media endpoint'));
      return;
    }
    const text = code === 'data_too_large' || code === 'codec_mismatch' ? message : 'media endpoint error';
    this.events.emit('problem', { ...(code ? { code } : {}), text });
  }

  // ---- type and media ------------------------------------------------------------------------

  /**
   * Wires the current type's downlink (docs/API.md §5.1): park and
   * publish hear nothing, echo hears itself, bridge its peer, listen its publisher. The uplink (endpoint → proxy) is always
   * connected for every media not muted, so muting is global and independent of the type.
   * The caller holds this session's wiring lock.
   */
  private async applyType(): Promise<void> {
    if (this.isStopped || !this.answer) return;
    let source: ElementId | undefined;
    let peer: Session | undefined;
    if (this.type === 'echo') source = this.proxy;
    else if (this.typeState.type === 'bridge') peer = this.env.registry.lookup(this.typeState.peer);
    else if (this.typeState.type === 'listen') peer = this.env.registry.lookup(this.typeState.publisher);
    else if (this.type === 'play') source = this.player;
    let kinds: MediaKind[] = this.type === 'play' ? this.playKinds() : [...MEDIA_KINDS];
    if (peer) {
      source = peer.proxy;
      // Known only now when the peer's answer came after the switch: say so, keep the audio.
      const mismatch = await this.videoMismatch(peer);
      if (mismatch) {
        kinds = kinds.filter((k) => k !== 'video');
        this.events.emit('codecMismatch', { media: 'video', detail: mismatch });
      }
    }
    await this.setDownlink(source, kinds);
    this.events.emit('typeChanged');
  }

  /** What a player sends the client: its audio and video unless muted (as the original). */
  private playKinds(): MediaKind[] {
    return MEDIA_KINDS.filter((k) => k === 'data' || !this.mute[k]);
  }

  private async setDownlink(source: ElementId | undefined, kinds: MediaKind[]): Promise<void> {
    const ep = this.endpoint;
    if (!ep) return;
    if (this.downSource === source && this.downKinds.join() === kinds.join()) return;
    if (source && this.downSource === source) {
      // Same source, other media (a play mute): only those change, the rest flows on.
      for (const k of this.downKinds) if (!kinds.includes(k)) await this.env.engine.disconnect(source, ep, k);
      for (const k of kinds) if (!this.downKinds.includes(k)) await this.env.engine.connect(source, ep, k);
      this.downKinds = kinds;
      return;
    }
    if (this.downSource) await this.env.engine.disconnect(this.downSource, ep);
    this.downSource = source;
    this.downKinds = kinds;
    // Connecting asks the new source for a keyframe at once (engine), so video resumes fast.
    if (source) for (const k of kinds) await this.env.engine.connect(source, ep, k);
  }

  /**
   * Video is forwarded, never transcoded: endpoints negotiated on different video codecs
   * cannot share it. The reason, or undefined when they can (or it is not known yet).
   */
  private async videoMismatch(other: Session): Promise<string | undefined> {
    if (!this.endpoint || !other.endpoint || !this.answer || !other.answer) return undefined;
    const [a, b] = await Promise.all([this.env.engine.negotiatedCodecs(this.endpoint), this.env.engine.negotiatedCodecs(other.endpoint)]);
    if (a.video && b.video && a.video !== b.video) return `video codecs differ: ${a.video} here, ${b.video} at ${other.id} (video is forwarded, not transcoded)`;
    return undefined;
  }

  private async assertVideoCompatible(other: Session): Promise<void> {
    const mismatch = await this.videoMismatch(other);
    if (mismatch) throw new ApiError('incompatible_session', mismatch);
  }

  private async applyUplink(): Promise<void> {
    const { endpoint: ep, proxy } = this;
    if (!ep || !proxy) return;
    // Nothing muted (the usual case): one call for every media, one round trip to a remote node rather than three.
    if (!MEDIA_KINDS.some((k) => this.mute[k])) {
      await this.env.engine.connect(ep, proxy);
      return;
    }
    for (const kind of MEDIA_KINDS) {
      if (this.mute[kind]) await this.env.engine.disconnect(ep, proxy, kind);
      else await this.env.engine.connect(ep, proxy, kind);
    }
  }

  /** The room this session publishes or listens in, if any. */
  get room(): Room | undefined {
    const t = this.typeState;
    return t.type === 'publish' || t.type === 'listen' ? this.env.rooms.lookup(t.room) : undefined;
  }

  get userId(): string { return this.owner.user; }

  /**
   * Leaves the current type (bookkeeping only; docs/API.md §5.1): a room loses this member (a
   * leaving publisher's listeners stop), a player is released. The caller holds this session's
   * wiring lock, or is stopping it. Returns the bridge peer left, if any: telling it (§8) is the
   * caller's, under that peer's lock.
   */
  private leaveType(): string | undefined {
    const t = this.typeState;
    const room = this.room;
    this.typeState = { type: 'park' };
    if (t.type === 'bridge') return t.peer;
    if (t.type === 'publish' || t.type === 'listen') {
      room?.removeMember(this);
    } else if (t.type === 'play' && this.player) {
      const player = this.player;
      this.player = undefined;
      // Not awaited here (a switch goes on at once), but a stop waits for it: nothing outlives `destroyed`.
      const released = this.env.engine.release(player).catch(() => undefined);
      this.releasing.add(released);
      void released.finally(() => this.releasing.delete(released));
    }
    return undefined;
  }

  /** Leaves the current type within a change that holds our lock and our bridge peer's: the peer is told at once. */
  private leaveWithin(change: TypeChange): void {
    change.rewire.add(this);
    const peerId = this.leaveType();
    if (peerId !== undefined) this.env.registry.lookup(peerId)?.bridgeStopped(this.id, change);
  }

  /** Our bridge peer left (we hold our lock): park (and say so), or stop with bridge_stop. */
  private bridgeStopped(peerId: string, change: TypeChange): void {
    if (this.isStopped || !this.bridgedWith(peerId)) return;
    this.typeState = { type: 'park' };
    if (this.stopAfterPeer) change.stops.push(this);
    else change.rewire.add(this);
  }

  /**
   * We stopped while bridged: the peer learns it under its own lock. Not awaited by stop(), so
   * that a stop from inside a change holding that lock (a cascade) does not wait for itself.
   */
  private async peerLeft(peerId: string): Promise<void> {
    try {
      await withLocks(() => [this.env.registry.lookup(peerId)?.wiring], async () => {
        const change: TypeChange = { rewire: new Set(), stops: [] };
        this.env.registry.lookup(peerId)?.bridgeStopped(this.id, change);
        await this.finishChange(change);
      });
    } catch (err) {
      this.env.log.warn({ session: this.id, peer: peerId, err: String(err) }, 'parking the bridge peer failed');
    }
  }

  /**
   * Ends a change, its locks still held: the sessions it left with stop_after_peer stop (only now,
   * so that no stop cascade runs in the middle of its bookkeeping), then every session it changed
   * is rewired. The errors of `mine` (the sessions the change was asked for) are the change's;
   * the others' are logged.
   */
  private async finishChange(change: TypeChange, mine: (Session | undefined)[] = []): Promise<void> {
    for (const s of change.stops) void s.stop('bridge_stop');
    const sessions = [...change.rewire];
    const results = await Promise.allSettled(sessions.map((s) => s.applyType()));
    let failure: { err: unknown } | undefined;
    results.forEach((r, i) => {
      if (r.status === 'fulfilled') return;
      const s = sessions[i]!;
      if (mine.includes(s)) failure ??= { err: r.reason };
      else this.env.log.warn({ session: s.id, err: String(r.reason) }, 'rewiring failed');
    });
    if (failure) throw failure.err;
  }

  /** The session this one is bridged with, if any. */
  private get bridgePeer(): Session | undefined {
    return this.typeState.type === 'bridge' ? this.env.registry.lookup(this.typeState.peer) : undefined;
  }

  /**
   * The wiring locks a change to `target` needs: ours and our bridge peer's (parked), the new
   * peer's and its bridge peer's (parked), a publisher's (it must stay publishing while we join).
   */
  private changeLocks(target: TypeTarget): (Lock | undefined)[] {
    const peer = target.type === 'bridge' ? target.peer : undefined;
    const publisher = target.type === 'listen' ? target.publisher : undefined;
    return [this, this.bridgePeer, peer, peer?.bridgePeer, publisher].map((s) => s?.wiring);
  }

  /**
   * Leaves the current type, enters the target's and rewires every session that changed, holding
   * the wiring locks of all of them (changeLocks) throughout. Only a stop changes a locked session
   * meanwhile, so what is checked before an await is checked again after it. `key` opens locked
   * peers (and this session too, for a set_type: a creation's own type is the creator's choice).
   */
  private async changeType(target: TypeTarget, key?: object, checkOwnLock = false): Promise<void> {
    const { type } = target;
    if (!(SESSION_TYPES as readonly string[]).includes(type)) throw new ApiError('not_implemented', `type "${type}"`);
    // A new player opens its URI before any lock is taken or the old type is left: a bad URI
    // changes nothing, and a slow one holds up no other session.
    const player = type === 'play' ? await this.startPlayer(target.uri!, target.loops ?? 0) : undefined;
    let adopted = false;
    try {
      await withLocks(() => this.changeLocks(target), async () => {
        this.assertLive();
        // Again: a call may have locked the session while this waited.
        if (checkOwnLock) this.assertUnlocked(key);
        // Checks first (a failed switch changes nothing), each again after an await.
        const bridgePeer = (): Session => {
          const peer = target.peer;
          if (!peer || peer.isStopped) throw new ApiError('unknown_peer');
          if (peer === this) throw new ApiError('invalid_value', 'peer_id: a session cannot bridge with itself');
          peer.assertUnlocked(key);
          return peer;
        };
        const publisher = (): { publisher: Session; room: Room } => {
          const pub = target.publisher;
          const room = pub?.room;
          if (!pub || pub === this || pub.isStopped || pub.type !== 'publish' || !room) throw new ApiError('invalid_publisher');
          return { publisher: pub, room };
        };
        if (type === 'bridge') await this.assertVideoCompatible(bridgePeer());
        if (type === 'listen') await this.assertVideoCompatible(publisher().publisher);
        this.assertLive();
        const peer = type === 'bridge' ? bridgePeer() : undefined;
        if (type === 'listen') publisher();
        const existingRoom = type === 'publish' && target.roomId !== undefined ? this.env.rooms.get(target.roomId) : undefined;

        // The bookkeeping, synchronous; every session it changes is rewired in finishChange.
        const change: TypeChange = { rewire: new Set(), stops: [] };
        try {
          if (peer) {
            // A listener of the other leaves first: its publisher leaving would stop it (publisher_stop).
            const [first, second] = peer.listensTo(this.id) ? [peer, this] : [this, peer];
            if (!first.bridgedWith(second.id)) first.leaveWithin(change);
            if (!second.bridgedWith(first.id)) second.leaveWithin(change);
            // A stop cascading from those leaves (a stopped listener's master) may have reached either.
            this.assertLive();
            if (peer.isStopped) throw new ApiError('unknown_peer');
            this.typeState = { type: 'bridge', peer: peer.id };
            peer.typeState = { type: 'bridge', peer: this.id };
            change.rewire.add(this).add(peer);
          } else {
            this.leaveWithin(change);
            this.assertLive();
          }
          if (type === 'publish') {
            const room = existingRoom ?? this.env.rooms.create({ class: 'sfu' }, this.owner.user);
            this.typeState = { type: 'publish', room: room.id };
            room.addMember(this, 'publisher');
          } else if (type === 'listen') {
            const { publisher: pub, room } = publisher();
            this.typeState = { type: 'listen', room: room.id, publisher: pub.id };
            room.addMember(this, 'listener', pub.id);
          } else if (type === 'play') {
            this.player = player;
            adopted = true;
            this.typeState = { type: 'play', uri: target.uri!, loops: target.loops ?? 0 };
          } else if (type === 'park' || type === 'echo') {
            this.typeState = { type };
          }
        } finally {
          await this.finishChange(change, [this, peer]);
        }
        const roomBitrate = this.room?.opts.bitrate;
        if (type === 'publish' && this.bitrate === undefined && roomBitrate && this.endpoint) await this.env.engine.setMaxBitrate(this.endpoint, roomBitrate);
      });
    } finally {
      if (player && !adopted) await this.env.engine.release(player).catch(() => undefined);
    }
  }

  /** Creates a player and starts it on `uri`; the caller makes it this session's player or releases it. */
  private async startPlayer(uri: string, loops: number): Promise<ElementId> {
    const player = await this.own(this.env.engine.createPlayerEndpoint({ tag: this.tag, placement: { near: this.proxy } }));
    // Its first `playing` comes while it starts, before it is this session's player.
    this.startingPlayer = player;
    try {
      await this.engineCall(() => this.env.engine.playerStart(player, uri, loops));
    } catch (err) {
      await this.env.engine.release(player).catch(() => undefined);
      throw err;
    } finally {
      this.startingPlayer = undefined;
    }
    return player;
  }

  /** Whether this session is bridged with `peerId`. */
  private bridgedWith(peerId: string): boolean {
    return this.typeState.type === 'bridge' && this.typeState.peer === peerId;
  }

  /** Whether this session listens to `publisherId`. */
  private listensTo(publisherId: string): boolean {
    return this.typeState.type === 'listen' && this.typeState.publisher === publisherId;
  }

  /** `set_type`: tear the old wiring down, connect the new one; no SDP renegotiation. */
  setType(target: TypeTarget, key?: object): Promise<Record<string, unknown>> {
    return this.queue.run(async () => {
      this.assertLive();
      this.assertUnlocked(key);
      await this.changeType(target, key, true);
      return { ...this.typeExt };
    });
  }

  updateMedia(update: { mute_audio?: boolean; mute_video?: boolean; mute_data?: boolean; bitrate?: number; video_layer?: string }): Promise<void> {
    return this.queue.run(async () => {
      this.assertLive();
      if (update.mute_audio !== undefined) this.mute.audio = update.mute_audio;
      if (update.mute_video !== undefined) this.mute.video = update.mute_video;
      if (update.mute_data !== undefined) this.mute.data = update.mute_data;
      await this.applyUplink();
      // A play session's mutes also choose which of the file's media reach the client.
      await withLocks(() => [this.wiring], async () => {
        if (this.type === 'play' && this.answer && this.player) await this.setDownlink(this.player, this.playKinds());
      });
      if (update.bitrate !== undefined) {
        this.bitrate = update.bitrate;
        if (this.endpoint) await this.env.engine.setMaxBitrate(this.endpoint, update.bitrate === 0 ? null : update.bitrate);
      }
      if (update.video_layer !== undefined) {
        this.videoLayer = update.video_layer;
        if (this.endpoint) await this.env.engine.setVideoLayer(this.endpoint, update.video_layer);
      }
    });
  }

  // ---- recording ---------------------------------------------------------------------------

  static readonly RECORDER_ACTIONS = ['start', 'stop', 'pause', 'resume', 'get_actions'];

  /** `recorder_action` (docs/API.md §5.6): records what this session's client sends, after mutes. */
  recorderAction(action: string, uri?: string): Promise<Record<string, unknown>> {
    return this.queue.run(async () => {
      this.assertLive();
      if (action === 'get_actions') return { actions: Session.RECORDER_ACTIONS };
      if (action === 'start') {
        await this.stopRecorder();
        const name = `${this.id}_p${String(this.recordings++).padStart(4, '0')}.webm`;
        const target = recordingTarget(this.env.paths, this.owner.user, uri, name);
        await mkdir(dirname(target.path), { recursive: true });
        const rec = await this.own(this.env.engine.createRecorderEndpoint({ tag: this.tag, placement: { near: this.proxy } }));
        try {
          await this.engineCall(() => this.env.engine.recorderStart(rec, target.path, target.format));
          // The session may have stopped during those awaits (its proxy is then gone).
          const proxy = this.proxy;
          if (this.isStopped || !proxy) throw new ApiError('session_stopped');
          await this.env.engine.connect(proxy, rec, 'audio');
          await this.env.engine.connect(proxy, rec, 'video');
        } catch (err) {
          await this.env.engine.release(rec).catch(() => undefined);
          // A stop that came meanwhile is the reason, not what the engine said about its gone elements.
          if (this.isStopped) throw this.stopError ?? new ApiError('session_stopped');
          throw err;
        }
        this.recorder = { id: rec, ...target };
        return { uri: pathToFileURL(target.path).href, mediaProfile: target.format.toUpperCase() };
      }
      const rec = this.recorder;
      if (!rec) throw new ApiError('no_active_recorder');
      switch (action) {
        case 'pause': await this.env.engine.recorderPause(rec.id); return {};
        case 'resume': await this.env.engine.recorderResume(rec.id); return {};
        case 'stop': {
          const result = await this.stopRecorder();
          return result ? { uri: pathToFileURL(result.path).href, duration: result.durationMs } : {};
        }
        default: throw new ApiError('invalid_action', action);
      }
    });
  }

  /** Finalises and releases the active recording, if any. */
  private async stopRecorder(): Promise<{ path: string; durationMs: number } | undefined> {
    const rec = this.recorder;
    if (!rec) return undefined;
    this.recorder = undefined;
    try {
      return await this.env.engine.recorderStop(rec.id);
    } finally {
      await this.env.engine.release(rec.id).catch(() => undefined);
    }
  }

  // ---- playing -----------------------------------------------------------------------------

  static readonly PLAYER_ACTIONS = ['start', 'stop', 'pause', 'resume', 'get_info', 'get_position', 'set_position', 'get_actions'];

  /** `player_action` (docs/API.md §5.7); `start` switches the session to `play`. */
  async playerAction(action: string, req: { position?: number }, start: () => Promise<Record<string, unknown>>): Promise<Record<string, unknown>> {
    this.assertLive();
    if (action === 'get_actions') return { actions: Session.PLAYER_ACTIONS };
    if (action === 'start') return start();
    const player = this.player;
    if (!player) throw new ApiError('no_active_player');
    switch (action) {
      case 'pause': await this.env.engine.playerPause(player); return {};
      case 'resume': await this.env.engine.playerResume(player); return {};
      case 'stop': await this.env.engine.playerStop(player); return {};
      case 'get_info': return { ...(await this.engineCall(() => this.env.engine.playerInfo(player))) };
      case 'get_position': return { position: Math.round(await this.env.engine.playerPosition(player)) };
      case 'set_position':
        if (req.position === undefined) throw new ApiError('missing_field', 'position');
        await this.engineCall(() => this.env.engine.playerSeek(player, req.position!));
        return {};
      default: throw new ApiError('invalid_action', action);
    }
  }

  async stats(): Promise<Record<string, unknown>> {
    this.assertLive();
    if (!this.endpoint) return { connection_state: this.connection, inbound: {}, outbound: {} };
    const s = await this.env.engine.getStats(this.endpoint);
    return { connection_state: s.connectionState, inbound: s.inbound, outbound: s.outbound };
  }

  // ---- reporting -----------------------------------------------------------------------------

  get connectionState(): ConnectionState { return this.connection; }
  /** The media node holding this session's media, when media runs on several. */
  get nodeId(): string | undefined { return this.proxy !== undefined ? this.env.engine.nodeOf?.(this.proxy) : undefined; }
  /** Media flowing in from the client and out to it, by kind, as the engine last reported. */
  get mediaFlows(): { in: ReadonlyMap<MediaKind, 'up' | 'down'>; out: ReadonlyMap<MediaKind, 'up' | 'down'> } {
    return { in: this.mediaIn, out: this.mediaOut };
  }

  // ---- helpers -------------------------------------------------------------------------------

  private armTimer(seconds: number, which: 'wait' | 'ready'): void {
    clearTimeout(this.timer);
    // Node timers overflow past ~24.8 days; longer timeouts are clamped (a day is the default).
    const ms = Math.min(seconds * 1000, 2 ** 31 - 1);
    this.timer = setTimeout(() => {
      this.env.log.info({ session: this.id, which }, 'session timer expired');
      void this.stop('session_timeout');
    }, ms);
  }

  /** Keeps an element created by the engine, or releases it if the session stopped meanwhile. */
  private async own(p: Promise<ElementId>): Promise<ElementId> {
    let id: ElementId;
    try {
      id = await p;
    } catch (err) {
      // An engine that refuses at creation (a remote one at its limit) means the same as one refusing later.
      if (err instanceof EngineError && err.kind === 'no_resources') throw new ApiError('out_of_resources', err.message);
      throw err;
    }
    if (this.isStopped) {
      await this.env.engine.release(id).catch(() => undefined);
      throw new ApiError('session_stopped');
    }
    return id;
  }

  private async engineCall<T>(call: () => Promise<T>): Promise<T> {
    try {
      const r = await call();
      if (this.isStopped) throw new ApiError('session_stopped');
      return r;
    } catch (err) {
      if (err instanceof EngineError) {
        if (err.kind === 'invalid_sdp') throw new ApiError('invalid_sdp', err.message);
        if (err.kind === 'invalid_candidate') throw new ApiError('invalid_value', `candidate: ${err.message}`);
        // The engine's words for a URI are fixed texts ("HTTP 404", "host not allowed..."): they say why.
        if (err.kind === 'invalid_uri') throw new ApiError('invalid_uri', err.message);
        if (err.kind === 'no_resources') throw new ApiError('out_of_resources', err.message);
        throw new ApiError('media_error', err.message);
      }
      throw err;
    }
  }

  private requireEndpoint(): ElementId {
    if (!this.endpoint) throw new ApiError('session_stopped');
    return this.endpoint;
  }

  private assertLive(): void {
    if (this.isStopped) throw new ApiError('session_not_found');
  }

  /** An error during the session's own steps stops it with that error as the reason. */
  async failWith(err: unknown): Promise<void> {
    if (this.isStopped) return;
    if (err instanceof ApiError) {
      if (err.term !== 'session_stopped') await this.stop(err.term, err.detail);
      return;
    }
    this.env.log.error({ session: this.id, err }, 'session failed');
    await this.stop('session_failed');
  }
}
