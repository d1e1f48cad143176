// Calls (media/call): a werift caller rings users' connections (werift callees); the first to
// accept is bridged with the caller and the media is checked by packets both ways; the other
// legs are cancelled; rejection, ring timeout, hangups, vanishing parties, bad input; and after
// every call nothing is left: no session, engine element, call or subscription.
import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, connectClient, eventually } from './helpers/server.js';
import { TestPeer } from './helpers/peer.js';
import type { Server } from '../src/main.js';
import { NkMediaError, type CallInvite, type CandidateInit, type EventData, type NkMediaClient } from '../src/client/index.js';

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

async function receives(peer: TestPeer, kind: 'audio' | 'video', tag: number, n = 10): Promise<void> {
  const start = peer.from(kind, tag).length;
  await eventually(() => peer.from(kind, tag).length >= start + n, 5000, `${kind} from ${tag.toString(16)}`);
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
