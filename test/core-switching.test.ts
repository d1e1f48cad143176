// Session types and their wiring on a fake engine (docs/API.md §5.1, §5.2, §5.6, §5.7): set_type
// from every type to every type checked against the documented graph, with no SDP
// renegotiation and the old type fully left; failed switches; mutes, bitrate and layers;
// recording and playing.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { sessionInfo } from '../src/api/session-events.js';
import { roomInfo } from '../src/api/room-events.js';
import { fileURLToPath } from 'node:url';
import { ApiError } from '../src/protocol/errors.js';
import { EngineError, MEDIA_KINDS, type MediaKind } from '../src/engine/types.js';
import { SESSION_TYPES, type SessionType } from '../src/protocol/session-schemas.js';
import type { Session } from '../src/core/sessions/session.js';
import { userRecordingsDir } from '../src/core/sessions/media-paths.js';
import { TestCore, apiTerm, coresClosedAfterEach, clientAnswer, sleep, until } from './helpers/fake-engine.js';

const core = coresClosedAfterEach();

const term = apiTerm;

const URI1 = 'http://media.example/one.webm';
const URI2 = 'http://media.example/two.webm';

/** What the session's client hears, per kind: the element feeding its endpoint. */
function downlink(tc: TestCore, s: Session): Partial<Record<MediaKind, string>> {
  return tc.engine.sourcesOf(tc.engine.endpointOf(s.id)!);
}

const all = (source: string | undefined, kinds: readonly MediaKind[] = MEDIA_KINDS) => Object.fromEntries(kinds.map((k) => [k, source]));

function assertUplink(tc: TestCore, s: Session, muted: MediaKind[] = []): void {
  const ep = tc.engine.endpointOf(s.id)!;
  for (const k of MEDIA_KINDS) assert.equal(tc.engine.sourceOf(s.proxy!, k), muted.includes(k) ? undefined : ep, `uplink ${k}`);
}

/** Everything a switch may point at: two of each, `1` for the type the session starts in, `2` for the target. */
async function world(tc: TestCore) {
  const alice = tc.conn('alice');
  const peer1 = await tc.offeree(alice, { stop_after_peer: false, session_id: 'peer1' });
  const peer2 = await tc.offeree(alice, { stop_after_peer: false, session_id: 'peer2' });
  const pub1 = await tc.offeree(alice, { type: 'publish', session_id: 'pub1' });
  const pub2 = await tc.offeree(alice, { type: 'publish', session_id: 'pub2' });
  const room = tc.rooms.create({ class: 'sfu', room_id: 'target-room' }, 'alice');
  const fields = (type: SessionType, n: 1 | 2) => {
    switch (type) {
      case 'bridge': return { type, peer_id: n === 1 ? peer1.id : peer2.id };
      case 'listen': return { type, publisher_id: n === 1 ? pub1.id : pub2.id };
      case 'publish': return n === 1 ? { type } : { type, room_id: room.id };
      case 'play': return { type, uri: n === 1 ? URI1 : URI2, loops: n };
      default: return { type };
    }
  };
  return { alice, peer1, peer2, pub1, pub2, room, fields };
}

