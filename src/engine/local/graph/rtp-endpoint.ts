// Kurento's RtpEndpoint: plain RTP/AVP toward a SIP phone, gateway or ffmpeg (no ICE, no
// DTLS). One UDP socket pair (RTP on an even port, RTCP on the next) per m-line. Media the
// remote sends goes to our sinks; media from our sources goes to the remote, with audio
// transcoded when the source's codec is not the one negotiated here.
import dgram from 'node:dgram';
import { networkInterfaces } from 'node:os';
import { randomBytes, randomInt } from 'node:crypto';
import {
  PictureLossIndication, RtcpPacketConverter, RtcpPayloadSpecificFeedback, RtcpRrPacket, RtcpSenderInfo,
  RtcpSourceDescriptionPacket, RtcpSrPacket, RtpPacket, SourceDescriptionChunk, SourceDescriptionItem, ntpTime,
  type RtcpPacket,
} from 'werift';
import { EngineError, type ConnectionState, type MediaKind, type MediaStats, type OfferOptions, type EngineEvent } from '../../types.js';
import type { CodecInfo, MediaUnit } from './element.js';
import { MediaEndpoint, rembFeedback } from './media-endpoint.js';
import { continueStream, newContinuity, type Continuity } from './stream-continuity.js';
import { ReceiveStats } from './rtp-receive-stats.js';
import { isMuxedRtcp } from './rtcp-mux.js';
import {
  answerDirection, chooseCodecs, parseRtpSdp, writeRtpSdp, RTP_CODECS,
  type Direction, type RemoteMedia, type RtpCodec, type RtpCodecName,
} from './rtp-sdp.js';
import { isLoopbackIp, isPublicIp } from '../../../util/addresses.js';

export type Latching = 'auto' | 'always' | 'off';

export interface RtpEndpointOptions {
  /** Address the sockets bind to. */
  bindAddress: string;
  /** Address written in our SDP's c= line. */
  announceAddress: string;
  /** Inclusive UDP port range; unset = any free ports. */
  portRange?: [number, number];
  audioCodecs: RtpCodecName[];
  videoCodecs: RtpCodecName[];
  /**
   * Which source RTP is taken from, and where media goes (strict source, no "RTP bleed").
   * Per m-line, ONE source ip:port is locked and every other packet is dropped; only a remote
   * description with a new address or port (re-offer, SIP re-INVITE; not a c=0.0.0.0 hold)
   * unlocks it.
   * - A packet from the SDP's address (c= IP and m= port) locks at once, in every mode.
   * - off: nothing else is ever accepted; media goes to the SDP's address.
   * - auto: also learnable, within the learning window: a source on the SDP's IP (another
   *   port: senders that do not send from where they listen, like ffmpeg; loopback counts as
   *   the IP when the SDP names one of this host's addresses), or any source when the SDP's
   *   IP is not public (a phone behind NAT announcing its private address, or 0.0.0.0).
   *   Media goes to the SDP's address, or to the learned source when its IP differs.
   * - always: any source is learnable within the window (gateways behind NAT); media goes to
   *   the locked source.
   * Learning: a candidate must pass probation (PROBATION_PACKETS in a row from one ip:port,
   * one SSRC, sequential numbers); the window is LEARN_WINDOW_MS from the first learnable
   * packet after the remote description was set (not from the description: a SIP call may
   * ring long before the phone gets our answer and sends). A learned lock still yields to a
   * packet from the SDP's exact address within the window (signalling beats learning); after
   * it nothing changes. RTCP is taken only from the locked source's IP (before a lock, the
   * SDP's) and sent where RTP goes: to the first RTCP source seen there (else port + 1) when
   * media goes to the locked source, else to the SDP's RTCP port.
   */
  latching: Latching;
}

