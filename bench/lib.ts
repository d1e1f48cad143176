// Benchmark helpers: a server in its own process (so its CPU and memory are its own), stats.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NkMediaClient } from '../src/client/index.js';

const root = fileURLToPath(new URL('..', import.meta.url));

/** One process of a server: its main process ('main') or a media worker (its node id, 'worker-1'). */
export interface ServerProc { name: string; pid: number }

export interface ServerProcess {
  url: string; pid: number; child: ChildProcess;
  /** The main process, then its media workers (found with `media/node get_list`). */
  processes: ServerProc[];
  stop(): Promise<void>;
}

/** How to run the server, besides `extraArgs`. */
export interface ServerOptions {
  /** Media worker processes (`--workers N`); 0 or undefined: media in the main process. */
  workers?: number;
  /** `rooms.max_listeners_per_node` (through a config file: it has no flag or variable). */
  roomMaxPerNode?: number;
  /** More environment for the server and so its workers (e.g. probeEnv()). */
  env?: Record<string, string>;
}

/** The server options every benchmark takes from its environment: MEDIA_WORKERS, ROOM_MAX_PER_NODE. */
export function serverOptionsFromEnv(): ServerOptions {
  const num = (v: string | undefined) => (v === undefined || v === '' ? undefined : Number(v));
  return { workers: num(process.env.MEDIA_WORKERS), roomMaxPerNode: num(process.env.ROOM_MAX_PER_NODE) };
}

/** What ServerOptions says, in a few words (for the header of a report). */
export function describeServer(opts: ServerOptions): string {
  const media = opts.workers ? `media in ${opts.workers} worker process(es)` : 'media in the server process';
  return opts.roomMaxPerNode !== undefined ? `${media}, rooms.max_listeners_per_node ${opts.roomMaxPerNode}` : media;
}

/**
 * Environment that loads bench/server-probe.mjs into the server and each of its workers (NODE_OPTIONS
 * reaches the forked workers; BENCH_SERVER_NODE_ARGS reaches the main process only). Every process
 * appends its records, with its pid, to `file`.
 */
export function probeEnv(file: string, extra: Record<string, string> = {}): Record<string, string> {
  const probe = fileURLToPath(new URL('./server-probe.mjs', import.meta.url));
  return { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${probe}`.trim(), NKMEDIA_PROBE_FILE: file, ...extra };
}

/** Starts `nkmedia serve` (compiled) on a free port, loopback-only ICE. */
export async function spawnServer(extraArgs: string[] = [], opts: ServerOptions = {}): Promise<ServerProcess> {
  const nodeArgs = (process.env.BENCH_SERVER_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const args = [...extraArgs];
  // Media in the server's process unless MEDIA_WORKERS says otherwise (the server's default is auto).
  args.push('--workers', String(opts.workers ?? 0));
  if (opts.roomMaxPerNode !== undefined) {
    if (args.includes('--config')) throw new Error('roomMaxPerNode writes a config file of its own: put the setting in yours');
    const file = join(mkdtempSync(join(tmpdir(), 'nkm-bench-')), 'config.json');
    writeFileSync(file, JSON.stringify({ rooms: { max_listeners_per_node: opts.roomMaxPerNode } }));
    args.push('--config', file);
  }
  const child = spawn(process.execPath, [...nodeArgs, 'bin/nkmedia.mjs', 'serve', '--port', '0', '--ice-loopback-only', '--log-level', 'warn', ...args], {
    cwd: root, stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...opts.env },
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (ws:\/\/\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.once('exit', (code) => reject(new Error(`server exited (${code}): ${out}`)));
  });
  const stop = () => new Promise<void>((r) => { child.once('exit', () => r()); child.kill('SIGTERM'); });
  const main: ServerProc = { name: 'main', pid: child.pid! };
  const processes = opts.workers ? [main, ...await mediaWorkers(url).catch(async (err) => { await stop(); throw err; })] : [main];
  return { url, pid: child.pid!, child, processes, stop };
}

/** The server's worker processes, as `media/node get_list` names them (the user `admin` is an admin in open mode). */
export async function mediaWorkers(url: string): Promise<ServerProc[]> {
  const admin = await NkMediaClient.connect(url);
  try {
    await admin.login('admin');
    const nodes = await admin.request<{ node_id: string; kind: string; pid?: number }[]>('media', 'node', 'get_list');
    return nodes.filter((n) => n.kind === 'worker' && n.pid !== undefined).map((n) => ({ name: n.node_id, pid: n.pid! }));
  } finally {
    await admin.close();
  }
}

/** CPU time (user+system, µs) of each process, and in all. */
export function cpuOfAll(procs: readonly ServerProc[]): { each: number[]; total: number } {
  const each = procs.map((p) => cpuOf(p.pid));
  return { each, total: each.reduce((a, b) => a + b, 0) };
}

/** Writes a benchmark's results as JSON to $BENCH_RESULT_FILE, when set (for a driver such as bench/workers.ts). */
export function writeResult(result: unknown): void {
  const file = process.env.BENCH_RESULT_FILE;
  if (file) writeFileSync(file, JSON.stringify(result));
}

/** Resident memory of a process, in bytes (Linux). */
export function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

/** CPU time (user+system) of a process, in microseconds (Linux, clock ticks of 10 ms). */
export function cpuOf(pid: number): number {
  const { user, system } = cpuSplitOf(pid);
  return user + system;
}

/** A process's user and kernel (system) CPU time so far, in microseconds. */
export function cpuSplitOf(pid: number): { user: number; system: number } {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return { user: Number(fields[11]) * 10_000, system: Number(fields[12]) * 10_000 };
}

/**
 * CPU time (µs) per second that process `pid` spends over `ms` (after a settling second): with
 * connected but silent sessions, the per-session baseline (timers, ICE consent) that tells the
 * cost of forwarding itself apart.
 */
export async function idleCpuPerSecond(pid: number, ms: number): Promise<number> {
  await new Promise((r) => setTimeout(r, 1000));
  const i0 = cpuSplitOf(pid);
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, ms));
  const i1 = cpuSplitOf(pid);
  return (i1.user + i1.system - i0.user - i0.system) / ((performance.now() - t0) / 1000);
}

export function quantile(values: number[], q: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}

export const fmt = (n: number, digits = 1) => n.toFixed(digits);

/** Each thread's user + kernel CPU so far (microseconds), by thread id and name. */
export function threadCpuOf(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const f = stat.split(') ')[1]!.split(' ');
      out.set(`${tid} ${name}`, (Number(f[11]) + Number(f[12])) * 10_000);
    } catch { /* the thread ended */ }
  }
  return out;
}

/** Pins a process (all its threads) to some CPUs, e.g. '0' or '1-3' (taskset). */
export function pin(pid: number, cpuList: string): void {
  try {
    execFileSync('taskset', ['-a', '-p', '-c', cpuList, String(pid)], { stdio: 'ignore' });
  } catch (err) {
    console.log(`  (could not pin ${pid} to CPU ${cpuList}: ${(err as Error).message}; run with PIN=0)`);
  }
}
