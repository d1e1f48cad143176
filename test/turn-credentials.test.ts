// TURN credentials for clients (the TURN REST convention, coturn's use-auth-secret): the login
// reply and `core/user/get_ice_servers` hand each user short-lived credentials, and a real coturn
// started here with the shared secret accepts them: a client restricted to relayed candidates
// gets its media echoed through the relay. Credentials made with another secret are refused.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { randomFillSync } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestServer, connectClient, eventually } from './helpers/server.js';
import { connectParked } from './helpers/flows.js';
import { TestPeer } from './helpers/peer.js';
import { bind } from './helpers/rtp-peer.js';
import type { Server } from '../src/main.js';
import type { IceServer, NkMediaClient } from '../src/client/index.js';
import { turnCredentials } from '../src/access/turn-credentials.js';

const haveCoturn = spawnSync('turnserver', ['--version']).error === undefined;
const SECRET = 'a-secret-shared-with-coturn-0123';

let coturn: ChildProcess | undefined;
let dir = '';
let turnUrl = '';
const servers: Server[] = [];
const clients: NkMediaClient[] = [];

async function freeUdpPort(): Promise<number> {
  const s = await bind('127.0.0.1', 0);
  const port = s.address().port;
  s.close();
  return port;
}

/** Whether a STUN binding request to 127.0.0.1:port gets an answer within 200 ms. */
async function stunAnswers(port: number): Promise<boolean> {
  const s = await bind('127.0.0.1', 0);
  try {
    const req = Buffer.alloc(20);
    req.writeUInt16BE(0x0001, 0);
    req.writeUInt32BE(0x2112a442, 4);
    randomFillSync(req, 8, 12);
    const answered = new Promise<boolean>((resolve) => {
      s.once('message', () => resolve(true));
      setTimeout(() => resolve(false), 200);
    });
    s.send(req, port, '127.0.0.1');
    return await answered;
  } finally {
    s.close();
  }
}

/** A werift client that may use relayed candidates only, through the given TURN servers. */
const relayOnlyPeer = (iceServers: IceServer[], gatherSeconds = 5) => new TestPeer({
  iceServers: iceServers.map((s) => ({ urls: String(s.urls), username: s.username, credential: s.credential })),
  iceTransportPolicy: 'relay',
  iceStunGatherTimeout: gatherSeconds,
});

before(async () => {
  if (!haveCoturn) return;
  dir = mkdtempSync(join(tmpdir(), 'nkm-turn-'));
  const port = await freeUdpPort();
  const relay = 40000 + Math.floor(Math.random() * 20000);
  turnUrl = `turn:127.0.0.1:${port}?transport=udp`;
  let out = '';
  coturn = spawn('turnserver', ['-n', '--listening-ip=127.0.0.1', '--relay-ip=127.0.0.1', `--listening-port=${port}`,
    `--min-port=${relay}`, `--max-port=${relay + 50}`, '--use-auth-secret', `--static-auth-secret=${SECRET}`, '--realm=nkmedia.test',
    '--no-tls', '--no-dtls', '--no-cli', '--allow-loopback-peers', '--fingerprint', `--pidfile=${join(dir, 'turn.pid')}`,
    `--userdb=${join(dir, 'turndb')}`, '--log-file=stdout', '--simple-log'], { stdio: ['ignore', 'pipe', 'pipe'] });
  coturn.stdout!.on('data', (d) => { out += String(d); });
  coturn.stderr!.on('data', (d) => { out += String(d); });
  await eventually(() => stunAnswers(port), 10000, 'coturn answering STUN').catch((err: Error) => { throw new Error(`${err.message}: ${out.slice(-2000)}`); });
});

