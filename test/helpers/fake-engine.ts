// An in-memory MediaEngine for unit tests of the domain (sessions, calls, rooms) and the small
// client-side stand-ins those tests need (a client's SDPs, a bus subscriber, an API connection
// that calls ring). No sockets, no werift, no timers beyond setImmediate: what the domain asks
// of the engine is recorded, the media graph can be inspected, and engine events can be
// injected.
import { publishSessionEvents, setCreator } from '../../src/api/session-events.js';
import { publishRoomEvents } from '../../src/api/room-events.js';
import { publishCallEvents } from '../../src/api/call-events.js';
import { EventBus, type EventData, type Subscriber } from '../../src/api/event-bus.js';
import { WireCallParty, type ClientReply, type RequestingSubscriber } from '../../src/api/call-party.js';
import { afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { ApiError, type ErrorTerm } from '../../src/protocol/errors.js';
import { MediaCore } from '../../src/core/core.js';
import {
  EngineError, MEDIA_KINDS,
  type ConnectionState, type ElementId, type ElementStats, type EngineCounters, type EngineEvent, type IceCandidateInit,
  type MediaEngine, type MediaKind, type OfferOptions, type PlayerInfo, type RecordingFormat, type RecordingResult,
} from '../../src/engine/types.js';
import { checkSdp, parseSdp } from '../../src/protocol/sdp.js';
import type { Caller } from '../../src/core/sessions/manager.js';
import type { Owner, Session } from '../../src/core/sessions/session.js';
import type { CreateRequest } from '../../src/protocol/session-schemas.js';
import type { QuotaLimits } from '../../src/core/sessions/quota.js';

// ---- SDP ------------------------------------------------------------------------------------

const FINGERPRINT = 'sha-256 ' + Array.from({ length: 32 }, (_, i) => (i * 7 + 16).toString(16).toUpperCase().padStart(2, '0')).join(':');
let sdpSeq = 0;
const token = (n: number) => Array.from({ length: n }, () => 'abcdefghijklmnopqrstuvwxyz0123456789'[Math.floor(Math.random() * 36)]).join('');

interface MediaLine { media: 'audio' | 'video' | 'application'; mid: string; port?: number }

/** A WebRTC SDP (offer or answer) with the given sections; candidates are never included. */
function webrtcSdp(sections: MediaLine[], setup: 'actpass' | 'active' | 'passive', opts: { audioCodec?: string; videoCodec?: string } = {}): string {
  const ufrag = token(8);
  const pwd = token(24);
  const lines = ['v=0', `o=- ${Date.now()}${++sdpSeq} 2 IN IP4 127.0.0.1`, 's=-', 't=0 0',
    `a=group:BUNDLE ${sections.filter((s) => s.port !== 0).map((s) => s.mid).join(' ')}`, 'a=msid-semantic: WMS'];
  for (const s of sections) {
    const port = s.port ?? 9;
    if (s.media === 'application') {
      lines.push(`m=application ${port} UDP/DTLS/SCTP webrtc-datachannel`, 'c=IN IP4 0.0.0.0');
    } else if (s.media === 'audio') {
      lines.push(`m=audio ${port} UDP/TLS/RTP/SAVPF 111`, 'c=IN IP4 0.0.0.0', 'a=rtcp:9 IN IP4 0.0.0.0');
    } else {
      lines.push(`m=video ${port} UDP/TLS/RTP/SAVPF 96`, 'c=IN IP4 0.0.0.0', 'a=rtcp:9 IN IP4 0.0.0.0');
    }
    lines.push(`a=ice-ufrag:${ufrag}`, `a=ice-pwd:${pwd}`, `a=fingerprint:${FINGERPRINT}`, `a=setup:${setup}`, `a=mid:${s.mid}`);
    if (s.media === 'application') lines.push('a=sctp-port:5000', 'a=max-message-size:65536');
    else if (s.media === 'audio') lines.push('a=sendrecv', 'a=rtcp-mux', `a=rtpmap:111 ${opts.audioCodec ?? 'opus/48000/2'}`);
    else lines.push('a=sendrecv', 'a=rtcp-mux', `a=rtpmap:96 ${opts.videoCodec ?? 'VP8/90000'}`);
  }
  return lines.join('\r\n') + '\r\n';
}

/** A plain RTP/AVP SDP (SIP-style) with audio and/or video. */
function rtpSdp(sections: { media: 'audio' | 'video'; port: number }[], address = '127.0.0.1'): string {
  const lines = ['v=0', `o=- ${Date.now()}${++sdpSeq} 1 IN IP4 ${address}`, 's=-', `c=IN IP4 ${address}`, 't=0 0'];
  for (const s of sections) {
    if (s.media === 'audio') lines.push(`m=audio ${s.port} RTP/AVP 0 101`, 'a=rtpmap:0 PCMU/8000', 'a=rtpmap:101 telephone-event/8000', 'a=sendrecv');
    else lines.push(`m=video ${s.port} RTP/AVP 96`, 'a=rtpmap:96 VP8/90000', 'a=sendrecv');
  }
  return lines.join('\r\n') + '\r\n';
}

function sectionsOf(sdp: string): MediaLine[] {
  return parseSdp(sdp).sections.map((s, i) => ({
    media: (s.media === 'audio' || s.media === 'video' ? s.media : 'application') as MediaLine['media'],
    mid: s.mid ?? String(i),
    port: s.port === 0 ? 0 : undefined,
  }));
}

/** A browser's offer: audio, video and a data channel (each optional), no candidates. */
export function clientOffer(opts: { audio?: boolean; video?: boolean; data?: boolean; videoCodec?: string } = {}): string {
  const sections: MediaLine[] = [];
  if (opts.audio !== false) sections.push({ media: 'audio', mid: String(sections.length) });
  if (opts.video !== false) sections.push({ media: 'video', mid: String(sections.length) });
  if (opts.data !== false) sections.push({ media: 'application', mid: String(sections.length) });
  return webrtcSdp(sections, 'actpass', { videoCodec: opts.videoCodec });
}

/** A browser's answer to a WebRTC offer: the offer's m-lines, in order, with its mids. */
export function clientAnswer(offerSdp: string): string {
  return webrtcSdp(sectionsOf(offerSdp), 'active');
}

/** A phone's plain RTP offer (or answer: the same shape). */
export function phoneSdp(opts: { video?: boolean; port?: number } = {}): string {
  const port = opts.port ?? 40000;
  return rtpSdp([{ media: 'audio', port }, ...(opts.video ? [{ media: 'video' as const, port: port + 2 }] : [])]);
}

/** A client candidate line (as set_candidate carries it). */
export function clientCandidate(n: number, mLineIndex = 0): IceCandidateInit {
  return { candidate: `candidate:c${n} 1 udp 2122260223 192.0.2.${10 + n} ${50000 + n} typ host`, sdpMid: String(mLineIndex), sdpMLineIndex: mLineIndex };
}

// ---- the engine -----------------------------------------------------------------------------

export type FakeElementKind = 'webrtc' | 'rtp' | 'passthrough' | 'recorder' | 'player';

export interface FakeElement {
  readonly id: ElementId;
  readonly kind: FakeElementKind;
  readonly tag: string;
  /** One source per kind (what this element receives). */
  readonly sources: Map<MediaKind, ElementId>;
  // Endpoints
  localSdp?: string;
  remoteSdp?: string;
  /** Client candidates added (addIceCandidate), in order. */
  readonly remoteCandidates: IceCandidateInit[];
  gathering: 'new' | 'gathering' | 'done';
  connection: ConnectionState;
  maxBitrate?: number | null;
  videoLayer?: string;
  codecs?: { audio?: string; video?: string };
  keyframeRequests: number;
  // Recorders
  recording?: { path: string; format: RecordingFormat; state: 'recording' | 'paused' | 'stopped'; startedAt: number };
  // Players
  playing?: { uri: string; loops: number; state: 'playing' | 'paused' | 'stopped' | 'eos'; position: number };
}

/** One call the domain made, with its arguments (element ids, SDPs...). */
export interface EngineCall { method: keyof MediaEngine; args: unknown[] }

type Method = keyof MediaEngine;

export interface FakeEngineOptions {
  /** Candidates each gathering emits before `ice_gathering_done` (default 2). */
  candidatesPerGather?: number;
  /** `auto` (default): gathering emits on its own, asynchronously; `manual`: the test drives it. */
  gathering?: 'auto' | 'manual';
  /** Player info returned by playerStart/playerInfo. */
  playerInfo?: PlayerInfo;
}

export class FakeEngine implements MediaEngine {
  /** Everything the domain asked of the engine, in order. */
  readonly log: EngineCall[] = [];
  candidatesPerGather: number;
  gatheringMode: 'auto' | 'manual';
  playerInfoValue: PlayerInfo;
  /** How many elements were ever created, and the peak of live ones. */
  created = 0;
  peak = 0;
  private readonly elements = new Map<ElementId, FakeElement>();
  private readonly listeners = new Set<(ev: EngineEvent) => void>();
  private readonly failures = new Map<Method, Error[]>();
  private readonly gates = new Map<Method, (() => Promise<void>)[]>();
  private nextId = 0;
  private nextPort = 41000;
  private closed = false;

  constructor(opts: FakeEngineOptions = {}) {
    this.candidatesPerGather = opts.candidatesPerGather ?? 2;
    this.gatheringMode = opts.gathering ?? 'auto';
    this.playerInfoValue = opts.playerInfo ?? { duration: 10_000, is_seekable: true, first_position: 0, last_position: 10_000 };
  }

  // ---- test hooks ---------------------------------------------------------------------------

  /** The next call of `method` rejects with `err` (queued: call several times for several). */
  failNext(method: Method, err: Error = new EngineError('failed', `injected failure of ${method}`)): void {
    const q = this.failures.get(method) ?? [];
    q.push(err);
    this.failures.set(method, q);
  }

  /**
   * The next call of `method` waits until the returned function is called (to hold the domain
   * in the middle of a step, e.g. to stop a session while its endpoint is being created).
   */
  holdNext(method: Method): () => void {
    let release!: () => void;
    const released = new Promise<void>((r) => { release = r; });
    const q = this.gates.get(method) ?? [];
    q.push(() => released);
    this.gates.set(method, q);
    return release;
  }

  /** The element feeding `sink` with `kind`, if any. */
  sourceOf(sink: ElementId, kind: MediaKind): ElementId | undefined {
    return this.elements.get(sink)?.sources.get(kind);
  }

  /** The sources of `sink` for every kind (absent kinds have none). */
  sourcesOf(sink: ElementId): Partial<Record<MediaKind, ElementId>> {
    return Object.fromEntries(this.elements.get(sink)?.sources ?? []) as Partial<Record<MediaKind, ElementId>>;
  }

  /** The elements `source` feeds (with `kind`, or with any kind), sorted. */
  sinksOf(source: ElementId, kind?: MediaKind): ElementId[] {
    const out = new Set<ElementId>();
    for (const el of this.elements.values()) {
      for (const [k, src] of el.sources) if (src === source && (kind === undefined || k === kind)) out.add(el.id);
    }
    return [...out].sort();
  }

  /** Every edge of the graph, as "source -kind-> sink" strings (sorted), for whole-graph checks. */
  edges(): string[] {
    const out: string[] = [];
    for (const el of this.elements.values()) for (const [k, src] of el.sources) out.push(`${src} -${k}-> ${el.id}`);
    return out.sort();
  }

  element(id: ElementId): FakeElement | undefined { return this.elements.get(id); }

  /** Live elements (of a kind, or of a session's tag prefix `<session id>#`). */
  live(filter: { kind?: FakeElementKind; tag?: string; session?: string } = {}): FakeElement[] {
    return [...this.elements.values()].filter((e) =>
      (filter.kind === undefined || e.kind === filter.kind)
      && (filter.tag === undefined || e.tag === filter.tag)
      && (filter.session === undefined || e.tag.startsWith(`${filter.session}#`)));
  }

  get liveCount(): number { return this.elements.size; }

  /** The endpoint (WebRTC or RTP) of a session, by the session's id. */
  endpointOf(sessionId: string): ElementId | undefined {
    return this.live({ session: sessionId }).find((e) => e.kind === 'webrtc' || e.kind === 'rtp')?.id;
  }

  /** The live element of a kind belonging to a session. */
  elementOf(sessionId: string, kind: FakeElementKind): ElementId | undefined {
    return this.live({ session: sessionId }).find((e) => e.kind === kind)?.id;
  }

  /** Calls of a method (optionally only those whose first argument is `element`). */
  callsOf(method: Method, element?: ElementId): EngineCall[] {
    return this.log.filter((c) => c.method === method && (element === undefined || c.args[0] === element));
  }

  /** How many SDP operations (offer/answer processing and generation) were made so far. */
  get sdpOperations(): number {
    return this.log.filter((c) => c.method === 'processOffer' || c.method === 'generateOffer' || c.method === 'processAnswer').length;
  }

  /** Sets the codecs an endpoint reports as negotiated (for codec-mismatch checks). */
  setCodecs(endpoint: ElementId, codecs: { audio?: string; video?: string }): void {
    this.mustGet(endpoint).codecs = { ...codecs };
  }

  /** Injects any engine event. */
  emit(ev: EngineEvent): void {
    for (const l of [...this.listeners]) l(ev);
  }

  emitConnection(elementId: ElementId, state: ConnectionState): void {
    const el = this.mustGet(elementId);
    el.connection = state;
    this.emit({ type: 'connection_state', elementId, tag: el.tag, state });
  }

  emitMediaFlow(elementId: ElementId, direction: 'in' | 'out', media: MediaKind, state: 'up' | 'down'): void {
    this.emit({ type: 'media_flow', elementId, tag: this.mustGet(elementId).tag, direction, media, state });
  }

  emitError(elementId: ElementId, message: string, code?: string): void {
    this.emit({ type: 'error', elementId, tag: this.mustGet(elementId).tag, message, ...(code ? { code } : {}) });
  }

  /** Manual gathering: one candidate of ours for an endpoint. */
  emitCandidate(elementId: ElementId, n = 1, mLineIndex = 0): void {
    const el = this.mustGet(elementId);
    this.emit({ type: 'ice_candidate', elementId, tag: el.tag, candidate: ourCandidate(n, mLineIndex) });
  }

  /** Manual gathering: our end of candidates for an endpoint. */
  emitGatheringDone(elementId: ElementId): void {
    const el = this.mustGet(elementId);
    el.gathering = 'done';
    this.emit({ type: 'ice_gathering_done', elementId, tag: el.tag });
  }

  /** A finished pass of a looping player. */
  emitPlayerLoop(player: ElementId, loop: number, loopsLeft: number | null): void {
    this.emit({ type: 'player_loop', elementId: player, tag: this.mustGet(player).tag, loop, loops_left: loopsLeft });
  }

  /** Waits until the engine's pending asynchronous events (gathering, states) are out. */
  async settle(): Promise<void> {
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  }

  // ---- MediaEngine ---------------------------------------------------------------------------

  async createWebRtcEndpoint(opts: { tag: string }): Promise<ElementId> {
    await this.enter('createWebRtcEndpoint', [opts]);
    return this.add('webrtc', opts.tag);
  }

  async createRtpEndpoint(opts: { tag: string }): Promise<ElementId> {
    await this.enter('createRtpEndpoint', [opts]);
    return this.add('rtp', opts.tag);
  }

  async createPassThrough(opts: { tag: string }): Promise<ElementId> {
    await this.enter('createPassThrough', [opts]);
    return this.add('passthrough', opts.tag);
  }

  async processOffer(endpoint: ElementId, sdp: string): Promise<string> {
    await this.enter('processOffer', [endpoint, sdp]);
    const el = this.endpoint(endpoint);
    if (el.kind === 'rtp') {
      this.check(sdp, 'rtp');
      // A re-offer on a live RTP endpoint keeps its ports.
      if (el.localSdp && el.remoteSdp) {
        el.remoteSdp = sdp;
        return el.localSdp;
      }
      if (el.remoteSdp || el.localSdp) throw new EngineError('invalid_state', 'the endpoint already has an offer');
      el.remoteSdp = sdp;
      const port = this.ports();
      const sections = parseSdp(sdp).sections
        .filter((s) => s.port !== 0 && (s.media === 'audio' || s.media === 'video'))
        .map((s, i) => ({ media: s.media as 'audio' | 'video', port: port + 2 * i }));
      el.localSdp = rtpSdp(sections);
      el.codecs = { audio: 'audio/pcmu', ...(sections.some((s) => s.media === 'video') ? { video: 'video/vp8' } : {}) };
      return el.localSdp;
    }
    this.check(sdp, 'webrtc');
    if (el.remoteSdp || el.localSdp) throw new EngineError('invalid_state', 'the endpoint already negotiated');
    el.remoteSdp = sdp;
    el.localSdp = webrtcSdp(sectionsOf(sdp), 'passive');
    el.codecs ??= codecsOf(sdp);
    return el.localSdp;
  }

  async generateOffer(endpoint: ElementId, opts: OfferOptions): Promise<string> {
    await this.enter('generateOffer', [endpoint, opts]);
    const el = this.endpoint(endpoint);
    if (el.localSdp) throw new EngineError('invalid_state', 'the endpoint already made an offer');
    if (el.kind === 'rtp') {
      const port = this.ports();
      el.localSdp = rtpSdp([...(opts.audio ? [{ media: 'audio' as const, port }] : []), ...(opts.video ? [{ media: 'video' as const, port: port + 2 }] : [])]);
    } else {
      const sections: MediaLine[] = [];
      if (opts.audio) sections.push({ media: 'audio', mid: String(sections.length) });
      if (opts.video) sections.push({ media: 'video', mid: String(sections.length) });
      if (opts.data) sections.push({ media: 'application', mid: String(sections.length) });
      el.localSdp = webrtcSdp(sections, 'actpass');
    }
    return el.localSdp;
  }

  async processAnswer(endpoint: ElementId, sdp: string): Promise<void> {
    await this.enter('processAnswer', [endpoint, sdp]);
    const el = this.endpoint(endpoint);
    if (!el.localSdp || el.remoteSdp) throw new EngineError('invalid_state', 'no offer of ours waits for an answer');
    this.check(sdp, el.kind === 'rtp' ? 'rtp' : 'webrtc');
    const ours = parseSdp(el.localSdp).sections.length;
    if (parseSdp(sdp).sections.length !== ours) throw new EngineError('invalid_sdp', `the answer has not the offer's ${ours} m-lines`);
    el.remoteSdp = sdp;
    el.codecs ??= el.kind === 'rtp' ? { audio: 'audio/pcmu' } : codecsOf(sdp);
  }

  async gatherCandidates(endpoint: ElementId): Promise<void> {
    await this.enter('gatherCandidates', [endpoint]);
    const el = this.endpoint(endpoint);
    if (el.gathering !== 'new') return;
    el.gathering = 'gathering';
    if (el.kind === 'rtp') {
      setImmediate(() => { if (this.elements.has(endpoint)) this.emitGatheringDone(endpoint); });
      return;
    }
    if (this.gatheringMode === 'manual') return;
    const n = this.candidatesPerGather;
    const sections = el.localSdp ? parseSdp(el.localSdp).sections.length : 1;
    setImmediate(() => {
      for (let i = 0; i < n; i++) {
        if (!this.elements.has(endpoint)) return;
        this.emitCandidate(endpoint, i + 1, i % sections);
      }
      if (this.elements.has(endpoint)) this.emitGatheringDone(endpoint);
    });
  }

  async addIceCandidate(endpoint: ElementId, candidate: IceCandidateInit): Promise<void> {
    await this.enter('addIceCandidate', [endpoint, candidate]);
    const el = this.endpoint(endpoint);
    if (el.kind === 'rtp') throw new EngineError('invalid_candidate', 'plain RTP endpoints take no ICE candidates');
    // As a real ICE agent: candidates belong to a remote description.
    if (!el.remoteSdp) throw new EngineError('invalid_state', 'no remote description yet');
    if (!/^(a=)?candidate:/.test(candidate.candidate)) throw new EngineError('invalid_candidate', 'not a candidate');
    el.remoteCandidates.push(candidate);
  }

  async connect(source: ElementId, sink: ElementId, kind?: MediaKind): Promise<void> {
    await this.enter('connect', [source, sink, kind]);
    this.mustGet(source);
    const s = this.mustGet(sink);
    for (const k of kind ? [kind] : MEDIA_KINDS) s.sources.set(k, source);
  }

  async disconnect(source: ElementId, sink: ElementId, kind?: MediaKind): Promise<void> {
    await this.enter('disconnect', [source, sink, kind]);
    // Either side may already be gone (a released peer): nothing to cut then.
    const s = this.elements.get(sink);
    if (!s || !this.elements.has(source)) return;
    for (const k of kind ? [kind] : MEDIA_KINDS) if (s.sources.get(k) === source) s.sources.delete(k);
  }

  async requestKeyframe(element: ElementId): Promise<void> {
    await this.enter('requestKeyframe', [element]);
    this.mustGet(element).keyframeRequests++;
  }

  async setMaxBitrate(endpoint: ElementId, bitsPerSecond: number | null): Promise<void> {
    await this.enter('setMaxBitrate', [endpoint, bitsPerSecond]);
    this.endpoint(endpoint).maxBitrate = bitsPerSecond;
  }

  async setVideoLayer(endpoint: ElementId, layer: string): Promise<void> {
    await this.enter('setVideoLayer', [endpoint, layer]);
    this.endpoint(endpoint).videoLayer = layer;
  }

  async getStats(element: ElementId): Promise<ElementStats> {
    await this.enter('getStats', [element]);
    const el = this.mustGet(element);
    const flow = { packets: 100, bytes: 12_000, bitrate: 64_000 };
    return { elementId: element, connectionState: el.connection, inbound: { audio: { ...flow } }, outbound: { audio: { ...flow } } };
  }

  async negotiatedCodecs(endpoint: ElementId): Promise<{ audio?: string; video?: string }> {
    await this.enter('negotiatedCodecs', [endpoint]);
    const el = this.endpoint(endpoint);
    return el.remoteSdp ? { ...(el.codecs ?? {}) } : {};
  }

  async createRecorderEndpoint(opts: { tag: string }): Promise<ElementId> {
    await this.enter('createRecorderEndpoint', [opts]);
    return this.add('recorder', opts.tag);
  }

  async recorderStart(recorder: ElementId, path: string, format: RecordingFormat): Promise<void> {
    await this.enter('recorderStart', [recorder, path, format]);
    const el = this.ofKind(recorder, 'recorder');
    if (el.recording) throw new EngineError('invalid_state', 'already started');
    el.recording = { path, format, state: 'recording', startedAt: Date.now() };
    this.emit({ type: 'recorder_state', elementId: recorder, tag: el.tag, state: 'recording', uri: path });
  }

  async recorderPause(recorder: ElementId): Promise<void> {
    await this.enter('recorderPause', [recorder]);
    this.recorderTo(recorder, 'paused');
  }

  async recorderResume(recorder: ElementId): Promise<void> {
    await this.enter('recorderResume', [recorder]);
    this.recorderTo(recorder, 'recording');
  }

  async recorderStop(recorder: ElementId): Promise<RecordingResult> {
    await this.enter('recorderStop', [recorder]);
    const el = this.ofKind(recorder, 'recorder');
    const rec = el.recording;
    if (!rec) throw new EngineError('invalid_state', 'not started');
    const tracks = (['audio', 'video'] as const).filter((k) => el.sources.has(k));
    this.recorderTo(recorder, 'stopped');
    return { path: rec.path, format: rec.format, durationMs: Math.max(1, Date.now() - rec.startedAt), tracks: [...tracks], bytes: 1024 };
  }

  async createPlayerEndpoint(opts: { tag: string }): Promise<ElementId> {
    await this.enter('createPlayerEndpoint', [opts]);
    return this.add('player', opts.tag);
  }

  async playerStart(player: ElementId, uri: string, loops: number): Promise<PlayerInfo> {
    await this.enter('playerStart', [player, uri, loops]);
    const el = this.ofKind(player, 'player');
    el.playing = { uri, loops, state: 'playing', position: 0 };
    // As the local engine: `playing` is out before playerStart resolves.
    this.emit({ type: 'player_state', elementId: player, tag: el.tag, state: 'playing', position: 0 });
    return { ...this.playerInfoValue };
  }

  async playerPause(player: ElementId): Promise<void> {
    await this.enter('playerPause', [player]);
    this.playerTo(player, 'paused');
  }

  async playerResume(player: ElementId): Promise<void> {
    await this.enter('playerResume', [player]);
    this.playerTo(player, 'playing');
  }

  async playerStop(player: ElementId): Promise<void> {
    await this.enter('playerStop', [player]);
    this.playerTo(player, 'stopped');
  }

  async playerSeek(player: ElementId, positionMs: number): Promise<void> {
    await this.enter('playerSeek', [player, positionMs]);
    const p = this.playing(player);
    if (positionMs > this.playerInfoValue.last_position) throw new EngineError('failed', 'position past the end');
    p.position = positionMs;
  }

  async playerPosition(player: ElementId): Promise<number> {
    await this.enter('playerPosition', [player]);
    return this.playing(player).position;
  }

  async playerInfo(player: ElementId): Promise<PlayerInfo> {
    await this.enter('playerInfo', [player]);
    this.playing(player);
    return { ...this.playerInfoValue };
  }

  async release(element: ElementId): Promise<void> {
    await this.enter('release', [element]);
    if (!this.elements.delete(element)) return;
    // Cut out of the graph both ways.
    for (const el of this.elements.values()) {
      for (const [k, src] of [...el.sources]) if (src === element) el.sources.delete(k);
    }
  }

  async counters(): Promise<EngineCounters> {
    let endpoints = 0;
    let udpSockets = 0;
    for (const e of this.elements.values()) {
      if (e.kind === 'webrtc') { endpoints++; udpSockets += 1; }
      if (e.kind === 'rtp') { endpoints++; udpSockets += 4; }
    }
    return { elements: this.elements.size, endpoints, udpSockets };
  }

  onEvent(listener: (event: EngineEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Listeners still attached (a core that closed has none left). */
  get listenerCount(): number { return this.listeners.size; }

  async close(): Promise<void> {
    this.closed = true;
    this.elements.clear();
    this.listeners.clear();
  }

  // ---- internals -----------------------------------------------------------------------------

  private async enter(method: Method, args: unknown[]): Promise<void> {
    this.log.push({ method, args });
    if (this.closed) throw new EngineError('invalid_state', 'engine closed');
    const gate = this.gates.get(method)?.shift();
    if (gate) await gate();
    const err = this.failures.get(method)?.shift();
    if (err) throw err;
  }

  private add(kind: FakeElementKind, tag: string): ElementId {
    const id = `${kind}-${++this.nextId}`;
    this.elements.set(id, {
      id, kind, tag, sources: new Map(), remoteCandidates: [], gathering: 'new', connection: 'new', keyframeRequests: 0,
    });
    this.created++;
    this.peak = Math.max(this.peak, this.elements.size);
    return id;
  }

  private mustGet(id: ElementId): FakeElement {
    const el = this.elements.get(id);
    if (!el) throw new EngineError('not_found', `no element ${id}`);
    return el;
  }

  private endpoint(id: ElementId): FakeElement {
    const el = this.mustGet(id);
    if (el.kind !== 'webrtc' && el.kind !== 'rtp') throw new EngineError('not_found', `${id} is not an endpoint`);
    return el;
  }

  private ofKind(id: ElementId, kind: FakeElementKind): FakeElement {
    const el = this.mustGet(id);
    if (el.kind !== kind) throw new EngineError('not_found', `${id} is not a ${kind}`);
    return el;
  }

  private playing(player: ElementId): NonNullable<FakeElement['playing']> {
    const el = this.ofKind(player, 'player');
    if (!el.playing) throw new EngineError('invalid_state', 'not started');
    return el.playing;
  }

  private playerTo(player: ElementId, state: 'playing' | 'paused' | 'stopped'): void {
    const el = this.ofKind(player, 'player');
    const p = this.playing(player);
    p.state = state;
    this.emit({ type: 'player_state', elementId: player, tag: el.tag, state, position: p.position });
  }

  private recorderTo(recorder: ElementId, state: 'recording' | 'paused' | 'stopped'): void {
    const el = this.ofKind(recorder, 'recorder');
    if (!el.recording) throw new EngineError('invalid_state', 'not started');
    el.recording.state = state;
    // Synchronous, as the local engine's recorder.
    this.emit({ type: 'recorder_state', elementId: recorder, tag: el.tag, state, uri: el.recording.path });
  }

  private check(sdp: string, type: 'webrtc' | 'rtp'): void {
    try {
      checkSdp(sdp, type);
    } catch (err) {
      throw new EngineError('invalid_sdp', err instanceof Error ? err.message : String(err));
    }
  }

  private ports(): number {
    const p = this.nextPort;
    this.nextPort += 4;
    return p;
  }
}

function ourCandidate(n: number, mLineIndex: number): IceCandidateInit {
  return { candidate: `candidate:s${n} 1 udp 2122260223 127.0.0.1 ${51000 + n} typ host`, sdpMid: String(mLineIndex), sdpMLineIndex: mLineIndex };
}

function codecsOf(sdp: string): { audio?: string; video?: string } {
  const out: { audio?: string; video?: string } = {};
  for (const sec of parseSdp(sdp).sections) {
    if (sec.port === 0 || (sec.media !== 'audio' && sec.media !== 'video')) continue;
    const rtpmap = sec.lines.find((l) => l.startsWith('a=rtpmap:'));
    const name = rtpmap ? /^a=rtpmap:\d+ ([^/]+)/.exec(rtpmap)?.[1] : undefined;
    if (name) out[sec.media] = `${sec.media}/${name.toLowerCase()}`;
  }
  return out;
}

// ---- the domain around it -------------------------------------------------------------------

/** A bus subscriber that records what it is delivered (a front door's connection, as the domain sees it). */
export class FakeSubscriber implements Subscriber {
  readonly events: EventData[] = [];
  private waiters: { pred: (e: EventData) => boolean; resolve: (e: EventData) => void }[] = [];
  constructor(readonly id: string, readonly user: string, readonly admin = false) {}

  deliver(event: EventData): void {
    this.events.push(event);
    for (const w of [...this.waiters]) {
      if (w.pred(event)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(event);
      }
    }
  }

  /** Events about an object, optionally of one type. */
  of(objId: string, type?: string): EventData[] {
    return this.events.filter((e) => e.obj_id === objId && (type === undefined || e.type === type));
  }

  /** Types of the events about an object, in order. */
  typesOf(objId: string): string[] { return this.of(objId).map((e) => e.type ?? ''); }

  /** Resolves with the first event (past or future) matching `pred`. */
  waitFor(pred: (e: EventData) => boolean, ms = 2000): Promise<EventData> {
    const seen = this.events.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.resolve !== done);
        reject(new Error(`no matching event within ${ms} ms (seen: ${this.events.map((e) => `${e.subclass}/${e.type}`).join(', ')})`));
      }, ms);
      const done = (e: EventData) => { clearTimeout(timer); resolve(e); };
      this.waiters.push({ pred, resolve: done });
    });
  }
}

