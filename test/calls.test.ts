// Calls (media/call): a werift caller rings users' connections (werift callees); the first to
// accept is bridged with the caller and the media is checked by packets both ways; the other
// legs are cancelled; rejection, ring timeout, hangups, vanishing parties, bad input; and after
// every call nothing is left: no session, engine element, call or subscription.
import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { receives } from './helpers/flows.js';
import { startTestServer, connectClient, eventually } from './helpers/server.js';
import { TestPeer } from './helpers/peer.js';
import type { Server } from '../src/main.js';
import { NkMediaError, type CallInvite, type CandidateInit, type EventData, type NkMediaClient } from '../src/client/index.js';
import type { CallParty, LegControl, OutgoingLeg, PartyEvent } from '../src/core/calls/types.js';
import type { Call } from '../src/core/calls/call.js';
import type { StopCause } from '../src/protocol/errors.js';

let server: Server;
const open: NkMediaClient[] = [];
const peers: TestPeer[] = [];

before(async () => { server = await startTestServer(); });
after(async () => { await server.close(); });

/** One logged-in connection that records its events and the invites it gets. */
interface Party {
  client: NkMediaClient;
  events: EventData[];
  invites: CallInvite[];
  /** How it replies to invites: ok (default) or an error reply (decline). */
  decline: boolean;
}

async function party(user: string, opts: { decline?: boolean } = {}): Promise<Party> {
  const client = await connectClient(server, user);
  open.push(client);
  const p: Party = { client, events: [], invites: [], decline: opts.decline ?? false };
  client.onEvent((e) => p.events.push(e));
  client.onInvite((inv) => { p.invites.push(inv); return !p.decline; });
  return p;
}

function newPeer(): TestPeer {
  const peer = new TestPeer();
  peers.push(peer);
  return peer;
}

const callEvents = (p: Party, callId: string, type?: string) =>
  p.events.filter((e) => e.subclass === 'call' && e.obj_id === callId && (type === undefined || e.type === type));

/** Feeds the call `candidate` events meant for `sessionId` (past and future) into `peer`. */
function followCallCandidates(p: Party, callId: string, sessionId: string, peer: TestPeer): void {
  const seen = new Set<EventData>();
  const take = (e: EventData) => {
    if (seen.has(e) || e.subclass !== 'call' || e.obj_id !== callId || e.type !== 'candidate' || e.body?.session_id !== sessionId) return;
    seen.add(e);
    void peer.addCandidate(e.body as CandidateInit).catch(() => undefined);
  };
  p.client.onEvent(take);
  for (const e of [...p.events]) take(e);
}

/** The caller: offers (trickle), calls `callee`, takes our answer and trades candidates through the call. */
async function placeCall(p: Party, callee: string | string[], extra: Record<string, unknown> = {}) {
  const peer = newPeer();
  const offer = await peer.makeOffer();
  const r = await p.client.createCall({ callee, offer: { sdp: offer.sdp, trickle_ice: true }, wait_reply: true, ...extra });
  assert.ok(r.answer, 'the caller gets its answer in the reply, before anyone picks up');
  await peer.takeAnswer(r.answer);
  followCallCandidates(p, r.call_id, r.session_id, peer);
  for (const c of offer.candidates) await p.client.setCallCandidate(r.call_id, c);
  await p.client.setCallCandidateEnd(r.call_id);
  return { callId: r.call_id, sessionId: r.session_id, peer };
}

/** A callee answers its invite (trickle both ways through the call). */
async function answerCall(p: Party, invite: CallInvite): Promise<TestPeer> {
  const peer = newPeer();
  const answer = await peer.answerOffer(invite.offer);
  followCallCandidates(p, invite.call_id, invite.session_id, peer);
  await p.client.acceptCall(invite.call_id, { sdp: answer.sdp, trickle_ice: true });
  for (const c of answer.candidates) await p.client.setCallCandidate(invite.call_id, c);
  await p.client.setCallCandidateEnd(invite.call_id);
  return peer;
}

