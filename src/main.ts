// Composition: the local engine plus the API server, from one configuration.
import type { Logger } from 'pino';
import { kurentoFileDirs, parseConfig, type Config, type ConfigInput } from './config.js';
import { isIP } from 'node:net';
import { availableParallelism, networkInterfaces } from 'node:os';
import { LocalEngine } from './engine/local/engine.js';
import type { MediaEngine } from './engine/types.js';
import { MediaNodes } from './engine/pool/nodes.js';
import { startApiServer, type RunningServer } from './api/server.js';
import { KurentoService } from './kurento/service.js';
import { MediaCore } from './core/core.js';
import { createLogger } from './log.js';
import { SipGateway } from './sip-gateway/gateway.js';
import { raiseDescriptorLimit } from './util/descriptors.js';
import { resolveLimits, type ResolvedLimits } from './limits.js';

export interface Server extends RunningServer {
  config: Config;
  /** The engine the core drives: in this process, or a pool over worker processes and remote nodes. */
  engine: MediaEngine;
  /** The media nodes, when media runs elsewhere (media.workers, media.nodes). */
  nodes?: MediaNodes;
  /** The domain: bus, sessions, rooms, calls (shared by the API, SIP and the Kurento door's quota). */
  core: MediaCore;
  /** The SIP gateway, when SIP is configured (config.sip udp_port/tcp_port). */
  sip?: SipGateway;
  /** The caps in force (derived from the configuration and the descriptor limit). */
  limits: ResolvedLimits;
}

export function engineFor(config: Config): LocalEngine {
  const { ice, rtp } = config;
  return new LocalEngine({
    portRange: ice.port_min !== undefined && ice.port_max !== undefined ? [ice.port_min, ice.port_max] : undefined,
    includeLoopback: ice.include_loopback,
    useInterfaces: ice.use_interfaces,
    announcedAddresses: ice.announced_addresses,
    stunServers: ice.stun_servers,
    turnServers: ice.turn_servers,
    gatherTimeoutMs: ice.gather_timeout_ms,
    rtp: {
      bindAddress: rtp.bind_address ?? (ice.use_interfaces ? '0.0.0.0' : '127.0.0.1'),
      announceAddress: rtp.announce_address ?? ice.announced_addresses.find((a) => isIP(a) === 4) ?? (ice.use_interfaces ? firstIpv4() : undefined) ?? '127.0.0.1',
      portRange: rtp.port_min !== undefined && rtp.port_max !== undefined ? [rtp.port_min, rtp.port_max]
        : ice.port_min !== undefined && ice.port_max !== undefined ? [ice.port_min, ice.port_max] : undefined,
      audioCodecs: rtp.audio_codecs,
      videoCodecs: rtp.video_codecs,
      latching: rtp.latching,
    },
    play: {
      httpAllow: config.play_allow_http ? config.play_http_allow : false,
      // The API confines each user to the media folders and their own recordings; the engine
      // re-checks the real path against these right before opening.
      localRoots: [...new Set([...config.play_dirs, config.recordings_dir, ...kurentoFileDirs(config)])],
    },
  });
}

/** The machine's first non-loopback IPv4 address. */
function firstIpv4(): string | undefined {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return undefined;
}

export interface StartOptions {
  /**
   * `full`: the NkMEDIA API, demo pages, SIP and the Kurento door on one port. `media-server`:
   * only the engine behind the Kurento door (`nkmedia media-server`), as a KMS would run.
   */
  mode?: 'full' | 'media-server';
}

/** Starts a server from a (partial) configuration; used by the CLI and by the tests. */
export async function startServer(input: ConfigInput | Config, log?: Logger, opts: StartOptions = {}): Promise<Server> {
  const mediaServer = opts.mode === 'media-server';
  const config = parseConfig(input);
  const logger = log ?? createLogger(config.log_level);
  // Every port, connection and pipe is a descriptor: take all the process may have, then size
  // the caps so that the limit is met by refused requests rather than by failing system calls.
  const descriptors = raiseDescriptorLimit();
  const limits = resolveLimits(config, descriptors);
  if (descriptors.note) logger.warn({ descriptors: descriptors.soft, note: descriptors.note }, 'descriptor limit');
  logger.info({
    descriptors: descriptors.soft, raised_from: descriptors.raisedFrom, max_connections: limits.maxConnections,
    session_descriptors: limits.sessionDescriptors, max_sessions: Number.isFinite(limits.maxSessions) ? limits.maxSessions : 'by descriptors',
    descriptors_per_session: limits.weights,
  }, 'limits');
  const workers = workerCount(config.media.workers);
  // A media server is a node itself: its engine is always in-process.
  const nodes = !mediaServer && (workers > 0 || config.media.nodes.length > 0)
    ? await MediaNodes.start(config, workers, logger)
    : undefined;
  const engine: MediaEngine = nodes ? nodes.engine : engineFor(config);
  const core = new MediaCore({
    engine,
    log: logger,
    paths: { recordingsDir: config.recordings_dir, playDirs: config.play_dirs, allowHttp: config.play_allow_http },
    limits: {
      maxSessions: limits.maxSessions,
      sessionDescriptors: limits.sessionDescriptors,
      maxSessionsPerConnection: config.limits.max_sessions_per_connection,
      maxSessionsPerUser: config.limits.max_sessions_per_user,
      weights: limits.weights,
      portRanges: limits.portRanges,
      portSharePerUser: config.limits.port_share_per_user,
    },
  });
  try {
    const api = await startApiServer(config, core, logger, limits, {
      nkmedia: !mediaServer,
      ...(nodes ? { nodes } : {}),
      doors: [(services) => new KurentoService(config, engine, core.quota, services.auth, logger)],
    }).catch((err: unknown) => { core.close(); throw err; });
    let sip: SipGateway | undefined;
    try {
      if (!mediaServer) sip = await SipGateway.start(config.sip, core.sessions, core.calls, logger);
    } catch (err) {
      await api.close();
      core.close();
      throw err;
    }
    return {
      ...api,
      config,
      engine,
      ...(nodes ? { nodes } : {}),
      core,
      sip,
      limits,
      async close() {
        api.drain();
        // SIP first: its dialogs get their BYEs while the sessions still exist.
        await sip?.close();
        // Everything stops while the clients are still connected: each creator hears its
        // sessions' `destroyed` (api_stop) and each party its calls' `hangup` before the close.
        await core.stopAll('api_stop');
        await api.close();
        core.close();
        await engine.close();
        await nodes?.close();
      },
    };
  } catch (err) {
    await engine.close();
    await nodes?.close();
    throw err;
  }
}

/**
 * How many media workers a setting means. `auto` is one per core; on a single core a worker would
 * only add a process hop (~1.5 ms per set-up, ~100 MiB) to the media the server could move itself.
 */
export function workerCount(setting: number | 'auto', cores = availableParallelism()): number {
  if (setting !== 'auto') return setting;
  return cores >= 2 ? cores : 0;
}