describe('set_type from every type to every type (§5.1)', () => {
  for (const from of SESSION_TYPES) {
    for (const to of SESSION_TYPES) {
      it(`${from} → ${to}`, async () => {
        const tc = core();
        const w = await world(tc);
        const s = await tc.offeree(w.alice, { session_id: 'S', ...w.fields(from, 1) });
        assert.equal(s.type, from);
        // A publisher with a listener, to see that leaving `publish` stops it.
        const listener = from === 'publish' ? await tc.offeree(w.alice, { type: 'listen', publisher_id: s.id, session_id: 'L' }) : undefined;
        const oldRoom = s.room;
        const oldPlayer = tc.engine.elementOf(s.id, 'player');
        if (from === 'bridge') assert.deepEqual(downlink(tc, w.peer1), all(s.proxy));
        const sdpBefore = tc.engine.sdpOperations;
        const typeEvents = w.alice.of(s.id, 'type').length;

        const ext = await s.setType(tc.sessions.resolveType(w.fields(to, 2), w.alice.caller));

        assert.equal(tc.engine.sdpOperations, sdpBefore, 'no SDP renegotiation');
        assert.equal(s.type, to);
        assert.deepEqual(ext, s.typeExt);
        assert.equal(w.alice.of(s.id, 'type').length, typeEvents + 1);
        assert.deepEqual(w.alice.of(s.id, 'type').at(-1)!.body, { type: to, ...ext });
        assertUplink(tc, s);

        // The new type's wiring.
        switch (to) {
          case 'park':
          case 'publish':
            assert.deepEqual(downlink(tc, s), {});
            break;
          case 'echo':
            assert.deepEqual(downlink(tc, s), all(s.proxy));
            break;
          case 'bridge':
            assert.deepEqual(ext, { peer_id: w.peer2.id });
            assert.deepEqual(downlink(tc, s), all(w.peer2.proxy));
            assert.deepEqual(downlink(tc, w.peer2), all(s.proxy), 'the peer hears this session');
            assert.deepEqual(w.peer2.typeExt, { peer_id: s.id });
            assert.deepEqual(w.alice.of(w.peer2.id, 'type').at(-1)!.body, { type: 'bridge', peer_id: s.id });
            break;
          case 'listen':
            assert.deepEqual(ext, { room_id: w.pub2.room!.id, publisher_id: w.pub2.id });
            assert.deepEqual(downlink(tc, s), all(w.pub2.proxy));
            assert.deepEqual(roomInfo(w.pub2.room!).members, {
              [w.pub2.id]: { role: 'publisher', user_id: 'alice' },
              [s.id]: { role: 'listener', user_id: 'alice', peer_id: w.pub2.id },
            });
            break;
          case 'publish':
            break;
          case 'play': {
            const player = tc.engine.elementOf(s.id, 'player');
            assert.ok(player && player !== oldPlayer, 'a new player');
            assert.deepEqual(ext, { uri: URI2, loops: 2 });
            assert.deepEqual(downlink(tc, s), all(player));
            assert.deepEqual(tc.engine.element(player)!.playing, { uri: URI2, loops: 2, state: 'playing', position: 0 });
            break;
          }
        }
        if (to === 'publish') {
          assert.deepEqual(ext, { room_id: w.room.id });
          assert.deepEqual(roomInfo(w.room).members, { [s.id]: { role: 'publisher', user_id: 'alice' } });
        }

        // The old type is left fully.
        if (from === 'bridge') {
          await until(() => w.peer1.type === 'park', 1000, 'the old peer parked');
          assert.deepEqual(downlink(tc, w.peer1), {});
          assert.equal(w.peer1.isStopped, false);
        }
        if (from === 'publish') {
          await listener!.whenDestroyed;
          assert.deepEqual(listener!.stopCause, { term: 'publisher_stop' });
        }
        if (from === 'publish' || from === 'listen') {
          assert.ok(oldRoom);
          assert.equal((roomInfo(oldRoom).members as Record<string, unknown>)[s.id], undefined, 'the old room lost the member');
          assert.equal(w.pub1.isStopped, false);
        }
        if (from === 'play') assert.equal(tc.engine.element(oldPlayer!), undefined, 'the old player is released');
        if (to !== 'play') assert.equal(tc.engine.elementOf(s.id, 'player'), undefined);
        // Only the graph's live elements are in it.
        for (const e of tc.engine.edges()) for (const id of e.split(/ -\w+-> /)) assert.ok(tc.engine.element(id), `${e}: ${id} is live`);
      });
    }
  }
});

