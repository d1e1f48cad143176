// Strict source on plain-RTP sessions (no "RTP bleed"): a stranger sending RTP to a session's
// port never gets the session's media and its audio never reaches the other side, whether it
// comes early in the call, after the phone has been quiet, or from the phone's own IP; the
// NAT cases still learn where the phone really is, a re-offer re-learns, `off` trusts only
// the SDP. Every check counts packets at the sockets (and the endpoint's drop counter).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, connectClient, eventually } from './helpers/server.js';
import { RtpPeer, mediaOf, type RtpRx } from './helpers/rtp-peer.js';
import { RtpEndpoint } from '../src/engine/local/graph/rtp-endpoint.js';
import type { Server } from '../src/main.js';
import type { NkMediaClient } from '../src/client/index.js';

const PCMU = { pt: 0, name: 'PCMU', rate: 8000 };
/** Payload bytes that say who sent a packet (PCMU passes through echo and bridge untouched). */
const PHONE = 0x11;
const PHONE_B = 0x22;
const ATTACKER = 0xee;
const fill = (byte: number) => () => Buffer.alloc(160, byte);
/** Packets in `rx` carrying `byte`'s payload. */
const carrying = (rx: RtpRx[], byte: number): number => rx.filter((p) => p.payload.length === 160 && p.payload[0] === byte && p.payload[159] === byte).length;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Longer than the quiet time after which the old code let another source take over. */
const QUIET_MS = 2300;

/** The RTP endpoint behind a session's media port (its drop counter is what tests read). */
function endpointAt(server: Server, port: number): RtpEndpoint {
  const elements = (server.engine as unknown as { elements: Map<string, unknown> }).elements;
  for (const el of elements.values()) if (el instanceof RtpEndpoint && el.ports().includes(port)) return el;
  throw new Error(`no RTP endpoint on port ${port}`);
}

/**
 * Waits until the endpoint has dropped `n` packets more than `since`, or until `leaked` says
 * something got through (the caller's assertions then name it), whichever comes first.
 */
async function dropped(ep: RtpEndpoint, since: number, n: number, leaked: () => boolean, what: string): Promise<void> {
  await eventually(() => ep.droppedPackets() >= since + n || leaked(), 3000, what);
}

/** Sends `count` packets of `byte` from `peer` (its RTP socket unless `from`) to `to`. */
/** An echo session whose phone announces `address` but sends from 127.0.0.1: every packet is dropped, nothing echoed. */
async function assertNeverLearned(c: NkMediaClient, srv: Server, address: string, peer: () => Promise<RtpPeer>): Promise<void> {
  const phone = await peer();
  const reply = await c.createSession({ type: 'echo', offer: { sdp: phone.sdp([PCMU], { address }), sdp_type: 'rtp' }, wait_reply: true });
  const m = mediaOf(reply.answer!.sdp);
  const ep = endpointAt(srv, m.port);
  const dropped0 = ep.droppedPackets();
  await burst(phone, m, PHONE, 30);
  await dropped(ep, dropped0, 30, () => phone.rx.length > 0, 'all dropped');
  assert.equal(phone.rx.length, 0, 'nothing echoed to the unannounced source');
  await c.destroySession(reply.session_id);
}

function burst(peer: RtpPeer, to: { address: string; port: number }, byte: number, count: number, o: { ssrc?: number; from?: RtpPeer } = {}): Promise<void> {
  return peer.send(to, { pt: 0, count, samples: 160, payload: fill(byte), ssrc: o.ssrc, ...(o.from ? { from: o.from.rtp } : {}) });
}

