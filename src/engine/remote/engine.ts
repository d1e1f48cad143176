// A media engine on another process or machine: one media node (nkmedia-ts's `media-server`, or a
// Kurento Media Server 7) driven over the Kurento JSON-RPC protocol (docs/KURENTO.md). Every
// element this engine makes lives in one MediaPipeline on the node, so any two can be connected
// (bridges, rooms, recorders of any session).
//
// On our own node the nkmedia extensions (docs/KURENTO.md "Extensions") give exactly what the
// local engine would: its events as they are (one subscription on the pipeline), its errors'
// kinds, statistics, codecs, loops, recording results. On a KMS, Kurento's standard methods and
// events stand in (translate.ts), and what KMS has no way to do fails with an EngineError saying
// so (that table says which).
//
// The node is lost when its socket closes or it stops answering pings: every request waiting
// fails at once, `state` goes 'down'. connect() again resumes the same Kurento session if the
// node still holds it (within its grace time: elements kept), else starts afresh.
import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import type { Logger } from 'pino';
import sdpTransform from 'sdp-transform';
import type { z } from 'zod';
import {
  EngineError, MEDIA_KINDS, type ElementId, type ElementStats, type EngineCounters, type EngineEvent,
  type IceCandidateInit, type MediaEngine, type MediaKind, type MediaStats, type OfferOptions, type PlayerInfo,
  type RecordingFormat, type RecordingResult,
} from '../types.js';
import { RpcSocket, type RpcResult } from './rpc.js';
import { KURENTO_TYPE, RemoteElement, type ElementKind } from './element.js';
import { STANDARD_EVENTS, notePlayer, playerPosition, translateStandard, type BareEvent } from './translate.js';
import {
  codecsSchema, countersSchema, engineEventDataSchema, kurentoCodeOf, kurentoStatsSchema, nkmediaInfoSchema, nkmediaStatsSchema,
  notificationSchema, objectId, playerInfoSchema, numberValue, recordingResultSchema, sdpText, serverInfoSchema, videoInfoSchema,
} from './wire.js';

export type NodeState = 'connecting' | 'up' | 'down';

export interface RemoteEngineOptions {
  /** The node's Kurento URL, e.g. ws://10.0.0.5:8888/kurento. */
  url: string;
  /** Sent as `access_token` (a JWT, or user:password for static users). */
  token?: string;
  /** Names the node in element ids, errors and logs. */
  nodeId: string;
  log: Logger;
  /** Each request's limit (default 10 000 ms); also the opening handshake's. */
  requestTimeoutMs?: number;
  /** A `ping` this often (default 5000 ms; 0: none); one unanswered within requestTimeoutMs drops the node. */
  keepAliveMs?: number;
  /** Requests on the wire at once (default 32; our node refuses more than its `limits.max_in_flight`, 64). */
  maxInFlight?: number;
  /** Use the nkmedia extensions when the node has them (default true); false speaks only Kurento's protocol, as to a KMS. */
  extensions?: boolean;
}

export interface RemoteEngineEvents {
  stateChange: [state: NodeState, reason: string | undefined];
}

const SERVER_MANAGER = 'manager_ServerManager';
const ENGINE_EVENT = 'NkmediaEngineEvent';
/** The extension set this engine speaks (src/kurento/methods.ts NKMEDIA_EXTENSIONS_VERSION). */
const EXTENSIONS_VERSION = 1;
const INVALID_SESSION = 40007;
const NOT_FOUND = 40101;

const notSupported = (what: string) => new EngineError('failed', `not supported by Kurento Media Server: ${what}`);

export class RemoteEngine extends EventEmitter<RemoteEngineEvents> implements MediaEngine {
  private rpc?: RpcSocket;
  private st: NodeState = 'down';
  private connecting?: Promise<void>;
  private closed = false;
  private sessionId?: string;
  private pipelineId?: string;
  private ext = false;
  private info?: z.output<typeof serverInfoSchema>;
  private keepAlive?: NodeJS.Timeout;
  private readonly elements = new Map<ElementId, RemoteElement>();
  private readonly byRemote = new Map<string, RemoteElement>();
  /** The graph as this engine made it: sink → kind → source (re-made on the node for elements made there later). */
  private readonly sources = new Map<ElementId, Map<MediaKind, ElementId>>();
  private readonly eventListeners = new Set<(ev: EngineEvent) => void>();
  private readonly log: Logger;
  private readonly timeoutMs: number;

  constructor(private readonly opts: RemoteEngineOptions) {
    super();
    this.log = opts.log.child({ node: opts.nodeId });
    this.timeoutMs = opts.requestTimeoutMs ?? 10_000;
  }

  /** 'connecting' while connect() runs, 'up' once the pipeline is there, 'down' before, after a loss, and after close(). */
  get state(): NodeState { return this.st; }
  get nodeId(): string { return this.opts.nodeId; }
  /** Whether the node speaks the nkmedia extensions (known once connected). */
  get extensions(): boolean { return this.ext; }
  /** What the node's ServerManager.getInfo said (KMS version, modules). */
  get serverInfo(): z.output<typeof serverInfoSchema> | undefined { return this.info; }
  /** The node's id of the pipeline holding this engine's elements. */
  get pipeline(): string | undefined { return this.pipelineId; }

