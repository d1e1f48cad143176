// The session state machine on a fake engine (docs/API.md §5, §7, §8): both SDP roles, the
// wait/ready timers, trickle ICE and server-side candidate buffering, failures at each step,
// master/slave and bridge cascades, engine events. No sockets, no media: what a session asks
// of the engine and what it tells its creator are checked directly.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { sessionInfo, sessionStatus } from '../src/api/session-events.js';
import { ApiError } from '../src/protocol/errors.js';
import { EngineError, MEDIA_KINDS } from '../src/engine/types.js';
import { countCandidates, parseSdp } from '../src/protocol/sdp.js';
import type { Session } from '../src/core/sessions/session.js';
import { UNLIMITED } from '../src/core/sessions/quota.js';
import {
  TestCore, apiTerm, coresClosedAfterEach, clientAnswer, clientCandidate, clientOffer, phoneSdp, sleep, until,
} from './helpers/fake-engine.js';

const core = coresClosedAfterEach();

/** Matches an ApiError of a term (for assert.rejects / assert.throws). */
const term = apiTerm;

function assertUplink(tc: TestCore, s: Session, muted: string[] = []): void {
  const ep = tc.engine.endpointOf(s.id)!;
  for (const k of MEDIA_KINDS) {
    assert.equal(tc.engine.sourceOf(s.proxy!, k), muted.includes(k) ? undefined : ep, `uplink ${k} of ${s.id}`);
  }
}

