// SDP for plain RTP endpoints (SIP phones, gateways, ffmpeg): RTP/AVP, no ICE or DTLS. Parses a
// remote description into what the endpoint needs (address, ports, direction, payload types),
// negotiates against our codec list, and writes our offers and answers.
import sdpTransform from 'sdp-transform';
import type { MediaDescription, SessionDescription } from 'sdp-transform';
import { isIP } from 'node:net';
import { EngineError } from '../../types.js';

export type RtpCodecName = 'opus' | 'G722' | 'PCMU' | 'PCMA' | 'telephone-event' | 'VP8' | 'H264';
export type Direction = 'sendrecv' | 'sendonly' | 'recvonly' | 'inactive';

export interface RtpCodec {
  name: RtpCodecName;
  kind: 'audio' | 'video';
  /** Lower-case MIME type as elements use it ('audio/pcmu'). */
  mime: string;
  clockRate: number;
  channels?: number;
  payloadType: number;
  fmtp?: string;
}

/** What we support, with the payload types we use in our own offers. */
export const RTP_CODECS: Record<RtpCodecName, RtpCodec> = {
  opus: { name: 'opus', kind: 'audio', mime: 'audio/opus', clockRate: 48000, channels: 2, payloadType: 111, fmtp: 'minptime=10;useinbandfec=1' },
  G722: { name: 'G722', kind: 'audio', mime: 'audio/g722', clockRate: 8000, payloadType: 9 },
  PCMU: { name: 'PCMU', kind: 'audio', mime: 'audio/pcmu', clockRate: 8000, payloadType: 0 },
  PCMA: { name: 'PCMA', kind: 'audio', mime: 'audio/pcma', clockRate: 8000, payloadType: 8 },
  'telephone-event': { name: 'telephone-event', kind: 'audio', mime: 'audio/telephone-event', clockRate: 8000, payloadType: 101, fmtp: '0-16' },
  VP8: { name: 'VP8', kind: 'video', mime: 'video/vp8', clockRate: 90000, payloadType: 96 },
  H264: { name: 'H264', kind: 'video', mime: 'video/h264', clockRate: 90000, payloadType: 97, fmtp: 'packetization-mode=1;profile-level-id=42e01f;level-asymmetry-allowed=1' },
};

/** Default preference: Opus first (no transcoding toward browsers), then wideband, then G.711. */
export const DEFAULT_AUDIO_CODECS: RtpCodecName[] = ['opus', 'G722', 'PCMU', 'PCMA'];
export const DEFAULT_VIDEO_CODECS: RtpCodecName[] = ['VP8', 'H264'];

/** RFC 3551's static payload types we support (they may come without an rtpmap line). */
const STATIC_PTS: Record<number, RtpCodecName> = { 0: 'PCMU', 8: 'PCMA', 9: 'G722' };

export interface RemoteMedia {
  kind: 'audio' | 'video';
  /** 0 = the m-line is rejected or disabled. */
  port: number;
  rtcpPort: number;
  address: string;
  direction: Direction;
  /** Offered/answered codecs we support, in the remote's order, with the remote's payload types. */
  codecs: RtpCodec[];
  rtcpMux: boolean;
  ptime?: number;
}

export interface RemoteDescription { media: (RemoteMedia | { kind: string; port: 0; unsupported: string })[] }

const MAX_SDP_BYTES = 64 * 1024;

/** Parses a plain-RTP SDP; every problem is an `invalid_sdp` naming it. */
export function parseRtpSdp(sdp: string): RemoteDescription {
  if (typeof sdp !== 'string' || sdp.length === 0) throw new EngineError('invalid_sdp', 'empty SDP');
  if (sdp.length > MAX_SDP_BYTES) throw new EngineError('invalid_sdp', `SDP larger than ${MAX_SDP_BYTES} bytes`);
  if (!/^v=0\r?\n/.test(sdp)) throw new EngineError('invalid_sdp', 'SDP must start with v=0');
  let parsed: SessionDescription;
  try {
    parsed = sdpTransform.parse(sdp);
  } catch (err) {
    throw new EngineError('invalid_sdp', `unparsable SDP: ${(err as Error).message}`);
  }
  const media = parsed.media ?? [];
  if (media.length === 0) throw new EngineError('invalid_sdp', 'SDP has no m= line');
  if (media.length > 8) throw new EngineError('invalid_sdp', 'SDP has more than 8 m= lines');
  const sessionAddress = parsed.connection?.ip;
  const sessionDirection = (parsed as { direction?: Direction }).direction;
  return { media: media.map((m, i) => parseMedia(m, i, sessionAddress, sessionDirection)) };
}

