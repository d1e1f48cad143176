// The in-process media engine: elements in one process, media moved by werift.
import { randomUUID } from 'node:crypto';
import type { RTCPeerConnectionConfig } from 'werift';
import { useOPUS, useVP8, useH264, useSdesMid, useSdesRTPStreamId, useRepairedRtpStreamId } from 'werift';
import {
  EngineError, MEDIA_KINDS, type ElementId, type ElementStats, type EngineCounters, type EngineEvent,
  type IceCandidateInit, type MediaEngine, type MediaKind, type OfferOptions, type PlayerInfo,
  type RecordingFormat, type RecordingResult,
} from '../types.js';
import { Element, PassThrough } from './graph/element.js';
import { WebRtcEndpoint } from './graph/webrtc-endpoint.js';
import { RtpEndpoint, type RtpEndpointOptions } from './graph/rtp-endpoint.js';
import { MediaEndpoint } from './graph/media-endpoint.js';
import { RecorderEndpoint } from './files/recorder.js';
import { PlayerEndpoint, PlayerError } from './files/player.js';
import { sharedCertificate } from './graph/certificate.js';
import { candidateRewriter } from './graph/candidates.js';
import { installFastRtpParser } from './accel/fast-rtp.js';
import { installWeriftPatches } from './accel/werift-patches.js';
import { forgetOrigin, invalidateRoutes, startedPlane } from './accel/forwarding-plane.js';
import { assertInternals } from './accel/internals.js';

const NO_STUN = 'stun:127.0.0.1:9';

export interface LocalEngineOptions {
  /** Inclusive UDP port range for ICE; unset = any free port. */
  portRange?: [number, number];
  /** Offer 127.0.0.1 host candidates. */
  includeLoopback: boolean;
  /** Use the machine's non-loopback interfaces (off in loopback-only setups). */
  useInterfaces: boolean;
  announcedAddresses: string[];
  stunServers: string[];
  turnServers: { urls: string; username?: string; credential?: string }[];
  gatherTimeoutMs: number;
  videoCodecs?: ('vp8' | 'h264')[];
  /** Plain RTP endpoints; unset = loopback only, default codecs. */
  rtp?: Partial<RtpEndpointOptions>;
  /** What players may read; unset = http(s) from public addresses only, local files anywhere. */
  play?: {
    /** Addresses or CIDRs http(s) media may come from although not public; false: no http(s). */
    httpAllow?: readonly string[] | false;
    /** Folders local files must really be inside (symlinks resolved). */
    localRoots?: readonly string[];
  };
}

export class LocalEngine implements MediaEngine {
  private readonly elements = new Map<ElementId, Element>();
  private readonly listeners = new Set<(ev: EngineEvent) => void>();
  private flowTimer?: NodeJS.Timeout;
  private peerConfig?: RTCPeerConnectionConfig;
  private readonly rewrite: (c: string) => string[];

  private get hasIceServers(): boolean { return this.opts.stunServers.length + this.opts.turnServers.length > 0; }

  constructor(private readonly opts: LocalEngineOptions) {
    this.rewrite = candidateRewriter(opts.announcedAddresses);
    // The werift internals the engine reaches into (internals.ts) are all there, or it fails
    // now, naming werift's version, rather than on some later call or packet.
    assertInternals();
    // Every incoming packet's header is parsed by werift; ours is faster and refuses the
    // malformed extension blocks that stall werift's (see fast-rtp.ts).
    installFastRtpParser();
    // What a peer or the OS can do to werift must not end the process: socket errors handled,
    // unauthenticated STUN dropped (see werift-patches.ts).
    installWeriftPatches();
  }

