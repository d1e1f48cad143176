// Calls on a fake engine (docs/API.md §10): forking to every connection of a user, the first
// accept wins and the other legs are cancelled, hangups and disconnections on each side,
// declines, ring and invite timeouts, the call's locks on its sessions, destinations, driver
// legs. Callees are fake connections whose invites the tests answer by hand.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ApiError } from '../src/protocol/errors.js';
import { EngineError, MEDIA_KINDS, type MediaKind } from '../src/engine/types.js';
import { countCandidates } from '../src/protocol/sdp.js';
import { UNLIMITED } from '../src/core/sessions/quota.js';
import type { CallCreateRequest } from '../src/protocol/call-schemas.js';
import type { SdpObject } from '../src/protocol/session-schemas.js';
import type { Call, Leg } from '../src/core/calls/call.js';
import type { CallDestinationDriver, LegControl, OutgoingLeg } from '../src/core/calls/types.js';
import type { StopCause } from '../src/protocol/errors.js';
import {
  TestCore, apiTerm, coresClosedAfterEach, clientAnswer, clientCandidate, clientOffer, phoneSdp, sleep, until,
  type FakeCallConnection, type ReceivedRequest,
} from './helpers/fake-engine.js';
import type { Caller } from '../src/core/sessions/manager.js';

type Conn = FakeCallConnection & { caller: Caller };

const core = coresClosedAfterEach();

const term = apiTerm;

/** A logged-in connection calls can ring. */
function login(tc: TestCore, user: string, opts: { admin?: boolean } = {}): Conn {
  const c = tc.conn(user, opts);
  tc.calls.connectionUp(c.callParty);
  return c;
}

/** Places a call from `from` (an API connection) and keeps the Call object and its domain events. */
async function place(tc: TestCore, from: Conn, req: Partial<CallCreateRequest>) {
  let call!: Call;
  const domain: string[] = [];
  const r = await tc.calls.create({ offer: { sdp: clientOffer(), trickle_ice: true }, ring_time: 10, ...req } as CallCreateRequest, from.callParty, from.caller, {
    onCall: (c) => {
      call = c;
      from.callParty.setEventsBody(c, req.events_body);
      c.events.on('ringing', () => domain.push('ringing')).on('accepted', () => domain.push('accepted')).on('hangup', (x) => domain.push(`hangup:${x.term}`));
    },
  });
  const callerSession = tc.sessions.lookup(r.session_id)!;
  return { r, call, domain, callerSession };
}

const legOf = (tc: TestCore, call: Call, conn: Conn): Leg => tc.calls.legFor(call, conn.id);
const offerOf = (inv: ReceivedRequest) => inv.data.offer as SdpObject;
const answerTo = (inv: ReceivedRequest): SdpObject => ({ sdp: clientAnswer(offerOf(inv).sdp), trickle_ice: true });
const all = (source: string | undefined, kinds: readonly MediaKind[] = MEDIA_KINDS) => Object.fromEntries(kinds.map((k) => [k, source]));
const callEvents = (c: Conn, callId: string, type?: string) => c.events.filter((e) => e.subclass === 'call' && e.obj_id === callId && (type === undefined || e.type === type));