/** How long after the first learnable packet a source may be learned (then no more until a re-offer moves the remote). */
const LEARN_WINDOW_MS = 3000;
/** Consecutive packets (one ip:port, one SSRC, sequential numbers) a source needs to be learned, as Asterisk's strict RTP probation. */
const PROBATION_PACKETS = 4;
const RTCP_INTERVAL_MS = 5000;
/** Audio codecs we can transcode into; a source in one of these can feed any of them. */
const TRANSCODABLE = new Set(['audio/opus', 'audio/pcmu', 'audio/pcma', 'audio/g722']);

interface Address { address: string; port: number }

interface Line {
  kind: 'audio' | 'video';
  rtp?: dgram.Socket;
  rtcp?: dgram.Socket;
  /** Our port; 0 = this m-line is rejected or disabled. */
  port: number;
  /** What we announced: whether we send and receive on it. */
  direction: Direction;
  /** Codecs negotiated, main one first (what we send), telephone-event maybe after it. */
  codecs: RtpCodec[];
  /** Payload types the remote may send, by number. */
  recv: Map<number, RtpCodec>;
  remote?: { address: string; rtpPort: number; rtcpPort: number; direction: Direction; rtcpMux: boolean };
  /** Where signalling last put the remote (a c=0.0.0.0 hold does not move it), the policy's reference. */
  signalled?: Address & { public: boolean; own: boolean };
  /** The one source RTP is accepted from; `learned` when by probation rather than the SDP's exact address. */
  source?: Address & { learned: boolean };
  /** End of the learning window; unset until the first learnable packet opens it. */
  learnUntil?: number;
  /** The source on probation: its run of sequential packets so far. */
  probation?: Address & { ssrc: number; seq: number; count: number };
  /** Where the remote's RTCP comes from: the first RTCP from the IP accepted, then fixed. */
  rtcpFrom?: Address;
  ssrc: number;
  out: Continuity;
  sentPackets: number;
  sentOctets: number;
  lastSentTs: number;
  sentSinceReport: boolean;
  stats?: ReceiveStats;
  remoteReport?: { packetsLost: number; fractionLost: number; jitter: number; rttMs?: number };
  dropped: number;
}

export class RtpEndpoint extends MediaEndpoint {
  private lines: Line[] = [];
  private state: ConnectionState = 'new';
  private readonly sessionId = randomInt(1, 2 ** 31);
  private sdpVersion = 0;
  private readonly cname = randomBytes(8).toString('hex');
  private rtcpTimer?: NodeJS.Timeout;
  private role?: 'offerer' | 'offeree';
  private awaitingAnswer = false;

  constructor(id: string, tag: string, emit: (ev: EngineEvent) => void, private readonly opts: RtpEndpointOptions) {
    super(id, tag, emit);
  }

  get connectionState(): ConnectionState { return this.state; }
  protected override get isConnected(): boolean { return this.state === 'connected'; }

  override sendCodec(kind: 'audio' | 'video'): CodecInfo | undefined {
    const main = this.line(kind)?.codecs[0];
    if (!main) return undefined;
    // We transcode audio ourselves: a source in Opus (a player) is what we take best.
    if (kind === 'audio' && TRANSCODABLE.has(main.mime)) return { mimeType: 'audio/opus', clockRate: 48000 };
    return { mimeType: main.mime, clockRate: main.clockRate };
  }

  /** The negotiated codec per media (for wiring checks: video is never transcoded). */
  negotiated(kind: 'audio' | 'video'): CodecInfo | undefined {
    const main = this.line(kind)?.codecs[0];
    return main ? { mimeType: main.mime, clockRate: main.clockRate } : undefined;
  }

  private line(kind: 'audio' | 'video'): Line | undefined {
    return this.lines.find((l) => l.kind === kind && l.port !== 0 && l.codecs.length > 0);
  }

  // ---- SDP -----------------------------------------------------------------------------------

  private supported(kind: 'audio' | 'video'): RtpCodecName[] {
    return kind === 'audio' ? this.opts.audioCodecs : this.opts.videoCodecs;
  }

