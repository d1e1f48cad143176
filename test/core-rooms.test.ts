// SFU rooms on a fake engine (docs/API.md §6): members joining and leaving as room events that
// every subscriber sees, the publisher/listener wiring, publisher_stop, room_destroyed, the
// room timeout, and who may destroy and list rooms.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { roomInfo } from '../src/api/room-events.js';
import { MEDIA_KINDS } from '../src/engine/types.js';
import { TestCore, apiTerm, coresClosedAfterEach, clientOffer, sleep, until, type FakeCallConnection } from './helpers/fake-engine.js';
import type { Caller } from '../src/core/sessions/manager.js';

const core = coresClosedAfterEach();

const term = apiTerm;

type Conn = FakeCallConnection & { caller: Caller };
const watchRoom = (tc: TestCore, c: Conn, roomId = '*') => tc.bus.subscribe(c, { class: 'media', subclass: 'room', type: '*', obj_id: roomId });
const roomEvents = (c: Conn, roomId: string) => c.of(roomId).map((e) => [e.type, e.body]);

describe('members', () => {
  it('publishers and listeners joining and leaving are room events for every subscriber, whoever they are', async () => {
    const tc = core();
    const alice = tc.conn('alice');
    const bob = tc.conn('bob');
    const carol = tc.conn('carol');
    for (const c of [bob, carol]) watchRoom(tc, c, 'r1');
    const room = tc.rooms.create({ class: 'sfu', room_id: 'r1', room_meta: { topic: 't' } }, 'alice');
    const { reply: pubReply, session: pub } = await tc.create(alice, { type: 'publish', room_id: 'r1', offer: { sdp: clientOffer() } });
    assert.equal(pubReply.room_id, 'r1', 'publish replies name the room');
    const listener = await tc.offeree(bob, { type: 'listen', publisher_id: pub.id });
    assert.equal(listener.room, room);

    assert.deepEqual(roomInfo(room).members, {
      [pub.id]: { role: 'publisher', user_id: 'alice' },
      [listener.id]: { role: 'listener', user_id: 'bob', peer_id: pub.id },
    });
    assert.deepEqual(roomInfo(room).status, { publishers: 1, members: 2 });
    // The listener hears the publisher.
    for (const k of MEDIA_KINDS) assert.equal(tc.engine.sourceOf(tc.engine.endpointOf(listener.id)!, k), pub.proxy);

    await pub.stop('user_stop');
    await listener.whenDestroyed;
    assert.deepEqual(listener.stopCause, { term: 'publisher_stop' });
    for (const c of [bob, carol]) {
      assert.deepEqual(roomEvents(c, 'r1').map(([t]) => t), ['created', 'started_member', 'started_member', 'stopped_member', 'stopped_member']);
      assert.deepEqual(roomEvents(c, 'r1').slice(1), [
        ['started_member', { session_id: pub.id, role: 'publisher', user_id: 'alice' }],
        ['started_member', { session_id: listener.id, role: 'listener', user_id: 'bob', peer_id: pub.id }],
        ['stopped_member', { session_id: pub.id, role: 'publisher', user_id: 'alice' }],
        ['stopped_member', { session_id: listener.id, role: 'listener', user_id: 'bob', peer_id: pub.id }],
      ]);
    }
    assert.deepEqual(carol.of('r1', 'created')[0]!.body!.room_meta, { topic: 't' });
    assert.equal(tc.rooms.lookup('r1'), room, 'the room outlives its members until its timeout');
    assert.deepEqual(roomInfo(room).members, {});
  });

  it('a listener leaving does not disturb the publisher or the other listeners', async () => {
    const tc = core();
    const alice = tc.conn('alice');
    const pub = await tc.offeree(alice, { type: 'publish' });
    const l1 = await tc.offeree(alice, { type: 'listen', publisher_id: pub.id });
    const l2 = await tc.offeree(alice, { type: 'listen', publisher_id: pub.id });
    await l1.stop('user_stop');
    assert.equal(pub.isStopped, false);
    assert.equal(l2.isStopped, false);
    assert.deepEqual(tc.engine.sinksOf(pub.proxy!), [tc.engine.endpointOf(l2.id)!]);
    assert.equal(pub.room!.size, 2);
  });

  it('publish without a room makes one owned by the publisher\'s user; an unknown room is refused', async () => {
    const tc = core();
    const alice = tc.conn('alice');
    const pub = await tc.offeree(alice, { type: 'publish' });
    const room = pub.room!;
    assert.equal(room.owner, 'alice');
    assert.match(room.id, /^room-/);
    await assert.rejects(tc.offeree(alice, { type: 'publish', room_id: 'missing' }), term('room_not_found'));
  });
});

