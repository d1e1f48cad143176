// Kurento's WebRtcEndpoint on werift: ICE, DTLS, SRTP and SCTP toward one client. Media the
// client sends goes to this element's sinks; media from its sources goes to the client.
import {
  PictureLossIndication, RTCPeerConnection, RtcpPayloadSpecificFeedback, RtpHeader, ntpTime,
  type GenericNack, type MediaStreamTrack, type RTCRtpSender,
  type RTCDataChannel, type RTCPeerConnectionConfig, type RTCRtpReceiver, type RTCRtpTransceiver,
} from 'werift';
import { EngineError, type ConnectionState, type EngineEvent, type IceCandidateInit, type MediaKind, type MediaStats, type OfferOptions } from '../../types.js';
import type { CodecInfo, MediaUnit } from './element.js';
import { isKeyframe } from './simulcast.js';
import { accelerate as accelerateSrtp } from '../accel/native-srtp.js';
import { FLOW_DOWN_MS, MediaEndpoint, rembFeedback } from './media-endpoint.js';
import { continueStream, newContinuity, type Continuity } from './stream-continuity.js';
import { PassThrough, type Element } from './element.js';
import { forwardingPlane, type ForwardingPlane } from '../accel/forwarding-plane.js';
import { PlaneAttachment, type PlaneHost } from '../accel/plane-attachment.js';
import { PortRangeExhausted, bindFailures, describeBindFailure, onTransportSocketError } from '../accel/werift-patches.js';
import { iceConnectionOf, iceConnections, receiverInternals, senderInternals } from '../accel/internals.js';

/**
 * NACKed packets are resent from this many of the last video packets sent per stream: about
 * 2.5 s at 1 Mbit/s, well past a NACK's useful life, and a quarter of the memory of 1024.
 */
const RETRANSMIT_BUFFER = 256;
/** How often the sender report's (NTP, RTP) time pair is refreshed. */
const SR_CLOCK_REFRESH_MS = 100;

/**
 * One outgoing stream (audio or video) toward our client. Its SSRC is the sender's and never
 * changes; sequence numbers and timestamps are rewritten so they run on across a change of
 * source (like mediasoup's SeqManager / LiveKit's rtpmunger).
 */
interface OutStream extends Continuity {
  target?: { sender: RTCRtpSender; codec: CodecInfo; payloadType: number };
  header?: RtpHeader;
  /** Encrypted packets by sequence number, for NACK retransmission. */
  sent: (Buffer | undefined)[];
  sentSeq: Int32Array;
  lastSrClock: number;
  /** Interarrival jitter the client reports for this stream (RTCP RR), in timestamp units. */
  remoteJitter?: number;
}

/** What a data channel message weighs against a max-message-size (bytes, as werift counts). */
const messageBytes = (m: string | Buffer): number => (typeof m === 'string' ? Buffer.byteLength(m) : m.length);

/** The start of the error an offer/answer fails with when ICE could bind no socket at all. */
export const NO_ICE_PORT = 'no UDP port/descriptor available for ICE';

const newOutStream = (): OutStream => ({
  ...newContinuity(),
  sent: new Array<Buffer | undefined>(RETRANSMIT_BUFFER), sentSeq: new Int32Array(RETRANSMIT_BUFFER).fill(-1), lastSrClock: 0,
});

