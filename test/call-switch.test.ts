// set_type bridge between linked sessions of different users: a call links the callee's leg to
// the caller's session (master/slave), so the answering callee may go to echo (the caller is
// parked) and bridge back with the caller's session, which is not its user's. A session of the
// other user that is not linked still gets unknown_peer. (The demo's call page relies on this.)
import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, connectClient, eventually } from './helpers/server.js';
import { TestPeer } from './helpers/peer.js';
import { connectParked } from './helpers/flows.js';
import type { Server } from '../src/main.js';
import { NkMediaError, type CallInvite, type CandidateInit, type EventData, type NkMediaClient } from '../src/client/index.js';

let server: Server;
before(async () => { server = await startTestServer(); });
after(async () => { await server.close(); });

/** Feeds the call's `candidate` events for `sessionId` into `peer` (past ones too). */
function follow(client: NkMediaClient, events: EventData[], callId: string, sessionId: string, peer: TestPeer): void {
  const take = (e: EventData) => {
    if (e.subclass === 'call' && e.obj_id === callId && e.type === 'candidate' && e.body?.session_id === sessionId) void peer.addCandidate(e.body as CandidateInit).catch(() => undefined);
  };
  client.onEvent(take);
  for (const e of events) take(e);
}

it('the answering callee switches its leg to echo and bridges back with the caller; unlinked sessions cannot', async () => {
  const alice = await connectClient(server, 'alice');
  const bob = await connectClient(server, 'bob');
  const aliceEvents: EventData[] = [];
  const bobEvents: EventData[] = [];
  alice.onEvent((e) => aliceEvents.push(e));
  bob.onEvent((e) => bobEvents.push(e));
  const invites: CallInvite[] = [];
  bob.onInvite((inv) => { invites.push(inv); });
  const callerPeer = new TestPeer();
  const calleePeer = new TestPeer();
  try {
    const offer = await callerPeer.makeOffer();
    const call = await alice.createCall({ callee: 'bob', offer: { sdp: offer.sdp, trickle_ice: true }, wait_reply: true });
    await callerPeer.takeAnswer(call.answer!);
    follow(alice, aliceEvents, call.call_id, call.session_id, callerPeer);
    for (const c of offer.candidates) await alice.setCallCandidate(call.call_id, c);
    const invite = await eventually(() => invites.find((i) => i.call_id === call.call_id), 5000, 'invite');
    const answer = await calleePeer.answerOffer(invite.offer);
    follow(bob, bobEvents, call.call_id, invite.session_id, calleePeer);
    await bob.acceptCall(call.call_id, { sdp: answer.sdp, trickle_ice: true });
    for (const c of answer.candidates) await bob.setCallCandidate(call.call_id, c);
    const leg = invite.session_id;
    assert.equal((await bob.getInfo(leg)).type, 'bridge');

    // Bob's leg to echo: Alice's session (stop_after_peer false) is parked, the call goes on.
    await bob.setType(leg, 'echo');
    assert.equal((await alice.getInfo(call.session_id)).type, 'park');
    assert.equal((await alice.getCallInfo(call.call_id)).state, 'answered');
    // And back: Alice's session is not Bob's, but it is his leg's master.
    assert.deepEqual(await bob.setType(leg, 'bridge', { peer_id: call.session_id }), { peer_id: call.session_id });
    assert.deepEqual((await alice.getInfo(call.session_id)).type_ext, { peer_id: leg });

    // Another session of Alice's, not linked to Bob's leg: out of his reach.
    const unlinked = await connectParked(alice);
    try {
      const err = await bob.setType(leg, 'bridge', { peer_id: unlinked.id }).then(() => undefined, (e: unknown) => e);
      assert.ok(err instanceof NkMediaError && err.code === 100071, `unknown_peer: ${String(err)}`);
      assert.deepEqual((await bob.getInfo(leg)).type_ext, { peer_id: call.session_id }, 'the failed switch left the leg as it was');
      await alice.destroySession(unlinked.id);
    } finally {
      await unlinked.peer.close();
    }
    await alice.hangupCall(call.call_id);
    await eventually(() => server.services.calls.size === 0 && server.services.sessions.size === 0, 5000, 'call and sessions gone');
  } finally {
    await callerPeer.close();
    await calleePeer.close();
    await alice.close();
    await bob.close();
  }
});
