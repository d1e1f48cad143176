// Parked WebRTC sessions with real werift clients: both roles, trickle ICE both ways and each
// candidate-buffering option; the connection comes up and the server receives the client's RTP.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, connectClient, eventually } from './helpers/server.js';
import { TestPeer } from './helpers/peer.js';
import type { Server } from '../src/main.js';
import type { EventData, NkMediaClient } from '../src/client/index.js';

let server: Server;
let client: NkMediaClient;
before(async () => { server = await startTestServer(); client = await connectClient(server); });
after(async () => { await client.close(); await server.close(); });

/** Events of one session, including those that arrive before its id is known to the test. */
function collect(c: NkMediaClient, sessionId: () => string | undefined): EventData[] {
  const all: EventData[] = [];
  c.onEvent((e) => all.push(e));
  return new Proxy(all, {
    get(target, prop) {
      const mine = target.filter((e) => e.obj_id !== undefined && e.obj_id === sessionId());
      const v = (mine as any)[prop];
      return typeof v === 'function' ? v.bind(mine) : v;
    },
  });
}

/** After connecting: the server receives our RTP and, parked, sends nothing back. */
async function checkMediaIn(peer: TestPeer, sessionId: string, events: EventData[]): Promise<void> {
  await peer.waitConnected();
  peer.startSending();
  const stats = await eventually(async () => {
    const { stats } = await client.getStats(sessionId);
    return stats.inbound.audio.packets >= 10 && stats.inbound.video.packets >= 10 ? stats : undefined;
  }, 8000, 'server to receive RTP');
  assert.equal(stats.connection_state, 'connected');
  await eventually(() => events.some((e) => e.type === 'info' && e.body?.info === 'media' && e.body.direction === 'in' && e.body.media === 'audio' && e.body.status === 'up'), 3000, 'media-in info event');
  assert.ok(events.some((e) => e.type === 'info' && e.body?.info === 'webrtc' && e.body.status === 'up'), 'webrtc up info event');
  assert.equal(peer.received.audio + peer.received.video, 0, 'a parked session sends nothing');
  assert.equal(stats.outbound.audio.packets + stats.outbound.video.packets, 0);
  const info = await client.getInfo(sessionId);
  assert.equal(info.type, 'park');
  assert.equal(info.status.webrtc_ready, true);
}

describe('park, client offers', () => {
  it('trickle ICE both ways', async () => {
    let id: string | undefined;
    const events = collect(client, () => id);
    const peer = new TestPeer();
    const offer = await peer.makeOffer();
    const reply = await client.createSession({ type: 'park', offer: { sdp: offer.sdp, trickle_ice: true }, wait_reply: true });
    id = reply.session_id;
    assert.match(id, /^session-[0-9a-f-]{36}$/);
    assert.ok(reply.answer, 'wait_reply returns the answer');
    assert.equal(reply.answer.trickle_ice, true);
    assert.equal(reply.answer.backend, 'nkmedia_kms');
    assert.doesNotMatch(reply.answer.sdp, /a=candidate:/, 'trickled answers carry no candidates');
    // The creator was subscribed before the session started: it saw `created`, and candidates.
    await eventually(() => events.some((e) => e.type === 'candidate_end'), 3000, 'candidate_end');
    assert.equal(events[0]!.type, 'created');
    const candidates = events.filter((e) => e.type === 'candidate');
    assert.ok(candidates.length > 0);
    for (const c of candidates) assert.match(String(c.body!.candidate), /^candidate:/);
    assert.ok(events.findIndex((e) => e.type === 'answer') < events.findIndex((e) => e.type === 'candidate'), 'answer before candidates');
    await peer.takeAnswer(reply.answer);
    for (const c of candidates) await peer.addCandidate(c.body as never);
    for (const c of offer.candidates) await client.setCandidate(id, c);
    await client.setCandidateEnd(id);
    await checkMediaIn(peer, id, events);
    await client.destroySession(id);
    await peer.close();
  });

  it('no_offer_trickle_ice: the server collects our candidates before answering', async () => {
    const peer = new TestPeer();
    const offer = await peer.makeOffer();
    const id = `buffer-offer-${Date.now()}`;
    const events = collect(client, () => id);
    const created = client.createSession({ type: 'park', session_id: id, offer: { sdp: offer.sdp, trickle_ice: true }, no_offer_trickle_ice: true, wait_reply: true });
    // The client chose the id, so it can trickle while create waits for the answer.
    await eventually(() => events.some((e) => e.type === 'created'), 3000, 'created');
    for (const c of offer.candidates) await client.setCandidate(id, c);
    await client.setCandidateEnd(id);
    const reply = await created;
    assert.ok(reply.answer);
    const info = await client.getInfo(id);
    assert.equal(info.offer.trickle_ice, false, 'the consolidated offer is complete');
    assert.match(info.offer.sdp, /a=candidate:/);
    peer.followCandidates(client, id);
    for (const e of events.filter((x) => x.type === 'candidate')) await peer.addCandidate(e.body as never);
    await peer.takeAnswer(reply.answer);
    await checkMediaIn(peer, id, events);
    await client.destroySession(id);
    await peer.close();
  });

  it('no_answer_trickle_ice: the answer comes complete, no candidate events', async () => {
    let id: string | undefined;
    const events = collect(client, () => id);
    const peer = new TestPeer();
    const offer = await peer.makeOffer();
    const reply = await client.createSession({ type: 'park', offer: { sdp: offer.sdp, trickle_ice: true }, no_answer_trickle_ice: true, trickle_ice_timeout: 3000, wait_reply: true });
    id = reply.session_id;
    assert.ok(reply.answer);
    assert.equal(reply.answer.trickle_ice, false);
    assert.match(reply.answer.sdp, /a=candidate:.* 127\.0\.0\.1 /);
    assert.match(reply.answer.sdp, /a=end-of-candidates/);
    await peer.takeAnswer(reply.answer);
    for (const c of offer.candidates) await client.setCandidate(id, c);
    await checkMediaIn(peer, id, events);
    assert.equal(events.filter((e) => e.type === 'candidate').length, 0);
    await client.destroySession(id);
    await peer.close();
  });
});

