// SFU rooms with werift clients: the room API, publish/listen, fan-out to 50 listeners,
// membership changes, publisher and room ends, switching in and out of publish/listen.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, connectClient, eventually } from './helpers/server.js';
import { connectParked } from './helpers/flows.js';
import type { TestPeer } from './helpers/peer.js';
import type { Server } from '../src/main.js';
import { NkMediaError, type EventData, type NkMediaClient } from '../src/client/index.js';

let server: Server;
let alice: NkMediaClient;
let bob: NkMediaClient;
const events: EventData[] = [];
/** Session events heard by either client (each hears its own sessions'). */
const sessionEvents: EventData[] = [];

before(async () => {
  server = await startTestServer();
  alice = await connectClient(server, 'alice');
  bob = await connectClient(server, 'bob');
  await alice.subscribe({ class: 'media', subclass: 'room' });
  alice.onEvent((e) => events.push(e));
  for (const c of [alice, bob]) c.onEvent((e) => { if (e.subclass === 'session') sessionEvents.push(e); });
});
after(async () => { await alice.close(); await bob.close(); await server.close(); });

const room = (cmd: string, data?: Record<string, unknown>, c: NkMediaClient = alice) => c.request('media', 'room', cmd, data);

async function code(p: Promise<unknown>): Promise<number> {
  try { await p; } catch (err) { assert.ok(err instanceof NkMediaError); return err.code; }
  return 0;
}

function roomEvents(roomId: string): EventData[] { return events.filter((e) => e.obj_id === roomId); }

async function receivesFrom(peer: TestPeer, tag: number, n = 10): Promise<void> {
  const start = peer.from('video', tag).length;
  await eventually(() => peer.from('video', tag).length >= start + n, 8000, 'video from the publisher');
}

describe('room API', () => {
  it('create, get_info, get_list, destroy, and their errors', async () => {
    const { room_id } = await room('create', { class: 'sfu', room_id: 'demo-room', timeout: 60, bitrate: 300000, video_codec: 'vp8' });
    assert.equal(room_id, 'demo-room');
    assert.equal(await code(room('create', { class: 'sfu', room_id: 'demo-room' })), 304002);
    assert.equal(await code(room('create', { class: 'mcu' })), 100006);
    assert.equal(await code(room('create', {})), 100045);
    assert.equal(await code(room('create', { class: 'sfu', timeout: 1 })), 100046);
    assert.equal(await code(room('create', { class: 'sfu', backend: 'nkmedia_janus' })), 300003);
    assert.equal(await code(room('get_info', { room_id: 'nope' })), 304001);
    assert.equal(await code(room('destroy', { room_id: 'nope' })), 304001);
    const info = await room('get_info', { room_id });
    assert.deepEqual({ class: info.class, bitrate: info.bitrate, video_codec: info.video_codec, timeout: info.timeout, members: info.members }, { class: 'sfu', bitrate: 300000, video_codec: 'vp8', timeout: 60, members: {} });
    assert.ok((await room('get_list')).some((r: { room_id: string }) => r.room_id === room_id));
    assert.ok(!(await room('get_list', undefined, bob)).some((r: { room_id: string }) => r.room_id === room_id), 'not bob\'s room');
    assert.equal(await code(room('destroy', { room_id }, bob)), 100030, 'only its creator destroys a room');
    await room('destroy', { room_id });
    const evs = roomEvents(room_id).map((e) => e.type);
    assert.deepEqual(evs, ['created', 'destroyed']);
    assert.equal(roomEvents(room_id)[1]!.body!.code, 100013);
  });

  it('a room without publishers is destroyed after its timeout', async () => {
    const { room_id } = await room('create', { class: 'sfu', timeout: 5 });
    const ev = await alice.waitEvent((e) => e.obj_id === room_id && e.type === 'destroyed', 9000);
    assert.deepEqual(ev.body, { code: 100005, reason: 'Timeout' });
  });
});

