// Hardening of the API's front door and of ownership (issue #13), each attack reproduced on
// loopback and shown to hold: foreign Origin/Host in open mode, connections that never log in
// (or never send a byte, or stall a huge frame), connection caps per address and per user,
// password guessing, session and subscription caps, a call flood against one callee, a rung
// callee wiring itself to the caller, shutdown events, and wrong errors.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { startTestServer, connectClient, eventually } from './helpers/server.js';
import { TestPeer } from './helpers/peer.js';
import { hashPassword } from '../src/access/auth.js';
import { NkMediaClient, NkMediaError, type CallInvite, type EventData } from '../src/client/index.js';
import type { Server } from '../src/main.js';

/** The error code a promise rejects with (0 when it resolves). */
async function codeOf(p: Promise<unknown>): Promise<number> {
  try {
    await p;
    return 0;
  } catch (err) {
    if (err instanceof NkMediaError) return err.code;
    throw err;
  }
}

/** A WebSocket upgrade's outcome: 101, or the refusal's HTTP status. */
function upgrade(url: string, opts: { origin?: string; host?: string; localAddress?: string } = {}): Promise<{ status: number; ws?: WebSocket }> {
  return new Promise((resolve) => {
    const headers: Record<string, string> = {};
    if (opts.host) headers.host = opts.host;
    const ws = new WebSocket(url, { perMessageDeflate: false, headers, ...(opts.origin ? { origin: opts.origin } : {}), ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) });
    ws.once('open', () => resolve({ status: 101, ws }));
    ws.once('unexpected-response', (_req, res) => { res.resume(); resolve({ status: res.statusCode ?? 0 }); });
    ws.once('error', () => resolve({ status: -1 }));
  });
}

/** A client whose connection comes from another loopback address (Linux routes all of 127/8 locally). */
function fromAddress(localAddress: string): typeof WebSocket {
  return class extends WebSocket {
    constructor(url: string) { super(url, { localAddress }); }
  } as unknown as typeof WebSocket;
}

function httpGet(port: number, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1', () => {
      const h = { host: `127.0.0.1:${port}`, connection: 'close', ...headers };
      sock.write(`GET ${path} HTTP/1.1\r\n${Object.entries(h).map(([k, v]) => `${k}: ${v}`).join('\r\n')}\r\n\r\n`);
    });
    let data = '';
    sock.on('data', (d) => { data += d.toString(); });
    sock.on('error', reject);
    sock.on('close', () => resolve({ status: Number(/^HTTP\/1\.1 (\d+)/.exec(data)?.[1] ?? 0), body: data.split('\r\n\r\n').slice(1).join('\r\n\r\n') }));
  });
}

describe('open mode: only this machine and this server\'s own pages', () => {
  let server: Server;
  before(async () => { server = await startTestServer({ http: { allowed_origins: ['https://app.example.com'] } }); });
  after(async () => { await server.close(); });

  it('refuses a WebSocket upgrade with a foreign Origin (a page from anywhere else), takes its own and none', async () => {
    const port = server.port;
    // The attack: a web page elsewhere opens ws://127.0.0.1:PORT and logs in as admin.
    assert.equal((await upgrade(server.url, { origin: 'https://evil.example' })).status, 403);
    assert.equal((await upgrade(server.url, { origin: `http://127.0.0.1:${port + 1}` })).status, 403, 'another port is another origin');
    assert.equal((await upgrade(server.url, { origin: 'null' })).status, 403);
    for (const origin of [undefined, `http://127.0.0.1:${port}`, 'https://app.example.com']) {
      const r = await upgrade(server.url, { origin });
      assert.equal(r.status, 101, `origin ${origin}`);
      r.ws!.close();
    }
  });

  it('refuses a foreign Host (DNS rebinding) on upgrades and on HTTP, recordings included', async () => {
    assert.equal((await upgrade(server.url, { host: `rebind.example:${server.port}` })).status, 403);
    assert.equal((await httpGet(server.port, '/recordings?user=bob', { host: `rebind.example:${server.port}`, authorization: `Basic ${Buffer.from('admin:x').toString('base64')}` })).status, 403);
    assert.equal((await httpGet(server.port, '/demo/', { host: 'rebind.example' })).status, 403);
    assert.equal((await httpGet(server.port, '/recordings', { host: `localhost:${server.port}`, authorization: `Basic ${Buffer.from('bob:x').toString('base64')}` })).status, 200);
  });

  it('refuses to start on a name that is not loopback once resolved', async () => {
    // The old check read the name: `127.example.invalid` started with "127." and passed.
    await assert.rejects(startTestServer({ host: '127.example.invalid' }), /refusing to listen/);
  });
});

