// Kurento's WebRtcEndpoint on werift: ICE, DTLS, SRTP and SCTP toward one client. Media the
// client sends goes to this element's sinks; media from its sources goes to the client.
import {
  PictureLossIndication, ReceiverEstimatedMaxBitrate, RTCPeerConnection, RtcpPayloadSpecificFeedback, RtpHeader, ntpTime,
  type GenericNack, type MediaStreamTrack, type RTCRtpSender,
  type RTCDataChannel, type RTCPeerConnectionConfig, type RTCRtpReceiver, type RTCRtpTransceiver,
} from 'werift';
import { EngineError, type ConnectionState, type EngineEvent, type IceCandidateInit, type MediaKind, type MediaStats, type OfferOptions } from '../types.js';
import { Element, type CodecInfo, type MediaUnit } from './element.js';
import { isKeyframe, LayerSelector, type LayerChoice } from './simulcast.js';
import { accelerate as accelerateSrtp } from './native-srtp.js';

/** No packet for this long marks a flow "down". */
export const FLOW_DOWN_MS = 2000;
/** Keyframe requests to one client: at most one per second, one per 300 ms for new sinks. */
export const KEYFRAME_INTERVAL_MS = 1000;
export const URGENT_KEYFRAME_INTERVAL_MS = 300;
const REMB_INTERVAL_MS = 1000;

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
interface OutStream {
  /** The source now feeding this stream (origin element and its SSRC). */
  keyOrigin?: string;
  keySsrc?: number;
  target?: { sender: RTCRtpSender; mimeType: string; payloadType: number };
  lastSentAt: number;
  mismatchLogged?: boolean;
  seqOffset: number;
  tsOffset: number;
  lastSeq?: number;
  lastTs: number;
  header?: RtpHeader;
  /** Encrypted packets by sequence number, for NACK retransmission. */
  sent: (Buffer | undefined)[];
  sentSeq: Int32Array;
  lastSrClock: number;
  /** Interarrival jitter the client reports for this stream (RTCP RR), in timestamp units. */
  remoteJitter?: number;
}

/** werift internals the fast path updates or reads (kept to these few fields). */
interface SenderReportState { packetCount: number; octetCount: number; ntpTimestamp: bigint; rtpTimestamp: number }
interface WeriftIceConnection {
  canSendApplicationData(): boolean;
  nominated?: { protocol: { type: string }; remoteAddr: [string, number]; packetsSent: number; bytesSent: number };
  send(data: Buffer): Promise<void>;
}

const newOutStream = (): OutStream => ({
  lastSentAt: 0, seqOffset: 0, tsOffset: 0, lastTs: 0,
  sent: new Array<Buffer | undefined>(RETRANSMIT_BUFFER), sentSeq: new Int32Array(RETRANSMIT_BUFFER).fill(-1), lastSrClock: 0,
});

interface Flow { packets: number; bytes: number; bitrate: number; lastAt: number; up: boolean; sampledBytes: number; sampledAt: number }
const newFlow = (): Flow => ({ packets: 0, bytes: 0, bitrate: 0, lastAt: 0, up: false, sampledBytes: 0, sampledAt: 0 });

export class WebRtcEndpoint extends Element {
  readonly pc: RTCPeerConnection;
  private readonly gathered: IceCandidateInit[] = [];
  private gatheringDone = false;
  private trickling = false;
  private state: ConnectionState = 'new';
  private readonly dataChannels = new Set<RTCDataChannel>();
  private readonly watchedTracks = new WeakSet<MediaStreamTrack>();
  readonly inbound: Record<MediaKind, Flow> = { audio: newFlow(), video: newFlow(), data: newFlow() };
  readonly outbound: Record<MediaKind, Flow> = { audio: newFlow(), video: newFlow(), data: newFlow() };
  private readonly out: Record<'audio' | 'video', OutStream> = { audio: newOutStream(), video: newOutStream() };
  retransmissions = 0;
  /** Where the client's video comes in, for keyframe requests (PLI). */
  /** The client's video streams by SSRC (one per simulcast layer), for keyframe requests. */
  private readonly videoIn = new Map<number, { receiver: RTCRtpReceiver; lastAt: number }>();
  /** Simulcast layers the client sends: bytes in the current window and the last ranking. */
  private readonly layerBytes = new Map<string, number>();
  private layerRank = new Map<string, number>();
  /** Which layer of a simulcast source our client gets. */
  readonly layers = new LayerSelector();
  private lastKeyframeRequest = -Infinity;
  private keyframeTimer?: NodeJS.Timeout;
  keyframeRequestsSent = 0;
  private maxBitrate: number | null = null;
  private rembTimer?: NodeJS.Timeout;