  private async config(): Promise<RTCPeerConnectionConfig> {
    if (this.peerConfig) return this.peerConfig;
    const o = this.opts;
    const video = (o.videoCodecs ?? ['vp8', 'h264']).map((c) => (c === 'vp8' ? useVP8() : useH264()));
    this.peerConfig = {
      codecs: { audio: [useOPUS()], video },
      // rid/mid extensions let clients send simulcast (one SSRC per layer, named by rid).
      headerExtensions: { audio: [useSdesMid()], video: [useSdesMid(), useSdesRTPStreamId(), useRepairedRtpStreamId()] },
      // werift falls back to a public STUN server when given none; a dead loopback one with a
      // zero wait stands in for "none" (and is removed before gathering, see WebRtcEndpoint).
      iceServers: this.hasIceServers ? [...o.stunServers.map((urls) => ({ urls })), ...o.turnServers] : [{ urls: NO_STUN }],
      iceStunGatherTimeout: this.hasIceServers ? o.gatherTimeoutMs / 1000 : 0,
      iceUseIpv4: o.useInterfaces,
      iceUseIpv6: false,
      iceAdditionalHostAddresses: o.includeLoopback ? ['127.0.0.1'] : undefined,
      ...(o.useInterfaces ? {} : { iceInterfaceAddresses: { udp4: '127.0.0.1' } }),
      // One transport per connection (browsers bundle too): one socket instead of one per m-line.
      bundlePolicy: 'max-bundle',
      icePortRange: o.portRange,
      // One certificate for all endpoints: generating one per connection dominated setup time.
      certificates: [await sharedCertificate()],
    };
    return this.peerConfig;
  }

  private emit = (ev: EngineEvent): void => {
    for (const l of this.listeners) {
      try { l(ev); } catch { /* a listener's failure must not break media handling */ }
    }
  };

  private get<T extends Element>(id: ElementId, type?: new (...args: any[]) => T): T {
    const el = this.elements.get(id);
    if (!el || el.released) throw new EngineError('not_found', `element ${id} not found`);
    if (type && !(el instanceof type)) throw new EngineError('invalid_state', `element ${id} is not a ${type.name}`);
    return el as T;
  }

  async createWebRtcEndpoint(opts: { tag: string }): Promise<ElementId> {
    const id = `webrtc-${randomUUID()}`;
    const ep = new WebRtcEndpoint(id, opts.tag, await this.config(), this.emit, this.rewrite, !this.hasIceServers);
    this.elements.set(id, ep);
    this.flowTimer ??= setInterval(() => this.checkFlows(), 500);
    this.flowTimer.unref();
    return id;
  }

  async createRtpEndpoint(opts: { tag: string }): Promise<ElementId> {
    const id = `rtp-${randomUUID()}`;
    const r = this.opts.rtp ?? {};
    this.elements.set(id, new RtpEndpoint(id, opts.tag, this.emit, {
      bindAddress: r.bindAddress ?? '127.0.0.1',
      announceAddress: r.announceAddress ?? r.bindAddress ?? '127.0.0.1',
      portRange: r.portRange,
      audioCodecs: r.audioCodecs ?? ['opus', 'G722', 'PCMU', 'PCMA'],
      videoCodecs: r.videoCodecs ?? ['VP8', 'H264'],
      latching: r.latching ?? 'auto',
    }));
    this.flowTimer ??= setInterval(() => this.checkFlows(), 500);
    this.flowTimer.unref();
    return id;
  }

  /** An endpoint toward a client, WebRTC or plain RTP. */
  private endpoint(id: ElementId): WebRtcEndpoint | RtpEndpoint {
    const el = this.get(id);
    if (el instanceof WebRtcEndpoint || el instanceof RtpEndpoint) return el;
    throw new EngineError('invalid_state', `element ${id} is not an endpoint`);
  }

  async createPassThrough(opts: { tag: string }): Promise<ElementId> {
    const id = `passthrough-${randomUUID()}`;
    this.elements.set(id, new PassThrough(id, opts.tag));
    return id;
  }

  processOffer(id: ElementId, sdp: string): Promise<string> { return this.endpoint(id).processOffer(sdp); }
  generateOffer(id: ElementId, opts: OfferOptions): Promise<string> { return this.endpoint(id).generateOffer(opts); }
  processAnswer(id: ElementId, sdp: string): Promise<void> { return this.endpoint(id).processAnswer(sdp); }

