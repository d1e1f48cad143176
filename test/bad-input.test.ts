// Bad input to the media session commands (issue #2): every create field missing or of the wrong
// type, unknown fields, hostile SDP in offers and answers, garbage candidates, duplicated ids and
// other users' sessions. Each gets its own error naming the problem, and nothing else is
// disturbed: sessions already running stay up, and a normal session still works afterwards.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, connectClient, eventually } from './helpers/server.js';
import { connectParked } from './helpers/flows.js';
import { TestPeer } from './helpers/peer.js';
import type { Server } from '../src/main.js';
import { NkMediaError, type CandidateInit, type EventData, type NkMediaClient } from '../src/client/index.js';

let server: Server;
let alice: NkMediaClient;
let bob: NkMediaClient;
const aliceEvents: EventData[] = [];
const peers: TestPeer[] = [];
/** A real werift offer (audio, video, data) and its candidates, for mutating. */
let offer: { sdp: string; candidates: CandidateInit[] };

before(async () => {
  server = await startTestServer();
  alice = await connectClient(server, 'alice');
  bob = await connectClient(server, 'bob');
  alice.onEvent((e) => aliceEvents.push(e));
  const p = newPeer();
  offer = await p.makeOffer();
});
after(async () => {
  for (const p of peers) await p.close();
  await alice.close();
  await bob.close();
  await server.close();
});

function newPeer(): TestPeer {
  const p = new TestPeer();
  peers.push(p);
  return p;
}

/** The request fails with this code and exactly this error text (or one matching it). */
async function rejects(p: Promise<unknown>, code: number, text: string | RegExp): Promise<NkMediaError> {
  let value: unknown;
  try { value = await p; } catch (err) {
    assert.ok(err instanceof NkMediaError, String(err));
    assert.equal(err.code, code, err.message);
    if (typeof text === 'string') assert.equal(err.error, text);
    else assert.match(err.error, text);
    return err;
  }
  assert.fail(`expected error ${code} (${String(text)}), got ok: ${JSON.stringify(value)}`);
}

/** Subscriptions of a client to media sessions (what a failed create must not leave behind). */
async function sessionSubscriptions(c: NkMediaClient): Promise<unknown[]> {
  const subs = await c.request<{ class: string }[]>('core', 'event', 'get_subscriptions');
  return subs.filter((s) => s.class === 'media');
}

/** The session is alive, owned by alice and has not been destroyed. */
async function assertAlive(id: string): Promise<Record<string, any>> {
  const info = await alice.getInfo(id);
  assert.equal(info.session_id, id);
  assert.equal(info.user_id, 'alice');
  assert.ok(!aliceEvents.some((e) => e.obj_id === id && e.type === 'destroyed'), `${id} was not destroyed`);
  return info;
}

const rx = (s: string) => new RegExp(`^${s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`);

// ---- SDP mutations ----------------------------------------------------------------------------

const HEADER = 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n';
const BINARY = String.fromCharCode(...Array.from({ length: 256 }, (_, i) => (i * 37 + 11) % 256));

type Case = [name: string, sdp: string, code: number, text: string | RegExp];