describe('offeree: the client offers, we answer', () => {
  it('answers at once; created, answer, type, then our candidates and candidate_end; trickled client candidates go to the engine', async () => {
    const tc = core();
    const alice = tc.conn('alice');
    const domain: string[] = [];
    const offer = clientOffer();
    const { reply, session: s } = await tc.create(alice, { type: 'park', offer: { sdp: offer, trickle_ice: true, extra: 'kept' }, wait_reply: true }, {
      onSession: (x) => x.events
        .on('answer', () => domain.push('answer'))
        .on('candidate', (c) => domain.push(`candidate:${c.sdpMid}`))
        .on('candidateEnd', () => domain.push('candidateEnd'))
        .on('stopped', (r) => domain.push(`stopped:${r.term}`)),
    });
    const answer = reply.answer!;
    assert.equal(answer.sdp_type, 'webrtc');
    assert.equal(answer.trickle_ice, true);
    assert.equal(answer.backend, 'nkmedia_kms');
    assert.equal((answer as Record<string, unknown>).extra, 'kept', 'the answer echoes the offer object');
    assert.equal(countCandidates(answer.sdp), 0, 'our SDP carries no candidates');
    assert.deepEqual(parseSdp(answer.sdp).sections.map((x) => [x.media, x.mid]), [['audio', '0'], ['video', '1'], ['application', '2']]);
    assert.equal(s.state, 'ready');
    assert.equal(s.role, 'offeree');
    assert.deepEqual(tc.engine.callsOf('processOffer').map((c) => c.args[1]), [offer]);

    await until(() => alice.of(s.id, 'candidate_end').length > 0, 1000, 'candidate_end');
    assert.deepEqual(alice.typesOf(s.id), ['created', 'answer', 'type', 'candidate', 'candidate', 'candidate_end']);
    assert.deepEqual(alice.of(s.id, 'answer')[0]!.body, { answer });
    assert.deepEqual(alice.of(s.id, 'type')[0]!.body, { type: 'park' });
    const cand = alice.of(s.id, 'candidate')[0]!.body!;
    assert.deepEqual(Object.keys(cand).sort(), ['candidate', 'sdpMLineIndex', 'sdpMid']);
    assert.deepEqual(domain, ['answer', 'candidate:0', 'candidate:1', 'candidateEnd']);

    // Park: the uplink is wired, the client hears nothing.
    assertUplink(tc, s);
    assert.deepEqual(tc.engine.sourcesOf(tc.engine.endpointOf(s.id)!), {});

    await s.addClientCandidate(clientCandidate(1));
    await s.addClientCandidate(clientCandidate(2, 1));
    s.clientCandidatesEnd();
    assert.deepEqual(tc.engine.element(tc.engine.endpointOf(s.id)!)!.remoteCandidates, [clientCandidate(1), clientCandidate(2, 1)]);

    await s.stop('user_stop');
    assert.deepEqual(alice.of(s.id, 'destroyed')[0]!.body, { code: 100011, reason: 'User stop' });
    assert.deepEqual(domain.at(-1), 'stopped:user_stop');
    assert.equal(tc.engine.live({ session: s.id }).length, 0, 'endpoint and proxy released');
    assert.equal(tc.sessions.size, 0);
    assert.equal(tc.bus.subscriptionCount, 0, 'the creator\'s subscription went with the session');
    await assert.rejects(s.addClientCandidate(clientCandidate(3)), term('session_not_found'));
  });

  it('our candidates found before our answer is out are held until after it', async () => {
    const tc = core();
    const alice = tc.conn('alice');
    const release = tc.engine.holdNext('processOffer');
    const created = tc.create(alice, { type: 'park', session_id: 'held', offer: { sdp: clientOffer(), trickle_ice: true } });
    await until(() => tc.engine.callsOf('processOffer').length === 1, 1000, 'processOffer');
    tc.engine.emitCandidate(tc.engine.endpointOf('held')!, 9);
    release();
    await created;
    await until(() => alice.of('held', 'candidate_end').length > 0, 1000, 'candidate_end');
    assert.deepEqual(alice.typesOf('held'), ['created', 'answer', 'type', 'candidate', 'candidate', 'candidate', 'candidate_end']);
    assert.match(String(alice.of('held', 'candidate')[0]!.body!.candidate), /^candidate:s9 /, 'the early one first, after the answer');
  });

  it('client candidates are checked by the engine only once the offer is in; an engine refusal is an invalid_value', async () => {
    const tc = core();
    const s = await tc.offeree(tc.conn('alice'));
    tc.engine.failNext('addIceCandidate', new EngineError('invalid_candidate', 'bad'));
    await assert.rejects(s.addClientCandidate(clientCandidate(1)), term('invalid_value'));
    assert.equal(s.state, 'ready', 'a refused candidate does not stop the session');
  });

  it('an offer the engine refuses fails the create; the creator saw created and destroyed; nothing is left', async () => {
    const tc = core();
    const alice = tc.conn('alice');
    tc.engine.failNext('processOffer', new EngineError('invalid_sdp', 'no codec in common'));
    await assert.rejects(tc.create(alice, { type: 'park', session_id: 'refused', offer: { sdp: clientOffer() }, wait_reply: true }), term('invalid_sdp'));
    assert.deepEqual(alice.typesOf('refused'), ['created', 'destroyed']);
    assert.equal(alice.of('refused', 'destroyed')[0]!.body!.code, 300016);
    assert.equal(tc.engine.liveCount, 0);
    assert.equal(tc.sessions.size, 0);
    assert.equal(tc.bus.subscriptionCount, 0);
  });

  it('a bad client SDP is refused before anything starts (no engine call, no event)', async () => {
    const tc = core();
    const alice = tc.conn('alice');
    await assert.rejects(tc.create(alice, { type: 'park', offer: { sdp: 'v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nm=audio 9 RTP/AVP 0\r\n' } }), term('invalid_sdp'));
    await assert.rejects(tc.create(alice, { type: 'park', offer: { sdp: clientOffer(), sdp_type: 'rtp' } }), term('invalid_sdp'));
    assert.equal(tc.engine.log.length, 0);
    assert.equal(alice.events.length, 0);
  });

  it('no port for our SDP (the engine binds at offer/answer time): out_of_resources, everything released', async () => {
    const tc = core();
    tc.engine.failNext('processOffer', new EngineError('no_resources', 'no UDP port left'));
    await assert.rejects(tc.offeree(tc.conn('alice')), term('out_of_resources'));
    tc.engine.failNext('generateOffer', new EngineError('no_resources', 'no UDP port left'));
    await assert.rejects(tc.create(tc.conn('alice'), { type: 'park', wait_reply: true }), term('out_of_resources'));
    assert.equal(tc.engine.liveCount, 0);
  });

  it('no_resources when the endpoint is created is out_of_resources too', async () => {
    const tc = core();
    tc.engine.failNext('createWebRtcEndpoint', new EngineError('no_resources', 'no UDP port left'));
    await assert.rejects(tc.offeree(tc.conn('alice')), term('out_of_resources'));
    assert.equal(tc.engine.liveCount, 0, 'the proxy made before it is released');
  });

  it('stopped while its endpoint is being made: the late endpoint is released, the create fails with the stop reason', async () => {
    const tc = core();
    const release = tc.engine.holdNext('createWebRtcEndpoint');
    const created = tc.create(tc.conn('alice'), { type: 'park', session_id: 'racing', offer: { sdp: clientOffer() } });
    await until(() => tc.engine.callsOf('createWebRtcEndpoint').length === 1, 1000, 'endpoint requested');
    await tc.sessions.lookup('racing')!.stop('user_stop');
    release();
    await assert.rejects(created, term('user_stop'));
    assert.equal(tc.engine.liveCount, 0);
    assert.equal(tc.engine.callsOf('processOffer').length, 0);
  });

  it('an unexpected engine failure stops the session with session_failed', async () => {
    const tc = core();
    tc.engine.failNext('connect', new Error('boom'));
    await assert.rejects(tc.offeree(tc.conn('alice')), term('session_failed'));
    assert.equal(tc.engine.liveCount, 0);
  });
});