describe('connections that never log in', () => {
  let server: Server;
  before(async () => { server = await startTestServer({ limits: { login_timeout: 1 } }); });
  after(async () => { await server.close(); });

  it('a connection that does not log in in time is closed (1008 login timeout); one that logs in stays', async () => {
    const silent = new WebSocket(server.url);
    const closed = new Promise<{ code: number; reason: string }>((r) => silent.on('close', (code, reason) => r({ code, reason: reason.toString() })));
    const good = await connectClient(server, 'alice');
    const { code, reason } = await closed;
    assert.equal(code, 1008);
    assert.equal(reason, 'login timeout');
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(await good.listSessions(), []);
    await good.close();
  });

  it('a TCP connection that sends nothing is dropped', async () => {
    const sock = net.connect(server.port, '127.0.0.1');
    sock.on('error', () => undefined);
    await new Promise<void>((r) => sock.once('close', () => r()));
    assert.ok(sock.destroyed);
  });

  it('a huge frame started before login is cut at 64 KiB (1009), not buffered up to the frame limit', async () => {
    const s = new WebSocket(server.url);
    await new Promise((r) => s.once('open', r));
    const closed = new Promise<number>((r) => s.on('close', (code) => r(code)));
    s.on('error', () => undefined);
    s.send(JSON.stringify({ class: 'core', subclass: 'user', cmd: 'login', tid: 1, data: { user: 'x'.repeat(100 * 1024) } }));
    assert.equal(await closed, 1009);
  });
});

describe('connection caps', () => {
  let server: Server;
  before(async () => { server = await startTestServer({ limits: { max_connections_per_address: 4, max_connections_per_user: 2 } }); });
  after(async () => { await server.close(); });

  it('past the per-address cap new connections get 503 with Retry-After; other addresses still connect', async () => {
    const held: net.Socket[] = [];
    for (let i = 0; i < 4; i++) {
      const sock = net.connect(server.port, '127.0.0.1');
      sock.on('error', () => undefined);
      await new Promise((r) => sock.once('connect', r));
      held.push(sock);
    }
    await eventually(() => server.connections() >= 0, 1000);
    const refused = await httpGet(server.port, '/health');
    assert.equal(refused.status, 503);
    assert.match(refused.body, /too many connections/);
    const other = await NkMediaClient.connect(server.url, { WebSocket: fromAddress('127.0.0.2') as never });
    await other.login('carol');
    assert.deepEqual(await other.listSessions(), []);
    await other.close();
    for (const s of held) s.destroy();
    await eventually(async () => (await httpGet(server.port, '/health')).status === 200, 5000, 'the address served again');
  });

  it('past the per-user cap a login gets too_many_connections', async () => {
    const a = await connectClient(server, 'dave');
    const b = await connectClient(server, 'dave');
    const c = await NkMediaClient.connect(server.url);
    assert.equal(await codeOf(c.login('dave')), 100051);
    await b.close();
    await eventually(async () => (await codeOf(c.login('dave'))) === 0, 5000, 'a freed slot');
    await Promise.all([a.close(), c.close()]);
  });
});

