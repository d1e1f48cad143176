// One WebRTC endpoint's ICE socket handed to the native forwarding plane (forwarding-plane.ts):
// attaching it (keys, rollover counters and stream state carried over from werift and from the
// endpoint's JS path), giving back what the plane does not forward, keeping werift's receive
// statistics, NACK sender and sender reports true from the plane's counters, and detaching it
// with all that state handed back, so the JS path can take over again at any time.
import { isIPv4 } from 'node:net';
import type { Socket } from 'node:dgram';
import { ntpTime, type RTCPeerConnection, type RTCRtpReceiver, type RTCRtpSender } from 'werift';
import type { MediaKind } from '../../types.js';
import type { CodecInfo } from '../graph/element.js';
import { In, IN_FIELDS, Out, OUT_FIELDS, type ForwardingPlane, type PlaneClient } from './forwarding-plane.js';
import { markDecrypted, nativeContexts, nativeRtcpContexts } from './native-srtp.js';
import type { Continuity } from '../graph/stream-continuity.js';
import {
  iceConnectionOf, receiverInternals as internals, rtcpLoops, senderInternals, udpHandle,
  type NackHandler, type ReceiverInternals, type UdpHandle,
} from './internals.js';

/** What the attachment needs from its endpoint. */
export interface PlaneHost {
  readonly pc: RTCPeerConnection;
  /** The endpoint's own stream state for what it sends (handed over both ways). */
  continuity(kind: 'audio' | 'video'): Continuity;
  /** The sender and payload type for a kind, as the JS path would pick them. */
  target(kind: 'audio' | 'video'): { sender: RTCRtpSender; codec: CodecInfo; payloadType: number } | undefined;
  /** Adds what the plane moved to the endpoint's flow counters (`ageMs`: since the last packet). */
  addFlow(direction: 'in' | 'out', media: MediaKind, packets: number, bytes: number, ageMs: number): void;
  /** The client's video SSRC is alive (for keyframe requests). */
  videoSeen(ssrc: number, ageMs: number): void;
  /** The client's reception report about what we send of a kind (interarrival jitter). */
  remoteReport(kind: 'audio' | 'video', jitter: number): void;
}

const RTT_ALPHA = 0.85; // werift's smoothing of round-trip times
/** Seconds between 1900 (NTP) and 1970. */
const NTP_EPOCH_OFFSET_S = 2208988800;

interface Output { out: number; sender: RTCRtpSender; codec: CodecInfo; clockRate: number; packets: number; bytes: number; reports: number }

export class PlaneAttachment implements PlaneClient {
  readonly outs: Partial<Record<'audio' | 'video', Output>> = {};
  /** Incoming SSRCs the JS path has seen: their kind, and what the plane forwarded of them so far. */
  private readonly inputs = new Map<number, { kind: 'audio' | 'video'; routedEpoch: number; packets: number; bytes: number; reports: number }>();
  private readonly statsBuf = new Float64Array(IN_FIELDS * 16);
  private readonly outBuf = new Float64Array(OUT_FIELDS);
  private sock = -1;
  private detached = false;
  /** Whether the plane sends this connection's RTCP reports (werift's loops stopped). */
  private reporting = false;

  private constructor(
    private readonly plane: ForwardingPlane,
    private readonly host: PlaneHost,
    private readonly transport: { closed?: boolean; socket: Socket },
    private readonly handle: UdpHandle,
  ) {}

  private get socket(): Socket { return this.transport.socket; }