export class WebRtcEndpoint extends MediaEndpoint {
  readonly pc: RTCPeerConnection;
  private readonly gathered: IceCandidateInit[] = [];
  private gatheringDone = false;
  private trickling = false;
  private state: ConnectionState = 'new';
  private readonly dataChannels = new Set<RTCDataChannel>();
  private readonly watchedTracks = new WeakSet<MediaStreamTrack>();
  private readonly out: Record<'audio' | 'video', OutStream> = { audio: newOutStream(), video: newOutStream() };
  retransmissions = 0;
  /** Where the client's video comes in, for keyframe requests (PLI). */
  /** The client's video streams by SSRC (one per simulcast layer), for keyframe requests. */
  private readonly videoIn = new Map<number, { receiver: RTCRtpReceiver; lastAt: number }>();
  /** Simulcast layers the client sends: bytes in the current window and the last ranking. */
  private readonly layerBytes = new Map<string, number>();
  private layerRank = new Map<string, number>();
  /** The native forwarding plane, when it carries this endpoint's socket (see plane-attachment.ts). */
  private readonly plane: ForwardingPlane | undefined = forwardingPlane();
  private attachment?: PlaneAttachment;
  /** Data channel messages dropped for their size: from the client (over what we announced), to it (over its limit). */
  readonly dataDropped = { in: 0, out: 0 };
  /** Exceptions caught in our werift callbacks and sends (see guard). */
  callbackErrors = 0;
  /** What was already reported (an error event each, once per endpoint). */
  private readonly reported = new Set<string>();

  constructor(
    id: string,
    tag: string,
    config: RTCPeerConnectionConfig,
    emit: (ev: EngineEvent) => void,
    private readonly rewriteCandidate: (c: string) => string[],
    private readonly noStun: boolean,
  ) {
    super(id, tag, emit);
    this.pc = new RTCPeerConnection(config);
    // Every callback we hand werift is guarded: an exception in our code is reported on this
    // element and goes no further (into werift's receive path, or the event loop).
    this.pc.onIceCandidate.subscribe(this.guard('ICE candidate', (c) => {
      if (!c) { this.onGatheringDone(); return; }
      for (const candidate of this.rewriteCandidate(c.candidate ?? '')) {
        this.onCandidate({ candidate, sdpMid: c.sdpMid ?? undefined, sdpMLineIndex: c.sdpMLineIndex ?? 0 });
      }
    }));
    this.pc.iceGatheringStateChange.subscribe(this.guard('ICE gathering state', (s) => { if (s === 'complete') this.onGatheringDone(); }));
    this.pc.connectionStateChange.subscribe(this.guard('connection state', (s) => {
      this.state = s as ConnectionState;
      if (this.released) return;
      this.emit({ type: 'connection_state', elementId: this.id, tag: this.tag, state: this.state });
      if (s !== 'connected') this.detachPlane();
      if (s === 'connected') {
        // SRTP through the native addon when it is built (several µs less per packet each way).
        for (const t of this.pc.dtlsTransports) if (t.srtp) accelerateSrtp(t.srtp, t.srtcp);
        this.attachPlane();
        // Video sent before our client was connected was dropped: ask for a fresh picture now.
        this.sources.get('video')?.requestKeyframe(true);
      }
    }));
    this.pc.onTrack.subscribe(this.guard('incoming track', (track) => {
      const transceiver = this.pc.getTransceivers().find((t) => t.receiver.tracks.includes(track));
      if (!transceiver) return;
      // werift announces one track per transceiver (its first); a simulcast transceiver has
      // one track per rid, all registered by then: each layer is read from its own track.
      for (const t of new Set([track, ...transceiver.receiver.tracks])) this.watchTrack(t, transceiver);
    }));
    for (const t of this.pc.getTransceivers()) this.watchSender(t);
    this.pc.onTransceiverAdded.subscribe(this.guard('new transceiver', (t) => this.watchSender(t)));
    this.pc.onDataChannel.subscribe(this.guard('new data channel', (dc) => this.addDataChannel(dc)));
  }

  /**
   * Wraps a callback handed to werift: an exception is counted and reported (an `error` event
   * with code `element_failed`, once per callback name) and goes no further.
   */
  private guard<A extends unknown[]>(what: string, fn: (...args: A) => void): (...args: A) => void {
    return (...args: A) => {
      try {
        fn(...args);
      } catch (err) {
        this.failed(what, err);
      }
    };
  }

  private failed(what: string, err: unknown): void {
    this.callbackErrors++;
    this.reportOnce(`failed:${what}`, `${what}: ${(err as Error)?.message ?? String(err)}`, 'element_failed');
  }

