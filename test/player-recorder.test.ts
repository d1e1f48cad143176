// PlayerEndpoint and RecorderEndpoint of the local engine, with real werift clients on loopback:
// media files made by ffmpeg are played to a client (pass-through and transcoded, local and
// http), and what a client sends is recorded, then checked with ffprobe/ffmpeg.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server as HttpServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { decodeProblems } from './helpers/decode-check.js';
import { RTCPeerConnection, useH264, useOPUS, type RtpPacket, type RTCRtpTransceiver } from 'werift';
import { LocalEngine } from '../src/engine/local/engine.js';
import { Element, type CodecInfo, type MediaUnit } from '../src/engine/local/graph/element.js';
import { PlayerEndpoint, PlayerError, runningTranscoders, type PlayerEvent } from '../src/engine/local/files/player.js';
import { RecorderEndpoint, type RecorderEvent } from '../src/engine/local/files/recorder.js';
import { parseVp8Descriptor, vp8FrameSize } from '../src/engine/local/files/rtp/vp8.js';
import { PEER_CONFIG, TestPeer, splitCandidates } from './helpers/peer.js';
import { eventually } from './helpers/server.js';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let dir: string;
const media = { webm: '', mp4: '', short: '', garbage: '' };
const probedDuration: Record<string, number> = {};

async function ffprobe(file: string): Promise<{ duration: number; codecs: string[] }> {
  const { stdout } = await run('ffprobe', ['-v', 'error', '-show_entries', 'format=duration:stream=codec_name', '-of', 'json', file]);
  const j = JSON.parse(stdout) as { format: { duration: string }; streams: { codec_name: string }[] };
  return { duration: Number(j.format.duration), codecs: j.streams.map((s) => s.codec_name).sort() };
}

/** Makes a test clip: a test pattern with a frame counter and a sine tone. */
async function makeClip(file: string, seconds: number, codecs: string[]): Promise<void> {
  const video = (text: boolean) => `testsrc2=size=320x240:rate=30${text ? ",drawtext=text='%{frame_num}':fontsize=48:x=10:y=10:fontcolor=white:box=1" : ''}`;
  const args = (text: boolean) => [
    '-v', 'error', '-y', '-f', 'lavfi', '-i', video(text), '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
    '-t', String(seconds), '-g', '30', ...codecs, '-ac', '2', file,
  ];
  // drawtext needs a font; without one the clip is made without the counter.
  await run('ffmpeg', args(true)).catch(() => run('ffmpeg', args(false)));
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nkmedia-media-'));
  media.webm = join(dir, 'clip.webm');
  media.mp4 = join(dir, 'clip.mp4');
  media.short = join(dir, 'short.webm');
  media.garbage = join(dir, 'garbage.webm');
  await Promise.all([
    makeClip(media.webm, 10, ['-c:v', 'libvpx', '-b:v', '400k', '-deadline', 'realtime', '-cpu-used', '8', '-c:a', 'libopus']),
    makeClip(media.mp4, 10, ['-c:v', 'libx264', '-preset', 'ultrafast', '-profile:v', 'baseline', '-pix_fmt', 'yuv420p', '-c:a', 'aac']),
    makeClip(media.short, 2, ['-c:v', 'libvpx', '-b:v', '400k', '-deadline', 'realtime', '-cpu-used', '8', '-c:a', 'libopus']),
    writeFile(media.garbage, Buffer.alloc(50000, 0x5a)),
  ]);
  for (const f of [media.webm, media.mp4, media.short]) probedDuration[f] = (await ffprobe(f)).duration;
});

after(async () => {
  assert.deepEqual(runningTranscoders(), [], 'no ffmpeg left running');
  await rm(dir, { recursive: true, force: true });
});

// ---- the engine, clients and elements ---------------------------------------------------------

function newEngine(): LocalEngine {
  return new LocalEngine({ includeLoopback: true, useInterfaces: false, announcedAddresses: [], stunServers: [], turnServers: [], gatherTimeoutMs: 1000 });
}