describe('password guessing', () => {
  let server: Server;
  let dir: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'nkm-guess-'));
    const file = join(dir, 'users.json');
    writeFileSync(file, JSON.stringify([
      { user: 'alice', password_hash: await hashPassword('wonderland') },
      { user: 'bob', password_hash: await hashPassword('builder') },
    ]));
    server = await startTestServer({ auth: { mode: 'static', users_file: file }, limits: { login_failures_per_address: 5, login_failures_per_user: 8 } });
  });
  after(async () => { await server.close(); rmSync(dir, { recursive: true }); });

  it('an address that keeps failing is refused without hashing; other addresses log in; a user name is protected from everywhere', async () => {
    // The attack: many connections, many guesses in flight each.
    const guessers = await Promise.all([1, 2, 3, 4].map(() => NkMediaClient.connect(server.url)));
    const codes = await Promise.all(guessers.flatMap((g) => [1, 2, 3, 4, 5, 6].map((i) => codeOf(g.login('alice', { password: `guess${i}` })))));
    assert.ok(codes.every((c) => c === 100030 || c === 100053), `only unauthorized or too_many_logins: ${codes}`);
    assert.ok(codes.filter((c) => c === 100030).length <= 5, `at most 5 guesses were checked from this address: ${codes}`);
    assert.ok(codes.includes(100053));
    // Even the right password is refused from that address now...
    const again = await NkMediaClient.connect(server.url);
    assert.equal(await codeOf(again.login('alice', { password: 'wonderland' })), 100053);
    // ...while alice from another address logs in at once.
    const alice = await NkMediaClient.connect(server.url, { WebSocket: fromAddress('127.0.0.3') as never });
    assert.equal(await codeOf(alice.login('alice', { password: 'wonderland' })), 0);
    // Guesses against bob spread over addresses meet the per-user limit.
    let refusedForUser = 0;
    for (let i = 0; i < 10; i++) {
      const c = await NkMediaClient.connect(server.url, { WebSocket: fromAddress(`127.0.1.${i + 1}`) as never });
      const code = await codeOf(c.login('bob', { password: 'wrong' }));
      if (code === 100053) refusedForUser++;
      await c.close();
    }
    assert.ok(refusedForUser >= 2, `bob's name is rate limited across addresses (${refusedForUser})`);
    await Promise.all([...guessers, again, alice].map((c) => c.close()));
  });
});

describe('session and subscription caps', () => {
  let server: Server;
  before(async () => {
    server = await startTestServer({ limits: { max_sessions: 6, max_sessions_per_user: 4, max_subscriptions_per_connection: 5 } });
  });
  after(async () => { await server.close(); });

  it('per user and server-wide: too_many_sessions, and room again once sessions go', async () => {
    const a = await connectClient(server, 'alice');
    const b = await connectClient(server, 'bob');
    const mine = [];
    for (let i = 0; i < 4; i++) mine.push((await a.createSession({ type: 'park' })).session_id);
    assert.equal(await codeOf(a.createSession({ type: 'park' })), 100050, 'alice is at her 4');
    await b.createSession({ type: 'park' });
    await b.createSession({ type: 'park' });
    assert.equal(await codeOf(b.createSession({ type: 'park' })), 100050, 'the server is at its 6');
    await a.destroySession(mine[0]!);
    await b.createSession({ type: 'park' });
    assert.equal(server.services.sessions.size, 6);
    await Promise.all([a.close(), b.close()]);
    await eventually(() => server.services.sessions.size === 0);
  });

  it('subscriptions per connection are capped (too_many_subscriptions)', async () => {
    const c = await connectClient(server, 'carol');
    // Login gives two; three more fit.
    for (let i = 0; i < 3; i++) await c.subscribe({ class: 'media', subclass: 'session', obj_id: `x${i}` });
    assert.equal(await codeOf(c.subscribe({ class: 'media', subclass: 'session', obj_id: 'x9' })), 100052);
    await c.unsubscribe({ class: 'media', subclass: 'session', obj_id: 'x0' });
    await c.subscribe({ class: 'media', subclass: 'session', obj_id: 'x9' });
    await c.close();
  });
});

