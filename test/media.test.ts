// Media through the server with werift clients: echo, bridge, switching types on a live call
// (continuity and keyframe requests), mute/unmute, bitrate feedback, stats.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, connectClient, eventually } from './helpers/server.js';
import { connectParked, hearEachOther, receives } from './helpers/flows.js';
import type { Rx, TestPeer } from './helpers/peer.js';
import type { Server } from '../src/main.js';
import type { EventData, NkMediaClient } from '../src/client/index.js';

let server: Server;
let client: NkMediaClient;
const events: EventData[] = [];
before(async () => {
  server = await startTestServer();
  client = await connectClient(server);
  client.onEvent((e) => events.push(e));
});
after(async () => { await client.close(); await server.close(); });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));


/** Packets of one outgoing stream keep one SSRC, and their sequence numbers never jump back or skip. */
function assertContinuous(packets: Rx[]): void {
  assert.ok(packets.length > 0);
  const ssrcs = new Set(packets.map((p) => p.ssrc));
  assert.equal(ssrcs.size, 1, `one SSRC across switches, got ${[...ssrcs].join(',')}`);
  for (let i = 1; i < packets.length; i++) {
    const dSeq = (packets[i]!.seq - packets[i - 1]!.seq + 0x10000) & 0xffff;
    assert.equal(dSeq, 1, `sequence continuous at packet ${i}: ${packets[i - 1]!.seq} -> ${packets[i]!.seq}`);
    const dTs = (packets[i]!.ts - packets[i - 1]!.ts + 2 ** 32) % 2 ** 32;
    assert.ok(dTs > 0 && dTs < 2 ** 31, `timestamp moves forward at packet ${i}: ${packets[i - 1]!.ts} -> ${packets[i]!.ts}`);
  }
}

describe('echo', () => {
  it('sends the client its own audio, video and data channel messages', async () => {
    const { id, peer } = await connectParked(client, { type: 'echo' });
    peer.startSending();
    await receives(peer, 'audio', peer.tag);
    await receives(peer, 'video', peer.tag);
    await eventually(() => peer.channel?.readyState === 'open', 5000, 'data channel open');
    peer.send('hello echo');
    await eventually(() => peer.messages.includes('hello echo'), 5000, 'data echoed');
    // Rates, loss and jitter both ways: ours from RFC 3550 counters, the client's from its reports.
    const stats = await eventually(async () => {
      const { stats: st } = await client.getStats(id);
      return st.outbound.video.packets_lost !== undefined && st.outbound.video.jitter_ms !== undefined && st.inbound.video.bitrate > 0 ? st : undefined;
    }, 5000, 'stats with the client\'s receiver reports');
    assert.ok(stats.outbound.video.packets > 0 && stats.inbound.video.packets > 0);
    assert.ok(stats.outbound.data.packets >= 1);
    assert.equal(stats.inbound.video.packets_lost, 0, 'nothing lost on loopback');
    assert.equal(stats.outbound.video.packets_lost, 0);
    assert.ok(stats.inbound.video.jitter_ms >= 0 && stats.outbound.video.bitrate > 0);
    // The synthetic sender sends 50 packets/s of ~1 KB video: ~400 kbit/s.
    assert.ok(stats.inbound.video.bitrate > 100_000 && stats.inbound.video.bitrate < 2_000_000, `bitrate ${stats.inbound.video.bitrate}`);
    await client.destroySession(id);
    await peer.close();
  });
});

describe('bridge', () => {
  it('two sessions hear each other; both become bridge naming the other', async () => {
    const a = await connectParked(client);
    const b = await connectParked(client, { type: 'bridge', peer_id: a.id, master_id: a.id });
    a.peer.startSending();
    b.peer.startSending();
    await hearEachOther(a.peer, b.peer);
    assert.equal(a.peer.from('video', a.peer.tag).length, 0, 'a bridge does not echo');
    assert.ok(events.some((e) => e.obj_id === a.id && e.type === 'type' && e.body?.type === 'bridge' && e.body.peer_id === b.id));
    assert.ok(events.some((e) => e.obj_id === b.id && e.type === 'type' && e.body?.type === 'bridge' && e.body.peer_id === a.id));
    assert.deepEqual((await client.getInfo(a.id)).type_ext, { peer_id: b.id });
    await eventually(() => a.peer.channel?.readyState === 'open' && b.peer.channel?.readyState === 'open', 5000, 'channels');
    a.peer.send('from a');
    await eventually(() => b.peer.messages.includes('from a'), 5000, 'data across the bridge');
    await client.destroySession(a.id);
    const stopped = await eventually(() => events.find((e) => e.obj_id === b.id && e.type === 'destroyed'), 5000, 'b destroyed');
    assert.ok([300020, 300021].includes(stopped.body!.code as number));
    await a.peer.close();
    await b.peer.close();
  });

  it('a bridge peer that leaves parks the other (stop_after_peer:false) or stops it (bridge_stop)', async () => {
    const a = await connectParked(client, { stop_after_peer: false });
    const b = await connectParked(client, { type: 'bridge', peer_id: a.id });
    await client.setType(b.id, 'echo');
    await eventually(() => events.some((e) => e.obj_id === a.id && e.type === 'type' && e.body?.type === 'park'), 5000, 'a parked');
    assert.equal((await client.getInfo(a.id)).type, 'park');
    const c = await connectParked(client, { type: 'bridge', peer_id: b.id });
    await client.destroySession(c.id);
    const ev = await eventually(() => events.find((e) => e.obj_id === b.id && e.type === 'destroyed'), 5000, 'b destroyed');
    assert.deepEqual(ev.body, { code: 300020, reason: 'Bridge stop' });
    for (const s of [a, b, c]) await s.peer.close();
    await client.destroySession(a.id);
  });

  it('refuses an unknown peer and itself', async () => {
    const a = await connectParked(client);
    await assert.rejects(client.setType(a.id, 'bridge', { peer_id: 'nobody' }), /Unknown peer/);
    await assert.rejects(client.setType(a.id, 'bridge', { peer_id: a.id }), /cannot bridge with itself/);
    await assert.rejects(client.setType(a.id, 'bridge'), /Missing field: peer_id/);
    assert.equal((await client.getInfo(a.id)).type, 'park', 'a failed switch leaves the session as it was');
    await client.destroySession(a.id);
    await a.peer.close();
  });
});