describe('offerer: we offer, the client answers', () => {
  it('our offer (audio, video, data) with trickled candidates; set_answer wires the type; queued client candidates follow the answer', async () => {
    const tc = core();
    const alice = tc.conn('alice');
    const { reply, session: s } = await tc.create(alice, { type: 'echo', wait_reply: true });
    const offer = reply.offer!;
    assert.equal(s.role, 'offerer');
    assert.equal(s.state, 'wait_answer');
    assert.equal(offer.trickle_ice, true);
    assert.equal(offer.sdp_type, 'webrtc');
    assert.deepEqual(tc.engine.callsOf('generateOffer')[0]!.args[1], { audio: true, video: true, data: true });
    assert.deepEqual(parseSdp(offer.sdp).sections.map((x) => x.media), ['audio', 'video', 'application']);
    await until(() => alice.of(s.id, 'candidate_end').length > 0, 1000, 'candidate_end');
    assert.deepEqual(alice.typesOf(s.id), ['created', 'candidate', 'candidate', 'candidate_end'], 'no answer or type before the answer');
    const ep = tc.engine.endpointOf(s.id)!;
    assert.deepEqual(tc.engine.sourcesOf(ep), {}, 'no downlink before the answer');

    // Candidates before the answer wait for it.
    await s.addClientCandidate(clientCandidate(1));
    assert.equal(tc.engine.callsOf('addIceCandidate').length, 0);
    const answerWait = s.waitSdp('answer');
    const answerSdp = clientAnswer(offer.sdp);
    await s.setAnswer({ sdp: answerSdp, trickle_ice: true });
    const kinds = tc.engine.log.map((c) => c.method);
    assert.ok(kinds.indexOf('processAnswer') < kinds.indexOf('addIceCandidate'), 'the candidate was added after the answer');
    assert.deepEqual(tc.engine.element(ep)!.remoteCandidates, [clientCandidate(1)]);
    assert.equal((await answerWait).sdp, answerSdp);
    assert.equal(s.state, 'ready');
    assert.deepEqual(alice.typesOf(s.id).slice(-2), ['answer', 'type']);
    for (const k of MEDIA_KINDS) assert.equal(tc.engine.sourceOf(ep, k), s.proxy, `echo ${k}`);

    await assert.rejects(s.setAnswer({ sdp: answerSdp }), term('answer_already_set'));
  });

  it('set_answer errors leave the session waiting, and a good answer still works', async () => {
    const tc = core();
    const alice = tc.conn('alice');
    const { reply, session: s } = await tc.create(alice, { type: 'park', wait_reply: true });
    const good = clientAnswer(reply.offer!.sdp);
    await assert.rejects(s.setAnswer({ sdp: good, sdp_type: 'rtp' }), term('invalid_sdp'));
    await assert.rejects(s.setAnswer({ sdp: 'v=0\r\n' }), term('invalid_sdp'));
    tc.engine.failNext('processAnswer', new EngineError('invalid_sdp', 'DTLS role'));
    await assert.rejects(s.setAnswer({ sdp: good }), term('invalid_sdp'));
    assert.equal(s.state, 'wait_answer');
    await s.setAnswer({ sdp: good });
    assert.equal(s.state, 'ready');

    const offeree = await tc.offeree(alice);
    await assert.rejects(offeree.setAnswer({ sdp: good }), term('offer_not_set'));
  });

  it('waitSdp: resolves with what exists, times out, and fails with the stop reason', async () => {
    const tc = core();
    const { reply, session: s } = await tc.create(tc.conn('alice'), { type: 'park', wait_reply: true });
    assert.equal((await s.waitSdp('offer')).sdp, reply.offer!.sdp);
    await assert.rejects(s.waitSdp('answer', 20), term('timeout'));
    const pending = s.waitSdp('answer');
    await s.stop('user_stop');
    await assert.rejects(pending, term('user_stop'));
    await assert.rejects(s.waitSdp('offer'), term('user_stop'));
  });

  it('plain RTP: an RTP/AVP offer without ICE, nothing gathered, candidates refused', async () => {
    const tc = core();
    const alice = tc.conn('alice');
    const { reply, session: s } = await tc.create(alice, { type: 'park', sdp_type: 'rtp', wait_reply: true });
    assert.equal(reply.offer!.sdp_type, 'rtp');
    assert.equal(reply.offer!.trickle_ice, false);
    assert.deepEqual(parseSdp(reply.offer!.sdp).sections.map((x) => x.proto), ['RTP/AVP', 'RTP/AVP']);
    assert.deepEqual(tc.engine.callsOf('generateOffer')[0]!.args[1], { audio: true, video: true, data: false });
    assert.equal(tc.engine.live({ kind: 'rtp' }).length, 1);
    await assert.rejects(s.setAnswer({ sdp: clientAnswer(clientOffer()) }), term('invalid_sdp'));
    await s.setAnswer({ sdp: phoneSdp({ video: true }), sdp_type: 'rtp' });
    await tc.engine.settle();
    assert.equal(s.state, 'ready');
    assert.equal(tc.engine.callsOf('gatherCandidates').length, 0);
    assert.deepEqual(alice.typesOf(s.id), ['created', 'answer', 'type']);
    await assert.rejects(s.addClientCandidate(clientCandidate(1)), term('invalid_operation'));
  });
});

