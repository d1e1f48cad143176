// Media through the Kurento protocol door, driven by the real kurento-client 7.3.0: a
// PlayerEndpoint playing a WebM to a werift client (play, pause, seek, video info, end of stream,
// URI confinement), RecorderEndpoints recording what a werift client sends (pause left out of
// the file, WEBM, WEBM_AUDIO_ONLY and MP4 profiles, checked with ffprobe/ffmpeg), an RtpEndpoint
// fed by ffmpeg as a plain RTP peer and forwarded to a werift client, and release: the engine's
// counters back to where they were, no ffmpeg left running.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import sdpTransform from 'sdp-transform';
import { startTestServer, eventually } from './helpers/server.js';
import { TestPeer } from './helpers/peer.js';
import { relay } from './helpers/flows.js';
import { RtpPeer } from './helpers/rtp-peer.js';
import { loadKurentoClient } from './helpers/kurento-client.js';
import { runningTranscoders } from '../src/engine/local/files/player.js';
import { parseVp8Descriptor, vp8FrameSize } from '../src/engine/local/files/rtp/vp8.js';
import type { Server } from '../src/main.js';
import type { EngineCounters } from '../src/engine/types.js';
import type { SdpObject } from '../src/client/index.js';

const kurento = loadKurentoClient();
const IceCandidate = kurento.getComplexType('IceCandidate');
const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// kurento-client's objects are untyped.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type K = any;

let dir: string;
/** The folder Kurento clients may use (kurento.file_dirs). */
let allowed: string;
let server: Server;
let url: string;
const media = { clip: '', long: '', mp4: '', outside: '' };
const probed: Record<string, number> = {};
/** ffmpeg processes this file started (killed in cleanup). */
const children = new Set<ChildProcess>();

async function ffprobe(file: string): Promise<{ duration: number; streams: { codec_type: string; codec_name: string }[]; format: string }> {
  const { stdout } = await run('ffprobe', ['-v', 'error', '-show_entries', 'format=duration,format_name:stream=codec_type,codec_name', '-of', 'json', file]);
  const j = JSON.parse(stdout) as { format: { duration: string; format_name: string }; streams: { codec_type: string; codec_name: string }[] };
  return { duration: Number(j.format.duration), streams: j.streams, format: j.format.format_name };
}

/** `ffmpeg -v error -i file -f null -`: exit status and what it said. */
function decode(file: string): { status: number | null; stderr: string } {
  const r = spawnSync('ffmpeg', ['-v', 'error', '-nostdin', '-i', file, '-f', 'null', '-'], { encoding: 'utf8' });
  return { status: r.status, stderr: r.stderr };
}

const VP8_OPUS = ['-c:v', 'libvpx', '-b:v', '300k', '-deadline', 'realtime', '-cpu-used', '8', '-c:a', 'libopus', '-ac', '2'];
const H264_AAC = ['-c:v', 'libx264', '-preset', 'ultrafast', '-profile:v', 'baseline', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-ac', '2'];

/** A test clip (test pattern, 440 Hz tone), a keyframe every second. */
async function makeClip(file: string, seconds: number, codecs = VP8_OPUS): Promise<void> {
  await run('ffmpeg', ['-v', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=30', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
    '-t', String(seconds), '-g', '30', ...codecs, file]);
}

/** ffmpeg children of this process (the server runs in it), minus those this file started. */
function strayFfmpeg(): string[] {
  const r = spawnSync('ps', ['-o', 'pid=,comm=', '--ppid', String(process.pid)], { encoding: 'utf8' });
  const mine = new Set([...children].map((c) => c.pid));
  return r.stdout.split('\n').map((l) => l.trim()).filter((l) => /ffmpeg/.test(l) && !mine.has(Number(l.split(/\s+/)[0])));
}

async function killChild(c: ChildProcess): Promise<void> {
  if (c.exitCode === null && c.signalCode === null) {
    const gone = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await gone;
  }
  children.delete(c);
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'nkm-kurento-media-'));
  allowed = join(dir, 'kurento');
  mkdirSync(allowed);
  mkdirSync(join(dir, 'outside'));
  media.clip = join(allowed, 'clip.webm');
  media.long = join(allowed, 'long.webm');
  media.mp4 = join(allowed, 'clip.mp4');
  media.outside = join(dir, 'outside', 'clip.webm');
  await Promise.all([makeClip(media.clip, 8), makeClip(media.long, 30), makeClip(media.mp4, 20, H264_AAC)]);
  await run('cp', [media.clip, media.outside]);
  for (const f of [media.clip, media.long]) probed[f] = (await ffprobe(f)).duration;
  server = await startTestServer({
    recordings_dir: join(dir, 'recordings'),
    play_dirs: [join(dir, 'media')],
    // A client gone without releasing: its objects go after this grace time.
    kurento: { file_dirs: [allowed], session_grace_seconds: 1 },
  });
  url = `${server.url}kurento`;
});

