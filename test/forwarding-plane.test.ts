// The native forwarding plane (native/forward.c, src/engine/local/accel/forwarding-plane.ts): bridged
// media is forwarded natively, with counters, receiver reports and sender reports kept true;
// a recorder takes a stream back to JS and stopping it hands it back, with one continuous
// stream at the far end; losses from a client are NACKed. The same media tests run on the JS
// path alone in test/js-path.test.ts.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSocket } from 'node:dgram';
import type { GenericNack } from 'werift';
import { startTestServer, connectClient, eventually } from './helpers/server.js';
import { connectParked } from './helpers/flows.js';
import type { Rx, TestPeer } from './helpers/peer.js';
import type { Server } from '../src/main.js';
import type { NkMediaClient } from '../src/client/index.js';
import { forwardingPlane } from '../src/engine/local/accel/forwarding-plane.js';

const plane = forwardingPlane();
const skip = plane ? false : 'the native addon is not built (the JS path is tested in js-path.test.ts)';

let server: Server;
let client: NkMediaClient;
const dir = mkdtempSync(join(tmpdir(), 'nkmedia-plane-'));
before(async () => {
  server = await startTestServer({ recordings_dir: dir });
  client = await connectClient(server);
});
after(async () => { await client.close(); await server.close(); rmSync(dir, { recursive: true, force: true }); });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const counters = () => plane!.counters();

function assertContinuous(packets: Rx[]): void {
  assert.ok(packets.length > 0);
  assert.equal(new Set(packets.map((p) => p.ssrc)).size, 1, 'one SSRC');
  for (let i = 1; i < packets.length; i++) {
    const d = (packets[i]!.seq - packets[i - 1]!.seq + 0x10000) & 0xffff;
    assert.equal(d, 1, `sequence continuous at packet ${i}: ${packets[i - 1]!.seq} -> ${packets[i]!.seq}`);
  }
}

async function bridge(): Promise<{ a: { id: string; peer: TestPeer }; b: { id: string; peer: TestPeer } }> {
  const a = await connectParked(client);
  const b = await connectParked(client, { type: 'bridge', peer_id: a.id });
  return { a, b };
}