describe('publish and listen', () => {
  it('publish without room_id creates a room; with an unknown one fails', async () => {
    const pub = await connectParked(alice, { type: 'publish' });
    const info = await alice.getInfo(pub.id);
    assert.equal(info.type, 'publish');
    assert.match(String(info.type_ext.room_id), /^room-/);
    assert.equal(await code(alice.createSession({ type: 'publish', room_id: 'no-such-room' })), 304001);
    await alice.destroySession(pub.id);
    await pub.peer.close();
  });

  it('1 publisher to 50 listeners: all receive; leave/join keeps the others; publisher stop ends them with publisher_stop', async () => {
    const { room_id } = await room('create', { class: 'sfu', room_id: 'big-room' });
    const pub = await connectParked(alice, { type: 'publish', room_id });
    pub.peer.startSending();
    const listeners: { id: string; peer: TestPeer }[] = [];
    for (let i = 0; i < 50; i++) {
      // Listeners of another user may listen: rooms are shared.
      const client = i % 2 === 0 ? alice : bob;
      const reply = await connectParked(client, { type: 'listen', publisher_id: pub.id });
      listeners.push(reply);
    }
    await Promise.all(listeners.map((l) => receivesFrom(l.peer, pub.peer.tag)));
    const info = await room('get_info', { room_id });
    assert.equal(Object.keys(info.members).length, 51);
    // (With media on several nodes each member also names its node_id.)
    const { node_id: _n1, ...listener0 } = info.members[listeners[0]!.id];
    const { node_id: _n2, ...publisher } = info.members[pub.id];
    assert.deepEqual(listener0, { role: 'listener', user_id: 'alice', peer_id: pub.id });
    assert.deepEqual(publisher, { role: 'publisher', user_id: 'alice' });
    // The publisher hears nothing.
    assert.equal(pub.peer.received.video, 0);

    // One leaves, one joins late: the others are not disturbed, the late one decodes quickly
    // because a keyframe is asked for at once.
    const leaving = listeners.shift()!;
    await alice.destroySession(leaving.id);
    await leaving.peer.close();
    const pli = pub.peer.pliReceived;
    const late = await connectParked(bob, { type: 'listen', publisher_id: pub.id, room_id });
    listeners.push(late);
    await receivesFrom(late.peer, pub.peer.tag);
    await eventually(() => pub.peer.pliReceived > pli, 3000, 'keyframe request for the late listener');
    await Promise.all(listeners.map((l) => receivesFrom(l.peer, pub.peer.tag, 5)));

    await alice.destroySession(pub.id);
    // Each listener's creator (alice or bob) hears its `destroyed` event.
    const stops = await eventually(() => {
      const destroyed = listeners.map((l) => sessionEvents.find((e) => e.obj_id === l.id && e.type === 'destroyed'));
      return destroyed.every(Boolean) ? destroyed : undefined;
    }, 10000, 'every listener destroyed');
    for (const ev of stops) assert.deepEqual(ev!.body, { code: 304006, reason: 'Publisher stopped' });
    const evs = roomEvents(room_id);
    assert.equal(evs[0]!.type, 'created');
    assert.equal(evs[1]!.type, 'started_member');
    assert.equal(evs[1]!.body!.role, 'publisher');
    const stoppedListeners = evs.filter((e) => e.type === 'stopped_member' && e.body!.role === 'listener').length;
    assert.equal(stoppedListeners, 51, 'every listener left the room (one by leaving, 50 with the publisher)');
    for (const l of [...listeners, leaving, pub]) await l.peer.close();
    await room('destroy', { room_id });
  });

  it('data channel messages from the publisher reach listeners, unless mute_data', async () => {
    const pub = await connectParked(alice, { type: 'publish' });
    const lis = await connectParked(bob, { type: 'listen', publisher_id: pub.id });
    await eventually(() => pub.peer.channel?.readyState === 'open' && lis.peer.channel?.readyState === 'open', 5000, 'channels open');
    pub.peer.send('to the room');
    await eventually(() => lis.peer.messages.includes('to the room'), 5000, 'message at the listener');
    await alice.updateMedia(pub.id, { mute_data: true });
    pub.peer.send('muted');
    await new Promise((r) => setTimeout(r, 400));
    assert.ok(!lis.peer.messages.includes('muted'), 'mute_data stops the publisher\'s messages');
    await alice.destroySession(pub.id);
    await pub.peer.close();
    await lis.peer.close();
  });

  it('listeners of a stopped publisher get destroyed with publisher_stop', async () => {
    const pub = await connectParked(alice, { type: 'publish' });
    const l1 = await connectParked(alice, { type: 'listen', publisher_id: pub.id });
    const all: EventData[] = [];
    const off = alice.onEvent((e) => all.push(e));
    await alice.destroySession(pub.id);
    const ev = await eventually(() => all.find((e) => e.obj_id === l1.id && e.type === 'destroyed'), 5000, 'listener destroyed');
    assert.deepEqual(ev.body, { code: 304006, reason: 'Publisher stopped' });
    off();
    await pub.peer.close();
    await l1.peer.close();
  });

  it('listening to a session that is not publishing fails and leaves it unharmed', async () => {
    const target = await connectParked(alice, { type: 'echo' });
    target.peer.startSending();
    assert.equal(await code(alice.createSession({ type: 'listen', publisher_id: target.id })), 304005);
    assert.equal(await code(alice.createSession({ type: 'listen', publisher_id: 'nobody' })), 304005);
    assert.equal(await code(alice.createSession({ type: 'listen' })), 100045);
    await receivesFrom(target.peer, target.peer.tag);
    assert.equal((await alice.getInfo(target.id)).type, 'echo');
    await alice.destroySession(target.id);
    await target.peer.close();
  });

  it('destroying a room stops its members with room_destroyed', async () => {
    const { room_id } = await room('create', { class: 'sfu' });
    const pub = await connectParked(alice, { type: 'publish', room_id });
    const lis = await connectParked(alice, { type: 'listen', publisher_id: pub.id });
    const all: EventData[] = [];
    const off = alice.onEvent((e) => all.push(e));
    await room('destroy', { room_id });
    for (const s of [pub, lis]) {
      const ev = await eventually(() => all.find((e) => e.obj_id === s.id && e.type === 'destroyed'), 5000, 'member destroyed');
      assert.ok([304003, 304006].includes(ev.body!.code as number), `stopped with ${JSON.stringify(ev.body)}`);
    }
    assert.ok(all.some((e) => e.obj_id === pub.id && e.type === 'destroyed' && e.body!.code === 304003));
    off();
    await pub.peer.close();
    await lis.peer.close();
  });

  it('set_type into and out of publish/listen, with no renegotiation', async () => {
    const a = await connectParked(alice);
    const b = await connectParked(alice);
    a.peer.startSending();
    b.peer.startSending();
    const { room_id } = await alice.setType(a.id, 'publish') as { room_id: string };
    assert.match(room_id, /^room-/);
    assert.deepEqual(await alice.setType(b.id, 'listen', { publisher_id: a.id }), { room_id, publisher_id: a.id });
    await receivesFrom(b.peer, a.peer.tag);
    // b switches to echo: it leaves the room and hears itself.
    await alice.setType(b.id, 'echo');
    await receivesFrom(b.peer, b.peer.tag);
    assert.deepEqual(Object.keys((await room('get_info', { room_id })).members), [a.id]);
    // b publishes in a's room; a listens to b: both directions through the room.
    await alice.setType(b.id, 'publish', { room_id });
    const members = (await room('get_info', { room_id })).members;
    assert.equal(members[b.id].role, 'publisher');
    // a stops publishing to listen: its own listeners (none now) would stop; it hears b.
    await alice.setType(a.id, 'listen', { publisher_id: b.id });
    await receivesFrom(a.peer, b.peer.tag);
    await alice.setType(a.id, 'park');
    for (const s of [a, b]) { await alice.destroySession(s.id); await s.peer.close(); }
  });
});