  private isDown(): boolean { return this.st === 'down'; }

  private setState(state: NodeState, reason?: string): void {
    if (this.st === state) return;
    this.st = state;
    this.log.info({ state, reason }, 'media node state');
    this.emit('stateChange', state, reason);
  }

  // ---- connection ------------------------------------------------------------------------------

  /**
   * Opens the socket, starts (or resumes) the Kurento session and makes the pipeline. Called
   * again after a loss, resumes the session if the node still holds it: elements, their
   * connections and subscriptions are kept (events sent meanwhile are lost); if not, everything
   * this engine had is forgotten and a new pipeline made.
   */
  connect(): Promise<void>;
  /** MediaEngine's: media of `kind` (all when omitted) flows from source to sink. */
  connect(source: ElementId, sink: ElementId, kind?: MediaKind): Promise<void>;
  connect(source?: ElementId, sink?: ElementId, kind?: MediaKind): Promise<void> {
    if (source !== undefined || sink !== undefined) return this.link(source!, sink!, kind);
    return this.open();
  }

  /** connect() with no arguments: the node's connection. */
  open(): Promise<void> {
    if (this.closed) return Promise.reject(new EngineError('failed', `engine for media node ${this.opts.nodeId} is closed`));
    if (this.st === 'up') return Promise.resolve();
    this.connecting ??= this.start().finally(() => { this.connecting = undefined; });
    return this.connecting;
  }

  private async start(): Promise<void> {
    this.setState('connecting');
    let rpc: RpcSocket | undefined;
    try {
      rpc = await RpcSocket.open({
        url: this.opts.url, token: this.opts.token, nodeId: this.opts.nodeId, log: this.log,
        requestTimeoutMs: this.timeoutMs, maxInFlight: this.opts.maxInFlight ?? 32,
      });
      rpc.onNotification = (method, params) => this.onNotification(method, params);
      rpc.onClose = (reason) => this.lost(rpc!, reason);
      this.rpc = rpc;
      await rpc.request('ping', { interval: this.opts.keepAliveMs ?? 5000 });
      await this.startSession(rpc);
      if (this.closed) throw new EngineError('failed', `engine for media node ${this.opts.nodeId} is closed`);
    } catch (err) {
      if (rpc) {
        if (this.rpc === rpc) this.rpc = undefined;
        void rpc.close();
      }
      this.setState('down', err instanceof Error ? err.message : String(err));
      throw err instanceof EngineError ? err : new EngineError('failed', `media node ${this.opts.nodeId}: ${String(err)}`);
    }
    this.startKeepAlive(rpc);
    this.setState('up');
  }

  private async startSession(rpc: RpcSocket): Promise<void> {
    if (this.sessionId !== undefined) {
      try {
        await rpc.request('connect', { sessionId: this.sessionId });
        this.log.info({ session: this.sessionId }, 'media node session resumed');
        return;
      } catch (err) {
        if (kurentoCodeOf(err) !== INVALID_SESSION) throw err;
        // The node let the session go (grace time over, or restarted): so went our elements.
        this.log.warn({ session: this.sessionId, elements: this.elements.size }, 'media node session expired; its elements are gone');
        this.forgetAll();
      }
    }
    const c = await rpc.request('connect', {});
    if (typeof c.sessionId !== 'string') throw new EngineError('failed', `media node ${this.opts.nodeId}: connect gave no sessionId`);
    this.sessionId = c.sessionId;
    const info = await this.invoke(SERVER_MANAGER, 'getInfo', {}, serverInfoSchema).catch(() => undefined);
    this.info = info;
    this.ext = this.opts.extensions !== false && await this.detectExtensions();
    this.pipelineId = await this.create('MediaPipeline', {});
    if (this.ext) await this.subscribe(this.pipelineId, ENGINE_EVENT);
    await this.subscribe(this.pipelineId, 'Error');
    this.log.info({ session: this.sessionId, pipeline: this.pipelineId, extensions: this.ext, version: info?.version }, 'media node connected');
  }

  /** Our door answers nkmediaInfo; a KMS answers with an error (no such method). */
  private async detectExtensions(): Promise<boolean> {
    let r: RpcResult;
    try {
      r = await this.request('invoke', { object: SERVER_MANAGER, operation: 'nkmediaInfo', operationParams: {} });
    } catch (err) {
      // An error reply: not ours. No reply at all: the connection fails.
      if (kurentoCodeOf(err) === undefined) throw err;
      return false;
    }
    const info = nkmediaInfoSchema.safeParse(r.value);
    if (info.success && info.data.extensions === EXTENSIONS_VERSION) return true;
    this.log.warn({ info: info.success ? info.data : 'malformed' }, 'media node speaks another extension set; using the standard protocol only');
    return false;
  }

  private startKeepAlive(rpc: RpcSocket): void {
    const every = this.opts.keepAliveMs ?? 5000;
    clearInterval(this.keepAlive);
    if (every <= 0) return;
    this.keepAlive = setInterval(() => {
      rpc.request('ping', { interval: every }).catch((err: unknown) => {
        if (!rpc.isOpen) return;
        this.log.warn({ err: (err as Error).message }, 'media node does not answer; dropping the connection');
        rpc.terminate('the node stopped answering');
      });
    }, every);
    this.keepAlive.unref();
  }

