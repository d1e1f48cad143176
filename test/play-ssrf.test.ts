// `play` is not a server-side request forgery tool: http(s) media is fetched only from allowed
// addresses (checked on what is connected to, on every redirect, by the relay too), playlists
// are never followed, clients never see ffmpeg's or Node's error text, and symlinks do not lead
// out of the media folders. Everything here is on loopback: 127.0.0.1 is the "internal" host,
// 127.0.0.2 another one that is never allowed.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createReadStream, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createTcpServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestServer, connectClient, eventually } from './helpers/server.js';
import { connectParked } from './helpers/flows.js';
import { EngineError } from '../src/engine/types.js';
import { runningTranscoders } from '../src/engine/local/files/player.js';
import type { Server } from '../src/main.js';
import { NkMediaError, type EventData, type NkMediaClient } from '../src/client/index.js';

let dir: string;
let media: string;
let outside: string;
/** Texts that would mean internal error text reached a client. */
const LEAKS = /ECONNREFUSED|ECONNRESET|ENOTFOUND|EHOSTUNREACH|tcp:\/\/|ffmpeg|Connection refused|errno|moov|Invalid data|\/tmp\//i;

/** A test HTTP server: files of `media` by name (with ranges), extra routes, and what it saw. */
interface TestHttp { port: number; requests: string[]; connections: number; close(): Promise<void> }
async function serve(host: string, routes: Record<string, (req: IncomingMessage, res: ServerResponse) => void> = {}): Promise<TestHttp> {
  const t: TestHttp = { port: 0, requests: [], connections: 0, close: async () => undefined };
  const server = createHttpServer((req, res) => {
    t.requests.push(req.url ?? '');
    const name = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname).replace(/^\/+/, '');
    const route = routes[name];
    if (route) { route(req, res); return; }
    sendFile(req, res, join(media, name));
  });
  server.on('connection', () => t.connections++);
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  t.port = (server.address() as AddressInfo).port;
  t.close = () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); });
  return t;
}