/** Bad SDPs and what the server says about them, made from a good one (an offer or an answer). */
function hostileSdps(good: string, which: 'offer' | 'answer'): Case[] {
  const lineOf = (sdp: string, prefix: string) => sdp.split('\r\n').findIndex((l) => l.startsWith(prefix)) + 1;
  const withExtra = `${good}a=tool:ünïcødé\r\n`;
  const badPort = good.replace(/^m=audio 9 /m, 'm=audio 70000 ');
  const refused = new RegExp(`^Invalid SDP: ${which} refused: \\S`);
  const cases: Case[] = [
    ['empty', '', 100046, `Invalid value: ${which}.sdp: must be >= 1 characters`],
    ['binary bytes', BINARY, 300016, 'Invalid SDP: must start with v=0'],
    ['binary after a header', `v=0\r\n${BINARY}`, 300016, 'Invalid SDP: line 2 is not a printable "x=value" line'],
    ['random text', 'The quick brown fox jumps over the lazy dog', 300016, 'Invalid SDP: must start with v=0'],
    ['upper-case version line', good.replace(/^v=0/, 'V=0'), 300016, 'Invalid SDP: must start with v=0'],
    ['CR-only line ends', good.replace(/\r\n/g, '\r'), 300016, 'Invalid SDP: must start with v=0'],
    ['non-ASCII text', withExtra, 300016, `Invalid SDP: line ${lineOf(withExtra, 'a=tool:')} is not a printable "x=value" line`],
    ['huge (over 128 KiB)', `${good}${'a=x-padding:0123456789abcdef\r\n'.repeat(5000)}`, 100046, `Invalid value: ${which}.sdp: must be <= 131072 characters`],
    ['header only, no m-lines', HEADER, 300016, 'Invalid SDP: no media sections'],
    ['no o= line', good.replace(/^o=.*\r\n/m, ''), 300016, 'Invalid SDP: no o= line'],
    ['malformed m= line', `${HEADER}m=audio\r\n`, 300016, 'Invalid SDP: line 5: malformed m= line'],
    ['port over 65535', badPort, 300016, `Invalid SDP: line ${lineOf(badPort, 'm=audio')}: bad port`],
    ['unknown media', good.replace(/^m=audio /m, 'm=text '), 300016, 'Invalid SDP: m-line 0: unsupported media "text"'],
    ['plain RTP/AVP without sdp_type rtp', `${HEADER}m=audio 4000 RTP/AVP 0 8\r\nc=IN IP4 127.0.0.1\r\na=rtpmap:0 PCMU/8000\r\n`, 300016,
      'Invalid SDP: m-line 0: protocol "RTP/AVP" is not WebRTC (use sdp_type "rtp" for plain RTP)'],
    ['no ICE ufrag', good.replace(/^a=ice-ufrag:.*\r\n/gm, ''), 300016, 'Invalid SDP: m-line 0: missing ICE credentials'],
    ['no ICE pwd', good.replace(/^a=ice-pwd:.*\r\n/gm, ''), 300016, 'Invalid SDP: m-line 0: missing ICE credentials'],
    ['no fingerprint', good.replace(/^a=fingerprint:.*\r\n/gm, ''), 300016, 'Invalid SDP: m-line 0: missing DTLS fingerprint'],
    ['empty fingerprint', good.replace(/^a=fingerprint:.*$/gm, 'a=fingerprint:'), 300016, rx('Invalid SDP: m-line 0: malformed DTLS fingerprint')],
    ['garbage fingerprint', good.replace(/^a=fingerprint:.*$/gm, 'a=fingerprint:sha-256 zz'), 300016, rx('Invalid SDP: m-line 0: malformed DTLS fingerprint')],
    ['every m-line disabled', good.replace(/^m=(\w+) 9 /gm, 'm=$1 0 '), 300016, 'Invalid SDP: no active media sections'],
    ['65 m-lines', HEADER + 'm=audio 0 UDP/TLS/RTP/SAVPF 0\r\n'.repeat(65), 300016, 'Invalid SDP: too many media sections (max 64)'],
    // These pass our own checks; werift refuses them, and its reason is passed on.
    ['garbage sctp-port (werift refuses)', good.replace(/^a=sctp-port:.*$/m, 'a=sctp-port:abc'), 300016, refused],
    ['m-line without formats (werift refuses)', good.replace(/^(m=audio \S+ \S+) .*$/m, '$1'), 300016, refused],
  ];
  // (werift pairs an answer's sections with the offer's by position, so only offers need a=mid.)
  if (which === 'offer') cases.push(['no a=mid (werift refuses)', good.replace(/^a=mid:.*\r\n/gm, ''), 300016, refused]);
  for (const [name, sdp] of cases) assert.notEqual(sdp, good, `mutation "${name}" changed nothing`);
  return cases;
}