/**
 * Puts a player or recorder made here into the engine's element table, so engine.connect/release
 * handle it like any element while the test drives it directly (its own API and event callback).
 */
function adopt<T extends Element>(engine: LocalEngine, el: T): T {
  (engine as unknown as { elements: Map<string, Element> }).elements.set(el.id, el);
  return el;
}

/** A client connected to a new WebRtcEndpoint (the client offers, the engine answers). */
async function connectClient(engine: LocalEngine, pc: RTCPeerConnection, offer: () => Promise<{ sdp: string; candidates: { candidate: string; sdpMid?: string; sdpMLineIndex: number }[] }>): Promise<string> {
  const ep = await engine.createWebRtcEndpoint({ tag: 'test' });
  const off = engine.onEvent((ev) => {
    if (ev.type === 'ice_candidate' && ev.elementId === ep) void pc.addIceCandidate(ev.candidate).catch(() => undefined);
  });
  const o = await offer();
  const answer = await engine.processOffer(ep, o.sdp);
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  await engine.gatherCandidates(ep);
  for (const c of o.candidates) await engine.addIceCandidate(ep, c);
  await eventually(() => pc.connectionState === 'connected', 10000, 'client connected');
  off();
  return ep;
}

async function connectTestPeer(engine: LocalEngine, peer: TestPeer): Promise<string> {
  return connectClient(engine, peer.pc, () => peer.makeOffer());
}

/** What a client receives: every RTP packet with its payload and arrival time. */
interface Got { ts: number; seq: number; marker: boolean; payload: Buffer; at: number }
function capture(pc: RTCPeerConnection): { audio: Got[]; video: Got[] } {
  const got = { audio: [] as Got[], video: [] as Got[] };
  pc.onTrack.subscribe((track) => {
    const kind = track.kind === 'audio' ? 'audio' : 'video';
    track.onReceiveRtp.subscribe((rtp: RtpPacket) => {
      got[kind].push({ ts: rtp.header.timestamp, seq: rtp.header.sequenceNumber, marker: rtp.header.marker, payload: rtp.payload, at: performance.now() });
    });
  });
  return got;
}

/** A client using only H.264 video (the engine's endpoints offer VP8 and H.264). */
class H264Client {
  readonly pc = new RTCPeerConnection({ ...PEER_CONFIG, codecs: { audio: [useOPUS()], video: [useH264()] } });
  audio?: RTCRtpTransceiver;
  video?: RTCRtpTransceiver;
  async makeOffer() {
    this.audio = this.pc.addTransceiver('audio', { direction: 'sendrecv' });
    this.video = this.pc.addTransceiver('video', { direction: 'sendrecv' });
    await this.pc.setLocalDescription(await this.pc.createOffer());
    return splitCandidates(this.pc.localDescription!.sdp);
  }
  close() { return this.pc.close(); }
}

/**
 * Stands for a client's encoder: media from a PlayerEndpoint leaves through the client's senders
 * (real VP8/H.264/Opus RTP). Keyframe requests are not answered with a re-read from the last
 * keyframe (that burst is for new listeners, not what an encoder does): the clips have a keyframe
 * every second, like an encoder's periodic ones.
 */
class ClientFeed extends Element {
  constructor(readonly transceivers: () => { audio?: RTCRtpTransceiver; video?: RTCRtpTransceiver }) {
    super(`feed-${Math.random()}`, 'feed');
  }
  sendCodec(kind: 'audio' | 'video'): CodecInfo | undefined {
    const c = this.transceivers()[kind]?.sender.codec;
    return c && { mimeType: c.mimeType.toLowerCase(), clockRate: c.clockRate };
  }
  accept(unit: MediaUnit): void {
    if (unit.kind === 'data') return;
    void this.transceivers()[unit.kind]?.sender.sendRtp(unit.rtp).catch(() => undefined);
  }
}

function link(source: Element, sink: Element): void {
  for (const k of ['audio', 'video'] as const) {
    sink.sources.set(k, source);
    source.sinks[k].add(sink);
  }
}

const pidAlive = (pid: number) => { try { process.kill(pid, 0); return true; } catch { return false; } };

