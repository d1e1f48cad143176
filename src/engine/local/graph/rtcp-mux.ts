// RTP and RTCP on one port (RFC 5761 section 4): the second byte of an RTCP packet is its packet
// type, and RFC 5761 reserves 192-223 for RTCP there (RTP on such a port must not use payload
// types 64-95, which with the marker bit set would read as 192-223). The native forwarding plane
// demultiplexes with the same range (native/rtp.h); test/forwarding-plane-handles.test.ts keeps
// the two equal.

export const RTCP_MUX_FIRST = 192;
export const RTCP_MUX_LAST = 223;

/** Whether a packet received on a muxed RTP port is RTCP (by its second byte). */
export function isMuxedRtcp(packet: Uint8Array): boolean {
  const b = packet[1];
  return b !== undefined && b >= RTCP_MUX_FIRST && b <= RTCP_MUX_LAST;
}