async function inviteOf(p: Party, callId: string): Promise<CallInvite> {
  return eventually(() => p.invites.find((i) => i.call_id === callId), 5000, `invite of ${callId}`);
}


async function rejects(p: Promise<unknown>, code: number, what: string): Promise<NkMediaError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof NkMediaError, `${what}: expected an error, got ${String(err)}`);
  assert.equal(err.code, code, `${what}: ${err.message}`);
  return err;
}

const sessionGone = (id: string) => server.services.sessions.lookup(id) === undefined;

/** After each test: every call, session and engine element is gone, subscriptions are back. */
afterEach(async () => {
  for (const p of peers.splice(0)) await p.close();
  for (const c of open.splice(0)) await c.close();
  await eventually(async () => server.services.calls.size === 0 && server.services.sessions.size === 0 && (await server.engine.counters()).elements === 0,
    10000, 'no call, session or element left');
  // The connections are closed too: no subscription at all may be left.
  await eventually(() => server.services.bus.subscriptionCount === 0, 5000, `no subscription left (${server.services.bus.subscriptionCount})`);
});

describe('a call to a user on two connections', () => {
  it('rings both, bridges the one that accepts (RTP both ways), cancels the other', async () => {
    const alice = await party('alice');
    const bob1 = await party('bob');
    const bob2 = await party('bob');
    const { callId, sessionId, peer: callerPeer } = await placeCall(alice, 'bob', { caller: { name: 'Alice' } });
    assert.match(callId, /^call-/);
    const inv1 = await inviteOf(bob1, callId);
    const inv2 = await inviteOf(bob2, callId);
    assert.equal(inv1.type, 'user');
    assert.equal(inv1.user_id, 'alice');
    assert.deepEqual(inv1.caller, { name: 'Alice' });
    assert.notEqual(inv1.session_id, inv2.session_id, 'each leg is its own session');
    assert.equal(inv1.offer.trickle_ice, true);
    // The caller's answer also came as the reference's `answer` event.
    assert.equal(callEvents(alice, callId, 'answer')[0]?.body?.session_id, sessionId);

    await bob1.client.callRinging(callId, { name: 'Bob (desk)' });
    await bob2.client.callRinging(callId);
    await eventually(() => callEvents(alice, callId, 'ringing').length === 2, 5000, 'two ringing events');
    assert.deepEqual(callEvents(alice, callId, 'ringing')[0]!.body, { callee: { name: 'Bob (desk)' }, user_id: 'bob' });

    const calleePeer = await answerCall(bob1, inv1);
    await eventually(() => callEvents(alice, callId, 'accepted').length === 1, 5000, 'accepted event');
    // The other leg is told and its session is gone.
    const cancel = await eventually(() => callEvents(bob2, callId, 'hangup')[0], 5000, 'cancelled leg hears hangup');
    assert.equal(cancel.body?.code, 305008);
    assert.equal(cancel.body?.session_id, inv2.session_id);
    await eventually(() => sessionGone(inv2.session_id), 5000, 'cancelled leg session gone');
    assert.equal(callEvents(bob2, callId, 'accepted').length, 0, 'the cancelled leg is out of the call');

    await Promise.all([callerPeer.waitConnected(), calleePeer.waitConnected()]);
    callerPeer.startSending();
    calleePeer.startSending();
    await receives(callerPeer, 'audio', calleePeer.tag);
    await receives(callerPeer, 'video', calleePeer.tag);
    await receives(calleePeer, 'audio', callerPeer.tag);
    await receives(calleePeer, 'video', callerPeer.tag);
    assert.equal(callerPeer.from('video', callerPeer.tag).length, 0, 'no echo');

    const info = await alice.client.getCallInfo(callId);
    assert.equal(info.state, 'answered');
    assert.equal(info.session_id, sessionId);
    assert.equal(info.answered_by, inv1.session_id);
    assert.deepEqual(info.legs.map((l: { state: string }) => l.state).sort(), ['accepted', 'cancelled']);
    const calleeInfo = await bob1.client.getInfo(inv1.session_id);
    assert.equal(calleeInfo.type, 'bridge');
    assert.equal(calleeInfo.peer_id, sessionId);
    // The losing leg cannot take the call any more.
    await rejects(bob2.client.acceptCall(callId, { sdp: inv2.offer.sdp }), 305002, 'accept after cancel');
    await rejects(bob1.client.acceptCall(callId, { sdp: inv1.offer.sdp }), 305002, 'double accept');

    await alice.client.hangupCall(callId, 'bye');
    const h = await eventually(() => callEvents(bob1, callId, 'hangup')[0], 5000, 'callee hears hangup');
    assert.equal(h.body?.code, 305011);
    assert.equal(h.body?.reason, 'API hangup: bye');
    await eventually(() => sessionGone(sessionId) && sessionGone(inv1.session_id), 5000, 'both sessions gone');
    await rejects(alice.client.getCallInfo(callId), 305001, 'get_info after the end');
  });
});