function sendFile(req: IncomingMessage, res: ServerResponse, file: string): void {
  let size: number;
  try { size = statSync(file).isFile() ? statSync(file).size : -1; } catch { size = -1; }
  if (size < 0) { res.writeHead(404).end(); return; }
  const m = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range ?? '');
  if (!m) { res.writeHead(200, { 'content-length': size, 'accept-ranges': 'bytes' }); createReadStream(file).pipe(res); return; }
  const start = m[1] ? Number(m[1]) : Math.max(0, size - Number(m[2]));
  const end = m[1] && m[2] ? Math.min(Number(m[2]), size - 1) : size - 1;
  if (start >= size) { res.writeHead(416, { 'content-range': `bytes */${size}` }).end(); return; }
  res.writeHead(206, { 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${size}`, 'accept-ranges': 'bytes' });
  createReadStream(file, { start, end }).pipe(res);
}

/** A TCP port that counts connections (where a followed playlist would lead). */
async function trapPort(host: string): Promise<{ port: number; connections: () => number; close(): Promise<void> }> {
  let n = 0;
  const server = createTcpServer((s) => { n++; s.destroy(); });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return { port: (server.address() as AddressInfo).port, connections: () => n, close: () => new Promise((r) => server.close(() => r())) };
}

async function failure(p: Promise<unknown>): Promise<{ code: number; error: string }> {
  try { await p; } catch (err) { assert.ok(err instanceof NkMediaError, String(err)); return { code: err.code, error: err.error }; }
  assert.fail('expected a failure');
}

const tcpServers = () => process.getActiveResourcesInfo().filter((r) => r === 'TCPServerWrap').length;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'nkm-ssrf-'));
  media = join(dir, 'media');
  outside = join(dir, 'outside');
  mkdirSync(media);
  mkdirSync(outside);
  const lavfi = (seconds: number) => ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=25', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000', '-t', String(seconds), '-g', '25'];
  execFileSync('ffmpeg', [...lavfi(4), '-c:v', 'libvpx', '-b:v', '300k', '-c:a', 'libopus', '-shortest', join(media, 'clip.webm')]);
  execFileSync('ffmpeg', [...lavfi(2), '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-shortest', join(media, 'clip.mp4')]);
  execFileSync('cp', [join(media, 'clip.webm'), join(outside, 'secret.webm')]);
  writeFileSync(join(media, 'garbage.webm'), Buffer.alloc(20000, 0x5a));
  symlinkSync(join(outside, 'secret.webm'), join(media, 'escape.webm'));
  symlinkSync(join(media, 'clip.webm'), join(media, 'alias.webm'));
});
after(() => {
  assert.deepEqual(runningTranscoders(), [], 'no ffmpeg left running');
  rmSync(dir, { recursive: true, force: true });
});

describe('play, default configuration (public addresses only)', () => {
  let server: Server;
  let alice: NkMediaClient;
  let internal: TestHttp;
  before(async () => {
    server = await startTestServer({ recordings_dir: join(dir, 'recordings'), play_dirs: [media] });
    alice = await connectClient(server, 'alice');
    internal = await serve('127.0.0.1');
  });
  after(async () => { await alice.close(); await server.close(); await internal.close(); });

  it('refuses inward URLs with invalid_uri, at create, set_type and player_action start, before connecting', async () => {
    const p = internal.port;
    const uris = [
      `http://127.0.0.1:${p}/clip.webm`, `https://127.0.0.1:${p}/clip.webm`, `http://localhost:${p}/clip.webm`,
      `http://[::1]:${p}/clip.webm`, `http://[::ffff:127.0.0.1]:${p}/clip.webm`, 'http://169.254.169.254/latest/meta-data/',
      `http://0.0.0.0:${p}/clip.webm`, `http://2130706433:${p}/clip.webm`, `http://0x7f000001:${p}/clip.webm`, `http://127.1:${p}/clip.webm`,
      'http://10.0.0.1/x.webm', 'http://192.168.1.1/x.webm', 'http://[fe80::1]/x.webm',
    ];
    // Node's URL turns the decimal and hex forms into 127.0.0.1: they are refused as that.
    assert.equal(new URL(`http://2130706433:${p}/`).hostname, '127.0.0.1');
    assert.equal(new URL(`http://0x7f000001:${p}/`).hostname, '127.0.0.1');
    for (const uri of uris) {
      const f = await failure(alice.createSession({ type: 'play', uri }));
      assert.equal(f.code, 100070, `${uri}: ${f.error}`);
      assert.match(f.error, /host not allowed \(not a public address\)/, uri);
      assert.doesNotMatch(f.error, LEAKS, uri);
    }
    const { id, peer } = await connectParked(alice, { type: 'echo' });
    try {
      const uri = `http://localhost:${p}/clip.webm`;
      assert.equal((await failure(alice.setType(id, 'play', { uri }))).code, 100070);
      assert.equal((await failure(alice.session('player_action', { session_id: id, action: 'start', uri }))).code, 100070);
      assert.equal((await alice.getInfo(id)).type, 'echo', 'the session is left as it was');
    } finally {
      await alice.destroySession(id);
      await peer.close();
    }
    assert.deepEqual(internal.requests, [], 'the internal server got no request');
    assert.equal(internal.connections, 0, 'nor a connection');
  });
});