  async generateOffer(o: OfferOptions): Promise<string> {
    if (this.role) throw new EngineError('invalid_state', 'this RTP endpoint already has an offer');
    this.role = 'offerer';
    const kinds = ([['audio', o.audio], ['video', o.video]] as const).filter(([k, on]) => on && this.supported(k).length > 0).map(([k]) => k);
    if (kinds.length === 0) throw new EngineError('invalid_state', 'nothing to offer: no audio or video codec enabled');
    for (const kind of kinds) {
      const codecs = this.supported(kind).map((n) => RTP_CODECS[n]);
      if (kind === 'audio') codecs.push(RTP_CODECS['telephone-event']);
      this.lines.push(await this.newLine(kind, codecs, 'sendrecv'));
    }
    this.awaitingAnswer = true;
    return this.writeSdp();
  }

  async processAnswer(sdp: string): Promise<void> {
    if (this.released) throw new EngineError('invalid_state', 'endpoint released');
    if (!this.awaitingAnswer) throw new EngineError('invalid_state', 'no offer of ours is waiting for an answer');
    const remote = parseRtpSdp(sdp);
    if (remote.media.length !== this.lines.length) {
      throw new EngineError('invalid_sdp', `answer has ${remote.media.length} m-lines, our offer had ${this.lines.length}`);
    }
    remote.media.forEach((m, i) => {
      const line = this.lines[i]!;
      if (m.kind !== line.kind) throw new EngineError('invalid_sdp', `answer m-line ${i} is ${m.kind}, our offer had ${line.kind}`);
    });
    this.awaitingAnswer = false;
    remote.media.forEach((m, i) => {
      const line = this.lines[i]!;
      if (m.port === 0 || !('codecs' in m)) { this.disable(line); return; }
      // The answer's codecs we offered, its order first; we send its first one.
      const ours = new Map(line.codecs.map((c) => [c.name, c]));
      const chosen = m.codecs.filter((c) => ours.has(c.name));
      const main = chosen.find((c) => c.name !== 'telephone-event');
      if (!main) { this.disable(line); return; }
      const dtmf = chosen.find((c) => c.name === 'telephone-event');
      // The remote sends with its own numbers or ours (both are seen in the wild).
      for (const c of line.codecs) line.recv.set(c.payloadType, c);
      for (const c of chosen) line.recv.set(c.payloadType, c);
      line.codecs = dtmf ? [main, dtmf] : [main];
      this.setRemote(line, m);
    });
    if (!this.lines.some((l) => l.port !== 0)) throw new EngineError('invalid_sdp', 'the answer accepts no media we can handle');
    this.connected();
  }

  /** An offer: the first one, or a re-offer (hold, resume, new address) on a live endpoint. */
  async processOffer(sdp: string): Promise<string> {
    if (this.released) throw new EngineError('invalid_state', 'endpoint released');
    if (this.awaitingAnswer) throw new EngineError('invalid_state', 'our own offer is waiting for its answer');
    const remote = parseRtpSdp(sdp);
    if (this.role === 'offerer' || this.role === 'offeree') {
      if (remote.media.length < this.lines.length) throw new EngineError('invalid_sdp', `re-offer has ${remote.media.length} m-lines, fewer than the ${this.lines.length} negotiated`);
      remote.media.forEach((m, i) => {
        const line = this.lines[i];
        if (line && m.kind !== line.kind) throw new EngineError('invalid_sdp', `re-offer m-line ${i} is ${m.kind}, was ${line.kind}`);
      });
    }
    const first = this.role === undefined;
    this.role ??= 'offeree';
    const fresh: Line[] = [];
    try {
      for (let i = 0; i < remote.media.length; i++) {
        const m = remote.media[i]!;
        const existing = this.lines[i];
        const usable = m.port !== 0 && 'codecs' in m ? chooseCodecs(m.codecs, this.supported(m.kind as 'audio' | 'video')) : [];
        if (usable.length === 0) {
          if (existing) this.disable(existing);
          else this.lines.push(this.rejectedLine(m.kind === 'video' ? 'video' : 'audio', 'codecs' in m ? m.codecs : []));
          continue;
        }
        const rm = m as RemoteMedia;
        let line = existing;
        if (!line || line.port === 0) {
          const created = await this.newLine(rm.kind, usable, answerDirection(rm.direction));
          fresh.push(created);
          if (line) this.lines[i] = created;
          else this.lines.push(created);
          line = created;
        }
        line.codecs = usable;
        line.direction = answerDirection(rm.direction);
        line.recv = new Map(usable.map((c) => [c.payloadType, c]));
        this.setRemote(line, rm);
      }
    } catch (err) {
      for (const l of fresh) this.closeLine(l);
      throw err;
    }
    if (first && !this.lines.some((l) => l.port !== 0)) {
      throw new EngineError('invalid_sdp', 'the offer has no audio or video in a codec we support (RTP/AVP with PCMU, PCMA, G722, Opus, VP8 or H264)');
    }
    this.sdpVersion++;
    this.connected();
    return this.writeSdp();
  }