  /** The socket went: every request waiting has failed; the state says so. */
  private lost(rpc: RpcSocket, reason: string): void {
    if (this.rpc !== rpc) return;
    this.rpc = undefined;
    clearInterval(this.keepAlive);
    this.keepAlive = undefined;
    if (!this.closed) this.log.warn({ reason }, 'media node connection lost');
    this.setState('down', reason);
  }

  private forgetAll(): void {
    for (const el of this.elements.values()) el.released = true;
    this.elements.clear();
    this.byRemote.clear();
    this.sources.clear();
    this.pipelineId = undefined;
    this.sessionId = undefined;
  }

  // ---- requests --------------------------------------------------------------------------------

  private request(method: string, params: Record<string, unknown>, onLateResult?: (r: RpcResult) => void, timeoutMs?: number): Promise<RpcResult> {
    const rpc = this.rpc;
    if (!rpc || this.st === 'down') {
      return Promise.reject(new EngineError('failed', `media node ${this.opts.nodeId} is ${this.closed ? 'closed' : this.st}`));
    }
    return rpc.request(method, { ...params, sessionId: this.sessionId }, { onLateResult, timeoutMs });
  }

  /** The result's value, checked: a malformed one fails the call (and is logged). */
  private value<S extends z.ZodType>(what: string, r: RpcResult, schema: S): z.output<S> {
    const v = schema.safeParse(r.value);
    if (v.success) return v.data;
    this.log.warn({ what, issue: v.error.issues[0]?.message }, 'media node sent a malformed value');
    throw new EngineError('failed', `media node ${this.opts.nodeId}: malformed reply to ${what}`);
  }

  private async invoke<S extends z.ZodType>(object: string, operation: string, params: Record<string, unknown>, schema: S): Promise<z.output<S>> {
    const r = await this.request('invoke', { object, operation, operationParams: params });
    return this.value(operation, r, schema);
  }

  private async invokeVoid(object: string, operation: string, params: Record<string, unknown> = {}): Promise<void> {
    await this.request('invoke', { object, operation, operationParams: params });
  }

  private async create(type: string, constructorParams: Record<string, unknown>): Promise<string> {
    // An object the node makes after we gave up waiting is released when its id comes.
    const r = await this.request('create', { type, constructorParams, properties: {} }, (late) => {
      if (typeof late.value === 'string') {
        this.log.info({ object: late.value }, 'releasing an object made after its create timed out');
        void this.releaseRemote(late.value);
      }
    });
    return this.value(`create ${type}`, r, objectId);
  }

  private async subscribe(object: string, type: string): Promise<void> {
    await this.request('subscribe', { object, type });
  }

  /** Releases a node object; one already gone is fine, and so is a node that is down (it releases it after its grace time). */
  private async releaseRemote(remoteId: string): Promise<void> {
    if (this.isDown()) return;
    try {
      await this.request('release', { object: remoteId });
    } catch (err) {
      if (kurentoCodeOf(err) === NOT_FOUND || this.isDown()) return;
      this.log.warn({ object: remoteId, err: (err as Error).message }, 'release on the media node failed');
    }
  }

  // ---- elements --------------------------------------------------------------------------------

  private get(id: ElementId, ...kinds: ElementKind[]): RemoteElement {
    const el = this.elements.get(id);
    if (!el || el.released) throw new EngineError('not_found', `element ${id} not found`);
    if (kinds.length > 0 && !kinds.includes(el.kind)) {
      const what = kinds.includes('webrtc') ? 'an endpoint' : `a ${KURENTO_TYPE[kinds[0]!]}`;
      throw new EngineError('invalid_state', `element ${id} is not ${what}`);
    }
    return el;
  }

  /** The node's id of an element that must exist there. */
  private remote(el: RemoteElement): string {
    if (!el.remoteId) throw new EngineError('invalid_state', `element ${el.id} is not started`);
    return el.remoteId;
  }

  private newElement(kind: ElementKind, tag: string): RemoteElement {
    return new RemoteElement(`${this.opts.nodeId}/${kind}-${randomUUID()}`, kind, tag);
  }

  /**
   * Makes the element's object on the node (in the pipeline), subscribes to its events (the
   * pipeline's extension subscription covers them on our node) and re-makes the connections this
   * engine already has for it.
   */
  private async materialize(el: RemoteElement, params: Record<string, unknown>): Promise<void> {
    const run = (async () => {
      if (!this.pipelineId) throw new EngineError('failed', `media node ${this.opts.nodeId} is ${this.st}`);
      const remoteId = await this.create(KURENTO_TYPE[el.kind], { mediaPipeline: this.pipelineId, ...params });
      if (el.released || this.closed) {
        await this.releaseRemote(remoteId);
        throw new EngineError('not_found', `element ${el.id} was released`);
      }
      el.remoteId = remoteId;
      this.byRemote.set(remoteId, el);
      try {
        if (!this.ext) await Promise.all(STANDARD_EVENTS[el.kind].map((t) => this.subscribe(remoteId, t)));
        await this.remakeLinks(el);
      } catch (err) {
        this.byRemote.delete(remoteId);
        el.remoteId = undefined;
        await this.releaseRemote(remoteId);
        throw err;
      }
    })();
    el.materializing = run.catch(() => undefined);
    try {
      await run;
    } finally {
      el.materializing = undefined;
    }
  }

