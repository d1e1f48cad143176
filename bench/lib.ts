// Benchmark helpers: a server in its own process (so its CPU and memory are its own), stats.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

export interface ServerProcess { url: string; pid: number; child: ChildProcess; stop(): Promise<void> }

/** Starts `nkmedia serve` (compiled) on a free port, loopback-only ICE. */
export async function spawnServer(extraArgs: string[] = []): Promise<ServerProcess> {
  const nodeArgs = (process.env.BENCH_SERVER_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const child = spawn(process.execPath, [...nodeArgs, 'bin/nkmedia.mjs', 'serve', '--port', '0', '--ice-loopback-only', '--log-level', 'warn', ...extraArgs], {
    cwd: root, stdio: ['ignore', 'pipe', 'inherit'],
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
  return {
    url, pid: child.pid!, child,
    stop: () => new Promise((r) => { child.once('exit', () => r()); child.kill('SIGTERM'); }),
  };
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