  /**
   * Hands the endpoint's socket to the plane when it can carry it: one bundled DTLS transport
   * with native SRTP, a selected pair over plain UDP (not TCP or TURN) to an IPv4 address.
   */
  static attach(plane: ForwardingPlane, host: PlaneHost): PlaneAttachment | undefined {
    const transports = host.pc.dtlsTransports;
    const dtls = transports[0];
    if (transports.length !== 1 || !dtls?.srtp) return undefined;
    const ctxs = nativeContexts(dtls.srtp);
    const pair = iceConnectionOf(dtls).nominated;
    const transport = pair?.protocol.transport;
    if (!ctxs || !pair || pair.protocol.type !== 'stun' || transport?.type !== 'udp' || transport.closed || !transport.socket) return undefined;
    const [address, port] = pair.remoteAddr;
    if (!isIPv4(address)) return undefined;
    const handle = udpHandle(transport.socket);
    if (!handle) return undefined;

    const att = new PlaneAttachment(plane, host, transport as { closed?: boolean; socket: Socket }, handle);
    const rtcp = dtls.srtcp && nativeRtcpContexts(dtls.srtcp);
    att.sock = plane.attach(handle.fd, ctxs.rtpRemote.handle, rtcp ? rtcp.rtcpRemote.handle : null, att);
    handle.recvStop();
    try {
      att.takeOver(dtls, ctxs, rtcp, address, port);
    } catch (err) {
      att.detach(); // whatever was set up goes back: the socket is read by libuv again
      throw err;
    }
    return att;
  }

  /** Carries werift's and the endpoint's stream state over to the plane (see attach). */
  private takeOver(
    dtls: RTCPeerConnection['dtlsTransports'][number], ctxs: NonNullable<ReturnType<typeof nativeContexts>>,
    rtcp: ReturnType<typeof nativeRtcpContexts>, address: string, port: number,
  ): void {
    const { host } = this;
    const b = this.plane.b;
    if (!dtls.srtp) return;
    // Rollover counters werift already tracks (packets it decrypted before now).
    for (const s of Object.values(dtls.srtp.remoteContext.srtpSSRCStates)) {
      b.planeSeedInput(this.sock, s.ssrc >>> 0, s.rolloverCounter, s.lastSequenceNumber, s.rolloverHasProcessed ? 1 : 0, 90000, 0);
    }
    for (const kind of ['audio', 'video'] as const) {
      const target = host.target(kind);
      if (!target) continue;
      const { sender } = target;
      const out = b.planeAddOutput(this.sock, ctxs.rtpLocal.handle, sender.ssrc, target.payloadType, kind === 'video' ? 1 : 0);
      // Recorded at once, so that a failure below still removes it (detach).
      this.outs[kind] = { out, sender, codec: target.codec, clockRate: target.codec.clockRate, packets: 0, bytes: 0, reports: 0 };
      const roc = dtls.srtp.localContext.getSrtpSsrcState(sender.ssrc);
      const c = host.continuity(kind);
      b.planeSeedOutput(out, roc.rolloverCounter, roc.lastSequenceNumber, roc.rolloverHasProcessed ? 1 : 0,
        c.lastSeq ?? -1, c.lastTs >>> 0, c.lastSeq === undefined ? 0 : Math.max(0, performance.now() - c.lastSentAt));
      b.planeSetDest(out, address, port);
    }
    // Our sender and receiver reports come from the plane's counters: one compound packet per
    // connection every 0.5-1.5 s instead of werift's loop per stream (each a JS timer, a
    // promise chain and a send). werift's loops stop; detaching restarts them.
    if (rtcp && dtls.srtcp && Object.keys(this.outs).length > 0) {
      for (const kind of ['audio', 'video'] as const) {
        const o = this.outs[kind];
        if (!o) continue;
        const idx = dtls.srtcp.localContext.getSrtcpSsrcState(o.sender.ssrc).srtcpIndex;
        b.planeSeedOutputRtcp(o.out, senderInternals(o.sender).cname ?? '', idx >>> 0);
      }
      b.planeSetRtcp(this.sock, rtcp.rtcpLocal.handle);
      this.reporting = true;
      for (const loop of rtcpLoops(this.host.pc)) { loop.rtcpRunning = true; loop.rtcpCancel.abort(); }
    }
    // The plane sees every packet and reports losses; werift's own detection would only see
    // the few that still come through JS and take the rest for lost.
    for (const r of this.receivers()) internals(r).nack.addPacket = (): void => undefined;
  }