describe('switching, more', () => {
  it('a switch before the answer is only recorded; the answer wires it', async () => {
    const tc = core();
    const alice = tc.conn('alice');
    const { reply, session: s } = await tc.create(alice, { type: 'park', wait_reply: true });
    await s.setType({ type: 'echo' });
    assert.equal(s.type, 'echo');
    assert.deepEqual(downlink(tc, s), {});
    assert.equal(alice.of(s.id, 'type').length, 0, 'the type event comes with the answer');
    await s.setAnswer({ sdp: clientAnswer(reply.offer!.sdp) });
    assert.deepEqual(downlink(tc, s), all(s.proxy));
    assert.deepEqual(alice.of(s.id, 'type').map((e) => e.body), [{ type: 'echo' }]);
  });

  it('leaving a bridge stops a peer that has stop_after_peer (bridge_stop)', async () => {
    const tc = core();
    const alice = tc.conn('alice');
    const a = await tc.offeree(alice);
    const b = await tc.offeree(alice, { type: 'bridge', peer_id: a.id });
    await b.setType({ type: 'echo' });
    await a.whenDestroyed;
    assert.equal(a.stopCause!.term, 'bridge_stop');
    assert.deepEqual(downlink(tc, b), all(b.proxy));
  });

  it('bridging again with the same peer changes nothing', async () => {
    const tc = core();
    const alice = tc.conn('alice');
    const a = await tc.offeree(alice);
    const b = await tc.offeree(alice, { type: 'bridge', peer_id: a.id });
    const n = tc.engine.log.length;
    await b.setType({ type: 'bridge', peer: a });
    assert.equal(tc.engine.callsOf('disconnect').filter((c) => tc.engine.log.indexOf(c) >= n).length, 0);
    assert.deepEqual(downlink(tc, a), all(b.proxy));
    assert.deepEqual(downlink(tc, b), all(a.proxy));
  });

  it('failed switches leave the session as it was', async () => {
    const tc = core();
    const alice = tc.conn('alice');
    const s = await tc.offeree(alice, { type: 'echo' });
    const notPublishing = await tc.offeree(alice);
    tc.engine.failNext('playerStart', new EngineError('invalid_uri', 'HTTP 404'));
    await assert.rejects(s.setType({ type: 'play', uri: URI1, loops: 0 }), (e) => term('invalid_uri')(e) && /HTTP 404/.test((e as Error).message));
    tc.engine.failNext('playerStart', new EngineError('failed', 'not a playable WebM/MP4'));
    await assert.rejects(s.setType({ type: 'play', uri: URI1, loops: 0 }), term('media_error'));
    assert.equal(tc.engine.live({ kind: 'player' }).length, 0, 'the new players were released');
    assert.throws(() => tc.sessions.resolveType({ type: 'listen', publisher_id: notPublishing.id }, alice.caller), term('invalid_publisher'));
    assert.throws(() => tc.sessions.resolveType({ type: 'listen', publisher_id: 'nope' }, alice.caller), term('invalid_publisher'));
    assert.throws(() => tc.sessions.resolveType({ type: 'publish', room_id: 'nope' }, alice.caller), term('room_not_found'));
    assert.throws(() => tc.sessions.resolveType({ type: 'play' }, alice.caller), term('missing_field'));
    assert.throws(() => tc.sessions.resolveType({ type: 'play', uri: 'ftp://x/y' }, alice.caller), term('invalid_value'));
    assert.throws(() => tc.sessions.resolveType({ type: 'mcu' }, alice.caller), term('not_implemented'));
    await assert.rejects(s.setType({ type: 'listen', publisher: notPublishing }), term('invalid_publisher'));
    await assert.rejects(s.setType({ type: 'listen', publisher: s }), term('invalid_publisher'));
    assert.equal(s.type, 'echo');
    assert.deepEqual(downlink(tc, s), all(s.proxy));
  });

  it('a locked session (a ringing call) is wired only by the lock\'s holder', async () => {
    const tc = core();
    const alice = tc.conn('alice');
    const s = await tc.offeree(alice);
    const other = await tc.offeree(alice);
    const key = {};
    s.lock(key, 'ringing');
    await assert.rejects(s.setType({ type: 'echo' }), term('invalid_operation'));
    await assert.rejects(other.setType({ type: 'bridge', peer: s }), term('invalid_operation'), 'nobody bridges with it');
    await s.setType({ type: 'echo' }, key);
    s.unlock(key);
    await s.setType({ type: 'park' });
    assert.deepEqual(downlink(tc, s), {});
  });

  it('listen: a listener hears its publisher until the publisher stops (publisher_stop); the room stays', async () => {
    const tc = core();
    const alice = tc.conn('alice');
    const pub = await tc.offeree(alice, { type: 'publish' });
    const l1 = await tc.offeree(alice, { type: 'listen', publisher_id: pub.id });
    const l2 = await tc.offeree(alice, { type: 'listen', publisher_id: pub.id, room_id: pub.room!.id });
    assert.deepEqual(tc.engine.sinksOf(pub.proxy!), [tc.engine.endpointOf(l1.id), tc.engine.endpointOf(l2.id)].sort());
    assert.throws(() => tc.sessions.resolveType({ type: 'listen', publisher_id: pub.id, room_id: 'elsewhere' }, alice.caller), term('invalid_publisher'));
    const room = pub.room!;
    await pub.stop('user_stop');
    await Promise.all([l1.whenDestroyed, l2.whenDestroyed]);
    assert.equal(l1.stopCause!.term, 'publisher_stop');
    assert.equal(tc.rooms.lookup(room.id), room);
  });
});

