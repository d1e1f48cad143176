// Session life cycle: master/slave cascades, timers, registered_down, buffering failures,
// ownership, direct events, subscriptions.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, connectClient, eventually } from './helpers/server.js';
import { connectParked } from './helpers/flows.js';
import { TestPeer } from './helpers/peer.js';
import type { Server } from '../src/main.js';
import { NkMediaError, type EventData, type NkMediaClient } from '../src/client/index.js';

let server: Server;
let alice: NkMediaClient;
let admin: NkMediaClient;
const adminEvents: EventData[] = [];

before(async () => {
  server = await startTestServer();
  alice = await connectClient(server, 'alice');
  admin = await connectClient(server, 'admin');
  await admin.subscribe({ class: 'media', subclass: 'session' });
  admin.onEvent((e) => adminEvents.push(e));
});
after(async () => { await alice.close(); await admin.close(); await server.close(); });

function destroyedOf(id: string): Promise<EventData> {
  const seen = adminEvents.find((e) => e.obj_id === id && e.type === 'destroyed');
  if (seen) return Promise.resolve(seen);
  return admin.waitEvent((e) => e.obj_id === id && e.type === 'destroyed', 10000);
}

async function rejects(p: Promise<unknown>, code: number): Promise<NkMediaError> {
  try { await p; } catch (err) {
    assert.ok(err instanceof NkMediaError, String(err));
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected error ${code}`);
}

describe('master/slave', () => {
  it('links both ways and the slave stops with peer_stopped when the master stops', async () => {
    const m = await alice.createSession({ type: 'park' });
    const s = await alice.createSession({ type: 'park', master_id: m.session_id });
    assert.equal((await alice.getInfo(s.session_id)).master_id, m.session_id);
    assert.equal((await alice.getInfo(m.session_id)).slave_id, s.session_id);
    await alice.destroySession(m.session_id);
    assert.deepEqual((await destroyedOf(m.session_id)).body, { code: 100011, reason: 'User stop' });
    assert.deepEqual((await destroyedOf(s.session_id)).body, { code: 300021, reason: 'Peer session stopped' });
  });

  it('a master stops when its slave stops (stop_after_peer defaults to true)', async () => {
    const m = await alice.createSession({ type: 'park' });
    const s = await alice.createSession({ type: 'park', master_id: m.session_id });
    await alice.destroySession(s.session_id);
    assert.equal((await destroyedOf(m.session_id)).body!.code, 300021);
  });

  it('stop_after_peer:false survives its master and is unlinked', async () => {
    const m = await alice.createSession({ type: 'park' });
    const s = await alice.createSession({ type: 'park', master_id: m.session_id, stop_after_peer: false });
    await alice.destroySession(m.session_id);
    await destroyedOf(m.session_id);
    const info = await eventually(async () => { const i = await alice.getInfo(s.session_id); return i.master_id === undefined ? i : undefined; }, 3000, 'unlink');
    assert.equal(info.stop_after_peer, false);
    await alice.destroySession(s.session_id);
  });

  it('an unknown or foreign master is refused', async () => {
    await rejects(alice.createSession({ type: 'park', master_id: 'no-such-session' }), 100071);
    const bob = await connectClient(server, 'bob');
    const b = await bob.createSession({ type: 'park' });
    await rejects(alice.createSession({ type: 'park', master_id: b.session_id }), 100071);
    await bob.close();
  });

  it('set_master_answer hands the slave\'s answer to its master instead of an answer event', async () => {
    const m = await alice.createSession({ type: 'park', wait_reply: true });
    const peer = new TestPeer();
    const offer = await peer.makeOffer();
    const s = await alice.createSession({ type: 'park', master_id: m.session_id, set_master_answer: true, offer: { sdp: offer.sdp, trickle_ice: true }, wait_reply: true });
    const { answer } = await alice.getAnswer(m.session_id);
    assert.equal(answer.sdp, s.answer!.sdp, 'the master got the slave\'s answer');
    await eventually(() => adminEvents.some((e) => e.obj_id === m.session_id && e.type === 'answer'), 3000, 'master answer event');
    assert.equal(adminEvents.filter((e) => e.obj_id === s.session_id && e.type === 'answer').length, 0, 'the slave emits no answer event');
    await alice.destroySession(m.session_id);
    await destroyedOf(s.session_id);
    await peer.close();
  });
});

describe('timers and failures', () => {
  it('wait_timeout stops a session nobody answers', async () => {
    const s = await alice.createSession({ type: 'park', wait_timeout: 1 });
    assert.deepEqual((await destroyedOf(s.session_id)).body, { code: 100060, reason: 'Session timeout' });
  });

  it('ready_timeout replaces wait_timeout once the answer exists', async () => {
    const { id, peer } = await connectParked(alice, { wait_timeout: 1, ready_timeout: 2 });
    const info = await alice.getInfo(id);
    assert.equal(info.ready_timeout, 2);
    // Still alive past the wait timeout (1 s), then stopped by the ready timeout.
    const ev = await destroyedOf(id);
    assert.equal(ev.body!.code, 100060);
    await peer.close();
  });

  it('buffering with no candidates stops with no_ice_candidates (and fails wait_reply)', async () => {
    const peer = new TestPeer();
    const offer = await peer.makeOffer();
    await rejects(alice.createSession({ type: 'park', offer: { sdp: offer.sdp, trickle_ice: true }, no_offer_trickle_ice: true, trickle_ice_timeout: 200, wait_reply: true }), 300014);
    const s = await alice.createSession({ type: 'park', offer: { sdp: offer.sdp, trickle_ice: true }, no_offer_trickle_ice: true, trickle_ice_timeout: 200 });
    assert.deepEqual((await destroyedOf(s.session_id)).body, { code: 300014, reason: 'No ICE candidates' });
    await peer.close();
  });

  it('a creator whose wait_reply fails sees the whole life cycle: created ... destroyed with the reason', async () => {
    // Its own connection, subscribed to nothing but what create subscribes it to.
    const creator = await connectClient(server, 'alice');
    const seen: EventData[] = [];
    creator.onEvent((e) => seen.push(e));
    const peer = new TestPeer();
    try {
      const offer = await peer.makeOffer();
      const id = `failing-reply-${Date.now()}`;
      await rejects(creator.createSession({ type: 'park', session_id: id, offer: { sdp: offer.sdp, trickle_ice: true }, no_offer_trickle_ice: true, trickle_ice_timeout: 200, wait_reply: true }), 300014);
      const destroyed = await eventually(() => seen.find((e) => e.obj_id === id && e.type === 'destroyed'), 3000, 'destroyed for the creator');
      assert.deepEqual(destroyed.body, { code: 300014, reason: 'No ICE candidates' });
      const types = seen.filter((e) => e.obj_id === id).map((e) => e.type);
      assert.equal(types[0], 'created');
      assert.equal(types.at(-1), 'destroyed');
      // The subscription create made went with the session.
      assert.ok(!(await creator.request('core', 'event', 'get_subscriptions')).some((s: { obj_id?: string }) => s.obj_id === id));
    } finally {
      await peer.close();
      await creator.close();
    }
  });

  it('get_offer waits for the SDP and fails with the stop reason when the session dies', async () => {
    const s = await alice.createSession({ type: 'park', wait_timeout: 1, no_offer_trickle_ice: true, trickle_ice_timeout: 5000 });
    const offer = await alice.getOffer(s.session_id);
    assert.equal(offer.offer.trickle_ice, false);
    await rejects(alice.getAnswer(s.session_id), 100060);
  });

  it('SDP sequencing errors', async () => {
    const s = await alice.createSession({ type: 'park', wait_reply: true });
    const peer = new TestPeer();
    const answer = await peer.answerOffer(s.offer!);
    await alice.setAnswer(s.session_id, { sdp: answer.sdp });
    await rejects(alice.setAnswer(s.session_id, { sdp: answer.sdp }), 300013);
    const offeree = await connectParked(alice);
    await rejects(alice.setAnswer(offeree.id, { sdp: answer.sdp }), 300010);
    await alice.destroySession(s.session_id);
    await alice.destroySession(offeree.id);
    await peer.close();
    await offeree.peer.close();
  });
});

describe('ownership and connections', () => {
  it('a session stops with registered_down when its connection closes', async () => {
    const carol = await connectClient(server, 'carol');
    const { id, peer } = await connectParked(carol);
    await carol.close();
    assert.deepEqual((await destroyedOf(id)).body, { code: 100010, reason: 'Registered process stopped' });
    await peer.close();
  });

  it('users see only their own sessions; admins see all', async () => {
    const bob = await connectClient(server, 'bob');
    const a = await alice.createSession({ type: 'park' });
    const b = await bob.createSession({ type: 'park' });
    const aliceList = (await alice.listSessions()).map((s) => s.session_id);
    const bobList = (await bob.listSessions()).map((s) => s.session_id);
    const adminList = (await admin.listSessions()).map((s) => s.session_id);
    assert.ok(aliceList.includes(a.session_id) && !aliceList.includes(b.session_id));
    assert.ok(bobList.includes(b.session_id) && !bobList.includes(a.session_id));
    assert.ok(adminList.includes(a.session_id) && adminList.includes(b.session_id));
    await rejects(bob.getInfo(a.session_id), 100062);
    assert.equal((await admin.getInfo(b.session_id)).user_id, 'bob');
    await admin.destroySession(b.session_id);
    assert.equal((await destroyedOf(b.session_id)).body!.code, 100011);
    await alice.destroySession(a.session_id);
    await bob.close();
  });

  it('a user subscribed to all sessions does not get other users\' events', async () => {
    const bob = await connectClient(server, 'bob');
    await bob.subscribe({ class: 'media', subclass: 'session' });
    const bobEvents: EventData[] = [];
    bob.onEvent((e) => bobEvents.push(e));
    const a = await alice.createSession({ type: 'park' });
    await alice.destroySession(a.session_id);
    await destroyedOf(a.session_id);
    const mine = await bob.createSession({ type: 'park' });
    await bob.destroySession(mine.session_id);
    await eventually(() => bobEvents.some((e) => e.obj_id === mine.session_id && e.type === 'destroyed'), 3000, 'own event');
    assert.equal(bobEvents.filter((e) => e.obj_id === a.session_id).length, 0);
    await bob.close();
  });
});

describe('events', () => {
  it('subscribe:false with session_events pushes only the chosen types, with session_events_body', async () => {
    const dave = await connectClient(server, 'dave');
    const events: EventData[] = [];
    dave.onEvent((e) => events.push(e));
    const s = await dave.createSession({ type: 'park', subscribe: false, session_events: ['destroyed'], session_events_body: { tag: 'x' } });
    await dave.destroySession(s.session_id);
    const ev = await eventually(() => events.find((e) => e.obj_id === s.session_id && e.type === 'destroyed'), 3000, 'direct destroyed');
    assert.deepEqual(ev.body, { tag: 'x', code: 100011, reason: 'User stop' });
    assert.equal(events.filter((e) => e.obj_id === s.session_id && e.type !== 'destroyed').length, 0);
    await dave.close();
  });

  it('events_body is merged into the creator\'s events (the event\'s own keys win)', async () => {
    const events: EventData[] = [];
    const off = alice.onEvent((e) => events.push(e));
    const s = await alice.createSession({ type: 'park', events_body: { app: 'demo', code: 'ignored' } });
    await alice.destroySession(s.session_id);
    const ev = await eventually(() => events.find((e) => e.obj_id === s.session_id && e.type === 'destroyed'), 3000, 'destroyed');
    assert.deepEqual(ev.body, { app: 'demo', code: 100011, reason: 'User stop' });
    assert.equal(events.find((e) => e.obj_id === s.session_id)!.type, 'created');
    off();
  });

  it('subscribe, get_subscriptions, unsubscribe; one delivery per event per connection', async () => {
    const erin = await connectClient(server, 'erin');
    await erin.subscribe({ class: 'media', subclass: 'session', type: 'destroyed' });
    await erin.subscribe({ class: 'media' });
    const subs = await erin.request('core', 'event', 'get_subscriptions');
    assert.ok(subs.some((s: any) => s.class === 'media' && s.subclass === 'session' && s.type === 'destroyed' && s.obj_id === '*'));
    assert.ok(subs.some((s: any) => s.class === 'media' && s.subclass === '*' && s.type === '*'));
    const events: EventData[] = [];
    erin.onEvent((e) => events.push(e));
    const s = await erin.createSession({ type: 'park', subscribe: false });
    await erin.destroySession(s.session_id);
    await eventually(() => events.some((e) => e.type === 'destroyed'), 3000, 'destroyed');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(events.filter((e) => e.obj_id === s.session_id && e.type === 'destroyed').length, 1);
    await erin.unsubscribe({ class: 'media' });
    await rejects(erin.unsubscribe({ class: 'media' }), 100041);
    await erin.close();
  });
});
