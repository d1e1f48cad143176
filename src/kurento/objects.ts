// The media objects a Kurento client sees: pipelines and the elements in them, with what the
// protocol lets a client read back (names, tags, connections, media and connection states).
// Each element stands for one engine element; the engine holds the media, these hold the
// Kurento-side bookkeeping.
import type { ElementId, IceCandidateInit, MediaKind } from '../engine/types.js';

export type ElementType = 'WebRtcEndpoint' | 'RtpEndpoint' | 'PassThrough' | 'PlayerEndpoint' | 'RecorderEndpoint';
export type ObjectType = 'ServerManager' | 'MediaPipeline' | ElementType;

/** Who may see and act on an object: its creator's user, and admins. */
export interface Principal { user: string; admin: boolean }

export const SERVER_MANAGER_ID = 'manager_ServerManager';

export abstract class MediaObject {
  readonly creationTime = Math.floor(Date.now() / 1000);
  name: string;
  readonly tags = new Map<string, string>();
  sendTagsInEvents = false;
  /** Client sessions holding a reference (KMS's ref/unref): the object goes when the last one lets go. */
  readonly refs = new Set<string>();
  released = false;
  /** Subscriptions by event type: subscription ids. */
  readonly subscriptions = new Map<string, Set<string>>();
  private queue: Promise<unknown> = Promise.resolve();

  constructor(readonly id: string, readonly type: ObjectType, readonly owner: string) {
    this.name = id;
  }

  /**
   * Runs operations on this object one after another in arrival order: a client may send an
   * ICE candidate right behind the offer it belongs to, before the offer is answered.
   */
  serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  tagList(): { key: string; value: string }[] {
    return [...this.tags].map(([key, value]) => ({ key, value }));
  }
}

export class ServerManagerObject extends MediaObject {
  constructor() { super(SERVER_MANAGER_ID, 'ServerManager', ''); }
}

export class Pipeline extends MediaObject {
  readonly elements = new Set<Element>();
  latencyStats = false;
  constructor(id: string, owner: string) { super(id, 'MediaPipeline', owner); }
}

export type FlowState = 'FLOWING' | 'NOT_FLOWING';
export type UriState = 'STOP' | 'START' | 'PAUSE';

export interface Link { source: Element; kind: MediaKind; sourceDescription: string; sinkDescription: string }

export class Element extends MediaObject {
  /** What feeds this element, per media kind (one source per kind, as in Kurento). */
  readonly sources = new Map<MediaKind, Link>();
  readonly flowingIn = new Set<MediaKind>();
  readonly flowingOut = new Set<MediaKind>();
  connectionState: 'CONNECTED' | 'DISCONNECTED' = 'DISCONNECTED';
  mediaState: 'CONNECTED' | 'DISCONNECTED' = 'DISCONNECTED';
  // Settings a client may set and read back (encoder, bandwidth, ICE servers...). Only the
  // receive bandwidth of SDP endpoints reaches the engine (REMB toward the client); see
  // docs/KURENTO.md.
  readonly knobs = new Map<string, unknown>();

  /** SDP endpoints: the negotiation so far. */
  sdp: { local?: string; remote?: string; offered: boolean; negotiated: boolean } = { offered: false, negotiated: false };
  /** WebRTC: candidates found so far (for getLocalSessionDescriptor after gathering). */
  readonly localCandidates: IceCandidateInit[] = [];
  /** WebRTC: the client's candidates that came before the remote description (added after it). */
  pendingCandidates: IceCandidateInit[] = [];
  /** WebRTC: offer a data channel in generateOffer (constructor `useDataChannels`). */
  useDataChannels = false;
  /** Player: what the engine opens (the URI's checked real path, or the http(s) URI). */
  target = '';
  gathering: 'new' | 'gathering' | 'done' = 'new';
  iceState = 'DISCONNECTED';

  /** Player and recorder. */
  uri = '';
  uriState: UriState = 'STOP';
  /** Player: whether the engine player was started (later `play` calls resume it). */
  started = false;
  /** Recorder: the file path, format and the kinds its profile records. */
  recording?: { path: string; format: 'webm' | 'mp4'; kinds: readonly MediaKind[]; stopOnEndOfStream: boolean };
  /** A recorder's `stop` in progress: `stopAndWait` and release wait for it. */
  stopping?: Promise<unknown>;
  /** A recorder that was stopped: its file is final, it does not record again. */
  finished = false;

  constructor(id: string, readonly elementType: ElementType, owner: string, readonly pipeline: Pipeline, readonly engineId: ElementId, readonly sessionKind?: 'webrtc' | 'rtp') {
    super(id, elementType, owner);
  }