  private receivers(): RTCRtpReceiver[] {
    return this.host.pc.getTransceivers().map((t) => t.receiver);
  }

  private receiverOf(ssrc: number): RTCRtpReceiver | undefined {
    return this.receivers().find((r) => r.tracks.some((t) => t.ssrc === ssrc) || ssrc in internals(r).remoteStreams);
  }

  // ---- PlaneClient ---------------------------------------------------------------------------

  datagram(buf: Buffer, address: string, port: number, decrypted: boolean): void {
    if (decrypted) markDecrypted(buf);
    this.socket.emit('message', buf, { address, family: 'IPv4', port, size: buf.length });
  }

  lost(ssrc: number, first: number, count: number): void {
    const r = this.receiverOf(ssrc);
    if (!r?.nackEnabled || r.track?.kind !== 'video') return;
    const nack = internals(r).nack;
    nack.mediaSourceSsrc = ssrc;
    for (let i = 0; i < count; i++) nack.setLost((first + i) & 0xffff, 1);
  }

  late(ssrc: number, seq: number): void {
    const r = this.receiverOf(ssrc);
    const nack = r && internals(r).nack;
    if (nack?.getLost(seq)) nack.removeLost(seq);
  }

  sync(): void {
    if (this.detached) return;
    const b = this.plane.b;
    const n = b.planeInputStats(this.sock, this.statsBuf);
    for (let i = 0; i < n; i++) {
      const r = this.statsBuf.subarray(i * IN_FIELDS, (i + 1) * IN_FIELDS);
      const ssrc = r[In.Ssrc]!;
      const input = this.inputs.get(ssrc);
      if (!input) continue; // not seen by the JS path yet: werift does not know it either
      const packets = r[In.FwdPackets]! - input.packets;
      const bytes = r[In.FwdBytes]! - input.bytes;
      input.packets += packets;
      input.bytes += bytes;
      const age = r[In.Age]!;
      if (packets > 0) {
        this.host.addFlow('in', input.kind, packets, bytes, age);
        if (input.kind === 'video') this.host.videoSeen(ssrc, age);
      }
      const srs = r[In.SrCount]! - input.reports;
      input.reports += srs;
      // werift's RFC 3550 statistics (receiver reports, get_stats): the plane counts every packet.
      for (const rcv of this.receivers()) {
        const w = internals(rcv);
        const st = w.remoteStreams[ssrc];
        if (!st) continue;
        if (srs > 0) this.senderReport(w, ssrc, r, srs);
        st.packets_received = r[In.Packets]!;
        st.bytesReceived = r[In.Bytes]!;
        st.headerBytesReceived = r[In.HeaderBytes]!;
        if (r[In.BaseSeq]! >= 0) st.base_seq = r[In.BaseSeq]!;
        if (r[In.MaxSeq]! >= 0) st.max_seq = r[In.MaxSeq]!;
        st.cycles = r[In.Cycles]!;
        st.jitter_q4 = r[In.JitterQ4]!;
        if (r[In.LastArrival]! >= 0) st.last_arrival = r[In.LastArrival]!;
        if (r[In.LastTs]! >= 0) st.last_timestamp = r[In.LastTs]!;
      }
    }
    for (const kind of ['audio', 'video'] as const) {
      const o = this.outs[kind];
      if (!o || !b.planeOutputStats(o.out, this.outBuf)) continue;
      const st = this.outBuf;
      const packets = st[Out.Packets]!, bytes = st[Out.Bytes]!, age = st[Out.Age]!;
      if (packets > o.packets) this.host.addFlow('out', kind, packets - o.packets, bytes - o.bytes, age);
      o.packets = packets;
      o.bytes = bytes;
      const sender = senderInternals(o.sender);
      if (this.reporting && st[Out.SrSent]! > 0) {
        // The plane's last sender report, for the round-trip time from the client's next RR.
        sender.lastSRtimestamp = st[Out.SrCompact]!;
        sender.lastSentSRTimestamp = st[Out.SrSentAt]!;
      }
      if (st[Out.RrCount]! > o.reports) { o.reports = st[Out.RrCount]!; this.receptionReport(kind, o.sender, st); }
      sender.packetCount = packets % 2 ** 32;
      sender.octetCount = st[Out.Octets]! % 2 ** 32;
      if (this.reporting || age < 0) continue;
      // werift sends the reports: an (NTP, RTP) time pair for now.
      sender.ntpTimestamp = ntpTime();
      sender.rtpTimestamp = (st[Out.LastTs]! + Math.round((age * o.clockRate) / 1000)) >>> 0;
      void o.sender.runRtcp();
    }
  }

