// The process's open-file limit. Every WebRTC or RTP port, API connection, recording and ffmpeg
// pipe is a descriptor; the caps on connections and sessions are derived from this limit so that
// running out of descriptors is a refused request, never a crash. Node has no setrlimit, so the
// soft limit is raised to the hard one with util-linux's `prlimit` on this very process.
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';

export interface DescriptorLimit {
  soft: number;
  hard: number;
  /** What happened at start: raised from a lower soft limit, already at the hard limit, or unknown. */
  raisedFrom?: number;
  note?: string;
}

/** Linux: "Max open files  <soft>  <hard>  files" from /proc/self/limits. */
export function readDescriptorLimit(): { soft: number; hard: number } | undefined {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
    const m = line && /Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/.exec(line);
    if (!m) return undefined;
    const n = (s: string) => (s === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(s));
    return { soft: n(m[1]!), hard: n(m[2]!) };
  } catch {
    return undefined;
  }
}

/** The soft limit of a shell started by this process (inherits ours): for systems without /proc. */
function shellSoftLimit(): number | undefined {
  const r = spawnSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8', timeout: 2000 });
  const v = r.stdout?.trim();
  if (!v) return undefined;
  return v === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(v) || undefined;
}

let cached: DescriptorLimit | undefined;

/**
 * Raises the soft limit to the hard limit once (a server wants every descriptor it may have),
 * and returns the limit in force.
 */
export function raiseDescriptorLimit(): DescriptorLimit {
  if (cached) return cached;
  const before = readDescriptorLimit();
  if (!before) {
    const soft = shellSoftLimit() ?? 1024;
    cached = { soft, hard: soft, note: 'limit read from the shell; not raised (no /proc/self/limits)' };
    return cached;
  }
  if (before.soft >= before.hard) {
    cached = { ...before };
    return cached;
  }
  // Capped: a hard limit of "unlimited" is not a number prlimit or the kernel takes as a soft limit.
  const target = Math.min(before.hard, 1 << 20);
  const r = spawnSync('prlimit', ['--pid', String(process.pid), `--nofile=${target}:${before.hard === Number.MAX_SAFE_INTEGER ? 'unlimited' : before.hard}`], { encoding: 'utf8', timeout: 5000 });
  const after = readDescriptorLimit() ?? before;
  cached = after.soft > before.soft
    ? { ...after, raisedFrom: before.soft }
    : { ...after, note: `could not raise the soft limit ${before.soft} to ${before.hard}: ${r.error ? r.error.message : (r.stderr || 'prlimit failed').trim()}` };
  return cached;
}