describe('calls that nobody answers', () => {
  it('ends with call_rejected when every leg declines (command or error reply to the invite)', async () => {
    const alice = await party('alice');
    const bob1 = await party('bob');
    const bob2 = await party('bob', { decline: true });
    const { callId } = await placeCall(alice, 'bob');
    const inv1 = await inviteOf(bob1, callId);
    await inviteOf(bob2, callId);
    // bob2's error reply declined its leg already.
    await eventually(async () => (await alice.client.getCallInfo(callId)).legs.some((l: { state: string }) => l.state === 'rejected'), 5000, 'declined leg');
    await bob1.client.callRinging(callId);
    await bob1.client.rejectCall(callId);
    const h = await eventually(() => callEvents(alice, callId, 'hangup')[0], 5000, 'caller hears hangup');
    assert.deepEqual(h.body, { code: 305006, reason: 'Call rejected' });
    await eventually(() => server.services.sessions.size === 0, 5000, 'every session gone');
    await rejects(bob1.client.acceptCall(callId, { sdp: inv1.offer.sdp }), 305001, 'accept after the call ended');
  });

  it('ends with no_answer when the ring time passes, and every leg hears it', async () => {
    const alice = await party('alice');
    const bob = await party('bob');
    const { callId, sessionId } = await placeCall(alice, 'bob', { ring_time: 1 });
    const inv = await inviteOf(bob, callId);
    await bob.client.callRinging(callId);
    const h = await eventually(() => callEvents(alice, callId, 'hangup')[0], 5000, 'caller hears hangup');
    assert.deepEqual(h.body, { code: 305007, reason: 'No answer' });
    assert.equal((await eventually(() => callEvents(bob, callId, 'hangup')[0], 5000, 'callee hears hangup')).body?.code, 305007);
    await eventually(() => sessionGone(sessionId) && sessionGone(inv.session_id), 5000, 'sessions gone');
  });

  it('a leg whose invite gets no reply fails (its callee is told); with no leg left the call ends', async () => {
    const alice = await party('alice');
    const bob = await party('bob');
    bob.client.onRequest('media/call/invite', (req) => { bob.invites.push(req.data as CallInvite); return new Promise(() => undefined); });
    const saved = server.services.calls.inviteTimeoutMs;
    server.services.calls.inviteTimeoutMs = 300;
    try {
      const { callId } = await placeCall(alice, 'bob');
      const inv = await inviteOf(bob, callId);
      const told = await eventually(() => callEvents(bob, callId, 'hangup')[0], 5000, 'callee told its leg ended');
      assert.deepEqual(told.body, { code: 100005, reason: 'Timeout', session_id: inv.session_id });
      const h = await eventually(() => callEvents(alice, callId, 'hangup')[0], 5000, 'caller hears hangup');
      assert.equal(h.body?.code, 305005);
      assert.match(String(h.body?.reason), /no destination could be rung \(Timeout\)/);
    } finally {
      server.services.calls.inviteTimeoutMs = saved;
    }
  });

  it('a callee whose connection goes away leaves the call; the last one ends it', async () => {
    const alice = await party('alice');
    const bob = await party('bob');
    const { callId } = await placeCall(alice, 'bob');
    await inviteOf(bob, callId);
    await bob.client.close();
    const h = await eventually(() => callEvents(alice, callId, 'hangup')[0], 5000, 'caller hears hangup');
    assert.equal(h.body?.code, 305005, `no destination left: ${JSON.stringify(h.body)}`);
  });
});