describe('ICE ports: one user holds at most half of a configured range', () => {
  it('the rest stays for others', async () => {
    // Loopback only: one port per WebRTC session.
    const server = await startTestServer({ ice: { port_min: 47100, port_max: 47107, use_interfaces: false } });
    try {
      const a = await connectClient(server, 'alice');
      let made = 0;
      for (;;) {
        const code = await codeOf(a.createSession({ type: 'park', wait_reply: true }));
        if (code !== 0) { assert.equal(code, 100050); break; }
        made++;
      }
      assert.equal(made, 4);
      const b = await connectClient(server, 'bob');
      const r = await b.createSession({ type: 'park', wait_reply: true });
      assert.ok(r.offer);
      await Promise.all([a.close(), b.close()]);
    } finally {
      await server.close();
    }
  });
});

describe('calls', () => {
  let server: Server;
  before(async () => { server = await startTestServer({ limits: { max_sessions_per_connection: 4 } }); });
  after(async () => { await server.close(); });

  it('a rung callee cannot wire itself to the caller, nor answer its leg, before accepting', async () => {
    const caller = await connectClient(server, 'alice');
    const callerEvents: EventData[] = [];
    caller.onEvent((e) => callerEvents.push(e));
    const callee = await connectClient(server, 'bob');
    const invites: CallInvite[] = [];
    callee.onInvite((inv) => { invites.push(inv); return {}; });
    const callerPeer = new TestPeer();
    const calleePeer = new TestPeer();
    try {
      const offer = await callerPeer.makeOffer();
      const call = await caller.createCall({ callee: 'bob', offer: { sdp: offer.sdp, trickle_ice: true }, wait_reply: true });
      const invite = await eventually(() => invites[0]);
      const info = await callee.getCallInfo(call.call_id);
      assert.equal(info.session_id, call.session_id, 'the callee can read the caller\'s session id');
      // The attack: bridge the unanswered leg to the caller's session, then answer the leg.
      assert.equal(await codeOf(callee.setType(invite.session_id, 'bridge', { peer_id: call.session_id })), 100040);
      const answer = await calleePeer.answerOffer(invite.offer);
      assert.equal(await codeOf(callee.setAnswer(invite.session_id, { sdp: answer.sdp, trickle_ice: true })), 100040);
      assert.equal(await codeOf(callee.createSession({ type: 'bridge', peer_id: call.session_id })), 100071);
      // The caller's session is untouched and said nothing.
      assert.equal((await caller.getInfo(call.session_id)).type, 'park');
      assert.ok(!callerEvents.some((e) => e.subclass === 'session' && e.type === 'type'), 'no type change on the caller\'s session');
      assert.equal(calleePeer.received.audio, 0);
      // The callee may still look at its leg and decline.
      assert.equal((await callee.getInfo(invite.session_id)).type, 'park');
      await callee.rejectCall(call.call_id);
    } finally {
      await Promise.all([callerPeer.close(), calleePeer.close(), caller.close(), callee.close()]);
    }
  });

  it('legs count against the caller, not the callee: a call flood leaves the callee its own sessions', async () => {
    const victim = await connectClient(server, 'victim');
    victim.onInvite(() => ({})); // rings, never answers
    const attackers = await Promise.all([1, 2, 3].map(() => connectClient(server, 'mallory')));
    const peers: TestPeer[] = [];
    try {
      let placed = 0;
      for (const a of attackers) {
        for (let i = 0; i < 2; i++) {
          const p = new TestPeer();
          peers.push(p);
          const offer = await p.makeOffer();
          await a.createCall({ callee: 'victim', offer: { sdp: offer.sdp }, ring_time: 60 });
          placed++;
        }
      }
      assert.equal(placed, 6);
      await eventually(() => server.services.calls.size === 6 && server.services.sessions.size === 12);
      // Each attacker connection holds 2 caller sessions + 2 legs: its limit of 4 is reached.
      const p = new TestPeer();
      peers.push(p);
      assert.equal(await codeOf(attackers[0]!.createCall({ callee: 'victim', offer: { sdp: (await p.makeOffer()).sdp } })), 100050);
      // The victim, rung six times, still creates its own sessions up to its limit.
      for (let i = 0; i < 4; i++) await victim.createSession({ type: 'park' });
    } finally {
      await Promise.all([...peers.map((p) => p.close()), ...attackers.map((a) => a.close()), victim.close()]);
    }
    await eventually(() => server.services.sessions.size === 0 && server.services.calls.size === 0);
  });
});

