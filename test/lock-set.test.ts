// The multi-lock helper the sessions' wiring relies on (src/util/lock-set.ts): FIFO mutexes,
// several taken at once in one global order (no deadlock between overlapping sets), and a set
// that is taken again when what it should hold changed while waiting.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { acquireAll, Lock, withLocks } from '../src/util/lock-set.js';

const tick = () => new Promise((r) => setImmediate(r));

describe('Lock', () => {
  it('serves its holders one at a time, in the order they asked', async () => {
    const lock = new Lock('a');
    const order: string[] = [];
    const r1 = await lock.acquire();
    assert.equal(lock.locked, true);
    const p2 = lock.acquire().then((r) => { order.push('2'); return r; });
    const p3 = lock.acquire().then((r) => { order.push('3'); return r; });
    await tick();
    assert.deepEqual(order, [], 'nobody else while it is held');
    r1();
    r1(); // a second release does nothing
    const r2 = await p2;
    await tick();
    assert.deepEqual(order, ['2']);
    r2();
    (await p3)();
    assert.deepEqual(order, ['2', '3']);
    assert.equal(lock.locked, false);
  });
});

describe('acquireAll', () => {
  it('takes overlapping sets asked for in opposite orders without deadlock', async () => {
    const a = new Lock('a');
    const b = new Lock('b');
    const c = new Lock('c');
    let inside = 0;
    let most = 0;
    const work = async (locks: Lock[]) => {
      const release = await acquireAll(locks);
      inside++;
      most = Math.max(most, inside);
      await tick();
      inside--;
      release();
    };
    await Promise.all([work([a, b]), work([b, a]), work([c, b, a]), work([a, c]), work([b, a, b])]);
    assert.equal(most, 1, 'every set shares a lock with every other: one at a time');
    for (const l of [a, b, c]) assert.equal(l.locked, false);
  });

  it('orders locks of the same key by creation', () => {
    const first = new Lock('s1');
    const second = new Lock('s1');
    assert.ok(Lock.compare(first, second) < 0);
    assert.ok(Lock.compare(new Lock('s0'), first) < 0);
  });
});

describe('withLocks', () => {
  it('releases the locks when the body throws', async () => {
    const a = new Lock('a');
    await assert.rejects(withLocks(() => [a, undefined], async () => { throw new Error('boom'); }), /boom/);
    assert.equal(a.locked, false);
  });

  it('takes the set again when what it needs changed while it waited', async () => {
    const a = new Lock('a');
    const b = new Lock('b');
    const c = new Lock('c');
    // "Who is a's peer" changes from b to c while the change waits for a.
    let peer = b;
    const holdA = await a.acquire();
    let held: boolean[] = [];
    const change = withLocks(() => [a, peer], async () => { held = [a.locked, peer.locked]; return peer; });
    await tick();
    peer = c;
    holdA();
    assert.equal(await change, c);
    assert.deepEqual(held, [true, true]);
    for (const l of [a, b, c]) assert.equal(l.locked, false);
  });
});
