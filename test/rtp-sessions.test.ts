// Plain RTP sessions (sdp_type "rtp", what SIP phones speak) through the API, with a UDP test
// peer standing in for the phone: answers and offers, echo, latching, hold by re-offer,
// RTCP, garbage at the media ports, refusals that name the problem.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { startTestServer, connectClient, eventually } from './helpers/server.js';
import { RtpPeer, mediaOf, bind } from './helpers/rtp-peer.js';
import { connectParked } from './helpers/flows.js';
import { parseRtpSdp, chooseCodecs, writeRtpSdp, RTP_CODECS } from '../src/engine/local/graph/rtp-sdp.js';
import type { Server } from '../src/main.js';
import type { NkMediaClient } from '../src/client/index.js';
import { NkMediaError as ClientError } from '../src/client/index.js';

const PCMU = { pt: 0, name: 'PCMU', rate: 8000 };
const DTMF = { pt: 101, name: 'telephone-event', rate: 8000, fmtp: '0-16' };
const ulawPayload = (i: number) => Buffer.alloc(160, (i * 7) & 0xff);

describe('RTP SDP', () => {
  it('parses static payload types, telephone-event, ptime, rtcp and direction', () => {
    const d = parseRtpSdp('v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=rtcp:4005\r\na=ptime:30\r\na=sendonly\r\n');
    const m = d.media[0]!;
    assert.ok('codecs' in m);
    assert.deepEqual(m.codecs.map((c) => c.name), ['PCMA', 'PCMU', 'telephone-event']);
    assert.equal(m.address, '10.0.0.1');
    assert.equal(m.rtcpPort, 4005);
    assert.equal(m.direction, 'sendonly');
    assert.equal(m.ptime, 30);
    assert.deepEqual(chooseCodecs(m.codecs, ['opus', 'PCMU', 'PCMA']).map((c) => c.name), ['PCMA', 'telephone-event'], "the offerer's order wins");
  });

  it('treats c=0.0.0.0 as hold and skips what it cannot do', () => {
    const d = parseRtpSdp('v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 4000 RTP/AVP 18 0\r\nm=video 4002 RTP/SAVP 96\r\na=rtpmap:96 VP8/90000\r\nm=video 4004 RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\n');
    const [a, v1, v2] = d.media;
    assert.ok(a && 'codecs' in a);
    assert.equal(a.direction, 'sendonly');
    assert.deepEqual(a.codecs.map((c) => c.name), ['PCMU'], 'G729 (18) is not ours');
    assert.ok(v1 && 'unsupported' in v1, 'SRTP is refused per m-line');
    assert.ok(v2 && 'codecs' in v2 && v2.codecs.length === 0, 'H264 without packetization-mode=1 is not taken');
  });

  it('names the problem in bad SDPs', () => {
    assert.throws(() => parseRtpSdp('hello'), /v=0/);
    assert.throws(() => parseRtpSdp('v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n'), /no connection address/);
    assert.throws(() => parseRtpSdp('v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 host.example\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n'), /not an IPv4/);
    assert.throws(() => parseRtpSdp('v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 4000 RTP/AVP abc\r\n'), /payload type/);
  });

  it('writes offers that parse back to the same codecs', () => {
    const codecs = [RTP_CODECS.opus, RTP_CODECS.PCMU, RTP_CODECS['telephone-event']];
    const sdp = writeRtpSdp('192.0.2.1', 7, 1, [{ kind: 'audio', port: 30000, direction: 'sendrecv', codecs }]);
    const m = parseRtpSdp(sdp).media[0]!;
    assert.ok('codecs' in m);
    assert.deepEqual(m.codecs.map((c) => `${c.name}/${c.payloadType}`), ['opus/111', 'PCMU/0', 'telephone-event/101']);
    assert.equal(m.rtcpPort, 30001);
  });
});

