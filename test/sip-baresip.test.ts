// A real SIP phone (baresip, G.711 only) against the server's SIP side: it calls the echo user
// and hears its own tone; the server calls it for a WebRTC caller (call API); it calls a user
// logged in over the API. Audio is checked by decoding what each side received (the other's
// tone must dominate), and hang-ups from either side end everything.
import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, connectClient, eventually } from './helpers/server.js';
import { TestPeer } from './helpers/peer.js';
import { Baresip, haveBaresip } from './helpers/baresip.js';
import { rmsDb, toneShareWindowed } from './helpers/rtp-peer.js';
import { decodeOpus, opusTone } from './helpers/tone.js';
import type { Server } from '../src/main.js';
import type { CallInvite, CandidateInit, EventData, NkMediaClient } from '../src/client/index.js';

const skip = haveBaresip ? false : 'baresip is not installed';
const PHONE_HZ = 440;
const BROWSER_HZ = 1000;

let server: Server;
let sipPort = 0;
const phones: Baresip[] = [];
const peers: TestPeer[] = [];
const clients: NkMediaClient[] = [];

/** A phone listening on its own loopback port (commands such as /dial run once it is ready). */
async function phone(o: Parameters<typeof Baresip.launch>[0]): Promise<Baresip> {
  const p = await Baresip.launch(o);
  phones.push(p);
  return p;
}

/** The share of `hz` in what was heard after the first second (set-up and jitter). */
function assertHears(samples: Int16Array, rate: number, hz: number, what: string): void {
  const s = samples.subarray(Math.min(samples.length, rate));
  assert.ok(s.length >= rate / 2, `${what}: only ${s.length} samples`);
  const share = toneShareWindowed(s, rate, hz);
  const level = rmsDb(s);
  assert.ok(share > 0.5 && level > -40, `${what}: ${hz} Hz is ${(share * 100).toFixed(1)}% of the power at ${level.toFixed(1)} dBFS`);
}

before(async () => {
  server = await startTestServer({ sip: { udp_port: 0, t1_ms: 100 } });
  sipPort = server.sip!.addresses().udp!.port;
});
after(async () => { await server.close(); });
afterEach(async () => {
  for (const p of peers.splice(0)) await p.close();
  for (const c of clients.splice(0)) await c.close();
  for (const p of phones.splice(0)) p.cleanup();
  await eventually(async () => server.services.sessions.size === 0 && server.services.calls.size === 0 && (await server.engine.counters()).elements === 0,
    10000, 'no session, call or element left');
});

