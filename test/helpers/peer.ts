// A real WebRTC client for the tests: a werift peer on loopback only, sending synthetic RTP.
import { RTCPeerConnection, RtpHeader, RtpPacket, useOPUS, useVP8, type RTCRtpTransceiver, type RTCDataChannel } from 'werift';
import type { CandidateInit, NkMediaClient, SdpObject } from '../../src/client/index.js';

export const PEER_CONFIG = {
  codecs: { audio: [useOPUS()], video: [useVP8()] },
  // An explicit dead loopback STUN server with no wait: werift must never look elsewhere.
  iceServers: [{ urls: 'stun:127.0.0.1:9' }],
  iceStunGatherTimeout: 0,
  iceUseIpv4: false,
  iceUseIpv6: false,
  iceAdditionalHostAddresses: ['127.0.0.1'],
  iceInterfaceAddresses: { udp4: '127.0.0.1' },
  bundlePolicy: 'max-bundle' as const,
};

export function splitCandidates(sdp: string): { sdp: string; candidates: CandidateInit[] } {
  const lines = sdp.split('\r\n');
  const candidates: CandidateInit[] = [];
  let index = -1;
  let mid: string | undefined;
  const kept: string[] = [];
  for (const l of lines) {
    if (l.startsWith('m=')) { index++; mid = undefined; }
    if (l.startsWith('a=mid:')) mid = l.slice(6);
    if (l.startsWith('a=candidate:')) { candidates.push({ candidate: l.slice(2), sdpMLineIndex: index, sdpMid: mid }); continue; }
    if (l === 'a=end-of-candidates') continue;
    kept.push(l);
  }
  // sdpMid is only known once the section's a=mid line is read; fix up from the SDP.
  const mids = [...sdp.matchAll(/^a=mid:(\S+)$/gm)].map((m) => m[1]);
  for (const c of candidates) c.sdpMid = mids[c.sdpMLineIndex];
  return { sdp: kept.join('\r\n'), candidates };
}

/** One received RTP packet: who sent it (the tag in the first payload bytes) and its header. */
export interface Rx { ssrc: number; seq: number; ts: number; tag: number; keyframe: boolean; at: number }

const KEYFRAME_MARK = 0x4b;

export interface SendOptions {
  audioPps?: number;
  videoPps?: number;
  /** RTP payload bytes per packet (the RTP header and SRTP tag come on top). */
  audioBytes?: number;
  videoBytes?: number;
  keyframeOnPli?: boolean;
  /** Real audio instead of tagged filler: the payload of the i-th audio packet (e.g. Opus frames). */
  audioPayload?: (i: number) => Buffer;
  /** Video sequence numbers to leave out, as if lost on the way (the number is still used up). */
  dropVideo?: (seq: number) => boolean;
}

export interface Sending {
  /** Packets handed to werift so far, by kind. */
  readonly sent: { audio: number; video: number };
  /** The longest gap between two send ticks (ms): how bursty the sending was. */
  readonly maxTickGapMs: number;
  stop(): void;
}

export class TestPeer {
  private keyframeDue = false;
  readonly pc: RTCPeerConnection;
  readonly received = { audio: 0, video: 0 };
  readonly rx: { audio: Rx[]; video: Rx[] } = { audio: [], video: [] };
  readonly messages: string[] = [];
  /** Payloads of the audio received, in arrival order (for decoding what came through). */
  readonly audioPayloads: Buffer[] = [];
  /** Identifies this peer's media in the payloads it sends. */
  readonly tag = Math.floor(Math.random() * 0xffffffff) >>> 0;
  /** Keyframe requests (PLI) the server sent us. */
  pliReceived = 0;
  /** Bitrate limits (REMB) the server sent us, in bits per second. */
  readonly rembReceived: number[] = [];
  audio?: RTCRtpTransceiver;
  video?: RTCRtpTransceiver;
  channel?: RTCDataChannel;
  private sending?: NodeJS.Timeout;

