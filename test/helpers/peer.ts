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

export class TestPeer {
  readonly pc = new RTCPeerConnection(PEER_CONFIG);
  readonly received = { audio: 0, video: 0 };
  readonly messages: string[] = [];
  audio?: RTCRtpTransceiver;
  video?: RTCRtpTransceiver;
  channel?: RTCDataChannel;
  private sending?: NodeJS.Timeout;

  constructor() {
    this.pc.onTrack.subscribe((track) => {
      const kind = track.kind === 'audio' ? 'audio' : 'video';
      track.onReceiveRtp.subscribe(() => { this.received[kind]++; });
    });
    this.pc.onDataChannel.subscribe((dc) => this.watchChannel(dc));
  }

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

  /** Sends synthetic RTP on audio (and video) every 20 ms until stopped. */
  startSending(): void {
    let seq = 1000;
    let ts = 0;
    this.sending = setInterval(() => {
      seq = (seq + 1) & 0xffff;
      ts = (ts + 960) >>> 0;
      for (const t of [this.audio, this.video]) {
        const codec = t?.sender.codec;
        if (!t || !codec) continue;
        const header = new RtpHeader({ payloadType: codec.payloadType, sequenceNumber: seq, timestamp: ts, ssrc: t.sender.ssrc, marker: true });
        void t.sender.sendRtp(new RtpPacket(header, Buffer.alloc(120, t.kind === 'audio' ? 0x11 : 0x22))).catch(() => undefined);
      }
    }, 20);
  }

  stopSending(): void { clearInterval(this.sending); }

  async close(): Promise<void> {
    this.stopSending();
    await this.pc.close();
  }
}