function parseMedia(m: MediaDescription, index: number, sessionAddress: string | undefined, sessionDirection: Direction | undefined): RemoteDescription['media'][number] {
  const kind = m.type;
  if (kind !== 'audio' && kind !== 'video') return { kind: String(kind), port: 0, unsupported: `media "${kind}"` };
  if (!/^RTP\/S?AVPF?$/.test(m.protocol ?? '')) {
    // SRTP (SAVP) and WebRTC profiles need keys or DTLS we do not do on plain RTP endpoints.
    return { kind, port: 0, unsupported: `transport "${m.protocol}"` };
  }
  if (/SAVP/.test(m.protocol)) return { kind, port: 0, unsupported: `transport "${m.protocol}" (SRTP)` };
  const port = Number(m.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new EngineError('invalid_sdp', `m-line ${index}: bad port ${m.port}`);
  const address = m.connection?.ip ?? sessionAddress;
  if (port !== 0) {
    if (!address) throw new EngineError('invalid_sdp', `m-line ${index}: no connection address (c=)`);
    if (isIP(address) !== 4) throw new EngineError('invalid_sdp', `m-line ${index}: connection address "${address}" is not an IPv4 address`);
  }
  const rtcpMux = m.rtcpMux === 'rtcp-mux';
  const rtcpPort = m.rtcp?.port !== undefined ? Number(m.rtcp.port) : rtcpMux ? port : port + 1;
  if (!Number.isInteger(rtcpPort) || rtcpPort < 0 || rtcpPort > 65535) throw new EngineError('invalid_sdp', `m-line ${index}: bad RTCP port`);
  const pts = String(m.payloads ?? '').trim().split(/\s+/).filter(Boolean).map(Number);
  if (pts.length === 0 || pts.some((p) => !Number.isInteger(p) || p < 0 || p > 127)) throw new EngineError('invalid_sdp', `m-line ${index}: bad payload type list "${m.payloads}"`);
  const codecs: RtpCodec[] = [];
  for (const pt of pts) {
    const map = m.rtp.find((r) => r.payload === pt);
    const fmtp = m.fmtp.find((f) => f.payload === pt)?.config;
    const name = map ? canonicalName(map.codec) : STATIC_PTS[pt];
    if (!name) continue;
    const known = RTP_CODECS[name];
    if (known.kind !== kind) continue;
    if (map && map.rate !== undefined && map.rate !== known.clockRate) continue;
    if (name === 'H264' && !/packetization-mode=1/.test(fmtp ?? '')) continue; // we packetise mode 1 (FU-A) only
    codecs.push({ ...known, payloadType: pt, fmtp: fmtp ?? known.fmtp, channels: map?.encoding ? Number(map.encoding) : known.channels });
  }
  let direction: Direction = (m.direction as Direction | undefined) ?? sessionDirection ?? 'sendrecv';
  // RFC 2543-style hold: a zero address means "do not send to me".
  if (address === '0.0.0.0') direction = direction === 'sendrecv' || direction === 'sendonly' ? 'sendonly' : 'inactive';
  return { kind, port, rtcpPort, address: address ?? '0.0.0.0', direction, codecs, rtcpMux, ptime: m.ptime };
}

function canonicalName(codec: string): RtpCodecName | undefined {
  const c = codec.toLowerCase();
  return (Object.keys(RTP_CODECS) as RtpCodecName[]).find((n) => n.toLowerCase() === c);
}

/** The direction we answer with: the mirror of the offer's. */
export function answerDirection(offered: Direction): Direction {
  return offered === 'sendonly' ? 'recvonly' : offered === 'recvonly' ? 'sendonly' : offered;
}

export interface LocalMedia {
  kind: 'audio' | 'video';
  port: number;
  direction: Direction;
  codecs: RtpCodec[];
}

/** Writes our SDP (offer or answer): one c= line, RTCP on port+1 as RFC 3550 says. */
export function writeRtpSdp(address: string, sessionId: number, version: number, media: LocalMedia[]): string {
  const lines = [
    'v=0',
    `o=nkmedia ${sessionId} ${version} IN IP4 ${address}`,
    's=nkmedia',
    `c=IN IP4 ${address}`,
    't=0 0',
  ];
  for (const m of media) {
    if (m.port === 0 || m.codecs.length === 0) {
      // A rejected m-line keeps a format (RFC 3264 §6) and says nothing else.
      lines.push(`m=${m.kind} 0 RTP/AVP ${m.codecs[0]?.payloadType ?? (m.kind === 'audio' ? 0 : 96)}`);
      continue;
    }
    lines.push(`m=${m.kind} ${m.port} RTP/AVP ${m.codecs.map((c) => c.payloadType).join(' ')}`);
    for (const c of m.codecs) {
      lines.push(`a=rtpmap:${c.payloadType} ${c.name}/${c.clockRate}${c.channels && c.channels > 1 ? `/${c.channels}` : ''}`);
      if (c.fmtp) lines.push(`a=fmtp:${c.payloadType} ${c.fmtp}`);
      if (c.kind === 'video') lines.push(`a=rtcp-fb:${c.payloadType} nack pli`, `a=rtcp-fb:${c.payloadType} ccm fir`);
    }
    if (m.kind === 'audio') lines.push('a=ptime:20');
    lines.push(`a=rtcp:${m.port + 1}`, `a=${m.direction}`);
  }
  return lines.join('\r\n') + '\r\n';
}

/**
 * The codecs we answer for one offered m-line: the first offered codec we support (the
 * offerer's preference, RFC 3264 §6.1), plus telephone-event when offered with audio.
 */
export function chooseCodecs(offered: RtpCodec[], supported: RtpCodecName[]): RtpCodec[] {
  const main = offered.find((c) => c.name !== 'telephone-event' && supported.includes(c.name));
  if (!main) return [];
  const dtmf = main.kind === 'audio' ? offered.find((c) => c.name === 'telephone-event' && c.clockRate === 8000) : undefined;
  return dtmf ? [main, dtmf] : [main];
}