describe('forking: a call to a user on two connections', () => {
  it('rings both; the first accept is bridged with the caller, the other leg is cancelled and told', async () => {
    const tc = core();
    const alice = login(tc, 'alice');
    const bob1 = login(tc, 'bob');
    const bob2 = login(tc, 'bob');
    const { r, call, domain, callerSession } = await place(tc, alice, { callee: 'bob', caller: { name: 'Alice' } });
    assert.equal(callerSession.type, 'park');
    assert.equal(callerSession.state, 'ready', 'the caller has its answer before anyone picks up');
    assert.equal(callEvents(alice, r.call_id, 'answer').length, 1);

    const [inv1, inv2] = await Promise.all([bob1.nextRequest(), bob2.nextRequest()]);
    for (const [inv, conn] of [[inv1, bob1], [inv2, bob2]] as const) {
      assert.equal(inv.cls, 'media');
      assert.equal(inv.subclass, 'call');
      assert.equal(inv.data.call_id, r.call_id);
      assert.equal(inv.data.type, 'user');
      assert.deepEqual(inv.data.caller, { name: 'Alice' });
      assert.equal(inv.data.user_id, 'alice');
      assert.equal(offerOf(inv).trickle_ice, true);
      assert.equal(inv.data.session_id, legOf(tc, call, conn).id);
    }
    inv1.reply({ result: 'ok' });
    inv2.reply({ result: 'ok', data: { subscribe: true, events_body: { mine: 2 } } });
    await tc.engine.settle();
    // Each callee gets the candidates of its own leg, after its invite.
    for (const [inv, conn] of [[inv1, bob1], [inv2, bob2]] as const) {
      const cands = callEvents(conn, r.call_id, 'candidate');
      assert.equal(cands.length, 2);
      assert.ok(cands.every((e) => e.body!.session_id === inv.data.session_id));
      assert.equal(callEvents(conn, r.call_id, 'candidate_end').length, 1);
    }
    assert.equal(callEvents(alice, r.call_id, 'candidate').filter((e) => e.body!.session_id !== r.session_id).length, 0, 'the caller gets only its own');

    const leg1 = legOf(tc, call, bob1);
    const leg2 = legOf(tc, call, bob2);
    call.ringing(leg2, { ua: 'phone' });
    for (const c of [alice, bob1, bob2]) assert.equal(callEvents(c, r.call_id, 'ringing').length, 1, `${c.id} hears ringing`);
    assert.equal(callEvents(bob2, r.call_id, 'ringing')[0]!.body!.mine, 2, 'its events_body');
    assert.deepEqual(callEvents(alice, r.call_id, 'ringing')[0]!.body, { callee: { ua: 'phone' }, user_id: 'bob' });

    const ans1 = answerTo(inv1);
    await call.accept(leg1, ans1, { name: 'Bob' });
    assert.equal(call.state, 'answered');
    assert.equal(leg1.state, 'accepted');
    assert.equal(leg2.state, 'cancelled');
    const s1 = leg1.session!;
    const s2 = leg2.session!;
    await s2.whenDestroyed;
    assert.deepEqual(s2.stopCause, { term: 'answered_elsewhere' });
    assert.deepEqual(callEvents(bob2, r.call_id, 'hangup').at(-1)!.body, { mine: 2, code: 305008, reason: 'Answered elsewhere', session_id: leg2.id });
    assert.equal(callEvents(bob2, r.call_id, 'accepted').length, 0, 'unsubscribed before the accept');
    for (const c of [alice, bob1]) assert.deepEqual(callEvents(c, r.call_id, 'accepted')[0]!.body, { callee: { name: 'Bob' }, user_id: 'bob' });

    // Bridged both ways; the leg got the answer and no renegotiation of the caller happened.
    assert.equal(tc.engine.callsOf('processAnswer', tc.engine.endpointOf(s1.id))[0]!.args[1], ans1.sdp);
    assert.deepEqual(tc.engine.sourcesOf(tc.engine.endpointOf(callerSession.id)!), all(s1.proxy));
    assert.deepEqual(tc.engine.sourcesOf(tc.engine.endpointOf(s1.id)!), all(callerSession.proxy));
    assert.equal(callerSession.type, 'bridge');
    assert.equal(s1.masterId, callerSession.id);
    assert.equal(tc.engine.callsOf('processOffer').length, 1);

    await assert.rejects(call.accept(leg2, answerTo(inv2)), term('already_answered'));
    assert.throws(() => call.ringing(leg2), term('already_answered'));

    await call.hangup(undefined, 'bye');
    for (const c of [alice, bob1]) assert.deepEqual(callEvents(c, r.call_id, 'hangup').at(-1)!.body, { code: 305011, reason: 'API hangup: bye' });
    assert.deepEqual(domain, ['ringing', 'accepted', 'hangup:api_hangup']);
    await Promise.all([s1.whenDestroyed, callerSession.whenDestroyed]);
    assert.equal(s1.stopCause!.term, 'api_hangup');
    assert.equal(callerSession.stopCause!.term, 'api_hangup');
    assert.throws(() => tc.calls.get(r.call_id, alice.caller), term('call_not_found'));
    assert.equal(tc.engine.liveCount, 0);
    assert.equal(tc.bus.subscriptionCount, 0, 'every subscription to the call went with it');
  });

  it('two accepts at once: one wins, the other gets already_answered', async () => {
    const tc = core();
    const alice = login(tc, 'alice');
    const bob1 = login(tc, 'bob');
    const bob2 = login(tc, 'bob');
    const { call } = await place(tc, alice, { callee: 'bob' });
    const [inv1, inv2] = await Promise.all([bob1.nextRequest(), bob2.nextRequest()]);
    const results = await Promise.allSettled([call.accept(legOf(tc, call, bob1), answerTo(inv1)), call.accept(legOf(tc, call, bob2), answerTo(inv2))]);
    assert.equal(results[0].status, 'fulfilled');
    assert.equal(results[1].status, 'rejected');
    assert.ok(term('already_answered')((results[1] as PromiseRejectedResult).reason));
    assert.equal(tc.engine.callsOf('processAnswer').length, 1);
  });

  it('the caller hangs up while it rings: invites are withdrawn, each callee hears hangup, every session stops', async () => {
    const tc = core();
    const alice = login(tc, 'alice');
    const bob1 = login(tc, 'bob');
    const bob2 = login(tc, 'bob');
    const { r, call, domain, callerSession } = await place(tc, alice, { callee: 'bob' });
    const [inv1, inv2] = await Promise.all([bob1.nextRequest(), bob2.nextRequest()]);
    inv1.reply({ result: 'ok' }); // bob1 subscribed; bob2 never replied
    await tc.engine.settle();
    const legs = call.legs.map((l) => l.session!);
    await call.hangup(undefined);
    assert.equal(inv2.signal!.aborted, true, 'the pending invite is aborted');
    assert.deepEqual(call.legs.map((l) => l.state), ['cancelled', 'cancelled']);
    assert.deepEqual(callEvents(bob1, r.call_id, 'hangup').map((e) => e.body), [{ code: 305011, reason: 'API hangup' }]);
    assert.deepEqual(callEvents(bob2, r.call_id, 'hangup').map((e) => e.body), [{ code: 305011, reason: 'API hangup', session_id: inv2.data.session_id }], 'told directly');
    assert.equal(callEvents(alice, r.call_id, 'hangup').length, 1);
    await Promise.all([...legs, callerSession].map((s) => s.whenDestroyed));
    assert.ok([...legs, callerSession].every((s) => s.stopCause!.term === 'api_hangup'), 'legs stop with the call\'s reason, not peer_stopped');
    assert.deepEqual(domain, ['hangup:api_hangup']);
    await assert.rejects(call.hangup(undefined), term('call_not_found'));
  });

  it('the caller\'s session stops while it rings: the call ends with that session\'s reason', async () => {
    const tc = core();
    const alice = login(tc, 'alice');
    const bob = login(tc, 'bob');
    const { r, call, callerSession } = await place(tc, alice, { callee: 'bob' });
    (await bob.nextRequest()).reply({ result: 'ok' });
    await tc.engine.settle();
    await callerSession.stop('user_stop');
    await until(() => call.ended, 1000, 'ended');
    assert.deepEqual(call.endCause, { term: 'user_stop' });
    assert.equal(callEvents(bob, r.call_id, 'hangup')[0]!.body!.code, 100011);
  });

  it('an accept racing a hangup: the call ends cleanly and the accept fails', async () => {
    const tc = core();
    const alice = login(tc, 'alice');
    const bob = login(tc, 'bob');
    const { call } = await place(tc, alice, { callee: 'bob' });
    const inv = await bob.nextRequest();
    const release = tc.engine.holdNext('processAnswer');
    const accepting = call.accept(legOf(tc, call, bob), answerTo(inv));
    await until(() => tc.engine.callsOf('processAnswer').length === 1, 1000, 'answer being processed');
    const hangup = call.hangup(undefined);
    release();
    // The callee's `accepted` gets "Session stopped" (from the leg's set_answer) rather than call_not_found.
    await assert.rejects(accepting, (e) => e instanceof ApiError && ['session_stopped', 'call_not_found'].includes(e.term));
    await hangup;
    assert.deepEqual(call.endCause, { term: 'api_hangup' });
    assert.equal(callEvents(alice, call.id, 'accepted').length, 0);
    assert.equal(tc.engine.liveCount, 0);
  });

  it('hangup before any invite went out: the legs being made are dropped, nobody is invited later', async () => {
    const tc = core();
    const alice = login(tc, 'alice');
    const bob = login(tc, 'bob');
    const release = tc.engine.holdNext('generateOffer');
    const { call } = await place(tc, alice, { callee: 'bob' });
    await until(() => tc.engine.callsOf('generateOffer').length === 1, 1000, 'the leg\'s offer');
    await call.hangup(undefined);
    release();
    await sleep(10);
    assert.equal(bob.requests.length, 0);
    assert.equal(tc.engine.liveCount, 0);
  });
});

