// Concurrent commands on a handful of sessions (fast-check picks them): set_type to any type and
// target, stops, mutes, fired together without waiting for each other, as several clients (or
// one impatient one) would. Once everything settles, the engine graph must match what every live
// session says it is (docs/API.md §5.1), bridges must be mutual, rooms must list exactly their
// live members, and a stopped session must hold nothing.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { roomInfo } from '../src/api/room-events.js';
import fc from 'fast-check';
import { MEDIA_KINDS } from '../src/engine/types.js';
import type { Session, TypeTarget } from '../src/core/sessions/session.js';
import { TestCore } from './helpers/fake-engine.js';

const N = 4;

type Op =
  | { op: 'type'; who: number; type: 'park' | 'echo' | 'publish' | 'play' }
  | { op: 'bridge'; who: number; peer: number }
  | { op: 'listen'; who: number; publisher: number }
  | { op: 'stop'; who: number }
  | { op: 'mute'; who: number; video: boolean };

const who = fc.integer({ min: 0, max: N - 1 });
const bridgeArb: fc.Arbitrary<Op> = fc.record({ op: fc.constant('bridge' as const), who, peer: who });
const otherArbs: fc.Arbitrary<Op>[] = [
  fc.record({ op: fc.constant('type' as const), who, type: fc.constantFrom('park' as const, 'echo' as const, 'publish' as const, 'play' as const) }),
  fc.record({ op: fc.constant('listen' as const), who, publisher: who }),
  fc.record({ op: fc.constant('stop' as const), who }),
  fc.record({ op: fc.constant('mute' as const), who, video: fc.boolean() }),
];
const opArb: fc.Arbitrary<Op> = fc.oneof(...otherArbs, bridgeArb);
const noBridgeArb: fc.Arbitrary<Op> = fc.oneof(...otherArbs);

/** Every invariant of the wiring, for every session (live or not). */
function check(tc: TestCore, sessions: Session[]): void {
  const e = tc.engine;
  for (const s of sessions) {
    if (s.isStopped) {
      assert.equal(e.live({ session: s.id }).length, 0, `${s.id} stopped but holds elements`);
      continue;
    }
    const ep = e.endpointOf(s.id)!;
    const where = `${s.id} (${s.type} ${JSON.stringify(s.typeExt)})`;
    for (const k of MEDIA_KINDS) assert.equal(e.sourceOf(s.proxy!, k), s.mute[k] ? undefined : ep, `${where}: uplink ${k}`);
    const down = e.sourcesOf(ep);
    const expectAll = (src: string | undefined) => {
      for (const k of MEDIA_KINDS) assert.equal(down[k], src, `${where}: downlink ${k}`);
    };
    switch (s.type) {
      case 'park': case 'publish': expectAll(undefined); break;
      case 'echo': expectAll(s.proxy); break;
      case 'play': {
        const player = e.elementOf(s.id, 'player');
        assert.ok(player, `${where}: no player`);
        for (const k of MEDIA_KINDS) assert.equal(down[k], k !== 'data' && s.mute[k] ? undefined : player, `${where}: play ${k}`);
        break;
      }
      case 'bridge': {
        const peer = tc.sessions.lookup(String(s.typeExt.peer_id));
        assert.ok(peer && !peer.isStopped, `${where}: bridged with a stopped session`);
        assert.equal(peer.type, 'bridge', `${where}: the peer is ${peer.type}`);
        assert.equal(peer.typeExt.peer_id, s.id, `${where}: the peer bridges with ${String(peer.typeExt.peer_id)}`);
        expectAll(peer.proxy);
        break;
      }
      case 'listen': {
        const pub = tc.sessions.lookup(String(s.typeExt.publisher_id));
        assert.ok(pub && !pub.isStopped && pub.type === 'publish', `${where}: its publisher is gone or not publishing`);
        expectAll(pub.proxy);
        break;
      }
    }
    if (s.type !== 'play') assert.equal(e.elementOf(s.id, 'player'), undefined, `${where}: a player left behind`);
  }
  for (const room of tc.rooms.list({ user: 'root', admin: true }, () => true)) {
    const members = Object.keys(roomInfo(room).members as Record<string, unknown>).sort();
    const expected = sessions.filter((s) => !s.isStopped && (s.type === 'publish' || s.type === 'listen') && s.typeExt.room_id === room.id).map((s) => s.id).sort();
    assert.deepEqual(members, expected, `room ${room.id} members`);
  }
}