  /** Connections this engine holds that involve `el`, made on the node (both ends there). */
  private async remakeLinks(el: RemoteElement): Promise<void> {
    const pairs = new Map<string, { source: RemoteElement; sink: RemoteElement; kinds: MediaKind[] }>();
    const add = (source: RemoteElement | undefined, sink: RemoteElement | undefined, kind: MediaKind) => {
      if (!source?.remoteId || !sink?.remoteId) return;
      const key = `${source.id} ${sink.id}`;
      const p = pairs.get(key) ?? { source, sink, kinds: [] };
      p.kinds.push(kind);
      pairs.set(key, p);
    };
    for (const [kind, src] of this.sources.get(el.id) ?? []) add(this.elements.get(src), el, kind);
    for (const [sinkId, kinds] of this.sources) {
      for (const [kind, src] of kinds) if (src === el.id && sinkId !== el.id) add(el, this.elements.get(sinkId), kind);
    }
    for (const { source, sink, kinds } of pairs.values()) await this.linkOnNode(source, sink, kinds.length === MEDIA_KINDS.length ? undefined : kinds);
  }

  private async linkOnNode(source: RemoteElement, sink: RemoteElement, kinds: readonly MediaKind[] | undefined, op: 'connect' | 'disconnect' = 'connect'): Promise<void> {
    const sinkId = this.remote(sink);
    if (kinds === undefined) { await this.invokeVoid(this.remote(source), op, { sink: sinkId }); return; }
    for (const k of kinds) await this.invokeVoid(this.remote(source), op, { sink: sinkId, mediaType: k.toUpperCase() });
  }

  async createWebRtcEndpoint(opts: { tag: string }): Promise<ElementId> {
    // Data channels: answered when offered, and offered (KMS offers them only with useDataChannels).
    return this.createNow('webrtc', opts.tag, { useDataChannels: true });
  }

  async createRtpEndpoint(opts: { tag: string }): Promise<ElementId> { return this.createNow('rtp', opts.tag, {}); }
  async createPassThrough(opts: { tag: string }): Promise<ElementId> { return this.createNow('passthrough', opts.tag, {}); }

  private async createNow(kind: ElementKind, tag: string, params: Record<string, unknown>): Promise<ElementId> {
    const el = this.newElement(kind, tag);
    await this.materialize(el, params);
    this.elements.set(el.id, el);
    return el.id;
  }

  // ---- SDP and ICE -----------------------------------------------------------------------------

  async processOffer(id: ElementId, sdp: string): Promise<string> {
    const el = this.get(id, 'webrtc', 'rtp');
    const answer = await this.invoke(this.remote(el), 'processOffer', { offer: sdp }, sdpText);
    el.sdp = { local: answer, remote: sdp, role: 'offeree' };
    return answer;
  }

  async generateOffer(id: ElementId, opts: OfferOptions): Promise<string> {
    const el = this.get(id, 'webrtc', 'rtp');
    const options = {
      __module__: 'kurento', __type__: 'OfferOptions', offerToReceiveAudio: opts.audio, offerToReceiveVideo: opts.video,
      // KMS offers a data channel whenever the endpoint was made with useDataChannels (always here).
      ...(this.ext ? { nkmediaOfferData: opts.data } : {}),
    };
    const offer = await this.invoke(this.remote(el), 'generateOffer', { options }, sdpText);
    el.sdp = { local: offer, role: 'offerer' };
    return offer;
  }

  async processAnswer(id: ElementId, sdp: string): Promise<void> {
    const el = this.get(id, 'webrtc', 'rtp');
    await this.invokeVoid(this.remote(el), 'processAnswer', { answer: sdp });
    el.sdp = { ...el.sdp, remote: sdp };
  }

  async gatherCandidates(id: ElementId): Promise<void> {
    const el = this.get(id, 'webrtc', 'rtp');
    // A plain RTP endpoint's address is in its SDP: gathering is over before it starts (as the local engine says).
    if (el.kind === 'rtp') { this.emitFor(el, { type: 'ice_gathering_done' }); return; }
    await this.invokeVoid(this.remote(el), 'gatherCandidates');
  }

  async addIceCandidate(id: ElementId, c: IceCandidateInit): Promise<void> {
    const el = this.get(id, 'webrtc', 'rtp');
    if (el.kind === 'rtp') throw new EngineError('invalid_candidate', 'plain RTP endpoints take no ICE candidates');
    const candidate = { __module__: 'kurento', __type__: 'IceCandidate', candidate: c.candidate, sdpMLineIndex: c.sdpMLineIndex, ...(c.sdpMid !== undefined ? { sdpMid: c.sdpMid } : {}) };
    await this.invokeVoid(this.remote(el), 'addIceCandidate', { candidate });
  }

  // ---- graph -----------------------------------------------------------------------------------