describe('calls nobody answers', () => {
  it('ring_time passes: no_answer, and every leg hears it', async () => {
    const tc = core();
    const alice = login(tc, 'alice');
    const bob = login(tc, 'bob');
    const carol = login(tc, 'carol');
    const { r, call, callerSession } = await place(tc, alice, { callee: ['bob', 'carol'], ring_time: 0.06 });
    (await bob.nextRequest()).reply({ result: 'ok' });
    await carol.nextRequest();
    await callerSession.whenDestroyed;
    assert.deepEqual(call.endCause, { term: 'no_answer' });
    assert.equal(callEvents(bob, r.call_id, 'hangup')[0]!.body!.code, 305007);
    assert.equal(callEvents(carol, r.call_id, 'hangup')[0]!.body!.code, 305007);
    assert.equal(callEvents(alice, r.call_id, 'hangup')[0]!.body!.code, 305007);
  });

  it('every leg declines (an error reply, or rejected): call_rejected', async () => {
    const tc = core();
    const alice = login(tc, 'alice');
    const bob = login(tc, 'bob');
    const carol = login(tc, 'carol');
    const { r, call } = await place(tc, alice, { callee: ['bob', 'carol'] });
    (await bob.nextRequest()).reply({ result: 'error' });
    await until(() => call.legs[0]!.state === 'rejected', 1000, 'bob declined');
    assert.equal(call.state, 'ringing');
    const inv = await carol.nextRequest();
    inv.reply({ result: 'ok' });
    await tc.engine.settle();
    const carolLeg = legOf(tc, call, carol);
    call.reject(carolLeg);
    assert.throws(() => call.reject(carolLeg), term('call_not_found'));
    await until(() => call.ended, 1000, 'ended');
    assert.deepEqual(call.endCause, { term: 'call_rejected' });
    assert.equal(callEvents(alice, r.call_id, 'hangup')[0]!.body!.code, 305006);
    assert.equal(callEvents(carol, r.call_id, 'hangup').length, 0, 'a callee that declined is out of the call');
  });

  it('a declining leg leaves the others ringing; a declined leg cannot accept', async () => {
    const tc = core();
    const alice = login(tc, 'alice');
    const bob = login(tc, 'bob');
    const carol = login(tc, 'carol');
    const { call } = await place(tc, alice, { callee: ['bob', 'carol'] });
    const invB = await bob.nextRequest();
    invB.reply({ result: 'ok' });
    const invC = await carol.nextRequest();
    invC.reply({ result: 'ok' });
    await tc.engine.settle();
    const bobLeg = legOf(tc, call, bob);
    await call.hangup(bobLeg); // a ringing callee's hangup declines its leg
    assert.equal(bobLeg.state, 'rejected');
    await bobLeg.session!.whenDestroyed;
    assert.equal(bobLeg.session!.stopCause!.term, 'call_rejected');
    await assert.rejects(call.accept(bobLeg, answerTo(invB)), term('not_invited'));
    await call.accept(legOf(tc, call, carol), answerTo(invC));
    assert.equal(call.state, 'answered');
  });

  it('an invite with no reply within the invite timeout fails its leg (told); no leg left: no_destination', async () => {
    const tc = core();
    tc.calls.inviteTimeoutMs = 30;
    const alice = login(tc, 'alice');
    const bob = login(tc, 'bob');
    const { r, call } = await place(tc, alice, { callee: 'bob' });
    const inv = await bob.nextRequest();
    assert.equal(inv.timeoutMs, 30);
    await until(() => call.ended, 1000, 'ended');
    assert.equal(call.legs[0]!.state, 'failed');
    assert.deepEqual(callEvents(bob, r.call_id, 'hangup')[0]!.body, { code: 100005, reason: 'Timeout', session_id: inv.data.session_id });
    assert.equal(call.endCause!.term, 'no_destination');
    assert.match(call.endCause!.detail!, /no destination could be rung/);
  });

  it('a ringing callee\'s connection closes: its leg drops out; the last one ends the call (no_destination)', async () => {
    const tc = core();
    const alice = login(tc, 'alice');
    const bob1 = login(tc, 'bob');
    const bob2 = login(tc, 'bob');
    const { call } = await place(tc, alice, { callee: 'bob' });
    await Promise.all([bob1.nextRequest(), bob2.nextRequest()]);
    const leg1 = legOf(tc, call, bob1);
    await tc.calls.connectionDown(bob1);
    assert.equal(leg1.state, 'failed');
    assert.equal(leg1.session!.stopCause!.term, 'callee_disconnected');
    assert.equal(call.ended, false);
    await tc.calls.connectionDown(bob2);
    await until(() => call.ended, 1000, 'ended');
    assert.equal(call.endCause!.term, 'no_destination');
  });
});

