// RemoteEngine: the MediaEngine interface served by a media node over the Kurento protocol. A real
// node (our media server, in this process, JWT auth) with real media: werift peers in echo and
// bridged, a plain RTP peer, a player playing a WebM to a peer, a recorder writing a file that
// ffprobe reads back; the same events and results as the local engine gives; errors as the
// engine's kinds; release; the domain core running unchanged on it. Each media test runs twice:
// with our node's nkmedia extensions, and speaking only Kurento's protocol (as to a KMS).
// Then what goes wrong with nodes: a bad token, malformed replies and events (a stub node), a
// frozen node (timeouts, another engine unaffected), a node closed with requests waiting, and a
// connection cut and resumed.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { SignJWT } from 'jose';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { RemoteEngine } from '../src/engine/remote/engine.js';
import { EngineError, type ElementId, type EngineEvent, type MediaEngine } from '../src/engine/types.js';
import { engineFor } from '../src/main.js';
import { parseConfig } from '../src/config.js';
import { MediaCore } from '../src/core/core.js';
import type { CreateRequest } from '../src/protocol/session-schemas.js';
import { parseVp8Descriptor, vp8FrameSize } from '../src/engine/local/files/rtp/vp8.js';
import { TestPeer } from './helpers/peer.js';
import { RtpPeer, mediaOf } from './helpers/rtp-peer.js';
import { eventually } from './helpers/server.js';
import { TcpProxy, peerOn, silentLog, startMediaNode, type MediaNode } from './helpers/remote-node.js';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const SECRET = 'remote-engine-test-secret-with-enough-bytes';
const log = silentLog();

let dir: string;
let node: MediaNode;
let token: string;
let clip: string;
let clipMs: number;
/** Uses the nkmedia extensions of our node. */
let ext: RemoteEngine;
/** Speaks only Kurento's protocol, as it would to a Kurento Media Server. */
let std: RemoteEngine;

const makeToken = (user: string) => new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject(user).setExpirationTime('1h').sign(new TextEncoder().encode(SECRET));

function newEngine(opts: Partial<ConstructorParameters<typeof RemoteEngine>[0]> = {}): RemoteEngine {
  return new RemoteEngine({ url: node.url, token, nodeId: 'node-1', log, ...opts });
}

/** What kind of EngineError (for assert.rejects). */
const engineError = (kind: EngineError['kind'], message?: RegExp) => (err: unknown) => {
  assert.ok(err instanceof EngineError, `expected EngineError ${kind}, got ${String(err)}`);
  assert.equal(err.kind, kind, err.message);
  if (message) assert.match(err.message, message);
  return true;
};

/** A plain Kurento JSON-RPC client (as another application of the same user would be). */
async function rawKurento(url: string): Promise<{ call(method: string, params?: Record<string, unknown>): Promise<{ value?: unknown }>; close(): void }> {
  const ws = new WebSocket(url);
  ws.on('error', () => undefined);
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  const waiting = new Map<number, (m: { result?: { value?: unknown; sessionId?: string }; error?: { code: number; message: string } }) => void>();
  ws.on('message', (d: RawData) => {
    const m = JSON.parse(String(d)) as { id?: number };
    if (typeof m.id === 'number') waiting.get(m.id)?.(m as never);
  });
  let id = 0;
  let sessionId: string | undefined;
  return {
    call: (method, params = {}) => new Promise((resolve, reject) => {
      const i = ++id;
      waiting.set(i, (m) => {
        waiting.delete(i);
        if (m.error) { reject(Object.assign(new Error(m.error.message), { code: m.error.code })); return; }
        sessionId ??= m.result?.sessionId;
        resolve(m.result ?? {});
      });
      ws.send(JSON.stringify({ jsonrpc: '2.0', id: i, method, params: { ...params, ...(sessionId ? { sessionId } : {}) } }));
    }),
    close: () => ws.close(),
  };
}

/** Every event of `engine` about `element` (from now on). */
function eventsOf(engine: MediaEngine, element: () => ElementId | undefined): EngineEvent[] & { off(): void } {
  const list: EngineEvent[] = [];
  const off = engine.onEvent((ev) => { if (ev.elementId === element()) list.push(ev); });
  return Object.assign(list, { off });
}