  private async link(sourceId: ElementId, sinkId: ElementId, kind?: MediaKind): Promise<void> {
    const source = this.get(sourceId);
    const sink = this.get(sinkId);
    // An element being made on the node gets the connections there once it is.
    await Promise.all([source.materializing, sink.materializing]);
    const kinds = kind ? [kind] : MEDIA_KINDS;
    const have = this.sources.get(sinkId);
    if (kinds.every((k) => have?.get(k) === sourceId)) return;
    if (source.remoteId && sink.remoteId) await this.linkOnNode(source, sink, kind ? [kind] : undefined);
    if (source.released || sink.released) return;
    let map = this.sources.get(sinkId);
    if (!map) this.sources.set(sinkId, (map = new Map()));
    for (const k of kinds) map.set(k, sourceId);
  }

  async disconnect(sourceId: ElementId, sinkId: ElementId, kind?: MediaKind): Promise<void> {
    // Either side may already be gone (a released peer): then there is nothing to cut.
    const source = this.elements.get(sourceId);
    const sink = this.elements.get(sinkId);
    if (!source || !sink) return;
    await Promise.all([source.materializing, sink.materializing]);
    const map = this.sources.get(sinkId);
    const kinds = (kind ? [kind] : MEDIA_KINDS).filter((k) => map?.get(k) === sourceId);
    if (kinds.length === 0) return;
    for (const k of kinds) map!.delete(k);
    if (map!.size === 0) this.sources.delete(sinkId);
    if (source.remoteId && sink.remoteId) await this.linkOnNode(source, sink, kinds.length === MEDIA_KINDS.length ? undefined : kinds, 'disconnect');
  }

  async requestKeyframe(id: ElementId): Promise<void> {
    const el = this.get(id);
    if (!this.ext) throw notSupported('requestKeyframe (KMS asks for keyframes by itself)');
    if (!el.remoteId) return; // a player or recorder not started: no media to ask about
    await this.invokeVoid(el.remoteId, 'nkmediaRequestKeyframe');
  }

  async setMaxBitrate(id: ElementId, bitsPerSecond: number | null): Promise<void> {
    const el = this.get(id, 'webrtc', 'rtp');
    if (this.ext) {
      await this.invokeVoid(this.remote(el), 'nkmediaSetMaxBitrate', { bitsPerSecond: bitsPerSecond === null ? null : Math.max(0, Math.round(bitsPerSecond)) });
      return;
    }
    // KMS's nearest: the video it receives from the client (REMB and b=AS), in kbps; 0 lifts it.
    const kbps = bitsPerSecond ? Math.max(1, Math.round(bitsPerSecond / 1000)) : 0;
    await this.invokeVoid(this.remote(el), 'setMaxVideoRecvBandwidth', { maxVideoRecvBandwidth: kbps });
  }

  async setVideoLayer(id: ElementId, layer: string): Promise<void> {
    const el = this.get(id, 'webrtc', 'rtp');
    if (this.ext) { await this.invokeVoid(this.remote(el), 'nkmediaSetVideoLayer', { layer }); return; }
    // KMS forwards no simulcast layers to choose from: the default is what there is.
    if (layer === 'high') return;
    throw notSupported(`setVideoLayer '${layer}' (simulcast layer selection)`);
  }

  async negotiatedCodecs(id: ElementId): Promise<{ audio?: string; video?: string }> {
    const el = this.get(id, 'webrtc', 'rtp');
    if (this.ext) {
      const c = await this.invoke(this.remote(el), 'nkmediaNegotiatedCodecs', {}, codecsSchema);
      return { audio: c.audio, video: c.video };
    }
    const c = codecsOfAnswer(el);
    return { audio: c.audio, video: c.video };
  }

  async getStats(id: ElementId): Promise<ElementStats> {
    const el = this.get(id, 'webrtc', 'rtp');
    if (this.ext) {
      const s = await this.invoke(this.remote(el), 'nkmediaGetStats', {}, nkmediaStatsSchema);
      return { elementId: id, ...s };
    }
    return this.standardStats(el);
  }

  /** KMS: Kurento's RTP stats per media type, summed per kind; bitrates from the bytes since the last call. */
  private async standardStats(el: RemoteElement): Promise<ElementStats> {
    const remoteId = this.remote(el);
    const [audio, video] = await Promise.all((['AUDIO', 'VIDEO'] as const).map((mediaType) => this.invoke(remoteId, 'getStats', { mediaType }, kurentoStatsSchema)));
    const now = performance.now();
    const out: ElementStats = { elementId: el.id, connectionState: el.connection, inbound: {}, outbound: {} };
    for (const [kind, stats] of [['audio', audio!], ['video', video!]] as const) {
      for (const s of Object.values(stats)) {
        const dir = s.type === 'inboundrtp' ? 'inbound' : s.type === 'outboundrtp' ? 'outbound' : undefined;
        if (!dir) continue;
        const m: MediaStats = out[dir][kind] ?? { packets: 0, bytes: 0, bitrate: 0 };
        m.packets += (dir === 'inbound' ? s.packetsReceived : s.packetsSent) ?? 0;
        m.bytes += (dir === 'inbound' ? s.bytesReceived : s.bytesSent) ?? 0;
        if (s.bitrate !== undefined) m.bitrate += s.bitrate;
        if (s.packetsLost !== undefined) m.packets_lost = (m.packets_lost ?? 0) + s.packetsLost;
        if (s.jitter !== undefined) m.jitter_ms = Math.max(m.jitter_ms ?? 0, s.jitter * 1000);
        if (dir === 'outbound' && s.roundTripTime !== undefined) m.rtt_ms = s.roundTripTime * 1000;
        if (dir === 'outbound' && s.fractionLost !== undefined) m.fraction_lost = s.fractionLost > 1 ? s.fractionLost / 256 : s.fractionLost;
        out[dir][kind] = m;
      }
    }
    for (const dir of ['inbound', 'outbound'] as const) {
      for (const kind of ['audio', 'video'] as const) {
        const m = out[dir][kind];
        if (!m) continue;
        const key = `${dir}:${kind}`;
        const prev = el.statsPrev.get(key);
        if (m.bitrate === 0 && prev && now > prev.at && m.bytes >= prev.bytes) m.bitrate = Math.round(((m.bytes - prev.bytes) * 8 * 1000) / (now - prev.at));
        el.statsPrev.set(key, { bytes: m.bytes, at: now });
      }
    }
    return out;
  }