// -----------------------------------------------------------------------------------------------

describe('create: fields missing or of the wrong type', () => {
  const cases: [name: string, data: Record<string, unknown>, code: number, text: string | RegExp][] = [
    ['type missing', {}, 100045, 'Missing field: type'],
    ['type missing, other fields present', { wait_reply: true, session_id: 'x1' }, 100045, 'Missing field: type'],
    ['type a number', { type: 5 }, 100046, rx('Invalid value: type: expected one of "park", "echo", "bridge"')],
    ['type unknown', { type: 'foo' }, 100046, rx('Invalid value: type: expected one of "park"')],
    ['type upper-case', { type: 'PARK' }, 100046, rx('Invalid value: type: expected one of "park"')],
    ['type p2p', { type: 'p2p' }, 100006, 'Not implemented: type "p2p" (not a Kurento-backend type)'],
    ['type proxy', { type: 'proxy' }, 100006, 'Not implemented: type "proxy" (not a Kurento-backend type)'],
    ['type mcu', { type: 'mcu' }, 100006, 'Not implemented: type "mcu" (not a Kurento-backend type)'],
    ['bridge without peer_id', { type: 'bridge' }, 100045, 'Missing field: peer_id'],
    ['bridge with an unknown peer', { type: 'bridge', peer_id: 'no-such-session' }, 100071, 'Unknown peer'],
    ['bridge with itself', { type: 'bridge', session_id: 'me-myself', peer_id: 'me-myself' }, 100046, 'Invalid value: peer_id: a session cannot bridge with itself'],
    ['listen without publisher_id', { type: 'listen' }, 100045, 'Missing field: publisher_id'],
    ['play without uri', { type: 'play' }, 100045, 'Missing field: uri'],
    ['wait_reply "yes"', { type: 'park', wait_reply: 'yes' }, 100046, 'Invalid value: wait_reply: expected boolean'],
    ['wait_reply 1', { type: 'park', wait_reply: 1 }, 100046, 'Invalid value: wait_reply: expected boolean'],
    ['trickle_ice_timeout 50', { type: 'park', trickle_ice_timeout: 50 }, 100046, 'Invalid value: trickle_ice_timeout: must be >= 100'],
    ['trickle_ice_timeout 99999', { type: 'park', trickle_ice_timeout: 99999 }, 100046, 'Invalid value: trickle_ice_timeout: must be <= 30000'],
    ['trickle_ice_timeout "x"', { type: 'park', trickle_ice_timeout: 'x' }, 100046, 'Invalid value: trickle_ice_timeout: expected number'],
    ['trickle_ice_timeout 150.5', { type: 'park', trickle_ice_timeout: 150.5 }, 100046, 'Invalid value: trickle_ice_timeout: expected an integer'],
    ['wait_timeout 0', { type: 'park', wait_timeout: 0 }, 100046, 'Invalid value: wait_timeout: must be >= 1'],
    ['wait_timeout -5', { type: 'park', wait_timeout: -5 }, 100046, 'Invalid value: wait_timeout: must be >= 1'],
    ['wait_timeout "60"', { type: 'park', wait_timeout: '60' }, 100046, 'Invalid value: wait_timeout: expected number'],
    ['ready_timeout 0', { type: 'park', ready_timeout: 0 }, 100046, 'Invalid value: ready_timeout: must be >= 1'],
    ['session_id with spaces', { type: 'park', session_id: 'my session' }, 100046, 'Invalid value: session_id: use letters, digits and . _ : @ - (not first)'],
    ['session_id a path', { type: 'park', session_id: '../../etc/passwd' }, 100046, 'Invalid value: session_id: use letters, digits and . _ : @ - (not first)'],
    ['session_id 300 chars', { type: 'park', session_id: 's'.repeat(300) }, 100046, 'Invalid value: session_id: must be <= 128 characters'],
    ['session_id empty', { type: 'park', session_id: '' }, 100046, 'Invalid value: session_id: must be >= 1 characters'],
    ['session_id a number', { type: 'park', session_id: 42 }, 100046, 'Invalid value: session_id: expected string'],
    ['offer without sdp', { type: 'park', offer: { trickle_ice: true } }, 100045, 'Missing field: offer.sdp'],
    ['offer.sdp a number', { type: 'park', offer: { sdp: 12345 } }, 100046, 'Invalid value: offer.sdp: expected string'],
    ['offer a string', { type: 'park', offer: 'v=0' }, 100046, 'Invalid value: offer: expected object'],
    ['offer an array', { type: 'park', offer: ['v=0'] }, 100046, 'Invalid value: offer: expected object'],
    ['offer.sdp_type unknown', { type: 'park', offer: { sdp: 'v=0', sdp_type: 'sip' } }, 100046, 'Invalid value: offer.sdp_type: expected one of "webrtc", "rtp"'],
    ['offer.trickle_ice "yes"', { type: 'park', offer: { sdp: 'v=0', trickle_ice: 'yes' } }, 100046, 'Invalid value: offer.trickle_ice: expected boolean'],
    ['sdp_type unknown', { type: 'park', sdp_type: 'sip' }, 100046, 'Invalid value: sdp_type: expected one of "webrtc", "rtp"'],
    ['no_offer_trickle_ice "true"', { type: 'park', no_offer_trickle_ice: 'true' }, 100046, 'Invalid value: no_offer_trickle_ice: expected boolean'],
    ['mute_audio 1', { type: 'park', mute_audio: 1 }, 100046, 'Invalid value: mute_audio: expected boolean'],
    ['mute_video "false"', { type: 'park', mute_video: 'false' }, 100046, 'Invalid value: mute_video: expected boolean'],
    ['events_body "x"', { type: 'park', events_body: 'x' }, 100046, 'Invalid value: events_body: expected record'],
    ['events_body an array', { type: 'park', events_body: [1, 2] }, 100046, 'Invalid value: events_body: expected record'],
    ['session_meta a number', { type: 'park', session_meta: 7 }, 100046, 'Invalid value: session_meta: expected record'],
    ['session_events a string', { type: 'park', session_events: 'created' }, 100046, 'Invalid value: session_events: expected array'],
    ['session_events with a number', { type: 'park', session_events: ['created', 1] }, 100046, 'Invalid value: session_events[1]: expected string'],
    ['bitrate -1', { type: 'park', bitrate: -1 }, 100046, 'Invalid value: bitrate: must be >= 0'],
    ['bitrate 1.5', { type: 'park', bitrate: 1.5 }, 100046, 'Invalid value: bitrate: expected an integer'],
    ['bitrate "1M"', { type: 'park', bitrate: '1M' }, 100046, 'Invalid value: bitrate: expected number'],
    ['subscribe "no"', { type: 'park', subscribe: 'no' }, 100046, 'Invalid value: subscribe: expected boolean'],
    ['master_id with spaces', { type: 'park', master_id: 'a b' }, 100046, 'Invalid value: master_id: use letters, digits and . _ : @ - (not first)'],
    ['master_id unknown', { type: 'park', master_id: 'no-such-session' }, 100071, 'Unknown peer'],
    ['backend nkmedia_janus', { type: 'park', backend: 'nkmedia_janus' }, 300003, 'Unknown backend'],
    ['backend a number', { type: 'park', backend: 3 }, 100046, 'Invalid value: backend: expected string'],
  ];

  it('each gets its own error naming the field, and creates nothing', async () => {
    const sessionsBefore = server.services.sessions.size;
    const subsBefore = await sessionSubscriptions(alice);
    for (const [name, data, code, text] of cases) {
      await rejects(alice.session('create', data), code, text).catch((err: Error) => { throw new Error(`${name}: ${err.message}`); });
      // `start`, the older name, validates the same way.
      await rejects(alice.session('start', data), code, text).catch((err: Error) => { throw new Error(`${name} (start): ${err.message}`); });
    }
    assert.equal(server.services.sessions.size, sessionsBefore, 'no session was created');
    assert.deepEqual(await sessionSubscriptions(alice), subsBefore, 'no subscription was left behind');
    assert.deepEqual(await alice.listSessions(), []);
  });

  it('other commands name their missing or badly typed fields too', async () => {
    const cases2: [cmd: string, data: Record<string, unknown>, code: number, text: string][] = [
      ['destroy', {}, 100045, 'Missing field: session_id'],
      ['get_info', { session_id: 5 }, 100046, 'Invalid value: session_id: expected string'],
      ['get_offer', { session_id: 'a b' }, 100046, 'Invalid value: session_id: use letters, digits and . _ : @ - (not first)'],
      ['set_answer', { session_id: 'x' }, 100045, 'Missing field: answer'],
      ['set_answer', { session_id: 'x', answer: {} }, 100045, 'Missing field: answer.sdp'],
      ['set_answer', { session_id: 'x', answer: { sdp: 7 } }, 100046, 'Invalid value: answer.sdp: expected string'],
      ['set_answer', { answer: { sdp: 'v=0' } }, 100045, 'Missing field: session_id'],
      ['update_media', { session_id: 'x', mute_audio: 'yes' }, 100046, 'Invalid value: mute_audio: expected boolean'],
      ['update_media', { session_id: 'x', bitrate: -1 }, 100046, 'Invalid value: bitrate: must be >= 0'],
      ['set_type', { session_id: 'x' }, 100045, 'Missing field: type'],
      ['set_type', { session_id: 'x', type: 'foo' }, 100046, 'Invalid value: type: expected one of "park", "echo", "bridge", "publish", "listen", "play", "p2p", "proxy", "mcu"'],
      ['set_candidate_end', {}, 100045, 'Missing field: session_id'],
    ];
    for (const [cmd, data, code, text] of cases2) {
      await rejects(alice.session(cmd, data), code, text).catch((err: Error) => { throw new Error(`${cmd} ${JSON.stringify(data)}: ${err.message}`); });
    }
  });

  it('unknown fields are ignored and reported by a core/session_event/unrecognized_fields event', async () => {
    const seen = alice.waitEvent((e) => e.class === 'core' && e.type === 'unrecognized_fields' && e.body?.cmd === 'create');
    const r = await alice.session('create', { type: 'park', colour: 'red', sdp: 'v=0', wait_replay: true });
    const e = await seen;
    assert.deepEqual(e, {
      class: 'core', subclass: 'session_event', type: 'unrecognized_fields', obj_id: alice.sessionId,
      body: { class: 'media', subclass: 'session', cmd: 'create', fields: ['colour', 'sdp', 'wait_replay'] },
    });
    const info = await alice.session('get_info', { session_id: r.session_id, verbose: true });
    assert.equal(info.type, 'park');
    const e2 = aliceEvents.find((x) => x.type === 'unrecognized_fields' && x.body?.cmd === 'get_info');
    assert.deepEqual(e2?.body?.fields, ['verbose']);
    // Only the connection that sent them hears about it.
    assert.ok(!aliceEvents.some((x) => x.type === 'unrecognized_fields' && x.obj_id !== alice.sessionId));
    await alice.destroySession(r.session_id);
  });
});