  private writeSdp(): string {
    return writeRtpSdp(this.opts.announceAddress, this.sessionId, this.sdpVersion,
      this.lines.map((l) => ({ kind: l.kind, port: l.port, direction: l.direction, codecs: l.codecs })));
  }

  private setRemote(line: Line, m: RemoteMedia): void {
    line.remote = { address: m.address, rtpPort: m.port, rtcpPort: m.rtcpPort, direction: m.direction, rtcpMux: m.rtcpMux };
    const prev = line.signalled;
    // c=0.0.0.0 (old-style hold) names no new address: the lock stays for the resume.
    if (prev && m.address === '0.0.0.0') return;
    if (prev && prev.address === m.address && prev.port === m.port) return;
    // A first description, or a re-offer with a new address: where the remote now is; learn afresh.
    line.signalled = { address: m.address, port: m.port, public: isPublicIp(m.address), own: isOwnAddress(m.address) };
    line.source = undefined;
    line.learnUntil = undefined;
    line.probation = undefined;
    line.rtcpFrom = undefined;
  }

  private connected(): void {
    if (this.state === 'connected') return;
    this.state = 'connected';
    this.emit({ type: 'connection_state', elementId: this.id, tag: this.tag, state: 'connected' });
    this.rtcpTimer = setInterval(() => this.sendReports(), RTCP_INTERVAL_MS);
    this.rtcpTimer.unref();
    this.sources.get('video')?.requestKeyframe(true);
  }

  // ---- sockets -------------------------------------------------------------------------------

  private rejectedLine(kind: 'audio' | 'video', offered: RtpCodec[]): Line {
    return { ...this.emptyLine(kind, offered.slice(0, 1), 'inactive'), port: 0 };
  }

  private emptyLine(kind: 'audio' | 'video', codecs: RtpCodec[], direction: Direction): Line {
    return {
      kind, port: 0, direction, codecs, recv: new Map(codecs.map((c) => [c.payloadType, c])),
      ssrc: randomInt(1, 0xffffffff), out: newContinuity(), sentPackets: 0, sentOctets: 0, lastSentTs: 0, sentSinceReport: false, dropped: 0,
    };
  }

  private async newLine(kind: 'audio' | 'video', codecs: RtpCodec[], direction: Direction): Promise<Line> {
    const line = this.emptyLine(kind, codecs, direction);
    const { rtp, rtcp, port } = await bindPair(this.opts.bindAddress, this.opts.portRange);
    if (this.released) { rtp.close(); rtcp.close(); throw new EngineError('invalid_state', 'endpoint released'); }
    Object.assign(line, { rtp, rtcp, port });
    rtp.on('message', (msg, rinfo) => this.onRtpSocket(line, msg, rinfo));
    rtcp.on('message', (msg, rinfo) => this.onRtcp(line, msg, rinfo));
    // Send errors (ICMP unreachable surfacing later) must not take anything down.
    rtp.on('error', () => undefined);
    rtcp.on('error', () => undefined);
    return line;
  }