/** An event as a short comparable text (ids and candidate details left out). */
function brief(ev: EngineEvent): string {
  switch (ev.type) {
    case 'connection_state': return `connection_state:${ev.state}`;
    case 'media_flow': return `media_flow:${ev.direction}:${ev.media}:${ev.state}`;
    case 'player_state': return `player_state:${ev.state}`;
    case 'player_loop': return `player_loop:${ev.loop}:${ev.loops_left}`;
    case 'recorder_state': return `recorder_state:${ev.state}`;
    case 'error': return `error:${ev.code ?? ''}`;
    default: return ev.type;
  }
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'nkm-remote-'));
  mkdirSync(join(dir, 'media'));
  mkdirSync(join(dir, 'rec'));
  mkdirSync(join(dir, 'outside'));
  clip = join(dir, 'media', 'clip.webm');
  await run('ffmpeg', ['-v', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=30', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
    '-t', '4', '-g', '30', '-c:v', 'libvpx', '-b:v', '300k', '-deadline', 'realtime', '-cpu-used', '8', '-c:a', 'libopus', '-ac', '2', clip]);
  clipMs = Number((await run('ffprobe', ['-v', 'error', '-show_entries', 'format=duration', '-of', 'csv=p=0', clip])).stdout) * 1000;
  node = await startMediaNode({
    auth: { mode: 'jwt', jwt_secret: SECRET },
    recordings_dir: join(dir, 'rec'),
    play_dirs: [join(dir, 'media')],
    kurento: { file_dirs: [join(dir, 'media'), join(dir, 'rec')] },
  });
  token = await makeToken('controller');
  ext = newEngine();
  std = newEngine({ extensions: false });
  await Promise.all([ext.connect(), std.connect()]);
});