describe('hanging up', () => {
  async function connectedCall() {
    const alice = await party('alice');
    const bob = await party('bob');
    const call = await placeCall(alice, 'bob');
    const inv = await inviteOf(bob, call.callId);
    const calleePeer = await answerCall(bob, inv);
    await Promise.all([call.peer.waitConnected(), calleePeer.waitConnected()]);
    call.peer.startSending();
    await receives(calleePeer, 'audio', call.peer.tag);
    return { alice, bob, inv, ...call, calleePeer };
  }

  it('by the callee ends the call and both sessions', async () => {
    const { alice, bob, callId, sessionId, inv } = await connectedCall();
    await bob.client.hangupCall(callId);
    const h = await eventually(() => callEvents(alice, callId, 'hangup')[0], 5000, 'caller hears hangup');
    assert.equal(h.body?.code, 305011);
    await eventually(() => sessionGone(sessionId) && sessionGone(inv.session_id), 5000, 'sessions gone');
  });

  it('when the callee destroys its session, the call ends with that reason', async () => {
    const { alice, bob, callId, sessionId, inv } = await connectedCall();
    await bob.client.destroySession(inv.session_id);
    const h = await eventually(() => callEvents(alice, callId, 'hangup')[0], 5000, 'caller hears hangup');
    assert.deepEqual(h.body, { code: 100011, reason: 'User stop' });
    await eventually(() => sessionGone(sessionId), 5000, 'caller session gone');
  });

  it('when the caller disconnects, the callee hears caller_disconnected', async () => {
    const { alice, bob, callId, inv } = await connectedCall();
    await alice.client.close();
    const h = await eventually(() => callEvents(bob, callId, 'hangup')[0], 5000, 'callee hears hangup');
    assert.deepEqual(h.body, { code: 305009, reason: 'Caller disconnected' });
    await eventually(() => sessionGone(inv.session_id), 5000, 'callee session gone');
  });

  it('when the answering callee disconnects, the caller hears callee_disconnected', async () => {
    const { alice, bob, callId, sessionId } = await connectedCall();
    await bob.client.close();
    const h = await eventually(() => callEvents(alice, callId, 'hangup')[0], 5000, 'caller hears hangup');
    assert.deepEqual(h.body, { code: 305010, reason: 'Callee disconnected' });
    await eventually(() => sessionGone(sessionId), 5000, 'caller session gone');
  });
});