describe('an answered call ends', () => {
  async function answered(tc: TestCore) {
    const alice = login(tc, 'alice');
    const bob = login(tc, 'bob');
    const placed = await place(tc, alice, { callee: 'bob' });
    const inv = await bob.nextRequest();
    inv.reply({ result: 'ok' });
    const leg = legOf(tc, placed.call, bob);
    await placed.call.accept(leg, answerTo(inv));
    return { alice, bob, leg, ...placed };
  }

  it('when the callee hangs up (api_hangup); both sessions stop', async () => {
    const tc = core();
    const { r, call, leg, alice, callerSession } = await answered(tc);
    await call.hangup(leg, 'done');
    assert.equal(callEvents(alice, r.call_id, 'hangup')[0]!.body!.reason, 'API hangup: done');
    await Promise.all([leg.session!.whenDestroyed, callerSession.whenDestroyed]);
  });

  it('when the answering leg\'s session stops, with that session\'s reason', async () => {
    const tc = core();
    const { r, leg, alice, callerSession } = await answered(tc);
    await leg.session!.stop('user_stop');
    await callerSession.whenDestroyed;
    assert.deepEqual(callEvents(alice, r.call_id, 'hangup')[0]!.body, { code: 100011, reason: 'User stop' });
    assert.equal(callerSession.stopCause!.term, 'user_stop');
  });

  it('when the caller\'s session stops, with its reason', async () => {
    const tc = core();
    const { r, leg, bob, call, callerSession } = await answered(tc);
    await callerSession.stop('session_timeout');
    await leg.session!.whenDestroyed;
    await until(() => call.ended, 1000, 'ended');
    assert.equal(call.endCause!.term, 'session_timeout');
    assert.equal(callEvents(bob, r.call_id, 'hangup')[0]!.body!.code, 100060);
  });

  it('when the caller\'s connection closes (caller_disconnected)', async () => {
    const tc = core();
    const { r, bob, alice, call } = await answered(tc);
    await tc.calls.connectionDown(alice);
    assert.equal(call.endCause!.term, 'caller_disconnected');
    assert.equal(callEvents(bob, r.call_id, 'hangup')[0]!.body!.code, 305009);
  });

  it('when the answering callee\'s connection closes (callee_disconnected)', async () => {
    const tc = core();
    const { r, bob, alice, call } = await answered(tc);
    await tc.calls.connectionDown(bob);
    assert.equal(call.endCause!.term, 'callee_disconnected');
    assert.equal(callEvents(alice, r.call_id, 'hangup')[0]!.body!.code, 305010);
  });

  it('when the server stops (api_stop)', async () => {
    const tc = core();
    const { r, alice, call } = await answered(tc);
    await tc.core.stopAll('api_stop');
    assert.equal(call.endCause!.term, 'api_stop');
    assert.equal(callEvents(alice, r.call_id, 'hangup')[0]!.body!.code, 100013);
    assert.equal(tc.engine.liveCount, 0);
  });
});

