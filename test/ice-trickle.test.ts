// Trickle on the server's side with a STUN server configured: our SDP goes at once with the host
// candidates, and the server-reflexive one follows as a `candidate` event, then `candidate_end`.
// The STUN server here is a small responder on 127.0.0.1 that answers late (it reports the
// requester's real loopback address, so nothing leaves the machine). A client that cannot
// trickle (no_answer_trickle_ice) gets one complete answer with the server-reflexive candidate.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:dgram';
import { startTestServer, connectClient, eventually } from './helpers/server.js';
import { TestPeer } from './helpers/peer.js';
import { bind } from './helpers/rtp-peer.js';
import type { Server } from '../src/main.js';
import type { CandidateInit, EventData, NkMediaClient } from '../src/client/index.js';

const STUN_DELAY_MS = 300;
const COOKIE = 0x2112a442;

let stun: Socket;
/** Answers the responder still owes: cancelled when it closes. */
const owed = new Set<NodeJS.Timeout>();
let stunClosed = false;
/** When the responder sent each answer (performance.now()). */
const answeredAt: number[] = [];
let server: Server;
let client: NkMediaClient;

/** A Binding success answer to `req` naming `address:port` (XOR-MAPPED-ADDRESS, IPv4). */
function bindingSuccess(req: Buffer, address: string, port: number): Buffer {
  const res = Buffer.alloc(32);
  res.writeUInt16BE(0x0101, 0);
  res.writeUInt16BE(12, 2);
  req.copy(res, 4, 4, 20); // cookie and transaction id
  res.writeUInt16BE(0x0020, 20);
  res.writeUInt16BE(8, 22);
  res.writeUInt8(0x01, 25);
  res.writeUInt16BE(port ^ (COOKIE >>> 16), 26);
  const ip = address.split('.').reduce((a, b) => (a << 8) | Number(b), 0) >>> 0;
  res.writeUInt32BE((ip ^ COOKIE) >>> 0, 28);
  return res;
}

before(async () => {
  stun = await bind('127.0.0.1', 0);
  stun.on('message', (msg, rinfo) => {
    if (stunClosed || msg.length < 20 || msg.readUInt16BE(0) !== 0x0001 || msg.readUInt32BE(4) !== COOKIE) return;
    const timer = setTimeout(() => {
      owed.delete(timer);
      answeredAt.push(performance.now());
      stun.send(bindingSuccess(msg, rinfo.address, rinfo.port), rinfo.port, rinfo.address);
    }, STUN_DELAY_MS);
    owed.add(timer);
  });
  server = await startTestServer({ ice: { stun_servers: [`stun:127.0.0.1:${stun.address().port}`], gather_timeout_ms: 3000 } });
  client = await connectClient(server, 'alice');
});

after(async () => {
  await client?.close();
  await server?.close();
  stunClosed = true;
  for (const t of owed) clearTimeout(t);
  stun?.close();
});

describe('server-side trickle with a STUN server', () => {
  it('answers at once with host candidates; the server-reflexive one follows, then candidate_end; media flows', async () => {
    const events: { e: EventData; at: number }[] = [];
    const off = client.onEvent((e) => events.push({ e, at: performance.now() }));
    const peer = new TestPeer();
    const offer = await peer.makeOffer();
    const stunAnswers = answeredAt.length;
    const t0 = performance.now();
    const reply = await client.createSession({ type: 'echo', offer: { sdp: offer.sdp, trickle_ice: true }, wait_reply: true });
    const replyAt = performance.now();
    // Nothing was waited for: the STUN server had not answered yet when the answer came.
    assert.equal(answeredAt.length, stunAnswers, `the answer (after ${(replyAt - t0).toFixed(1)} ms) came before the STUN server answered`);
    assert.equal(reply.answer!.trickle_ice, true);
    const mine = (type: string) => events.filter((x) => x.e.obj_id === reply.session_id && x.e.type === type);
    const srflx = await eventually(() => mine('candidate').find((x) => / typ srflx /.test(String(x.e.body?.candidate))), 5000, 'a server-reflexive candidate event');
    assert.ok(srflx.at > replyAt);
    const end = await eventually(() => mine('candidate_end')[0], 5000, 'candidate_end');
    assert.ok(end.at >= srflx.at, 'candidate_end after the last candidate');
    assert.ok(mine('candidate').some((x) => / typ host /.test(String(x.e.body?.candidate))), 'the host candidates as events too');

    await peer.takeAnswer(reply.answer!);
    for (const x of mine('candidate')) await peer.addCandidate(x.e.body as CandidateInit).catch(() => undefined);
    for (const c of offer.candidates) await client.setCandidate(reply.session_id, c);
    await client.setCandidateEnd(reply.session_id);
    await peer.waitConnected();
    peer.startSending({ videoPps: 50 });
    await eventually(() => peer.from('video', peer.tag).length > 20, 8000, 'the echo');
    peer.stopSending();
    off();
    await client.destroySession(reply.session_id);
    await peer.close();
  });

  it('a client that cannot trickle gets one complete answer, with the server-reflexive candidate', async () => {
    const peer = new TestPeer();
    const offer = await peer.makeOffer();
    const full = [offer.sdp.trimEnd(), ...offer.candidates.map((c) => `a=${c.candidate}`), ''].join('\r\n');
    const reply = await client.createSession({ type: 'park', offer: { sdp: full, trickle_ice: false }, no_answer_trickle_ice: true, trickle_ice_timeout: 3000, wait_reply: true });
    assert.equal(reply.answer!.trickle_ice, false);
    assert.match(reply.answer!.sdp, /a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 \d+ typ host/);
    assert.match(reply.answer!.sdp, / typ srflx /, 'held until the STUN answer came');
    await peer.takeAnswer(reply.answer!);
    await peer.waitConnected();
    await client.destroySession(reply.session_id);
    await peer.close();
  });
});
