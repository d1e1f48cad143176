// The caps in force, resolved once at start from the configuration and the descriptor limit.
// Sessions are admitted against a descriptor budget: a WebRTC session holds one UDP socket per
// host address it offers (loopback, each interface), a plain-RTP session an RTP and an RTCP
// socket per m-line (audio and video: 4). Connections have their own share of the limit.
import { networkInterfaces } from 'node:os';
import type { Config } from './config.js';
import type { DescriptorLimit } from './util/descriptors.js';

/**
 * Descriptors kept back for listening sockets, log output, recordings, ffmpeg pipes, SIP: 256,
 * or an eighth of a small limit.
 */
export function reservedDescriptors(limit: number): number { return Math.min(256, Math.floor(limit / 8)); }
/** A plain-RTP session: RTP + RTCP sockets for audio and for video. */
export const RTP_SESSION_DESCRIPTORS = 4;

export interface ResolvedLimits {
  descriptors: DescriptorLimit;
  maxConnections: number;
  /** Count cap on sessions (Infinity: only the descriptor budget limits them). */
  maxSessions: number;
  /** Descriptors sessions may hold in all. */
  sessionDescriptors: number;
  /** Descriptors (= UDP ports) one session of each kind holds. */
  weights: { webrtc: number; rtp: number };
  /** Size of the configured port ranges, when there are ranges: one user may hold half of one. */
  portRanges: { webrtc?: number; rtp?: number };
}

/** How many host addresses a WebRTC endpoint gathers on (one UDP socket each). */
export function hostAddressCount(ice: Config['ice']): number {
  let n = ice.include_loopback ? 1 : 0;
  if (ice.use_interfaces) {
    for (const list of Object.values(networkInterfaces())) {
      for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) n++;
    }
  }
  return Math.max(1, n);
}

export function resolveLimits(config: Config, descriptors: DescriptorLimit, webrtcWeight = hostAddressCount(config.ice)): ResolvedLimits {
  const l = config.limits;
  const fds = descriptors.soft;
  const maxConnections = l.max_connections === 'auto' ? Math.max(16, Math.min(10000, Math.floor(fds / 4))) : l.max_connections;
  const sessionDescriptors = Math.max(RTP_SESSION_DESCRIPTORS, fds - reservedDescriptors(fds) - maxConnections);
  const { ice, rtp } = config;
  const iceRange = ice.port_min !== undefined && ice.port_max !== undefined ? ice.port_max - ice.port_min + 1 : undefined;
  const rtpRange = rtp.port_min !== undefined && rtp.port_max !== undefined ? rtp.port_max - rtp.port_min + 1 : iceRange;
  return {
    descriptors,
    maxConnections,
    maxSessions: l.max_sessions === 'auto' ? Infinity : l.max_sessions,
    sessionDescriptors,
    weights: { webrtc: webrtcWeight, rtp: RTP_SESSION_DESCRIPTORS },
    portRanges: { webrtc: iceRange, rtp: rtpRange },
  };
}
