// The media nodes of a server that does not move media itself: N worker processes on this machine
// (`media.workers`) and media servers elsewhere (`media.nodes`), with the pool engine over them.
import type { Logger } from 'pino';
import type { Config } from '../../config.js';
import { MediaNode, type NodeKind, type NodeRunState } from './node.js';
import { PoolEngine } from './pool-engine.js';
import { WorkerLauncher } from './worker-process.js';

/** A node as `media/node get_list` and the console show it. */
export interface NodeInfo {
  node_id: string;
  kind: NodeKind;
  /** Where it listens (a worker: its loopback URL). */
  address?: string;
  state: NodeRunState;
  /** A worker's process id, while it runs. */
  pid?: number;
  /** Endpoints (sessions' and pipes' ends are counted apart) and elements the pool placed there. */
  sessions: number;
  elements: number;
  /** CPU in use, in percent of all the node's cores, as the node last said. */
  cpu_percent?: number;
  /** Why it is down, when it is. */
  error?: string;
  up_since?: number;
}

export class MediaNodes {
  private constructor(readonly nodes: MediaNode[], readonly engine: PoolEngine) {}

  /**
   * Starts the nodes and waits for their first attempt: every worker must come up (it is this
   * machine's own); remote nodes that are down are retried in the background with backoff and get
   * nothing until they are up.
   */
  static async start(config: Config, workers: number, log: Logger): Promise<MediaNodes> {
    const timing = { requestTimeoutMs: config.media.node_request_timeout_ms };
    const nodes: MediaNode[] = [];
    for (let i = 0; i < workers; i++) {
      nodes.push(new MediaNode(`worker-${i + 1}`, 'worker', new WorkerLauncher(config, i, workers, log), log, timing));
    }
    for (const n of config.media.nodes) {
      nodes.push(new MediaNode(n.id, 'remote', { launch: async () => ({ url: n.url, ...(n.token !== undefined ? { token: n.token } : {}) }) }, log, timing));
    }
    const engine = new PoolEngine(nodes, { maxListenersPerNode: config.rooms.max_listeners_per_node });
    const set = new MediaNodes(nodes, engine);
    const ups = await Promise.all(nodes.map((n) => n.start()));
    const failedWorkers = nodes.filter((n, i) => n.kind === 'worker' && !ups[i]);
    if (failedWorkers.length > 0 || !ups.some(Boolean)) {
      await set.close();
      const why = (failedWorkers[0] ?? nodes[0])?.lastError ?? 'no media node';
      throw new Error(`media nodes did not start: ${failedWorkers.length > 0 ? `${failedWorkers.map((n) => n.id).join(', ')} failed` : 'none is up'} (${why})`);
    }
    for (const [i, n] of nodes.entries()) if (!ups[i]) log.warn({ node: n.id, reason: n.lastError }, 'media node not up yet; retrying');
    return set;
  }

  list(): NodeInfo[] {
    return this.nodes.map((n) => {
      const counts = this.engine.countOn(n);
      return {
        node_id: n.id,
        kind: n.kind,
        ...(n.url !== undefined ? { address: n.url } : {}),
        state: n.state,
        ...(n.pid !== undefined ? { pid: n.pid } : {}),
        sessions: counts.endpoints,
        elements: counts.elements,
        ...(n.cpu !== undefined && n.state === 'up' ? { cpu_percent: Math.round(n.cpu * 10) / 10 } : {}),
        ...(n.state !== 'up' && n.lastError ? { error: n.lastError } : {}),
        ...(n.upSince !== undefined && n.state === 'up' ? { up_since: Math.floor(n.upSince / 1000) } : {}),
      };
    });
  }

  async close(): Promise<void> {
    await this.engine.close();
    await Promise.all(this.nodes.map((n) => n.close()));
  }
}