  private disable(line: Line): void {
    this.closeLine(line);
    line.port = 0;
    line.remote = undefined;
  }

  private closeLine(line: Line): void {
    for (const s of [line.rtp, line.rtcp]) {
      if (!s) continue;
      s.removeAllListeners('message');
      try { s.close(); } catch { /* already closed */ }
    }
    line.rtp = undefined;
    line.rtcp = undefined;
  }

  // ---- media in ------------------------------------------------------------------------------

  /**
   * No source is locked: whether this RTP packet (version, length and payload type checked)
   * is from the source to lock, per the policy of RtpEndpointOptions.latching.
   */
  private learn(line: Line, msg: Buffer, from: Address, now: number): boolean {
    const sig = line.signalled;
    if (!sig) return false;
    if (from.port === sig.port && from.address === sig.address) {
      line.source = { address: from.address, port: from.port, learned: false };
      line.probation = undefined;
      return true;
    }
    const mode = this.opts.latching;
    if (mode === 'off') return false;
    // A peer on this host announcing one of our interface addresses reaches us from loopback
    // (which no packet from the network can carry): that is its IP too.
    if (mode === 'auto' && sig.public && from.address !== sig.address && !(sig.own && isLoopbackIp(from.address))) return false;
    line.learnUntil ??= now + LEARN_WINDOW_MS;
    if (now > line.learnUntil) return false;
    const seq = msg.readUInt16BE(2);
    const ssrc = msg.readUInt32BE(8);
    const p = line.probation;
    if (p && p.port === from.port && p.address === from.address && p.ssrc === ssrc && ((seq - p.seq) & 0xffff) === 1) {
      p.seq = seq;
      if (++p.count < PROBATION_PACKETS) return false;
      line.source = { address: from.address, port: from.port, learned: true };
      line.probation = undefined;
      return true;
    }
    // Another source, SSRC or a gap: the run starts over (interleaved senders never pass).
    line.probation = { address: from.address, port: from.port, ssrc, seq, count: 1 };
    return false;
  }