  // ---- recorder --------------------------------------------------------------------------------

  async createRecorderEndpoint(opts: { tag: string }): Promise<ElementId> {
    // Kurento takes the file at construction: the node's recorder is made by recorderStart.
    const el = this.newElement('recorder', opts.tag);
    this.elements.set(el.id, el);
    return el.id;
  }

  async recorderStart(id: ElementId, path: string, format: RecordingFormat): Promise<void> {
    const el = this.get(id, 'recorder');
    if (el.recorder || el.materializing) throw new EngineError('failed', 'cannot record: this recorder was started already');
    el.recorder = { path, format, startedAt: performance.now(), pausedMs: 0 };
    try {
      await this.materialize(el, { uri: pathToFileURL(path).href, mediaProfile: format === 'mp4' ? 'MP4' : 'WEBM', stopOnEndOfStream: false });
      await this.invokeVoid(this.remote(el), 'record');
    } catch (err) {
      el.recorder = undefined;
      if (el.remoteId) {
        const remoteId = el.remoteId;
        this.byRemote.delete(remoteId);
        el.remoteId = undefined;
        await this.releaseRemote(remoteId);
      }
      // The node's words for a refused file (outside its folders, no such folder) say why.
      if (err instanceof EngineError && err.kind !== 'no_resources' && err.kind !== 'not_found') throw new EngineError('failed', err.message.startsWith('cannot record') ? err.message : `cannot record: ${err.message}`);
      throw err;
    }
    el.recorder.startedAt = performance.now();
  }

  async recorderPause(id: ElementId): Promise<void> {
    const el = this.get(id, 'recorder');
    const r = el.recorder;
    if (!el.remoteId || !r || r.stopping || r.pausedAt !== undefined) return;
    await this.invokeVoid(el.remoteId, 'pause');
    r.pausedAt = performance.now();
  }

  async recorderResume(id: ElementId): Promise<void> {
    const el = this.get(id, 'recorder');
    const r = el.recorder;
    if (!el.remoteId || !r || r.stopping || r.pausedAt === undefined) return;
    await this.invokeVoid(el.remoteId, 'record');
    r.pausedMs += performance.now() - r.pausedAt;
    r.pausedAt = undefined;
  }

  /** Finalises the file. Safe to call more than once (the same result). */
  recorderStop(id: ElementId): Promise<RecordingResult> {
    let el: RemoteElement;
    try { el = this.get(id, 'recorder'); } catch (err) { return Promise.reject(err); }
    const r = el.recorder;
    if (!r || !el.remoteId) return Promise.resolve({ path: r?.path ?? '', format: r?.format ?? 'webm', durationMs: 0, tracks: [], bytes: 0 });
    r.stopping ??= this.stopRecording(el, el.remoteId, r);
    return r.stopping;
  }

  private async stopRecording(el: RemoteElement, remoteId: string, r: NonNullable<RemoteElement['recorder']>): Promise<RecordingResult> {
    if (this.ext) {
      const res = await this.invoke(remoteId, 'nkmediaStopAndWait', {}, recordingResultSchema.nullable());
      if (res) return res;
      return { path: r.path, format: r.format, durationMs: 0, tracks: [], bytes: 0 };
    }
    // KMS: stopAndWait returns nothing; the result is made from what this engine knows.
    await this.invokeVoid(remoteId, 'stopAndWait');
    const end = r.pausedAt ?? performance.now();
    const durationMs = Math.max(0, Math.round(end - r.startedAt - r.pausedMs));
    const fed = this.sources.get(el.id);
    const tracks = (['audio', 'video'] as const).filter((k) => fed?.has(k));
    // The file is the node's; its size is known here only when both see the same file system.
    const bytes = await stat(r.path).then((s) => s.size, () => 0);
    return { path: r.path, format: r.format, durationMs, tracks, bytes };
  }

  // ---- player ----------------------------------------------------------------------------------