describe('native forwarding plane', { skip }, () => {
  it('forwards a bridge natively; counters, receiver and sender reports stay true', async () => {
    const { a, b } = await bridge();
    a.peer.startSending({ videoPps: 100 });
    b.peer.startSending({ videoPps: 100 });
    await eventually(() => b.peer.from('video', a.peer.tag).length > 20 && a.peer.from('video', b.peer.tag).length > 20, 5000, 'media both ways');
    const c0 = counters();
    await sleep(1500);
    const c1 = counters();
    // 2 clients x 150 packets/s for 1.5 s: nearly all forwarded without JS.
    const forwarded = c1.forwarded - c0.forwarded;
    assert.ok(forwarded > 300, `the plane forwarded ${forwarded} packets`);
    assert.ok(c1.toJs - c0.toJs < forwarded / 5, `only control traffic reaches JS (${c1.toJs - c0.toJs} vs ${forwarded} forwarded)`);
    assert.equal(c1.authFailures, c0.authFailures);

    a.peer.stopSending();
    b.peer.stopSending();
    await sleep(300);
    // get_stats counts what the plane moved: b sent what a received, through the server.
    const sa = (await client.getStats(a.id)).stats;
    const sb = (await client.getStats(b.id)).stats;
    const aGot = a.peer.received.video;
    assert.ok(Math.abs(sa.outbound.video.packets - aGot) <= 2, `a's outbound video ${sa.outbound.video.packets} vs received ${aGot}`);
    assert.ok(Math.abs(sb.inbound.video.packets - sa.outbound.video.packets) <= 2, `b in ${sb.inbound.video.packets} vs a out ${sa.outbound.video.packets}`);
    assert.equal(sb.inbound.video.packets_lost, 0, 'no loss on loopback (receive statistics from the plane)');
    // What the clients hear back in RTCP: receiver reports with no loss, sender reports counting what they got.
    await eventually(() => {
      const sender = a.peer.video!.sender as unknown as { remotePacketsLost?: number };
      return sender.remotePacketsLost === 0;
    }, 4000, 'a receiver report about a\'s video, no loss');
    const rr = a.peer.video!.receiver as unknown as { remotePacketCountBySsrc: Record<number, number> };
    await eventually(() => Object.values(rr.remotePacketCountBySsrc).some((n) => n > 0 && n <= a.peer.received.video + 2), 4000, 'a sender report counting the video a received');
    // The clients' own reports were read by the plane (not werift) and still reach get_stats:
    // loss, jitter and a round-trip time from LSR/DLSR.
    assert.ok(counters().reports > c0.reports, 'report-only SRTCP read natively');
    assert.ok(counters().reportsSent > c0.reportsSent, 'our reports sent by the plane');
    const out = await eventually(async () => {
      const o = (await client.getStats(a.id)).stats.outbound.video;
      return o.rtt_ms !== undefined ? o : undefined;
    }, 5000, 'a round-trip time from the client\'s reports');
    assert.equal(out.packets_lost, 0);
    assert.ok(out.jitter_ms !== undefined && out.jitter_ms >= 0, `jitter ${out.jitter_ms}`);
    assert.ok(out.rtt_ms !== undefined && out.rtt_ms >= 0 && out.rtt_ms < 1000, `rtt ${out.rtt_ms}`);
    for (const s of [a, b]) { await client.destroySession(s.id); await s.peer.close(); }
  });

  it('a recorder takes the stream back to JS; stopping it hands it back; one continuous stream throughout', async () => {
    const { a, b } = await bridge();
    a.peer.startSending({ videoPps: 100 });
    await eventually(() => b.peer.from('video', a.peer.tag).length > 20, 5000, 'media a -> b');
    await client.session('recorder_action', { session_id: a.id, action: 'start' });
    await sleep(300);
    const c0 = counters();
    await sleep(1000);
    const c1 = counters();
    // While recording, a's packets come through JS (to the recorder and to b).
    assert.ok(c1.toJs - c0.toJs > 100, `recording: ${c1.toJs - c0.toJs} packets through JS`);
    await client.session('recorder_action', { session_id: a.id, action: 'stop' });
    await sleep(300);
    const c2 = counters();
    await sleep(1000);
    const c3 = counters();
    assert.ok(c3.forwarded - c2.forwarded > 100, `after stop: ${c3.forwarded - c2.forwarded} forwarded natively`);
    assert.ok(c3.toJs - c2.toJs < 50, `after stop: ${c3.toJs - c2.toJs} through JS`);
    a.peer.stopSending();
    await sleep(200);
    assertContinuous(b.peer.from('video', a.peer.tag));
    assertContinuous(b.peer.from('audio', a.peer.tag));
    for (const s of [a, b]) { await client.destroySession(s.id); await s.peer.close(); }
  });

  it('NACKs video lost on the way from a client', async () => {
    const { a, b } = await bridge();
    const nacked = new Set<number>();
    a.peer.video!.sender.onGenericNack.subscribe((n: GenericNack) => { for (const s of n.lost) nacked.add(s); });
    const dropped = new Set<number>();
    // Lose a few video packets once media flows natively (seq starts at 5001).
    a.peer.startSending({ videoPps: 100, dropVideo: (seq) => { if (seq >= 5150 && seq % 50 === 0 && seq < 5400) { dropped.add(seq); return true; } return false; } });
    await eventually(() => dropped.size >= 4, 6000, 'losses');
    await eventually(() => [...dropped].every((s) => nacked.has(s)), 3000, `NACKs for ${[...dropped].join(',')}`);
    assert.ok(b.peer.from('video', a.peer.tag).length > 100);
    a.peer.stopSending();
    for (const s of [a, b]) { await client.destroySession(s.id); await s.peer.close(); }
  });

  it('garbage sent to an attached socket is dropped; media keeps flowing', async () => {
    const { a, b } = await bridge();
    a.peer.startSending({ videoPps: 100 });
    await eventually(() => b.peer.from('video', a.peer.tag).length > 20, 5000, 'media a -> b');
    // The server's side of a's selected pair: where the plane reads a's packets.
    const pair = (a.peer.pc.iceTransports[0]!.connection as unknown as { nominated: { remoteAddr: [string, number] } }).nominated;
    const [host, port] = pair.remoteAddr;
    const c0 = counters();
    const attacker = createSocket('udp4');
    const ssrc = a.peer.video!.sender.ssrc;
    for (let i = 0; i < 300; i++) {
      if (i % 30 === 29) await sleep(20); // not faster than the socket's buffer takes them
      const kind = i % 6;
      let d: Buffer;
      if (kind === 0) d = Buffer.alloc(1 + (i % 11), i); // too short for anything
      else if (kind === 1) { d = Buffer.alloc(200, i); d[0] = 0x80; d[1] = 96; d.writeUInt32BE(ssrc, 8); } // RTP of a's SSRC, forged
      else if (kind === 2) { d = Buffer.alloc(60, i); d[0] = 0x80; d[1] = 200; } // SRTCP-looking
      else if (kind === 3) { d = Buffer.alloc(i < 30 ? 9000 : 300, i); d[0] = 0x80; d[1] = 96; d.writeUInt32BE(0x1000 + i, 8); } // some longer than the plane reads; forged SSRCs
      else if (kind === 4) { d = Buffer.alloc(40, i); d[0] = 0x90; d[1] = 0xff; d.writeUInt16BE(0xbede, 12); d.writeUInt16BE(0xffff, 14); } // extension past the end
      else d = Buffer.from(Array.from({ length: 100 }, (_, k) => (k * 37 + i) & 0xff));
      attacker.send(d, port, host);
    }
    await sleep(500);
    attacker.close();
    const c1 = counters();
    assert.ok(c1.authFailures - c0.authFailures >= 80, `forged RTP refused (${c1.authFailures - c0.authFailures})`);
    assert.ok(c1.truncated > c0.truncated, 'oversized datagram dropped');
    const before = b.peer.from('video', a.peer.tag).length;
    await eventually(() => b.peer.from('video', a.peer.tag).length > before + 50, 5000, 'media still flowing');
    a.peer.stopSending();
    for (const s of [a, b]) { await client.destroySession(s.id); await s.peer.close(); }
  });

  it('gives sockets and outputs back when sessions end', async () => {
    const before = counters();
    const { a, b } = await bridge();
    a.peer.startSending();
    await eventually(() => b.peer.from('video', a.peer.tag).length > 5, 5000, 'media');
    assert.equal(counters().sockets, before.sockets + 2);
    for (const s of [a, b]) { await client.destroySession(s.id); await s.peer.close(); }
    await eventually(() => counters().sockets === before.sockets && counters().outputs === before.outputs, 3000, 'plane empty again');
  });
});
