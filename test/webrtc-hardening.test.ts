// What a WebRTC peer (or the descriptor limit) can do to the server, on loopback: data channel
// messages over the max-message-size either way, an exception in our own werift callbacks, the
// ICE port range used up, EMFILE in a server process with a lowered descriptor limit (ICE and
// mDNS sockets), STUN requests with bad credentials. The server must live through each, say what
// went wrong, and keep serving.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { Message } from 'werift';
import { startTestServer, connectClient, eventually } from './helpers/server.js';
import { TestPeer } from './helpers/peer.js';
import { connectParked } from './helpers/flows.js';
import type { Server } from '../src/main.js';
import { NkMediaClient, type CandidateInit, type EventData } from '../src/client/index.js';
import { EngineError, type EngineEvent } from '../src/engine/types.js';
import { WebRtcEndpoint } from '../src/engine/local/graph/webrtc-endpoint.js';
import { stunRequestsDropped } from '../src/engine/local/accel/werift-patches.js';

/** Anything that would have ended a real server process (the test runner would swallow it). */
const crashes: unknown[] = [];
process.on('uncaughtException', (e) => crashes.push(e));
process.on('unhandledRejection', (e) => crashes.push(e));
const assertNoCrash = (): void => assert.deepEqual(crashes.map(String), [], 'nothing reached the event loop uncaught');

/** The API error of a create that found no UDP port (media_error today; out_of_resources is its intended term). */
const NO_PORT_CODES = new Set([303001, 100054]);
const NO_PORT = /no UDP port\/descriptor available for ICE/;


/** The session's WebRTC endpoint inside the in-process engine. */
function endpointOf(server: Server, sessionId: string): WebRtcEndpoint {
  const elements = (server.engine as unknown as { elements: Map<string, unknown> }).elements;
  for (const e of elements.values()) if (e instanceof WebRtcEndpoint && e.tag.startsWith(`${sessionId}#`)) return e;
  throw new Error(`no endpoint for ${sessionId}`);
}

/** Sends `message` and waits for it to come back (an echo session). */
async function echoes(peer: TestPeer, message: string): Promise<void> {
  peer.send(message);
  await eventually(() => peer.messages.includes(message), 5000, `echo of ${message.slice(0, 20)}`);
}

