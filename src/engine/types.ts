// The media engine interface (docs/ARCHITECTURE.md "Engine model"). Everything crossing it is plain,
// serialisable data and ids, and every call is async, so the same interface can later be served
// by worker processes or a remote Kurento-protocol server.

export type ElementId = string;
export type MediaKind = 'audio' | 'video' | 'data';
export const MEDIA_KINDS: readonly MediaKind[] = ['audio', 'video', 'data'];

export interface IceCandidateInit {
  candidate: string;
  sdpMid?: string;
  sdpMLineIndex: number;
}

/**
 * Where a new element should go when the engine spans several media nodes (a single engine
 * ignores it): with another element, and for a room's listeners, spread so that no node carries
 * more than its share of one room.
 */
export interface Placement {
  /** On the node of this element (a session's other elements, its bridge peer, its publisher, its master). */
  near?: ElementId;
  /** The room a listener joins: at most the configured number of its listeners share a node. */
  room?: string;
  /** Elements made with the same key go to one node (a session's elements, made at once). */
  with?: string;
}

export interface ElementOptions {
  /** Free-form tag carried in the element's events (the session id). */
  tag: string;
  placement?: Placement;
}

export type WebRtcEndpointOptions = ElementOptions;

export interface OfferOptions {
  audio: boolean;
  video: boolean;
  data: boolean;
}

export type ConnectionState = 'new' | 'connecting' | 'connected' | 'disconnected' | 'failed' | 'closed';

export type RecordingFormat = 'webm' | 'mp4';
export interface RecordingResult { path: string; format: RecordingFormat; durationMs: number; tracks: ('audio' | 'video')[]; bytes: number }
/** Kurento's getVideoInfo, in milliseconds. */
export interface PlayerInfo { duration: number; is_seekable: boolean; first_position: number; last_position: number }

export type EngineEvent =
  | { type: 'ice_candidate'; elementId: ElementId; tag: string; candidate: IceCandidateInit }
  | { type: 'ice_gathering_done'; elementId: ElementId; tag: string }
  | { type: 'connection_state'; elementId: ElementId; tag: string; state: ConnectionState }
  | { type: 'media_flow'; elementId: ElementId; tag: string; direction: 'in' | 'out'; media: MediaKind; state: 'up' | 'down' }
  | { type: 'recorder_state'; elementId: ElementId; tag: string; state: 'recording' | 'paused' | 'stopped'; uri: string }
  | { type: 'player_state'; elementId: ElementId; tag: string; state: 'playing' | 'paused' | 'stopped' | 'eos'; position: number }
  | { type: 'player_loop'; elementId: ElementId; tag: string; loop: number; loops_left: number | null }
  | { type: 'error'; elementId: ElementId; tag: string; message: string; code?: string };

/** The `code` of the `error` event an element gets when the media node holding it is lost. */
export const NODE_DOWN = 'media_node_down';

export interface MediaStats {
  packets: number;
  bytes: number;
  /** Bits per second over the last half second. */
  bitrate: number;
  /** RTP only. Inbound: lost on the way to us; outbound: lost on the way to the client (its reports). */
  packets_lost?: number;
  /** RTP only, outbound: the fraction lost in the client's last report (0..1). */
  fraction_lost?: number;
  /** RTP only: interarrival jitter in milliseconds (outbound: as the client reports it). */
  jitter_ms?: number;
  /** Outbound only: round-trip time from the client's reports, in milliseconds. */
  rtt_ms?: number;
}

export interface ElementStats {
  elementId: ElementId;
  connectionState: ConnectionState;
  inbound: Partial<Record<MediaKind, MediaStats>>;
  outbound: Partial<Record<MediaKind, MediaStats>>;
}

export interface EngineCounters {
  elements: number;
  endpoints: number;
  udpSockets: number;
  /**
   * The native forwarding plane, when the engine has one: packets it forwarded itself (one per
   * output) and packets it handed to JavaScript, since the process started.
   */
  plane?: { forwarded: number; toJs: number };
}

