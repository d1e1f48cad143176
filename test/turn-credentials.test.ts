// TURN credentials for clients (the TURN REST convention, coturn's use-auth-secret): the login
// reply and `core/user/get_ice_servers` hand each user short-lived credentials, and a real coturn
// started here with the shared secret accepts them: a client restricted to relayed candidates
// gets its media echoed through the relay. Credentials made with another secret are refused.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, connectClient, eventually } from './helpers/server.js';
import { connectParked } from './helpers/flows.js';
import { TestPeer } from './helpers/peer.js';
import { haveCoturn, startCoturn, type Coturn } from './helpers/coturn.js';
import type { Server } from '../src/main.js';
import type { IceServer, NkMediaClient } from '../src/client/index.js';
import { turnCredentials } from '../src/access/turn-credentials.js';

const SECRET = 'a-secret-shared-with-coturn-0123';

let coturn: Coturn | undefined;
let turnUrl = '';
const servers: Server[] = [];
const clients: NkMediaClient[] = [];

/** A werift client that may use relayed candidates only, through the given TURN servers. */
const relayOnlyPeer = (iceServers: IceServer[], gatherSeconds = 5) => new TestPeer({
  iceServers: iceServers.map((s) => ({ urls: String(s.urls), username: s.username, credential: s.credential })),
  iceTransportPolicy: 'relay',
  iceStunGatherTimeout: gatherSeconds,
});

before(async () => {
  if (!haveCoturn) return;
  coturn = await startCoturn({ address: '127.0.0.1', secret: SECRET, loopbackPeers: true });
  turnUrl = coturn.url;
});

after(async () => {
  for (const c of clients.splice(0)) await c.close();
  for (const s of servers.splice(0)) await s.close();
  coturn?.stop();
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