describe('set_type on a live call', () => {
  it('park -> echo -> bridge -> park -> echo: media follows, one continuous stream, a keyframe request each time', async () => {
    const a = await connectParked(client);
    const b = await connectParked(client);
    a.peer.startSending();
    b.peer.startSending();
    await sleep(300);
    assert.equal(a.peer.received.video, 0, 'parked: nothing');

    let pli = a.peer.pliReceived;
    assert.deepEqual(await client.setType(a.id, 'echo'), {});
    await receives(a.peer, 'video', a.peer.tag);
    await eventually(() => a.peer.pliReceived > pli, 3000, 'keyframe request on switch to echo');

    pli = b.peer.pliReceived;
    assert.deepEqual(await client.setType(a.id, 'bridge', { peer_id: b.id }), { peer_id: b.id });
    await receives(a.peer, 'video', b.peer.tag);
    await receives(b.peer, 'video', a.peer.tag);
    await eventually(() => b.peer.pliReceived > pli, 3000, 'keyframe request to the new source');

    await client.setType(a.id, 'park');
    await sleep(200);
    const parkedAt = a.peer.rx.video.length;
    await sleep(300);
    assert.ok(a.peer.rx.video.length - parkedAt <= 1, 'park stops the downlink');

    pli = a.peer.pliReceived;
    await client.setType(a.id, 'echo');
    await receives(a.peer, 'video', a.peer.tag);
    await eventually(() => a.peer.pliReceived > pli, 3000, 'keyframe request on the last switch');

    assertContinuous(a.peer.rx.video);
    assertContinuous(a.peer.rx.audio);
    // The old wiring is gone: a's own media no longer reaches b (b was bridged to a).
    const bFromA = b.peer.from('video', a.peer.tag).length;
    await sleep(300);
    assert.ok(b.peer.from('video', a.peer.tag).length - bFromA <= 1, 'no leftover bridge');
    for (const s of [a, b]) { await client.destroySession(s.id); await s.peer.close(); }
  });
});

describe('update_media', () => {
  it('mute_video cuts exactly video from this client, unmute restores it', async () => {
    const { id, peer } = await connectParked(client, { type: 'echo' });
    peer.startSending();
    await receives(peer, 'video', peer.tag);
    await client.updateMedia(id, { mute_video: true });
    await sleep(200);
    const v = peer.rx.video.length;
    const au = peer.rx.audio.length;
    await sleep(500);
    assert.ok(peer.rx.video.length - v <= 1, 'video stopped');
    assert.ok(peer.rx.audio.length - au >= 10, 'audio still flows');
    assert.equal((await client.getInfo(id)).mute_video, true);
    const pli = peer.pliReceived;
    await client.updateMedia(id, { mute_video: false });
    await receives(peer, 'video', peer.tag);
    await eventually(() => peer.pliReceived > pli, 3000, 'keyframe request on unmute');
    assert.equal((await client.getInfo(id)).mute_video, false);
    await client.updateMedia(id, { mute_audio: true, mute_data: true });
    await sleep(200);
    const a2 = peer.rx.audio.length;
    await sleep(400);
    assert.ok(peer.rx.audio.length - a2 <= 1, 'audio muted');
    peer.send('muted message');
    await sleep(300);
    assert.ok(!peer.messages.includes('muted message'), 'data muted');
    await client.destroySession(id);
    await peer.close();
  });

  it('mute at creation applies from the start', async () => {
    const { id, peer } = await connectParked(client, { type: 'echo', mute_audio: true });
    peer.startSending();
    await receives(peer, 'video', peer.tag);
    assert.equal(peer.from('audio', peer.tag).length, 0);
    await client.destroySession(id);
    await peer.close();
  });

  it('bitrate limits what the client sends (REMB toward it) and shows in get_info', async () => {
    const { id, peer } = await connectParked(client, { type: 'echo', bitrate: 500000 });
    peer.startSending();
    await eventually(() => peer.rembReceived.length > 0, 5000, 'REMB at 500 kbps');
    assert.ok(Math.abs(peer.rembReceived.at(-1)! - 500000) < 500000 * 0.01, `REMB ${peer.rembReceived.at(-1)}`);
    await client.updateMedia(id, { bitrate: 128000 });
    await eventually(() => peer.rembReceived.at(-1)! < 130000, 5000, 'REMB at 128 kbps');
    assert.ok(peer.rembReceived.at(-1)! > 126000);
    assert.equal((await client.getInfo(id)).bitrate, 128000);
    await client.destroySession(id);
    await peer.close();
  });
});
