// SFU rooms with real Chromium pages: one page publishes simulcast (three rid layers), the
// others listen. Each `it` builds on the one before (one room for the whole file):
//
//   1. the publisher's offer carries three rid layers and the server's answer takes them (rid
//      recv lines, a=simulcast:recv, the mid/rid/repaired-rid extensions); Chromium sends all
//      three; three listeners (browser, server and browser offering) decode video and hear audio;
//   2. a late listener joins while the others decode: the time from its `create` to its first
//      decoded frame is measured in the page and reported (target ≤ 1 s; asserted ≤ 5 s);
//   3. one listener goes high → low → medium with update_media video_layer: its decoded size
//      follows (low < medium < high), with no renegotiation; the other listeners keep decoding
//      the high layer (with media on workers, one listener per node, and the one switching is
//      on another node than the publisher: each layer reaches it through a pipe of its own);
//   4. the room's events came in order (created, started_member publisher, then each listener),
//      and when the publisher's session is destroyed every listener's session is destroyed with
//      publisher_stop (304006) and its page stops receiving media.
//
// Simulcast from Chromium, and why the page asks for it this way:
//  - Chromium caps the number of simulcast layers by the capture size (fewer than three below
//    960×540) unless the field trial WebRTC-LegacySimulcastLayerLimit is disabled; this file's
//    Chromium runs with it disabled, so a 640×360 camera gives 160×90, 320×180 and 640×360.
//  - Chromium enables a layer only when its bandwidth estimate covers it, and with no
//    transport-cc feedback from the server its estimate starts near 300 kbps and grows slowly.
//    The two low layers are capped (maxBitrate 40 and 80 kbps) so that the top one fits at once.
//
// Decoded sizes are compared by rank (low < medium < high) and against the publisher's own
// per-rid sizes at the time (getStats outbound-rtp), not against fixed numbers: Chromium may scale
// all layers down under CPU load.
import { after, before, describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { startBrowserSuite, eventually, sleep, TEST_WORKERS, type BrowserSuite, type TestPage } from './harness.js';
import type { NegotiationRecord, PeerStats, SimulcastEncoding, StartOptions, SwitchResult } from './page/api.js';
import type { EventData } from '../src/client/index.js';

const CAMERA = { width: { exact: 640 }, height: { exact: 360 } };
const LAYERS: SimulcastEncoding[] = [
  { rid: 'l', scaleResolutionDownBy: 4, maxBitrate: 40000 },
  { rid: 'm', scaleResolutionDownBy: 2, maxBitrate: 80000 },
  { rid: 'h' },
];
/** Generous bounds: they catch breakage; the figures themselves are reported. */
const FIRST_FRAME_BOUND_MS = 5000;
const SWITCH_BOUND_MS = 5000;
const PUBLISHER_STOP = { code: 304006, reason: 'Publisher stopped' };

let suite: BrowserSuite;
const roomEvents: EventData[] = [];
before(async () => {
  suite = await startBrowserSuite({
    chromiumArgs: ['--force-fieldtrials=WebRTC-LegacySimulcastLayerLimit/Disabled/'],
    // With media on workers, one listener per node: the room spans both, and the listener that
    // switches layers is one fed through a pipe from the publisher's node.
    ...(TEST_WORKERS ? { server: { rooms: { max_listeners_per_node: 1 } } } : {}),
  });
  await suite.admin.subscribe({ class: 'media', subclass: 'room' });
  suite.admin.onEvent((e) => { if (e.subclass === 'room') roomEvents.push(e); });
});
after(async () => { await suite?.close(); });

type Video = PeerStats['inbound']['video'];
interface Size { frameWidth: number; frameHeight: number }
const size = (v: Size) => `${v.frameWidth}x${v.frameHeight}`;
const note = (t: TestContext, line: string) => { t.diagnostic(line); console.log(`[rooms] ${line}`); };

interface Member { page: TestPage; id: string; user: string; offerer: 'browser' | 'server' }
/** What the `it`s share: the room, its publisher and its listeners (in the order they joined). */
let roomId: string | undefined;
let publisher: Member | undefined;
const listeners: Member[] = [];
const figures: Record<string, unknown> = {};

function requireRoom(): { roomId: string; publisher: Member } {
  if (!roomId || !publisher || listeners.length < 3) assert.fail('the room of the first test is not there (it failed)');
  return { roomId, publisher };
}

/** The publisher's per-rid outbound video (getStats), by rid. */
async function sentLayers(pub: Member): Promise<Map<string, { width: number; height: number; bytes: number; frames: number }>> {
  const out = new Map<string, { width: number; height: number; bytes: number; frames: number }>();
  for (const r of await pub.page.rawStats(pub.id, ['outbound-rtp'])) {
    if (r.kind !== 'video' || typeof r.rid !== 'string') continue;
    out.set(r.rid, { width: Number(r.frameWidth ?? 0), height: Number(r.frameHeight ?? 0), bytes: Number(r.bytesSent ?? 0), frames: Number(r.framesEncoded ?? 0) });
  }
  return out;
}

/** Width ranges telling the layers apart: the midpoints between the sizes sent now. */
async function layerWidths(pub: Member): Promise<Record<'low' | 'medium' | 'high', [number, number]>> {
  const s = await sentLayers(pub);
  const [l, m, h] = ['l', 'm', 'h'].map((rid) => s.get(rid)?.width ?? 0);
  assert.ok(l! > 0 && l! < m! && m! < h!, `the publisher sends three layers of growing size: l ${l}, m ${m}, h ${h}`);
  const lm = (l! + m!) / 2;
  const mh = (m! + h!) / 2;
  return { low: [1, lm], medium: [lm, mh], high: [mh, 100000] };
}

/** Waits until `m` has decoded `frames` more video frames (width in `width` if given); returns the last stats. */
async function decodes(m: Member, what: string, frames = 15, width?: [number, number], ms = 8000): Promise<Video> {
  const start = (await m.page.stats(m.id)).inbound.video.framesDecoded;
  let last: Video | undefined;
  try {
    return await eventually(async () => {
      last = (await m.page.stats(m.id)).inbound.video;
      const sized = last.frameWidth > 0 && last.frameHeight > 0 && (!width || (last.frameWidth >= width[0] && last.frameWidth <= width[1]));
      return last.framesDecoded >= start + frames && sized ? last : undefined;
    }, ms, what);
  } catch (err) {
    throw new Error(`${(err as Error).message} (framesDecoded ${start} → ${last?.framesDecoded}, size ${last && size(last)})`);
  }
}

async function hearsAudio(m: Member, what: string, packets = 25, ms = 5000): Promise<void> {
  const start = (await m.page.stats(m.id)).inbound.audio.packets;
  await eventually(async () => (await m.page.stats(m.id)).inbound.audio.packets >= start + packets, ms, what);
}

function negotiationKey(n: NegotiationRecord) {
  return {
    negotiationNeeded: n.negotiationNeeded, setLocalDescription: n.setLocalDescription, setRemoteDescription: n.setRemoteDescription,
    signalingStates: n.signalingStates.join(' → '), localSdp: n.localSdp, remoteSdp: n.remoteSdp,
  };
}

async function join(label: string, user: string, opts: Partial<StartOptions> & { offerer: 'browser' | 'server' }): Promise<Member> {
  const page = await suite.openPage(label);
  await page.connect(user);
  // Listeners send nothing: the browser offers (or answers) receive-only audio and video.
  const id = await page.startSession({ type: 'listen', publisher_id: publisher!.id, audio: false, video: false, ...opts });
  return { page, id, user, offerer: opts.offerer };
}

/** The video m-section of an SDP. */
function videoSection(sdp: string | undefined): string {
  const at = sdp?.indexOf('m=video') ?? -1;
  assert.ok(sdp && at >= 0, 'an SDP with a video m-line');
  const rest = sdp.slice(at);
  const next = rest.indexOf('\nm=', 1);
  return next < 0 ? rest : rest.slice(0, next);
}

describe('SFU room from Chromium: simulcast publisher, listeners', { timeout: 60000 }, () => {
  it('publisher sends three simulcast layers; three listeners (both SDP roles) decode video and hear audio', async (t) => {
    const page = await suite.openPage('publisher');
    await page.connect('alice');
    // No room_id: the publish creates a room and the reply names it.
    const id = await page.startSession({ type: 'publish', simulcast: LAYERS, simulcastDirection: 'sendonly', video: CAMERA });
    publisher = { page, id, user: 'alice', offerer: 'browser' };
    const st = await page.state(id);
    roomId = String(st.createReply.room_id);
    assert.match(roomId, /^room-/, `the create reply names the new room: ${JSON.stringify(st.createReply)}`);
    await page.waitConnected(id);

    // The offer has three rid layers; the server's answer receives them.
    const offer = videoSection(st.negotiation.localSdp);
    const answer = videoSection(st.negotiation.remoteSdp);
    assert.match(offer, /a=simulcast:send l;m;h/);
    for (const rid of ['l', 'm', 'h']) {
      assert.match(offer, new RegExp(`a=rid:${rid} send`));
      assert.match(answer, new RegExp(`a=rid:${rid} recv`), `answer has a=rid:${rid} recv`);
    }
    assert.match(answer, /a=simulcast:recv l;m;h/);
    for (const ext of ['urn:ietf:params:rtp-hdrext:sdes:mid', 'urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id', 'urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id']) {
      assert.ok(answer.includes(` ${ext}`), `answer negotiates ${ext}`);
    }
    assert.match(answer, /a=recvonly/, 'a sendonly offer is answered recvonly');

    // Chromium sends all three layers (each encodes frames, at growing sizes).
    const layers = await eventually(async () => {
      const s = await sentLayers(publisher!);
      const [l, m, h] = ['l', 'm', 'h'].map((rid) => s.get(rid));
      return l && m && h && l.frames > 10 && m.frames > 10 && h.frames > 10 && l.width < m.width && m.width < h.width ? s : undefined;
    }, 10000, 'Chromium to send all three simulcast layers');
    figures.sentLayers = Object.fromEntries([...layers].map(([rid, v]) => [rid, `${v.width}x${v.height}`]));
    note(t, `publisher sends ${[...layers].map(([rid, v]) => `${rid} ${v.width}x${v.height}`).join(', ')}`);

    // Three listeners of other users (rooms are shared), both SDP roles.
    listeners.push(await join('listener-1', 'bob', { offerer: 'browser' }));
    listeners.push(await join('listener-2', 'carol', { offerer: 'server' }));
    listeners.push(await join('listener-3', 'dave', { offerer: 'browser' }));
    for (const l of listeners) {
      assert.deepEqual((await l.page.state(l.id)).createReply, { session_id: l.id, room_id: roomId }, 'a listen reply names the room');
      await l.page.waitConnected(l.id);
    }
    const widths = await layerWidths(publisher);
    for (const [i, l] of listeners.entries()) {
      // video_layer defaults to high: each decodes the top layer.
      const v = await decodes(l, `listener ${i + 1} (${l.offerer} offers) decodes the high layer`, 15, widths.high);
      await hearsAudio(l, `listener ${i + 1} hears the publisher`);
      note(t, `listener ${i + 1} (${l.offerer} offers): ${v.framesDecoded} frames at ${size(v)}`);
    }

    const info = await suite.admin.request('media', 'room', 'get_info', { room_id: roomId });
    // With media on workers (NKMEDIA_TEST_WORKERS) each member also names its node, the one its
    // session's get_info names, and the room lists every node it spans (docs/API.md §14); with
    // media in this process neither has a node.
    const member = async (sid: string) => {
      const { node_id: node, ...rest } = info.members[sid];
      assert.equal(node, (await suite.admin.getInfo(sid)).node_id, `member ${sid}'s node is its session's`);
      if (node !== undefined) assert.ok(info.nodes.includes(node), `the room's nodes (${info.nodes}) include ${node}`);
      return rest;
    };
    assert.deepEqual(await member(id), { role: 'publisher', user_id: 'alice' });
    for (const l of listeners) assert.deepEqual(await member(l.id), { role: 'listener', user_id: l.user, peer_id: id });
    // The server gets three layers and sends each listener one.
    const pubStats = (await suite.admin.getStats(id)).stats;
    const lisStats = (await suite.admin.getStats(listeners[0]!.id)).stats;
    assert.ok(pubStats.inbound.video.packets > lisStats.outbound.video.packets, `the publisher's three layers (${pubStats.inbound.video.packets} packets) are more than one listener's (${lisStats.outbound.video.packets})`);
    assert.equal(pubStats.outbound.video.packets, 0, 'the publisher receives nothing');

    await page.screenshot('rooms-publisher-simulcast');
    for (const [i, l] of listeners.entries()) await l.page.screenshot(`rooms-listener-${i + 1}`);
  });

  it('a late listener decodes its first frame quickly', async (t) => {
    const { publisher: pub } = requireRoom();
    // The others have been decoding for a few seconds.
    const decodingSince = await Promise.all(listeners.map(async (l) => (await l.page.state(l.id)).connectedAtEpochMs ?? Date.now()));
    const wait = Math.min(...decodingSince) + 3000 - Date.now();
    if (wait > 0) await sleep(wait);
    const before = await Promise.all(listeners.map(async (l) => (await l.page.stats(l.id)).inbound.video.framesDecoded));

    const late = await join('listener-late', 'erin', { offerer: 'browser' });
    listeners.push(late);
    const watch = await late.page.watchFrames(late.id, { baselineFrames: 0, timeoutMs: FIRST_FRAME_BOUND_MS + 2000 });
    const st = await late.page.state(late.id);
    assert.ok(watch.resumeAtEpochMs !== undefined, `the late listener decodes a frame (size ${size(watch)}, ${watch.polls} polls)`);
    const firstFrameMs = watch.resumeAtEpochMs - st.createSentAtEpochMs;
    const connectMs = (st.connectedAtEpochMs ?? NaN) - st.createSentAtEpochMs;
    figures.lateFirstFrameMs = firstFrameMs;
    figures.lateConnectedMs = connectMs;
    note(t, `late listener: create → first decoded frame ${firstFrameMs} ms (create → connected ${connectMs} ms, connected → first frame ${firstFrameMs - connectMs} ms; first size ${size(watch)}; target ≤ 1000 ms)`);
    assert.ok(firstFrameMs <= FIRST_FRAME_BOUND_MS, `first frame within ${FIRST_FRAME_BOUND_MS} ms (${firstFrameMs} ms)`);

    const widths = await layerWidths(pub);
    const v = await decodes(late, 'the late listener keeps decoding the high layer', 15, widths.high);
    await hearsAudio(late, 'the late listener hears the publisher');
    // The others were not disturbed.
    for (const [i, l] of listeners.slice(0, 3).entries()) {
      const now = (await l.page.stats(l.id)).inbound.video.framesDecoded;
      assert.ok(now > before[i]! + 10, `listener ${i + 1} kept decoding (${before[i]} → ${now})`);
    }
    note(t, `late listener decodes ${size(v)}`);
    await late.page.screenshot('rooms-late-listener');
  });

  it('update_media video_layer high → low → medium changes one listener\'s decoded size, no renegotiation, others unaffected', async (t) => {
    const { publisher: pub } = requireRoom();
    // On workers: a listener on another node than the publisher's (its layer is picked there, by
    // the pipe that feeds it); in-process, the first.
    const pubNode = (await suite.admin.getInfo(pub.id)).node_id;
    const nodes = await Promise.all(listeners.map(async (l) => (await suite.admin.getInfo(l.id)).node_id));
    const ti = pubNode === undefined ? 0 : nodes.findIndex((n) => n !== pubNode);
    assert.ok(ti >= 0, `a listener on another node than the publisher's (${pubNode}): ${nodes.join(', ')}`);
    const target = listeners[ti];
    const others = listeners.filter((_, i) => i !== ti);
    const name = `listener ${ti + 1}`;
    const negTarget = (await target!.page.state(target!.id)).negotiation;
    const negOthers = await Promise.all(others.map(async (o) => (await o.page.state(o.id)).negotiation));
    const otherFrames = await Promise.all(others.map(async (o) => (await o.page.stats(o.id)).inbound.video.framesDecoded));

    const widths = await layerWidths(pub);
    const decoded: Record<string, Size> = {};
    const switchMs: Record<string, number> = {};
    decoded.high = await decodes(target!, `${name} decodes the high layer`, 5, widths.high);

    for (const layer of ['low', 'medium'] as const) {
      const w = (await layerWidths(pub))[layer];
      const r: SwitchResult = await target!.page.switchAndWatch(target!.id, 'update_media', { video_layer: layer }, { width: w, timeoutMs: SWITCH_BOUND_MS });
      assert.deepEqual(r.reply, {});
      assert.ok(r.resumeMs !== undefined, `${name} decodes the ${layer} layer (width in [${w}]) after the switch; last size ${size(r)}`);
      switchMs[layer] = Math.round(r.resumeMs);
      note(t, `${name} → ${layer}: first ${layer} frame ${r.resumeMs.toFixed(0)} ms after the request (reply ${r.replyMs.toFixed(0)} ms), ${size(r)}`);
      // It stays there: more frames, all of that layer's size.
      decoded[layer] = await decodes(target!, `${name} keeps decoding the ${layer} layer`, 10, w);
      await target!.page.screenshot(`rooms-layer-${layer}`);
    }
    figures.decodedByLayer = Object.fromEntries(Object.entries(decoded).map(([k, v]) => [k, size(v)]));
    figures.switchMs = switchMs;
    note(t, `${name} decoded: high ${size(decoded.high)}, low ${size(decoded.low!)}, medium ${size(decoded.medium!)}`);
    const { low, medium, high } = decoded as Record<'low' | 'medium' | 'high', Size>;
    assert.ok(low.frameWidth < medium.frameWidth && medium.frameWidth < high.frameWidth, 'widths: low < medium < high');
    assert.ok(low.frameHeight < medium.frameHeight && medium.frameHeight < high.frameHeight, 'heights: low < medium < high');
    assert.equal((await suite.admin.getInfo(target!.id)).video_layer, 'medium');

    // No renegotiation on the switched page, nor anywhere else.
    const st = await target!.page.state(target!.id);
    assert.equal(st.signalingState, 'stable');
    assert.deepEqual(negotiationKey(st.negotiation), negotiationKey(negTarget), `${name}: no new SDP`);
    const evs = await target!.page.events(target!.id);
    assert.equal(evs.filter((e) => e.type === 'offer' || e.type === 'answer').length, 1, `one SDP event for ${name}`);
    // The others kept decoding the high layer throughout.
    for (const [i, o] of others.entries()) {
      const v = (await o.page.stats(o.id)).inbound.video;
      assert.ok(v.framesDecoded > otherFrames[i]! + 10, `listener ${listeners.indexOf(o) + 1} kept decoding (${otherFrames[i]} → ${v.framesDecoded})`);
      assert.ok(v.frameWidth >= widths.high[0], `listener ${listeners.indexOf(o) + 1} still on the high layer (${size(v)})`);
      assert.deepEqual(negotiationKey((await o.page.state(o.id)).negotiation), negotiationKey(negOthers[i]!), `listener ${listeners.indexOf(o) + 1}: no new SDP`);
    }
  });

  it('room events in order; destroying the publisher destroys every listener (publisher_stop) and their media stops', async (t) => {
    const { roomId: room, publisher: pub } = requireRoom();
    const ofRoom = () => roomEvents.filter((e) => e.obj_id === room);
    const joined = ofRoom().map((e) => [e.type, e.body?.role, e.body?.session_id]);
    assert.deepEqual(joined, [
      ['created', undefined, undefined],
      ['started_member', 'publisher', pub.id],
      ...listeners.map((l) => ['started_member', 'listener', l.id]),
    ], 'created, the publisher, then each listener as it joined');
    for (const [i, e] of ofRoom().slice(2).entries()) {
      assert.deepEqual(e.body, { session_id: listeners[i]!.id, role: 'listener', user_id: listeners[i]!.user, peer_id: pub.id });
    }
    assert.equal(ofRoom()[0]!.body?.room_id, room);

    // Everyone is receiving before the publisher goes.
    await Promise.all(listeners.map((l, i) => decodes(l, `listener ${i + 1} decodes before the stop`, 5)));
    const tStop = Date.now();
    await pub.page.closeSession(pub.id);
    const stops = await eventually(async () => {
      const all = await Promise.all(listeners.map(async (l) => (await l.page.events(l.id)).find((e) => e.type === 'destroyed')));
      return all.every(Boolean) ? all : undefined;
    }, 5000, 'every listener\'s page told its session was destroyed');
    note(t, `all ${listeners.length} listeners' destroyed events within ${Date.now() - tStop} ms of the publisher's destroy`);
    for (const ev of stops) assert.deepEqual(ev!.body, PUBLISHER_STOP);
    const sessions = (await suite.admin.listSessions()).map((s) => s.session_id);
    for (const l of listeners) assert.ok(!sessions.includes(l.id), `listener ${l.id} is gone from the server`);

    // Each page's connection stops carrying media (the ICE connection itself lingers until
    // consent expires: the server releases its end without a DTLS close the page would see).
    await Promise.all(listeners.map(async (l, i) => {
      await sleep(300); // packets in flight
      const a = (await l.page.stats(l.id)).inbound;
      await sleep(1000);
      const b = (await l.page.stats(l.id)).inbound;
      assert.ok(b.video.packets - a.video.packets <= 1 && b.audio.packets - a.audio.packets <= 1,
        `listener ${i + 1} receives no more media (video ${a.video.packets} → ${b.video.packets}, audio ${a.audio.packets} → ${b.audio.packets})`);
      // Frames already in the page's jitter buffer (up to ~0.5 s after layer switches) still
      // decode; with no packets coming, the count must then stand still.
      let last = b.video.framesDecoded;
      await eventually(async () => {
        await sleep(700);
        const now = (await l.page.stats(l.id)).inbound.video.framesDecoded;
        const still = now === last;
        last = now;
        return still || undefined;
      }, 5000, `listener ${i + 1} decodes no more frames`);
    }));
    await listeners[0]!.page.screenshot('rooms-publisher-stopped');

    // The room saw each member leave: the publisher first, then its listeners.
    const left = await eventually(() => {
      const l = ofRoom().filter((e) => e.type === 'stopped_member');
      return l.length === listeners.length + 1 ? l : undefined;
    }, 3000, 'stopped_member for every member');
    assert.deepEqual(left[0]!.body, { session_id: pub.id, role: 'publisher', user_id: 'alice' });
    assert.deepEqual(new Set(left.slice(1).map((e) => e.body?.session_id)), new Set(listeners.map((l) => l.id)));
    const info = await suite.admin.request('media', 'room', 'get_info', { room_id: room });
    assert.deepEqual(info.members, {}, 'the room is empty');
    await suite.admin.request('media', 'room', 'destroy', { room_id: room });
    await eventually(() => ofRoom().some((e) => e.type === 'destroyed'), 3000, 'the room destroyed');
    console.log(`[rooms] figures ${JSON.stringify(figures)}`);
  });
});
