// play and recording through the API: play sessions with player_action, recorder_action on a
// session fed with real VP8/Opus (relayed from a play session by the test client), player and
// recorder events, confined paths, and recordings over HTTP for their owner only.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { decodeProblems } from './helpers/decode-check.js';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startTestServer, connectClient, eventually } from './helpers/server.js';
import { connectParked, relay } from './helpers/flows.js';
import { TestPeer } from './helpers/peer.js';
import type { Server } from '../src/main.js';
import { NkMediaError, type EventData, type NkMediaClient } from '../src/client/index.js';

let server: Server;
let alice: NkMediaClient;
let dir: string;
let media: string;
const events: EventData[] = [];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'nkm-play-'));
  media = join(dir, 'media');
  execFileSync('mkdir', ['-p', media]);
  // 8 s of VP8 test pattern and Opus tone.
  execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=25', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
    '-t', '8', '-c:v', 'libvpx', '-b:v', '300k', '-g', '25', '-c:a', 'libopus', '-shortest', join(media, 'clip.webm')]);
  server = await startTestServer({ recordings_dir: join(dir, 'recordings'), play_dirs: [media] });
  alice = await connectClient(server, 'alice');
  alice.onEvent((e) => events.push(e));
});
after(async () => { await alice.close(); await server.close(); rmSync(dir, { recursive: true, force: true }); });

async function code(p: Promise<unknown>): Promise<number> {
  try { await p; } catch (err) { assert.ok(err instanceof NkMediaError, String(err)); return err.code; }
  return 0;
}

function probeDuration(path: string): number {
  return Number(execFileSync('ffprobe', ['-v', 'error', '-show_entries', 'format=duration', '-of', 'csv=p=0', path]).toString().trim());
}

describe('play', () => {
  it('plays a file: packets arrive, player_action controls it, events report it', async () => {
    const clip = join(media, 'clip.webm');
    const { id, peer } = await connectParked(alice, { type: 'play', uri: clip, loops: 1 });
    await eventually(() => peer.received.video > 20 && peer.received.audio > 20, 8000, 'media from the player');
    assert.deepEqual((await alice.getInfo(id)).type_ext, { uri: clip, loops: 1 });
    const info = await alice.session('player_action', { session_id: id, action: 'get_info' });
    assert.ok(Math.abs(info.duration - probeDuration(clip) * 1000) < 100, `duration ${info.duration}`);
    assert.equal(info.is_seekable, true);
    await alice.session('player_action', { session_id: id, action: 'pause' });
    await eventually(() => events.some((e) => e.obj_id === id && e.type === 'player' && e.body?.state === 'paused'), 3000, 'paused event');
    await new Promise((r) => setTimeout(r, 200));
    const v = peer.received.video;
    await new Promise((r) => setTimeout(r, 500));
    assert.ok(peer.received.video - v <= 1, 'paused: no video');
    await alice.session('player_action', { session_id: id, action: 'resume' });
    await eventually(() => peer.received.video > v + 10, 5000, 'resumed');
    await alice.session('player_action', { session_id: id, action: 'set_position', position: 5000 });
    const { position } = await alice.session('player_action', { session_id: id, action: 'get_position' });
    assert.ok(position >= 4800 && position < 6500, `position ${position}`);
    assert.equal(await code(alice.session('player_action', { session_id: id, action: 'set_position' })), 100045);
    assert.equal(await code(alice.session('player_action', { session_id: id, action: 'dance' })), 100043);
    assert.deepEqual((await alice.session('player_action', { session_id: id })).actions.includes('set_position'), true);
    // loops: 1 → the play ends with end of stream.
    await eventually(() => events.some((e) => e.obj_id === id && e.type === 'player' && e.body?.state === 'eos'), 8000, 'end of stream');
    await alice.destroySession(id);
    await peer.close();
  });

  it('refuses URIs it cannot open or may not open, leaving the session as it was', async () => {
    assert.equal(await code(alice.createSession({ type: 'play', uri: join(media, 'missing.webm') })), 100070);
    assert.equal(await code(alice.createSession({ type: 'play', uri: '/etc/passwd' })), 100046);
    assert.equal(await code(alice.createSession({ type: 'play', uri: 'ftp://example.invalid/x.webm' })), 100046);
    assert.equal(await code(alice.createSession({ type: 'play' })), 100045);
    const { id, peer } = await connectParked(alice, { type: 'echo' });
    assert.equal(await code(alice.setType(id, 'play', { uri: join(media, 'missing.webm') })), 100070);
    assert.equal((await alice.getInfo(id)).type, 'echo');
    assert.equal(await code(alice.session('player_action', { session_id: id, action: 'pause' })), 300031);
    await alice.destroySession(id);
    await peer.close();
  });

  it('mute_audio / mute_video choose which of the file\'s media reach the client (at create and by update_media)', async () => {
    const clip = join(media, 'clip.webm');
    const { id, peer } = await connectParked(alice, { type: 'play', uri: clip, loops: 0, mute_video: true });
    try {
      await eventually(() => peer.received.audio > 30, 8000, 'audio from the player');
      assert.equal(peer.received.video, 0, 'mute_video at create: no video');
      await alice.updateMedia(id, { mute_video: false });
      await eventually(() => peer.received.video > 20, 5000, 'video once unmuted');
      await alice.updateMedia(id, { mute_audio: true });
      await new Promise((r) => setTimeout(r, 300));
      const a = peer.received.audio;
      const v = peer.received.video;
      await new Promise((r) => setTimeout(r, 700));
      assert.ok(peer.received.audio - a <= 1, `mute_audio: no audio (${peer.received.audio - a} packets)`);
      assert.ok(peer.received.video > v + 5, 'video goes on while audio is muted');
      await alice.updateMedia(id, { mute_audio: false });
      await eventually(() => peer.received.audio > a + 20, 5000, 'audio once unmuted');
      // A new player (player_action start) keeps the session's mutes.
      await alice.updateMedia(id, { mute_video: true });
      await alice.session('player_action', { session_id: id, action: 'start', uri: clip });
      await new Promise((r) => setTimeout(r, 300));
      const v2 = peer.received.video;
      const a2 = peer.received.audio;
      await new Promise((r) => setTimeout(r, 700));
      assert.ok(peer.received.video - v2 <= 1, `mute_video kept across a restart (${peer.received.video - v2} packets)`);
      assert.ok(peer.received.audio > a2 + 10, 'audio from the new player');
    } finally {
      await alice.destroySession(id);
      await peer.close();
    }
  });
});