describe('plain RTP offeree', () => {
  it('answers RTP/AVP at once without candidates; re-offers keep the endpoint; trickle options are refused', async () => {
    const tc = core();
    const alice = tc.conn('alice');
    const { reply, session: s } = await tc.create(alice, { type: 'park', offer: { sdp: phoneSdp(), sdp_type: 'rtp' }, wait_reply: true });
    assert.equal(reply.answer!.sdp_type, 'rtp');
    assert.equal(reply.answer!.trickle_ice, false);
    assert.deepEqual(parseSdp(reply.answer!.sdp).sections.map((x) => `${x.media} ${x.proto}`), ['audio RTP/AVP']);
    await tc.engine.settle();
    assert.deepEqual(alice.typesOf(s.id), ['created', 'answer', 'type']);
    const again = await s.reoffer(phoneSdp({ port: 40100 }));
    assert.equal(again, reply.answer!.sdp, 'the same ports');
    assert.equal(tc.engine.live({ kind: 'rtp' }).length, 1);
    await assert.rejects(s.reoffer(clientOffer()), term('invalid_sdp'));
    s.clientCandidatesEnd(); // a no-op for RTP

    await assert.rejects(tc.create(alice, { type: 'park', offer: { sdp: phoneSdp(), sdp_type: 'rtp' }, no_offer_trickle_ice: true }), term('invalid_parameters'));
    const webrtc = await tc.offeree(alice);
    await assert.rejects(webrtc.reoffer(phoneSdp()), term('invalid_state'));
  });
});

describe('timers', () => {
  it('wait_timeout stops a session that never gets its answer (session_timeout), releasing everything', async () => {
    const tc = core();
    const alice = tc.conn('alice');
    const { session: s } = await tc.create(alice, { type: 'park', wait_timeout: 0.05 });
    await s.whenDestroyed;
    assert.deepEqual(alice.of(s.id, 'destroyed')[0]!.body, { code: 100060, reason: 'Session timeout' });
    assert.equal(tc.engine.liveCount, 0);
  });

  it('the answer replaces wait_timeout by ready_timeout', async () => {
    const tc = core();
    const { reply, session: s } = await tc.create(tc.conn('alice'), { type: 'park', wait_reply: true, wait_timeout: 0.06, ready_timeout: 0.25 });
    await sleep(20);
    await s.setAnswer({ sdp: clientAnswer(reply.offer!.sdp) });
    const answeredAt = Date.now();
    await sleep(80);
    assert.equal(s.isStopped, false, 'alive past the wait timeout');
    await s.whenDestroyed;
    assert.ok(Date.now() - answeredAt >= 200, 'stopped by the ready timeout');
    assert.deepEqual(s.stopCause, { term: 'session_timeout' });
  });

  it('an offeree is ready at once: only ready_timeout applies', async () => {
    const tc = core();
    const s = await tc.offeree(tc.conn('alice'), { wait_timeout: 0.03, ready_timeout: 0.15 });
    await sleep(60);
    assert.equal(s.isStopped, false);
    await s.whenDestroyed;
    assert.equal(s.stopCause!.term, 'session_timeout');
  });
});

