// Login modes (open, static users, JWT), the loopback rule for open auth, idle timeout, and
// the command line's configuration layers.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import { SignJWT, importPKCS8 } from 'jose';
import { WebSocket } from 'ws';
import { startTestServer } from './helpers/server.js';
import { hashPassword } from '../src/access/auth.js';
import { envLayer, fileLayer, mergeConfig, parseConfig } from '../src/config.js';
import { NkMediaClient, NkMediaError } from '../src/client/index.js';
import { workerCount } from '../src/main.js';

async function loginError(url: string, user: string, creds: { password?: string; token?: string }): Promise<number> {
  const c = await NkMediaClient.connect(url);
  try {
    await c.login(user, creds);
    return 0;
  } catch (err) {
    assert.ok(err instanceof NkMediaError);
    return err.code;
  } finally {
    await c.close();
  }
}

describe('static users', () => {
  it('accepts the right password, refuses a wrong one or an unknown user, and gives admin rights', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nkm-auth-'));
    const file = join(dir, 'users.json');
    writeFileSync(file, JSON.stringify([
      { user: 'alice', password_hash: await hashPassword('wonderland') },
      { user: 'root', password_hash: await hashPassword('toor'), admin: true },
    ]));
    const server = await startTestServer({ auth: { mode: 'static', users_file: file } });
    try {
      assert.equal(await loginError(server.url, 'alice', { password: 'wonderland' }), 0);
      assert.equal(await loginError(server.url, 'alice', { password: 'wrong' }), 100030);
      assert.equal(await loginError(server.url, 'mallory', { password: 'x' }), 100030);
      assert.equal(await loginError(server.url, 'alice', {}), 100045);
      const root = await NkMediaClient.connect(server.url);
      await root.login('root', { password: 'toor' });
      const alice = await NkMediaClient.connect(server.url);
      await alice.login('alice', { password: 'wonderland' });
      const s = await alice.createSession({ type: 'park' });
      assert.ok((await root.listSessions()).some((x) => x.session_id === s.session_id), 'admin sees alice\'s session');
      await root.close();
      await alice.close();
    } finally {
      await server.close();
      rmSync(dir, { recursive: true });
    }
  });
});

describe('JWT', () => {
  it('HMAC tokens: valid, wrong secret, expired, admin claim, user mismatch', async () => {
    const secret = 'a-test-secret-of-some-length';
    const server = await startTestServer({ auth: { mode: 'jwt', jwt_secret: secret } });
    const key = new TextEncoder().encode(secret);
    const sign = (sub: string, claims: Record<string, unknown> = {}, exp = '1h', k = key) =>
      new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setIssuedAt().setExpirationTime(exp).sign(k);
    try {
      assert.equal(await loginError(server.url, 'alice', { token: await sign('alice') }), 0);
      assert.equal(await loginError(server.url, 'alice', { token: await sign('alice', {}, '1h', new TextEncoder().encode('another-secret-entirely')) }), 100030);
      assert.equal(await loginError(server.url, 'alice', { token: await sign('alice', {}, '-1m') }), 100030);
      assert.equal(await loginError(server.url, 'bob', { token: await sign('alice') }), 100030);
      assert.equal(await loginError(server.url, 'alice', { token: 'not.a.jwt' }), 100030);
      assert.equal(await loginError(server.url, 'alice', {}), 100045);
      const boss = await NkMediaClient.connect(server.url);
      await boss.login('boss', { token: await sign('boss', { admin: true }) });
      const worker = await NkMediaClient.connect(server.url);
      await worker.login('worker', { token: await sign('worker') });
      const s = await worker.createSession({ type: 'park' });
      assert.ok((await boss.listSessions()).some((x) => x.session_id === s.session_id));
      await boss.close();
      await worker.close();
    } finally {
      await server.close();
    }
  });

  it('public-key (ES256) tokens', async () => {
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const server = await startTestServer({ auth: { mode: 'jwt', jwt_public_key: publicKey.export({ type: 'spki', format: 'pem' }).toString() } });
    try {
      const pk = await importPKCS8(privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), 'ES256');
      const token = await new SignJWT({}).setProtectedHeader({ alg: 'ES256' }).setSubject('alice').setExpirationTime('1h').sign(pk);
      assert.equal(await loginError(server.url, 'alice', { token }), 0);
    } finally {
      await server.close();
    }
  });
});