describe('data channel messages over the max-message-size', () => {
  let server: Server;
  let client: NkMediaClient;
  const engineEvents: EngineEvent[] = [];
  before(async () => {
    server = await startTestServer();
    client = await connectClient(server);
    server.engine.onEvent((ev) => engineEvents.push(ev));
  });
  after(async () => { await client.close(); await server.close(); });

  it('are dropped both ways, reported once, and nothing else is disturbed', async () => {
    // The client says it takes messages of at most 1000 bytes; another session is left as is.
    const small = await connectParked(client, { type: 'echo' }, (sdp) => {
      assert.match(sdp, /a=max-message-size:\d+/);
      return sdp.replace(/a=max-message-size:\d+/, 'a=max-message-size:1000');
    });
    const other = await connectParked(client, { type: 'echo' });
    const clientEvents: EventData[] = [];
    const off = client.onEvent((e) => clientEvents.push(e));
    try {
      for (const p of [small.peer, other.peer]) await eventually(() => p.channel?.readyState === 'open', 5000, 'data channel open');
      await echoes(small.peer, 'before');
      await echoes(small.peer, 'y'.repeat(1000)); // exactly the client's limit: sent

      // 2,000 bytes: we take it (our limit is 64 KiB) but the echo back is over the client's 1000.
      small.peer.send('x'.repeat(2000));
      await echoes(small.peer, 'after 2000');
      assert.ok(!small.peer.messages.some((m) => m.length === 2000), 'the oversized echo was not sent');
      const ep = endpointOf(server, small.id);
      assert.equal(ep.dataDropped.out, 1);
      const outErr = engineEvents.filter((e) => e.type === 'error' && e.tag.startsWith(`${small.id}#`) && e.code === 'data_too_large');
      assert.equal(outErr.length, 1, 'the session is told');
      assert.match((outErr[0] as { message: string }).message, /2000 bytes .*max-message-size \(1000 bytes\)/);
      // The client hears it as an `info` event of its session.
      const info = await eventually(() => clientEvents.find((e) => e.obj_id === small.id && e.type === 'info' && e.body?.code === 'data_too_large'), 5000, 'info event');
      assert.equal(info.body?.info, 'error');

      // Another oversized echo: dropped and counted, not reported again.
      small.peer.send('z'.repeat(3000));
      await echoes(small.peer, 'after 3000');
      assert.equal(ep.dataDropped.out, 2);
      assert.equal(engineEvents.filter((e) => e.type === 'error' && e.tag.startsWith(`${small.id}#`) && e.code === 'data_too_large').length, 1, 'reported once');

      // 65,537 bytes against our own 65,536 (the client's werift would refuse to send it: lift its check).
      const otherChannel = other.peer.channel!;
      otherChannel.sctp.remoteMaxMessageSize = 0;
      other.peer.send('w'.repeat(65_537));
      await echoes(other.peer, 'after 65537');
      assert.ok(!other.peer.messages.some((m) => m.length === 65_537), 'the oversized message went nowhere');
      assert.equal(endpointOf(server, other.id).dataDropped.in, 1);
      const inErr = engineEvents.filter((e) => e.type === 'error' && e.tag.startsWith(`${other.id}#`) && e.code === 'data_too_large');
      assert.equal(inErr.length, 1);
      assert.match((inErr[0] as { message: string }).message, /65537 bytes from the client dropped: larger than our max-message-size \(65536 bytes\)/);

      // Both sessions still carry media and data.
      small.peer.startSending();
      await eventually(() => small.peer.from('audio', small.peer.tag).length >= 5, 5000, 'echoed audio');
      await echoes(small.peer, 'still here');
      await echoes(other.peer, 'me too');
      assert.ok(!engineEvents.some((e) => e.type === 'error' && e.code === 'element_failed'), 'no callback failed');
      assertNoCrash();
    } finally {
      off();
      await client.destroySession(small.id).catch(() => undefined);
      await client.destroySession(other.id).catch(() => undefined);
      await small.peer.close();
      await other.peer.close();
    }
  });

  it('an exception in our werift callbacks is reported on the element, stops that session only and goes no further', async () => {
    const { id, peer } = await connectParked(client, { type: 'echo' });
    const other = await connectParked(client, { type: 'echo' });
    const events: EventData[] = [];
    const off = client.onEvent((e) => events.push(e));
    try {
      await eventually(() => peer.channel?.readyState === 'open', 5000, 'data channel open');
      await eventually(() => other.peer.channel?.readyState === 'open', 5000, 'data channel open');
      const ep = endpointOf(server, id);
      // A sink whose accept throws stands in for a bug in our code on the receive path.
      const broken = { accept: () => { throw new Error('boom'); } };
      (ep.sinks.data as Set<unknown>).add(broken);
      peer.send('into the broken sink');
      const err = await eventually(() => engineEvents.find((e) => e.type === 'error' && e.tag.startsWith(`${id}#`) && e.code === 'element_failed'), 5000, 'element_failed event');
      assert.match((err as { message: string }).message, /incoming data channel message: boom/);
      (ep.sinks.data as Set<unknown>).delete(broken);
      // The failed session stops (its state is not to be trusted); nothing else does.
      const destroyed = await eventually(() => events.find((e) => e.type === 'destroyed' && e.obj_id === id), 5000, 'destroyed');
      assert.equal(destroyed.body?.code, 300004);
      await echoes(other.peer, 'the other session goes on');
      assertNoCrash();
    } finally {
      off();
      await client.destroySession(other.id).catch(() => undefined);
      await Promise.all([peer.close(), other.peer.close()]);
    }
  });
});