describe('trickle ICE buffering (§7)', () => {
  it('no_offer_trickle_ice (client offer): the offer waits for the client\'s candidates and goes to the engine complete', async () => {
    const tc = core();
    const alice = tc.conn('alice');
    const offer = clientOffer();
    const { reply, session: s } = await tc.create(alice, { type: 'park', offer: { sdp: offer, trickle_ice: true }, no_offer_trickle_ice: true });
    assert.equal(reply.answer, undefined);
    assert.equal(tc.engine.callsOf('processOffer').length, 0, 'held');
    await s.addClientCandidate(clientCandidate(1, 0));
    await s.addClientCandidate(clientCandidate(2, 1));
    assert.equal(tc.engine.callsOf('addIceCandidate').length, 0, 'buffered, not trickled');
    const answer = s.waitSdp('answer');
    s.clientCandidatesEnd();
    await answer;
    const sent = String(tc.engine.callsOf('processOffer')[0]!.args[1]);
    assert.equal(countCandidates(sent), 2);
    assert.equal(sent.split(/\r?\n/).filter((l) => l === 'a=end-of-candidates').length, 3, 'every section is complete');
    const sections = parseSdp(sent).sections;
    assert.ok(sections[0]!.lines.some((l) => l.startsWith('a=candidate:c1 ')));
    assert.ok(sections[1]!.lines.some((l) => l.startsWith('a=candidate:c2 ')));
    assert.equal(s.offer!.trickle_ice, false, 'the stored offer is the complete one');
    // Our answer is trickled as usual; late client candidates are ignored.
    await s.addClientCandidate(clientCandidate(3));
    assert.equal(tc.engine.callsOf('addIceCandidate').length, 0);
    await until(() => alice.of(s.id, 'candidate_end').length > 0, 1000, 'our candidates');
  });

  it('no_offer_trickle_ice: the trickle timeout ends the collection with what came', async () => {
    const tc = core();
    const { session: s } = await tc.create(tc.conn('alice'), { type: 'park', offer: { sdp: clientOffer(), trickle_ice: true }, no_offer_trickle_ice: true, trickle_ice_timeout: 40 });
    await s.addClientCandidate(clientCandidate(1));
    const started = Date.now();
    await s.waitSdp('answer');
    assert.ok(Date.now() - started >= 30);
    assert.equal(countCandidates(String(tc.engine.callsOf('processOffer')[0]!.args[1])), 1);
  });

  it('no_offer_trickle_ice without any candidate: no_ice_candidates; with wait_reply the create fails after destroyed', async () => {
    const tc = core();
    const alice = tc.conn('alice');
    const { session: s } = await tc.create(alice, { type: 'park', offer: { sdp: clientOffer(), trickle_ice: true }, no_offer_trickle_ice: true, trickle_ice_timeout: 30 });
    s.clientCandidatesEnd();
    await s.whenDestroyed;
    assert.deepEqual(s.stopCause, { term: 'no_ice_candidates' });
    assert.equal(tc.engine.callsOf('processOffer').length, 0);

    await assert.rejects(tc.create(alice, { type: 'park', session_id: 'nocand', offer: { sdp: clientOffer(), trickle_ice: true }, no_offer_trickle_ice: true, trickle_ice_timeout: 30, wait_reply: true }), term('no_ice_candidates'));
    assert.deepEqual(alice.typesOf('nocand'), ['created', 'destroyed']);
    assert.equal(tc.bus.subscriptionCount, 0);
  });

  it('no_offer_trickle_ice: candidates already in the offer count; an offer without trickle_ice is not buffered', async () => {
    const tc = core();
    const withCands = clientOffer().replace('a=mid:0\r\n', 'a=mid:0\r\na=candidate:x 1 udp 1 192.0.2.1 5000 typ host\r\n');
    const { session: a } = await tc.create(tc.conn('alice'), { type: 'park', offer: { sdp: withCands, trickle_ice: true }, no_offer_trickle_ice: true });
    a.clientCandidatesEnd();
    await a.waitSdp('answer');
    assert.equal(a.state, 'ready');
    const { reply } = await tc.create(tc.conn('alice'), { type: 'park', offer: { sdp: clientOffer() }, no_offer_trickle_ice: true, wait_reply: true });
    assert.ok(reply.answer, 'processed at once');
  });

  it('no_answer_trickle_ice (our answer): held until our gathering ends, complete, and no candidate events', async () => {
    const tc = core();
    const alice = tc.conn('alice');
    const { reply, session: s } = await tc.create(alice, { type: 'park', offer: { sdp: clientOffer(), trickle_ice: true }, no_answer_trickle_ice: true, wait_reply: true });
    const answer = reply.answer!;
    assert.equal(answer.trickle_ice, false);
    assert.equal(countCandidates(answer.sdp), 2);
    assert.match(answer.sdp, /a=end-of-candidates/);
    await tc.engine.settle();
    assert.deepEqual(alice.typesOf(s.id), ['created', 'answer', 'type']);
  });

  it('no_answer_trickle_ice: gathering that never ends is cut by the timeout; none at all stops with no_ice_candidates', async () => {
    const tc = core({ gathering: 'manual' });
    const alice = tc.conn('alice');
    const p = tc.create(alice, { type: 'park', session_id: 'slow', offer: { sdp: clientOffer(), trickle_ice: true }, no_answer_trickle_ice: true, trickle_ice_timeout: 40, wait_reply: true });
    await until(() => tc.engine.callsOf('gatherCandidates').length === 1, 1000, 'gathering');
    tc.engine.emitCandidate(tc.engine.endpointOf('slow')!, 1);
    const { reply } = await p;
    assert.equal(countCandidates(reply.answer!.sdp), 1);

    await assert.rejects(tc.create(alice, { type: 'park', offer: { sdp: clientOffer(), trickle_ice: true }, no_answer_trickle_ice: true, trickle_ice_timeout: 30, wait_reply: true }), term('no_ice_candidates'));
  });

  it('no_offer_trickle_ice (our offer): the offer comes complete; the client\'s answer is trickled', async () => {
    const tc = core();
    const alice = tc.conn('alice');
    const { reply, session: s } = await tc.create(alice, { type: 'park', no_offer_trickle_ice: true, wait_reply: true });
    assert.equal(reply.offer!.trickle_ice, false);
    assert.equal(countCandidates(reply.offer!.sdp), 2);
    await tc.engine.settle();
    assert.deepEqual(alice.typesOf(s.id), ['created']);
    await s.setAnswer({ sdp: clientAnswer(reply.offer!.sdp), trickle_ice: true });
    await s.addClientCandidate(clientCandidate(1));
    assert.equal(tc.engine.callsOf('addIceCandidate').length, 1);
  });

  it('no_answer_trickle_ice (client answer): the answer waits for the client\'s candidates, including those sent before it', async () => {
    const tc = core();
    const { reply, session: s } = await tc.create(tc.conn('alice'), { type: 'park', no_answer_trickle_ice: true, wait_reply: true });
    await s.addClientCandidate(clientCandidate(1));
    await s.setAnswer({ sdp: clientAnswer(reply.offer!.sdp), trickle_ice: true });
    assert.equal(tc.engine.callsOf('processAnswer').length, 0);
    assert.equal(s.state, 'wait_answer');
    await assert.rejects(s.setAnswer({ sdp: clientAnswer(reply.offer!.sdp), trickle_ice: true }), term('answer_already_set'), 'one answer is being collected');
    await s.addClientCandidate(clientCandidate(2));
    s.clientCandidatesEnd();
    await s.waitSdp('answer');
    assert.equal(countCandidates(String(tc.engine.callsOf('processAnswer')[0]!.args[1])), 2);
    assert.equal(tc.engine.callsOf('addIceCandidate').length, 0);
  });

  it('a session stopped while buffering stops its collection timers (nothing fires later)', async () => {
    const tc = core();
    const { session: s } = await tc.create(tc.conn('alice'), { type: 'park', offer: { sdp: clientOffer(), trickle_ice: true }, no_offer_trickle_ice: true, trickle_ice_timeout: 30 });
    await s.stop('user_stop');
    await sleep(50);
    assert.equal(s.stopCause!.term, 'user_stop', 'not replaced by no_ice_candidates');
    assert.equal(tc.engine.callsOf('processOffer').length, 0);
  });
});