  async gatherCandidates(id: ElementId): Promise<void> {
    const ep = this.endpoint(id);
    // A plain RTP endpoint's address is in its SDP: gathering is over before it starts.
    if (ep instanceof RtpEndpoint) this.emit({ type: 'ice_gathering_done', elementId: id, tag: ep.tag });
    else ep.gatherCandidates();
  }

  async addIceCandidate(id: ElementId, c: IceCandidateInit): Promise<void> {
    const ep = this.endpoint(id);
    if (ep instanceof RtpEndpoint) throw new EngineError('invalid_candidate', 'plain RTP endpoints take no ICE candidates');
    return ep.addIceCandidate(c);
  }

  async connect(sourceId: ElementId, sinkId: ElementId, kind?: MediaKind): Promise<void> {
    const source = this.get(sourceId);
    const sink = this.get(sinkId);
    for (const k of kind ? [kind] : MEDIA_KINDS) {
      const old = sink.sources.get(k);
      if (old === source) continue;
      old?.sinks[k].delete(sink);
      sink.sources.set(k, source);
      source.sinks[k].add(sink);
      sink.sourceChanged(k);
    }
    invalidateRoutes(); // the native plane's routes follow the graph
  }

  async disconnect(sourceId: ElementId, sinkId: ElementId, kind?: MediaKind): Promise<void> {
    // Either side may already be gone (a released peer): then there is nothing to cut.
    const source = this.elements.get(sourceId);
    const sink = this.elements.get(sinkId);
    if (!source || !sink) return;
    for (const k of kind ? [kind] : MEDIA_KINDS) {
      if (sink.sources.get(k) !== source) continue;
      sink.sources.delete(k);
      source.sinks[k].delete(sink);
    }
    invalidateRoutes();
  }

  async requestKeyframe(id: ElementId): Promise<void> { this.get(id).requestKeyframe(true); }

  async setMaxBitrate(id: ElementId, bps: number | null): Promise<void> { this.endpoint(id).setMaxBitrate(bps); }

  async setVideoLayer(id: ElementId, layer: string): Promise<void> { this.endpoint(id).setVideoLayer(layer); }

  async negotiatedCodecs(id: ElementId): Promise<{ audio?: string; video?: string }> {
    const ep = this.endpoint(id);
    const pick = (kind: 'audio' | 'video') => (ep instanceof RtpEndpoint ? ep.negotiated(kind) : ep.sendCodec(kind))?.mimeType;
    return { audio: pick('audio'), video: pick('video') };
  }

  // ---- recorder and player ------------------------------------------------------------------

  async createRecorderEndpoint(opts: { tag: string }): Promise<ElementId> {
    const id = `recorder-${randomUUID()}`;
    this.elements.set(id, new RecorderEndpoint(id, opts.tag, this.emit));
    return id;
  }

  async recorderStart(id: ElementId, path: string, format: RecordingFormat): Promise<void> {
    try {
      await this.get(id, RecorderEndpoint).start(path, format);
    } catch (err) {
      // The file system's own words (paths, errno text) are not for clients: its code says enough.
      const code = (err as NodeJS.ErrnoException).code;
      const why = code === 'EMFILE' || code === 'ENFILE' || code === 'ENOSPC' ? 'no descriptor or space left'
        : code === 'EACCES' || code === 'EPERM' ? 'permission denied' : code === 'ENAMETOOLONG' ? 'name too long' : 'cannot create the file';
      throw new EngineError(code === 'EMFILE' || code === 'ENFILE' ? 'no_resources' : 'failed', `cannot record: ${why}`);
    }
  }

  async recorderPause(id: ElementId): Promise<void> { this.get(id, RecorderEndpoint).pause(); }
  async recorderResume(id: ElementId): Promise<void> { this.get(id, RecorderEndpoint).resume(); }
  recorderStop(id: ElementId): Promise<RecordingResult> { return this.get(id, RecorderEndpoint).stop(); }