  /** One error event per key and endpoint: a failure repeated per packet must not flood the session. */
  private reportOnce(key: string, message: string, code: string): void {
    if (this.reported.has(key)) return;
    this.reported.add(key);
    try { this.emitError(message, code); } catch { /* the engine's listeners are guarded; belt and braces */ }
  }

  get connectionState(): ConnectionState { return this.state; }

  /** The codec negotiated for what we send our client (a player picks pass-through or transcoding by it). */
  override sendCodec(kind: 'audio' | 'video'): CodecInfo | undefined {
    const c = this.transceiver(kind)?.sender.codec;
    return c ? { mimeType: c.mimeType.toLowerCase(), clockRate: c.clockRate } : undefined;
  }

  /** Media our client sends on one incoming track (one simulcast layer, or the whole stream). */
  private watchTrack(track: MediaStreamTrack, transceiver: RTCRtpTransceiver): void {
    if (this.watchedTracks.has(track)) return;
    this.watchedTracks.add(track);
    const kind = track.kind === 'audio' ? 'audio' : 'video';
    const codecs = new Map<number, CodecInfo>();
    for (const c of transceiver.codecs) codecs.set(c.payloadType!, { mimeType: c.mimeType.toLowerCase(), clockRate: c.clockRate });
    track.onReceiveRtp.subscribe(this.guard('incoming RTP', (rtp) => {
      const codec = codecs.get(rtp.header.payloadType);
      if (!codec) return; // not a negotiated payload type (RTX and RED are undone by werift)
      this.count(this.inbound[kind], 'in', kind, rtp.serializeSize);
      if (this.attachment && !track.rid) this.routeNatively(kind, rtp.header.ssrc, rtp.header.payloadType, codec, transceiver.receiver);
      if (kind === 'audio') { this.forward({ kind, rtp, codec, origin: this.id }); return; }
      const now = performance.now();
      const known = this.videoIn.get(rtp.header.ssrc);
      if (known) known.lastAt = now;
      else this.videoIn.set(rtp.header.ssrc, { receiver: transceiver.receiver, lastAt: now });
      const rid = track.rid;
      if (!rid) { this.forward({ kind, rtp, codec, origin: this.id }); return; }
      this.layerBytes.set(rid, (this.layerBytes.get(rid) ?? 0) + rtp.payload.length);
      if (!this.layerRank.has(rid)) this.rankLayers();
      this.forward({
        kind, rtp, codec, origin: this.id,
        layer: { layer: rid, rank: this.layerRank.get(rid) ?? 0, layerCount: this.layerRank.size, keyframe: isKeyframe(codec.mimeType, rtp.payload) },
      });
    }));
  }

  /** The client asks us for a keyframe: the request travels to where our video comes from. */
  private watchSender(t: RTCRtpTransceiver): void {
    t.sender.onPictureLossIndication.subscribe(this.guard('keyframe request', () => this.sources.get('video')?.requestKeyframe(false)));
    // werift routes a PLI by its *sender* SSRC first: from a client that also sends video (a
    // browser: its PLIs carry its own video SSRC) it lands on our receiver of that video and
    // never reaches the sender above. Catch those by the SSRC they are about.
    t.receiver.onRtcp.subscribe(this.guard('incoming RTCP', (p) => {
      if (p.type !== RtcpPayloadSpecificFeedback.type) return;
      const fb = (p as RtcpPayloadSpecificFeedback).feedback;
      if (!(fb instanceof PictureLossIndication)) return;
      if (this.pc.getTransceivers().some((x) => x.kind === 'video' && x.sender.ssrc === fb.mediaSsrc)) this.sources.get('video')?.requestKeyframe(false);
    }));
    t.sender.onGenericNack.subscribe(this.guard('NACK', (nack) => this.retransmit(t.kind === 'audio' ? 'audio' : 'video', t.sender, nack)));
    t.sender.onRtcp.subscribe(this.guard('receiver report', (p) => {
      const reports = (p as { reports?: { ssrc: number; jitter: number }[] }).reports;
      const mine = reports?.find((r) => r.ssrc === t.sender.ssrc);
      if (mine) this.out[t.kind === 'audio' ? 'audio' : 'video'].remoteJitter = mine.jitter;
    }));
  }