describe('master / slave (§5.5)', () => {
  it('a slave stops with peer_stopped when its master stops; a master with its slave', async () => {
    const tc = core();
    const alice = tc.conn('alice');
    const m = await tc.offeree(alice);
    const s1 = await tc.offeree(alice, { master_id: m.id });
    const s2 = await tc.offeree(alice, { master_id: m.id });
    assert.equal(s1.masterId, m.id);
    assert.deepEqual([...m.slaveIds], [s1.id, s2.id]);
    assert.equal(sessionInfo(m).slave_id, s2.id, 'the latest slave');
    await m.stop('user_stop');
    await Promise.all([s1.whenDestroyed, s2.whenDestroyed]);
    assert.deepEqual(s1.stopCause, { term: 'peer_stopped' });
    assert.deepEqual(s2.stopCause, { term: 'peer_stopped' });

    const m2 = await tc.offeree(alice);
    const s3 = await tc.offeree(alice, { master_id: m2.id });
    await s3.stop('user_stop');
    await m2.whenDestroyed;
    assert.equal(m2.stopCause!.term, 'peer_stopped');
  });

  it('stop_after_peer:false is unlinked instead, both ways', async () => {
    const tc = core();
    const alice = tc.conn('alice');
    const m = await tc.offeree(alice);
    const s = await tc.offeree(alice, { master_id: m.id, stop_after_peer: false });
    await m.stop('user_stop');
    await until(() => s.masterId === undefined, 1000, 'unlinked');
    assert.equal(s.isStopped, false);

    const m2 = await tc.offeree(alice, { stop_after_peer: false });
    const s2 = await tc.offeree(alice, { master_id: m2.id });
    await s2.stop('user_stop');
    await until(() => m2.slaveIds.size === 0, 1000, 'unlinked');
    assert.equal(m2.isStopped, false);
  });

  it('an unknown or foreign master is refused before anything starts', async () => {
    const tc = core();
    const bobs = await tc.offeree(tc.conn('bob'));
    const before = tc.engine.created;
    await assert.rejects(tc.offeree(tc.conn('alice'), { master_id: 'nope' }), term('unknown_peer'));
    await assert.rejects(tc.offeree(tc.conn('alice'), { master_id: bobs.id }), term('unknown_peer'));
    assert.equal(tc.engine.created, before);
  });

  it('set_master_answer: the slave\'s answer is set on its master, which announces it; the slave says nothing', async () => {
    const tc = core();
    const alice = tc.conn('alice');
    const { session: m } = await tc.create(alice, { type: 'park', wait_reply: true });
    const { reply, session: s } = await tc.create(alice, { type: 'park', master_id: m.id, set_master_answer: true, offer: { sdp: clientOffer(), trickle_ice: true }, wait_reply: true });
    const got = await m.waitSdp('answer');
    assert.equal(got.sdp, reply.answer!.sdp);
    assert.equal(tc.engine.callsOf('processAnswer', tc.engine.endpointOf(m.id))[0]!.args[1], reply.answer!.sdp);
    assert.equal(alice.of(s.id, 'answer').length, 0);
    assert.equal(alice.of(m.id, 'answer').length, 1);
  });
});