describe('destinations', () => {
  it('a connection id, a list rung in parallel, never the caller itself', async () => {
    const alice1 = await party('alice');
    const alice2 = await party('alice');
    const bob = await party('bob');
    const carol = await party('carol');
    // alice's own other connection by id, and bob by name; carol is not called.
    const { callId } = await placeCall(alice1, [`session:${alice2.client.sessionId}`, 'user:bob', 'alice']);
    const invA = await inviteOf(alice2, callId);
    assert.equal(invA.type, 'session');
    await inviteOf(bob, callId);
    assert.equal(alice1.invites.length, 0, 'the caller is not rung');
    const info = await alice1.client.getCallInfo(callId);
    assert.equal(info.legs.length, 2, 'alice2 is rung once');
    assert.equal(carol.invites.length, 0);
    // bob sees the call (he is rung); carol does not.
    assert.deepEqual((await bob.client.listCalls()).map((c) => c.call_id), [callId]);
    assert.deepEqual(await carol.client.listCalls(), []);
    await rejects(carol.client.getCallInfo(callId), 305001, 'get_info of a call you are not in');
    await rejects(carol.client.acceptCall(callId, { sdp: invA.offer.sdp }), 305001, 'accept from an unrelated connection');
    await rejects(alice1.client.acceptCall(callId, { sdp: invA.offer.sdp }), 305004, 'the caller accepting its own call');
    // A connection of a rung user that logged in after the call started was not invited.
    const bobLate = await party('bob');
    await rejects(bobLate.client.acceptCall(callId, { sdp: invA.offer.sdp }), 305004, 'accept from an uninvited connection of the callee');
    await rejects(bobLate.client.hangupCall(callId), 305004, 'hangup from an uninvited connection of the callee');
    await alice1.client.hangupCall(callId);
  });

  it('unknown users, offline users and sip: URIs without a SIP agent are refused at create', async () => {
    const alice = await party('alice');
    const offer = { sdp: (await newPeer().makeOffer()).sdp, trickle_ice: true };
    await rejects(alice.client.createCall({ callee: 'nobody', offer }), 305005, 'offline user');
    await rejects(alice.client.createCall({ callee: 'alice', offer }), 305005, 'only the caller itself');
    const e = await rejects(alice.client.createCall({ callee: ['nobody', 'sip:bob@127.0.0.1'], offer }), 100006, 'sip: without an agent');
    assert.match(e.message, /sip/);
    assert.equal(server.services.sessions.size, 0, 'nothing was started');
  });
});

describe('bad input', () => {
  it('gets clear errors and leaves the call ringing', async () => {
    const alice = await party('alice');
    const bob1 = await party('bob');
    const bob2 = await party('bob');
    const offer = { sdp: (await newPeer().makeOffer()).sdp, trickle_ice: true };
    await rejects(alice.client.call('create', { offer }), 100045, 'no callee');
    await rejects(alice.client.call('create', { callee: 'bob' }), 100045, 'no offer');
    await rejects(alice.client.call('create', { callee: 'bob', offer, ring_time: 181 }), 100046, 'ring_time over 180');
    await rejects(alice.client.call('create', { callee: [], offer }), 100046, 'empty callee list');
    await rejects(alice.client.call('create', { callee: 'bob', offer: { sdp: 'v=0\r\nbad' } }), 300016, 'bad offer');
    await rejects(alice.client.call('create', { callee: 'bob', offer, backend: 'p2p' }), 300003, 'other backend');
    assert.equal(bob1.invites.length, 0, 'a failed create rings nobody');
    await rejects(alice.client.callRinging('call-nope'), 305001, 'unknown call');
    await rejects(alice.client.hangupCall('call-nope'), 305001, 'hangup of an unknown call');
    await rejects(alice.client.call('ringing', {}), 100045, 'no call_id');
    await rejects(alice.client.call('create', { callee: 'bob carol', offer }), 100046, 'a callee with a space');
    await rejects(alice.client.call('create', { callee: Array.from({ length: 17 }, (_, i) => `u${i}`), offer }), 100046, 'more than 16 destinations');
    await rejects(alice.client.call('create', { callee: 'bob', offer, type: 'verto' }), 100046, 'unknown callee type');
    // Stray replies (to requests the server never sent) are ignored; the connection goes on.
    alice.client.sendRaw(JSON.stringify({ result: 'ok', tid: 999999 }));
    alice.client.sendRaw(JSON.stringify({ result: 'error', data: { code: 1, error: 'x' }, tid: 'nope' }));
    assert.deepEqual(await alice.client.listCalls(), []);

    const { callId } = await placeCall(alice, 'bob', { call_id: 'call-fixed-id' });
    assert.equal(callId, 'call-fixed-id');
    await rejects(alice.client.createCall({ callee: 'bob', offer, call_id: 'call-fixed-id' }), 305003, 'duplicate call_id');
    const inv1 = await inviteOf(bob1, callId);
    const inv2 = await inviteOf(bob2, callId);
    // A broken answer is refused and the call rings on: the other leg can still take it.
    await rejects(bob1.client.acceptCall(callId, { sdp: 'v=0\r\nnope' }), 300016, 'bad answer');
    await rejects(bob1.client.call('accepted', { call_id: callId }), 100045, 'accept without answer');
    const calleePeer = await answerCall(bob2, inv2);
    await rejects(bob1.client.acceptCall(callId, { sdp: inv1.offer.sdp }), 305002, 'accept after the other leg answered');
    await rejects(bob1.client.callRinging(callId), 305002, 'ringing after cancel');
    await rejects(bob1.client.setCallCandidate(callId, { candidate: 'candidate:1 1 udp 1 127.0.0.1 9 typ host', sdpMLineIndex: 0 }), 305002, 'candidate after cancel');
    await calleePeer.waitConnected();
    await bob2.client.hangupCall(callId);
    await eventually(() => callEvents(alice, callId, 'hangup').length === 1, 5000, 'hangup');
  });
});