/** Frames (marker-terminated) of captured video: their RTP timestamps and arrival times. */
function frames(packets: Got[]): { ts: number; at: number }[] {
  return packets.filter((p) => p.marker).map((p) => ({ ts: p.ts, at: p.at }));
}

/** Media time (s, from RTP) against arrival time (s) between the first and last item. */
function pacing(items: { ts: number; at: number }[], clock: number): { media: number; wall: number } {
  const first = items[0]!;
  const last = items[items.length - 1]!;
  return { media: ((last.ts - first.ts) >>> 0) / clock, wall: (last.at - first.at) / 1000 };
}

// ---- player ---------------------------------------------------------------------------------

describe('PlayerEndpoint', () => {
  let engine: LocalEngine;
  let peer: TestPeer;
  let ep: string;
  let got: { audio: Got[]; video: Got[] };
  let events: PlayerEvent[];
  let n = 0;

  // The test HTTP server is on loopback, which players refuse unless allowed.
  const newPlayer = (): PlayerEndpoint => adopt(engine, new PlayerEndpoint(`player-${n++}`, 'test', (ev) => events.push(ev), { httpAllow: ['127.0.0.1'] }));

  before(async () => {
    engine = newEngine();
    peer = new TestPeer();
    got = capture(peer.pc);
    ep = await connectTestPeer(engine, peer);
  });
  after(async () => { await peer.close(); await engine.close(); });

  /** A new player feeding the client, with the captures and events cleared. */
  async function playerOnClient(): Promise<PlayerEndpoint> {
    const p = newPlayer();
    await engine.connect(p.id, ep);
    got.audio.length = 0;
    got.video.length = 0;
    events = [];
    return p;
  }

  it('plays a WebM (VP8/Opus passed through) in real time, with the duration ffprobe reads, to the end', async () => {
    const player = await playerOnClient();
    const info = await player.start(media.webm, 1);
    assert.ok(Math.abs(info.duration - probedDuration[media.webm]! * 1000) <= 100, `duration ${info.duration} vs ffprobe ${probedDuration[media.webm]}`);
    assert.equal(info.is_seekable, true);
    assert.equal(info.first_position, 0);
    assert.equal(info.last_position, info.duration);
    await eventually(() => events.some((e) => e.type === 'player_state' && e.state === 'eos'), 15000, 'eos');
    assert.equal(player.state, 'eos');
    await sleep(100);
    // Paced in real time over the whole file (±5%), audio and video alike.
    const v = pacing(frames(got.video), 90000);
    const a = pacing(got.audio, 48000);
    assert.ok(v.media > 9.5, `video covers the file: ${v.media}s`);
    assert.ok(Math.abs(v.wall / v.media - 1) < 0.05, `video paced: ${v.wall}s for ${v.media}s`);
    assert.ok(Math.abs(a.wall / a.media - 1) < 0.05, `audio paced: ${a.wall}s for ${a.media}s`);
    assert.ok(Math.abs(got.audio.length - 500) < 25, `audio packets: ${got.audio.length}`);
    // The video is VP8 starting with a keyframe of the clip's size.
    const d = parseVp8Descriptor(got.video[0]!.payload)!;
    assert.equal(d.start, true);
    assert.deepEqual(vp8FrameSize(got.video[0]!.payload.subarray(d.size)), { width: 320, height: 240 });
    assert.deepEqual(events.filter((e) => e.type === 'player_state').map((e) => e.type === 'player_state' && e.state), ['playing', 'eos']);
    await engine.release(player.id);
  });

  it('pauses, resumes from the same position, seeks, stops', async () => {
    const player = await playerOnClient();
    await player.start(media.webm, 0);
    await sleep(2000);
    player.pause();
    const pausedAt = player.position();
    assert.ok(Math.abs(pausedAt - 2000) < 300, `position ${pausedAt} after 2 s`);
    await sleep(100); // packets already on their way
    const count = got.video.length + got.audio.length;
    await sleep(1000);
    assert.equal(got.video.length + got.audio.length, count, 'nothing sent while paused');
    assert.equal(player.position(), pausedAt, 'position holds while paused');
    assert.equal(player.state, 'paused');
    player.resume();
    assert.ok(Math.abs(player.position() - pausedAt) < 100, 'resume continues from the same position');
    const resumedFrom = got.audio.length;
    await sleep(1000);
    assert.ok(Math.abs(player.position() - (pausedAt + 1000)) < 200, `position ${player.position()} 1 s after resume from ${pausedAt}`);
    // The audio after resume continues the media timeline: no jump in content, RTP time ran on.
    assert.ok(got.audio.length - resumedFrom > 40, 'audio flows after resume');
    await player.seek(7000);
    assert.ok(Math.abs(player.position() - 7000) < 200, `position ${player.position()} after seek to 7000`);
    const seekFrom = got.video.length;
    await sleep(700);
    assert.ok(Math.abs(player.position() - 7700) < 200, `position ${player.position()} 700 ms after the seek`);
    // After a seek the client gets a keyframe first (a catch-up from the keyframe before 7 s).
    const afterSeek = got.video.slice(seekFrom);
    const firstStart = afterSeek.find((p) => parseVp8Descriptor(p.payload)?.start);
    assert.ok(firstStart && vp8FrameSize(firstStart.payload.subarray(parseVp8Descriptor(firstStart.payload)!.size)), 'a keyframe after the seek');
    await player.stop();
    assert.equal(player.state, 'stopped');
    await sleep(100);
    const stoppedCount = got.video.length + got.audio.length;
    await sleep(300);
    assert.equal(got.video.length + got.audio.length, stoppedCount, 'nothing after stop');
    const states = events.flatMap((e) => (e.type === 'player_state' ? [e.state] : []));
    assert.deepEqual(states, ['playing', 'paused', 'playing', 'stopped']);
    await engine.release(player.id);
  });

  it('gives a sink connected mid-play a keyframe at once', async () => {
    const player = await playerOnClient();
    await player.start(media.webm, 0);
    await sleep(1500); // between the clip's keyframes (one a second)
    const peer2 = new TestPeer();
    const got2 = capture(peer2.pc);
    const ep2 = await connectTestPeer(engine, peer2);
    const connectedAt = performance.now();
    await engine.connect(player.id, ep2);
    await eventually(() => got2.video.length > 0, 2000, 'video at the new sink');
    const first = got2.video[0]!;
    const d = parseVp8Descriptor(first.payload)!;
    assert.ok(d.start && vp8FrameSize(first.payload.subarray(d.size)), 'the first video the new sink gets is a keyframe');
    assert.ok(first.at - connectedAt < 500, `keyframe after ${Math.round(first.at - connectedAt)} ms`);
    const pos = player.position();
    assert.ok(pos > 1400, `no jump back in position (${pos})`);
    await engine.release(player.id);
    await peer2.close();
    await engine.release(ep2);
  });

  it('repeats the file `loops` times, the RTP timeline running on', async () => {
    const player = await playerOnClient();
    await player.start(media.short, 2);
    await eventually(() => events.some((e) => e.type === 'player_state' && e.state === 'eos'), 8000, 'eos');
    const loopsEv = events.filter((e) => e.type === 'player_loop');
    assert.deepEqual(loopsEv.map((e) => e.type === 'player_loop' && [e.loop, e.loops_left]), [[1, 1]]);
    await sleep(100);
    const v = pacing(frames(got.video), 90000);
    const expected = 2 * probedDuration[media.short]!;
    assert.ok(Math.abs(v.media - expected) < 0.2, `two plays of video: ${v.media}s, expected ${expected}s`);
    assert.ok(Math.abs(v.wall / v.media - 1) < 0.05, `paced across the loop: ${v.wall}s for ${v.media}s`);
    const fr = frames(got.video);
    for (let i = 1; i < fr.length; i++) assert.ok(((fr[i]!.ts - fr[i - 1]!.ts) >>> 0) < 2 ** 31, 'timestamps only go forward');
    await engine.release(player.id);
  });

  it('plays over http (range requests) and seeks there', async () => {
    const http = await serveFiles();
    try {
      const player = await playerOnClient();
      const info = await player.start(`http://127.0.0.1:${http.port}/clip.webm`, 1);
      assert.equal(info.is_seekable, true);
      assert.ok(Math.abs(info.duration - probedDuration[media.webm]! * 1000) <= 100);
      await sleep(1500);
      assert.ok(got.video.length > 30 && got.audio.length > 50, `media over http: ${got.video.length} video, ${got.audio.length} audio packets`);
      await player.seek(6000);
      await sleep(500);
      assert.ok(Math.abs(player.position() - 6500) < 200, `position ${player.position()} after seeking over http`);
      await player.stop();
      assert.ok(http.rangeRequests() > 0, 'range requests were made');
      await engine.release(player.id);
      // A missing file over http cannot be opened.
      const bad = await playerOnClient();
      await assert.rejects(bad.start(`http://127.0.0.1:${http.port}/missing.webm`), (e: PlayerError) => e.code === 'invalid_uri');
      await engine.release(bad.id);
    } finally {
      await http.close();
    }
  });

  it('reports invalid_uri for what cannot be opened and invalid_media for what cannot be played', async () => {
    const closedPort = await new Promise<number>((resolve) => {
      const s = createServer();
      s.listen(0, '127.0.0.1', () => { const p = (s.address() as { port: number }).port; s.close(() => resolve(p)); });
    });
    const cases: [string, string][] = [
      [join(dir, 'nonexistent.webm'), 'invalid_uri'],
      [pathToFileURL(join(dir, 'nonexistent.webm')).href, 'invalid_uri'],
      [dir, 'invalid_uri'],
      [`http://127.0.0.1:${closedPort}/clip.webm`, 'invalid_uri'],
      ['rtsp://127.0.0.1/stream', 'invalid_uri'],
      [media.garbage, 'invalid_media'],
    ];
    for (const [uri, code] of cases) {
      const player = await playerOnClient();
      await assert.rejects(player.start(uri), (e: PlayerError) => e instanceof PlayerError && e.code === code, `${uri} → ${code}`);
      assert.ok(events.some((e) => e.type === 'error' && e.code === code), `an error event for ${uri}`);
      assert.equal(player.state, 'stopped');
      await engine.release(player.id);
    }
    assert.deepEqual(runningTranscoders(), []);
  });

  it('transcodes MP4 H.264/AAC for a VP8/Opus client through ffmpeg, and reaps it on stop', async () => {
    const player = await playerOnClient();
    const info = await player.start(pathToFileURL(media.mp4).href, 1);
    assert.ok(Math.abs(info.duration - probedDuration[media.mp4]! * 1000) <= 100, `duration ${info.duration} vs ffprobe ${probedDuration[media.mp4]}`);
    const pids = runningTranscoders();
    assert.equal(pids.length, 1, 'one ffmpeg');
    await sleep(2500);
    assert.ok(got.audio.length > 100, `opus audio: ${got.audio.length}`);
    const fr = frames(got.video);
    assert.ok(fr.length > 50, `video frames: ${fr.length}`);
    const d = parseVp8Descriptor(got.video[0]!.payload)!;
    assert.deepEqual(vp8FrameSize(got.video[0]!.payload.subarray(d.size)), { width: 320, height: 240 }, 'VP8, starting with a keyframe');
    const v = pacing(fr, 90000);
    assert.ok(Math.abs(v.wall / v.media - 1) < 0.1, `transcoded video paced: ${v.wall}s for ${v.media}s`);
    await player.stop();
    assert.deepEqual(runningTranscoders(), []);
    assert.equal(pidAlive(pids[0]!), false, 'the ffmpeg process is gone');
    await engine.release(player.id);
  });
});