describe('play with play_http_allow: ["127.0.0.1"]', () => {
  let server: Server;
  let alice: NkMediaClient;
  let allowed: TestHttp;
  let other: TestHttp;
  let trap: Awaited<ReturnType<typeof trapPort>>;
  const events: EventData[] = [];
  /** The relay must never be asked to serve a playlist's segments or to go elsewhere. */
  let switched = false;

  before(async () => {
    server = await startTestServer({ recordings_dir: join(dir, 'recordings'), play_dirs: [media], play_http_allow: ['127.0.0.1'] });
    alice = await connectClient(server, 'alice');
    alice.onEvent((e) => events.push(e));
    other = await serve('127.0.0.2');
    trap = await trapPort('127.0.0.1');
    const playlist = `#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nhttp://127.0.0.1:${trap.port}/seg0.ts\n#EXTINF:2.0,\nhttp://127.0.0.1:${trap.port}/seg1.ts\n#EXT-X-ENDLIST\n`;
    const redirect = (to: string) => (_req: IncomingMessage, res: ServerResponse) => { res.writeHead(302, { location: to }).end(); };
    allowed = await serve('127.0.0.1', {
      'to-other.webm': redirect(`http://127.0.0.2:${other.port}/clip.webm`),
      'to-ipv6-loopback.webm': redirect(`http://[::1]:${other.port}/clip.webm`),
      'to-self.webm': redirect('/clip.webm'),
      'to-file.webm': redirect(`file://${join(media, 'clip.webm')}`),
      'loop.webm': redirect('/loop.webm'),
      'hls.mp4': (_req, res) => { res.writeHead(200, { 'content-type': 'application/vnd.apple.mpegurl', 'content-length': Buffer.byteLength(playlist) }).end(playlist); },
      // Fine for the first look, then a redirect elsewhere: the relay must check again.
      'switch.webm': (req, res) => {
        if (!switched) { switched = true; sendFile(req, res, join(media, 'clip.webm')); return; }
        redirect(`http://127.0.0.2:${other.port}/clip.webm`)(req, res);
      },
    });
  });
  after(async () => { await alice.close(); await server.close(); await allowed.close(); await other.close(); await trap.close(); });

  it('plays a WebM over http from an allowed address, through a relay closed with the session', async () => {
    const servers = tcpServers();
    const { id, peer } = await connectParked(alice, { type: 'play', uri: `http://127.0.0.1:${allowed.port}/clip.webm`, loops: 1 });
    await eventually(() => peer.received.video > 20 && peer.received.audio > 20, 8000, 'media from the player');
    assert.equal(tcpServers(), servers + 1, 'one relay listening while playing');
    await alice.destroySession(id);
    await peer.close();
    await eventually(() => tcpServers() === servers, 3000, 'the relay closed');
  });

  it('transcodes an MP4 over http (ffmpeg reads the relay), and follows redirects to allowed hosts', async () => {
    const mp4 = await connectParked(alice, { type: 'play', uri: `http://127.0.0.1:${allowed.port}/clip.mp4`, loops: 1 });
    await eventually(() => mp4.peer.received.video > 20 && mp4.peer.received.audio > 20, 8000, 'transcoded media');
    await alice.destroySession(mp4.id);
    await mp4.peer.close();
    const redirected = await connectParked(alice, { type: 'play', uri: `http://127.0.0.1:${allowed.port}/to-self.webm`, loops: 1 });
    await eventually(() => redirected.peer.received.video > 10, 8000, 'media after a redirect');
    await alice.destroySession(redirected.id);
    await redirected.peer.close();
    assert.deepEqual(runningTranscoders(), []);
  });

  it('refuses a redirect to a host that is not allowed, at the first look and later at the relay', async () => {
    for (const name of ['to-other.webm', 'to-ipv6-loopback.webm']) {
      const f = await failure(alice.createSession({ type: 'play', uri: `http://127.0.0.1:${allowed.port}/${name}` }));
      assert.equal(f.code, 100070, f.error);
      assert.match(f.error, /redirect to a host that is not allowed/);
    }
    let f = await failure(alice.createSession({ type: 'play', uri: `http://127.0.0.1:${allowed.port}/to-file.webm` }));
    assert.equal(f.code, 100070, f.error);
    assert.match(f.error, /redirect to a URL that is not http\(s\)/);
    f = await failure(alice.createSession({ type: 'play', uri: `http://127.0.0.1:${allowed.port}/loop.webm` }));
    assert.match(f.error, /too many redirects/);
    // The first look is fine; the media reads that follow get the redirect, and refuse it.
    f = await failure(alice.createSession({ type: 'play', uri: `http://127.0.0.1:${allowed.port}/switch.webm` }));
    assert.equal(switched, true);
    assert.equal(f.code, 303001, f.error);
    assert.match(f.error, /redirect to a host that is not allowed/);
    assert.deepEqual(other.requests, [], 'the other host got no request');
    assert.equal(other.connections, 0, 'nor a connection');
  });

  it('does not follow an HLS playlist disguised as MP4', async () => {
    const f = await failure(alice.createSession({ type: 'play', uri: `http://127.0.0.1:${allowed.port}/hls.mp4` }));
    assert.equal(f.code, 303001, f.error);
    assert.match(f.error, /not a playable WebM\/MP4/);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(trap.connections(), 0, 'no connection to the segments\' port');
  });

  it('tells clients what went wrong in its own words only', async () => {
    const closed = await trapPort('127.0.0.1');
    await closed.close();
    const cases: [string, number, RegExp][] = [
      [`http://127.0.0.1:${closed.port}/clip.webm`, 100070, /cannot connect/],
      [`http://127.0.0.1:${allowed.port}/missing.webm`, 100070, /HTTP 404/],
      [`http://127.0.0.1:${allowed.port}/garbage.webm`, 303001, /not a playable WebM\/MP4/],
      ['http://bad host/x.webm', 100070, /not a valid http\(s\) URL/],
      [join(media, 'garbage.webm'), 303001, /not a playable WebM\/MP4/],
      [join(media, 'missing.webm'), 100070, /no such file/],
    ];
    for (const [uri, code, text] of cases) {
      const f = await failure(alice.createSession({ type: 'play', uri }));
      assert.equal(f.code, code, `${uri}: ${f.error}`);
      assert.match(f.error, text, uri);
      assert.doesNotMatch(f.error, LEAKS, uri);
    }
  });

  it('reports a failure during playback (the server went away) in its own words', async () => {
    const going = await serve('127.0.0.1');
    // An MP4 for a VP8/Opus client: every loop starts an ffmpeg that reads through the relay.
    const { id, peer } = await connectParked(alice, { type: 'play', uri: `http://127.0.0.1:${going.port}/clip.mp4`, loops: 0 });
    await eventually(() => peer.received.video > 5, 8000, 'media');
    await going.close();
    const ev = await eventually(() => events.find((e) => e.obj_id === id && e.type === 'player' && e.body?.error), 10000, 'a player error event');
    assert.equal(ev.body!.state, 'stopped');
    assert.equal(ev.body!.error, 'cannot connect');
    assert.doesNotMatch(JSON.stringify(ev.body), LEAKS);
    await alice.destroySession(id);
    await peer.close();
    assert.deepEqual(runningTranscoders(), []);
  });
});