  /** A client's sender report the plane read: what werift's receiver records of one (handleRtcpPacket). */
  private senderReport(w: ReceiverInternals, ssrc: number, r: Float64Array, count: number): void {
    const hi = r[In.SrNtpHi]!;
    const lo = r[In.SrNtpLo]!;
    w.lastSRtimestamp[ssrc] = (((hi & 0xffff) << 16) | (lo >>> 16)) >>> 0;
    w.receiveLastSRTimestamp[ssrc] = r[In.SrAt]!;
    w.senderReportsReceivedBySsrc[ssrc] = (w.senderReportsReceivedBySsrc[ssrc] ?? 0) + count;
    w.remoteTimestampsBySsrc[ssrc] = (hi - NTP_EPOCH_OFFSET_S) * 1000 + lo;
    w.remotePacketCountBySsrc[ssrc] = r[In.SrPackets]!;
    w.remoteOctetCountBySsrc[ssrc] = r[In.SrOctets]!;
  }

  /** A client's reception report about one of our streams: loss and round-trip time as werift computes them. */
  private receptionReport(kind: 'audio' | 'video', sender: RTCRtpSender, st: Float64Array): void {
    const lsr = st[Out.RrLsr]!, dlsr = st[Out.RrDlsr]!, at = st[Out.RrAt]!;
    const s = senderInternals(sender);
    s.remotePacketsLost = st[Out.RrLost]!;
    s.remoteFractionLost = st[Out.RrFraction]! / 256;
    if (s.lastSRtimestamp === lsr && dlsr && s.lastSentSRTimestamp) {
      const rtt = at - s.lastSentSRTimestamp - dlsr / 65536;
      s.totalRoundTripTime += rtt;
      s.roundTripTimeMeasurements++;
      s.rtt = s.rtt === undefined ? rtt : RTT_ALPHA * s.rtt + (1 - RTT_ALPHA) * rtt;
    }
    this.host.remoteReport(kind, st[Out.RrJitter]!);
  }

  // ---- routes and sending ----------------------------------------------------------------------

  /**
   * Decides, once per SSRC and graph epoch, whether the plane forwards this SSRC itself: yes
   * when every element its media reaches is an attached WebRTC endpoint taking the codec as is
   * (`outputsFor` gives their outputs, or undefined when one cannot). Called from the JS path.
   */
  route(kind: 'audio' | 'video', ssrc: number, payloadType: number, codec: CodecInfo, origin: number, nack: boolean, outputsFor: () => number[] | undefined): void {
    let input = this.inputs.get(ssrc);
    if (!input) {
      input = { kind, routedEpoch: 0, packets: 0, bytes: 0, reports: 0 };
      this.inputs.set(ssrc, input);
      this.plane.b.planeSeedInput(this.sock, ssrc, 0, 0, 0, codec.clockRate, nack ? 1 : 0);
    }
    if (input.routedEpoch === this.plane.epoch) return;
    input.routedEpoch = this.plane.epoch;
    const outs = outputsFor();
    this.plane.b.planeSetRoute(this.sock, ssrc, payloadType, origin, codec.clockRate, outs ? Int32Array.from(outs) : null);
  }