describe('park, server offers', () => {
  it('trickle ICE both ways, set_answer', async () => {
    let id: string | undefined;
    const events = collect(client, () => id);
    const reply = await client.createSession({ type: 'park', wait_reply: true });
    id = reply.session_id;
    assert.ok(reply.offer);
    assert.equal(reply.offer.trickle_ice, true);
    assert.deepEqual(await client.getOffer(id), { offer: reply.offer });
    const peer = new TestPeer();
    const answer = await peer.answerOffer(reply.offer);
    await eventually(() => events.some((e) => e.type === 'candidate_end'), 3000, 'candidate_end');
    for (const e of events.filter((x) => x.type === 'candidate')) await peer.addCandidate(e.body as never);
    await client.setAnswer(id, { sdp: answer.sdp, trickle_ice: true });
    for (const c of answer.candidates) await client.setCandidate(id, c);
    await client.setCandidateEnd(id);
    assert.equal((await client.getAnswer(id)).answer.sdp, answer.sdp);
    await checkMediaIn(peer, id, events);
    const answerEvents = events.filter((e) => e.type === 'answer');
    assert.equal(answerEvents.length, 1);
    assert.ok(events.some((e) => e.type === 'type' && e.body?.type === 'park'));
    await client.destroySession(id);
    await peer.close();
  });

  it('no_offer_trickle_ice: the offer comes complete', async () => {
    let id: string | undefined;
    const events = collect(client, () => id);
    const reply = await client.createSession({ type: 'park', no_offer_trickle_ice: true, trickle_ice_timeout: 3000, wait_reply: true });
    id = reply.session_id;
    assert.ok(reply.offer);
    assert.equal(reply.offer.trickle_ice, false);
    assert.match(reply.offer.sdp, /a=candidate:/);
    const peer = new TestPeer();
    const answer = await peer.answerOffer(reply.offer);
    await client.setAnswer(id, { sdp: answer.sdp, trickle_ice: true });
    for (const c of answer.candidates) await client.setCandidate(id, c);
    await checkMediaIn(peer, id, events);
    await client.destroySession(id);
    await peer.close();
  });

  it('no_answer_trickle_ice: our answer is held until our candidates end', async () => {
    let id: string | undefined;
    const events = collect(client, () => id);
    const reply = await client.createSession({ type: 'park', no_answer_trickle_ice: true, wait_reply: true });
    id = reply.session_id;
    const peer = new TestPeer();
    peer.followCandidates(client, id);
    await eventually(() => events.some((e) => e.type === 'candidate_end'), 3000, 'candidate_end');
    for (const e of events.filter((x) => x.type === 'candidate')) await peer.addCandidate(e.body as never);
    const answer = await peer.answerOffer(reply.offer!);
    await client.setAnswer(id, { sdp: answer.sdp, trickle_ice: true });
    assert.equal(events.filter((e) => e.type === 'answer').length, 0, 'no answer before candidates are complete');
    for (const c of answer.candidates) await client.setCandidate(id, c);
    await client.setCandidateEnd(id);
    const { answer: full } = await client.getAnswer(id);
    assert.equal(full.trickle_ice, false);
    assert.match(full.sdp, /a=candidate:/);
    await checkMediaIn(peer, id, events);
    await client.destroySession(id);
    await peer.close();
  });
});
