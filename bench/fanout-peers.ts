// Helpers for the fan-out benchmark (bench/fanout.ts): a synthetic publisher whose packet sizes
// are configurable and which counts what it sends, and a cheap packet counter for listener peers.
import type { SendOptions, Sending, TestPeer } from '../test/helpers/peer.js';

export type { SendOptions, Sending };

/** The fan-out publisher: TestPeer's synthetic sender at 1 Mbit/s-like sizes by default. */
export function startSynthetic(peer: TestPeer, opts: SendOptions = {}): Sending {
  return peer.startSending({ videoPps: 110, videoBytes: 1100, ...opts });
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