  /** Answers a client's NACK from the packets we sent (already encrypted: resent as they were). */
  private retransmit(kind: 'audio' | 'video', sender: RTCRtpSender, nack: GenericNack): void {
    const native = this.attachment?.retransmit(kind, nack.lost);
    if (native !== undefined) { this.retransmissions += native; return; }
    const out = this.out[kind];
    for (const seq of nack.lost) {
      const i = seq % RETRANSMIT_BUFFER;
      const packet = out.sent[i];
      if (!packet || out.sentSeq[i] !== seq) continue;
      this.retransmissions++;
      this.sendSrtp(sender, packet);
    }
  }

  protected override get isConnected(): boolean { return this.state === 'connected'; }

  protected override sendKeyframeRequest(): boolean {
    if (this.videoIn.size === 0) return false;
    // Every live video stream (each simulcast layer) is asked: any listener may be on any layer.
    for (const [ssrc, v] of this.videoIn) v.receiver.sendRtcpPLI(ssrc).catch(() => undefined);
    return true;
  }

  /** Counters, rates, loss and jitter per direction and media (get_stats). */
  stats(): { inbound: Record<MediaKind, MediaStats>; outbound: Record<MediaKind, MediaStats> } {
    this.attachment?.sync();
    const { inbound, outbound } = this.flowStats();
    for (const t of this.pc.getTransceivers()) {
      const kind = t.kind === 'audio' ? 'audio' : 'video';
      // werift keeps RFC 3550 statistics per incoming SSRC (simulcast: one per layer).
      const streams = Object.values(receiverInternals(t.receiver).remoteStreams);
      if (streams.length > 0) {
        inbound[kind].packets_lost = streams.reduce((n, st) => n + st.packets_lost, 0);
        inbound[kind].jitter_ms = Math.max(...streams.map((st) => (st.jitter / st.clockRate) * 1000));
      }
      const sender = senderInternals(t.sender);
      if (sender.remotePacketsLost !== undefined) {
        outbound[kind].packets_lost = sender.remotePacketsLost;
        outbound[kind].fraction_lost = sender.remoteFractionLost;
      }
      if (sender.rtt !== undefined) outbound[kind].rtt_ms = sender.rtt * 1000;
      const jitter = this.out[kind].remoteJitter;
      const clock = t.sender.codec?.clockRate;
      if (jitter !== undefined && clock) outbound[kind].jitter_ms = (jitter / clock) * 1000;
    }
    return { inbound, outbound };
  }

  protected override sendRemb(bps: number): void {
    const ssrcs = [...new Set(this.pc.getTransceivers().flatMap((t) => t.receiver.tracks.map((tr) => tr.ssrc)).filter((x): x is number => x !== undefined))];
    const receiver = this.pc.getTransceivers()[0]?.receiver;
    if (!receiver || ssrcs.length === 0) return;
    receiver.dtlsTransport?.sendRtcp([rembFeedback(bps, receiver.rtcpSsrc, ssrcs)]).catch(() => undefined);
  }

  private addDataChannel(dc: RTCDataChannel): void {
    this.dataChannels.add(dc);
    dc.onMessage.subscribe(this.guard('incoming data channel message', (message) => {
      const bytes = messageBytes(message);
      // werift reassembles a message of any size; over what we announced (a=max-message-size)
      // it is dropped here, as the client was told it would not be taken.
      const limit = dc.sctp.maxMessageSize;
      if (limit > 0 && bytes > limit) {
        this.dataDropped.in++;
        this.reportOnce('data_too_large:in', `data channel message of ${bytes} bytes from the client dropped: larger than our max-message-size (${limit} bytes)`, 'data_too_large');
        return;
      }
      this.count(this.inbound.data, 'in', 'data', bytes);
      this.forward({ kind: 'data', message, origin: this.id });
    }));
    dc.stateChanged.subscribe(this.guard('data channel state', (s) => { if (s === 'closed') this.dataChannels.delete(dc); }));
  }