describe('room life', () => {
  it('a room without publishers is destroyed after its timeout; a publisher keeps it; a member change restarts the wait', async () => {
    const tc = core();
    const alice = tc.conn('alice');
    watchRoom(tc, alice);
    const room = tc.rooms.create({ class: 'sfu', room_id: 'short', timeout: 0.06 }, 'alice');
    await sleep(30);
    const pub = await tc.offeree(alice, { type: 'publish', room_id: 'short' });
    await sleep(100);
    assert.equal(room.destroyed, false, 'kept by its publisher');
    await pub.stop('user_stop');
    const left = Date.now();
    await until(() => room.destroyed, 1000, 'destroyed');
    assert.ok(Date.now() - left >= 50, 'the wait restarted when the publisher left');
    assert.deepEqual(alice.of('short', 'destroyed')[0]!.body, { code: 100005, reason: 'Timeout' });
    assert.equal(tc.rooms.lookup('short'), undefined);
  });

  it('destroying a room stops its members with room_destroyed; only its creator or an admin may', async () => {
    const tc = core();
    const alice = tc.conn('alice');
    const bob = tc.conn('bob');
    const root = tc.conn('root', { admin: true });
    watchRoom(tc, bob);
    const room = tc.rooms.create({ class: 'sfu', room_id: 'r2' }, 'alice');
    const pub = await tc.offeree(bob, { type: 'publish', room_id: 'r2' });
    const l = await tc.offeree(bob, { type: 'listen', publisher_id: pub.id });
    await assert.rejects(tc.rooms.destroy('r2', bob.caller), term('unauthorized'));
    await tc.rooms.destroy('r2', alice.caller);
    assert.equal(pub.stopCause!.term, 'room_destroyed');
    // The publisher goes first and takes its listeners with it (publisher_stop); docs/API.md §6 says
    // room_destroyed for every member, test/rooms.test.ts accepts either.
    assert.ok(['room_destroyed', 'publisher_stop'].includes(l.stopCause!.term), JSON.stringify(l.stopCause));
    assert.deepEqual(bob.of('r2', 'destroyed')[0]!.body, { code: 100013, reason: 'API stop received' });
    assert.equal(room.destroyed, true);
    assert.throws(() => tc.rooms.get('r2'), term('room_not_found'));
    const other = tc.rooms.create({ class: 'sfu' }, 'alice');
    await tc.rooms.destroy(other.id, root.caller);
  });

  it('creation errors; listing: own rooms and rooms with a member of yours, admins all', async () => {
    const tc = core();
    const alice = tc.conn('alice');
    const bob = tc.conn('bob');
    assert.throws(() => tc.rooms.create({ class: 'mcu' } as never, 'alice'), term('not_implemented'));
    assert.throws(() => tc.rooms.create({ class: 'sfu', backend: 'janus' }, 'alice'), term('unknown_backend'));
    const mine = tc.rooms.create({ class: 'sfu', room_id: 'mine' }, 'alice');
    assert.throws(() => tc.rooms.create({ class: 'sfu', room_id: 'mine' }, 'bob'), term('room_already_exists'));
    const bobs = tc.rooms.create({ class: 'sfu', room_id: 'bobs' }, 'bob');
    tc.rooms.create({ class: 'sfu', room_id: 'theirs' }, 'carol');
    await tc.offeree(alice, { type: 'publish', room_id: 'bobs' });
    const hasMine = (who: Conn) => (r: typeof mine) => tc.sessions.list(who.caller).some((s) => s.room === r);
    assert.deepEqual(tc.rooms.list(alice.caller, hasMine(alice)).map((r) => r.id).sort(), ['bobs', 'mine']);
    assert.deepEqual(tc.rooms.list(bob.caller, hasMine(bob)).map((r) => r.id), ['bobs']);
    assert.equal(tc.rooms.list({ user: 'root', admin: true }, () => false).length, 3);
    assert.equal(bobs.publishers, 1);
  });
});