describe('plain RTP sessions', () => {
  let server: Server;
  let client: NkMediaClient;
  before(async () => {
    server = await startTestServer({ rtp: { latching: 'auto' } });
    client = await connectClient(server);
  });
  after(async () => { await client.close(); await server.close(); });

  it('answers an RTP offer with RTP/AVP and echoes the audio back, numbered as its own stream', async () => {
    const peer = await RtpPeer.open();
    try {
      const reply = await client.createSession({ type: 'echo', offer: { sdp: peer.sdp([PCMU, DTMF]), sdp_type: 'rtp' }, wait_reply: true });
      const answer = reply.answer!;
      assert.equal(answer.sdp_type, 'rtp');
      assert.equal(answer.trickle_ice, false);
      assert.doesNotMatch(answer.sdp, /ice-ufrag|fingerprint|a=candidate/);
      const m = mediaOf(answer.sdp);
      assert.equal(m.address, '127.0.0.1');
      assert.deepEqual([...m.pts.keys()].sort(), ['PCMU', 'TELEPHONE-EVENT']);
      assert.equal(m.port % 2, 0, 'RTP on an even port');
      await peer.send(m, { pt: 0, count: 40, samples: 160, payload: ulawPayload });
      await eventually(() => peer.rx.length >= 35, 3000, 'echoed packets');
      const got = peer.rx.filter((p) => p.pt === 0);
      assert.ok(got.length >= 35);
      assert.ok(got.every((p) => p.payload.length === 160));
      assert.deepEqual(got[5]!.payload, ulawPayload(5), 'the payload comes back untouched (same codec both ways)');
      assert.notEqual(got[0]!.ssrc, 0x1234abcd, 'sent with the server\'s own SSRC');
      for (let i = 1; i < got.length; i++) assert.equal((got[i]!.seq - got[i - 1]!.seq) & 0xffff, 1);
      const { stats } = await client.session('get_stats', { session_id: reply.session_id });
      assert.ok(stats.inbound.audio.packets >= 35 && stats.outbound.audio.packets >= 35, JSON.stringify(stats));
      await client.destroySession(reply.session_id);
    } finally {
      await peer.close();
    }
  });

  it('offers RTP when asked (sdp_type at create) and takes the answer of a phone', async () => {
    const peer = await RtpPeer.open();
    try {
      const reply = await client.createSession({ type: 'echo', sdp_type: 'rtp', wait_reply: true } as never);
      const offer = reply.offer!;
      assert.equal(offer.sdp_type, 'rtp');
      const m = mediaOf(offer.sdp);
      for (const c of ['OPUS', 'G722', 'PCMU', 'PCMA', 'TELEPHONE-EVENT']) assert.ok(m.pts.has(c), `offer has ${c}`);
      assert.ok(mediaOf(offer.sdp, 'video').pts.has('VP8'), 'and video');
      // The phone answers PCMU only and rejects video.
      const answer = peer.sdp([PCMU]) + 'm=video 0 RTP/AVP 96\r\n';
      await client.setAnswer(reply.session_id, { sdp: answer, sdp_type: 'rtp' });
      await peer.send(m, { pt: 0, count: 30, samples: 160, payload: ulawPayload });
      await eventually(() => peer.rx.filter((p) => p.pt === 0).length >= 25, 3000, 'echo after our offer');
      await client.destroySession(reply.session_id);
    } finally {
      await peer.close();
    }
  });

  it('latches onto a phone behind NAT (packets from another IP than its SDP says)', async () => {
    const peer = await RtpPeer.open();
    // The phone announces 127.0.0.1:<peer port> but its packets come from 127.0.0.2 (a NAT).
    const natted = await bind('127.0.0.2', 0);
    const rx: Buffer[] = [];
    natted.on('message', (m) => rx.push(m));
    try {
      const reply = await client.createSession({ type: 'echo', offer: { sdp: peer.sdp([PCMU]), sdp_type: 'rtp' }, wait_reply: true });
      const m = mediaOf(reply.answer!.sdp);
      await peer.send(m, { pt: 0, count: 30, samples: 160, payload: ulawPayload, from: natted });
      await eventually(() => rx.length >= 20, 3000, 'echo at the NAT address');
      assert.equal(peer.rx.length, 0, 'nothing went to the SDP address once latched');
      await client.destroySession(reply.session_id);
    } finally {
      natted.close();
      await peer.close();
    }
  });

  it('drops packets from strangers and survives garbage at the media ports', async () => {
    const peer = await RtpPeer.open();
    const stranger = await bind('127.0.0.1', 0);
    try {
      const reply = await client.createSession({ type: 'echo', offer: { sdp: peer.sdp([PCMU]), sdp_type: 'rtp' }, wait_reply: true });
      const m = mediaOf(reply.answer!.sdp);
      // Garbage of every size, RTP with an unnegotiated payload type, RTCP garbage.
      for (let i = 0; i < 300; i++) {
        const junk = Buffer.from(Array.from({ length: (i * 37) % 1400 }, (_, j) => (i * 31 + j * 17) & 0xff));
        stranger.send(junk, m.port, '127.0.0.1');
        stranger.send(junk, m.port + 1, '127.0.0.1');
      }
      const badPt = Buffer.alloc(172);
      badPt[0] = 0x80; badPt[1] = 99;
      stranger.send(badPt, m.port, '127.0.0.1');
      await peer.send(m, { pt: 0, count: 25, samples: 160, payload: ulawPayload });
      await eventually(() => peer.rx.length >= 20, 3000, 'echo after garbage');
      assert.ok(peer.rx.every((p) => p.pt === 0 && p.payload.length === 160), 'only the real stream was echoed');
      await client.destroySession(reply.session_id);
    } finally {
      stranger.close();
      await peer.close();
    }
  });

  it('sends RTCP reports and follows a re-offer to hold (sendonly) and back', async () => {
    const peer = await RtpPeer.open();
    try {
      const reply = await client.createSession({ type: 'echo', offer: { sdp: peer.sdp([PCMU]), sdp_type: 'rtp' }, wait_reply: true });
      const m = mediaOf(reply.answer!.sdp);
      const session = server.services.sessions.lookup(reply.session_id)!;
      // Hold: the phone says sendonly; we must answer recvonly and stop sending.
      const holdAnswer = await session.reoffer(peer.sdp([PCMU], { direction: 'sendonly' }));
      assert.equal(mediaOf(holdAnswer).direction, 'recvonly');
      assert.equal(mediaOf(holdAnswer).port, m.port, 'same port on re-offer');
      await peer.send(m, { pt: 0, count: 15, samples: 160, payload: ulawPayload });
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(peer.rx.length, 0, 'nothing sent while held');
      const resume = await session.reoffer(peer.sdp([PCMU]));
      assert.equal(mediaOf(resume).direction, 'sendrecv');
      await peer.send(m, { pt: 0, count: 20, samples: 160, payload: ulawPayload });
      await eventually(() => peer.rx.length >= 15, 3000, 'echo after resume');
      await eventually(() => peer.rtcpRx.some((r) => r.data[1] === 200), 7000, 'an RTCP sender report');
      await client.destroySession(reply.session_id);
    } finally {
      await peer.close();
    }
  });

  it('refuses what plain RTP cannot do, naming it', async () => {
    const peer = await RtpPeer.open();
    try {
      const bad = async (req: Record<string, unknown>, re: RegExp) => {
        await assert.rejects(client.createSession(req as never), (e: unknown) => e instanceof ClientError && re.test(`${e.error} ${e.message}`));
      };
      await bad({ type: 'park', offer: { sdp: peer.sdp([PCMU]).replace('RTP/AVP', 'UDP/TLS/RTP/SAVPF'), sdp_type: 'rtp' } }, /not plain RTP/);
      await bad({ type: 'park', offer: { sdp: peer.sdp([PCMU]), sdp_type: 'rtp' }, no_offer_trickle_ice: true }, /no ICE/);
      await bad({ type: 'park', offer: { sdp: 'v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n', sdp_type: 'rtp' } }, /connection address/);
      // Only G.729: nothing we support.
      await bad({ type: 'park', offer: { sdp: peer.sdp([{ pt: 18, name: 'G729', rate: 8000 }]), sdp_type: 'rtp' }, wait_reply: true }, /codec we support/);
      const ok = await client.createSession({ type: 'park', offer: { sdp: peer.sdp([PCMU]), sdp_type: 'rtp' }, wait_reply: true });
      await assert.rejects(client.setCandidate(ok.session_id, { candidate: 'candidate:1 1 udp 1 127.0.0.1 9 typ host', sdpMLineIndex: 0 }), /no ICE candidates/);
      await client.destroySession(ok.session_id);
    } finally {
      await peer.close();
    }
  });

  it('refuses a bridge between different video codecs, and bridges audio across codecs', async () => {
    const webrtc = await connectParked(client);
    const peer = await RtpPeer.open();
    try {
      const h264 = { pt: 97, name: 'H264', rate: 90000, fmtp: 'packetization-mode=1;profile-level-id=42e01f' };
      const sdp = peer.sdp([PCMU]) + `m=video ${peer.port + 2} RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\na=fmtp:97 ${h264.fmtp}\r\na=sendrecv\r\n`;
      const rtp = await client.createSession({ type: 'park', offer: { sdp, sdp_type: 'rtp' }, wait_reply: true });
      assert.match(rtp.answer!.sdp, /H264\/90000/);
      await assert.rejects(client.setType(rtp.session_id, 'bridge', { peer_id: webrtc.id }), (e: unknown) => e instanceof ClientError && e.code === 300005 && /video\/h264.*video\/vp8|video\/vp8.*video\/h264/.test(e.error));
      await client.destroySession(rtp.session_id);
    } finally {
      await webrtc.peer.close();
      await client.destroySession(webrtc.id).catch(() => undefined);
      await peer.close();
    }
  });

  it('releases its ports when the session ends', async () => {
    const before = (await server.engine.counters()).udpSockets;
    const peer = await RtpPeer.open();
    const reply = await client.createSession({ type: 'park', offer: { sdp: peer.sdp([PCMU]), sdp_type: 'rtp' }, wait_reply: true });
    const port = mediaOf(reply.answer!.sdp).port;
    await client.destroySession(reply.session_id);
    await peer.close();
    await eventually(async () => (await server.engine.counters()).udpSockets <= before, 2000, 'sockets released');
    // The port is free again: we can bind it ourselves.
    const s = dgram.createSocket('udp4');
    await new Promise<void>((resolve, reject) => { s.once('error', reject); s.bind(port, '127.0.0.1', () => resolve()); });
    s.close();
  });
});