describe('media control (§5.2)', () => {
  it('mutes cut the uplink for every consumer and come back; set at create they apply from the start', async () => {
    const tc = core();
    const alice = tc.conn('alice');
    const s = await tc.offeree(alice, { type: 'echo', mute_audio: true });
    assertUplink(tc, s, ['audio']);
    await s.updateMedia({ mute_video: true, mute_data: true });
    assertUplink(tc, s, ['audio', 'video', 'data']);
    assert.deepEqual(downlink(tc, s), all(s.proxy), 'the downlink is not the mute\'s business');
    await s.updateMedia({ mute_audio: false, mute_video: false, mute_data: false });
    assertUplink(tc, s);
    assert.deepEqual(sessionInfo(s).mute_audio, false);
  });

  it('bitrate and video layer go to the endpoint; a room\'s bitrate applies to publishers without their own', async () => {
    const tc = core();
    const alice = tc.conn('alice');
    const s = await tc.offeree(alice, { bitrate: 300_000, video_layer: 'low' });
    const ep = tc.engine.endpointOf(s.id)!;
    assert.equal(tc.engine.element(ep)!.maxBitrate, 300_000);
    assert.equal(tc.engine.element(ep)!.videoLayer, 'low');
    await s.updateMedia({ bitrate: 0, video_layer: 'high' });
    assert.equal(tc.engine.element(ep)!.maxBitrate, null, '0 lifts the limit');
    assert.equal(tc.engine.element(ep)!.videoLayer, 'high');
    const room = tc.rooms.create({ class: 'sfu', bitrate: 500_000 }, 'alice');
    const pub = await tc.offeree(alice, { type: 'publish', room_id: room.id });
    assert.equal(tc.engine.element(tc.engine.endpointOf(pub.id)!)!.maxBitrate, 500_000);
    const own = await tc.offeree(alice, { type: 'publish', room_id: room.id, bitrate: 100_000 });
    assert.equal(tc.engine.element(tc.engine.endpointOf(own.id)!)!.maxBitrate, 100_000);
  });

  it('on play, mutes choose the file\'s media; only the changed media are touched', async () => {
    const tc = core();
    const alice = tc.conn('alice');
    const s = await tc.offeree(alice, { type: 'play', uri: URI1, mute_audio: true });
    const player = tc.engine.elementOf(s.id, 'player')!;
    assert.deepEqual(downlink(tc, s), { video: player, data: player });
    const n = tc.engine.log.length;
    await s.updateMedia({ mute_audio: false, mute_video: true });
    assert.deepEqual(downlink(tc, s), { audio: player, data: player });
    const toEp = tc.engine.log.slice(n).filter((c) => (c.method === 'connect' || c.method === 'disconnect') && c.args[0] === player);
    assert.deepEqual(toEp.map((c) => `${c.method} ${String(c.args[2])}`).sort(), ['connect audio', 'disconnect video']);
  });
});

describe('recording (§5.6)', () => {
  it('start, pause, resume, stop: a recorder fed by the proxy, events, the file in the user\'s folder', async () => {
    const tc = core();
    const alice = tc.conn('alice');
    const s = await tc.offeree(alice);
    assert.deepEqual(await s.recorderAction('get_actions'), { actions: ['start', 'stop', 'pause', 'resume', 'get_actions'] });
    await assert.rejects(s.recorderAction('stop'), term('no_active_recorder'));
    const started = await s.recorderAction('start');
    assert.equal(started.mediaProfile, 'WEBM');
    const path = fileURLToPath(String(started.uri));
    assert.equal(path, `${userRecordingsDir({ recordingsDir: `${tc.dir}/recordings`, playDirs: [], allowHttp: false }, 'alice')}/${s.id}_p0000.webm`);
    const rec = tc.engine.elementOf(s.id, 'recorder')!;
    assert.deepEqual(tc.engine.sourcesOf(rec), { audio: s.proxy, video: s.proxy });
    await s.recorderAction('pause');
    await s.recorderAction('resume');
    await assert.rejects(s.recorderAction('rewind'), term('invalid_action'));
    await sleep(5);
    const stopped = await s.recorderAction('stop');
    assert.equal(stopped.uri, started.uri);
    assert.ok(Number(stopped.duration) > 0);
    assert.equal(tc.engine.element(rec), undefined, 'released');
    await until(() => alice.of(s.id, 'recorder').length === 4, 1000, 'recorder events');
    assert.deepEqual(alice.of(s.id, 'recorder').map((e) => e.body!.state), ['recording', 'paused', 'recording', 'stopped']);
    const mp4 = await s.recorderAction('start', 'take.mp4');
    assert.equal(mp4.mediaProfile, 'MP4');
    await assert.rejects(s.recorderAction('start', '../../elsewhere.webm'), term('invalid_value'));
  });

  it('a new start finalises the running recording; a stopping session finalises it before releasing', async () => {
    const tc = core();
    const s = await tc.offeree(tc.conn('alice'));
    await s.recorderAction('start');
    const first = tc.engine.elementOf(s.id, 'recorder')!;
    const second = await s.recorderAction('start');
    assert.match(String(second.uri), /_p0001\.webm$/);
    assert.equal(tc.engine.element(first), undefined);
    const rec = tc.engine.elementOf(s.id, 'recorder')!;
    await s.stop('user_stop');
    const methods = tc.engine.log.map((c) => `${c.method} ${String(c.args[0])}`);
    const stopAt = methods.lastIndexOf(`recorderStop ${rec}`);
    assert.ok(stopAt >= 0 && stopAt < methods.indexOf(`release ${rec}`), 'finalised, then released');
  });
});