after(async () => {
  for (const c of [...children]) await killChild(c);
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

/**
 * A kurento-client connection. kurento-jsonrpc keeps each answered request's id for
 * `duplicates_timeout` (20 s by default) on a timer it never unrefs, which would hold the test
 * process that long after the last request; half a second is plenty on loopback.
 */
async function newClient(): Promise<K> {
  return kurento(url, { failAfter: 1, duplicates_timeout: 500 });
}

/** Everything a kurento-client object emits of `type`, in order (subscribed at once). */
function collect(obj: K, type: string): K[] {
  const list: K[] = [];
  obj.on(type, (ev: K) => list.push(ev));
  return list;
}

/** Kurento's hello-world negotiation: a werift peer offers to a new WebRtcEndpoint, trickle both ways. */
async function webRtcPeer(pipeline: K): Promise<{ ep: K; peer: TestPeer; video: Buffer[] }> {
  const ep = await pipeline.create('WebRtcEndpoint');
  const peer = new TestPeer();
  const video = captureVideo(peer);
  ep.on('IceCandidateFound', (ev: K) => {
    void peer.addCandidate({ candidate: ev.candidate.candidate, sdpMid: ev.candidate.sdpMid, sdpMLineIndex: ev.candidate.sdpMLineIndex }).catch(() => undefined);
  });
  try {
    const offer = await peer.makeOffer();
    const answer: string = await ep.processOffer(offer.sdp);
    await peer.takeAnswer({ sdp: answer, sdp_type: 'webrtc' } as SdpObject);
    await ep.gatherCandidates();
    for (const c of offer.candidates) await ep.addIceCandidate(IceCandidate(c));
    await peer.waitConnected();
  } catch (err) {
    await peer.close();
    throw err;
  }
  return { ep, peer, video };
}

/**
 * The Kurento error code `create` fails with (0 when it succeeds; the object is then released).
 * With a callback of ours kurento-client does not console.trace the error.
 */
function refusal(pipeline: K, type: string, params: Record<string, unknown>): Promise<number> {
  return new Promise((resolve) => {
    pipeline.create(type, params, (err: { code?: number } | null, obj: K) => {
      if (!err) { obj.release(() => resolve(0)); return; }
      resolve(err.code ?? -1);
    });
  });
}

/** Records the VP8 payloads a peer receives (subscribe before negotiating). */
function captureVideo(peer: TestPeer): Buffer[] {
  const got: Buffer[] = [];
  peer.pc.onTrack.subscribe((track) => {
    if (track.kind !== 'video') return;
    track.onReceiveRtp.subscribe((rtp) => { if (got.length < 5000) got.push(Buffer.from(rtp.payload)); });
  });
  return got;
}

/** The size of the first VP8 keyframe among received payloads. */
function firstKeyframeSize(payloads: Buffer[]): { width: number; height: number } | undefined {
  for (const p of payloads) {
    const d = parseVp8Descriptor(p);
    if (!d?.start) continue;
    const size = vp8FrameSize(p.subarray(d.size));
    if (size) return size;
  }
  return undefined;
}

async function atBaseline(base: EngineCounters, what: string): Promise<void> {
  let now: EngineCounters | undefined;
  try {
    await eventually(async () => {
      now = await server.engine.counters();
      return now.elements === base.elements && now.endpoints === base.endpoints && now.udpSockets <= base.udpSockets;
    }, 10000, what);
  } catch {
    assert.deepEqual(now, base, `${what}: engine counters back to the baseline`);
  }
}

// ---- PlayerEndpoint -------------------------------------------------------------------------

describe('PlayerEndpoint → WebRtcEndpoint', () => {
  let client: K;
  before(async () => { client = await newClient(); });
  after(() => { client?.close(); });

  it('plays a local WebM to a werift peer: pause, resume, seek, video info, end of stream, state events', async () => {
    const base = await server.engine.counters();
    const pipeline = await client.create('MediaPipeline');
    let peer: TestPeer | undefined;
    try {
      const player = await pipeline.create('PlayerEndpoint', { uri: pathToFileURL(media.clip).href });
      const states = collect(player, 'UriEndpointStateChanged');
      const eos = collect(player, 'EndOfStream');
      const w = await webRtcPeer(pipeline);
      peer = w.peer;
      await player.connect(w.ep);
      assert.equal(await player.getState(), 'STOP');
      assert.equal(await player.getUri(), pathToFileURL(media.clip).href);

      await player.play();
      assert.equal(await player.getState(), 'START');
      await eventually(() => peer!.received.video > 20 && peer!.received.audio > 20, 8000, 'video and audio from the player');
      assert.deepEqual(firstKeyframeSize(w.video), { width: 320, height: 240 }, "the clip's VP8 reaches the peer, keyframe included");

      const info = await player.getVideoInfo();
      assert.equal(info.isSeekable, true, `videoInfo ${JSON.stringify(info)}`);
      assert.ok(Math.abs(Number(info.duration) - probed[media.clip]! * 1000) <= 150, `duration ${info.duration} vs ffprobe ${probed[media.clip]} s`);

      // Paused: nothing more arrives (after what was already on its way), the state says so.
      await player.pause();
      assert.equal(await player.getState(), 'PAUSE');
      await sleep(300);
      const held = peer.received.video + peer.received.audio;
      const heldPos = Number(await player.getPosition());
      await sleep(1200);
      assert.equal(peer.received.video + peer.received.audio, held, 'no packets while paused');
      assert.equal(Number(await player.getPosition()), heldPos, 'the position holds while paused');

      // Resumed: packets flow again from where it was.
      await player.play();
      assert.equal(await player.getState(), 'START');
      await eventually(() => peer!.received.video > held + 20 || peer!.received.audio > held + 20, 5000, 'packets after resuming');
      assert.ok(Number(await player.getPosition()) >= heldPos, 'no jump back after resuming');

      // Seek: the position follows (playing, and paused).
      await player.setPosition(5000);
      const pos = Number(await player.getPosition());
      assert.ok(pos >= 4800 && pos < 6000, `position ${pos} after setPosition(5000)`);
      await player.pause();
      await player.setPosition(2000);
      const pausedPos = Number(await player.getPosition());
      assert.ok(pausedPos >= 1900 && pausedPos <= 2100, `position ${pausedPos} after setPosition(2000) while paused`);
      await player.play();

      // Near the end: EndOfStream, and the state goes back to STOP.
      await player.setPosition(Math.max(0, Math.round(probed[media.clip]! * 1000) - 1500));
      await eventually(() => eos.length > 0, 8000, 'EndOfStream');
      await eventually(() => states.some((s) => s.state === 'STOP'), 2000, 'UriEndpointStateChanged STOP');
      assert.equal(await player.getState(), 'STOP');
      assert.deepEqual(states.map((s) => s.state), ['START', 'PAUSE', 'START', 'PAUSE', 'START', 'STOP'], 'UriEndpointStateChanged sequence');
    } finally {
      await pipeline.release();
      await peer?.close();
    }
    await atBaseline(base, 'player pipeline released');
  });

  it('refuses a player URI outside the allowed folders (40107) and a missing file inside them (40600)', async () => {
    const base = await server.engine.counters();
    const pipeline = await client.create('MediaPipeline');
    try {
      // An existing file, but outside kurento.file_dirs.
      assert.equal(await refusal(pipeline, 'PlayerEndpoint', { uri: pathToFileURL(media.outside).href }), 40107, 'a file outside');
      assert.equal(await refusal(pipeline, 'PlayerEndpoint', { uri: 'file:///etc/passwd' }), 40107, '/etc/passwd');
      // A way out by name (..) and by symlink.
      assert.equal(await refusal(pipeline, 'PlayerEndpoint', { uri: `file://${allowed}/../outside/clip.webm` }), 40107, 'a .. way out');
      const link = join(allowed, 'link.webm');
      symlinkSync(media.outside, link);
      try {
        assert.equal(await refusal(pipeline, 'PlayerEndpoint', { uri: pathToFileURL(link).href }), 40107, 'a symlink out');
      } finally {
        rmSync(link);
      }
      // Missing files: inside (40600), outside (still 40107: nothing tells what exists out there).
      assert.equal(await refusal(pipeline, 'PlayerEndpoint', { uri: pathToFileURL(join(allowed, 'missing.webm')).href }), 40600, 'a missing file inside');
      assert.equal(await refusal(pipeline, 'PlayerEndpoint', { uri: pathToFileURL(join(dir, 'outside', 'missing.webm')).href }), 40107, 'a missing file outside');
      assert.deepEqual(await pipeline.getChildren(), [], 'nothing was created');
    } finally {
      await pipeline.release();
    }
    await atBaseline(base, 'refused players left nothing');
  });
});

// ---- RecorderEndpoint -----------------------------------------------------------------------

describe('RecorderEndpoint of a WebRtcEndpoint', () => {
  let client: K;
  let pipeline: K;
  let base: EngineCounters;
  /** The endpoint whose werift peer sends real VP8/Opus (relayed from what a player sends another peer). */
  let sender: K;
  const peers: TestPeer[] = [];

  before(async () => {
    base = await server.engine.counters();
    client = await newClient();
    pipeline = await client.create('MediaPipeline');
    // Player → endpoint A → peer A; peer A relays what it gets out through peer B → endpoint B.
    const player = await pipeline.create('PlayerEndpoint', { uri: pathToFileURL(media.long).href });
    const a = await webRtcPeer(pipeline);
    peers.push(a.peer);
    const b = await webRtcPeer(pipeline);
    peers.push(b.peer);
    await player.connect(a.ep);
    relay(a.peer, b.peer);
    await player.play();
    sender = b.ep;
    await eventually(async () => (await sender.isMediaFlowingIn('VIDEO')) && (await sender.isMediaFlowingIn('AUDIO')), 8000, 'media flowing into the sending endpoint');
  });

  after(async () => {
    await pipeline?.release();
    for (const p of peers) await p.close();
    client?.close();
    await atBaseline(base, 'recorder pipeline released');
  });

  it('records with a pause: Recording, Paused, Recording, Stopped; the file decodes and leaves the pause out', async () => {
    const file = join(allowed, 'rec.webm');
    const rec = await pipeline.create('RecorderEndpoint', { uri: pathToFileURL(file).href, mediaProfile: 'WEBM' });
    const recording = collect(rec, 'Recording');
    const paused = collect(rec, 'Paused');
    const stopped = collect(rec, 'Stopped');
    const states = collect(rec, 'UriEndpointStateChanged');
    await sender.connect(rec);
    await rec.record();
    await eventually(() => recording.length === 1, 3000, 'Recording');
    assert.equal(await rec.getState(), 'START');
    await sleep(2000);
    await rec.pause();
    await eventually(() => paused.length === 1, 3000, 'Paused');
    assert.equal(await rec.getState(), 'PAUSE');
    await sleep(2000);
    await rec.record();
    await eventually(() => recording.length === 2, 3000, 'Recording again');
    await sleep(2000);
    await rec.stopAndWait();
    await eventually(() => stopped.length === 1, 3000, 'Stopped');
    assert.equal(await rec.getState(), 'STOP');
    assert.deepEqual(states.map((s) => s.state), ['START', 'PAUSE', 'START', 'STOP']);

    const d = decode(file);
    assert.equal(d.status, 0, `ffmpeg decodes ${file}: ${d.stderr}`);
    const probe = await ffprobe(file);
    assert.deepEqual(probe.streams.map((s) => s.codec_name).sort(), ['opus', 'vp8']);
    assert.ok(probe.duration > 3 && probe.duration < 5.2, `about 4 s recorded, the 2 s pause left out: ${probe.duration} s`);
    await rec.release();
  });

  it('WEBM_AUDIO_ONLY records only an audio stream', async () => {
    const file = join(allowed, 'rec-audio.webm');
    const rec = await pipeline.create('RecorderEndpoint', { uri: pathToFileURL(file).href, mediaProfile: 'WEBM_AUDIO_ONLY' });
    const stopped = collect(rec, 'Stopped');
    await sender.connect(rec);
    await rec.record();
    await sleep(2000);
    await rec.stopAndWait();
    await eventually(() => stopped.length === 1, 3000, 'Stopped');
    const d = decode(file);
    assert.equal(d.status, 0, `ffmpeg decodes ${file}: ${d.stderr}`);
    const probe = await ffprobe(file);
    assert.deepEqual(probe.streams.map((s) => `${s.codec_type}/${s.codec_name}`), ['audio/opus']);
    assert.ok(probe.duration > 1.2 && probe.duration < 3, `about 2 s: ${probe.duration} s`);
    await rec.release();
  });

  it('the MP4 profile records an MP4 file with video and audio', async () => {
    const file = join(allowed, 'rec.mp4');
    const rec = await pipeline.create('RecorderEndpoint', { uri: pathToFileURL(file).href, mediaProfile: 'MP4' });
    const stopped = collect(rec, 'Stopped');
    await sender.connect(rec);
    await rec.record();
    await sleep(3000);
    await rec.stopAndWait();
    await eventually(() => stopped.length === 1, 3000, 'Stopped');
    const d = decode(file);
    assert.equal(d.status, 0, `ffmpeg decodes ${file}: ${d.stderr}`);
    const probe = await ffprobe(file);
    assert.match(probe.format, /mp4/, `format ${probe.format}`);
    assert.deepEqual(probe.streams.map((s) => s.codec_type).sort(), ['audio', 'video']);
    assert.ok(probe.duration > 2 && probe.duration < 4, `about 3 s: ${probe.duration} s`);
    await rec.release();
  });

  // BUG (src/kurento/methods.ts, recorder.record): while a stop() is still finishing the file the
  // state is still START, so record() returns at once with success, yet nothing records: no
  // Recording event follows and the recorder ends in STOP.
  it('record() right after stop() is refused (40108: the file is final), not a silent no-op', async () => {
    const file = join(allowed, 'rec-restart.webm');
    const rec = await pipeline.create('RecorderEndpoint', { uri: pathToFileURL(file).href, mediaProfile: 'WEBM' });
    const recording = collect(rec, 'Recording');
    const stopped = collect(rec, 'Stopped');
    await sender.connect(rec);
    await rec.record();
    await eventually(() => recording.length === 1, 3000, 'Recording');
    await sleep(1000);
    await rec.stop(); // returns at once; Stopped follows once the file is final
    const code = await new Promise<number>((resolve) => rec.record((err: { code?: number } | null) => resolve(err ? err.code ?? -1 : 0)));
    await eventually(() => stopped.length >= 1, 3000, 'Stopped');
    assert.equal(code, 40108, 'a stopped recorder does not record again');
    assert.equal(recording.length, 1, 'no second Recording event');
    assert.equal(await rec.getState(), 'STOP');
    await rec.release();
  });

  it('refuses recorder URIs outside the allowed folders and unknown profiles (40107)', async () => {
    assert.equal(await refusal(pipeline, 'RecorderEndpoint', { uri: pathToFileURL(join(dir, 'outside', 'x.webm')).href }), 40107);
    assert.equal(await refusal(pipeline, 'RecorderEndpoint', { uri: pathToFileURL(join(allowed, 'x.webm')).href, mediaProfile: 'FLV' }), 40107);
    assert.equal(existsSync(join(dir, 'outside', 'x.webm')), false, 'nothing written outside');
    assert.equal(existsSync(join(allowed, 'x.webm')), false, 'nothing written for a refused profile');
  });
});

// ---- RtpEndpoint with ffmpeg ----------------------------------------------------------------

/** A free even port pair (taken and given back), for the ports ffmpeg's answer names. */
async function freePair(): Promise<number> {
  const p = await RtpPeer.open();
  const port = p.port;
  await p.close();
  return port;
}

interface Section { kind: string; port: number; pt: number; address: string }

/** Our offer's audio (Opus) and video (VP8) sections: where to send and with which payload type. */
function sectionsOf(sdp: string): { audio: Section; video: Section } {
  const s = sdpTransform.parse(sdp);
  const find = (kind: string, codec: string): Section => {
    const m = s.media.find((x) => x.type === kind);
    assert.ok(m, `a ${kind} section in our offer:\n${sdp}`);
    const r = m.rtp.find((x) => x.codec.toLowerCase() === codec);
    assert.ok(r, `${codec} in our ${kind} section:\n${sdp}`);
    return { kind, port: m.port, pt: r.payload, address: m.connection?.ip ?? s.connection?.ip ?? '127.0.0.1' };
  };
  return { audio: find('audio', 'opus'), video: find('video', 'vp8') };
}

/** Our offer answered for an ffmpeg that takes Opus and VP8 at our payload types. */
async function ffmpegAnswer(ours: { audio: Section; video: Section }): Promise<string> {
  const [aPort, vPort] = [await freePair(), await freePair()];
  return ['v=0', 'o=- 0 0 IN IP4 127.0.0.1', 's=ffmpeg', 'c=IN IP4 127.0.0.1', 't=0 0',
    `m=audio ${aPort} RTP/AVP ${ours.audio.pt}`, `a=rtpmap:${ours.audio.pt} opus/48000/2`,
    `m=video ${vPort} RTP/AVP ${ours.video.pt}`, `a=rtpmap:${ours.video.pt} VP8/90000`, ''].join('\r\n');
}

/** ffmpeg sending a VP8 test pattern and an Opus tone over plain RTP, in real time. */
function ffmpegSender(audio: Section, video: Section, seconds: number): ChildProcess {
  const p = spawn('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-nostdin',
    '-re', '-f', 'lavfi', '-i', `testsrc2=size=320x240:rate=30:duration=${seconds}`, '-re', '-f', 'lavfi', '-i', `sine=frequency=440:sample_rate=48000:duration=${seconds}`,
    '-map', '0:v', '-c:v', 'libvpx', '-b:v', '300k', '-g', '30', '-deadline', 'realtime', '-cpu-used', '8', '-payload_type', String(video.pt), '-f', 'rtp', `rtp://${video.address}:${video.port}`,
    '-map', '1:a', '-c:a', 'libopus', '-ac', '2', '-ar', '48000', '-payload_type', String(audio.pt), '-f', 'rtp', `rtp://${audio.address}:${audio.port}`,
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  p.stderr!.on('data', (d) => { stderr += String(d); });
  Object.defineProperty(p, 'errors', { get: () => stderr });
  children.add(p);
  return p;
}

describe('RtpEndpoint with ffmpeg as the plain RTP peer', () => {
  it("takes ffmpeg's own SDP as the offer, and forwards what ffmpeg then sends to the answer's ports to a werift peer", async () => {
    const base = await server.engine.counters();
    const client = await newClient();
    const pipeline = await client.create('MediaPipeline');
    let peer: TestPeer | undefined;
    let ff: ChildProcess | undefined;
    try {
      // ffmpeg describes the VP8 and Opus streams it sends (towards ports where it would receive).
      const sdpFile = join(dir, 'ffmpeg-offer.sdp');
      const [vPort, aPort] = [await freePair(), await freePair()];
      const gen = spawnSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-nostdin', '-y',
        '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=30:duration=0.2', '-f', 'lavfi', '-i', 'sine=sample_rate=48000:duration=0.2',
        '-map', '0:v', '-c:v', 'libvpx', '-deadline', 'realtime', '-f', 'rtp', `rtp://127.0.0.1:${vPort}`,
        '-map', '1:a', '-c:a', 'libopus', '-ac', '2', '-f', 'rtp', '-sdp_file', sdpFile, `rtp://127.0.0.1:${aPort}`], { encoding: 'utf8', timeout: 20000 });
      assert.equal(gen.status, 0, gen.stderr);
      const offer = readFileSync(sdpFile, 'utf8');
      const theirs = sectionsOf(offer);
      const rtp = await pipeline.create('RtpEndpoint');
      const answer: string = await rtp.processOffer(offer);
      const ours = sectionsOf(answer);
      assert.equal(ours.audio.pt, theirs.audio.pt, `the answer keeps the offer's Opus payload type:\n${answer}`);
      assert.equal(ours.video.pt, theirs.video.pt, `the answer keeps the offer's VP8 payload type:\n${answer}`);
      assert.equal(await rtp.getRemoteSessionDescriptor(), offer);
      assert.equal(await rtp.getLocalSessionDescriptor(), answer);

      const w = await webRtcPeer(pipeline);
      peer = w.peer;
      await rtp.connect(w.ep);
      ff = ffmpegSender(ours.audio, ours.video, 30);
      await eventually(() => peer!.received.video > 50 && peer!.received.audio > 50, 10000,
        `packets from ffmpeg at the werift peer (got ${JSON.stringify(peer.received)}; ffmpeg: ${(ff as unknown as { errors: string }).errors})`);
      assert.deepEqual(firstKeyframeSize(w.video), { width: 320, height: 240 }, "ffmpeg's VP8 keyframes reach the peer");
    } finally {
      if (ff) await killChild(ff);
      await pipeline.release();
      await peer?.close();
      client.close();
    }
    await atBaseline(base, 'RTP pipeline released');
  });

  it("forwards ffmpeg's VP8/Opus RTP to a werift peer through a WebRtcEndpoint", async () => {
    const base = await server.engine.counters();
    const client = await newClient();
    const pipeline = await client.create('MediaPipeline');
    let peer: TestPeer | undefined;
    let ff: ChildProcess | undefined;
    try {
      const rtp = await pipeline.create('RtpEndpoint');
      const offer: string = await rtp.generateOffer();
      const ours = sectionsOf(offer);
      // ffmpeg's answer: it takes Opus and VP8 at the payload types we offered.
      const answer = await ffmpegAnswer(ours);
      assert.equal(await rtp.processAnswer(answer), offer, 'processAnswer gives back our offer');
      assert.equal(await rtp.getRemoteSessionDescriptor(), answer);

      const w = await webRtcPeer(pipeline);
      peer = w.peer;
      await rtp.connect(w.ep);
      ff = ffmpegSender(ours.audio, ours.video, 30);
      await eventually(() => peer!.received.video > 50 && peer!.received.audio > 50, 10000,
        `packets from ffmpeg at the werift peer (got ${JSON.stringify(peer.received)}; ffmpeg: ${(ff as unknown as { errors: string }).errors})`);
      await eventually(async () => (await rtp.isMediaFlowingIn('VIDEO')) && (await rtp.isMediaFlowingIn('AUDIO')), 3000, 'the RtpEndpoint reports media flowing in');
      assert.equal(ff.exitCode, null, `ffmpeg still sending: ${(ff as unknown as { errors: string }).errors}`);
      // ffmpeg's own VP8 comes through: a keyframe of its picture size.
      assert.deepEqual(firstKeyframeSize(w.video), { width: 320, height: 240 }, "ffmpeg's VP8 keyframes reach the peer");
    } finally {
      if (ff) await killChild(ff);
      await pipeline.release();
      await peer?.close();
      client.close();
    }
    await atBaseline(base, 'RTP pipeline released');
  });
});

// ---- release --------------------------------------------------------------------------------

describe('release', () => {
  it('a recorder with stopOnEndOfStream fed by a player stops at the end of the file (Stopped), the file decodes', async () => {
    const base = await server.engine.counters();
    const client = await newClient();
    const pipeline = await client.create('MediaPipeline');
    try {
      const player = await pipeline.create('PlayerEndpoint', { uri: pathToFileURL(media.clip).href });
      const file = join(allowed, 'eos.webm');
      const rec = await pipeline.create('RecorderEndpoint', { uri: pathToFileURL(file).href, mediaProfile: 'WEBM', stopOnEndOfStream: true });
      const stopped = collect(rec, 'Stopped');
      const eos = collect(player, 'EndOfStream');
      await player.connect(rec);
      await rec.record();
      await player.play();
      await player.setPosition(Math.round(probed[media.clip]! * 1000) - 2500);
      await eventually(() => eos.length > 0, 8000, 'EndOfStream');
      await eventually(() => stopped.length > 0, 5000, 'Stopped after the end of stream');
      assert.equal(await rec.getState(), 'STOP');
      const d = decode(file);
      assert.equal(d.status, 0, `ffmpeg decodes ${file}: ${d.stderr}`);
      const probe = await ffprobe(file);
      assert.deepEqual(probe.streams.map((x) => x.codec_name).sort(), ['opus', 'vp8']);
      assert.ok(probe.duration > 1.5 && probe.duration < 4, `the last 2.5 s of the clip: ${probe.duration} s`);
    } finally {
      await pipeline.release();
      client.close();
    }
    await atBaseline(base, 'stopOnEndOfStream pipeline released');
  });

  it('a pipeline with every kind of element, media flowing, released: counters back to the baseline, no ffmpeg left', async () => {
    const base = await server.engine.counters();
    const client = await newClient();
    const pipeline = await client.create('MediaPipeline');
    let released = false;
    const peers: TestPeer[] = [];
    let ff: ChildProcess | undefined;
    try {
      // A WebM player through a PassThrough to peer A, and into a recorder.
      const player = await pipeline.create('PlayerEndpoint', { uri: pathToFileURL(media.long).href });
      const a = await webRtcPeer(pipeline);
      peers.push(a.peer);
      const pass = await pipeline.create('PassThrough');
      await player.connect(pass);
      await pass.connect(a.ep);
      const rec = await pipeline.create('RecorderEndpoint', { uri: pathToFileURL(join(allowed, 'released.webm')).href });
      await player.connect(rec);
      // ffmpeg over RTP to peer B.
      const rtp = await pipeline.create('RtpEndpoint');
      const ours = sectionsOf(await rtp.generateOffer());
      await rtp.processAnswer(await ffmpegAnswer(ours));
      const b = await webRtcPeer(pipeline);
      peers.push(b.peer);
      await rtp.connect(b.ep);
      // An H.264/AAC MP4 player to peer C (VP8/Opus only): transcoded by an ffmpeg of the server.
      const mp4 = await pipeline.create('PlayerEndpoint', { uri: pathToFileURL(media.mp4).href });
      const c = await webRtcPeer(pipeline);
      peers.push(c.peer);
      await mp4.connect(c.ep);

      ff = ffmpegSender(ours.audio, ours.video, 30);
      await player.play();
      await rec.record();
      await mp4.play();
      await eventually(() => a.peer.received.video > 20 && b.peer.received.video > 20 && c.peer.received.video > 20 && c.peer.received.audio > 20, 10000,
        `media at every peer (${JSON.stringify([a.peer.received, b.peer.received, c.peer.received])})`);
      assert.ok(runningTranscoders().length >= 1, 'the MP4 player runs an ffmpeg');
      assert.ok((await server.engine.counters()).elements > base.elements);
      // Released with everything running: the recorder mid-recording, the players playing.
      await pipeline.release();
      released = true;
      const d = decode(join(allowed, 'released.webm'));
      assert.equal(d.status, 0, `the recording cut by the release decodes: ${d.stderr}`);
    } finally {
      if (ff) await killChild(ff);
      if (!released) await pipeline.release();
      for (const p of peers) await p.close();
      client.close();
    }
    await atBaseline(base, 'everything released');
    await eventually(() => runningTranscoders().length === 0, 5000, 'player transcoders gone').catch(() => undefined);
    assert.deepEqual(runningTranscoders(), [], 'no player transcoder left');
    assert.deepEqual(strayFfmpeg(), [], 'no ffmpeg child of the server left');
  });

  it('a client gone without releasing: after the grace time its pipeline goes, ffmpeg included', async () => {
    const base = await server.engine.counters();
    const client = await newClient();
    const pipeline = await client.create('MediaPipeline');
    const mp4 = await pipeline.create('PlayerEndpoint', { uri: pathToFileURL(media.mp4).href });
    const w = await webRtcPeer(pipeline);
    try {
      await mp4.connect(w.ep);
      await mp4.play();
      await eventually(() => w.peer.received.video > 20, 10000, 'transcoded video at the peer');
      assert.ok(runningTranscoders().length >= 1, 'the MP4 player runs an ffmpeg');
      client.close();
      // The peer is still open (its sockets count): elements and endpoints only here.
      await eventually(async () => {
        const now = await server.engine.counters();
        return now.elements === base.elements && now.endpoints === base.endpoints;
      }, 8000, 'the pipeline released after the 1 s grace time');
    } finally {
      await w.peer.close();
    }
    await atBaseline(base, 'everything gone');
    await eventually(() => runningTranscoders().length === 0, 5000, 'player transcoders gone').catch(() => undefined);
    assert.deepEqual(runningTranscoders(), [], 'no player transcoder left');
    assert.deepEqual(strayFfmpeg(), [], 'no ffmpeg child of the server left');
  });
});