/** An invite (or other server request) a fake connection received, for the test to answer. */
export interface ReceivedRequest {
  cls: string;
  subclass: string;
  cmd: string;
  data: Record<string, unknown>;
  signal?: AbortSignal;
  timeoutMs?: number;
  reply(r: ClientReply): void;
  /** Settled: replied, aborted or timed out. */
  readonly settled: boolean;
}

/**
 * An API connection: receives events, and answers the server's requests (the call `invite`) as
 * its `onRequest` says — by default not at all until the test replies. Honours the request's
 * signal and timeout as the real connection does. Calls see it through `callParty`, the API's
 * own rendering of a connection as a call party.
 */
export class FakeCallConnection extends FakeSubscriber implements RequestingSubscriber {
  callParty!: WireCallParty;
  readonly requests: ReceivedRequest[] = [];
  /** Called for each request; return a reply to answer at once, or undefined to leave it to the test. */
  onRequest?: (req: ReceivedRequest) => ClientReply | undefined;
  private requestWaiters: ((r: ReceivedRequest) => void)[] = [];

  request(cls: string, subclass: string, cmd: string, data: unknown, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<ClientReply> {
    return new Promise<ClientReply>((resolve, reject) => {
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      const finish = (f: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        f();
      };
      const onAbort = () => finish(() => reject(new Error('aborted')));
      if (opts.signal?.aborted) { onAbort(); return; }
      opts.signal?.addEventListener('abort', onAbort);
      if (opts.timeoutMs !== undefined) timer = setTimeout(() => finish(() => reject(new Error('timeout'))), opts.timeoutMs);
      const req: ReceivedRequest = {
        cls, subclass, cmd, data: data as Record<string, unknown>, signal: opts.signal, timeoutMs: opts.timeoutMs,
        reply: (r) => finish(() => resolve(r)),
        get settled() { return settled; },
      };
      this.requests.push(req);
      for (const w of this.requestWaiters.splice(0)) w(req);
      const auto = this.onRequest?.(req);
      if (auto) req.reply(auto);
    });
  }

  /** The first request (past or future) with this command. */
  async nextRequest(cmd = 'invite', ms = 2000): Promise<ReceivedRequest> {
    const deadline = Date.now() + ms;
    for (;;) {
      const seen = this.requests.find((r) => r.cmd === cmd);
      if (seen) return seen;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${cmd} request within ${ms} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.requestWaiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
  }
}

/** A MediaCore on a FakeEngine, with a silent logger and a throw-away recordings folder. */
export class TestCore {
  readonly engine: FakeEngine;
  readonly core: MediaCore;
  readonly dir: string;
  /** The API's event bus, fed as the API server feeds it. */
  readonly bus = new EventBus();
  private seq = 0;

  constructor(opts: FakeEngineOptions & { limits?: QuotaLimits } = {}) {
    this.engine = new FakeEngine(opts);
    this.dir = mkdtempSync(join(tmpdir(), 'nkmedia-core-'));
    this.core = new MediaCore({
      engine: this.engine,
      log: pino({ level: 'silent' }),
      paths: { recordingsDir: join(this.dir, 'recordings'), playDirs: [join(this.dir, 'media')], allowHttp: true },
      ...(opts.limits ? { limits: opts.limits } : {}),
    });
    // The tests read sessions' events as the API's subscribers get them.
    publishSessionEvents(this.core.sessions, this.bus);
    publishRoomEvents(this.core.rooms, this.bus);
    publishCallEvents(this.core.calls, this.bus);
  }

  get sessions() { return this.core.sessions; }
  get calls() { return this.core.calls; }
  get rooms() { return this.core.rooms; }

  /** A connection of `user`: a subscriber plus the caller identity the API would use. */
  conn(user: string, opts: { admin?: boolean } = {}): FakeCallConnection & { caller: Caller } {
    const c = new FakeCallConnection(`conn-${user}-${++this.seq}`, user, opts.admin ?? false) as FakeCallConnection & { caller: Caller };
    c.caller = { user, admin: opts.admin ?? false, connId: c.id };
    c.callParty = new WireCallParty(c, this.bus);
    return c;
  }

  /**
   * Creates a session as the API's `create` does: the creator is subscribed to its events first
   * (unless `subscribe: false`). Resolves with the reply and the session object.
   */
  async create(
    conn: FakeCallConnection & { caller: Caller },
    req: Partial<CreateRequest> & { type: CreateRequest['type'] },
    opts: { owner?: Partial<Owner>; onSession?: (s: Session) => void } = {},
  ) {
    const id = req.session_id ?? this.sessions.newId();
    const key = { class: 'media', subclass: 'session', type: '*', obj_id: id };
    if (req.subscribe !== false) this.bus.subscribe(conn, key, req.events_body);
    try {
      const owner: Owner = { user: conn.user, connId: conn.id, ...opts.owner };
      const onSession = (s: Session) => { setCreator(s, conn); opts.onSession?.(s); };
      const reply = await this.sessions.create(req as CreateRequest, conn.caller, id, owner, { onSession });
      return { reply, id, session: this.sessions.lookup(id)! };
    } catch (err) {
      if (!this.sessions.lookup(id)) this.bus.unsubscribe(conn, key);
      throw err;
    }
  }

  /** A parked WebRTC session the client offered to, with our answer in (state `ready`). */
  async offeree(conn: FakeCallConnection & { caller: Caller }, req: Partial<CreateRequest> = {}): Promise<Session> {
    const { session } = await this.create(conn, { type: 'park', offer: { sdp: clientOffer(), trickle_ice: true }, ...req });
    return session;
  }

  /** Stops everything, closes the core, checks nothing is left behind, removes the folder. */
  async close(): Promise<void> {
    await this.core.stopAll('api_stop');
    this.core.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * A factory of TestCores for one test file: after each test every core it made is stopped and
 * must have left nothing: no engine element, session, call, room or engine listener.
 */
export function coresClosedAfterEach(): (opts?: ConstructorParameters<typeof TestCore>[0]) => TestCore {
  const open: TestCore[] = [];
  afterEach(async () => {
    for (const tc of open.splice(0)) {
      await tc.close();
      assert.equal(tc.engine.liveCount, 0, `elements left: ${tc.engine.live().map((e) => `${e.kind}:${e.tag}`).join(', ')}`);
      assert.equal(tc.sessions.size, 0);
      assert.equal(tc.calls.size, 0);
      assert.equal(tc.rooms.size, 0);
      assert.equal(tc.engine.listenerCount, 0, 'the core detached from the engine');
    }
  });
  return (opts) => {
    const tc = new TestCore(opts);
    open.push(tc);
    return tc;
  };
}

/** An `assert.rejects` check: the error is an ApiError with this term. */
export const apiTerm = (t: ErrorTerm) => (err: unknown) => {
  assert.ok(err instanceof ApiError, `expected ApiError ${t}, got ${String(err)}`);
  assert.equal(err.term, t, err.message);
  return true;
};

/** Waits until `cond` holds (polling every few ms). */
export async function until<T>(cond: () => T | undefined | false | Promise<T | undefined | false>, ms = 2000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