  private onRtpSocket(line: Line, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.released) return;
    // The source check comes first and reads no byte: a flood from elsewhere costs a compare.
    const src = line.source;
    let displace = false;
    if (src !== undefined && (rinfo.port !== src.port || rinfo.address !== src.address)) {
      if (!this.mayDisplace(line, src, rinfo)) { line.dropped++; return; }
      displace = true;
    }
    // RTCP multiplexed on the RTP port (RFC 5761): its packet type sits where RTP's marker
    // bit and payload type are.
    if (msg.length >= 8 && isMuxedRtcp(msg)) {
      if (displace) line.dropped++;
      else this.onRtcp(line, msg, rinfo);
      return;
    }
    if (msg.length < 12 || msg[0]! >> 6 !== 2) { line.dropped++; return; }
    const codec = line.recv.get(msg[1]! & 0x7f);
    if (!codec) { line.dropped++; return; }
    const now = performance.now();
    if (displace) {
      line.source = { address: rinfo.address, port: rinfo.port, learned: false };
      line.rtcpFrom = undefined;
    } else if (src === undefined && !this.learn(line, msg, rinfo, now)) {
      line.dropped++;
      return;
    }
    let rtp: RtpPacket;
    try {
      rtp = RtpPacket.deSerialize(msg);
    } catch {
      line.dropped++;
      return;
    }
    const h = rtp.header;
    if (!line.stats || line.stats.ssrc !== h.ssrc) line.stats = new ReceiveStats(h.ssrc, codec.clockRate);
    line.stats.update(h.sequenceNumber, h.timestamp, now);
    this.count(this.inbound[line.kind], 'in', line.kind, msg.length);
    this.forward({ kind: line.kind, rtp, codec: { mimeType: codec.mime, clockRate: codec.clockRate }, origin: this.id });
  }

  /**
   * Whether a packet from the SDP's exact address may take the lock from a learned source:
   * only while the window is open (signalling beats learning: a stranger that raced the
   * phone at the start loses the lock as soon as the phone sends; later nothing changes).
   */
  private mayDisplace(line: Line, src: Address & { learned: boolean }, from: Address): boolean {
    const sig = line.signalled;
    if (!src.learned || !sig || from.port !== sig.port || from.address !== sig.address) return false;
    return line.learnUntil !== undefined && performance.now() <= line.learnUntil;
  }

  private onRtcp(line: Line, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.released) return;
    // Only from the locked source's IP (before a lock, the SDP's); checked before any parse.
    const ip = line.source?.address ?? line.signalled?.address;
    if (rinfo.address !== ip) { line.dropped++; return; }
    let packets: RtcpPacket[];
    try {
      packets = RtcpPacketConverter.deSerialize(msg);
    } catch {
      line.dropped++;
      return;
    }
    // Symmetric RTCP: reports may go back where the remote's first reports (from the IP now
    // accepted) came from; not moved by later ones.
    if (line.rtcpFrom?.address !== rinfo.address) line.rtcpFrom = { address: rinfo.address, port: rinfo.port };
    const now = performance.now();
    for (const p of packets) {
      if (p instanceof RtcpSrPacket) {
        if (line.stats && p.ssrc === line.stats.ssrc) line.stats.srReceived(p.senderInfo.ntpTimestamp, now);
        this.takeReports(line, p.reports);
      } else if (p instanceof RtcpRrPacket) {
        this.takeReports(line, p.reports);
      } else if (p instanceof RtcpPayloadSpecificFeedback) {
        // PLI, or FIR (format 4, which werift leaves undecoded): the remote wants a keyframe.
        if (line.kind === 'video' && (p.feedback instanceof PictureLossIndication || (p as { header?: { count?: number } }).header?.count === 4)) {
          this.sources.get('video')?.requestKeyframe(false);
        }
      }
    }
  }

  private takeReports(line: Line, reports: { ssrc: number; packetsLost: number; fractionLost: number; jitter: number; lsr: number; dlsr: number }[]): void {
    const mine = reports.find((rb) => rb.ssrc === line.ssrc);
    if (!mine) return;
    let rttMs: number | undefined;
    if (mine.lsr !== 0) {
      const nowMid = Number((ntpTime() >> 16n) & 0xffffffffn);
      const rtt = ((nowMid - mine.lsr - mine.dlsr) >>> 0) / 65536;
      if (rtt < 60) rttMs = rtt * 1000;
    }
    line.remoteReport = { packetsLost: mine.packetsLost, fractionLost: mine.fractionLost / 256, jitter: mine.jitter, rttMs };
  }

  // ---- media out -----------------------------------------------------------------------------

  accept(unit: MediaUnit): void {
    if (this.released || this.state !== 'connected' || unit.kind === 'data') return;
    const line = this.line(unit.kind);
    if (!line?.remote || !line.rtp) return;
    if (line.direction === 'recvonly' || line.direction === 'inactive') return;
    const main = line.codecs[0]!;
    let pt = main.payloadType;
    let codec: CodecInfo = { mimeType: main.mime, clockRate: main.clockRate };
    if (unit.codec.mimeType !== main.mime) {
      if (unit.codec.mimeType === 'audio/telephone-event') {
        const dtmf = line.codecs.find((c) => c.name === 'telephone-event');
        if (!dtmf || dtmf.clockRate !== unit.codec.clockRate) return;
        pt = dtmf.payloadType;
        codec = unit.codec;
      } else {
        for (const u of this.adapt(unit, codec) ?? []) this.accept(u);
        return;
      }
    }
    if (!this.layerAllows(unit)) return;
    const h = unit.rtp.header;
    const { seq, ts } = continueStream(line.out, unit.origin, h.ssrc, h.sequenceNumber, h.timestamp, codec.clockRate, performance.now());
    const payload = unit.rtp.payload;
    const csrcs = h.csrc.slice(0, 15);
    const packet = Buffer.allocUnsafe(12 + csrcs.length * 4 + payload.length);
    packet[0] = 0x80 | csrcs.length;
    packet[1] = (h.marker ? 0x80 : 0) | pt;
    packet.writeUInt16BE(seq, 2);
    packet.writeUInt32BE(ts, 4);
    packet.writeUInt32BE(line.ssrc, 8);
    csrcs.forEach((c, i) => packet.writeUInt32BE(c >>> 0, 12 + i * 4));
    payload.copy(packet, 12 + csrcs.length * 4);
    const dest = this.rtpDestination(line);
    if (!dest) return;
    line.rtp.send(packet, dest.port, dest.address);
    line.sentPackets++;
    line.sentOctets += payload.length;
    if (pt === main.payloadType) line.lastSentTs = ts;
    line.sentSinceReport = true;
    this.count(this.outbound[line.kind], 'out', line.kind, packet.length);
  }

  /** The locked source when media goes back to it (symmetric RTP), per the latching mode. */
  private symmetricTo(line: Line): Address | undefined {
    const s = line.source;
    if (!s) return undefined;
    const mode = this.opts.latching;
    // auto: a source on the SDP's IP is a sender that may not listen where it sends from.
    if (mode === 'always' || (mode === 'auto' && s.address !== line.signalled?.address)) return s;
    return undefined;
  }

  private rtpDestination(line: Line): Address | undefined {
    const to = this.symmetricTo(line);
    if (to) return to;
    const r = line.remote;
    if (!r || r.rtpPort === 0 || r.address === '0.0.0.0') return undefined;
    return { address: r.address, port: r.rtpPort };
  }

  private rtcpDestination(line: Line): { socket: dgram.Socket; to: Address } | undefined {
    const r = line.remote;
    if (!r || !line.rtp || !line.rtcp) return undefined;
    if (r.rtcpMux) {
      const to = this.rtpDestination(line);
      return to ? { socket: line.rtp, to } : undefined;
    }
    const sym = this.symmetricTo(line);
    if (sym) {
      // A report source on another IP dates from before the lock.
      const from = line.rtcpFrom?.address === sym.address ? line.rtcpFrom : undefined;
      return { socket: line.rtcp, to: from ?? { address: sym.address, port: sym.port + 1 } };
    }
    if (r.address === '0.0.0.0' || r.rtcpPort === 0) return undefined;
    return { socket: line.rtcp, to: { address: r.address, port: r.rtcpPort } };
  }

  private sendRtcp(line: Line, packets: { serialize(): Buffer }[]): void {
    const dest = this.rtcpDestination(line);
    if (!dest) return;
    dest.socket.send(Buffer.concat(packets.map((p) => p.serialize())), dest.to.port, dest.to.address);
  }

  /** RTCP compound every few seconds per line: SR (if we sent) or RR, then SDES CNAME. */
  private sendReports(): void {
    if (this.released) return;
    const now = performance.now();
    for (const line of this.lines) {
      if (line.port === 0 || !line.remote) continue;
      const reports = line.stats ? [line.stats.report(now)] : [];
      const head = line.sentSinceReport
        ? new RtcpSrPacket({
          ssrc: line.ssrc, reports,
          senderInfo: new RtcpSenderInfo({ ntpTimestamp: ntpTime(), rtpTimestamp: line.lastSentTs, packetCount: line.sentPackets >>> 0, octetCount: line.sentOctets >>> 0 }),
        })
        : new RtcpRrPacket({ ssrc: line.ssrc, reports });
      line.sentSinceReport = false;
      const sdes = new RtcpSourceDescriptionPacket({
        chunks: [new SourceDescriptionChunk({ source: line.ssrc, items: [new SourceDescriptionItem({ type: 1, text: this.cname })] })],
      });
      this.sendRtcp(line, [head, sdes]);
    }
  }

  protected override sendKeyframeRequest(): boolean {
    const line = this.line('video');
    const ssrc = line?.stats?.ssrc;
    if (!line || ssrc === undefined) return false;
    this.sendRtcp(line, [new RtcpPayloadSpecificFeedback({ feedback: new PictureLossIndication({ senderSsrc: line.ssrc, mediaSsrc: ssrc }) })]);
    return true;
  }

  protected override sendRemb(bps: number): void {
    const line = this.line('video');
    const ssrc = line?.stats?.ssrc;
    if (line && ssrc !== undefined) this.sendRtcp(line, [rembFeedback(bps, line.ssrc, [ssrc])]);
  }

  // ---- stats and release -------------------------------------------------------------------

  stats(): { inbound: Record<MediaKind, MediaStats>; outbound: Record<MediaKind, MediaStats> } {
    const { inbound, outbound } = this.flowStats();
    for (const kind of ['audio', 'video'] as const) {
      const line = this.line(kind);
      if (!line) continue;
      if (line.stats) {
        inbound[kind].packets_lost = line.stats.lost;
        inbound[kind].jitter_ms = (line.stats.jitter / line.codecs[0]!.clockRate) * 1000;
      }
      const rr = line.remoteReport;
      if (rr) {
        outbound[kind].packets_lost = rr.packetsLost;
        outbound[kind].fraction_lost = rr.fractionLost;
        outbound[kind].jitter_ms = (rr.jitter / line.codecs[0]!.clockRate) * 1000;
        if (rr.rttMs !== undefined) outbound[kind].rtt_ms = rr.rttMs;
      }
    }
    return { inbound, outbound };
  }

  /** Local ports in use (tests and leak checks). */
  ports(): number[] { return this.lines.filter((l) => l.port !== 0).flatMap((l) => [l.port, l.port + 1]); }

  /** Packets dropped at the media ports, all lines (tests and diagnostics). */
  droppedPackets(): number { return this.lines.reduce((n, l) => n + l.dropped, 0); }

  override async release(): Promise<void> {
    if (this.released) return;
    clearInterval(this.rtcpTimer);
    for (const line of this.lines) {
      // RTCP BYE would be polite; phones end on the SIP BYE, and a dead socket says the rest.
      this.closeLine(line);
    }
    this.state = 'closed';
    await super.release();
  }
}

