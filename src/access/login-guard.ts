// Password guessing, bounded: failed logins are counted per source address and per user name
// over a sliding minute; past the configured numbers, further attempts are refused at once
// (`too_many_logins`, no password hashed) until the oldest failure is a minute old. Password
// checks (scrypt) also run one at a time, so a flood of guesses cannot take libuv's thread pool
// from file I/O (demo pages, recordings).
import { ApiError } from '../protocol/errors.js';

const WINDOW_MS = 60_000;
/** Past this many tracked keys the oldest are forgotten: memory stays bounded under a flood of addresses. */
const MAX_KEYS = 50_000;

class FailureWindow {
  private readonly byKey = new Map<string, number[]>();
  /** Attempts being checked now: counted as failures until they succeed, so parallel guesses cannot slip past. */
  private readonly pending = new Map<string, number>();

  constructor(private readonly limit: number) {}

  /** Seconds until `key` may try again, or 0. */
  retryAfter(key: string, now: number): number {
    const list = this.prune(key, now);
    const inFlight = this.pending.get(key) ?? 0;
    if ((list?.length ?? 0) + inFlight < this.limit) return 0;
    return Math.max(1, Math.ceil(((list?.[0] ?? now) + WINDOW_MS - now) / 1000));
  }

  begin(key: string): void { this.pending.set(key, (this.pending.get(key) ?? 0) + 1); }

  end(key: string): void {
    const n = (this.pending.get(key) ?? 1) - 1;
    if (n <= 0) this.pending.delete(key); else this.pending.set(key, n);
  }

  add(key: string, now: number): void {
    const list = this.prune(key, now) ?? [];
    list.push(now);
    if (list.length > this.limit) list.shift();
    this.byKey.delete(key); // re-inserted last: Map order is then oldest-first for eviction
    this.byKey.set(key, list);
    if (this.byKey.size > MAX_KEYS) this.byKey.delete(this.byKey.keys().next().value!);
  }

  clear(key: string): void { this.byKey.delete(key); }

  private prune(key: string, now: number): number[] | undefined {
    const list = this.byKey.get(key);
    if (!list) return undefined;
    while (list.length > 0 && list[0]! + WINDOW_MS <= now) list.shift();
    if (list.length === 0) { this.byKey.delete(key); return undefined; }
    return list;
  }
}

export class LoginGuard {
  private readonly byAddress: FailureWindow;
  private readonly byUser: FailureWindow;

  constructor(limits: { perAddress: number; perUser: number }, private readonly now: () => number = Date.now) {
    this.byAddress = new FailureWindow(limits.perAddress);
    this.byUser = new FailureWindow(limits.perUser);
  }

  /**
   * Starts an attempt: throws `too_many_logins` when this address or user name is over its
   * failure budget (attempts in progress count), else returns the function that ends it.
   */
  begin(address: string, user: string | undefined): (outcome: 'ok' | 'failed' | 'other') => void {
    const now = this.now();
    const a = this.byAddress.retryAfter(address, now);
    if (a > 0) throw new ApiError('too_many_logins', `too many failed logins from your address; try again in ${a} s`);
    if (user !== undefined) {
      const u = this.byUser.retryAfter(user, now);
      if (u > 0) throw new ApiError('too_many_logins', `too many failed logins for this user; try again in ${u} s`);
    }
    this.byAddress.begin(address);
    if (user !== undefined) this.byUser.begin(user);
    let done = false;
    return (outcome) => {
      if (done) return;
      done = true;
      this.byAddress.end(address);
      if (user !== undefined) this.byUser.end(user);
      const t = this.now();
      if (outcome === 'failed') {
        this.byAddress.add(address, t);
        if (user !== undefined) this.byUser.add(user, t);
      } else if (outcome === 'ok') {
        this.byAddress.clear(address);
      }
    };
  }
}

/** Runs tasks one (or `width`) at a time; past `maxQueue` waiting, refuses with `too_many_logins`. */
export class Serializer {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly width: number, private readonly maxQueue: number) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.running >= this.width) {
      if (this.waiting.length >= this.maxQueue) throw new ApiError('too_many_logins', 'the server is busy checking passwords; try again shortly');
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      this.running++;
    }
    try {
      return await task();
    } finally {
      const next = this.waiting.shift();
      if (next) next(); else this.running--;
    }
  }
}