describe('bridge cascades (§5.1, §8)', () => {
  async function bridged(tc: TestCore, peerOpts: Record<string, unknown> = {}) {
    const alice = tc.conn('alice');
    const a = await tc.offeree(alice, peerOpts);
    const b = await tc.offeree(alice, { type: 'bridge', peer_id: a.id });
    return { alice, a, b };
  }

  it('bridging wires each endpoint to the other\'s proxy; both announce the type', async () => {
    const tc = core();
    const { alice, a, b } = await bridged(tc);
    const epA = tc.engine.endpointOf(a.id)!;
    const epB = tc.engine.endpointOf(b.id)!;
    for (const k of MEDIA_KINDS) {
      assert.equal(tc.engine.sourceOf(epA, k), b.proxy);
      assert.equal(tc.engine.sourceOf(epB, k), a.proxy);
    }
    assert.deepEqual(a.typeExt, { peer_id: b.id });
    assert.deepEqual(b.typeExt, { peer_id: a.id });
    assert.deepEqual(alice.of(a.id, 'type').at(-1)!.body, { type: 'bridge', peer_id: b.id });
    assert.deepEqual(alice.of(b.id, 'type').at(-1)!.body, { type: 'bridge', peer_id: a.id });
  });

  it('when one side stops, the other stops with bridge_stop (stop_after_peer default)', async () => {
    const tc = core();
    const { a, b } = await bridged(tc);
    await a.stop('user_stop');
    await b.whenDestroyed;
    assert.deepEqual(b.stopCause, { term: 'bridge_stop' });
  });

  it('with stop_after_peer:false the other side is parked and told', async () => {
    const tc = core();
    const { alice, a, b } = await bridged(tc, { stop_after_peer: false });
    await b.stop('user_stop');
    await until(() => a.type === 'park', 1000, 'parked');
    await until(() => alice.of(a.id, 'type').at(-1)?.body?.type === 'park', 1000, 'type event');
    assert.deepEqual(tc.engine.sourcesOf(tc.engine.endpointOf(a.id)!), {});
    assertUplink(tc, a);
    assert.equal(a.isStopped, false);
  });

  it('refuses itself, a stopped or unknown peer, and a peer on another video codec', async () => {
    const tc = core();
    const alice = tc.conn('alice');
    const a = await tc.offeree(alice);
    await assert.rejects(a.setType({ type: 'bridge', peer: a }), term('invalid_value'));
    const gone = await tc.offeree(alice);
    await gone.stop('user_stop');
    await assert.rejects(a.setType({ type: 'bridge', peer: gone }), term('unknown_peer'));
    assert.throws(() => tc.sessions.resolveType({ type: 'bridge', peer_id: 'nope' }, alice.caller), term('unknown_peer'));
    assert.throws(() => tc.sessions.resolveType({ type: 'bridge' }, alice.caller), term('missing_field'));
    const h264 = await tc.offeree(alice, { offer: { sdp: clientOffer({ videoCodec: 'H264/90000' }) } });
    await assert.rejects(a.setType({ type: 'bridge', peer: h264 }), term('incompatible_session'));
    assert.equal(a.type, 'park', 'a failed switch changes nothing');
    assert.equal(h264.type, 'park');
  });

  it('a peer whose answer comes after the switch on another video codec: audio and data only, and a codec_mismatch info', async () => {
    const tc = core();
    const alice = tc.conn('alice');
    const a = await tc.offeree(alice, { stop_after_peer: false });
    const { reply, session: b } = await tc.create(alice, { type: 'bridge', peer_id: a.id, wait_reply: true });
    const epA = tc.engine.endpointOf(a.id)!;
    const epB = tc.engine.endpointOf(b.id)!;
    tc.engine.setCodecs(epB, { audio: 'audio/opus', video: 'video/h264' });
    await b.setAnswer({ sdp: clientAnswer(reply.offer!.sdp) });
    assert.deepEqual(tc.engine.sourcesOf(epB), { audio: a.proxy, data: a.proxy });
    assert.ok(alice.of(b.id, 'info').some((e) => e.body?.info === 'codec_mismatch'));
    // The other side was wired when it entered the bridge (the codec was not known then).
    assert.equal(tc.engine.sourceOf(epA, 'audio'), b.proxy);
  });
});

