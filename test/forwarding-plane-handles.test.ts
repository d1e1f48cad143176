// The forwarding plane's handles (native/forward.c): a socket or output handle names its slot
// and that slot's generation, so once released it is refused everywhere, also after the slot
// was given to a new socket or output; a route still holding it forwards nothing there. And the
// plane demultiplexes RTCP from RTP by the same packet-type range as the TypeScript side
// (RFC 5761: 192-223).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { forwardingPlane, type PlaneBinding, type PlaneClient } from '../src/engine/local/accel/forwarding-plane.js';
import { native, NativeSrtpContext } from '../src/engine/local/accel/native-srtp.js';
import { udpHandle, type UdpHandle } from '../src/engine/local/accel/internals.js';
import { isMuxedRtcp, RTCP_MUX_FIRST, RTCP_MUX_LAST } from '../src/engine/local/graph/rtcp-mux.js';

const plane = forwardingPlane();
const skip = plane ? false : 'the native forwarding plane is not available';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function bound(): Promise<Socket> {
  const s = createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve));
  return s;
}

/** A bound socket the plane may read: libuv stops reading it (as PlaneAttachment does). */
async function attachable(): Promise<{ socket: Socket; handle: UdpHandle }> {
  const socket = await bound();
  const handle = udpHandle(socket)!;
  handle.recvStop();
  return { socket, handle };
}

/** An SRTP packet (roll-over counter 0) with the given second byte (marker bit and payload type). */
function srtp(ctx: NativeSrtpContext, ssrc: number, seq: number, secondByte: number): Buffer {
  const plain = Buffer.alloc(12 + 20, 0x55);
  plain[0] = 0x80;
  plain[1] = secondByte;
  plain.writeUInt16BE(seq, 2);
  plain.writeUInt32BE(seq * 3000, 4);
  plain.writeUInt32BE(ssrc, 8);
  return ctx.protectRtp(plain, 0);
}

describe('RTCP demultiplexing range', () => {
  it('is RFC 5761\'s 192-223 on the TypeScript side', () => {
    assert.equal(isMuxedRtcp(Buffer.from([0x80, 191])), false);
    assert.equal(isMuxedRtcp(Buffer.from([0x80, 192])), true);
    assert.equal(isMuxedRtcp(Buffer.from([0x80, 200])), true);
    assert.equal(isMuxedRtcp(Buffer.from([0x80, 223])), true);
    assert.equal(isMuxedRtcp(Buffer.from([0x80, 224])), false);
    assert.equal(isMuxedRtcp(Buffer.from([0x80])), false);
  });

  it('is the same in the addon', { skip: native ? false : 'the native addon is not built' }, () => {
    assert.deepEqual([...native!.rtcpMuxRange], [RTCP_MUX_FIRST, RTCP_MUX_LAST]);
  });
});

