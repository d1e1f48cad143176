// What the test page exposes as `window.nk`, shared by the page script (test-browser/page/main.ts,
// bundled for the browser) and the Node side (test-browser/harness.ts), which calls it through
// Playwright's page.evaluate. Everything crossing that boundary is plain JSON.
import type { CallInvite, CreateCallRequest, CreateSessionRequest, EventData } from '../../src/client/index.js';

/** `startSession` options: the session's `create` fields, plus how the browser takes part. */
export interface StartOptions extends Partial<CreateSessionRequest> {
  type: CreateSessionRequest['type'];
  /** Who writes the offer: the browser (default; `create` with `offer`) or the server (`create` without one, then `set_answer`). */
  offerer?: 'browser' | 'server';
  /**
   * true (default): trickle ICE both ways — the browser's candidates go through `set_candidate`
   * and the server's come as `candidate` events. false: no trickling at all — the browser
   * sends its SDP only once gathering is complete (`trickle_ice:false`) and asks the server
   * for a complete one (`no_answer_trickle_ice` / `no_offer_trickle_ice`).
   */
  trickle?: boolean;
  /**
   * Send the fake microphone / camera (default true each); a kind not sent is still received.
   * `video` may be getUserMedia constraints (e.g. `{width: {exact: 320}, height: {exact: 180}}`),
   * so that two pages send pictures that can be told apart by their shape: all pages share one
   * fake capture device (same clock, same pattern), opened at the size the first page asked
   * for, and a later page can only get a crop or a downscale of it (or OverconstrainedError).
   */
  audio?: boolean;
  video?: boolean | MediaTrackConstraints;
  /** Open a data channel named "nkmedia" (browser offerer only; server offers always carry one). */
  data?: boolean;
  /**
   * Use the TURN servers of the login reply (`client.iceServers`) and relayed candidates only
   * (`iceTransportPolicy: 'relay'`), as a browser behind a NAT no host candidate gets through.
   */
  relayOnly?: boolean;
  /** Longest wait for the browser's own ICE gathering when not trickling (default 10000 ms). */
  gatherTimeoutMs?: number;
  /**
   * Browser offerer only: send the camera as simulcast, `addTransceiver(track, {direction,
   * sendEncodings})`. `true` = three layers, rids l (¼ size), m (½) and h (full), lowest first.
   */
  simulcast?: boolean | SimulcastEncoding[];
  /** The simulcast video transceiver's direction (default 'sendrecv'). */
  simulcastDirection?: 'sendonly' | 'sendrecv';
}

/** `startCall` options: the call's `create` fields (but the offer), plus what the browser sends. */
export interface CallStartOptions extends Omit<CreateCallRequest, 'offer'> {
  audio?: boolean;
  video?: boolean | MediaTrackConstraints;
}

/** `acceptCall` options: what the browser sends back. */
export interface CallAnswerOptions {
  audio?: boolean;
  video?: boolean | MediaTrackConstraints;
}

export interface SimulcastEncoding { rid: string; scaleResolutionDownBy?: number; maxBitrate?: number }

export interface KindStats { packets: number; bytes: number }

/** A digest of the RTCPeerConnection's getStats(), summed over streams of each kind. */
export interface PeerStats {
  connectionState: RTCPeerConnectionState;
  iceConnectionState: RTCIceConnectionState;
  inbound: {
    audio: KindStats;
    video: KindStats & { framesDecoded: number; keyFramesDecoded: number; frameWidth: number; frameHeight: number };
  };
  outbound: {
    audio: KindStats;
    video: KindStats & { framesEncoded: number; pliCount: number; nackCount: number; frameWidth: number; frameHeight: number };
  };
  /** Total payload bytes sent over all RTP streams. */
  bytesSent: number;
  /** Addresses of the selected ICE candidate pair ("ip:port"), when there is one. */
  selectedPair?: { local: string; remote: string; localType: string; remoteType: string };
  data: { messagesSent: number; messagesReceived: number };
}

/** Where one browser-side session stands. */
export interface SessionState {
  sessionId: string;
  type: string;
  offerer: 'browser' | 'server';
  connectionState: RTCPeerConnectionState;
  iceConnectionState: RTCIceConnectionState;
  signalingState: RTCSignalingState;
  /** Candidates the browser gathered and the ones the server sent (candidate lines). */
  localCandidates: string[];
  remoteCandidates: string[];
  /** Remote tracks received so far (kinds). */
  remoteTracks: string[];
  dataChannelState?: RTCDataChannelState;
  messages: string[];
  closed: boolean;
  /** The `create` reply's fields other than the SDP (e.g. `room_id` for publish and listen). */
  createReply: Record<string, unknown>;
  /** Wall-clock time (Date.now()) just before the page sent `create`. */
  createSentAtEpochMs: number;
  /** Wall-clock time when the peer connection first became 'connected'. */
  connectedAtEpochMs?: number;
  /**
   * Signalling on this peer connection, counted by the page: `negotiationneeded` events and
   * every setLocalDescription / setRemoteDescription call (the page's own and any other), the
   * signalingState changes, and the SDPs in force. After setup, a call whose media changes
   * without renegotiation leaves all of these unchanged.
   */
  negotiation: NegotiationRecord;
}