describe('destination drivers (the seam the SIP user agent plugs into)', () => {
  /** A driver for `test:` URIs whose remote parties are werift peers (standing in for phones). */
  const legs: OutgoingLeg[] = [];
  const ends: { uri: string; cause: StopCause; answered: boolean }[] = [];
  before(() => {
    server.services.calls.registerDriver({
      schemes: ['test'],
      sdpType: 'webrtc',
      invite(uri, leg): LegControl {
        legs.push(leg);
        return { end: (cause, answered) => ends.push({ uri, cause, answered }) };
      },
    });
  });

  /** The caller with a complete offer (no trickling): the driver's legs get complete offers too. */
  async function placeCompleteCall(p: Party, callee: string | string[]) {
    const peer = newPeer();
    await peer.makeOffer();
    const r = await p.client.createCall({ callee, offer: { sdp: peer.pc.localDescription!.sdp, trickle_ice: false }, no_offer_trickle_ice: true, wait_reply: true });
    await peer.takeAnswer(r.answer!);
    followCallCandidates(p, r.call_id, r.session_id, peer);
    return { callId: r.call_id, sessionId: r.session_id, peer };
  }

  it('rings a driver URI next to a user; the driver answers, media flows, its hangup ends the call', async () => {
    const alice = await party('alice');
    const bob = await party('bob');
    const { callId, peer: callerPeer } = await placeCompleteCall(alice, ['test:phone-1', 'bob']);
    const leg = await eventually(() => legs.find((l) => l.callId === callId), 5000, 'driver leg');
    assert.equal(leg.callerUser, 'alice');
    assert.equal(leg.offer.trickle_ice, false, 'complete offer for the driver');
    await inviteOf(bob, callId);
    await bob.client.rejectCall(callId);
    leg.ringing({ name: 'desk phone' });
    await eventually(() => callEvents(alice, callId, 'ringing').some((e) => e.body?.uri === 'test:phone-1'), 5000, 'ringing from the driver leg');
    // The phone answers with a complete SDP.
    const phone = newPeer();
    await phone.answerOffer(leg.offer);
    await leg.accept({ sdp: phone.pc.localDescription!.sdp, trickle_ice: false });
    await assert.rejects(leg.accept({ sdp: phone.pc.localDescription!.sdp }), (e: Error) => e.message === 'Already answered');
    await Promise.all([callerPeer.waitConnected(), phone.waitConnected()]);
    callerPeer.startSending();
    phone.startSending();
    await receives(callerPeer, 'audio', phone.tag);
    await receives(callerPeer, 'video', phone.tag);
    await receives(phone, 'audio', callerPeer.tag);
    await receives(phone, 'video', callerPeer.tag);
    leg.hangup('bye from the phone');
    const h = await eventually(() => callEvents(alice, callId, 'hangup')[0], 5000, 'caller hears hangup');
    assert.equal(h.body?.reason, 'API hangup: bye from the phone');
    assert.deepEqual(ends.filter((e) => e.uri === 'test:phone-1').map((e) => e.answered), [true]);
  });

  it('a driver leg is cancelled (not answered) when a user takes the call', async () => {
    const alice = await party('alice');
    const bob = await party('bob');
    const { callId } = await placeCompleteCall(alice, ['test:phone-2', 'bob']);
    const leg = await eventually(() => legs.find((l) => l.callId === callId), 5000, 'driver leg');
    const inv = await inviteOf(bob, callId);
    const calleePeer = newPeer();
    await calleePeer.answerOffer(inv.offer);
    await bob.client.acceptCall(callId, { sdp: calleePeer.pc.localDescription!.sdp, trickle_ice: false });
    const end = await eventually(() => ends.find((e) => e.uri === 'test:phone-2'), 5000, 'driver leg ended');
    assert.equal(end.answered, false);
    assert.equal(end.cause.term, 'answered_elsewhere');
    await eventually(() => sessionGone(leg.sessionId), 5000, 'driver leg session gone');
    await calleePeer.waitConnected();
    await alice.client.hangupCall(callId);
  });

  it('a call placed by a non-API party (as the SIP agent does for incoming calls) rings a user', async () => {
    const bob = await party('bob');
    const sipEvents: string[] = [];
    const partyEvents: PartyEvent[] = [];
    // The SIP agent stands in for the caller with a party of its own (one per dialog) and follows
    // the call through its domain events.
    const dialog: CallParty = { id: 'sip-dialog-1', notify: (_call, ev) => { partyEvents.push(ev); }, follow: () => undefined };
    const follow = (c: Call): void => {
      c.events.on('ringing', () => sipEvents.push('ringing')).on('accepted', () => sipEvents.push('accepted'));
      c.events.on('hangup', (cause) => sipEvents.push(`hangup: ${cause.term} ${cause.detail}`));
    };
    const phone = newPeer();
    await phone.makeOffer();
    const r = await server.services.calls.create(
      { callee: 'user:bob', offer: { sdp: phone.pc.localDescription!.sdp, trickle_ice: false }, no_answer_trickle_ice: true, wait_reply: true },
      dialog, { user: 'sip', admin: false, connId: dialog.id }, { onCall: follow },
    );
    assert.equal(r.answer?.trickle_ice, false, 'a complete answer, for the 200 OK');
    await phone.takeAnswer(r.answer!);
    const inv = await inviteOf(bob, r.call_id);
    assert.equal(inv.user_id, 'sip');
    await bob.client.callRinging(r.call_id);
    await eventually(() => sipEvents.includes('ringing'), 5000, 'the agent hears ringing (180)');
    const calleePeer = await answerCall(bob, inv);
    await eventually(() => sipEvents.includes('accepted'), 5000, 'the agent hears accepted (200)');
    await Promise.all([phone.waitConnected(), calleePeer.waitConnected()]);
    phone.startSending();
    calleePeer.startSending();
    await receives(calleePeer, 'audio', phone.tag);
    await receives(phone, 'audio', calleePeer.tag);
    // The phone hangs up (BYE).
    await server.services.calls.hangup(r.call_id, 'BYE');
    assert.ok(sipEvents.includes('hangup: api_hangup BYE'), sipEvents.join());
    // Our answer came in the create's reply; nothing else was meant for the phone alone.
    assert.ok(partyEvents.every((e) => e.type === 'answer'), partyEvents.map((e) => e.type).join());
    await eventually(() => callEvents(bob, r.call_id, 'hangup').length === 1, 5000, 'bob hears hangup');
  });
});