describe('hostile SDP', () => {
  it('in create offers: each refused with a reason, nothing left behind', async () => {
    const sessionsBefore = server.services.sessions.size;
    const subsBefore = await sessionSubscriptions(alice);
    for (const [name, sdp, code, text] of hostileSdps(offer.sdp, 'offer')) {
      for (const type of ['park', 'echo']) {
        for (const wait_reply of [false, true]) {
          await rejects(alice.createSession({ type: type as 'park', offer: { sdp, trickle_ice: true }, wait_reply }), code, text)
            .catch((err: Error) => { throw new Error(`${name} (${type}, wait_reply ${wait_reply}): ${err.message}`); });
        }
      }
    }
    assert.equal(server.services.sessions.size, sessionsBefore, 'no session was left behind');
    assert.deepEqual(await sessionSubscriptions(alice), subsBefore, 'no subscription was left behind');
  });

  it('in set_answer: each refused with a reason; the session waits on, and the real answer then works', async () => {
    const created = await alice.createSession({ type: 'park', wait_reply: true });
    const id = created.session_id;
    const peer = newPeer();
    const stopFollowing = peer.followCandidates(alice, id);
    for (const e of aliceEvents.filter((x) => x.obj_id === id && x.type === 'candidate')) await peer.addCandidate(e.body as CandidateInit);
    const answer = await peer.answerOffer(created.offer!);
    for (const [name, sdp, code, text] of hostileSdps(answer.sdp, 'answer')) {
      await rejects(alice.setAnswer(id, { sdp, trickle_ice: true }), code, text).catch((err: Error) => { throw new Error(`${name}: ${err.message}`); });
    }
    const info = await assertAlive(id);
    assert.equal(info.status.state, 'wait_answer');
    assert.equal(info.answer, undefined);
    await alice.setAnswer(id, { sdp: answer.sdp, trickle_ice: true });
    for (const c of answer.candidates) await alice.setCandidate(id, c);
    await alice.setCandidateEnd(id);
    await peer.waitConnected();
    assert.equal((await alice.getAnswer(id)).answer.sdp, answer.sdp);
    await rejects(alice.setAnswer(id, { sdp: answer.sdp }), 300013, 'Answer already set');
    stopFollowing();
    await alice.destroySession(id);
  });

  it('afterwards a normal park session on the same server still works', async () => {
    const { id, peer } = await connectParked(alice);
    peers.push(peer);
    await assertAlive(id);
    // The server hears of the connection a moment after the peer (later still from a worker).
    await eventually(async () => (await alice.getInfo(id)).status.webrtc_ready === true, 5000, 'webrtc_ready');
    await alice.destroySession(id);
  });
});