export interface MediaEngine {
  createWebRtcEndpoint(opts: WebRtcEndpointOptions): Promise<ElementId>;
  /** A plain RTP/AVP endpoint (SIP phones, gateways): SDP without ICE or DTLS, no candidates. */
  createRtpEndpoint(opts: ElementOptions): Promise<ElementId>;
  createPassThrough(opts: ElementOptions): Promise<ElementId>;
  /** Offeree: takes the remote offer, returns our answer SDP (without candidates). On a live RTP endpoint, a re-offer (hold, resume, moved). */
  processOffer(endpoint: ElementId, sdp: string): Promise<string>;
  /** Offerer: returns our offer SDP (without candidates). */
  generateOffer(endpoint: ElementId, opts: OfferOptions): Promise<string>;
  processAnswer(endpoint: ElementId, sdp: string): Promise<void>;
  /** Candidates are emitted as `ice_candidate` events, then `ice_gathering_done`. */
  gatherCandidates(endpoint: ElementId): Promise<void>;
  addIceCandidate(endpoint: ElementId, candidate: IceCandidateInit): Promise<void>;
  /** Media of `kind` (all kinds when omitted) flows from source to sink; replaces the sink's source. */
  connect(source: ElementId, sink: ElementId, kind?: MediaKind): Promise<void>;
  disconnect(source: ElementId, sink: ElementId, kind?: MediaKind): Promise<void>;
  /** Asks the media's origin for a video keyframe (merged per source: at most about one a second). */
  requestKeyframe(element: ElementId): Promise<void>;
  /** Limits what the endpoint's client sends to us (REMB toward it); null lifts the limit. */
  setMaxBitrate(endpoint: ElementId, bitsPerSecond: number | null): Promise<void>;
  /** Which layer of a simulcast source the endpoint's client gets: high, medium, low or a rid. */
  setVideoLayer(endpoint: ElementId, layer: string): Promise<void>;
  getStats(element: ElementId): Promise<ElementStats>;
  /** The codec negotiated per media on an endpoint (lower-case MIME type), for wiring checks. */
  negotiatedCodecs(endpoint: ElementId): Promise<{ audio?: string; video?: string }>;

  /** A sink writing what it receives to a file (connect a session's proxy to it). */
  createRecorderEndpoint(opts: ElementOptions): Promise<ElementId>;
  recorderStart(recorder: ElementId, path: string, format: RecordingFormat): Promise<void>;
  recorderPause(recorder: ElementId): Promise<void>;
  recorderResume(recorder: ElementId): Promise<void>;
  /** Finalises the file (also done by release). */
  recorderStop(recorder: ElementId): Promise<RecordingResult>;

  /** A source playing a media file or URL (connect it to an endpoint). */
  createPlayerEndpoint(opts: ElementOptions): Promise<ElementId>;
  /** Rejects with EngineError 'invalid_uri' (cannot open) or 'failed' (cannot play). */
  playerStart(player: ElementId, uri: string, loops: number): Promise<PlayerInfo>;
  playerPause(player: ElementId): Promise<void>;
  playerResume(player: ElementId): Promise<void>;
  playerStop(player: ElementId): Promise<void>;
  playerSeek(player: ElementId, positionMs: number): Promise<void>;
  playerPosition(player: ElementId): Promise<number>;
  playerInfo(player: ElementId): Promise<PlayerInfo>;

  release(element: ElementId): Promise<void>;
  /** Engine-wide counters for leak checks and monitoring. */
  counters(): Promise<EngineCounters>;
  /** The media node holding an element, when the engine spans several (undefined: in this process). */
  nodeOf?(element: ElementId): string | undefined;
  onEvent(listener: (event: EngineEvent) => void): () => void;
  close(): Promise<void>;
}

export class EngineError extends Error {
  /** `no_resources`: no port or descriptor left for the element (the request may work later). */
  constructor(readonly kind: 'invalid_sdp' | 'invalid_candidate' | 'not_found' | 'invalid_state' | 'invalid_uri' | 'no_resources' | 'failed', message: string) {
    super(message);
    this.name = 'EngineError';
  }
}