after(async () => {
  await ext?.close();
  await std?.close();
  await node?.server.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('connecting to a node', () => {
  it('goes connecting → up, tells our node (extensions) from a standard one, holds its elements in one pipeline, and close() releases it', async () => {
    const e = newEngine();
    const states: string[] = [];
    e.on('stateChange', (s) => states.push(s));
    assert.equal(e.state, 'down');
    await e.connect();
    assert.deepEqual(states, ['connecting', 'up']);
    assert.equal(e.extensions, true);
    assert.equal(std.extensions, false, 'extensions: false speaks only the standard protocol');
    assert.equal(e.serverInfo?.version, '7.3.0');
    const cpu = await e.usedCpu(50);
    assert.ok(cpu >= 0 && cpu <= 100, `the node's CPU use: ${cpu} %`);

    const a = await e.createPassThrough({ tag: 'a' });
    const b = await e.createWebRtcEndpoint({ tag: 'b' });
    assert.match(a, /^node-1\//, 'element ids name the node');
    const raw = await rawKurento(`${node.url}?access_token=${token}`);
    try {
      await raw.call('connect');
      const children = (await raw.call('invoke', { object: e.pipeline, operation: 'getChildren' })).value as string[];
      assert.equal(children.length, 2);
      assert.ok(children.every((c) => c.startsWith(`${e.pipeline!}/`)), 'both in the engine\'s pipeline');
      await e.release(b);
      await e.close();
      assert.deepEqual(states, ['connecting', 'up', 'down']);
      const pipelines = (await raw.call('invoke', { object: 'manager_ServerManager', operation: 'getPipelines' })).value as string[];
      assert.ok(!pipelines.includes(e.pipeline!), 'the pipeline went with close()');
    } finally {
      raw.close();
    }
    await assert.rejects(e.createPassThrough({ tag: 'x' }), engineError('failed', /closed|down/));
  });

  it('refuses a bad or missing token (HTTP 401): connect() fails with an EngineError, the state stays down', async () => {
    for (const bad of [await makeToken('x').then((t) => `${t}x`), undefined]) {
      const e = newEngine({ token: bad });
      const states: string[] = [];
      e.on('stateChange', (s) => states.push(s));
      await assert.rejects(e.connect(), engineError('failed', /401/));
      assert.equal(e.state, 'down');
      assert.deepEqual(states, ['connecting', 'down']);
      await e.close();
    }
  });
});

describe('media through the node', () => {
  it('echo: a werift peer gets its own packets back; trickle ICE, connection and media-flow events carry the tag — the same events and results as the local engine', async () => {
    const local = engineFor(parseConfig({ ice: { use_interfaces: false, include_loopback: true }, log_level: 'silent' }));
    const seen: Record<string, string[]> = {};
    const results: Record<string, unknown> = {};
    try {
      for (const [name, engine] of [['local', local], ['extensions', ext], ['standard', std]] as const) {
        const tag = `echo-${name}`;
        const { ep, peer, events, off } = await peerOn(engine, tag);
        try {
          await engine.connect(ep, ep);
          peer.startSending();
          await eventually(() => peer.from('audio', peer.tag).length > 25 && peer.from('video', peer.tag).length > 25, 6000, `${name}: own packets back`);
          await eventually(() => events.filter((e) => e.type === 'media_flow' && e.state === 'up').length >= 4, 4000, `${name}: media flowing both ways`);
          assert.ok(events.every((e) => e.tag === tag && e.elementId === ep), `${name}: every event names the endpoint and its tag`);
          const cand = events.find((e) => e.type === 'ice_candidate');
          assert.ok(cand && cand.type === 'ice_candidate' && /^candidate:/.test(cand.candidate.candidate) && cand.candidate.sdpMid === '0', `${name}: a trickled candidate`);
          seen[name] = [...new Set(events.map(brief))].sort();
          const stats = await engine.getStats(ep);
          assert.equal(stats.elementId, ep);
          assert.ok(stats.inbound.video!.packets > 0 && stats.outbound.audio!.packets > 0, `${name}: stats ${JSON.stringify(stats)}`);
          const av = (x: object) => Object.keys(x).filter((k) => k !== 'data').sort(); // data: once the peer's channel is open
          results[name] = { codecs: await engine.negotiatedCodecs(ep), connection: stats.connectionState, inbound: av(stats.inbound), outbound: av(stats.outbound) };
        } finally {
          peer.stopSending();
          await peer.close();
          await engine.release(ep);
          off();
        }
      }
    } finally {
      await local.close();
    }
    assert.deepEqual(seen.local, ['connection_state:connected', 'connection_state:connecting', 'ice_candidate', 'ice_gathering_done',
      'media_flow:in:audio:up', 'media_flow:in:video:up', 'media_flow:out:audio:up', 'media_flow:out:video:up']);
    assert.deepEqual(seen.extensions, seen.local, 'the same events through the node (extensions)');
    assert.deepEqual(seen.standard, seen.local, 'the same events through the node (Kurento events)');
    assert.deepEqual(results.local, { codecs: { audio: 'audio/opus', video: 'video/vp8' }, connection: 'connected', inbound: ['audio', 'video'], outbound: ['audio', 'video'] });
    assert.deepEqual(results.extensions, results.local);
    assert.deepEqual(results.standard, results.local);
  });

  for (const mode of ['extensions', 'standard'] as const) {
    it(`offerer (${mode}): our endpoint offers, the peer answers; codecs from the negotiation; a bitrate limit reaches the peer as REMB`, async () => {
      const engine = mode === 'extensions' ? ext : std;
      const tag = `offerer-${mode}`;
      const peer = new TestPeer();
      let ep: ElementId | undefined;
      const off = engine.onEvent((e) => { if (e.elementId === ep && e.type === 'ice_candidate') void peer.addCandidate(e.candidate).catch(() => undefined); });
      try {
        ep = await engine.createWebRtcEndpoint({ tag });
        const offer = await engine.generateOffer(ep, { audio: true, video: true, data: true });
        assert.match(offer, /m=application/, 'a data channel offered');
        const answer = await peer.answerOffer({ sdp: offer, sdp_type: 'webrtc' } as never);
        await engine.processAnswer(ep, answer.sdp);
        await engine.gatherCandidates(ep);
        for (const c of answer.candidates) await engine.addIceCandidate(ep, c);
        await peer.waitConnected();
        await engine.connect(ep, ep);
        peer.startSending();
        await eventually(() => peer.from('video', peer.tag).length > 20, 5000, 'echo');
        assert.deepEqual(await engine.negotiatedCodecs(ep), { audio: 'audio/opus', video: 'video/vp8' });
        await engine.setMaxBitrate(ep, 123_456);
        // Our node takes bits per second; KMS's nearest (setMaxVideoRecvBandwidth) takes kbps.
        const want = mode === 'extensions' ? 123_456 : 123_000;
        await eventually(() => peer.rembReceived.at(-1) === want, 5000, `REMB at ${want}`);
        await engine.setMaxBitrate(ep, null);
      } finally {
        off();
        await peer.close();
        if (ep) await engine.release(ep);
      }
    });
  }

  it('two endpoints bridged: each peer gets the other\'s packets; a keyframe request and a layer choice (extensions)', async () => {
    const a = await peerOn(ext, 'bridge-a');
    const b = await peerOn(ext, 'bridge-b');
    try {
      await ext.connect(a.ep, b.ep);
      await ext.connect(b.ep, a.ep);
      a.peer.startSending();
      b.peer.startSending();
      await eventually(() => a.peer.from('video', b.peer.tag).length > 20 && b.peer.from('video', a.peer.tag).length > 20
        && a.peer.from('audio', b.peer.tag).length > 20 && b.peer.from('audio', a.peer.tag).length > 20, 6000, 'media across the bridge');
      assert.equal(a.peer.from('video', a.peer.tag).length, 0, 'no echo on a bridge');
      // Extensions: a keyframe asked of an endpoint reaches its peer as a PLI; a layer choice is taken.
      await sleep(1100); // keyframe requests are merged, about one a second
      const plis = a.peer.pliReceived;
      await ext.requestKeyframe(a.ep);
      await eventually(() => a.peer.pliReceived > plis, 3000, 'a PLI at the endpoint\'s peer');
      await ext.setVideoLayer(a.ep, 'low');
    } finally {
      for (const x of [a, b]) { x.off(); await x.peer.close(); await ext.release(x.ep); }
    }
  });

  for (const mode of ['extensions', 'standard'] as const) {
    it(`a plain RTP endpoint (${mode}): answers a phone's offer, gathering done at once, no ICE candidates, echo`, async () => {
      const engine = mode === 'extensions' ? ext : std;
      const phone = await RtpPeer.open();
      let ep: ElementId | undefined;
      const events = eventsOf(engine, () => ep);
      try {
        ep = await engine.createRtpEndpoint({ tag: `rtp-${mode}` });
        const answer = await engine.processOffer(ep, phone.sdp([{ pt: 0, name: 'PCMU', rate: 8000 }]));
        assert.doesNotMatch(answer, /ice-ufrag|fingerprint/);
        await engine.gatherCandidates(ep);
        assert.deepEqual(events.filter((e) => e.type.startsWith('ice')).map((e) => [e.type, e.tag]), [['ice_gathering_done', `rtp-${mode}`]], 'gathering is over at once');
        await assert.rejects(engine.addIceCandidate(ep, { candidate: 'candidate:1 1 udp 1 127.0.0.1 9 typ host', sdpMLineIndex: 0 }), engineError('invalid_candidate'));
        await engine.connect(ep, ep);
        await phone.send(mediaOf(answer), { pt: 0, count: 40, samples: 160, payload: (i) => Buffer.alloc(160, i & 0xff) });
        await eventually(() => phone.rx.filter((p) => p.pt === 0).length >= 35, 3000, 'echoed RTP');
        assert.deepEqual(phone.rx.find((p) => p.pt === 0)?.payload.length, 160);
        assert.deepEqual(await engine.negotiatedCodecs(ep), { audio: 'audio/pcmu', video: undefined });
        await eventually(() => events.some((e) => e.type === 'connection_state' && e.state === 'connected'), 2000, 'connected');
      } finally {
        events.off();
        await phone.close();
        if (ep) await engine.release(ep);
      }
    });
  }

  for (const mode of ['extensions', 'standard'] as const) {
    it(`a player (${mode}) plays a WebM to a peer: info, pause and resume, loops, seek, end of stream`, async () => {
      const engine = mode === 'extensions' ? ext : std;
      const tag = `player-${mode}`;
      const { ep, peer, off } = await peerOn(engine, tag);
      const video: Buffer[] = [];
      peer.pc.getTransceivers().forEach((t) => t.receiver.tracks.forEach((track) => {
        if (track.kind === 'video') track.onReceiveRtp.subscribe((rtp) => { if (video.length < 500) video.push(Buffer.from(rtp.payload)); });
      }));
      peer.pc.onTrack.subscribe((track) => { if (track.kind === 'video') track.onReceiveRtp.subscribe((rtp) => { if (video.length < 500) video.push(Buffer.from(rtp.payload)); }); });
      let player: ElementId | undefined;
      const events = eventsOf(engine, () => player);
      try {
        player = await engine.createPlayerEndpoint({ tag });
        assert.equal(await engine.playerPosition(player), 0, 'not started');
        await assert.rejects(engine.playerInfo(player), engineError('invalid_state'));
        const info = await engine.playerStart(player, clip, 2);
        assert.equal(info.is_seekable, true);
        assert.ok(Math.abs(info.duration - clipMs) <= 150, `duration ${info.duration} vs ffprobe ${clipMs}`);
        assert.deepEqual(await engine.playerInfo(player), info);
        await engine.connect(player, ep);
        await eventually(() => peer.received.video > 20 && peer.received.audio > 20, 6000, 'the clip at the peer');
        const key = video.map((p) => { const d = parseVp8Descriptor(p); return d?.start ? vp8FrameSize(p.subarray(d.size)) : undefined; }).find(Boolean);
        assert.deepEqual(key, { width: 320, height: 240 }, "the clip's own VP8, keyframe included");

        await engine.playerPause(player);
        await sleep(300);
        const held = peer.received.video + peer.received.audio;
        const pos = await engine.playerPosition(player);
        await sleep(500);
        assert.equal(peer.received.video + peer.received.audio, held, 'nothing while paused');
        assert.equal(await engine.playerPosition(player), pos, 'the position holds');
        await engine.playerResume(player);
        await engine.playerSeek(player, Math.round(info.duration) - 600);
        await eventually(() => events.some((e) => e.type === 'player_loop' && e.loop === 1), 5000, 'the second play');
        await engine.playerSeek(player, Math.round(info.duration) - 600);
        await eventually(() => events.some((e) => e.type === 'player_state' && e.state === 'eos'), 5000, 'end of stream');
        assert.deepEqual(events.map(brief), ['player_state:playing', 'player_state:paused', 'player_state:playing', 'player_loop:1:1', 'player_state:eos']);
        assert.ok(events.every((e) => e.tag === tag && e.elementId === player));
        const eos = events.at(-1)!;
        assert.ok(eos.type === 'player_state' && Math.abs(eos.position - info.duration) <= 200, `eos at ${JSON.stringify(eos)}`);
        await engine.playerResume(player); // a finished player does not start over
        await sleep(300);
        assert.equal(events.length, 5);
      } finally {
        events.off();
        off();
        await peer.close();
        if (player) await engine.release(player);
        await engine.release(ep);
      }
    });
  }

  for (const mode of ['extensions', 'standard'] as const) {
    it(`a recorder (${mode}) writes what a player sends it; the file is whole after recorderStop; connections made before either exists on the node`, async () => {
      const engine = mode === 'extensions' ? ext : std;
      const tag = `rec-${mode}`;
      const file = join(dir, 'rec', `${mode}.webm`);
      const player = await engine.createPlayerEndpoint({ tag });
      const rec = await engine.createRecorderEndpoint({ tag });
      const events = eventsOf(engine, () => rec);
      try {
        // Neither is on the node yet (Kurento takes their URIs at construction): the engine makes the connection there later.
        await engine.connect(player, rec, 'audio');
        await engine.connect(player, rec, 'video');
        await engine.recorderStart(rec, file, 'webm');
        await engine.playerStart(player, clip, 0);
        await sleep(1500);
        await engine.recorderPause(rec);
        await sleep(700);
        await engine.recorderResume(rec);
        await sleep(1000);
        const result = await engine.recorderStop(rec);
        assert.equal(result.path, file);
        assert.equal(result.format, 'webm');
        assert.deepEqual([...result.tracks].sort(), ['audio', 'video']);
        assert.ok(result.durationMs > 1800 && result.durationMs < 3400, `about 2.5 s recorded, the pause left out: ${result.durationMs} ms`);
        assert.equal(result.bytes, statSync(file).size);
        assert.ok(result.bytes > 10_000, `${result.bytes} bytes`);
        assert.deepEqual(await engine.recorderStop(rec), result, 'stopping again gives the same result');
        const probe = JSON.parse((await run('ffprobe', ['-v', 'error', '-show_entries', 'format=duration:stream=codec_name', '-of', 'json', file])).stdout) as { format: { duration: string }; streams: { codec_name: string }[] };
        assert.deepEqual(probe.streams.map((s) => s.codec_name).sort(), ['opus', 'vp8']);
        assert.ok(Math.abs(Number(probe.format.duration) * 1000 - result.durationMs) < 700, `the file says ${probe.format.duration} s`);
        assert.deepEqual(events.map((e) => e.type === 'recorder_state' ? [e.state, e.uri, e.tag] : [e.type]),
          [['recording', file, tag], ['paused', file, tag], ['recording', file, tag], ['stopped', file, tag]]);
      } finally {
        events.off();
        await engine.release(player);
        await engine.release(rec);
      }
    });
  }

  it('release frees the elements on the node (its counters back to where they were); released ids are not found', async () => {
    const base = await ext.counters();
    const ids: ElementId[] = [];
    const phone = await RtpPeer.open();
    const peer = new TestPeer();
    try {
      const w = await ext.createWebRtcEndpoint({ tag: 'r' });
      await ext.processOffer(w, (await peer.makeOffer()).sdp);
      const r = await ext.createRtpEndpoint({ tag: 'r' });
      await ext.processOffer(r, phone.sdp([{ pt: 0, name: 'PCMU', rate: 8000 }]));
      const p = await ext.createPassThrough({ tag: 'r' });
      const player = await ext.createPlayerEndpoint({ tag: 'r' });
      await ext.playerStart(player, clip, 0);
      const rec = await ext.createRecorderEndpoint({ tag: 'r' });
      await ext.recorderStart(rec, join(dir, 'rec', 'released.webm'), 'webm');
      await ext.connect(player, w);
      await ext.connect(w, p);
      await ext.connect(p, rec);
      ids.push(w, r, p, player, rec);
      const up = await ext.counters();
      assert.equal(up.elements, base.elements + 5, JSON.stringify({ base, up }));
      assert.equal(up.endpoints, base.endpoints + 2);
      assert.ok(up.udpSockets >= base.udpSockets + 2, `sockets bound: ${JSON.stringify({ base, up })}`);
      for (const id of ids) await ext.release(id);
      // The node runs in this process: its UDP sockets are counted with the test's own peers'.
      await phone.close();
      await peer.close();
      await eventually(async () => {
        const now = await ext.counters();
        return now.elements === base.elements && now.endpoints === base.endpoints && now.udpSockets <= base.udpSockets;
      }, 5000, 'the node\'s counters back to the baseline');
      for (const id of ids) await assert.rejects(ext.getStats(id), engineError('not_found'));
      await ext.release(ids[0]!); // releasing again is nothing
    } finally {
      await phone.close().catch(() => undefined);
      await peer.close();
    }
  });
});

describe('many requests at once', () => {
  it('more requests than the node takes in flight (64) are queued, not refused', async () => {
    const ids = await Promise.all(Array.from({ length: 150 }, (_, i) => ext.createPassThrough({ tag: `many-${i}` })));
    assert.equal(new Set(ids).size, 150);
    await Promise.all(ids.map((id) => ext.release(id)));
  });
});

describe('errors come back as the engine\'s kinds', () => {
  it('unknown and released elements, wrong element kinds, bad SDPs, negotiating twice, player and recorder URIs; what a KMS cannot do', async () => {
    for (const engine of [ext, std]) {
      const offerer = new TestPeer();
      const offer = (await offerer.makeOffer()).sdp;
      await offerer.close();
      await assert.rejects(engine.processOffer('node-1/webrtc-nope', offer), engineError('not_found'));
      await assert.rejects(engine.connect('node-1/nope', 'node-1/nope2'), engineError('not_found'));
      await engine.disconnect('node-1/nope', 'node-1/nope2');
      await engine.release('node-1/nope');

      const pt = await engine.createPassThrough({ tag: 'err' });
      await assert.rejects(engine.processOffer(pt, offer), engineError('invalid_state', /not an endpoint/));
      await assert.rejects(engine.recorderStart(pt, join(dir, 'rec', 'x.webm'), 'webm'), engineError('invalid_state'));
      const ep = await engine.createWebRtcEndpoint({ tag: 'err' });
      await assert.rejects(engine.processOffer(ep, 'v=0\r\nnot an sdp\r\n'), engineError('invalid_sdp'));
      await engine.processOffer(ep, offer);
      await assert.rejects(engine.processOffer(ep, offer), engineError('invalid_state'), 'a WebRTC endpoint negotiates once');
      await assert.rejects(engine.addIceCandidate(ep, { candidate: 'candidate:garbage', sdpMLineIndex: 0 }), engineError('invalid_candidate'));

      const player = await engine.createPlayerEndpoint({ tag: 'err' });
      await assert.rejects(engine.playerStart(player, join(dir, 'media', 'missing.webm'), 1), engineError('invalid_uri'));
      await assert.rejects(engine.playerStart(player, '/etc/passwd', 1), engineError('invalid_uri'), 'outside the node\'s folders');
      await assert.rejects(engine.playerSeek(player, 1000), engineError('invalid_state'));
      const rec = await engine.createRecorderEndpoint({ tag: 'err' });
      await assert.rejects(engine.recorderStart(rec, join(dir, 'outside', 'x.webm'), 'webm'), engineError('failed', /cannot record/));

      // An element the node lost (released there by someone else): the node's 40101 is not_found.
      const raw = await rawKurento(`${node.url}?access_token=${token}`);
      try {
        await raw.call('connect');
        const children = (await raw.call('invoke', { object: engine.pipeline, operation: 'getChildren' })).value as string[];
        const nodeEp = children.find((c) => c.endsWith('_kurento.WebRtcEndpoint'))!;
        await raw.call('release', { object: nodeEp });
      } finally {
        raw.close();
      }
      await assert.rejects(engine.gatherCandidates(ep), engineError('not_found'));
      for (const id of [pt, ep, player, rec]) await engine.release(id);
    }
    // What Kurento has no method for: the nearest where there is one, else said so.
    const ep = await std.createWebRtcEndpoint({ tag: 'kms' });
    try {
      await std.setMaxBitrate(ep, 300_000); // setMaxVideoRecvBandwidth(300)
      await std.setVideoLayer(ep, 'high');
      await assert.rejects(std.setVideoLayer(ep, 'low'), engineError('failed', /not supported by Kurento Media Server/));
      await assert.rejects(std.requestKeyframe(ep), engineError('failed', /not supported by Kurento Media Server/));
    } finally {
      await std.release(ep);
    }
  });
});

describe('the domain core on a remote engine', () => {
  it('core.sessions.create makes an echo session on the node; a werift peer gets its media back; stopping it frees the node', async () => {
    const engine = newEngine();
    await engine.connect();
    const core = new MediaCore({ engine, log, paths: { recordingsDir: join(dir, 'rec'), playDirs: [join(dir, 'media')], allowHttp: false } });
    const base = await engine.counters();
    const peer = new TestPeer();
    try {
      const offer = await peer.makeOffer();
      const id = core.sessions.newId();
      const ours: string[] = [];
      const connection: string[] = [];
      const reply = await core.sessions.create({ type: 'echo', offer: { sdp: offer.sdp, trickle_ice: true }, wait_reply: true } as CreateRequest,
        { user: 'alice', admin: false, connId: 'c1' }, id, { user: 'alice', connId: 'c1' }, {
          onSession: (s) => s.events
            .on('candidate', (c) => { ours.push(c.candidate); void peer.addCandidate(c).catch(() => undefined); })
            .on('candidateEnd', () => ours.push('end'))
            .on('connection', (st) => connection.push(st)),
        });
      await peer.takeAnswer(reply.answer!);
      const session = core.sessions.lookup(id)!;
      for (const c of offer.candidates) await session.addClientCandidate(c);
      session.clientCandidatesEnd();
      await peer.waitConnected();
      peer.startSending();
      await eventually(() => peer.from('audio', peer.tag).length > 25 && peer.from('video', peer.tag).length > 25, 6000, 'echo through the core');
      assert.ok(ours.length >= 2 && ours.at(-1) === 'end', `our candidates, then their end: ${ours.join(', ')}`);
      await eventually(() => connection.includes('up'), 3000, 'the session knows it is connected');
      const up = await engine.counters();
      assert.equal(up.elements, base.elements + 2, 'an endpoint and its proxy on the node');
      await session.stop('user_stop');
      await eventually(async () => (await engine.counters()).elements === base.elements, 3000, 'the session\'s elements released on the node');
    } finally {
      await peer.close();
      await core.stopAll('api_stop');
      core.close();
      await engine.close();
    }
  });
});

describe('nodes that misbehave or go away', () => {
  /** A fake node: answers the handshake, then what `onRequest` says (undefined: no answer). */
  async function stubNode(onRequest: (method: string, params: Record<string, unknown>) => unknown): Promise<{ url: string; sockets: Set<WebSocket>; close(): Promise<void> }> {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    await new Promise((r) => wss.once('listening', r));
    const sockets = new Set<WebSocket>();
    wss.on('connection', (ws) => {
      sockets.add(ws);
      ws.on('message', (d: RawData) => {
        const m = JSON.parse(String(d)) as { id: number; method: string; params: Record<string, unknown> };
        const r = onRequest(m.method, m.params);
        if (r === undefined) return;
        ws.send(typeof r === 'string' ? r.replace('$ID', String(m.id)) : JSON.stringify({ jsonrpc: '2.0', id: m.id, ...(r as object) }));
      });
    });
    const port = (wss.address() as { port: number }).port;
    return { url: `ws://127.0.0.1:${port}/kurento`, sockets, close: () => new Promise((r) => { for (const s of sockets) s.terminate(); wss.close(() => r()); }) };
  }

  const handshake = (method: string, p: Record<string, unknown>, ext = true): unknown => {
    if (method === 'ping') return { result: { value: 'pong' } };
    if (method === 'connect') return { result: { sessionId: 'stub-session' } };
    if (method === 'subscribe') return { result: { value: 'sub', sessionId: 'stub-session' } };
    if (method === 'release') return { result: { sessionId: 'stub-session' } };
    if (method === 'create' && p.type === 'MediaPipeline') return { result: { value: 'pipe', sessionId: 'stub-session' } };
    if (method === 'invoke' && p.operation === 'getInfo') return { result: { value: { version: '7.3.0', type: 'KMS' } } };
    if (method === 'invoke' && p.operation === 'nkmediaInfo') return ext ? { result: { value: { server: 'nkmedia-ts', extensions: 1 } } } : { error: { code: 40105, message: 'Method not found' } };
    return 'other';
  };

  it('a KMS (no nkmediaInfo) is spoken to with the standard protocol', async () => {
    const stub = await stubNode((m, p) => { const h = handshake(m, p, false); return h === 'other' ? undefined : h; });
    const e = new RemoteEngine({ url: stub.url, nodeId: 'kms', log, keepAliveMs: 0 });
    try {
      await e.connect();
      assert.equal(e.extensions, false);
    } finally {
      await e.close();
      await stub.close();
    }
  });

  it('malformed replies fail their request at once; malformed frames and events are dropped; a listener that throws hurts nobody; unanswered requests time out', async () => {
    const stub = await stubNode((m, p) => {
      const h = handshake(m, p);
      if (h !== 'other') return h;
      if (m === 'create' && p.type === 'PassThrough') return { result: { value: 'pipe/pt', sessionId: 'stub-session' } };
      if (m === 'create' && p.type === 'WebRtcEndpoint') return { result: { value: 42 } };
      if (m === 'create' && p.type === 'RtpEndpoint') return '{"jsonrpc":"2.0","id":$ID,"result":"not an object"}';
      return undefined; // never answered
    });
    const e = new RemoteEngine({ url: stub.url, nodeId: 'stub', log, requestTimeoutMs: 1000, keepAliveMs: 0 });
    try {
      await e.connect();
      const pt = await e.createPassThrough({ tag: 'stub-tag' });
      let t0 = Date.now();
      await assert.rejects(e.createWebRtcEndpoint({ tag: 'x' }), engineError('failed', /malformed/));
      await assert.rejects(e.createRtpEndpoint({ tag: 'x' }), engineError('failed', /malformed/));
      assert.ok(Date.now() - t0 < 600, 'a malformed reply fails at once, not at the timeout');

      const got: EngineEvent[] = [];
      e.onEvent(() => { throw new Error('a listener that throws'); });
      e.onEvent((ev) => got.push(ev));
      const ws = [...stub.sockets][0]!;
      const event = (data: unknown, type = 'NkmediaEngineEvent', object = 'pipe') => JSON.stringify({ jsonrpc: '2.0', method: 'onEvent', params: { value: { data, object, type } } });
      for (const frame of [
        'not json at all',
        '{"jsonrpc":"1.0","id":1}',
        '{"jsonrpc":"2.0","id":123456,"result":{}}',
        JSON.stringify({ jsonrpc: '2.0', method: 'onEvent', params: { value: 'nope' } }),
        event({ element: 'pipe/pt', event: { type: 'connection_state', state: 'exploded' } }),
        event({ element: 'pipe/pt', event: { type: 'media_flow', direction: 'in' } }),
        event({ element: 'pipe/other', event: { type: 'ice_gathering_done' } }),
        event({ element: 'pipe/pt', event: { type: 'error', message: 'boom', code: 'element_failed', detail: 'kept on the node' } }),
      ]) ws.send(frame);
      await eventually(() => got.length > 0, 2000, 'the one good event');
      await sleep(100);
      assert.deepEqual(got, [{ type: 'error', message: 'boom', code: 'element_failed', elementId: pt, tag: 'stub-tag' }]);
      assert.equal(e.state, 'up', 'still up');

      t0 = Date.now();
      await assert.rejects(e.counters(), engineError('failed', /timed out after 1000 ms/));
      assert.ok(Date.now() - t0 >= 980 && Date.now() - t0 < 3000, `timed out after ${Date.now() - t0} ms`);
    } finally {
      await e.close();
      await stub.close();
    }
  });

  it('a frozen node: its requests time out, its keepalive declares it lost, and another engine goes on unhindered', async () => {
    const proxy = await TcpProxy.start(Number(new URL(node.url).port));
    const slow = newEngine({ url: proxy.url(), nodeId: 'frozen', requestTimeoutMs: 600, keepAliveMs: 250 });
    try {
      await slow.connect();
      const pt = await slow.createPassThrough({ tag: 'f' });
      proxy.freeze();
      const t0 = Date.now();
      const pending = slow.createWebRtcEndpoint({ tag: 'f' }).then(() => 'resolved', (err: unknown) => err);
      // Meanwhile another engine on the same node works as usual.
      const other = await peerOn(ext, 'not-frozen');
      other.off();
      await other.peer.close();
      await ext.release(other.ep);
      assert.ok(Date.now() - t0 < 3000);
      const err = await pending;
      assert.ok(err instanceof EngineError && err.kind === 'failed', String(err));
      assert.match((err as Error).message, /timed out after 600 ms|unreachable/);
      await eventually(() => slow.state === 'down', 3000, 'the frozen node declared lost');
      await assert.rejects(slow.createPassThrough({ tag: 'f' }), engineError('failed', /down/));
      await slow.release(pt); // the node releases it after its grace time
    } finally {
      await slow.close();
      await proxy.close();
    }
  });

  it('an object the node makes after its create timed out is released when the late reply comes', async () => {
    const proxy = await TcpProxy.start(Number(new URL(node.url).port));
    const slow = newEngine({ url: proxy.url(), nodeId: 'late', requestTimeoutMs: 300, keepAliveMs: 0 });
    try {
      await slow.connect();
      const base = await ext.counters();
      proxy.freeze();
      await assert.rejects(slow.createPassThrough({ tag: 'late' }), engineError('failed', /timed out/));
      assert.equal((await ext.counters()).elements, base.elements + 1, 'the node made it all the same');
      proxy.thaw();
      await eventually(async () => (await ext.counters()).elements === base.elements, 3000, 'the late object released');
      assert.equal(slow.state, 'up');
    } finally {
      await slow.close();
      await proxy.close();
    }
  });

  it('a node closed with requests waiting: they fail at once, the state goes down, later calls fail at once', async () => {
    const node2 = await startMediaNode();
    const proxy = await TcpProxy.start(Number(new URL(node2.url).port));
    const e = new RemoteEngine({ url: proxy.url(), nodeId: 'node-2', log, requestTimeoutMs: 10_000 });
    const states: string[] = [];
    e.on('stateChange', (s) => states.push(s));
    try {
      await e.connect();
      await e.createPassThrough({ tag: 'n2' });
      proxy.freeze(); // the reply of what follows will not come back
      const t0 = Date.now();
      const waiting = e.createWebRtcEndpoint({ tag: 'n2' }).then(() => 'resolved', (err: unknown) => err);
      await sleep(100);
      await node2.server.close();
      const err = await waiting;
      assert.ok(err instanceof EngineError && err.kind === 'failed' && /unreachable/.test(err.message), String(err));
      assert.ok(Date.now() - t0 < 3000, `failed after ${Date.now() - t0} ms, not at the 10 s timeout`);
      assert.equal(e.state, 'down');
      assert.deepEqual(states, ['connecting', 'up', 'down']);
      const t1 = Date.now();
      await assert.rejects(e.createPassThrough({ tag: 'n2' }), engineError('failed', /down/));
      assert.ok(Date.now() - t1 < 200, 'no waiting for a node that is down');
    } finally {
      await e.close();
      await proxy.close();
    }
  });

  it('a connection cut and made again resumes the node session: elements, connections and media are still there', async () => {
    const proxy = await TcpProxy.start(Number(new URL(node.url).port));
    const e = newEngine({ url: proxy.url(), nodeId: 'blip' });
    try {
      await e.connect();
      const { ep, peer } = await peerOn(e, 'blip');
      await e.connect(ep, ep);
      peer.startSending();
      const pipeline = e.pipeline;
      proxy.cut();
      await eventually(() => e.state === 'down', 2000, 'down');
      await assert.rejects(e.getStats(ep), engineError('failed'));
      await e.connect();
      assert.equal(e.state, 'up');
      assert.equal(e.pipeline, pipeline, 'the same pipeline');
      const before = peer.from('video', peer.tag).length;
      await eventually(() => peer.from('video', peer.tag).length > before + 10, 3000, 'the echo went on');
      assert.equal((await e.getStats(ep)).connectionState, 'connected');
      await peer.close();
      await e.release(ep);
    } finally {
      await e.close();
      await proxy.close();
    }
  });
});