describe('the call\'s hold on its sessions', () => {
  it('while ringing nobody else answers or wires its sessions; once answered both parties may switch (echo and back)', async () => {
    const tc = core();
    const alice = login(tc, 'alice');
    const bob = login(tc, 'bob');
    const { call, callerSession } = await place(tc, alice, { callee: 'bob' });
    const inv = await bob.nextRequest();
    const leg = legOf(tc, call, bob);
    const legSession = leg.session!;
    await assert.rejects(legSession.setAnswer(answerTo(inv)), term('invalid_operation'));
    await assert.rejects(legSession.setType({ type: 'echo' }), term('invalid_operation'));
    await assert.rejects(callerSession.setType({ type: 'echo' }), term('invalid_operation'));
    const other = await tc.offeree(alice);
    await assert.rejects(other.setType({ type: 'bridge', peer: callerSession }), term('invalid_operation'));
    assert.deepEqual(tc.engine.sourcesOf(tc.engine.endpointOf(legSession.id)!), {}, 'the callee hears nothing yet');
    // Muting and candidates stay open.
    await legSession.updateMedia({ mute_video: true });
    await call.candidate(leg, clientCandidate(1));
    assert.equal(tc.engine.callsOf('addIceCandidate', tc.engine.endpointOf(legSession.id)).length, 0, 'queued until the answer');

    await call.accept(leg, answerTo(inv));
    assert.equal(tc.engine.callsOf('addIceCandidate', tc.engine.endpointOf(legSession.id)).length, 1, 'then added');
    await legSession.setType({ type: 'echo' });
    assert.equal(callerSession.type, 'park', 'the caller (stop_after_peer false) is parked, the call goes on');
    assert.equal(call.state, 'answered');
    await legSession.setType({ type: 'bridge', peer: callerSession });
    assert.deepEqual(tc.engine.sourcesOf(tc.engine.endpointOf(callerSession.id)!), all(legSession.proxy));
    assert.deepEqual(tc.engine.sourcesOf(tc.engine.endpointOf(legSession.id)!), all(callerSession.proxy));
  });

  it('an answer the checks or the engine refuse: invalid_sdp, the call rings on with its ring time', async () => {
    const tc = core();
    const alice = login(tc, 'alice');
    const bob = login(tc, 'bob');
    const { call } = await place(tc, alice, { callee: 'bob', ring_time: 0.15 });
    const started = Date.now();
    const inv = await bob.nextRequest();
    const leg = legOf(tc, call, bob);
    await assert.rejects(call.accept(leg, { sdp: 'v=0\r\nnonsense' }), term('invalid_sdp'));
    tc.engine.failNext('processAnswer', new EngineError('invalid_sdp', 'no common codec'));
    await assert.rejects(call.accept(leg, answerTo(inv)), term('invalid_sdp'));
    assert.equal(call.state, 'ringing');
    assert.equal(call.answeredLeg, undefined);
    assert.equal(leg.pending, true);
    await until(() => call.ended, 1000, 'no_answer');
    assert.equal(call.endCause!.term, 'no_answer');
    assert.ok(Date.now() - started < 400, 'the ring timer was re-armed with what was left, not restarted from scratch');
  });

  it('candidates: the caller\'s go to its session, a callee\'s to its leg; a stranger connection is not invited', async () => {
    const tc = core();
    const alice = login(tc, 'alice');
    const bob = login(tc, 'bob');
    const { call, callerSession } = await place(tc, alice, { callee: 'bob' });
    await bob.nextRequest();
    await call.candidate(undefined, clientCandidate(1));
    await call.candidate(undefined, 'end');
    const ep = tc.engine.endpointOf(callerSession.id)!;
    assert.deepEqual(tc.engine.element(ep)!.remoteCandidates, [clientCandidate(1)]);
    assert.throws(() => tc.calls.legFor(call, alice.id), term('not_invited'));
    assert.throws(() => tc.calls.get(call.id, tc.conn('eve').caller), term('call_not_found'));
    assert.equal(tc.calls.get(call.id, bob.caller), call, 'a rung user sees the call');
  });
});