  async createPlayerEndpoint(opts: { tag: string }): Promise<ElementId> {
    const id = `player-${randomUUID()}`;
    const play = this.opts.play;
    this.elements.set(id, new PlayerEndpoint(id, opts.tag, this.emit, { httpAllow: play?.httpAllow, localRoots: play?.localRoots }));
    return id;
  }

  async playerStart(id: ElementId, uri: string, loops: number): Promise<PlayerInfo> {
    try {
      return await this.get(id, PlayerEndpoint).start(uri, loops);
    } catch (err) {
      // A PlayerError's message is a fixed text, fit for clients (its detail is not passed on).
      if (err instanceof PlayerError) throw new EngineError(err.code === 'invalid_uri' ? 'invalid_uri' : 'failed', err.message);
      throw err;
    }
  }

  async playerPause(id: ElementId): Promise<void> { this.get(id, PlayerEndpoint).pause(); }
  async playerResume(id: ElementId): Promise<void> { this.get(id, PlayerEndpoint).resume(); }
  playerStop(id: ElementId): Promise<void> { return this.get(id, PlayerEndpoint).stop(); }

  async playerSeek(id: ElementId, ms: number): Promise<void> {
    try {
      await this.get(id, PlayerEndpoint).seek(ms);
    } catch (err) {
      if (err instanceof PlayerError) throw new EngineError(err.code === 'not_seekable' || err.code === 'invalid_state' ? 'invalid_state' : 'failed', err.message);
      throw err;
    }
  }

  async playerPosition(id: ElementId): Promise<number> { return this.get(id, PlayerEndpoint).position(); }
  async playerInfo(id: ElementId): Promise<PlayerInfo> {
    const info = this.get(id, PlayerEndpoint).info();
    if (!info) throw new EngineError('invalid_state', 'nothing is playing');
    return info;
  }

  async getStats(id: ElementId): Promise<ElementStats> {
    const ep = this.endpoint(id);
    return { elementId: id, connectionState: ep.connectionState, ...ep.stats() };
  }

  async release(id: ElementId): Promise<void> {
    const el = this.elements.get(id);
    if (!el) return;
    this.elements.delete(id);
    try {
      // Cut it out of the graph both ways before it goes.
      for (const k of MEDIA_KINDS) {
        el.sources.get(k)?.sinks[k].delete(el);
        for (const sink of el.sinks[k]) if (sink.sources?.get(k) === el) sink.sources.delete(k);
        el.sinks[k].clear();
      }
      el.sources.clear();
      invalidateRoutes();
      forgetOrigin(id); // any element (a player too) may have been an origin of forwarded media
    } finally {
      // Whatever went wrong above, the element's sockets, processes and files are let go.
      await el.release();
    }
    if (![...this.elements.values()].some((e) => e instanceof MediaEndpoint)) {
      clearInterval(this.flowTimer);
      this.flowTimer = undefined;
    }
  }

  async counters(): Promise<EngineCounters> {
    let endpoints = 0;
    for (const e of this.elements.values()) if (e instanceof MediaEndpoint) endpoints++;
    const udpSockets = process.getActiveResourcesInfo().filter((r) => r === 'UDPWrap').length;
    const plane = startedPlane()?.counters();
    return { elements: this.elements.size, endpoints, udpSockets, ...(plane ? { plane: { forwarded: plane.forwarded, toJs: plane.toJs } } : {}) };
  }

  onEvent(listener: (ev: EngineEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private checkFlows(): void {
    const now = performance.now();
    for (const e of this.elements.values()) {
      if (!(e instanceof MediaEndpoint)) continue;
      try { e.checkFlows(now); } catch { /* one endpoint's failure must not stop the others' checks */ }
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.elements.keys()].map((id) => this.release(id)));
    clearInterval(this.flowTimer);
    this.listeners.clear();
  }
}