describe('ICE port range used up', () => {
  let server: Server;
  const clients: NkMediaClient[] = [];
  // Three ports somewhere others are unlikely to be; loopback only: one socket per endpoint.
  const min = 42_000 + Math.floor(Math.random() * 9_000) * 2;
  const max = min + 2;
  before(async () => {
    server = await startTestServer({ ice: { port_min: min, port_max: max, use_interfaces: false } });
    // One user per session: a user may hold only part of a port range.
    for (let i = 0; i <= max - min + 2; i++) clients.push(await connectClient(server, `user${i}`));
  });
  after(async () => { for (const c of clients) await c.close(); await server.close(); });

  /** A server-offered session of `client`: its id and the port of its host candidate. */
  async function create(client: NkMediaClient): Promise<{ id: string; port: number; client: NkMediaClient }> {
    const found: EventData[] = [];
    const off = client.onEvent((e) => { if (e.type === 'candidate') found.push(e); });
    try {
      const reply = await client.createSession({ type: 'park', wait_reply: true });
      const c = await eventually(() => found.find((e) => e.obj_id === reply.session_id && e.body?.candidate), 5000, 'a candidate');
      const port = Number(/ (\d+) typ host/.exec(String(c.body!.candidate))![1]);
      return { id: reply.session_id, port, client };
    } finally {
      off();
    }
  }

  it('the next create fails clearly; after a destroy one works again', async (t) => {
    const live: { id: string; port: number; client: NkMediaClient }[] = [];
    let failure: unknown;
    let next = 0;
    while (failure === undefined && next < clients.length - 1) {
      try { live.push(await create(clients[next++]!)); } catch (err) { failure = err; }
    }
    assert.ok(live.length >= 1, 'at least one port of the range was free');
    for (const s of live) assert.ok(s.port >= min && s.port <= max, `port ${s.port} in range`);
    assert.ok(failure, 'a create failed once the range was used up');
    const e = failure as { code: number; error: string };
    assert.ok(NO_PORT_CODES.has(e.code), `error code ${e.code}: ${e.error}`);
    assert.match(e.error, NO_PORT);
    assert.match(e.error, new RegExp(`ICE port range ${min}-${max} exhausted`));
    t.diagnostic(`create refused: ${e.code} ${e.error}`);
    // Nothing was left bound by a failed create.
    const sockets = (await server.engine.counters()).udpSockets;
    await assert.rejects(create(clients[next]!), (err: { error: string }) => NO_PORT.test(err.error));
    assert.equal((await server.engine.counters()).udpSockets, sockets);

    const freed = live.shift()!;
    await freed.client.destroySession(freed.id);
    const again = await create(freed.client);
    assert.ok(again.port >= min && again.port <= max);
    live.push(again);
    for (const s of live) await s.client.destroySession(s.id);
    assertNoCrash();
  });

  it('the engine rejects the offer and the answer alike, with what was bound released', async () => {
    const engine = server.engine;
    const held: string[] = [];
    let failure: unknown;
    for (let i = 0; i <= max - min + 1 && failure === undefined; i++) {
      const ep = await engine.createWebRtcEndpoint({ tag: `range-test#${i}` });
      held.push(ep);
      await engine.generateOffer(ep, { audio: true, video: false, data: false }).catch((err: unknown) => { failure = err; });
    }
    assert.ok(failure instanceof EngineError, String(failure));
    assert.equal(failure.kind, 'no_resources');
    assert.match(failure.message, new RegExp(`^no UDP port/descriptor available for ICE \\(ICE port range ${min}-${max} exhausted`));
    // The answering side too: a client offer on a new endpoint.
    const peer = new TestPeer();
    const offer = await peer.makeOffer();
    const answerer = await engine.createWebRtcEndpoint({ tag: 'range-test#answer' });
    held.push(answerer);
    await assert.rejects(engine.processOffer(answerer, offer.sdp), (err: unknown) => err instanceof EngineError && err.kind === 'no_resources' && NO_PORT.test(err.message));
    await peer.close();
    for (const id of held) await engine.release(id);
    assertNoCrash();
  });
});