describe('garbage candidates', () => {
  it('each refused with invalid_value / missing_field; real candidates then connect', async () => {
    const peer = newPeer();
    const own = await peer.makeOffer();
    const reply = await alice.createSession({ type: 'park', offer: { sdp: own.sdp, trickle_ice: true }, wait_reply: true });
    const id = reply.session_id;
    const stopFollowing = peer.followCandidates(alice, id);
    for (const e of aliceEvents.filter((x) => x.obj_id === id && x.type === 'candidate')) await peer.addCandidate(e.body as CandidateInit);
    await peer.takeAnswer(reply.answer!);
    const good = own.candidates[0]!;
    const cases: [name: string, data: Record<string, unknown>, code: number, text: string][] = [
      ['random text', { candidate: 'hello world', sdpMLineIndex: 0 }, 100046, 'Invalid value: candidate: not an ICE candidate line'],
      ['an SDP line', { candidate: 'a=ice-ufrag:abcd', sdpMLineIndex: 0 }, 100046, 'Invalid value: candidate: not an ICE candidate line'],
      ['port 99999', { candidate: 'candidate:1 1 udp 2130706431 127.0.0.1 99999 typ host', sdpMLineIndex: 0 }, 100046, 'Invalid value: candidate: bad port'],
      ['port 0', { candidate: 'candidate:1 1 udp 2130706431 127.0.0.1 0 typ host', sdpMLineIndex: 0 }, 100046, 'Invalid value: candidate: bad port'],
      ['unknown type', { candidate: 'candidate:1 1 udp 2130706431 127.0.0.1 5000 typ bogus', sdpMLineIndex: 0 }, 100046, 'Invalid value: candidate: not an ICE candidate line'],
      ['a DNS name (never resolved)', { candidate: 'candidate:1 1 udp 2130706431 evil.example.com 5000 typ host', sdpMLineIndex: 0 }, 100046, 'Invalid value: candidate: not an ICE candidate line'],
      ['an injected SDP line', { candidate: `${good.candidate}\r\na=ice-pwd:injected`, sdpMLineIndex: 0 }, 100046, 'Invalid value: candidate: not an ICE candidate line'],
      ['2 KB of text', { candidate: 'x'.repeat(2048), sdpMLineIndex: 0 }, 100046, 'Invalid value: candidate: must be <= 1024 characters'],
      ['2 KB valid-looking', { candidate: `${good.candidate}${' generation 0'.repeat(160)}`, sdpMLineIndex: 0 }, 100046, 'Invalid value: candidate: must be <= 1024 characters'],
      ['candidate a number', { candidate: 5, sdpMLineIndex: 0 }, 100046, 'Invalid value: candidate: expected string'],
      ['candidate missing', { sdpMLineIndex: 0 }, 100045, 'Missing field: candidate'],
      ['sdpMLineIndex missing', { candidate: good.candidate, sdpMid: good.sdpMid }, 100045, 'Missing field: sdpMLineIndex'],
      ['sdpMLineIndex -1', { candidate: good.candidate, sdpMLineIndex: -1 }, 100046, 'Invalid value: sdpMLineIndex: must be >= 0'],
      ['sdpMLineIndex 64', { candidate: good.candidate, sdpMLineIndex: 64 }, 100046, 'Invalid value: sdpMLineIndex: must be <= 63'],
      ['sdpMLineIndex 0.5', { candidate: good.candidate, sdpMLineIndex: 0.5 }, 100046, 'Invalid value: sdpMLineIndex: expected an integer'],
      ['sdpMLineIndex "0"', { candidate: good.candidate, sdpMLineIndex: '0' }, 100046, 'Invalid value: sdpMLineIndex: expected number'],
      ['sdpMid a number', { candidate: good.candidate, sdpMLineIndex: 0, sdpMid: 0 }, 100046, 'Invalid value: sdpMid: expected string'],
      ['sdpMid 100 chars', { candidate: good.candidate, sdpMLineIndex: 0, sdpMid: 'm'.repeat(100) }, 100046, 'Invalid value: sdpMid: must be <= 64 characters'],
    ];
    for (const [name, data, code, text] of cases) {
      await rejects(alice.session('set_candidate', { session_id: id, ...data }), code, text).catch((err: Error) => { throw new Error(`${name}: ${err.message}`); });
    }
    await rejects(alice.session('set_candidate', { candidate: good.candidate, sdpMLineIndex: 0 }), 100045, 'Missing field: session_id');
    await rejects(alice.setCandidate('no-such-session', good), 100062, 'Session not found');
    await assertAlive(id);
    for (const c of own.candidates) await alice.setCandidate(id, c);
    await alice.setCandidateEnd(id);
    await peer.waitConnected();
    stopFollowing();
    await alice.destroySession(id);
  });
});