  constructor(
    id: string,
    tag: string,
    config: RTCPeerConnectionConfig,
    private readonly emit: (ev: EngineEvent) => void,
    private readonly rewriteCandidate: (c: string) => string[],
    private readonly noStun: boolean,
  ) {
    super(id, tag);
    this.pc = new RTCPeerConnection(config);
    this.pc.onIceCandidate.subscribe((c) => {
      if (!c) { this.onGatheringDone(); return; }
      for (const candidate of this.rewriteCandidate(c.candidate ?? '')) {
        this.onCandidate({ candidate, sdpMid: c.sdpMid ?? undefined, sdpMLineIndex: c.sdpMLineIndex ?? 0 });
      }
    });
    this.pc.iceGatheringStateChange.subscribe((s) => { if (s === 'complete') this.onGatheringDone(); });
    this.pc.connectionStateChange.subscribe((s) => {
      this.state = s as ConnectionState;
      if (this.released) return;
      this.emit({ type: 'connection_state', elementId: this.id, tag: this.tag, state: this.state });
      if (s === 'connected') {
        // SRTP through the native addon when it is built (several µs less per packet each way).
        for (const t of this.pc.dtlsTransports) if (t.srtp) accelerateSrtp(t.srtp, t.srtcp);
        // Video sent before our client was connected was dropped: ask for a fresh picture now.
        this.sources.get('video')?.requestKeyframe(true);
      }
    });
    this.pc.onTrack.subscribe((track) => {
      const transceiver = this.pc.getTransceivers().find((t) => t.receiver.tracks.includes(track));
      if (!transceiver) return;
      // werift announces one track per transceiver (its first); a simulcast transceiver has
      // one track per rid, all registered by then: each layer is read from its own track.
      for (const t of new Set([track, ...transceiver.receiver.tracks])) this.watchTrack(t, transceiver);
    });
    for (const t of this.pc.getTransceivers()) this.watchSender(t);
    this.pc.onTransceiverAdded.subscribe((t) => this.watchSender(t));
    this.pc.onDataChannel.subscribe((dc) => this.addDataChannel(dc));
  }

  get connectionState(): ConnectionState { return this.state; }

  /** The codec negotiated for what we send our client (a player picks pass-through or transcoding by it). */
  sendCodec(kind: 'audio' | 'video'): CodecInfo | undefined {
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
    track.onReceiveRtp.subscribe((rtp) => {
      const codec = codecs.get(rtp.header.payloadType);
      if (!codec) return; // not a negotiated payload type (RTX and RED are undone by werift)
      this.count(this.inbound[kind], 'in', kind, rtp.serializeSize);
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
    });
  }

  /** The client asks us for a keyframe: the request travels to where our video comes from. */
  private watchSender(t: RTCRtpTransceiver): void {
    t.sender.onPictureLossIndication.subscribe(() => this.sources.get('video')?.requestKeyframe(false));
    // werift routes a PLI by its *sender* SSRC first: from a client that also sends video (a
    // browser: its PLIs carry its own video SSRC) it lands on our receiver of that video and
    // never reaches the sender above. Catch those by the SSRC they are about.
    t.receiver.onRtcp.subscribe((p) => {
      if (p.type !== RtcpPayloadSpecificFeedback.type) return;
      const fb = (p as RtcpPayloadSpecificFeedback).feedback;
      if (!(fb instanceof PictureLossIndication)) return;
      if (this.pc.getTransceivers().some((x) => x.kind === 'video' && x.sender.ssrc === fb.mediaSsrc)) this.sources.get('video')?.requestKeyframe(false);
    });
    t.sender.onGenericNack.subscribe((nack) => this.retransmit(t.kind === 'audio' ? 'audio' : 'video', t.sender, nack));
    t.sender.onRtcp.subscribe((p) => {
      const reports = (p as { reports?: { ssrc: number; jitter: number }[] }).reports;
      const mine = reports?.find((r) => r.ssrc === t.sender.ssrc);
      if (mine) this.out[t.kind === 'audio' ? 'audio' : 'video'].remoteJitter = mine.jitter;
    });
  }

