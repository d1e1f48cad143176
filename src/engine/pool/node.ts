// One media node as the pool sees it: a worker process this server starts, or a media server
// elsewhere (ours or a Kurento Media Server). The node keeps itself up: it (re)starts its worker,
// connects a RemoteEngine, and when the engine is lost it says so (onDown), then tries again with
// backoff. Each time it comes up it is a new generation with a new engine: what lived on the
// previous one is gone (the node drops a lost client's objects after its grace time).
import type { Logger } from 'pino';
import { RemoteEngine } from '../remote/engine.js';

export type NodeKind = 'worker' | 'remote';
export type NodeRunState = 'starting' | 'up' | 'down' | 'stopped';

/** How to reach the node: where it listens, and for a worker its process. */
export interface NodeTarget {
  url: string;
  token?: string;
  pid?: number;
  /** Resolves when the worker process has exited (with why). */
  exited?: Promise<string>;
  /** Ends the worker process (no-op for a remote node). */
  stop?(): Promise<void>;
}

export interface NodeLauncher {
  /** Starts (or finds) the node; rejects when it cannot. */
  launch(): Promise<NodeTarget>;
}

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 30_000;
/** How often the node's CPU use is read, and over how long. */
const CPU_EVERY_MS = 2000;

export class MediaNode {
  private st: NodeRunState = 'down';
  private current?: RemoteEngine;
  private target?: NodeTarget;
  private gen = 0;
  private closed = false;
  private loop?: Promise<void>;
  private wake?: () => void;
  private cpuTimer?: NodeJS.Timeout;
  private readonly engineListeners = new Set<(engine: RemoteEngine) => () => void>();
  private readonly engineDetach: (() => void)[] = [];
  private readonly downListeners = new Set<(reason: string) => void>();
  /** Waiting for the outcome of the next attempt (up or not). */
  private readonly upWaiters: ((up: boolean) => void)[] = [];
  /** CPU the node used over the last reading, in percent of all its cores (Kurento's getUsedCpu). */
  cpu?: number;
  /** Why it is down (last failure). */
  lastError?: string;
  /** When the node last came up (ms since epoch). */
  upSince?: number;
  /** How many times it came up (1 after the first start). */
  get generation(): number { return this.gen; }

  constructor(
    readonly id: string,
    readonly kind: NodeKind,
    private readonly launcher: NodeLauncher,
    private readonly log: Logger,
    private readonly engineOptions: { requestTimeoutMs?: number; keepAliveMs?: number } = {},
  ) {}

  get state(): NodeRunState { return this.st; }
  get url(): string | undefined { return this.target?.url; }
  get pid(): number | undefined { return this.st === 'up' ? this.target?.pid : undefined; }

  /** The engine of the current generation (only while up). */
  get engine(): RemoteEngine {
    if (!this.current || this.st !== 'up') throw new Error(`media node ${this.id} is not up`);
    return this.current;
  }

  /** `attach` is called with each new engine (and the current one); what it returns detaches it. */
  onEngine(attach: (engine: RemoteEngine) => () => void): () => void {
    this.engineListeners.add(attach);
    if (this.current && this.st === 'up') this.engineDetach.push(attach(this.current));
    return () => { this.engineListeners.delete(attach); };
  }

  onDown(listener: (reason: string) => void): () => void {
    this.downListeners.add(listener);
    return () => { this.downListeners.delete(listener); };
  }

  /**
   * Starts keeping the node up; resolves with whether the first attempt brought it up (after a
   * failed one it keeps trying in the background, with backoff).
   */
  start(): Promise<boolean> {
    if (this.st === 'up') return Promise.resolve(true);
    const first = new Promise<boolean>((resolve) => this.upWaiters.push(resolve));
    this.loop ??= this.run();
    return first;
  }

  private async run(): Promise<void> {
    let backoff = BACKOFF_MIN_MS;
    while (!this.closed) {
      this.st = 'starting';
      let reason: string;
      try {
        const target = await this.launcher.launch();
        this.target = target;
        if (this.closed) { await target.stop?.(); break; }
        const engine = new RemoteEngine({ url: target.url, token: target.token, nodeId: this.id, log: this.log, ...this.engineOptions });
        const lost = new Promise<string>((resolve) => {
          engine.on('stateChange', (state, why) => { if (state === 'down') resolve(why ?? 'connection lost'); });
          void target.exited?.then((why) => resolve(`worker exited (${why})`));
        });
        await engine.open();
        this.gen++;
        this.current = engine;
        this.st = 'up';
        this.upSince = Date.now();
        this.lastError = undefined;
        backoff = BACKOFF_MIN_MS;
        this.log.info({ node: this.id, kind: this.kind, url: target.url, pid: target.pid, generation: this.gen }, 'media node up');
        for (const attach of this.engineListeners) this.engineDetach.push(attach(engine));
        for (const w of this.upWaiters.splice(0)) w(true);
        this.readCpuSoon(engine);
        // close() while the engine was opening found no wake-up to call: it is seen here.
        reason = this.closed ? 'closed' : await Promise.race([lost, new Promise<string>((resolve) => { this.wake = () => resolve('closed'); })]);
      } catch (err) {
        reason = err instanceof Error ? err.message : String(err);
      }
      clearTimeout(this.cpuTimer);
      const wasUp = this.st === 'up';
      this.st = this.closed ? 'stopped' : 'down';
      this.lastError = reason;
      for (const d of this.engineDetach.splice(0)) d();
      const engine = this.current;
      this.current = undefined;
      if (this.closed) {
        this.log.info({ node: this.id }, 'media node stopped');
      } else if (wasUp) {
        this.log.warn({ node: this.id, reason }, 'media node down');
        for (const l of [...this.downListeners]) l(reason);
      } else {
        this.log.warn({ node: this.id, reason, retry_ms: backoff }, 'media node unavailable');
      }
      await engine?.close().catch(() => undefined);
      if (this.target?.stop) await this.target.stop().catch(() => undefined);
      for (const w of this.upWaiters.splice(0)) w(false);
      if (this.closed) break;
      await new Promise<void>((resolve) => { const t = setTimeout(resolve, backoff); this.wake = () => { clearTimeout(t); resolve(); }; });
      backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
    }
    this.st = 'stopped';
  }

  private readCpuSoon(engine: RemoteEngine): void {
    this.cpuTimer = setTimeout(() => {
      void engine.usedCpu(CPU_EVERY_MS / 2).then((cpu) => { this.cpu = cpu; }, () => undefined).finally(() => {
        if (this.current === engine && this.st === 'up') this.readCpuSoon(engine);
      });
    }, CPU_EVERY_MS);
    this.cpuTimer.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.wake?.();
    await this.loop;
    this.st = 'stopped';
  }
}