describe('destinations', () => {
  it('never rings the caller\'s own connection; a connection named twice rings once; session:<id>; lists ring in parallel', async () => {
    const tc = core();
    const alice1 = login(tc, 'alice');
    const alice2 = login(tc, 'alice');
    const bob = login(tc, 'bob');
    const { call } = await place(tc, alice1, { callee: ['alice', `session:${bob.id}`, 'bob', bob.id] });
    await Promise.all([alice2.nextRequest(), bob.nextRequest()]);
    assert.equal(alice1.requests.length, 0);
    assert.equal(bob.requests.length, 1);
    assert.deepEqual(call.legs.map((l) => [l.spec.kind, l.spec.user]), [['user', 'alice'], ['session', 'bob']]);
    await call.hangup(undefined);
  });

  it('nobody to ring, bad offers, unknown schemes and duplicate ids are refused before anything starts', async () => {
    const tc = core();
    const alice = login(tc, 'alice');
    const bob = login(tc, 'bob');
    await assert.rejects(place(tc, alice, { callee: 'nobody' }), term('no_destination'));
    await assert.rejects(place(tc, alice, { callee: 'alice' }), term('no_destination'));
    await assert.rejects(place(tc, alice, { callee: 'sip:bob@example.com' }), term('not_implemented'));
    await assert.rejects(place(tc, alice, { callee: 'bob', backend: 'janus' }), term('unknown_backend'));
    assert.equal(tc.engine.log.length, 0);
    await assert.rejects(place(tc, alice, { callee: 'bob', offer: { sdp: 'v=0\r\n' } }), term('invalid_sdp'));
    assert.equal(bob.requests.length, 0, 'nobody is rung for a bad offer');
    assert.equal(tc.calls.size, 0);
    assert.equal(tc.sessions.size, 0);
    await place(tc, alice, { callee: 'bob', call_id: 'c1' });
    await assert.rejects(place(tc, alice, { callee: 'bob', call_id: 'c1' }), term('call_already_exists'));
  });

  it('legs count against the caller\'s connection, never the callee\'s: a leg past the cap fails, the others ring', async () => {
    const tc = core({ limits: { ...UNLIMITED, maxSessionsPerConnection: 2 } });
    const alice = login(tc, 'alice');
    const bob = login(tc, 'bob');
    const carol = login(tc, 'carol');
    const { call } = await place(tc, alice, { callee: ['bob', 'carol'] });
    await bob.nextRequest();
    await until(() => call.legs[1]!.state === 'failed', 1000, 'carol\'s leg failed');
    assert.equal(carol.requests.length, 0);
    assert.equal(call.state, 'ringing');
    assert.equal(call.legs[1]!.endCause!.term, 'too_many_sessions');
  });
});