  /** The output for what this endpoint sends of a kind, if it takes this codec. */
  output(kind: 'audio' | 'video', codec: CodecInfo): number | undefined {
    const o = this.outs[kind];
    return o && !this.detached && o.codec.mimeType === codec.mimeType ? o.out : undefined;
  }

  send(kind: 'audio' | 'video', origin: number, header: { ssrc: number; sequenceNumber: number; timestamp: number; marker: boolean; csrc: number[] }, payload: Buffer, clockRate: number): boolean {
    const o = this.outs[kind];
    if (!o || this.detached) return false;
    let csrcs: Buffer | undefined;
    if (header.csrc.length > 0) {
      csrcs = Buffer.alloc(4 * Math.min(15, header.csrc.length));
      for (let i = 0; i < csrcs.length / 4; i++) csrcs.writeUInt32BE(header.csrc[i]! >>> 0, 4 * i);
    }
    this.plane.b.planeSend(o.out, origin, header.ssrc, header.sequenceNumber, header.timestamp, header.marker ? 1 : 0, payload, clockRate, csrcs);
    return true;
  }

  retransmit(kind: 'audio' | 'video', seqs: number[]): number | undefined {
    const o = this.outs[kind];
    return o && !this.detached ? this.plane.b.planeRetransmit(o.out, seqs) : undefined;
  }

  /** Gives the socket and every stream's state back to werift and the endpoint's JS path. */
  detach(): void {
    if (this.detached) return;
    this.sync();
    this.detached = true;
    const b = this.plane.b;
    const n = b.planeInputStats(this.sock, this.statsBuf);
    this.plane.detach(this.sock);
    const srtp = this.host.pc.dtlsTransports[0]?.srtp;
    if (srtp) {
      const states = srtp.remoteContext.srtpSSRCStates;
      for (let i = 0; i < n; i++) {
        const r = this.statsBuf.subarray(i * IN_FIELDS, (i + 1) * IN_FIELDS);
        const ssrc = r[In.Ssrc]!;
        states[ssrc] = { ssrc, rolloverCounter: r[In.Roc]!, lastSequenceNumber: r[In.RocLast]!, rolloverHasProcessed: r[In.RocProcessed]! === 1 };
      }
    }
    for (const kind of ['audio', 'video'] as const) {
      const o = this.outs[kind];
      const st = o && b.planeRemoveOutput(o.out);
      if (!o || !st) continue;
      const [, , , lastSeq, lastTs, age, roc, rocLast, rocProcessed, srtcpIndex] = st as number[];
      if (srtp) {
        const s = srtp.localContext.getSrtpSsrcState(o.sender.ssrc);
        s.rolloverCounter = roc!;
        s.lastSequenceNumber = rocLast!;
        s.rolloverHasProcessed = rocProcessed === 1;
      }
      const srtcp = this.host.pc.dtlsTransports[0]?.srtcp;
      if (this.reporting && srtcp) srtcp.localContext.getSrtcpSsrcState(o.sender.ssrc).srtcpIndex = srtcpIndex!;
      const c = this.host.continuity(kind);
      if (lastSeq! >= 0) {
        c.lastSeq = lastSeq!;
        c.lastTs = lastTs!;
        c.lastSentAt = performance.now() - age!;
        c.keyOrigin = undefined; // the next packet recomputes the offsets from here
        c.keySsrc = undefined;
      }
    }
    for (const r of this.receivers()) delete (internals(r).nack as Partial<NackHandler>).addPacket;
    if (this.reporting) {
      // werift's loops again (a fresh abort controller: the old one is spent).
      for (const loop of rtcpLoops(this.host.pc)) {
        loop.rtcpCancel = new AbortController();
        loop.rtcpRunning = false;
        if (!loop.stopped) void loop.runRtcp();
      }
    }
    if (!this.transport.closed) {
      try { this.handle.recvStart(); } catch { /* the socket is closing */ }
    }
  }
}
