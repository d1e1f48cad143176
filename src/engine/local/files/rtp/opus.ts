// Opus over RTP (RFC 7587): one Opus packet per RTP packet, the payload is the packet itself.
import type { PayloadFormat } from './depacketizer.js';

export const opusFormat: PayloadFormat = {
  singlePacket: true,
  isFrameStart: () => true,
  assemble: (payloads) => (payloads.length === 1 && payloads[0]!.length > 0 ? { data: payloads[0]!, keyframe: true } : null),
};

/** Opus packets pass unchanged; the packetizer exists for symmetry with the video codecs. */
export function packetizeOpus(packet: Buffer): Buffer[] { return [packet]; }

/** Samples at 48 kHz per frame size of each TOC configuration (RFC 6716 §3.1). */
const FRAME_SAMPLES = [
  480, 960, 1920, 2880, 480, 960, 1920, 2880, 480, 960, 1920, 2880, // SILK NB/MB/WB
  480, 960, 480, 960, // Hybrid SWB/FB
  120, 240, 480, 960, 120, 240, 480, 960, 120, 240, 480, 960, 120, 240, 480, 960, // CELT
];

/** An Opus packet's duration in 48 kHz samples, from its TOC byte (RFC 6716 §3.1); 0 if invalid. */
export function opusPacketSamples(packet: Buffer): number {
  if (packet.length < 1) return 0;
  const toc = packet[0]!;
  const per = FRAME_SAMPLES[toc >> 3]!;
  switch (toc & 0x03) {
    case 0: return per;
    case 1: case 2: return per * 2;
    default: return packet.length < 2 ? 0 : per * (packet[1]! & 0x3f);
  }
}