describe('plain RTP strict source (latching auto)', () => {
  let server: Server;
  let client: NkMediaClient;
  const open: RtpPeer[] = [];
  const peer = async (host = '127.0.0.1') => { const p = await RtpPeer.open(host); open.push(p); return p; };
  before(async () => {
    server = await startTestServer({ rtp: { latching: 'auto' } });
    client = await connectClient(server);
  });
  after(async () => {
    for (const p of open) await p.close();
    await client.close();
    await server.close();
  });

  it('echo: an attacker on another IP, early in the call and after the phone went quiet, gets nothing and is not echoed', async () => {
    const phone = await peer();
    const attacker = await peer('127.0.0.2');
    const reply = await client.createSession({ type: 'echo', offer: { sdp: phone.sdp([PCMU]), sdp_type: 'rtp' }, wait_reply: true });
    const m = mediaOf(reply.answer!.sdp);
    const ep = endpointAt(server, m.port);

    // Early: the attacker starts while the phone is talking, well inside the first seconds.
    const talking = burst(phone, m, PHONE, 100);
    await eventually(() => phone.rx.length >= 5, 3000, 'the phone hears itself');
    const dropped0 = ep.droppedPackets();
    await burst(attacker, m, ATTACKER, 50, { ssrc: 0xbad });
    await talking;
    const leak = () => attacker.rx.length > 0 || carrying(phone.rx, ATTACKER) > 0;
    await dropped(ep, dropped0, 50, leak, 'the attacker\'s packets dropped');
    assert.equal(attacker.rx.length, 0, 'no media reached the early attacker');
    assert.equal(carrying(phone.rx, ATTACKER), 0, 'the early attacker\'s audio was not echoed');
    await eventually(() => phone.rx.length >= 95, 3000, 'the phone\'s echo');

    // The phone goes quiet (longer than the old re-latch time), the attacker tries again.
    await sleep(QUIET_MS);
    const dropped1 = ep.droppedPackets();
    await burst(attacker, m, ATTACKER, 50, { ssrc: 0xbad });
    await dropped(ep, dropped1, 50, leak, 'the late attack dropped');
    assert.equal(attacker.rx.length, 0, 'no media reached the late attacker');
    // The phone speaks again and keeps its stream.
    const before = phone.rx.length;
    await burst(phone, m, PHONE, 30);
    await eventually(() => phone.rx.length >= before + 28, 3000, 'the phone\'s echo after the attack');

    assert.equal(attacker.rx.length, 0, 'no media reached the attacker');
    assert.equal(attacker.rtcpRx.length, 0, 'no RTCP reached the attacker');
    assert.equal(carrying(phone.rx, ATTACKER), 0, 'the attacker\'s audio was never echoed');
    assert.equal(carrying(phone.rx, PHONE), phone.rx.length, 'the phone only heard itself');
    assert.ok(phone.rx.every((p) => p.from === `127.0.0.1:${m.port}`));
    await client.destroySession(reply.session_id);
  });

  it('bridge: an attacker on one leg never reaches the other leg and never hears either', async () => {
    const a = await peer();
    const b = await peer();
    const attacker = await peer('127.0.0.2');
    const ra = await client.createSession({ type: 'park', offer: { sdp: a.sdp([PCMU]), sdp_type: 'rtp' }, wait_reply: true });
    const rb = await client.createSession({ type: 'bridge', peer_id: ra.session_id, offer: { sdp: b.sdp([PCMU]), sdp_type: 'rtp' }, wait_reply: true });
    const ma = mediaOf(ra.answer!.sdp);
    const mb = mediaOf(rb.answer!.sdp);
    const ep = endpointAt(server, ma.port);

    const talkA = burst(a, ma, PHONE, 100);
    const talkB = burst(b, mb, PHONE_B, 100);
    await eventually(() => b.rx.length >= 5 && a.rx.length >= 5, 3000, 'both legs hear each other');
    const dropped0 = ep.droppedPackets();
    await burst(attacker, ma, ATTACKER, 50, { ssrc: 0xbad });
    await Promise.all([talkA, talkB]);
    const leak = () => attacker.rx.length > 0 || carrying(b.rx, ATTACKER) > 0;
    await dropped(ep, dropped0, 50, leak, 'early attack dropped');
    assert.equal(attacker.rx.length, 0, 'no media reached the early attacker');
    assert.equal(carrying(b.rx, ATTACKER), 0, 'the early attacker\'s audio never reached B');

    await sleep(QUIET_MS);
    const dropped1 = ep.droppedPackets();
    // B keeps talking while A is quiet: its audio must still go to A, not to the attacker.
    const beforeA = a.rx.length;
    const talkB2 = burst(b, mb, PHONE_B, 50);
    await burst(attacker, ma, ATTACKER, 50, { ssrc: 0xbad });
    await talkB2;
    await dropped(ep, dropped1, 50, leak, 'late attack dropped');
    assert.equal(attacker.rx.length, 0, 'no media (B\'s audio) reached the late attacker');
    await eventually(() => a.rx.length >= beforeA + 48, 3000, 'A still hears B');
    const beforeB = b.rx.length;
    await burst(a, ma, PHONE, 30);
    await eventually(() => b.rx.length >= beforeB + 28, 3000, 'B hears A again');

    assert.equal(attacker.rx.length, 0, 'no media reached the attacker');
    assert.equal(attacker.rtcpRx.length, 0, 'no RTCP reached the attacker');
    assert.equal(carrying(b.rx, ATTACKER), 0, 'the attacker\'s audio never reached B');
    assert.equal(carrying(b.rx, PHONE), b.rx.length, 'B heard only A');
    assert.equal(carrying(a.rx, PHONE_B), a.rx.length, 'A heard only B');
    await client.destroySession(rb.session_id);
    await client.destroySession(ra.session_id).catch(() => undefined);
  });

  it('an attacker on the phone\'s own IP but another port cannot take over after the lock', async () => {
    const phone = await peer();
    const attacker = await peer('127.0.0.1');
    const reply = await client.createSession({ type: 'echo', offer: { sdp: phone.sdp([PCMU]), sdp_type: 'rtp' }, wait_reply: true });
    const m = mediaOf(reply.answer!.sdp);
    const ep = endpointAt(server, m.port);
    const talking = burst(phone, m, PHONE, 60);
    await eventually(() => phone.rx.length >= 5, 3000, 'the phone hears itself');
    const dropped0 = ep.droppedPackets();
    await burst(attacker, m, ATTACKER, 40, { ssrc: 0xbad });
    await talking;
    const leak = () => attacker.rx.length > 0 || carrying(phone.rx, ATTACKER) > 0;
    await dropped(ep, dropped0, 40, leak, 'the early attack dropped');
    await sleep(QUIET_MS);
    await burst(attacker, m, ATTACKER, 40, { ssrc: 0xbad });
    await dropped(ep, dropped0, 80, leak, 'both attacks dropped');
    const before = phone.rx.length;
    await burst(phone, m, PHONE, 20);
    await eventually(() => phone.rx.length >= before + 18, 3000, 'the phone keeps its stream');
    assert.equal(attacker.rx.length, 0, 'no media reached the attacker');
    assert.equal(carrying(phone.rx, ATTACKER), 0, 'the attacker\'s audio was never echoed');
    await client.destroySession(reply.session_id);
  });

  it('NAT: the SDP announces a private address; the source that passes probation is learned, media flows back there, then it is locked', async () => {
    for (const privateIp of ['10.0.0.5', '192.168.1.10']) {
      const phone = await peer();
      const attacker = await peer('127.0.0.2');
      // The phone announces its private address; its packets come from 127.0.0.1:<port> (the NAT).
      const reply = await client.createSession({ type: 'echo', offer: { sdp: phone.sdp([PCMU], { address: privateIp }), sdp_type: 'rtp' }, wait_reply: true });
      const m = mediaOf(reply.answer!.sdp);
      const ep = endpointAt(server, m.port);
      await burst(phone, m, PHONE, 40);
      // Probation costs the first few packets; the rest come back to where they came from.
      await eventually(() => phone.rx.length >= 34, 3000, `echo back at the NAT address (${privateIp})`);
      const dropped0 = ep.droppedPackets();
      const leak = () => attacker.rx.length > 0 || carrying(phone.rx, ATTACKER) > 0;
      await burst(attacker, m, ATTACKER, 30, { ssrc: 0xbad });
      await dropped(ep, dropped0, 30, leak, 'the early attack dropped');
      await sleep(QUIET_MS);
      await burst(attacker, m, ATTACKER, 30, { ssrc: 0xbad });
      await dropped(ep, dropped0, 60, leak, 'the attacks dropped');
      const before = phone.rx.length;
      await burst(phone, m, PHONE, 20);
      await eventually(() => phone.rx.length >= before + 18, 3000, 'the phone keeps its stream');
      assert.equal(attacker.rx.length, 0, 'no media reached the attacker');
      assert.equal(carrying(phone.rx, ATTACKER), 0, 'the attacker\'s audio was never echoed');
      await client.destroySession(reply.session_id);
    }
  });

  it('a stranger that beat the phone to the port (SDP not public) loses it at the phone\'s first packet from its SDP address', async () => {
    const phone = await peer();
    const attacker = await peer('127.0.0.2');
    const reply = await client.createSession({ type: 'echo', offer: { sdp: phone.sdp([PCMU]), sdp_type: 'rtp' }, wait_reply: true });
    const m = mediaOf(reply.answer!.sdp);
    // 127.0.0.1 is not public: a first source passing probation is learned, even a stranger...
    await burst(attacker, m, ATTACKER, 10, { ssrc: 0xbad });
    await eventually(() => attacker.rx.length >= 3, 3000, 'the stranger learned (its own echo)');
    // ...until signalling's exact address speaks, inside the learning window.
    await burst(phone, m, PHONE, 30);
    await eventually(() => phone.rx.length >= 28, 3000, 'the phone took its stream');
    const got = attacker.rx.length;
    await burst(attacker, m, ATTACKER, 30, { ssrc: 0xbad });
    await burst(phone, m, PHONE, 10);
    await eventually(() => phone.rx.length >= 38, 3000, 'the phone keeps it');
    assert.equal(attacker.rx.length, got, 'nothing more reached the stranger once the phone spoke');
    assert.equal(carrying(phone.rx, ATTACKER), 0);
    await client.destroySession(reply.session_id);
  });

  it('a public SDP address: another IP is never learned, not even during the window', async () => {
    // The phone claims a public address (unreachable from a loopback-bound server) and sends from 127.0.0.1.
    await assertNeverLearned(client, server, '1.2.3.4', peer);
  });

  it('a re-offer with a new address re-learns; one with the same address keeps the lock', async () => {
    const phone = await peer();
    const moved = await peer();
    const natted = await peer('127.0.0.2');
    const attacker = await peer('127.0.0.3');
    const reply = await client.createSession({ type: 'echo', offer: { sdp: phone.sdp([PCMU]), sdp_type: 'rtp' }, wait_reply: true });
    const m = mediaOf(reply.answer!.sdp);
    const ep = endpointAt(server, m.port);
    const session = server.services.sessions.lookup(reply.session_id)!;
    await burst(phone, m, PHONE, 20);
    await eventually(() => phone.rx.length >= 18, 3000, 'first address echoed');

    // Same address (a resume): still locked, a stranger gets nothing.
    await session.reoffer(phone.sdp([PCMU]));
    let before = ep.droppedPackets();
    await burst(attacker, m, ATTACKER, 20, { ssrc: 0xbad });
    await dropped(ep, before, 20, () => attacker.rx.length > 0, 'stranger dropped after a same-address re-offer');
    assert.equal(attacker.rx.length, 0, 'no media reached the stranger');

    // The phone moves (re-INVITE with its new port): the new address is taken, the old one not.
    await session.reoffer(moved.sdp([PCMU]));
    await burst(moved, m, PHONE, 20);
    await eventually(() => moved.rx.length >= 18, 3000, 'echo at the new address');
    const old = phone.rx.length;
    before = ep.droppedPackets();
    await burst(phone, m, PHONE, 20);
    await dropped(ep, before, 20, () => phone.rx.length > old, 'the old address dropped');
    assert.equal(phone.rx.length, old, 'nothing more to the old address');

    // It moves again, now behind a NAT (private address in the SDP, packets from 127.0.0.2).
    await session.reoffer(natted.sdp([PCMU], { address: '192.168.1.10' }));
    await burst(natted, m, PHONE, 30);
    await eventually(() => natted.rx.length >= 24, 3000, 'echo at the NAT address after the re-offer');
    const movedGot = moved.rx.length;
    before = ep.droppedPackets();
    await burst(moved, m, PHONE, 20);
    await burst(attacker, m, ATTACKER, 20, { ssrc: 0xbad });
    await dropped(ep, before, 40, () => moved.rx.length > movedGot || attacker.rx.length > 0, 'previous address and stranger dropped');
    assert.equal(moved.rx.length, movedGot);
    assert.equal(attacker.rx.length, 0, 'no media reached the stranger');
    assert.equal(carrying(natted.rx, ATTACKER), 0);
    await client.destroySession(reply.session_id);
  });
});