describe('EMFILE (a server process at its descriptor limit)', () => {
  let child: ChildProcess | undefined;
  let client: NkMediaClient | undefined;
  after(async () => {
    await client?.close().catch(() => undefined);
    child?.kill('SIGKILL');
  });

  it('survives, says why the create failed, and serves again when descriptors are freed', async (t) => {
    const main = fileURLToPath(new URL('../src/main.ts', import.meta.url));
    const script = `
      import { startServer } from ${JSON.stringify(main)};
      const s = await startServer({ port: 0, log_level: 'silent', media: { workers: 0 }, ice: { use_interfaces: false, include_loopback: true } });
      console.log(JSON.stringify({ url: s.url }));`;
    const proc = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: fileURLToPath(new URL('..', import.meta.url)), stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = proc;
    let stderr = '';
    proc.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
    const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
    const ready = await new Promise<{ url: string }>((resolve, reject) => {
      const lines = createInterface({ input: proc.stdout! });
      lines.once('line', (l) => resolve(JSON.parse(l) as { url: string }));
      void exited.then((code) => reject(new Error(`server exited (${code}): ${stderr}`)));
    });
    const c = client = await NkMediaClient.connect(ready.url);
    await c.login('alice');
    const fds = (): string[] => readdirSync(`/proc/${proc.pid}/fd`);
    const alive = (): void => assert.equal(proc.exitCode, null, `the server process lives (stderr: ${stderr})`);

    // A first session loads whatever is loaded lazily; a second one shows what an endpoint costs.
    const first = (await c.createSession({ type: 'park', wait_reply: true })).session_id;
    // A session answering a client's offer, for a client candidate later.
    const offerer = new TestPeer();
    const offered = (await c.createSession({ type: 'park', offer: { sdp: (await offerer.makeOffer()).sdp, trickle_ice: true }, wait_reply: true })).session_id;
    await offerer.close();
    const before = fds().length;
    const second = (await c.createSession({ type: 'park', wait_reply: true })).session_id;
    const perEndpoint = fds().length - before;
    assert.ok(perEndpoint >= 1, `descriptors per WebRTC endpoint: ${perEndpoint}`);
    t.diagnostic(`descriptors per WebRTC endpoint (loopback only): ${perEndpoint}`);

    // Room for exactly two more descriptors: the lowest limit with two free numbers below it
    // (descriptors above it stay open; only new ones are refused).
    const open = new Set(fds().map(Number));
    let limit = 0;
    for (let free = 0; free < 2; limit++) if (!open.has(limit)) free++;
    execFileSync('/usr/bin/prlimit', [`--pid=${proc.pid}`, `--nofile=${limit}:${limit}`]);
    const live = [first, second];
    let failure: { code: number; error: string } | undefined;
    for (let i = 0; i < 40 && !failure; i++) {
      try { live.push((await c.createSession({ type: 'park', wait_reply: true })).session_id); } catch (err) { failure = err as { code: number; error: string }; }
    }
    assert.ok(failure, 'a create failed at the descriptor limit');
    assert.ok(NO_PORT_CODES.has(failure.code), `error code ${failure.code}: ${failure.error}`);
    assert.match(failure.error, NO_PORT);
    assert.match(failure.error, /EMFILE/);
    t.diagnostic(`create refused: ${failure.code} ${failure.error}`);
    alive();
    assert.equal((await c.getInfo(first)).type, 'park', 'the API still answers');
    // A browser's candidate hides its address behind an mDNS name: resolving it needs a socket
    // too (werift's multicast-dns on port 5353), which cannot be had either. (Its lookup waits
    // for an answer: the request is not awaited.)
    void c.setCandidate(offered, { candidate: 'candidate:1 1 udp 2122260223 4f0c5b2e-1d2a-4e8b-9c51-0a1b2c3d4e5f.local 50000 typ host', sdpMid: '0', sdpMLineIndex: 0 }).catch(() => undefined);
    assert.equal((await c.getInfo(first)).type, 'park');
    assert.equal((await c.getInfo(offered)).type, 'park');
    alive();

    // Freed descriptors are used again.
    await c.destroySession(live.pop()!);
    await c.destroySession(live.pop()!);
    live.push((await c.createSession({ type: 'park', wait_reply: true })).session_id);
    alive();
    for (const id of [...live, offered]) await c.destroySession(id);
    alive();
  });
});