  /** Answers a client's NACK from the packets we sent (already encrypted: resent as they were). */
  private retransmit(kind: 'audio' | 'video', sender: RTCRtpSender, nack: GenericNack): void {
    const out = this.out[kind];
    for (const seq of nack.lost) {
      const i = seq % RETRANSMIT_BUFFER;
      const packet = out.sent[i];
      if (!packet || out.sentSeq[i] !== seq) continue;
      this.retransmissions++;
      this.sendSrtp(sender, packet);
    }
  }

  /**
   * A new source for what our client receives. Before our client is connected its keyframe
   * would be dropped (and would use up the source's keyframe-request budget): the request
   * is made on 'connected' instead.
   */
  override sourceChanged(kind: MediaKind): void {
    if (this.state === 'connected') super.sourceChanged(kind);
  }

  /** A PLI to our client, merged: immediate if the last one is old enough, else deferred. */
  override requestKeyframe(urgent: boolean): void {
    if (this.released || this.keyframeTimer) return;
    const wait = this.lastKeyframeRequest + (urgent ? URGENT_KEYFRAME_INTERVAL_MS : KEYFRAME_INTERVAL_MS) - performance.now();
    if (wait <= 0) { this.sendKeyframeRequest(); return; }
    this.keyframeTimer = setTimeout(() => { this.keyframeTimer = undefined; this.sendKeyframeRequest(); }, wait);
  }

  private sendKeyframeRequest(): void {
    if (this.released || this.videoIn.size === 0) return;
    this.lastKeyframeRequest = performance.now();
    this.keyframeRequestsSent++;
    // Every live video stream (each simulcast layer) is asked: any listener may be on any layer.
    for (const [ssrc, v] of this.videoIn) v.receiver.sendRtcpPLI(ssrc).catch(() => undefined);
  }