describe('open auth', () => {
  it('is refused on a non-loopback address', async () => {
    await assert.rejects(startTestServer({ host: '0.0.0.0' }), /refusing to listen on 0\.0\.0\.0 with open auth/);
  });
});

describe('idle timeout', () => {
  it('closes a connection that sends nothing and answers no ping', async () => {
    const server = await startTestServer({ limits: { api_idle_timeout: 5, ping_interval: 3600 } });
    try {
      const ws = new WebSocket(server.url);
      await new Promise((r) => ws.once('open', r));
      const code = await new Promise<number>((r) => ws.once('close', (c) => r(c)));
      assert.equal(code, 1001, 'closed by the idle timeout (1001 going away)');
    } finally {
      await server.close();
    }
  });

  it('keeps a silent client that answers pings', async () => {
    const server = await startTestServer({ limits: { api_idle_timeout: 5, ping_interval: 1 } });
    try {
      const ws = new WebSocket(server.url);
      await new Promise((r) => ws.once('open', r));
      let closed = false;
      ws.once('close', () => { closed = true; });
      await new Promise((r) => setTimeout(r, 6500));
      assert.equal(closed, false, 'pongs count as traffic');
      ws.close();
    } finally {
      await server.close();
    }
  });
});

describe('configuration', () => {
  it('layers defaults, file, environment and flags, and validates the result', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nkm-cfg-'));
    const file = join(dir, 'c.json');
    writeFileSync(file, JSON.stringify({ port: 9100, ice: { port_min: 40000, port_max: 40100 }, limits: { max_in_flight: 10 } }));
    const cfg = parseConfig(mergeConfig(fileLayer(file), envLayer({ NKMEDIA_PORT: '9200', NKMEDIA_STUN_SERVERS: 'stun:127.0.0.1:3478' }), { limits: { max_in_flight: 20 } }));
    assert.equal(cfg.port, 9200);
    assert.equal(cfg.host, '127.0.0.1');
    assert.deepEqual([cfg.ice.port_min, cfg.ice.port_max], [40000, 40100]);
    assert.deepEqual(cfg.ice.stun_servers, ['stun:127.0.0.1:3478']);
    assert.equal(cfg.limits.max_in_flight, 20);
    assert.equal(cfg.limits.max_frame_bytes, 1024 * 1024);
    assert.equal(cfg.limits.api_idle_timeout, 180);
    assert.deepEqual(parseConfig({}).ice.stun_servers, [], 'no STUN server by default');
    assert.throws(() => parseConfig({ ice: { port_min: 50000, port_max: 40000 } }), /port_min > port_max/);
    assert.throws(() => parseConfig({ auth: { mode: 'jwt' } }), /jwt mode needs/);
    assert.throws(() => parseConfig({ port: 'x' }), /port/);
    // TURN servers for clients: turn:/turns: URLs and a secret long enough to resist guessing.
    assert.throws(() => parseConfig({ ice: { client_turn: [{ urls: 'http://turn.example.com', secret: 'x'.repeat(16) }] } }), /turn: or turns: URL/);
    assert.throws(() => parseConfig({ ice: { client_turn: [{ urls: 'turn:turn.example.com:3478', secret: 'short' }] } }), /16 characters/);
    assert.deepEqual(parseConfig({ ice: { client_turn: [{ urls: ['turn:t.example.com:3478?transport=udp', 'turns:t.example.com:5349'], secret: 'x'.repeat(16) }] } }).ice.client_turn[0]!.urls,
      ['turn:t.example.com:3478?transport=udp', 'turns:t.example.com:5349']);
    rmSync(dir, { recursive: true });
  });

  it('media workers: auto by default, one per core, none on a single core', () => {
    assert.equal(parseConfig({}).media.workers, 'auto');
    assert.equal(parseConfig(envLayer({ NKMEDIA_WORKERS: '0' })).media.workers, 0);
    assert.equal(workerCount('auto', 8), 8);
    assert.equal(workerCount('auto', 2), 2);
    assert.equal(workerCount('auto', 1), 0, 'a worker on one core only adds a hop');
    assert.equal(workerCount(3, 1), 3, 'a number is taken as it is');
  });
});