describe('play of local files', () => {
  let server: Server;
  let alice: NkMediaClient;
  before(async () => {
    server = await startTestServer({ recordings_dir: join(dir, 'recordings'), play_dirs: [media] });
    alice = await connectClient(server, 'alice');
  });
  after(async () => { await alice.close(); await server.close(); });

  it('refuses a symlink in the media folder that leads out of it; one that stays in plays as its target', async () => {
    for (const uri of [join(media, 'escape.webm'), `file://${join(media, 'escape.webm')}`]) {
      const f = await failure(alice.createSession({ type: 'play', uri }));
      assert.equal(f.code, 100046, f.error);
      assert.doesNotMatch(f.error, /secret|outside/);
    }
    const { id, peer } = await connectParked(alice, { type: 'play', uri: join(media, 'alias.webm'), loops: 1 });
    assert.deepEqual((await alice.getInfo(id)).type_ext, { uri: join(media, 'clip.webm'), loops: 1 });
    await alice.destroySession(id);
    await peer.close();
  });

  it('the engine checks the real path again right before opening', async () => {
    const player = await server.engine.createPlayerEndpoint({ tag: 'test' });
    try {
      await assert.rejects(server.engine.playerStart(player, join(media, 'escape.webm'), 1),
        (e: unknown) => e instanceof EngineError && e.kind === 'invalid_uri' && /outside the media folders/.test(e.message));
    } finally {
      await server.engine.release(player);
    }
  });
});