describe('recording races', () => {
  it('a recorder start racing the session\'s stop fails with the stop, not an engine error', async () => {
    const tc = core();
    const s = await tc.offeree(tc.conn('alice'));
    const release = tc.engine.holdNext('connect');
    const starting = s.recorderAction('start');
    await until(() => tc.engine.callsOf('recorderStart').length === 1, 1000, 'recorder started');
    await s.stop('user_stop');
    release();
    await assert.rejects(starting, (e) => e instanceof ApiError);
    assert.equal(tc.engine.liveCount, 0);
  });
});

describe('playing (§5.7)', () => {
  it('player actions, events, loops; no player on other types', async () => {
    const tc = core();
    const alice = tc.conn('alice');
    const s = await tc.offeree(alice, { type: 'play', uri: URI1, loops: 3 });
    const player = tc.engine.elementOf(s.id, 'player')!;
    const noStart = async () => { throw new Error('not called'); };
    assert.deepEqual(await s.playerAction('get_info', {}, noStart), { duration: 10_000, is_seekable: true, first_position: 0, last_position: 10_000 });
    await s.playerAction('set_position', { position: 2500 }, noStart);
    assert.deepEqual(await s.playerAction('get_position', {}, noStart), { position: 2500 });
    await assert.rejects(s.playerAction('set_position', {}, noStart), term('missing_field'));
    await assert.rejects(s.playerAction('set_position', { position: 99_999 }, noStart), term('media_error'));
    await s.playerAction('pause', {}, noStart);
    await s.playerAction('resume', {}, noStart);
    await s.playerAction('stop', {}, noStart);
    assert.equal(s.type, 'play', 'stop keeps the type');
    assert.deepEqual(alice.of(s.id, 'player').map((e) => e.body!.state).slice(-3), ['paused', 'playing', 'stopped']);
    tc.engine.emitPlayerLoop(player, 1, 2);
    assert.deepEqual(alice.of(s.id, 'type').at(-1)!.body, { type: 'play', uri: URI1, loops: 2 });
    tc.engine.emitError(player, 'cannot read the media', 'read_failed');
    assert.deepEqual(alice.of(s.id, 'player').at(-1)!.body, { state: 'stopped', error: 'cannot read the media', code: 'read_failed' });
    assert.equal(s.isStopped, false, 'a player error does not stop the session');
    assert.deepEqual(await s.playerAction('start', {}, () => s.setType({ type: 'play', uri: URI2, loops: 1 })), { uri: URI2, loops: 1 });
    assert.equal(tc.engine.element(player), undefined);

    const parked = await tc.offeree(alice);
    await assert.rejects(parked.playerAction('pause', {}, noStart), term('no_active_player'));
    await assert.rejects(s.playerAction('fly', {}, noStart), term('invalid_action'));
  });

  it('a new player\'s `playing` (sent by the engine during playerStart) reaches the client', async () => {
    const tc = core();
    const alice = tc.conn('alice');
    const s = await tc.offeree(alice, { type: 'play', uri: URI1 });
    await tc.engine.settle();
    assert.deepEqual(alice.of(s.id, 'player').map((e) => e.body!.state), ['playing']);
  });
});
