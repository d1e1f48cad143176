// What RemoteEngine keeps of each element it made on its node: the local id and tag, the node's
// object id once the element exists there (players and recorders are made on the node when they
// start: Kurento takes their URI at construction), and what Kurento's events and methods do not
// say back (state to read its events in order, the SDPs, the player's position, a recording's
// times).
import type { ConnectionState, ElementId, PlayerInfo, RecordingFormat, RecordingResult } from '../types.js';

export type ElementKind = 'webrtc' | 'rtp' | 'passthrough' | 'player' | 'recorder';

/** Kurento's type for each kind. */
export const KURENTO_TYPE: Record<ElementKind, string> = {
  webrtc: 'WebRtcEndpoint',
  rtp: 'RtpEndpoint',
  passthrough: 'PassThrough',
  player: 'PlayerEndpoint',
  recorder: 'RecorderEndpoint',
};

export interface PlayerState {
  uri: string;
  loops: number;
  /** The play under way (1 = the first), for loops played by RemoteEngine on a KMS. */
  play: number;
  info?: PlayerInfo;
  state: 'idle' | 'playing' | 'paused' | 'stopped' | 'eos';
  /** KMS: a loop restarting (its STOP and START are not reported). */
  replaying: boolean;
  /** KMS: where playback was at `since` (ms of the file), and when (performance.now), while playing. */
  base: number;
  since?: number;
}

export interface RecorderState {
  path: string;
  format: RecordingFormat;
  /** KMS: times for the result's duration (performance.now). */
  startedAt: number;
  pausedAt?: number;
  pausedMs: number;
  stopping?: Promise<RecordingResult>;
}

export class RemoteElement {
  /** The node's object id, once it exists there. */
  remoteId?: string;
  /** Set while the node's object is being made (connects wait for it). */
  materializing?: Promise<void>;
  released = false;

  /** SDP endpoints: what was negotiated (the codecs are read from it on a KMS). */
  sdp: { local?: string; remote?: string; role?: 'offeree' | 'offerer' } = {};
  /** Last connection state reported (events are reported on change only). */
  connection: ConnectionState = 'new';
  /** KMS: the endpoint's session was CONNECTED once (ICE READY then means connected). */
  sessionUp = false;
  /** Media flow per direction and kind, as last reported (`in:audio` → up/down). */
  readonly flows = new Map<string, 'up' | 'down'>();
  /** KMS: bytes at the previous getStats per direction and kind, for bitrates. */
  readonly statsPrev = new Map<string, { bytes: number; at: number }>();

  player?: PlayerState;
  recorder?: RecorderState;

  constructor(readonly id: ElementId, readonly kind: ElementKind, readonly tag: string) {}

  get isEndpoint(): boolean { return this.kind === 'webrtc' || this.kind === 'rtp'; }
}