  /** Counters, rates, loss and jitter per direction and media (get_stats). */
  stats(): { inbound: Record<MediaKind, MediaStats>; outbound: Record<MediaKind, MediaStats> } {
    const base = (f: Flow): MediaStats => ({ packets: f.packets, bytes: f.bytes, bitrate: f.bitrate });
    const inbound = { audio: base(this.inbound.audio), video: base(this.inbound.video), data: base(this.inbound.data) };
    const outbound = { audio: base(this.outbound.audio), video: base(this.outbound.video), data: base(this.outbound.data) };
    for (const t of this.pc.getTransceivers()) {
      const kind = t.kind === 'audio' ? 'audio' : 'video';
      // werift keeps RFC 3550 statistics per incoming SSRC (simulcast: one per layer).
      const streams = Object.values((t.receiver as unknown as { remoteStreams: Record<string, { packets_lost: number; jitter: number; clockRate: number }> }).remoteStreams);
      if (streams.length > 0) {
        inbound[kind].packets_lost = streams.reduce((n, st) => n + st.packets_lost, 0);
        inbound[kind].jitter_ms = Math.max(...streams.map((st) => (st.jitter / st.clockRate) * 1000));
      }
      const sender = t.sender as unknown as { remotePacketsLost?: number; remoteFractionLost?: number; rtt?: number };
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

  /** Which simulcast layer our client gets from a simulcast source. */
  setVideoLayer(choice: LayerChoice): void {
    if (this.layers.choice === choice) return;
    this.layers.choice = choice;
    this.sources.get('video')?.requestKeyframe(true);
  }

  /** REMB toward the client every second while a limit is set. */
  setMaxBitrate(bps: number | null): void {
    this.maxBitrate = bps;
    clearInterval(this.rembTimer);
    this.rembTimer = undefined;
    if (bps === null) return;
    this.sendRemb();
    this.rembTimer = setInterval(() => this.sendRemb(), REMB_INTERVAL_MS);
  }

  private sendRemb(): void {
    if (this.released || this.maxBitrate === null || this.state !== 'connected') return;
    const ssrcs = [...new Set(this.pc.getTransceivers().flatMap((t) => t.receiver.tracks.map((tr) => tr.ssrc)).filter((x): x is number => x !== undefined))];
    const receiver = this.pc.getTransceivers()[0]?.receiver;
    if (!receiver || ssrcs.length === 0) return;
    // REMB carries the bitrate as an 18-bit mantissa and a 6-bit exponent.
    let mantissa = Math.max(0, Math.floor(this.maxBitrate));
    let exp = 0;
    while (mantissa > 0x3ffff) { mantissa >>>= 1; exp++; }
    const remb = new ReceiverEstimatedMaxBitrate({
      senderSsrc: receiver.rtcpSsrc, mediaSsrc: 0, ssrcNum: ssrcs.length, brExp: exp, brMantissa: mantissa,
      bitrate: BigInt(mantissa) << BigInt(exp), ssrcFeedbacks: ssrcs,
    });
    receiver.dtlsTransport?.sendRtcp([new RtcpPayloadSpecificFeedback({ feedback: remb })]).catch(() => undefined);
  }

  private addDataChannel(dc: RTCDataChannel): void {
    this.dataChannels.add(dc);
    dc.onMessage.subscribe((message) => {
      this.count(this.inbound.data, 'in', 'data', typeof message === 'string' ? Buffer.byteLength(message) : message.length);
      this.forward({ kind: 'data', message, origin: this.id });
    });
    dc.stateChanged.subscribe((s) => { if (s === 'closed') this.dataChannels.delete(dc); });
  }

  private count(flow: Flow, direction: 'in' | 'out', media: MediaKind, bytes: number): void {
    flow.packets++;
    flow.bytes += bytes;
    flow.lastAt = performance.now();
    if (!flow.up) {
      flow.up = true;
      this.emit({ type: 'media_flow', elementId: this.id, tag: this.tag, direction, media, state: 'up' });
    }
  }

  /** Orders the simulcast layers by the bitrate each carried since the last ranking. */
  private rankLayers(): void {
    const ranked = [...this.layerBytes.entries()].sort((a, b) => b[1] - a[1]);
    this.layerRank = new Map(ranked.map(([rid], i) => [rid, i]));
  }

  /** Marks flows that went quiet as down, re-ranks layers (called by the engine's shared timer). */
  checkFlows(now: number): void {
    if (this.layerBytes.size > 0) {
      this.rankLayers();
      for (const rid of this.layerBytes.keys()) this.layerBytes.set(rid, 0);
    }
    for (const [ssrc, v] of this.videoIn) if (now - v.lastAt > FLOW_DOWN_MS) this.videoIn.delete(ssrc);
    for (const [direction, flows] of [['in', this.inbound], ['out', this.outbound]] as const) {
      for (const media of ['audio', 'video', 'data'] as const) {
        const f = flows[media];
        if (f.sampledAt > 0) f.bitrate = Math.round(((f.bytes - f.sampledBytes) * 8 * 1000) / Math.max(1, now - f.sampledAt));
        f.sampledBytes = f.bytes;
        f.sampledAt = now;
        if (f.up && now - f.lastAt > FLOW_DOWN_MS) {
          f.up = false;
          this.emit({ type: 'media_flow', elementId: this.id, tag: this.tag, direction, media, state: 'down' });
        }
      }
    }
  }

  // ---- SDP -----------------------------------------------------------------------------------

  /**
   * With no STUN server configured, werift still queries its stand-in one; clearing it on the
   * ICE connections before gathering means no STUN packet leaves at all. (werift internals:
   * if they change, the stand-in's zero wait still keeps gathering instant.)
   */
  private dropStandInStun(): void {
    if (!this.noStun) return;
    const transports = (this.pc as unknown as { iceTransports?: { connection?: { stunServer?: unknown } }[] }).iceTransports ?? [];
    for (const t of transports) if (t.connection && 'stunServer' in t.connection) t.connection.stunServer = undefined;
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
    const answer = await this.pc.createAnswer();
    await this.pc.setLocalDescription(answer);
    return this.pc.localDescription!.sdp;
  }

  async generateOffer(opts: OfferOptions): Promise<string> {
    if (opts.audio) this.pc.addTransceiver('audio', { direction: 'sendrecv' });
    if (opts.video) this.pc.addTransceiver('video', { direction: 'sendrecv' });
    if (opts.data) this.addDataChannel(this.pc.createDataChannel('nkmedia'));
    const offer = await this.pc.createOffer();
    this.dropStandInStun();
    await this.pc.setLocalDescription(offer);
    return this.pc.localDescription!.sdp;
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
    if (unit.kind !== 'data') { this.sendMedia(unit); return; }
    for (const dc of this.dataChannels) {
      if (dc.readyState !== 'open') continue;
      dc.send(unit.message);
      this.count(this.outbound.data, 'out', 'data', typeof unit.message === 'string' ? Buffer.byteLength(unit.message) : unit.message.length);
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
    // The sender and its codec are fixed once negotiated: looked up once, not per packet.
    let target = out.target;
    if (!target) {
      const sender = this.transceiver(unit.kind)?.sender;
      const codec = sender?.codec;
      if (!sender || !codec) return;
      target = out.target = { sender, mimeType: codec.mimeType.toLowerCase(), payloadType: codec.payloadType! };
    }
    const { sender } = target;
    const srtp = sender.dtlsTransport?.srtp;
    if (!srtp) return;
    if (target.mimeType !== unit.codec.mimeType) {
      // Transcoding arrives with the SIP work; until then a mismatch is reported, not hidden.
      if (!out.mismatchLogged) {
        out.mismatchLogged = true;
        this.emitError(`codec mismatch: ${unit.codec.mimeType} cannot be sent as ${target.mimeType}`);
      }
      return;
    }
    if (unit.layer) {
      const d = this.layers.decide(unit.layer);
      if (d.needKeyframe) this.sources.get('video')?.requestKeyframe(true);
      if (!d.send) return;
    }
    const inHeader = unit.rtp.header;
    const now = performance.now();
    if (out.keyOrigin !== unit.origin || out.keySsrc !== inHeader.ssrc) {
      // A new source: continue our numbering right after the last packet we sent, and our
      // clock by the time that passed since then.
      if (out.lastSeq !== undefined) {
        const step = Math.max(1, Math.round(((now - out.lastSentAt) * unit.codec.clockRate) / 1000));
        out.seqOffset = (out.lastSeq + 1 - inHeader.sequenceNumber) & 0xffff;
        out.tsOffset = (out.lastTs + step - inHeader.timestamp) >>> 0;
      }
      out.keyOrigin = unit.origin;
      out.keySsrc = inHeader.ssrc;
    }
    const seq = (inHeader.sequenceNumber + out.seqOffset) & 0xffff;
    const ts = (inHeader.timestamp + out.tsOffset) >>> 0;
    if (out.lastSeq === undefined || ((seq - out.lastSeq) & 0xffff) < 0x8000) {
      out.lastSeq = seq;
      out.lastTs = ts;
      out.lastSentAt = now;
    }
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
    const report = sender as unknown as SenderReportState;
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

  /** Writes an SRTP packet to the selected candidate pair's UDP socket, synchronously. */
  private sendSrtp(sender: RTCRtpSender, packet: Buffer): void {
    const conn = sender.dtlsTransport.iceTransport.connection as unknown as WeriftIceConnection;
    if (!conn.canSendApplicationData()) return;
    const pair = conn.nominated!;
    const transport = (pair.protocol as unknown as { transport?: { type?: string; closed?: boolean; socket?: { send(b: Buffer, port: number, host: string): void } } }).transport;
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

  private emitError(message: string): void {
    this.emit({ type: 'error', elementId: this.id, tag: this.tag, message });
  }

  override async release(): Promise<void> {
    if (this.released) return;
    clearTimeout(this.keyframeTimer);
    clearInterval(this.rembTimer);
    await super.release();
    await this.pc.close().catch(() => undefined);
  }
}