  /**
   * A data channel message to our client. One larger than the client's a=max-message-size
   * (64 KiB when its SDP says nothing, RFC 8841; 0 = no limit) would make werift throw: it is
   * dropped, counted and reported once instead.
   */
  private sendData(message: string | Buffer): void {
    const bytes = messageBytes(message);
    for (const dc of this.dataChannels) {
      if (dc.readyState !== 'open') continue;
      const limit = dc.sctp.remoteMaxMessageSize;
      if (limit > 0 && bytes > limit) {
        this.dataDropped.out++;
        this.reportOnce('data_too_large:out', `data channel message of ${bytes} bytes not sent: larger than the client's max-message-size (${limit} bytes)`, 'data_too_large');
        continue;
      }
      try {
        dc.send(message);
      } catch (err) {
        this.failed('sending data to the client', err); // one channel's failure is not the others'
        continue;
      }
      this.count(this.outbound.data, 'out', 'data', bytes);
    }
  }

  /** Orders the simulcast layers by the bitrate each carried since the last ranking. */
  private rankLayers(): void {
    const ranked = [...this.layerBytes.entries()].sort((a, b) => b[1] - a[1]);
    this.layerRank = new Map(ranked.map(([rid], i) => [rid, i]));
  }

  /** Marks flows that went quiet as down, re-ranks layers (called by the engine's shared timer). */
  override checkFlows(now: number): void {
    this.attachment?.sync(); // what the native plane moved since the last check
    if (this.layerBytes.size > 0) {
      this.rankLayers();
      for (const rid of this.layerBytes.keys()) this.layerBytes.set(rid, 0);
    }
    for (const [ssrc, v] of this.videoIn) if (now - v.lastAt > FLOW_DOWN_MS) this.videoIn.delete(ssrc);
    super.checkFlows(now);
  }

  // ---- SDP -----------------------------------------------------------------------------------

  /**
   * With no STUN server configured, werift still queries its stand-in one; clearing it on the
   * ICE connections before gathering means no STUN packet leaves at all. (werift internals:
   * if they change, the stand-in's zero wait still keeps gathering instant.)
   */
  private dropStandInStun(): void {
    if (!this.noStun) return;
    for (const conn of iceConnections(this.pc)) conn.stunServer = undefined;
  }

  async processOffer(sdp: string): Promise<string> {
    try {
      await this.pc.setRemoteDescription({ type: 'offer', sdp });
    } catch (err) {
      throw new EngineError('invalid_sdp', `offer refused: ${(err as Error).message}`);
    }
    // Every accepted m-line is sendrecv, so a later type switch needs no renegotiation.
    for (const t of this.pc.getTransceivers()) if (t.direction !== 'inactive') t.setDirection('sendrecv');
    this.dropStandInStun();
    return this.localSdpAfter(async () => {
      const answer = await this.pc.createAnswer();
      await this.pc.setLocalDescription(answer);
    });
  }

  async generateOffer(opts: OfferOptions): Promise<string> {
    if (opts.audio) this.pc.addTransceiver('audio', { direction: 'sendrecv' });
    if (opts.video) this.pc.addTransceiver('video', { direction: 'sendrecv' });
    if (opts.data) this.addDataChannel(this.pc.createDataChannel('nkmedia'));
    return this.localSdpAfter(async () => {
      const offer = await this.pc.createOffer();
      this.dropStandInStun();
      await this.pc.setLocalDescription(offer);
    });
  }