describe('invites and trickle options', () => {
  it('wait_reply returns our answer; no_offer_trickle_ice makes the invites carry complete offers', async () => {
    const tc = core();
    const alice = login(tc, 'alice');
    const bob = login(tc, 'bob');
    const { r } = await place(tc, alice, { callee: 'bob', wait_reply: true, no_offer_trickle_ice: false });
    assert.equal(r.answer!.trickle_ice, true);
    const inv = await bob.nextRequest();
    assert.equal(offerOf(inv).trickle_ice, true);

    const carol = login(tc, 'carol');
    await place(tc, alice, { callee: 'carol', offer: { sdp: clientOffer() }, no_offer_trickle_ice: true });
    const invC = await carol.nextRequest();
    assert.equal(offerOf(invC).trickle_ice, false);
    assert.equal(countCandidates(offerOf(invC).sdp), 2);
    await tc.engine.settle();
    assert.equal(carol.events.filter((e) => e.type === 'candidate').length, 0);
  });

  it('sdp_type rtp offers plain RTP to callees; a phone-style answer bridges it with the WebRTC caller', async () => {
    const tc = core();
    const alice = login(tc, 'alice');
    const bob = login(tc, 'bob');
    const { call, callerSession } = await place(tc, alice, { callee: 'bob', sdp_type: 'rtp' });
    const inv = await bob.nextRequest();
    assert.equal(offerOf(inv).sdp_type, 'rtp');
    const leg = legOf(tc, call, bob);
    await call.accept(leg, { sdp: phoneSdp({ video: true }), sdp_type: 'rtp' });
    assert.equal(tc.engine.element(tc.engine.endpointOf(leg.id)!)!.kind, 'rtp');
    assert.deepEqual(tc.engine.sourcesOf(tc.engine.endpointOf(callerSession.id)!), all(leg.session!.proxy));
  });
});