  async createPlayerEndpoint(opts: { tag: string }): Promise<ElementId> {
    // Kurento takes the URI at construction: the node's player is made by playerStart (again for each start).
    const el = this.newElement('player', opts.tag);
    this.elements.set(el.id, el);
    return el.id;
  }

  async playerStart(id: ElementId, uri: string, loops: number): Promise<PlayerInfo> {
    const el = this.get(id, 'player');
    await el.materializing;
    if (el.remoteId) {
      // A new start plays anew: the node's player for the old URI goes, a new one comes (connections kept).
      const old = el.remoteId;
      this.byRemote.delete(old);
      el.remoteId = undefined;
      await this.releaseRemote(old);
    }
    const now = performance.now();
    el.player = { uri, loops: Math.max(0, Math.floor(loops)), play: 1, state: 'idle', replaying: false, base: 0 };
    const kurentoUri = /^[a-z][a-z0-9+.-]*:/i.test(uri) ? uri : pathToFileURL(uri).href;
    try {
      await this.materialize(el, { uri: kurentoUri });
    } catch (err) {
      el.player.state = 'stopped';
      // What the node refuses about the URI (outside its folders, not found) is an invalid URI.
      const code = kurentoCodeOf(err);
      if (code === 40107 || code === 40600) throw new EngineError('invalid_uri', (err as Error).message);
      throw err;
    }
    const remoteId = el.remoteId!;
    try {
      let info: PlayerInfo;
      if (this.ext) {
        info = await this.invoke(remoteId, 'nkmediaPlay', { loops: el.player.loops }, playerInfoSchema);
      } else {
        await this.invokeVoid(remoteId, 'play');
        const v = await this.invoke(remoteId, 'getVideoInfo', {}, videoInfoSchema);
        info = { duration: v.duration, is_seekable: v.isSeekable, first_position: v.seekableInit, last_position: v.seekableEnd };
      }
      el.player.info = info;
      if (!this.ext) {
        el.player.base = info.first_position;
        el.player.since ??= now;
        this.emitAll(el, notePlayer(el, 'playing'));
      }
      return info;
    } catch (err) {
      el.player.state = 'stopped';
      this.byRemote.delete(remoteId);
      el.remoteId = undefined;
      await this.releaseRemote(remoteId);
      throw err;
    }
  }

  async playerPause(id: ElementId): Promise<void> {
    const el = this.get(id, 'player');
    if (!el.remoteId || el.player?.state !== 'playing') return;
    await this.invokeVoid(el.remoteId, 'pause');
    if (!this.ext) this.emitAll(el, notePlayer(el, 'paused'));
  }

  async playerResume(id: ElementId): Promise<void> {
    const el = this.get(id, 'player');
    // Kurento's play would start a stopped player over: resume only what is paused.
    if (!el.remoteId || el.player?.state !== 'paused') return;
    await this.invokeVoid(el.remoteId, 'play');
    if (!this.ext) this.emitAll(el, notePlayer(el, 'playing'));
  }

  async playerStop(id: ElementId): Promise<void> {
    const el = this.get(id, 'player');
    const p = el.player;
    if (!el.remoteId || !p || p.state === 'idle' || p.state === 'stopped' || p.state === 'eos') return;
    await this.invokeVoid(el.remoteId, 'stop');
    if (!this.ext) this.emitAll(el, notePlayer(el, 'stopped'));
  }

  async playerSeek(id: ElementId, positionMs: number): Promise<void> {
    const el = this.get(id, 'player');
    const p = el.player;
    if (!el.remoteId || !p || (p.state !== 'playing' && p.state !== 'paused')) throw new EngineError('invalid_state', `cannot seek while ${p?.state ?? 'idle'}`);
    await this.invokeVoid(el.remoteId, 'setPosition', { position: Math.max(0, Math.round(positionMs)) });
    if (!this.ext) {
      p.base = Math.max(p.info?.first_position ?? 0, Math.min(positionMs, p.info?.last_position ?? positionMs));
      if (p.since !== undefined) p.since = performance.now();
    }
  }

  async playerPosition(id: ElementId): Promise<number> {
    const el = this.get(id, 'player');
    if (!el.remoteId) return el.player ? playerPosition(el) : 0;
    return this.invoke(el.remoteId, 'getPosition', {}, numberValue);
  }

  async playerInfo(id: ElementId): Promise<PlayerInfo> {
    const el = this.get(id, 'player');
    const info = el.player?.info;
    if (!info) throw new EngineError('invalid_state', 'nothing is playing');
    return { ...info };
  }

  // ---- life cycle ------------------------------------------------------------------------------

  async release(id: ElementId): Promise<void> {
    const el = this.elements.get(id);
    if (!el) return;
    this.elements.delete(id);
    el.released = true;
    // Cut out of the graph both ways (the node does the same with its object).
    this.sources.delete(id);
    for (const [sinkId, map] of this.sources) {
      for (const [k, src] of map) if (src === id) map.delete(k);
      if (map.size === 0) this.sources.delete(sinkId);
    }
    await el.materializing;
    const remoteId = el.remoteId;
    if (!remoteId) return;
    this.byRemote.delete(remoteId);
    // A recorder stopping finishes its file first (as releasing one does anyway).
    await el.recorder?.stopping?.catch(() => undefined);
    await this.releaseRemote(remoteId);
  }