async function run(ops: Op[], together: boolean, expect?: (sessions: Session[]) => void): Promise<void> {
  const tc = new TestCore();
  try {
    const alice = tc.conn('alice');
    const sessions: Session[] = [];
    for (let i = 0; i < N; i++) sessions.push(await tc.offeree(alice, { session_id: `s${i}`, stop_after_peer: false }));
    const target = (op: Op): TypeTarget | undefined => {
      switch (op.op) {
        case 'type': return op.type === 'play' ? { type: 'play', uri: 'http://media.example/x.webm', loops: 0 } : { type: op.type };
        case 'bridge': return { type: 'bridge', peer: sessions[op.peer]! };
        case 'listen': return { type: 'listen', publisher: sessions[op.publisher]! };
        default: return undefined;
      }
    };
    const start = (op: Op): Promise<unknown> => {
      const s = sessions[op.who]!;
      if (op.op === 'stop') return s.stop('user_stop');
      if (op.op === 'mute') return s.updateMedia({ mute_video: op.video });
      return s.setType(target(op)!);
    };
    if (together) {
      // All at once: each is started without waiting for the others.
      await Promise.allSettled(ops.map(start));
    } else {
      for (const op of ops) await start(op).catch(() => undefined);
    }
    await tc.engine.settle();
    check(tc, sessions);
    expect?.(sessions);
  } finally {
    await tc.close();
  }
  assert.equal(tc.engine.liveCount, 0);
}

describe('concurrent commands keep the wiring consistent', () => {
  it('one command at a time, bridges included (the control)', async () => {
    await fc.assert(fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 8 }), (ops) => run(ops, false)), { numRuns: 120, seed: 1 });
  });

  it('commands fired together: types, listens, stops, mutes', async () => {
    await fc.assert(fc.asyncProperty(fc.array(noBridgeArb, { minLength: 2, maxLength: 6 }), (ops) => run(ops, true)), { numRuns: 250, seed: 42 });
  });

  // A bridge re-wires the sessions on both sides (and parks their former peers): each change
  // takes the wiring locks of every session it touches (Session.changeType), so these interleave
  // only between whole changes.
  it('commands fired together, bridges included', async () => {
    await fc.assert(fc.asyncProperty(fc.array(opArb, { minLength: 2, maxLength: 6 }), (ops) => run(ops, true)), { numRuns: 200, seed: 42 });
  });

  it('two bridges at once onto one session: the one left out is parked and hears nothing', async () => {
    // The smallest case fast-check found: s0 bridges with s2 while s1 bridges with s0.
    await run([{ op: 'bridge', who: 0, peer: 2 }, { op: 'bridge', who: 1, peer: 0 }], true);
  });

  it('a publisher and its own listener bridge (either asking): the listener leaves the room first, nobody is stopped', async () => {
    // Found with more runs: the publisher leaving its room first stopped the listener (publisher_stop) it was pairing with.
    for (const asker of [2, 3]) {
      const ops: Op[] = [{ op: 'type', who: 2, type: 'publish' }, { op: 'listen', who: 3, publisher: 2 }, { op: 'bridge', who: asker, peer: 5 - asker }];
      await run(ops, false, (s) => {
        assert.deepEqual([s[2]!.type, s[2]!.typeExt, s[3]!.type, s[3]!.typeExt], ['bridge', { peer_id: 's3' }, 'bridge', { peer_id: 's2' }]);
      });
    }
  });
});
