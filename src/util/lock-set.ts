// Mutexes that are taken several at a time without deadlocking: every holder of more than one
// takes them in one global order (by key, then by creation), so no two can wait for each other
// in a cycle.

let created = 0;

/** A FIFO mutex, not re-entrant: whoever holds it must not ask for it again. */
export class Lock {
  /** Breaks ties between locks with the same key (an id reused after its owner went). */
  private readonly seq = ++created;
  private held = false;
  private readonly waiters: (() => void)[] = [];

  constructor(readonly key: string) {}

  get locked(): boolean { return this.held; }

  /** Resolves with the function that releases the lock (calling it again does nothing). */
  acquire(): Promise<() => void> {
    return new Promise((resolve) => {
      const grant = () => {
        this.held = true;
        resolve(this.releaser());
      };
      // Taken at once when free, so callers are served in the order they asked.
      if (this.held) this.waiters.push(grant);
      else grant();
    });
  }

  private releaser(): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const next = this.waiters.shift();
      if (next) next();
      else this.held = false;
    };
  }

  static compare(a: Lock, b: Lock): number {
    return a.key < b.key ? -1 : a.key > b.key ? 1 : a.seq - b.seq;
  }
}

/** Takes every lock (duplicates once) in the global order; resolves with a function releasing them all. */
export async function acquireAll(locks: Iterable<Lock>): Promise<() => void> {
  const ordered = [...new Set(locks)].sort(Lock.compare);
  const releases: (() => void)[] = [];
  for (const lock of ordered) releases.push(await lock.acquire());
  return () => { for (const r of releases.reverse()) r(); };
}

/**
 * Runs `body` holding every lock `collect` names. Which locks are needed may depend on state that
 * changes while waiting for them (a session's bridge peer): `collect` is asked again once they are
 * held, and if it now names one more, all are released and taken again with it.
 */
export async function withLocks<T>(collect: () => Iterable<Lock | undefined>, body: () => Promise<T>): Promise<T> {
  const wanted = () => [...collect()].filter((l): l is Lock => l !== undefined);
  let held = new Set(wanted());
  for (;;) {
    const release = await acquireAll(held);
    const now = wanted();
    if (now.every((l) => held.has(l))) {
      try {
        return await body();
      } finally {
        release();
      }
    }
    release();
    held = new Set([...held, ...now]);
  }
}
