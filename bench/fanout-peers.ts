// Helpers for the fan-out benchmark (bench/fanout.ts): a synthetic publisher whose packet sizes
// are configurable and which counts what it sends, and a cheap packet counter for listener peers.
import { RtpHeader, RtpPacket, type RTCRtpTransceiver } from 'werift';
import type { TestPeer } from '../test/helpers/peer.js';

export interface SendOptions {
  audioPps?: number;
  videoPps?: number;
  /** RTP payload bytes per packet (the RTP header and SRTP tag come on top). */
  audioBytes?: number;
  videoBytes?: number;
}

export interface Sending {
  /** Packets handed to werift so far, by kind. */
  readonly sent: { audio: number; video: number };
  /** The longest gap between two send ticks (ms): how bursty the sending was. */
  readonly maxTickGapMs: number;
  stop(): void;
}

/**
 * Sends synthetic RTP from `peer` until stopped, like TestPeer.startSending but with the payload
 * sizes given and the packets counted. Each payload starts with the peer's tag.
 */
export function startSynthetic(peer: TestPeer, opts: SendOptions = {}): Sending {
  const rate = { audio: opts.audioPps ?? 50, video: opts.videoPps ?? 110 };
  const size = { audio: opts.audioBytes ?? 120, video: opts.videoBytes ?? 1100 };
  const seq = { audio: 1000, video: 5000 };
  const sent = { audio: 0, video: 0 };
  const payloads = {
    audio: Buffer.alloc(size.audio, 0x11),
    video: Buffer.alloc(size.video, 0x22),
  };
  for (const p of Object.values(payloads)) { p.writeUInt32BE(peer.tag, 0); p[4] = 0; }
  const started = performance.now();
  const send = (t: RTCRtpTransceiver | undefined, kind: 'audio' | 'video') => {
    const codec = t?.sender.codec;
    if (!t || !codec) return;
    seq[kind] = (seq[kind] + 1) & 0xffff;
    const ts = Math.floor(((performance.now() - started) * codec.clockRate) / 1000) >>> 0;
    const header = new RtpHeader({ payloadType: codec.payloadType, sequenceNumber: seq[kind], timestamp: ts, ssrc: t.sender.ssrc, marker: true });
    sent[kind]++;
    void t.sender.sendRtp(new RtpPacket(header, payloads[kind])).catch(() => undefined);
  };
  // Packets due are sent on a 10 ms tick (catching up after a late tick), as TestPeer does.
  let due = { audio: 0, video: 0 };
  let lastTick = started;
  let maxTickGapMs = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    maxTickGapMs = Math.max(maxTickGapMs, now - lastTick);
    lastTick = now;
    const elapsed = (now - started) / 1000;
    while (due.audio < elapsed * rate.audio) { due.audio++; send(peer.audio, 'audio'); }
    while (due.video < elapsed * rate.video) { due.video++; send(peer.video, 'video'); }
  }, 10);
  return {
    sent,
    get maxTickGapMs() { return maxTickGapMs; },
    stop: () => { clearInterval(timer); due = { audio: Infinity, video: Infinity }; },
  };
}

/** Packets a listener received, by kind, counted from the clear part of the SRTP header. */
export interface Counts { audio: number; video: number; rtcp: number; bytes: number; /** RTP of another payload type */ other: number }
export const zeroCounts = (): Counts => ({ audio: 0, video: 0, rtcp: 0, bytes: 0, other: 0 });

/** werift internals the counter hooks into (werift 0.25: ICE connection → nominated pair → UDP transport). */
interface WeriftUdpTransport { onData: (data: Buffer, addr: [string, number]) => void }
interface WeriftIce { nominated?: { protocol: { type: string; transport?: WeriftUdpTransport } } }

/**
 * Counts the RTP packets arriving at a connected listener peer where its UDP socket hands them
 * to werift. With `passThrough` false (the cheap mode) media packets stop there: werift never
 * parses, decrypts or routes them, which costs the listener little more than Node's datagram
 * receive. STUN (consent checks), DTLS and RTCP always go on to werift so the connection stays
 * healthy. With `passThrough` true every packet also goes on to werift (for validating the count
 * against real decryption: TestPeer.received counts what werift decrypted and delivered).
 *
 * SRTP leaves the RTP header in clear: the first byte tells RTP/RTCP from STUN (0-3) and DTLS
 * (20-63) (RFC 7983), the second the payload type, which tells audio from video.
 */
export function countAtSocket(peer: TestPeer, counts: Counts, passThrough: boolean): void {
  const ice = (peer.pc as unknown as { iceTransports: { connection: WeriftIce }[] }).iceTransports[0]?.connection;
  const transport = ice?.nominated?.protocol.transport;
  if (!transport || ice.nominated!.protocol.type !== 'stun') throw new Error('listener has no nominated UDP pair');
  const audioPt = peer.audio?.sender.codec?.payloadType;
  const videoPt = peer.video?.sender.codec?.payloadType;
  if (audioPt === undefined || videoPt === undefined) throw new Error('listener has no negotiated codecs');
  const original = transport.onData;
  transport.onData = (data, addr) => {
    const b0 = data[0]!;
    if (b0 >= 128 && b0 <= 191 && data.length >= 12) {
      const pt = data[1]! & 0x7f;
      // RTCP packet types 192-223 appear as "payload types" 64-95 with the marker bit set.
      if (data[1]! >= 192 && data[1]! <= 223) counts.rtcp++;
      else {
        if (pt === videoPt) counts.video++;
        else if (pt === audioPt) counts.audio++;
        else counts.other++;
        counts.bytes += data.length;
        if (!passThrough) return;
      }
    }
    original(data, addr);
  };
}