describe('STUN requests with bad credentials', () => {
  let server: Server;
  let client: NkMediaClient;
  let udp: Socket;
  before(async () => {
    server = await startTestServer();
    client = await connectClient(server);
    udp = createSocket('udp4');
    await new Promise<void>((r) => udp.bind(0, '127.0.0.1', r));
  });
  after(async () => { udp.close(); await client.close(); await server.close(); });

  /** A STUN binding request; `key` signs it (MESSAGE-INTEGRITY) unless undefined. */
  function bindingRequest(username: string | undefined, key: string | undefined): Message {
    const m = new Message(0x0001, 0x0000);
    if (username !== undefined) m.setAttribute('USERNAME', username);
    m.setAttribute('PRIORITY', 0x6e0001ff);
    if (key !== undefined) m.addMessageIntegrity(Buffer.from(key, 'utf8'));
    m.addFingerprint();
    return m;
  }

  it('get no response at all, while a good client connects', async () => {
    const peer = new TestPeer();
    const offer = await peer.makeOffer();
    const events: EventData[] = [];
    const off = client.onEvent((e) => events.push(e));
    try {
      const reply = await client.createSession({ type: 'park', offer: { sdp: offer.sdp, trickle_ice: true }, wait_reply: true });
      const id = reply.session_id;
      const sdp = reply.answer!.sdp;
      const ufrag = /a=ice-ufrag:(\S+)/.exec(sdp)![1]!;
      const pwd = /a=ice-pwd:(\S+)/.exec(sdp)![1]!;
      const cand = await eventually(() => events.find((e) => e.obj_id === id && e.type === 'candidate' && / 127\.0\.0\.1 \d+ typ host/.test(String(e.body?.candidate))), 5000, 'host candidate');
      const port = Number(/ 127\.0\.0\.1 (\d+) typ host/.exec(String(cand.body!.candidate))![1]);

      const answered = new Set<string>();
      udp.on('message', (data) => { if (data.length >= 20) answered.add(data.subarray(8, 20).toString('hex')); });
      const bad = [
        bindingRequest('wrongufrag:client', pwd),            // not our ufrag
        bindingRequest(`${ufrag}:client`, 'not-the-password'), // our ufrag, wrong MESSAGE-INTEGRITY
        bindingRequest(`${ufrag}:client`, undefined),          // no MESSAGE-INTEGRITY
        bindingRequest(undefined, pwd),                        // no USERNAME
        bindingRequest('constructor:client', 'x'),             // a name every object has
      ];
      const good = bindingRequest(`${ufrag}:client`, pwd);
      const droppedBefore = stunRequestsDropped.count;
      // Datagrams on loopback arrive in order and are handled in order: by the time the good
      // request is answered, any answer to the bad ones would have come.
      for (const m of [...bad, good]) udp.send(m.bytes, port, '127.0.0.1');
      await eventually(() => answered.has(good.transactionIdHex), 5000, 'an answer to the authenticated request');
      for (const m of bad) assert.ok(!answered.has(m.transactionIdHex), 'a bad request got no answer');
      assert.equal(stunRequestsDropped.count - droppedBefore, bad.length);

      // The real client still connects through all this.
      await peer.takeAnswer(reply.answer!);
      for (const e of events) if (e.obj_id === id && e.type === 'candidate' && e.body?.candidate) await peer.addCandidate(e.body as CandidateInit).catch(() => undefined);
      const follow = peer.followCandidates(client, id);
      for (const c of offer.candidates) await client.setCandidate(id, c);
      await client.setCandidateEnd(id);
      await peer.waitConnected();
      follow();
      peer.startSending();
      await eventually(async () => (await client.getStats(id)).stats.inbound.audio.packets >= 5, 5000, 'media in');
      await client.destroySession(id);
      assertNoCrash();
    } finally {
      off();
      await peer.close();
    }
  });
});