describe('plain RTP strict source (latching off and always)', () => {
  let off: Server;
  let always: Server;
  let offClient: NkMediaClient;
  let alwaysClient: NkMediaClient;
  const open: RtpPeer[] = [];
  const peer = async (host = '127.0.0.1') => { const p = await RtpPeer.open(host); open.push(p); return p; };
  before(async () => {
    off = await startTestServer({ rtp: { latching: 'off' } });
    always = await startTestServer({ rtp: { latching: 'always' } });
    offClient = await connectClient(off);
    alwaysClient = await connectClient(always);
  });
  after(async () => {
    for (const p of open) await p.close();
    await offClient.close();
    await alwaysClient.close();
    await off.close();
    await always.close();
  });

  it('off: only the SDP\'s address and port; another port on its IP is ignored, before and after the lock', async () => {
    const phone = await peer();
    const otherPort = await peer();
    const reply = await offClient.createSession({ type: 'echo', offer: { sdp: phone.sdp([PCMU]), sdp_type: 'rtp' }, wait_reply: true });
    const m = mediaOf(reply.answer!.sdp);
    const ep = endpointAt(off, m.port);
    const dropped0 = ep.droppedPackets();
    const leak = () => otherPort.rx.length > 0 || phone.rx.length > 0;
    await burst(otherPort, m, ATTACKER, 30, { ssrc: 0xbad });
    await dropped(ep, dropped0, 30, leak, 'other port dropped before any lock');
    assert.equal(phone.rx.length, 0, 'nothing from the other port was echoed');
    await burst(phone, m, PHONE, 30);
    await eventually(() => phone.rx.length >= 28, 3000, 'the SDP address echoed');
    const dropped1 = ep.droppedPackets();
    await burst(otherPort, m, ATTACKER, 30, { ssrc: 0xbad });
    await dropped(ep, dropped1, 30, () => otherPort.rx.length > 0 || carrying(phone.rx, ATTACKER) > 0, 'other port dropped after the lock');
    assert.equal(otherPort.rx.length, 0);
    assert.equal(carrying(phone.rx, ATTACKER), 0);
    await offClient.destroySession(reply.session_id);
  });

  it('off: a phone behind NAT (private SDP address) is not learned', async () => {
    await assertNeverLearned(offClient, off, '10.0.0.5', peer);
  });

  it('always: a source on another IP than a public SDP address is learned, then locked', async () => {
    const gateway = await peer();
    const attacker = await peer('127.0.0.2');
    const reply = await alwaysClient.createSession({ type: 'echo', offer: { sdp: gateway.sdp([PCMU], { address: '1.2.3.4' }), sdp_type: 'rtp' }, wait_reply: true });
    const m = mediaOf(reply.answer!.sdp);
    const ep = endpointAt(always, m.port);
    await burst(gateway, m, PHONE, 30);
    await eventually(() => gateway.rx.length >= 24, 3000, 'echo back to the learned source');
    const dropped0 = ep.droppedPackets();
    await burst(attacker, m, ATTACKER, 30, { ssrc: 0xbad });
    await dropped(ep, dropped0, 30, () => attacker.rx.length > 0 || carrying(gateway.rx, ATTACKER) > 0, 'a second source dropped');
    assert.equal(attacker.rx.length, 0);
    assert.equal(carrying(gateway.rx, ATTACKER), 0);
    await alwaysClient.destroySession(reply.session_id);
  });
});