describe('engine events (§5 events)', () => {
  it('connection state and media flows become info events and status; other sessions\' tags are ignored', async () => {
    const tc = core();
    const alice = tc.conn('alice');
    const s = await tc.offeree(alice);
    const other = await tc.offeree(alice);
    const ep = tc.engine.endpointOf(s.id)!;
    tc.engine.emitConnection(ep, 'connecting');
    tc.engine.emitConnection(ep, 'connected');
    tc.engine.emitConnection(ep, 'connected');
    tc.engine.emitMediaFlow(ep, 'in', 'audio', 'up');
    tc.engine.emitMediaFlow(ep, 'out', 'video', 'down');
    const infos = alice.of(s.id, 'info').map((e) => e.body);
    assert.deepEqual(infos, [
      { info: 'webrtc', status: 'up' },
      { info: 'media', direction: 'in', media: 'audio', status: 'up' },
      { info: 'media', direction: 'out', media: 'video', status: 'down' },
    ]);
    const st = sessionStatus(s);
    assert.equal(st.webrtc_ready, true);
    assert.deepEqual(st.media_in, { audio: 'up' });
    assert.deepEqual(st.media_out, { video: 'down' });
    assert.equal(alice.of(other.id, 'info').length, 0);
    tc.engine.emitConnection(ep, 'disconnected');
    assert.deepEqual(alice.of(s.id, 'info').at(-1)!.body, { info: 'webrtc', status: 'down' });
    assert.equal((await s.stats()).connection_state, 'disconnected');
  });

  it('an endpoint error is reported; an internal failure of the endpoint stops that session only', async () => {
    const tc = core();
    const alice = tc.conn('alice');
    const s = await tc.offeree(alice);
    const other = await tc.offeree(alice);
    const ep = tc.engine.endpointOf(s.id)!;
    tc.engine.emitError(ep, 'message too large', 'data_too_large');
    tc.engine.emitError(ep, 'internal words', 'socket_error');
    assert.deepEqual(alice.of(s.id, 'info').map((e) => e.body), [
      { info: 'error', code: 'data_too_large', error: 'message too large' },
      { info: 'error', code: 'socket_error', error: 'media endpoint error' },
    ]);
    tc.engine.emitError(ep, 'TypeError in werift', 'element_failed');
    await s.whenDestroyed;
    assert.deepEqual(s.stopCause, { term: 'session_failed', detail: 'internal error in the media endpoint' });
    assert.equal(other.isStopped, false);
  });

  it('session_events pushes chosen types to the creator without a subscription, with session_events_body', async () => {
    const tc = core();
    const alice = tc.conn('alice');
    const { session: s } = await tc.create(alice, { type: 'park', subscribe: false, offer: { sdp: clientOffer(), trickle_ice: true }, session_events: ['answer', 'destroyed'], session_events_body: { tag: 1 } });
    await tc.engine.settle();
    await s.stop('user_stop');
    assert.deepEqual(alice.typesOf(s.id), ['answer', 'destroyed']);
    assert.equal(alice.of(s.id, 'destroyed')[0]!.body!.tag, 1);
  });

  it('events reach the owner, its parties and admins only', async () => {
    const tc = core();
    const alice = tc.conn('alice');
    const bob = tc.conn('bob');
    const carol = tc.conn('carol');
    const admin = tc.conn('root', { admin: true });
    for (const c of [bob, carol, admin]) tc.bus.subscribe(c, { class: 'media', subclass: 'session', type: '*', obj_id: '*' });
    const { session: s } = await tc.create(alice, { type: 'park', offer: { sdp: clientOffer() } }, { owner: { parties: ['bob'] } });
    await tc.engine.settle();
    assert.ok(bob.of(s.id, 'created').length === 1 && admin.of(s.id, 'created').length === 1);
    assert.equal(carol.events.length, 0);
    assert.equal(s.visibleTo(bob.caller), true);
    assert.equal(s.visibleTo(carol.caller), false);
    assert.throws(() => tc.sessions.getFor(s.id, carol.caller), term('session_not_found'));
    for (const c of [bob, carol, admin]) tc.bus.removeAll(c);
  });

  it('stopOwnedBy stops a connection\'s sessions (registered_down) and no one else\'s', async () => {
    const tc = core();
    const alice = tc.conn('alice');
    const bob = tc.conn('bob');
    const a1 = await tc.offeree(alice);
    const a2 = await tc.offeree(alice);
    const b = await tc.offeree(bob);
    await tc.sessions.stopOwnedBy(alice.id, 'registered_down');
    assert.equal(a1.stopCause!.term, 'registered_down');
    assert.equal(a2.stopCause!.term, 'registered_down');
    assert.equal(b.isStopped, false);
  });

  it('quota: the caps are checked before anything is made, and freed by the stop', async () => {
    const tc = core({ limits: { ...UNLIMITED, maxSessionsPerConnection: 1 } });
    const alice = tc.conn('alice');
    const first = await tc.offeree(alice);
    const before = tc.engine.created;
    await assert.rejects(tc.offeree(alice), term('too_many_sessions'));
    assert.equal(tc.engine.created, before);
    assert.equal(alice.events.filter((e) => e.type === 'created').length, 1);
    await first.stop('user_stop');
    await tc.offeree(alice);
  });
});