describe('baresip, a real SIP phone', { skip }, () => {
  it('calls the echo user and hears its own tone; its hang-up ends the session', async () => {
    const p = await phone({ toneHz: PHONE_HZ, seconds: 5, commands: [`/dial sip:echo@127.0.0.1:${sipPort}`] });
    await eventually(() => server.services.sessions.size === 1, 8000, 'the echo session');
    const [session] = server.services.sessions.list({ user: 'admin', admin: true, connId: 'x' });
    // It takes its type once its media elements exist (a moment later with media in a worker).
    await eventually(() => session!.type === 'echo', 5000, 'type echo');
    assert.equal(session!.sdpType, 'rtp');
    await p.exited;
    assert.match(p.output, /Call established/, p.output.slice(-2000));
    assertHears(p.heard(), 8000, PHONE_HZ, 'baresip hearing itself');
    // baresip quitting sent BYE: the session is gone.
    await eventually(() => server.services.sessions.size === 0, 5000, 'session ended by the BYE');
  });

  it('is called by the server for a WebRTC caller; each hears the other (PCMU <-> Opus); the caller hangs up', async () => {
    const p = await phone({ toneHz: PHONE_HZ, seconds: 20 });
    const phonePort = p.sipPort;
    const alice = await connectClient(server, 'alice');
    clients.push(alice);
    const events: EventData[] = [];
    alice.onEvent((e) => events.push(e));
    const peer = new TestPeer();
    peers.push(peer);
    const offer = await peer.makeOffer();
    const r = await alice.createCall({ callee: `sip:bob@127.0.0.1:${phonePort}`, offer: { sdp: offer.sdp, trickle_ice: true }, wait_reply: true });
    await peer.takeAnswer(r.answer!);
    follow(alice, events, r.call_id, r.session_id, peer);
    for (const c of offer.candidates) await alice.setCallCandidate(r.call_id, c);
    await alice.setCallCandidateEnd(r.call_id);
    await peer.waitConnected();
    await eventually(() => events.some((e) => e.subclass === 'call' && e.type === 'accepted'), 8000, 'the phone answers (auto-answer)')
      .catch((err: Error) => { throw new Error(`${err.message}; call events: ${events.filter((e) => e.subclass === 'call').map((e) => e.type).join(',')}; baresip: ${p.output.slice(-1500)}`); });
    const tone = opusTone(BROWSER_HZ, 50);
    const sending = peer.startSending({ videoPps: 0, audioPayload: (i) => tone[i % tone.length]! });
    await eventually(() => peer.audioPayloads.length >= 150, 10000, 'three seconds of the phone\'s audio');
    sending.stop();
    assertHears(decodeOpus(peer.audioPayloads), 48000, PHONE_HZ, 'the WebRTC caller hearing the phone');
    await alice.hangupCall(r.call_id);
    await eventually(() => /terminated/.test(p.output), 5000, 'baresip told by BYE');
    p.kill();
    await p.exited;
    assertHears(p.heard(), 8000, BROWSER_HZ, 'the phone hearing the WebRTC caller');
  });

  it('calls a user logged in over the API; the user accepts; the phone hangs up and the call ends', async () => {
    const carol = await connectClient(server, 'carol');
    clients.push(carol);
    const events: EventData[] = [];
    carol.onEvent((e) => events.push(e));
    const invites: CallInvite[] = [];
    carol.onInvite((inv) => { invites.push(inv); return true; });
    const p = await phone({ toneHz: PHONE_HZ, seconds: 7, commands: [`/dial sip:carol@127.0.0.1:${sipPort}`] });
    const inv = await eventually(() => invites[0], 8000, 'carol invited');
    assert.match(String((inv.caller as { sip_from?: string }).sip_from), /^sip:bob@/);
    const peer = new TestPeer();
    peers.push(peer);
    const answer = await peer.answerOffer(inv.offer);
    follow(carol, events, inv.call_id, inv.session_id, peer);
    await carol.acceptCall(inv.call_id, { sdp: answer.sdp, trickle_ice: true });
    for (const c of answer.candidates) await carol.setCallCandidate(inv.call_id, c);
    await carol.setCallCandidateEnd(inv.call_id);
    await peer.waitConnected();
    const tone = opusTone(BROWSER_HZ, 50);
    const sending = peer.startSending({ videoPps: 0, audioPayload: (i) => tone[i % tone.length]! });
    await eventually(() => peer.audioPayloads.length >= 100, 10000, 'two seconds of the phone\'s audio');
    assertHears(decodeOpus(peer.audioPayloads), 48000, PHONE_HZ, 'carol hearing the phone');
    await p.exited; // baresip quits: BYE
    sending.stop();
    await eventually(() => events.some((e) => e.subclass === 'call' && e.type === 'hangup'), 5000, 'the call hung up by the phone');
    assertHears(p.heard(), 8000, BROWSER_HZ, 'the phone hearing carol');
  });
});

/** Feeds the call's candidate events for `sessionId` into `peer`. */
function follow(c: NkMediaClient, events: EventData[], callId: string, sessionId: string, peer: TestPeer): void {
  const seen = new Set<EventData>();
  const take = (e: EventData) => {
    if (seen.has(e) || e.subclass !== 'call' || e.obj_id !== callId || e.type !== 'candidate' || e.body?.session_id !== sessionId) return;
    seen.add(e);
    void peer.addCandidate(e.body as CandidateInit).catch(() => undefined);
  };
  c.onEvent(take);
  for (const e of [...events]) take(e);
}