  /** `config` adds to (or replaces parts of) PEER_CONFIG, e.g. TURN servers and a relay-only policy. */
  constructor(config: Partial<ConstructorParameters<typeof RTCPeerConnection>[0]> = {}) {
    this.pc = new RTCPeerConnection({ ...PEER_CONFIG, ...config });
    this.pc.onTrack.subscribe((track) => {
      const kind = track.kind === 'audio' ? 'audio' : 'video';
      track.onReceiveRtp.subscribe((rtp) => {
        this.received[kind]++;
        if (kind === 'audio') this.audioPayloads.push(Buffer.from(rtp.payload));
        const tag = rtp.payload.length >= 4 ? rtp.payload.readUInt32BE(0) : -1;
        const keyframe = rtp.payload.length >= 5 && rtp.payload[4] === KEYFRAME_MARK;
        this.rx[kind].push({ ssrc: rtp.header.ssrc, seq: rtp.header.sequenceNumber, ts: rtp.header.timestamp, tag, keyframe, at: performance.now() });
      });
    });
    this.pc.onTransceiverAdded.subscribe((t) => this.watchSender(t));
    this.pc.onDataChannel.subscribe((dc) => this.watchChannel(dc));
  }

  private watchSender(t: RTCRtpTransceiver): void {
    // werift routes a PLI by its sender SSRC first, so it may reach the receiver rather than
    // the sender it is about: watch both, and count it once by its media SSRC.
    const seen = this.seenRtcp;
    const onRtcp = (rtcp: unknown) => {
      if (seen.has(rtcp as object)) return;
      seen.add(rtcp as object);
      const fb = (rtcp as { feedback?: { count?: number; uniqueID?: string; bitrate?: bigint; mediaSsrc?: number } }).feedback;
      if (!fb) return;
      if (fb.uniqueID === 'REMB' && fb.bitrate !== undefined) this.rembReceived.push(Number(fb.bitrate));
      else if (fb.count === 1 && (rtcp as { type?: number }).type === 206 && this.pc.getTransceivers().some((x) => x.sender.ssrc === fb.mediaSsrc)) {
        this.pliReceived++;
        this.keyframeDue = true;
      }
    };
    t.sender.onRtcp.subscribe(onRtcp);
    t.receiver.onRtcp.subscribe(onRtcp);
  }
  private readonly seenRtcp = new WeakSet<object>();

  /** Packets received from the peer tagged `tag` (ours, in an echo). */
  from(kind: 'audio' | 'video', tag: number): Rx[] { return this.rx[kind].filter((r) => r.tag === tag); }

  send(message: string): void { this.channel?.send(message); }

  private watchChannel(dc: RTCDataChannel): void {
    this.channel ??= dc;
    dc.onMessage.subscribe((m) => this.messages.push(m.toString()));
  }

  /** Our offer (audio, video, data) split into a candidate-less SDP and its candidates. */
  async makeOffer(): Promise<{ sdp: string; candidates: CandidateInit[] }> {
    this.audio = this.pc.addTransceiver('audio', { direction: 'sendrecv' });
    this.video = this.pc.addTransceiver('video', { direction: 'sendrecv' });
    this.watchChannel(this.pc.createDataChannel('test'));
    await this.pc.setLocalDescription(await this.pc.createOffer());
    return splitCandidates(this.pc.localDescription!.sdp);
  }

  async takeAnswer(answer: SdpObject): Promise<void> {
    await this.pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
  }

  /** Answers a server offer; returns our answer split from its candidates. */
  async answerOffer(offer: SdpObject): Promise<{ sdp: string; candidates: CandidateInit[] }> {
    await this.pc.setRemoteDescription({ type: 'offer', sdp: offer.sdp });
    for (const t of this.pc.getTransceivers()) {
      t.setDirection('sendrecv');
      if (t.kind === 'audio') this.audio = t;
      if (t.kind === 'video') this.video = t;
    }
    await this.pc.setLocalDescription(await this.pc.createAnswer());
    return splitCandidates(this.pc.localDescription!.sdp);
  }

  async addCandidate(c: { candidate: string; sdpMid?: string; sdpMLineIndex: number }): Promise<void> {
    await this.pc.addIceCandidate({ candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex });
  }