/** Whether `ip` is one of this host's interface addresses. */
function isOwnAddress(ip: string): boolean {
  return Object.values(networkInterfaces()).some((list) => list?.some((a) => a.address === ip) ?? false);
}

/** Binds an RTP socket on an even port and its RTCP socket on the next one. */
async function bindPair(host: string, range?: [number, number]): Promise<{ rtp: dgram.Socket; rtcp: dgram.Socket; port: number }> {
  const candidates: number[] = [];
  if (range) {
    // Every even port p of the range with p + 1 in it too, tried from a random one on.
    const first = range[0] + (range[0] % 2);
    const count = Math.floor((range[1] - 1 - first) / 2) + 1;
    const offset = count > 0 ? randomInt(0, count) : 0;
    for (let i = 0; i < count; i++) candidates.push(first + 2 * ((offset + i) % count));
  } else {
    for (let i = 0; i < 50; i++) candidates.push(0);
  }
  for (const port of candidates) {
    const rtp = await bindUdp(host, port);
    if (!rtp) continue;
    const actual = rtp.address().port;
    if (actual % 2 === 1) { rtp.close(); continue; }
    const rtcp = await bindUdp(host, actual + 1);
    if (!rtcp) { rtp.close(); continue; }
    return { rtp, rtcp, port: actual };
  }
  throw new EngineError('no_resources', `no free RTP/RTCP port pair${range ? ` in ${range[0]}-${range[1]}` : ''}`);
}

function bindUdp(host: string, port: number): Promise<dgram.Socket | undefined> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    const fail = (): void => { s.close(); resolve(undefined); };
    s.once('error', fail);
    s.bind(port, host, () => {
      s.off('error', fail);
      resolve(s);
    });
  });
}