  /**
   * On our node: the node's engine counters (all its clients' elements). On a KMS: this engine's
   * own elements and endpoints; UDP sockets are not known (0).
   */
  async counters(): Promise<EngineCounters> {
    if (this.ext && this.st === 'up') return this.invoke(SERVER_MANAGER, 'nkmediaCounters', {}, countersSchema);
    let endpoints = 0;
    for (const e of this.elements.values()) if (e.isEndpoint) endpoints++;
    return { elements: this.elements.size, endpoints, udpSockets: 0 };
  }

  /**
   * The node's CPU use measured over `intervalMs` (Kurento's ServerManager.getUsedCpu, on our node
   * and on a KMS alike): percent of all its CPUs together, 0-100.
   */
  async usedCpu(intervalMs = 1000): Promise<number> {
    const interval = Math.min(10_000, Math.max(1, Math.round(intervalMs)));
    const r = await this.request('invoke', { object: SERVER_MANAGER, operation: 'getUsedCpu', operationParams: { interval } }, undefined, this.timeoutMs + interval);
    return this.value('getUsedCpu', r, numberValue);
  }

  onEvent(listener: (event: EngineEvent) => void): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  /** Releases the pipeline (every element on the node goes with it) and closes the socket. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.keepAlive);
    this.keepAlive = undefined;
    await this.connecting?.catch(() => undefined);
    const rpc = this.rpc;
    if (rpc && this.st === 'up' && this.pipelineId) {
      try {
        await this.request('release', { object: this.pipelineId });
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'releasing the pipeline on the media node failed');
      }
    }
    this.forgetAll();
    this.rpc = undefined;
    await rpc?.close();
    this.setState('down', 'closed');
    this.eventListeners.clear();
  }

  // ---- events ----------------------------------------------------------------------------------

  private emitFor(el: RemoteElement, ev: BareEvent): void {
    const event = { ...ev, elementId: el.id, tag: el.tag } as EngineEvent;
    for (const l of this.eventListeners) {
      try {
        l(event);
      } catch (err) {
        // A listener's failure is its own: the others still hear, the socket reads on.
        this.log.error({ err, event: event.type }, 'engine event listener failed');
      }
    }
  }

  private emitAll(el: RemoteElement, evs: BareEvent[]): void {
    for (const ev of evs) this.emitFor(el, ev);
  }

  private onNotification(method: string, params: unknown): void {
    if (method !== 'onEvent') {
      this.log.debug({ method: method.slice(0, 64) }, 'media node notification ignored');
      return;
    }
    const n = notificationSchema.safeParse(params);
    if (!n.success) {
      this.log.warn({ issue: n.error.issues[0]?.message }, 'media node sent a malformed event; dropped');
      return;
    }
    const { type, object, data } = n.data.value;
    if (type === ENGINE_EVENT) {
      if (!this.ext) return;
      const d = engineEventDataSchema.safeParse(data);
      if (!d.success) {
        this.log.warn({ issue: d.error.issues[0]?.message, path: d.error.issues[0]?.path.join('.') }, 'media node sent a malformed engine event; dropped');
        return;
      }
      const el = this.byRemote.get(d.data.element);
      if (!el || el.released) return;
      const ev = d.data.event;
      // What later calls depend on (a player paused or not) is kept from the node's own words.
      if (ev.type === 'connection_state') el.connection = ev.state;
      else if (ev.type === 'player_state' && el.player) el.player.state = ev.state;
      this.emitFor(el, ev);
      return;
    }
    if (object === this.pipelineId) {
      if (type === 'Error') this.log.warn({ error: data }, 'media node pipeline error');
      return;
    }
    const el = this.byRemote.get(object);
    if (!el || el.released || this.ext) return;
    const t = translateStandard(el, type, data);
    if (t.invalid) {
      this.log.warn({ type: type.slice(0, 64), issue: t.invalid }, 'media node sent a malformed event; dropped');
      return;
    }
    this.emitAll(el, t.events);
    if (t.replay) {
      const remoteId = el.remoteId;
      if (remoteId) {
        void this.invokeVoid(remoteId, 'play').catch((err: unknown) => {
          if (el.released || el.remoteId !== remoteId) return;
          this.emitFor(el, { type: 'error', message: `next loop failed: ${(err as Error).message}`, code: 'read_failed' });
        });
      }
    }
  }
}

/** KMS: each kind's codec is the first of the answer's section (ours as offeree, the client's as offerer). */
function codecsOfAnswer(el: RemoteElement): { audio?: string; video?: string } {
  const answer = el.sdp.role === 'offeree' ? el.sdp.local : el.sdp.remote;
  if (!answer) return {};
  const out: { audio?: string; video?: string } = {};
  try {
    for (const m of sdpTransform.parse(answer).media) {
      if ((m.type !== 'audio' && m.type !== 'video') || m.port === 0 || out[m.type]) continue;
      const first = String(m.payloads ?? '').split(' ')[0];
      const rtp = m.rtp.find((r) => String(r.payload) === first);
      if (rtp) out[m.type] = `${m.type}/${rtp.codec.toLowerCase()}`;
    }
  } catch {
    return {};
  }
  return out;
}
