/* RTP/RTCP demultiplexing on one port (RFC 5761 section 4): the second byte of an RTCP packet is
 * its packet type; RFC 5761 reserves 192-223 for RTCP there (RTP must then not use payload types
 * 64-95, which with the marker bit set would read as 192-223). The same range is in
 * src/engine/local/graph/rtcp-mux.ts; the addon exports it as `rtcpMuxRange` so a test keeps them
 * equal. */
#ifndef NKMEDIA_RTP_H
#define NKMEDIA_RTP_H

#define RTCP_MUX_FIRST 192
#define RTCP_MUX_LAST 223
#define RTCP_MUX_IS_RTCP(second_byte) ((second_byte) >= RTCP_MUX_FIRST && (second_byte) <= RTCP_MUX_LAST)
#endif