  /**
   * Runs the step that gathers (werift binds its ICE sockets in setLocalDescription) and returns
   * our SDP. Without a single local candidate (every bind failed: descriptor limit, ICE port
   * range used up) the SDP would be useless: it fails instead, with what was bound released.
   */
  private async localSdpAfter(step: () => Promise<void>): Promise<string> {
    const failures: Error[] = [];
    const done = bindFailures.run(failures, step);
    if (this.noStun) await done;
    else await this.hostCandidatesOr(done);
    if (!this.hasLocalCandidate()) {
      await this.pc.close().catch(() => undefined);
      const cause = failures.find((e) => e instanceof PortRangeExhausted) ?? failures[0];
      throw new EngineError('no_resources', `${NO_ICE_PORT} (${cause ? describeBindFailure(cause) : 'no local candidate gathered'})`);
    }
    this.watchSockets();
    return this.pc.localDescription!.sdp;
  }

  /**
   * With STUN or TURN servers, werift completes our SDP only once they have answered (or its
   * gather timeout passed): seconds, on a bad day. Ours goes as soon as every ICE transport has a
   * host candidate; server-reflexive and relayed candidates follow as `ice_candidate` events, then
   * `ice_gathering_done` (a session trickles them to its client, or holds its SDP for them, at
   * most `trickle_ice_timeout`, when the client cannot trickle).
   */
  private hostCandidatesOr(done: Promise<void>): Promise<void> {
    const hosts = () => iceConnections(this.pc).length > 0 && this.hasLocalCandidate();
    if (hosts()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      // Checked at each candidate werift finds; werift's gathering goes on after we resolve.
      const sub = this.pc.onIceCandidate.subscribe(() => { if (hosts()) { sub.unSubscribe(); resolve(); } });
      done.then(() => { sub.unSubscribe(); resolve(); }, (err: unknown) => { sub.unSubscribe(); reject(err); });
    });
  }

  /** Whether every ICE transport (one, bundled) has a local candidate to offer. */
  private hasLocalCandidate(): boolean {
    return iceConnections(this.pc).every((conn) => conn.localCandidates.length > 0);
  }

  /** Errors on our ICE sockets after binding (rare: send errors) are reported on this element. */
  private watchSockets(): void {
    for (const conn of iceConnections(this.pc)) {
      for (const p of conn.protocols) {
        if (p.transport) onTransportSocketError(p.transport, (err) => this.reportOnce(`socket:${(err as NodeJS.ErrnoException).code ?? 'other'}`, `ICE socket error: ${err.message}`, 'socket_error'));
      }
    }
  }

  async processAnswer(sdp: string): Promise<void> {
    try {
      await this.pc.setRemoteDescription({ type: 'answer', sdp });
    } catch (err) {
      throw new EngineError('invalid_sdp', `answer refused: ${(err as Error).message}`);
    }
  }

  // ---- ICE -----------------------------------------------------------------------------------

  private onCandidate(c: IceCandidateInit): void {
    if (this.trickling) this.emit({ type: 'ice_candidate', elementId: this.id, tag: this.tag, candidate: c });
    else this.gathered.push(c);
  }

  private onGatheringDone(): void {
    if (this.gatheringDone) return;
    this.gatheringDone = true;
    if (this.trickling) this.emit({ type: 'ice_gathering_done', elementId: this.id, tag: this.tag });
  }

  /** Starts reporting candidates: those already found, then the rest as they come. */
  gatherCandidates(): void {
    if (this.trickling) return;
    this.trickling = true;
    for (const c of this.gathered.splice(0)) this.emit({ type: 'ice_candidate', elementId: this.id, tag: this.tag, candidate: c });
    if (this.gatheringDone) this.emit({ type: 'ice_gathering_done', elementId: this.id, tag: this.tag });
  }

  async addIceCandidate(c: IceCandidateInit): Promise<void> {
    try {
      await this.pc.addIceCandidate({ candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex });
    } catch (err) {
      throw new EngineError('invalid_candidate', (err as Error).message);
    }
  }

  // ---- media out -----------------------------------------------------------------------------

  private transceiver(kind: 'audio' | 'video'): RTCRtpTransceiver | undefined {
    return this.pc.getTransceivers().find((t) => t.kind === kind && !t.stopped);
  }

  accept(unit: MediaUnit): void {
    if (this.released || this.state !== 'connected') return;
    // Called from another element's receive path (a werift callback): nothing may escape it,
    // and the source's other sinks must still get the unit.
    try {
      if (unit.kind === 'data') this.sendData(unit.message);
      else this.sendMedia(unit);
    } catch (err) {
      this.failed(unit.kind === 'data' ? 'sending data to the client' : `sending ${unit.kind} to the client`, err);
    }
  }

  /**
   * RTP to our client: the fast path. The packet's header is rewritten for our outgoing stream
   * (SSRC, payload type, continuous sequence numbers and timestamps), encrypted with the
   * connection's SRTP context and written straight to the selected ICE pair's socket: no copy
   * of the packet object, no promise per packet, no header-extension mapping.
   */
  private sendMedia(unit: Extract<MediaUnit, { rtp: unknown }>): void {
    const out = this.out[unit.kind];
    const target = this.target(unit.kind);
    if (!target) return;
    const { sender } = target;
    const srtp = sender.dtlsTransport?.srtp;
    if (!srtp) return;
    if (target.codec.mimeType !== unit.codec.mimeType) {
      // DTMF events have no place on a WebRTC audio stream (only Opus is negotiated).
      if (unit.codec.mimeType === 'audio/telephone-event') return;
      for (const u of this.adapt(unit, target.codec) ?? []) this.accept(u);
      return;
    }
    if (!this.layerAllows(unit)) return;
    const inHeader = unit.rtp.header;
    // Through the native plane's output when it carries this endpoint (it owns the stream state then).
    if (this.attachment?.send(unit.kind, this.plane!.origin(unit.origin), inHeader, unit.rtp.payload, unit.codec.clockRate)) return;
    const now = performance.now();
    const { seq, ts } = continueStream(out, unit.origin, inHeader.ssrc, inHeader.sequenceNumber, inHeader.timestamp, unit.codec.clockRate, now);
    const header = (out.header ??= new RtpHeader());
    header.ssrc = sender.ssrc;
    header.payloadType = target.payloadType;
    header.sequenceNumber = seq;
    header.timestamp = ts;
    header.marker = inHeader.marker;
    header.padding = false;
    header.csrc = inHeader.csrc;
    header.csrcLength = inHeader.csrcLength;
    header.extension = false;
    header.extensions = [];
    const payload = unit.rtp.payload;
    const packet = srtp.encrypt(payload, header);
    // Only video is NACKed (Opus is negotiated without NACK): audio needs no history.
    if (unit.kind === 'video') {
      const i = seq % RETRANSMIT_BUFFER;
      out.sent[i] = packet;
      out.sentSeq[i] = seq;
    }
    this.sendSrtp(sender, packet);
    // What werift's sender reports (RTCP SR, stats) is kept true without its per-packet work.
    const report = senderInternals(sender);
    report.packetCount = (report.packetCount + 1) >>> 0;
    report.octetCount += payload.length;
    if (now - out.lastSrClock >= SR_CLOCK_REFRESH_MS) {
      out.lastSrClock = now;
      report.ntpTimestamp = ntpTime();
      report.rtpTimestamp = ts;
      void sender.runRtcp();
    }
    this.count(this.outbound[unit.kind], 'out', unit.kind, packet.length);
  }

  /** The sender and payload type for a kind: fixed once negotiated, so looked up once. */
  private target(kind: 'audio' | 'video'): OutStream['target'] {
    const out = this.out[kind];
    if (!out.target) {
      const sender = this.transceiver(kind)?.sender;
      const codec = sender?.codec;
      if (!sender || !codec) return undefined;
      out.target = { sender, codec: { mimeType: codec.mimeType.toLowerCase(), clockRate: codec.clockRate }, payloadType: codec.payloadType! };
    }
    return out.target;
  }

  // ---- native forwarding plane -----------------------------------------------------------------

  private attachPlane(): void {
    if (!this.plane || this.attachment || this.released) return;
    try {
      this.attachment = PlaneAttachment.attach(this.plane, this.planeHost());
    } catch (err) {
      // The JS path carries this endpoint instead (attach undid what it had set up).
      this.emitError(`native forwarding plane: ${(err as Error).message}`);
    }
  }

  /** What the plane's attachment reads and updates of this endpoint. */
  private planeHost(): PlaneHost {
    return {
      pc: this.pc,
      continuity: (kind) => this.out[kind],
      target: (kind) => this.target(kind),
      addFlow: (direction, media, packets, bytes, ageMs) => {
        this.countMany((direction === 'in' ? this.inbound : this.outbound)[media], direction, media, packets, bytes, ageMs);
      },
      videoSeen: (ssrc, ageMs) => {
        const v = this.videoIn.get(ssrc);
        if (v) v.lastAt = Math.max(v.lastAt, performance.now() - ageMs);
      },
      remoteReport: (kind, jitter) => { this.out[kind].remoteJitter = jitter; },
    };
  }

  private detachPlane(): void {
    const att = this.attachment;
    this.attachment = undefined;
    try {
      att?.detach();
    } catch (err) {
      // Never in the way of closing the connection (its socket must still be released).
      this.emitError(`native forwarding plane: ${(err as Error).message}`);
    }
  }

  /** The plane's output toward our client for media of this codec, if it can take it as is. */
  nativeOutput(kind: 'audio' | 'video', codec: CodecInfo): number | undefined {
    if (this.released || this.state !== 'connected') return undefined;
    return this.attachment?.output(kind, codec);
  }

  /**
   * Lets the plane forward an incoming SSRC itself when every element its media reaches (through
   * pass-throughs) is an attached WebRTC endpoint taking the codec as is; otherwise (a recorder,
   * a plain RTP endpoint, transcoding, a detached endpoint) it keeps coming through JS.
   */
  private routeNatively(kind: 'audio' | 'video', ssrc: number, payloadType: number, codec: CodecInfo, receiver: RTCRtpReceiver): void {
    const nack = kind === 'video' && !!receiver.nackEnabled;
    this.attachment!.route(kind, ssrc, payloadType, codec, this.plane!.origin(this.id), nack, () => {
      const outs: number[] = [];
      for (const sink of terminalSinks(this, kind)) {
        const o = sink instanceof WebRtcEndpoint ? sink.nativeOutput(kind, codec) : undefined;
        if (o === undefined) return undefined;
        outs.push(o);
      }
      return outs;
    });
  }

  /** Writes an SRTP packet to the selected candidate pair's UDP socket, synchronously. */
  private sendSrtp(sender: RTCRtpSender, packet: Buffer): void {
    const conn = iceConnectionOf(sender.dtlsTransport);
    if (!conn.canSendApplicationData()) return;
    const pair = conn.nominated!;
    const transport = pair.protocol.transport;
    // A host or server-reflexive pair over UDP (werift's "stun" protocol on a UDP transport).
    if (transport?.socket && transport.type === 'udp' && pair.protocol.type === 'stun') {
      if (transport.closed) return;
      transport.socket.send(packet, pair.remoteAddr[1], pair.remoteAddr[0]);
      pair.packetsSent++;
      pair.bytesSent += packet.length;
    } else {
      void conn.send(packet).catch(() => undefined); // TCP or relayed: werift's own path
    }
  }

  override async release(): Promise<void> {
    if (this.released) return;
    this.detachPlane();
    await super.release();
    await this.pc.close().catch(() => undefined);
  }
}

/** Where an element's media of one kind ends up: its sinks, looking through pass-throughs. */
function terminalSinks(from: Element, kind: MediaKind, seen = new Set<Element>()): Element[] {
  const found: Element[] = [];
  for (const sink of from.sinks[kind]) {
    if (seen.has(sink)) continue;
    seen.add(sink);
    if (sink instanceof PassThrough) found.push(...terminalSinks(sink, kind, seen));
    else found.push(sink);
  }
  return found;
}