/** A static file server for the test folder with byte-range support, on 127.0.0.1. */
async function serveFiles(): Promise<{ port: number; close(): Promise<void>; rangeRequests(): number }> {
  let ranges = 0;
  const server: HttpServer = createServer((req, res) => {
    void (async () => {
      const name = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname).replace(/^\/+/, '');
      const file = join(dir, name);
      const size = await stat(file).then((s) => (s.isFile() ? s.size : -1), () => -1);
      if (size < 0 || name.includes('/')) { res.writeHead(404).end(); return; }
      const m = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range ?? '');
      if (!m) {
        res.writeHead(200, { 'content-length': size, 'accept-ranges': 'bytes' });
        createReadStream(file).pipe(res);
        return;
      }
      ranges++;
      const start = m[1] ? Number(m[1]) : Math.max(0, size - Number(m[2]));
      const end = m[1] && m[2] ? Math.min(Number(m[2]), size - 1) : size - 1;
      res.writeHead(206, { 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${size}`, 'accept-ranges': 'bytes' });
      createReadStream(file, { start, end }).pipe(res);
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    rangeRequests: () => ranges,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

// ---- recorder -------------------------------------------------------------------------------

/** Whether a WebM file has a Cues element at the Segment's top level (so players can seek). */
async function hasCues(file: string): Promise<boolean> {
  const b = await readFile(file);
  const vint = (pos: number, keep: boolean) => {
    let len = 1;
    while (len <= 8 && !(b[pos]! & (0x80 >> (len - 1)))) len++;
    let v = keep ? b[pos]! : b[pos]! & (0xff >> len);
    for (let i = 1; i < len; i++) v = v * 256 + b[pos + i]!;
    return { v, len };
  };
  let pos = 0;
  const head = vint(pos, true); const headSize = vint(pos + head.len, false);
  pos += head.len + headSize.len + headSize.v; // EBML header
  const seg = vint(pos, true); const segSize = vint(pos + seg.len, false);
  assert.equal(seg.v, 0x18538067, 'a Segment');
  pos += seg.len + segSize.len;
  while (pos < b.length) {
    const id = vint(pos, true); const size = vint(pos + id.len, false);
    if (id.v === 0x1c53bb6b) return true;
    pos += id.len + size.len + size.v;
  }
  return false;
}

async function decodesCleanly(file: string): Promise<void> {
  const { status, stderr } = decodeProblems(file);
  assert.equal(stderr, '', `ffprobe decodes ${file} without errors`);
  assert.equal(status, 0);
}

/**
 * A client sending real media: a player (standing for its encoder) feeds its senders, its
 * endpoint feeds a session proxy, the proxy feeds a recorder.
 */
async function recordingSetup(engine: LocalEngine, file: string, opts: { h264?: boolean } = {}) {
  const h264 = opts.h264 ? new H264Client() : undefined;
  const peer = h264 ? undefined : new TestPeer();
  const pc = (h264?.pc ?? peer!.pc);
  const ep = await connectClient(engine, pc, () => (h264 ?? peer!).makeOffer());
  const proxy = await engine.createPassThrough({ tag: 'test' });
  await engine.connect(ep, proxy);
  const feed = new ClientFeed(() => ({ audio: (h264 ?? peer!).audio, video: (h264 ?? peer!).video }));
  const source = new PlayerEndpoint(`client-player-${Math.random()}`, 'client', () => undefined);
  link(source, feed);
  await source.start(file, 0);
  const events: RecorderEvent[] = [];
  const recorder = adopt(engine, new RecorderEndpoint(`recorder-${Math.random()}`, 'test', (ev) => events.push(ev)));
  await engine.connect(proxy, recorder.id);
  return {
    recorder, events,
    /** The client goes away: its media stops. */
    async vanish() { await source.release(); await feed.release(); await pc.close(); },
  };
}

describe('RecorderEndpoint', () => {
  let engine: LocalEngine;
  before(() => { engine = newEngine(); });
  after(async () => { await engine.close(); });

  it('records 10 s with a 3 s pause into a 7 s WebM with both streams, Cues, decodable', async () => {
    const s = await recordingSetup(engine, media.webm);
    const file = join(dir, 'rec-pause.webm');
    await s.recorder.start(file);
    await sleep(3500);
    s.recorder.pause();
    await sleep(3000);
    s.recorder.resume();
    await sleep(3500);
    const result = await s.recorder.stop();
    await s.vanish();
    assert.deepEqual(result.tracks, ['video', 'audio']);
    const probe = await ffprobe(file);
    assert.deepEqual(probe.codecs, ['opus', 'vp8']);
    assert.ok(Math.abs(probe.duration - 7) <= 0.3, `duration ${probe.duration}, expected 7 s`);
    assert.ok(Math.abs(result.durationMs - 7000) <= 300, `reported duration ${result.durationMs}`);
    assert.ok(await hasCues(file), 'Cues present');
    await decodesCleanly(file);
    assert.deepEqual(s.events.map((e) => e.type === 'recorder_state' ? e.state : e.code), ['recording', 'paused', 'recording', 'stopped']);
    await engine.release(s.recorder.id);
  });

  it('finalises the file when released mid-way after the client vanished', async () => {
    const s = await recordingSetup(engine, media.webm);
    const file = join(dir, 'rec-release.webm');
    await s.recorder.start(file);
    await sleep(4000);
    await s.vanish();
    await sleep(300);
    await engine.release(s.recorder.id);
    assert.equal(s.recorder.state, 'stopped');
    const probe = await ffprobe(file);
    assert.deepEqual(probe.codecs, ['opus', 'vp8']);
    assert.ok(Math.abs(probe.duration - 4) <= 0.3, `duration ${probe.duration}, expected 4 s`);
    assert.ok(await hasCues(file), 'Cues present');
    await decodesCleanly(file);
    const last = s.events.at(-1);
    assert.equal(last?.type === 'recorder_state' && last.state, 'stopped');
  });

  it('makes 5 valid recordings in parallel', async () => {
    const setups = await Promise.all(Array.from({ length: 5 }, () => recordingSetup(engine, media.webm)));
    const files = setups.map((_, i) => join(dir, `rec-parallel-${i}.webm`));
    await Promise.all(setups.map((s, i) => s.recorder.start(files[i]!)));
    await sleep(3000);
    const results = await Promise.all(setups.map((s) => s.recorder.stop()));
    await Promise.all(setups.map((s) => s.vanish()));
    for (const [i, file] of files.entries()) {
      assert.deepEqual(results[i]!.tracks, ['video', 'audio']);
      const probe = await ffprobe(file);
      assert.deepEqual(probe.codecs, ['opus', 'vp8']);
      assert.ok(Math.abs(probe.duration - 3) <= 0.3, `recording ${i}: ${probe.duration}s`);
      assert.ok(await hasCues(file));
      await decodesCleanly(file);
    }
    for (const s of setups) await engine.release(s.recorder.id);
  });

  it('records H.264 + Opus into MP4 (the client sends H.264; its Opus transcoded from AAC)', async () => {
    const s = await recordingSetup(engine, media.mp4, { h264: true });
    const file = join(dir, 'rec.mp4');
    await s.recorder.start(file, 'mp4');
    await sleep(3000);
    const result = await s.recorder.stop();
    await s.vanish();
    assert.deepEqual(result.tracks, ['video', 'audio']);
    const probe = await ffprobe(file);
    assert.deepEqual(probe.codecs, ['h264', 'opus']);
    assert.ok(Math.abs(probe.duration - 3) <= 0.3, `duration ${probe.duration}`);
    await decodesCleanly(file);
    await engine.release(s.recorder.id);
    assert.deepEqual(runningTranscoders(), []);
  });

  it('leaves no file when nothing came, and refuses a path it cannot write', async () => {
    const events: RecorderEvent[] = [];
    const rec = adopt(engine, new RecorderEndpoint('recorder-empty', 'test', (ev) => events.push(ev)));
    const file = join(dir, 'empty.webm');
    await rec.start(file);
    const result = await rec.stop();
    assert.deepEqual(result.tracks, []);
    await assert.rejects(stat(file));
    assert.ok(events.some((e) => e.type === 'error' && e.code === 'no_media'));
    const rec2 = adopt(engine, new RecorderEndpoint('recorder-bad', 'test', () => undefined));
    await assert.rejects(rec2.start(join(dir, 'no-such-dir', 'x.webm')));
    await engine.release(rec.id);
    await engine.release(rec2.id);
  });
});