describe('session ids', () => {
  it('a duplicated client-chosen session_id gets duplicated_session_id (100034); the first session is unharmed', async () => {
    const id = `dup-${process.pid}`;
    const { peer } = await connectParked(alice, { session_id: id });
    peers.push(peer);
    const infoBefore = await assertAlive(id);
    const other = newPeer();
    const otherOffer = await other.makeOffer();
    await rejects(alice.createSession({ type: 'park', session_id: id }), 100034, 'Duplicated session id');
    await rejects(alice.createSession({ type: 'park', session_id: id, offer: { sdp: otherOffer.sdp, trickle_ice: true }, wait_reply: true }), 100034, 'Duplicated session id');
    await rejects(alice.createSession({ type: 'echo', session_id: id, offer: { sdp: otherOffer.sdp } }), 100034, 'Duplicated session id');
    // Ids are server-wide: another user cannot take it either.
    await rejects(bob.createSession({ type: 'park', session_id: id }), 100034, 'Duplicated session id');
    const infoAfter = await assertAlive(id);
    assert.deepEqual(infoAfter.offer, infoBefore.offer);
    assert.deepEqual(infoAfter.answer, infoBefore.answer);
    assert.equal(infoAfter.status.webrtc_ready, true);
    assert.equal(peer.pc.connectionState, 'connected');
    // Two creates with one new id at once: exactly one wins.
    const id2 = `dup2-${process.pid}`;
    const results = await Promise.allSettled([alice.createSession({ type: 'park', session_id: id2 }), bob.createSession({ type: 'park', session_id: id2 })]);
    assert.deepEqual(results.map((r) => r.status).sort(), ['fulfilled', 'rejected']);
    const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    assert.equal((lost.reason as NkMediaError).code, 100034);
    // Alice still hears her session's events (the failed creates unsubscribed nothing).
    const destroyed = alice.waitEvent((e) => e.obj_id === id && e.type === 'destroyed');
    await alice.destroySession(id);
    assert.deepEqual((await destroyed).body, { code: 100011, reason: 'User stop' });
    await alice.destroySession(id2);
    await bob.destroySession(id2);
  });

  it("another user's session is not found (100062) and stays untouched", async () => {
    const created = await alice.createSession({ type: 'park', wait_reply: true });
    const id = created.session_id;
    const peer = newPeer();
    const answer = await peer.answerOffer(created.offer!);
    const c = answer.candidates[0]!;
    const attempts: [string, () => Promise<unknown>][] = [
      ['get_info', () => bob.getInfo(id)],
      ['info', () => bob.session('info', { session_id: id })],
      ['get_status', () => bob.getStatus(id)],
      ['get_stats', () => bob.getStats(id)],
      ['get_offer', () => bob.getOffer(id)],
      ['get_answer', () => bob.getAnswer(id)],
      ['set_answer', () => bob.setAnswer(id, { sdp: answer.sdp, trickle_ice: true })],
      ['set_candidate', () => bob.setCandidate(id, c)],
      ['set_candidate_end', () => bob.setCandidateEnd(id)],
      ['update_media', () => bob.updateMedia(id, { mute_audio: true })],
      ['set_type', () => bob.setType(id, 'echo')],
    ];
    for (const [name, p] of attempts) await rejects(p(), 100062, 'Session not found').catch((err: Error) => { throw new Error(`${name}: ${err.message}`); });
    // Nor can bob link to it, or bridge with it.
    await rejects(bob.createSession({ type: 'park', master_id: id }), 100071, 'Unknown peer');
    await rejects(bob.createSession({ type: 'bridge', peer_id: id }), 100071, 'Unknown peer');
    // destroy replies ok (as the original) but does not stop it.
    await bob.destroySession(id);
    await bob.session('stop', { session_id: id });
    assert.ok(!(await bob.listSessions()).some((s) => s.session_id === id));
    const info = await assertAlive(id);
    assert.equal(info.status.state, 'wait_answer');
    assert.equal(info.mute_audio, false);
    assert.equal(info.type, 'park');
    // Nonexistent ids behave the same, so bob cannot tell the two apart.
    await rejects(bob.getInfo('no-such-session'), 100062, 'Session not found');
    await bob.destroySession('no-such-session');
    // Alice's answer was not taken: she completes the session.
    const stopFollowing = peer.followCandidates(alice, id);
    for (const e of aliceEvents.filter((x) => x.obj_id === id && x.type === 'candidate')) await peer.addCandidate(e.body as CandidateInit);
    await alice.setAnswer(id, { sdp: answer.sdp, trickle_ice: true });
    for (const x of answer.candidates) await alice.setCandidate(id, x);
    await alice.setCandidateEnd(id);
    await peer.waitConnected();
    stopFollowing();
    await alice.destroySession(id);
    await eventually(() => server.services.sessions.lookup(id) === undefined, 5000, 'the session to go');
  });
});