describe('recording', () => {
  it('records what the client sends, pauses, finalises on stop; owner-only HTTP access', async () => {
    // The test client relays what a play session sends it into a second session: real VP8/Opus.
    const source = await connectParked(alice, { type: 'play', uri: join(media, 'clip.webm'), loops: 0 });
    const { id, peer } = await connectParked(alice, { type: 'park' });
    relay(source.peer, peer);
    const start = await alice.session('recorder_action', { session_id: id, action: 'start' });
    assert.match(start.uri, new RegExp(`^file://.*/${id}_p0000\\.webm$`));
    assert.equal(start.mediaProfile, 'WEBM');
    await eventually(() => events.some((e) => e.obj_id === id && e.type === 'recorder' && e.body?.state === 'recording'), 5000, 'recording event');
    await new Promise((r) => setTimeout(r, 2500));
    await alice.session('recorder_action', { session_id: id, action: 'pause' });
    await new Promise((r) => setTimeout(r, 1500));
    await alice.session('recorder_action', { session_id: id, action: 'resume' });
    await new Promise((r) => setTimeout(r, 2500));
    const stop = await alice.session('recorder_action', { session_id: id, action: 'stop' });
    const path = fileURLToPath(start.uri);
    assert.ok(existsSync(path));
    const duration = probeDuration(path);
    assert.ok(duration > 4.2 && duration < 5.8, `about 5 s recorded (paused time left out): ${duration}`);
    assert.ok(Math.abs(stop.duration / 1000 - duration) < 0.5);
    assert.equal(await code(alice.session('recorder_action', { session_id: id, action: 'pause' })), 300030);
    assert.deepEqual(decodeProblems(path), { status: 0, stderr: '' }, 'the recording decodes');

    // A second recording, ended by the session's end: still a finalised file.
    const second = await alice.session('recorder_action', { session_id: id, action: 'start' });
    assert.match(second.uri, /_p0001\.webm$/);
    await new Promise((r) => setTimeout(r, 2000));
    await alice.destroySession(id);
    await eventually(() => events.some((e) => e.obj_id === id && e.type === 'destroyed'), 5000, 'destroyed');
    assert.ok(probeDuration(fileURLToPath(second.uri)) > 1);

    // Paths are confined to the user's folder.
    const other = await connectParked(alice, { type: 'park' });
    assert.equal(await code(alice.session('recorder_action', { session_id: other.id, action: 'start', uri: '/tmp/evil.webm' })), 100046);
    assert.equal(await code(alice.session('recorder_action', { session_id: other.id, action: 'start', uri: '../escape.webm' })), 100046);
    await alice.destroySession(other.id);
    await other.peer.close();

    // HTTP: alice lists and downloads her recordings; bob sees none; no credentials: 401.
    const base = server.url.replace(/^ws/, 'http');
    const basic = (u: string) => ({ authorization: `Basic ${Buffer.from(`${u}:x`).toString('base64')}` });
    const list = await (await fetch(`${base}recordings`, { headers: basic('alice') })).json() as { name: string; url: string; size: number }[];
    assert.deepEqual(list.map((f) => f.name).sort(), [`${id}_p0000.webm`, `${id}_p0001.webm`]);
    const dl = await fetch(`${base}${list[0]!.url.slice(1)}`, { headers: basic('alice') });
    assert.equal(dl.status, 200);
    assert.equal((await dl.arrayBuffer()).byteLength, list[0]!.size);
    const ranged = await fetch(`${base}${list[0]!.url.slice(1)}`, { headers: { ...basic('alice'), range: 'bytes=0-99' } });
    assert.equal(ranged.status, 206);
    assert.equal((await ranged.arrayBuffer()).byteLength, 100);
    assert.deepEqual(await (await fetch(`${base}recordings`, { headers: basic('bob') })).json(), []);
    assert.equal((await fetch(`${base}${list[0]!.url.slice(1)}`, { headers: basic('bob') })).status, 404);
    assert.equal((await fetch(`${base}recordings`)).status, 401);
    await alice.destroySession(source.id);
    await source.peer.close();
    await peer.close();
  });
});