export interface NegotiationRecord {
  negotiationNeeded: number;
  setLocalDescription: number;
  setRemoteDescription: number;
  signalingStates: RTCSignalingState[];
  localSdp?: string;
  remoteSdp?: string;
}

/** What a frame watch measured (times in ms from when the watch, or the command, started). */
export interface FrameWatch {
  /**
   * When getStats first showed more decoded video frames than at the start (meeting `aspect`
   * if given); undefined if that did not happen within the timeout.
   */
  resumeMs?: number;
  /** The same moment as a wall-clock time (Date.now()), to compare with times taken in Node. */
  resumeAtEpochMs?: number;
  framesBefore: number;
  framesAtResume?: number;
  /** The decoded size at resume (or at the timeout). */
  frameWidth: number;
  frameHeight: number;
  /** getStats polls made. */
  polls: number;
}

/** What `switchAndWatch` measured: times from just before the command was sent. */
export interface SwitchResult extends FrameWatch {
  /** The command's reply. */
  reply: unknown;
  /** When the reply arrived. */
  replyMs: number;
}

export interface SwitchWatch {
  /** Longest wait for frames (default 5000 ms after the reply, or after the watch started). */
  timeoutMs?: number;
  /** Count frames only once the decoded picture's width/height ratio is within [min, max]. */
  aspect?: [number, number];
  /** Count frames only once the decoded picture's width is within [min, max] (e.g. a simulcast layer's). */
  width?: [number, number];
  /** Poll period (default 20 ms; Chromium caches getStats for a few tens of ms anyway). */
  pollMs?: number;
  /** Count from this many decoded frames instead of the count when the watch starts. */
  baselineFrames?: number;
}

export interface NkPageApi {
  /** Connects the page's SDK client to the server and logs in; resolves with the connection's id. */
  connect(url: string, user: string, creds?: { password?: string; token?: string }): Promise<string>;
  /** Creates a session and runs the WebRTC signalling; resolves with the session id once the SDPs are exchanged. */
  startSession(opts: StartOptions): Promise<string>;
  /** Resolves when the peer connection is 'connected'; rejects on 'failed' or timeout. */
  waitConnected(sessionId?: string, timeoutMs?: number): Promise<void>;
  stats(sessionId?: string): Promise<PeerStats>;
  /** The raw getStats() entries of the given types (all when none given), for diagnostics. */
  rawStats(sessionId?: string, types?: string[]): Promise<Record<string, unknown>[]>;
  state(sessionId?: string): SessionState;
  /** Every event the page's client received about this session, in order. */
  events(sessionId?: string): EventData[];
  /** Any `media/session` command through the page's SDK client (e.g. get_stats, set_type). */
  command(cmd: string, data?: Record<string, unknown>): Promise<any>;
  /**
   * Sends a `media/session` command (e.g. set_type) and watches, inside the page, how long it
   * takes until this session decodes new video frames: the timing is measured next to the
   * decoder, with no Node round trip per poll.
   */
  switchAndWatch(sessionId: string, cmd: string, data: Record<string, unknown>, watch?: SwitchWatch): Promise<SwitchResult>;
  /** The same watch without a command: from now until this session decodes new video frames. */
  watchFrames(sessionId: string, watch?: SwitchWatch): Promise<FrameWatch>;
  sendData(text: string, sessionId?: string): void;
  /** Destroys the session on the server (unless `keepServer`) and closes the peer connection. */
  closeSession(sessionId?: string, keepServer?: boolean): Promise<void>;
  /** Closes every session's peer connection and the API connection. */
  disconnect(): Promise<void>;
  /** Session ids started on this page, oldest first. */
  sessions(): string[];
  /**
   * Calls (media/call): places a call with the browser's offer (trickle both ways through the
   * call) and resolves once our answer is set, with the call id and the caller's session id
   * (usable with stats, waitConnected, state...).
   */
  startCall(opts: CallStartOptions): Promise<{ callId: string; sessionId: string }>;
  /** From now on this page's connection takes call invites (replies ok and keeps them). */
  listenForCalls(): void;
  /** The invites received so far. */
  invites(): CallInvite[];
  /** Answers an invite received: the browser answers the leg's offer; resolves with the leg's session id. */
  acceptCall(callId: string, opts?: CallAnswerOptions): Promise<string>;
  /** Any `media/call` command through the page's SDK client (ringing, rejected, hangup, get_info...). */
  callCommand(cmd: string, data?: Record<string, unknown>): Promise<any>;
}

declare global {
  interface Window { nk: NkPageApi }
}