describe('shutdown and idle clients', () => {
  it('on shutdown each creator hears destroyed (api_stop) before the connection closes', async () => {
    const server = await startTestServer();
    const c = await connectClient(server, 'alice');
    const events: EventData[] = [];
    c.onEvent((e) => events.push(e));
    const s = await c.createSession({ type: 'park' });
    const closed = new Promise<void>((r) => c.onClose(() => r()));
    await server.close();
    await closed;
    const destroyed = events.find((e) => e.type === 'destroyed' && e.obj_id === s.session_id);
    assert.ok(destroyed, 'destroyed arrived');
    assert.equal(destroyed.body?.code, 100013);
  });

  it('a frozen client\'s sessions are stopped when its idle timeout fires, not a close handshake later', async () => {
    const server = await startTestServer({ limits: { api_idle_timeout: 5, ping_interval: 60 } });
    try {
      const ws = new WebSocket(server.url, { autoPong: false } as never);
      await new Promise((r) => ws.once('open', r));
      const replies: { tid: number; result: string }[] = [];
      ws.on('message', (d) => replies.push(JSON.parse(d.toString())));
      ws.send(JSON.stringify({ class: 'core', subclass: 'user', cmd: 'login', tid: 1, data: { user: 'frozen' } }));
      await eventually(() => replies.some((r) => r.tid === 1 && r.result === 'ok'));
      ws.send(JSON.stringify({ class: 'media', subclass: 'session', cmd: 'create', tid: 2, data: { type: 'park' } }));
      await eventually(() => server.services.sessions.size === 1);
      // Frozen: reads nothing more, answers nothing (not even the close frame).
      ws.pause();
      await eventually(() => server.services.sessions.size === 0, 9000, 'the session stopped at the idle timeout');
      ws.terminate();
    } finally {
      await server.close();
    }
  });
});

describe('wrong errors', () => {
  let server: Server;
  before(async () => { server = await startTestServer(); });
  after(async () => { await server.close(); });

  it('a bad %-escape in a recording name is 400, not 500', async () => {
    const r = await httpGet(server.port, '/recordings/%E0%A4%A.webm', { authorization: `Basic ${Buffer.from('alice:x').toString('base64')}` });
    assert.equal(r.status, 400);
  });

  it('a recording name with NUL or over 255 bytes is invalid_value, not a file system error', async () => {
    const c = await connectClient(server, 'alice');
    const { session_id } = await c.createSession({ type: 'park' });
    for (const uri of ['bad\u0000name.webm', `${'x'.repeat(300)}.webm`]) {
      const err = await c.session('recorder_action', { session_id, action: 'start', uri }).then(() => undefined, (e: unknown) => e);
      assert.ok(err instanceof NkMediaError);
      assert.equal(err.code, 100046);
      assert.doesNotMatch(err.message, /ENAMETOOLONG|ERR_|errno|null bytes/i);
    }
    await c.close();
  });

  it('user names with control characters are refused at login', async () => {
    const c = await NkMediaClient.connect(server.url);
    assert.equal(await codeOf(c.login('\u0000sip')), 100046);
    assert.equal(await codeOf(c.login('a\nb')), 100046);
    await c.close();
  });
});