describe('driver legs (the seam SIP plugs into)', () => {
  class FakeDriver implements CallDestinationDriver {
    readonly schemes = ['fake'];
    readonly sdpType = 'rtp' as const;
    readonly legs: OutgoingLeg[] = [];
    readonly ends: { uri: string; cause: StopCause; answered: boolean }[] = [];
    invite(uri: string, leg: OutgoingLeg): LegControl {
      this.legs.push(leg);
      return { end: (cause, answered) => this.ends.push({ uri, cause, answered }) };
    }
  }

  it('a driver leg rings next to a user; the user answers first: the driver\'s leg is ended as not answered', async () => {
    const tc = core();
    const driver = new FakeDriver();
    tc.calls.registerDriver(driver);
    const alice = login(tc, 'alice');
    const bob = login(tc, 'bob');
    const { call } = await place(tc, alice, { callee: ['fake:desk@example', 'bob'] });
    const inv = await bob.nextRequest();
    await until(() => driver.legs.length === 1, 1000, 'driver invite');
    const out = driver.legs[0]!;
    assert.equal(out.offer.sdp_type, 'rtp');
    assert.equal(out.callerUser, 'alice');
    out.ringing({ ua: 'desk' });
    assert.equal(callEvents(alice, call.id, 'ringing')[0]!.body!.uri, 'fake:desk@example');
    await call.accept(legOf(tc, call, bob), answerTo(inv));
    assert.deepEqual(driver.ends, [{ uri: 'fake:desk@example', cause: { term: 'answered_elsewhere' }, answered: false }]);
  });

  it('the driver\'s leg answers (RTP), is bridged, and its hangup ends the call; the call\'s end reaches the driver as answered', async () => {
    const tc = core();
    const driver = new FakeDriver();
    tc.calls.registerDriver(driver);
    const alice = login(tc, 'alice');
    const { call, callerSession } = await place(tc, alice, { callee: 'fake:desk@example' });
    await until(() => driver.legs.length === 1, 1000, 'driver invite');
    const out = driver.legs[0]!;
    await out.accept({ sdp: phoneSdp({ video: true }), sdp_type: 'rtp' });
    await assert.rejects(out.accept({ sdp: phoneSdp({ video: true }), sdp_type: 'rtp' }), term('already_answered'));
    assert.equal(call.state, 'answered');
    const legSession = tc.sessions.lookup(out.sessionId)!;
    assert.equal(callerSession.type, 'bridge');
    assert.equal(legSession.type, 'bridge');
    out.hangup('BYE');
    await until(() => call.ended, 1000, 'ended');
    assert.deepEqual(call.endCause, { term: 'api_hangup', detail: 'BYE' });
    assert.deepEqual(driver.ends.map((e) => e.answered), [true]);
  });

  it('a driver that fails to invite fails its leg; a driver\'s reject declines it', async () => {
    const tc = core();
    const driver = new FakeDriver();
    tc.calls.registerDriver(driver);
    const alice = login(tc, 'alice');
    const { call } = await place(tc, alice, { callee: ['fake:a@x', 'fake:b@x'] });
    await until(() => driver.legs.length === 2, 1000, 'driver invites');
    driver.legs[0]!.reject('486 Busy');
    assert.equal(call.legs[0]!.state, 'rejected');
    driver.legs[1]!.reject();
    await until(() => call.ended, 1000, 'ended');
    assert.equal(call.endCause!.term, 'call_rejected');
    // Each leg's control is told the call dropped it (its own end, then none for the call's).
    assert.deepEqual(driver.ends.map((e) => [e.uri, e.cause.term, e.answered]), [['fake:a@x', 'call_rejected', false], ['fake:b@x', 'call_rejected', false]]);
  });
});
