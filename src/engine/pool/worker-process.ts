// Worker processes: `nkmedia media-server` children on loopback, one per node, each with a secret
// of its own (a JWT only this process can sign), so nothing else on the machine can drive them.
// A worker tells its parent where it listens over the IPC channel and exits when the channel
// closes: a parent that dies takes its workers with it.
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { SignJWT } from 'jose';
import type { Logger } from 'pino';
import type { Config, ConfigInput } from '../../config.js';
import type { NodeLauncher, NodeTarget } from './node.js';

/** What a worker sends its parent once it listens. */
export interface WorkerReady { type: 'ready'; url: string }

const READY_TIMEOUT_MS = 20_000;
const STOP_GRACE_MS = 5000;
/** The user the main process is on its workers. */
export const WORKER_CLIENT = 'nkmedia-main';

/** The worker's entry (src/worker.ts): compiled beside this build, or the TypeScript source under tsx. */
function workerEntry(): { file: string; execArgv: string[] } {
  const source = fileURLToPath(import.meta.url).endsWith('.ts');
  const file = fileURLToPath(new URL(source ? '../../worker.ts' : '../../worker.js', import.meta.url));
  return { file, execArgv: source ? ['--import', 'tsx'] : [] };
}

/**
 * A worker's configuration: the media settings of the main process (ICE, RTP, files), its own
 * share of a configured port range, loopback only, JWT auth with a fresh secret, and no caps of
 * its own beyond the main process's (which admits sessions).
 */
export function workerConfig(main: Config, index: number, count: number, secret: string): ConfigInput {
  const share = (min?: number, max?: number): { port_min?: number; port_max?: number } => {
    if (min === undefined || max === undefined) return {};
    const size = Math.floor((max - min + 1) / count);
    return { port_min: min + index * size, port_max: min + (index + 1) * size - 1 };
  };
  return {
    host: '127.0.0.1',
    port: 0,
    log_level: main.log_level,
    auth: { mode: 'jwt', jwt_secret: secret },
    ice: { ...main.ice, ...share(main.ice.port_min, main.ice.port_max) },
    rtp: { ...main.rtp, ...share(main.rtp.port_min, main.rtp.port_max) },
    recordings_dir: main.recordings_dir,
    play_dirs: main.play_dirs,
    play_allow_http: main.play_allow_http,
    play_http_allow: main.play_http_allow,
    kurento: { ...main.kurento, max_objects_per_user: 1_000_000 },
    limits: { ...main.limits, max_sessions_per_user: 1_000_000, max_sessions_per_connection: 100_000, max_in_flight: 100_000, port_share_per_user: 1 },
    media: { workers: 0, nodes: [] },
  };
}

export class WorkerLauncher implements NodeLauncher {
  constructor(private readonly main: Config, private readonly index: number, private readonly count: number, private readonly log: Logger) {}

  async launch(): Promise<NodeTarget> {
    const secret = randomBytes(32).toString('base64url');
    const config = workerConfig(this.main, this.index, this.count, secret);
    const { file, execArgv } = workerEntry();
    const child = fork(file, [], {
      execArgv,
      env: { ...process.env, NKMEDIA_WORKER_CONFIG: JSON.stringify(config), NKMEDIA_CONFIG: '' },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'json',
    });
    const exited = new Promise<string>((resolve) => {
      child.once('exit', (code, signal) => resolve(signal ? `signal ${signal}` : `code ${code}`));
      child.once('error', (err) => resolve(err.message));
    });
    let url: string;
    try {
      url = await ready(child, exited);
    } catch (err) {
      child.kill('SIGKILL');
      throw err;
    }
    const token = await new SignJWT({ admin: true })
      .setProtectedHeader({ alg: 'HS256' }).setSubject(WORKER_CLIENT).setIssuedAt()
      .sign(new TextEncoder().encode(secret));
    this.log.info({ worker: this.index, pid: child.pid, url }, 'media worker started');
    return { url, token, pid: child.pid, exited, stop: () => stop(child, exited) };
  }
}

function ready(child: ChildProcess, exited: Promise<string>): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`media worker did not start within ${READY_TIMEOUT_MS} ms`)), READY_TIMEOUT_MS);
    child.on('message', (m: unknown) => {
      const msg = m as Partial<WorkerReady>;
      if (msg?.type === 'ready' && typeof msg.url === 'string') { clearTimeout(timer); resolve(msg.url); }
    });
    void exited.then((why) => { clearTimeout(timer); reject(new Error(`media worker exited before it was ready (${why})`)); });
  });
}

async function stop(child: ChildProcess, exited: Promise<string>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  // Closing the channel asks it to finish (its recordings are finalised); SIGKILL if it does not.
  if (child.connected) child.disconnect();
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
  await exited;
  clearTimeout(timer);
}