  /** Feeds the server's trickled candidates for `sessionId` into this peer. */
  followCandidates(client: NkMediaClient, sessionId: string): () => void {
    return client.onEvent((e) => {
      if (e.obj_id === sessionId && e.type === 'candidate' && e.body) void this.addCandidate(e.body as CandidateInit).catch(() => undefined);
    });
  }

  waitConnected(ms = 10000): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.pc.connectionState === 'connected') { resolve(); return; }
      const timer = setTimeout(() => { sub.unSubscribe(); reject(new Error(`peer not connected after ${ms} ms (state ${this.pc.connectionState})`)); }, ms);
      const sub = this.pc.connectionStateChange.subscribe((s) => {
        if (s === 'connected') { clearTimeout(timer); sub.unSubscribe(); resolve(); }
      });
    });
  }

  /**
   * Sends synthetic RTP until stopped: audio `audioPps` (default 50) and video `videoPps`
   * (default 50) packets per second, of `audioBytes`/`videoBytes` payload (120/1000), on a 10 ms
   * tick that catches up after a late one. Each payload starts with this peer's tag; with
   * `keyframeOnPli` the first video packet after a keyframe request is marked as a keyframe
   * (byte 4), like a real encoder answering a PLI. Returns what was sent so far.
   */
  startSending(opts: SendOptions = {}): Sending {
    const rate = { audio: opts.audioPps ?? 50, video: opts.videoPps ?? 50 };
    const size = { audio: opts.audioBytes ?? 120, video: opts.videoBytes ?? 1000 };
    const seq = { audio: 1000, video: 5000 };
    const started = performance.now();
    const sent = { audio: 0, video: 0 };
    const send = (t: RTCRtpTransceiver | undefined, kind: 'audio' | 'video') => {
      const codec = t?.sender.codec;
      if (!t || !codec) return;
      seq[kind] = (seq[kind] + 1) & 0xffff;
      const ts = Math.floor(((performance.now() - started) * codec.clockRate) / 1000) >>> 0;
      const header = new RtpHeader({ payloadType: codec.payloadType, sequenceNumber: seq[kind], timestamp: ts, ssrc: t.sender.ssrc, marker: true });
      if (kind === 'audio' && opts.audioPayload) {
        // A real encoder's timestamps step by exactly one frame (20 ms), not by the wall clock.
        header.timestamp = (sent.audio * Math.round((codec.clockRate * 1000) / rate.audio / 1000)) >>> 0;
        sent.audio++;
        void t.sender.sendRtp(new RtpPacket(header, opts.audioPayload(sent.audio - 1))).catch(() => undefined);
        return;
      }
      if (kind === 'video' && opts.dropVideo?.(seq[kind])) return;
      const payload = Buffer.alloc(size[kind], kind === 'audio' ? 0x11 : 0x22);
      payload.writeUInt32BE(this.tag, 0);
      payload[4] = 0;
      if (kind === 'video' && opts.keyframeOnPli && this.keyframeDue) { payload[4] = KEYFRAME_MARK; this.keyframeDue = false; }
      sent[kind]++;
      void t.sender.sendRtp(new RtpPacket(header, payload)).catch(() => undefined);
    };
    const due = { audio: 0, video: 0 };
    let lastTick = started;
    let maxTickGapMs = 0;
    clearInterval(this.sending);
    const timer = this.sending = setInterval(() => {
      const now = performance.now();
      maxTickGapMs = Math.max(maxTickGapMs, now - lastTick);
      lastTick = now;
      const elapsed = (now - started) / 1000;
      while (due.audio < elapsed * rate.audio) { due.audio++; send(this.audio, 'audio'); }
      while (due.video < elapsed * rate.video) { due.video++; send(this.video, 'video'); }
    }, 10);
    return { sent, get maxTickGapMs() { return maxTickGapMs; }, stop: () => clearInterval(timer) };
  }

  stopSending(): void { clearInterval(this.sending); }

  async close(): Promise<void> {
    this.stopSending();
    await this.pc.close();
  }
}
