// Composition: the local engine plus the API server, from one configuration.
import type { Logger } from 'pino';
import { parseConfig, type Config, type ConfigInput } from './config.js';
import { LocalEngine } from './engine/local/engine.js';
import { startApiServer, type RunningServer } from './api/server.js';
import { createLogger } from './log.js';

export interface Server extends RunningServer {
  config: Config;
  engine: LocalEngine;
}

export function engineFor(config: Config): LocalEngine {
  const ice = config.ice;
  return new LocalEngine({
    portRange: ice.port_min !== undefined && ice.port_max !== undefined ? [ice.port_min, ice.port_max] : undefined,
    includeLoopback: ice.include_loopback,
    useInterfaces: ice.use_interfaces,
    announcedAddresses: ice.announced_addresses,
    stunServers: ice.stun_servers,
    turnServers: ice.turn_servers,
    gatherTimeoutMs: ice.gather_timeout_ms,
  });
}

/** Starts a server from a (partial) configuration; used by the CLI and by the tests. */
export async function startServer(input: ConfigInput | Config, log?: Logger): Promise<Server> {
  const config = parseConfig(input);
  const logger = log ?? createLogger(config.log_level);
  const engine = engineFor(config);
  try {
    const api = await startApiServer(config, engine, logger);
    return {
      ...api,
      config,
      engine,
      async close() {
        await api.close();
        await engine.close();
      },
    };
  } catch (err) {
    await engine.close();
    throw err;
  }
}