describe('forwarding plane handles', { skip }, () => {
  let b: PlaneBinding;
  let ctx: NativeSrtpContext;
  let rx: Socket;
  let tx: Socket;
  const received: Buffer[] = [];
  before(async () => {
    b = plane!.b;
    ctx = NativeSrtpContext.create(1, Buffer.alloc(16, 7), Buffer.alloc(14, 9), Buffer.alloc(20, 5));
    rx = await bound();
    rx.on('message', (m) => received.push(m));
    tx = await bound();
  });
  after(() => { rx.close(); tx.close(); });

  it('a released output\'s handle is refused once its slot is reused; a route holding it forwards nothing', async () => {
    const { socket, handle } = await attachable();
    const sock = b.planeAttach(handle.fd, ctx.handle, null);
    const o1 = b.planeAddOutput(sock, ctx.handle, 0x1111, 96, 1);
    assert.ok(b.planeRemoveOutput(o1));
    const o2 = b.planeAddOutput(sock, ctx.handle, 0x2222, 96, 1);
    assert.equal(o2 & 0xffff, o1 & 0xffff, 'the slot is reused');
    assert.notEqual(o2, o1, 'with a new generation');

    const stats = new Float64Array(17);
    assert.equal(b.planeOutputStats(o1, stats), 0);
    assert.throws(() => b.planeSetDest(o1, '127.0.0.1', 9), /unknown output/);
    assert.throws(() => b.planeSeedOutput(o1, 0, 0, 0, -1, 0, 0), /unknown output/);
    assert.equal(b.planeSend(o1, 1, 1, 1, 1, 0, Buffer.alloc(10), 90000, undefined), -1);
    assert.equal(b.planeRetransmit(o1, [1]), 0);
    assert.equal(b.planeRemoveOutput(o1), undefined);
    assert.equal(b.planeOutputStats(o2, stats), 1, 'the output now in the slot is untouched');

    // A route decided before the release still names o1: nothing reaches o2's destination.
    b.planeSetDest(o2, '127.0.0.1', rx.address().port);
    const ssrc = 0xabcdef;
    b.planeSetRoute(sock, ssrc, 100, 1, 90000, Int32Array.of(o1));
    const to = socket.address().port;
    received.length = 0;
    for (let seq = 1; seq <= 5; seq++) tx.send(srtp(ctx, ssrc, seq, 100), to, '127.0.0.1');
    await sleep(200);
    assert.equal(received.length, 0, 'a stale route forwards nothing');
    assert.equal(b.planeOutputStats(o2, stats), 1);
    assert.equal(stats[0], 0, 'o2 sent nothing');

    // The same route to o2 forwards (the packets and the socket were fine).
    b.planeSetRoute(sock, ssrc, 100, 1, 90000, Int32Array.of(o2));
    for (let seq = 6; seq <= 10; seq++) tx.send(srtp(ctx, ssrc, seq, 100), to, '127.0.0.1');
    for (let i = 0; i < 50 && received.length < 5; i++) await sleep(20);
    assert.equal(received.length, 5);

    b.planeRemoveOutput(o2);
    b.planeDetach(sock);
    handle.recvStart();
    socket.close();
  });

  it('a detached socket\'s handle is refused once its slot is reused, and so are its outputs', async () => {
    const a = await attachable();
    const sockA = b.planeAttach(a.handle.fd, ctx.handle, null);
    const out = b.planeAddOutput(sockA, ctx.handle, 0x3333, 96, 0);
    b.planeSetDest(out, '127.0.0.1', rx.address().port);
    b.planeDetach(sockA);
    const c = await attachable();
    const sockB = b.planeAttach(c.handle.fd, ctx.handle, null);
    assert.equal(sockB & 0xffff, sockA & 0xffff, 'the slot is reused');
    assert.notEqual(sockB, sockA);

    assert.throws(() => b.planeSeedInput(sockA, 1, 0, 0, 0, 90000, 0), /unknown socket/);
    assert.throws(() => b.planeAddOutput(sockA, ctx.handle, 1, 96, 0), /unknown socket/);
    assert.throws(() => b.planeSetRoute(sockA, 1, 96, 1, 90000, null), /unknown socket/);
    assert.equal(b.planeInputStats(sockA, new Float64Array(25 * 16)), 0);
    assert.equal(b.planeSeedInput(sockB, 1, 0, 0, 0, 90000, 0), 1, 'the new socket works');
    // The old socket's output does not send through the socket that took its slot.
    received.length = 0;
    assert.equal(b.planeSend(out, 1, 1, 1, 1, 0, Buffer.alloc(10), 90000, undefined), -1);
    await sleep(50);
    assert.equal(received.length, 0);

    b.planeRemoveOutput(out);
    b.planeDetach(sockB);
    for (const x of [a, c]) { x.handle.recvStart(); x.socket.close(); }
  });

  it('takes 192-223 in the second byte for RTCP, anything else for RTP', async () => {
    const { socket, handle } = await attachable();
    const got: { second: number; decrypted: boolean }[] = [];
    const client: PlaneClient = {
      datagram: (buf, _address, _port, decrypted) => { got.push({ second: buf[1]!, decrypted }); },
      lost: () => undefined, late: () => undefined, sync: () => undefined,
    };
    const sock = plane!.attach(handle.fd, ctx.handle, null, client);
    const to = socket.address().port;
    // RTP with the marker bit: 0x80 | payload type. 191 and 224 are RTP; 192, 209 and 223 RTCP
    // (handed on as received, not decrypted as RTP).
    const seconds = [191, 192, 209, 223, 224];
    seconds.forEach((second, i) => tx.send(srtp(ctx, 0x5000 + i, 1, second), to, '127.0.0.1'));
    for (let i = 0; i < 50 && got.length < seconds.length; i++) await sleep(20);
    assert.deepEqual(got.sort((x, y) => x.second - y.second), seconds.map((second) => ({ second, decrypted: second < 192 || second > 223 })));
    plane!.detach(sock);
    handle.recvStart();
    socket.close();
  });
});