  get isSdpEndpoint(): boolean { return this.elementType === 'WebRtcEndpoint' || this.elementType === 'RtpEndpoint'; }

  /** The kinds this element takes when something connects to it (as KMS: only the pads it has). */
  acceptedKinds(): readonly MediaKind[] {
    if (this.recording) return this.recording.kinds;
    return this.elementType === 'RtpEndpoint' ? ['audio', 'video'] : ['audio', 'video', 'data'];
  }

  /** The kinds this element can send on. */
  producedKinds(): readonly MediaKind[] {
    return this.elementType === 'PlayerEndpoint' || this.elementType === 'RtpEndpoint' ? ['audio', 'video'] : ['audio', 'video', 'data'];
  }
}

/** Kurento's class hierarchy for each type, as `describe` answers it. */
export const HIERARCHY: Record<ObjectType, string[]> = {
  ServerManager: ['kurento.MediaObject'],
  MediaPipeline: ['kurento.MediaObject'],
  PassThrough: ['kurento.MediaElement', 'kurento.MediaObject'],
  WebRtcEndpoint: ['kurento.BaseRtpEndpoint', 'kurento.SdpEndpoint', 'kurento.SessionEndpoint', 'kurento.Endpoint', 'kurento.MediaElement', 'kurento.MediaObject'],
  RtpEndpoint: ['kurento.BaseRtpEndpoint', 'kurento.SdpEndpoint', 'kurento.SessionEndpoint', 'kurento.Endpoint', 'kurento.MediaElement', 'kurento.MediaObject'],
  PlayerEndpoint: ['kurento.UriEndpoint', 'kurento.Endpoint', 'kurento.MediaElement', 'kurento.MediaObject'],
  RecorderEndpoint: ['kurento.UriEndpoint', 'kurento.Endpoint', 'kurento.MediaElement', 'kurento.MediaObject'],
};

/**
 * Extension (docs/KURENTO.md "Extensions"): the engine's own event for an element, unrounded and
 * with what Kurento's events do not carry (positions, loops, exact connection states). Fired on
 * the element and on its pipeline (one subscription there covers every element).
 */
export const ENGINE_EVENT = 'NkmediaEngineEvent';

const ELEMENT_EVENTS = ['Error', 'ElementConnected', 'ElementDisconnected', 'MediaFlowInStateChanged', 'MediaFlowOutStateChanged', 'MediaTranscodingStateChanged', ENGINE_EVENT];
const RTP_EVENTS = [...ELEMENT_EVENTS, 'MediaSessionStarted', 'MediaSessionTerminated', 'ConnectionStateChanged', 'MediaStateChanged'];
const URI_EVENTS = [...ELEMENT_EVENTS, 'UriEndpointStateChanged'];

/** The events each type accepts subscriptions to. */
export const EVENTS: Record<ObjectType, readonly string[]> = {
  ServerManager: ['Error', 'ObjectCreated', 'ObjectDestroyed'],
  MediaPipeline: ['Error', ENGINE_EVENT],
  PassThrough: ELEMENT_EVENTS,
  WebRtcEndpoint: [...RTP_EVENTS, 'DataChannelClosed', 'DataChannelOpened', 'DtlsConnectionStateChange', 'IceCandidateFound', 'IceComponentStateChanged', 'IceGatheringDone', 'NewCandidatePairSelected'],
  RtpEndpoint: [...RTP_EVENTS, 'OnKeySoftLimit'],
  PlayerEndpoint: [...URI_EVENTS, 'EndOfStream'],
  RecorderEndpoint: [...URI_EVENTS, 'Paused', 'Recording', 'Stopped'],
};

/** Kurento types we know of but do not provide: their `create` names them in the error. */
export const NOT_PROVIDED: Record<string, string> = {
  Composite: 'mixing hubs are not provided (no Composite, Dispatcher, DispatcherOneToMany, AlphaBlending, Mixer, HubPort)',
  Dispatcher: 'mixing hubs are not provided',
  DispatcherOneToMany: 'mixing hubs are not provided',
  AlphaBlending: 'mixing hubs are not provided',
  Mixer: 'mixing hubs are not provided',
  HubPort: 'mixing hubs are not provided',
  HttpPostEndpoint: 'HTTP endpoints are not provided',
  FaceOverlayFilter: 'filters are not provided (they need decoding and re-encoding video)',
  GStreamerFilter: 'filters are not provided (there is no GStreamer here)',
  ZBarFilter: 'filters are not provided',
  OpenCVFilter: 'filters are not provided',
  ImageOverlayFilter: 'filters are not provided',
};