after(async () => {
  for (const c of clients.splice(0)) await c.close();
  for (const s of servers.splice(0)) await s.close();
  coturn?.kill('SIGKILL');
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function serverWith(secret: string | undefined): Promise<Server> {
  const s = await startTestServer({ ice: { client_turn: secret ? [{ urls: turnUrl, secret }] : [], client_turn_ttl_seconds: 600 } });
  servers.push(s);
  return s;
}

describe('TURN credentials for clients', { skip: haveCoturn ? false : 'coturn (turnserver) is not installed' }, () => {
  it('the login reply carries credentials that coturn accepts: media is echoed through the relay', async () => {
    const server = await serverWith(SECRET);
    const before = Math.floor(Date.now() / 1000);
    const alice = await connectClient(server, 'alice');
    clients.push(alice);
    assert.equal(alice.iceServers.length, 1);
    const [ice] = alice.iceServers;
    assert.equal(ice!.urls, turnUrl);
    const [expiry, user] = ice!.username!.split(':');
    assert.equal(user, 'alice');
    assert.ok(Number(expiry) >= before + 600 && Number(expiry) <= before + 602, `expiry ${expiry}`);
    assert.equal(alice.iceServersExpire, Number(expiry));

    const peer = relayOnlyPeer(alice.iceServers);
    const { id } = await connectParked(alice, { type: 'echo' }, (sdp) => sdp, peer);
    // Every candidate we offered was a relayed one, and the pair in use goes through coturn.
    const nominated = (peer.pc.iceTransports[0]!.connection as unknown as { nominated?: { localCandidate: { type: string } } }).nominated;
    assert.equal(nominated?.localCandidate.type, 'relay');
    peer.startSending({ videoPps: 50 });
    await eventually(() => peer.from('video', peer.tag).length > 20 && peer.from('audio', peer.tag).length > 20, 8000, 'our media echoed through the relay');
    peer.stopSending();
    await alice.destroySession(id);
    await peer.close();
  });

  it('get_ice_servers gives fresh credentials; credentials made with another secret are refused by coturn', async () => {
    const good = await serverWith(SECRET);
    const bob = await connectClient(good, 'bob');
    clients.push(bob);
    const first = bob.iceServersExpire!;
    await new Promise((r) => setTimeout(r, 1100));
    const fresh = await bob.refreshIceServers();
    assert.equal(fresh.length, 1);
    assert.ok(bob.iceServersExpire! > first, 'a later expiry');

    const wrong = await serverWith('not-the-secret-coturn-knows-0123');
    const carol = await connectClient(wrong, 'carol');
    clients.push(carol);
    const peer = relayOnlyPeer(carol.iceServers, 2);
    const offer = await peer.makeOffer();
    assert.equal(offer.candidates.length, 0, `coturn gave no relay to refused credentials: ${offer.candidates.map((c) => c.candidate).join(' | ')}`);
    await peer.close();
  });

  it('the server\'s own TURN (ice.turn_servers, here with REST credentials): coturn relays for it, and the relayed candidate follows the answer as an event', async () => {
    const creds = turnCredentials([{ urls: turnUrl, secret: SECRET }], 'nkmedia-server', 600).ice_servers[0]!;
    const server = await startTestServer({ ice: { turn_servers: [{ urls: turnUrl, username: creds.username, credential: creds.credential! }], gather_timeout_ms: 5000 } });
    servers.push(server);
    const erin = await connectClient(server, 'erin');
    clients.push(erin);
    const events: { type: string; candidate?: string; at: number }[] = [];
    erin.onEvent((e) => events.push({ type: String(e.type), candidate: e.body?.candidate as string | undefined, at: performance.now() }));
    const peer = new TestPeer();
    const offer = await peer.makeOffer();
    const reply = await erin.createSession({ type: 'park', offer: { sdp: offer.sdp, trickle_ice: true }, wait_reply: true });
    const replyAt = performance.now();
    const relay = await eventually(() => events.find((e) => e.type === 'candidate' && / typ relay /.test(e.candidate ?? '')), 8000, 'a relayed candidate event from coturn');
    assert.ok(relay.at > replyAt);
    await eventually(() => events.some((e) => e.type === 'candidate_end'), 8000, 'candidate_end');
    await erin.destroySession(reply.session_id);
    await peer.close();
  });

  it('without client_turn the login reply has no ice_servers and get_ice_servers returns none', async () => {
    const server = await serverWith(undefined);
    const dave = await connectClient(server, 'dave');
    clients.push(dave);
    assert.deepEqual(dave.iceServers, []);
    assert.equal(dave.iceServersExpire, undefined);
    assert.deepEqual(await dave.refreshIceServers(), []);
  });
});
