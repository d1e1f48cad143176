// Media on worker processes and remote media servers: placement, pipes between nodes (rooms
// spread over nodes, bridges across them), a worker killed with SIGKILL, remote nodes with and
// without the right token, and the node list.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, connectClient, eventually } from './helpers/server.js';
import { connectParked, hearEachOther, receives } from './helpers/flows.js';
import { startMediaNode, type MediaNode as TestNode } from './helpers/remote-node.js';
import type { TestPeer } from './helpers/peer.js';
import type { Server } from '../src/main.js';
import type { EventData, NkMediaClient } from '../src/client/index.js';
import { hashPassword } from '../src/access/auth.js';


const nodeList = (c: NkMediaClient) => c.request<Record<string, any>[]>('media', 'node', 'get_list', {});

describe('two workers', () => {
  let server: Server;
  let admin: NkMediaClient;
  let alice: NkMediaClient;
  const events: EventData[] = [];
  before(async () => {
    server = await startTestServer({ media: { workers: 2 }, rooms: { max_listeners_per_node: 2 } });
    admin = await connectClient(server, 'admin');
    alice = await connectClient(server, 'alice');
    alice.onEvent((e) => events.push(e));
  });
  after(async () => {
    await alice?.close();
    await admin?.close();
    await server?.close();
  });

  it('lists its workers to admins only; sessions name their node', async () => {
    const list = await nodeList(admin);
    assert.deepEqual(list.map((n) => [n.node_id, n.kind, n.state]), [['worker-1', 'worker', 'up'], ['worker-2', 'worker', 'up']]);
    for (const n of list) {
      assert.ok(Number.isInteger(n.pid) && n.pid !== process.pid, 'a process of its own');
      assert.match(n.address, /^ws:\/\/127\.0\.0\.1:\d+\/kurento$/, 'on loopback');
    }
    await assert.rejects(nodeList(alice), (e: { code: number }) => e.code === 100030);
    const a = await connectParked(alice);
    const b = await connectParked(alice);
    const [ia, ib] = await Promise.all([alice.getInfo(a.id), alice.getInfo(b.id)]);
    assert.notEqual(ia.node_id, ib.node_id, 'two new sessions go to the two least loaded nodes');
    await eventually(async () => (await nodeList(admin)).every((n) => n.sessions === 1), 3000, 'each node counts its session');
    await alice.destroySession(a.id);
    await alice.destroySession(b.id);
    await Promise.all([a.peer.close(), b.peer.close()]);
  });

  it('keeps a WebRTC endpoint and a pass-through made ahead on each node for the next sessions, outside the counters', async () => {
    const raw = async () => Promise.all(server.nodes!.engine.nodes.map(async (n) => (await n.engine.counters()).elements));
    // Two of each kind per node, made when the node came up; they are no one's elements.
    await eventually(async () => (await raw()).every((n) => n === 4), 3000, 'four spares on each node');
    assert.equal((await server.engine.counters()).elements, 0);
    const taken = server.nodes!.engine.spares.taken;
    const a = await connectParked(alice);
    assert.equal(server.nodes!.engine.spares.taken, taken + 2, 'its endpoint and pass-through were spares');
    const node = (await alice.getInfo(a.id)).node_id as string;
    const i = server.nodes!.engine.nodes.findIndex((n) => n.id === node);
    // The session took a spare of each kind (its two elements), and the stock is made up again.
    await eventually(async () => (await raw())[i] === 6, 3000, 'the stock refilled next to the session\'s two elements');
    assert.equal((await server.engine.counters()).elements, 2, 'the session\'s endpoint and pass-through');
    await alice.destroySession(a.id);
    await a.peer.close();
    await eventually(async () => (await raw())[i] === 4 && (await server.engine.counters()).elements === 0, 3000, 'back to the spares');
  });

  it('a bridge across the two nodes carries audio and video both ways through a pipe', async () => {
    const a = await connectParked(alice);
    const b = await connectParked(alice);
    const [ia, ib] = await Promise.all([alice.getInfo(a.id), alice.getInfo(b.id)]);
    assert.notEqual(ia.node_id, ib.node_id);
    await alice.setType(b.id, 'bridge', { peer_id: a.id });
    a.peer.startSending();
    b.peer.startSending();
    await hearEachOther(a.peer, b.peer);
    assert.equal(server.nodes!.engine.pipes.size, 2, 'one pipe each way');
    // Back to park: the pipes close.
    await alice.setType(b.id, 'park');
    await eventually(() => server.nodes!.engine.pipes.size === 0, 3000, 'pipes closed');
    await alice.destroySession(a.id);
    await alice.destroySession(b.id);
    await Promise.all([a.peer.close(), b.peer.close()]);
  });

  it('a room spreads its listeners over the nodes, two per node; each hears the publisher; one pipe per node', async () => {
    const pub = await connectParked(alice, { type: 'publish' });
    const room = (await alice.getInfo(pub.id)).room_id as string;
    // Like a real encoder, the publisher answers a keyframe request with a keyframe.
    pub.peer.startSending({ keyframeOnPli: true });
    const listeners: { id: string; peer: TestPeer }[] = [];
    for (let i = 0; i < 6; i++) listeners.push(await connectParked(alice, { type: 'listen', publisher_id: pub.id, room_id: room }));
    const nodes = await Promise.all(listeners.map(async (l) => (await alice.getInfo(l.id)).node_id as string));
    const pubNode = (await alice.getInfo(pub.id)).node_id as string;
    const onPub = nodes.filter((n) => n === pubNode).length;
    assert.equal(onPub, 2, `two listeners with the publisher (${nodes.join(', ')})`);
    assert.equal(new Set(nodes).size, 2, 'the others on the second node');
    for (const l of listeners) {
      await receives(l.peer, 'video', pub.peer.tag);
      await receives(l.peer, 'audio', pub.peer.tag);
    }
    assert.equal(server.nodes!.engine.pipes.size, 1, 'the publisher reaches the other node once');
    // The pipe's ends are WebRTC endpoints: each worker's native plane forwards the room (the
    // publisher's to its two listeners and the pipe, the other's from the pipe to its four).
    const workers = server.nodes!.engine.nodes;
    const before = await Promise.all(workers.map((n) => n.engine.counters()));
    await new Promise((r) => setTimeout(r, 1000));
    const after = await Promise.all(workers.map((n) => n.engine.counters()));
    for (let i = 0; i < workers.length; i++) {
      const forwarded = after[i]!.plane!.forwarded - before[i]!.plane!.forwarded;
      const toJs = after[i]!.plane!.toJs - before[i]!.plane!.toJs;
      assert.ok(forwarded > 100 && forwarded > 5 * toJs, `${workers[i]!.id}: ${forwarded} packets forwarded natively, ${toJs} through JavaScript`);
    }
    const info = await admin.request<Record<string, any>>('media', 'room', 'get_info', { room_id: room });
    assert.equal(info.node_id, pubNode);
    assert.deepEqual([...info.nodes].sort(), ['worker-1', 'worker-2']);
    // A late listener on the far node: its keyframe request crosses the pipe to the publisher,
    // and the keyframe comes back through it.
    const pli = pub.peer.pliReceived;
    const late = await connectParked(alice, { type: 'listen', publisher_id: pub.id, room_id: room });
    assert.notEqual((await alice.getInfo(late.id)).node_id, pubNode);
    await eventually(() => pub.peer.pliReceived > pli, 5000, 'the late listener\'s keyframe request reaches the publisher');
    await eventually(() => late.peer.from('video', pub.peer.tag).some((p) => p.keyframe), 8000, 'a keyframe reaches the late listener');
    // Video the far listener loses: it NACKs, and the packets come again (answered on its node,
    // which had them through the pipe; a loss on the pipe itself is NACKed by the pipe's end).
    const dropped = new Set<number>();
    const receiver = late.peer.video!.receiver as unknown as { handleRtpBySsrc: (p: { header: { sequenceNumber: number } }, x: unknown) => void };
    const handle = receiver.handleRtpBySsrc;
    receiver.handleRtpBySsrc = (p, x) => {
      const seq = p.header.sequenceNumber;
      if (dropped.size < 4 && seq % 20 === 0 && !dropped.has(seq)) { dropped.add(seq); return; }
      handle(p, x);
    };
    await eventually(() => dropped.size === 4, 5000, 'four video packets lost');
    await eventually(() => [...dropped].every((s) => late.peer.rx.video.some((r) => r.seq === s)), 5000,
      `retransmissions of ${[...dropped].join(', ')}`);
    receiver.handleRtpBySsrc = handle;
    // A far listener choosing another simulcast layer gets a pipe of that layer (the layer is
    // picked on the publisher's node); back to high, it shares the first pipe again.
    const pipes = () => server.nodes!.engine.pipes.list().map((p) => `${p.layer}:${p.sinks}`).sort();
    assert.deepEqual(pipes(), ['high:5']);
    await alice.updateMedia(late.id, { video_layer: 'low' });
    assert.deepEqual(pipes(), ['high:4', 'low:1']);
    const got = late.peer.rx.audio.length;
    await eventually(() => late.peer.rx.audio.length > got + 20, 5000, 'media through the low pipe');
    await alice.updateMedia(late.id, { video_layer: 'high' });
    assert.deepEqual(pipes(), ['high:5']);
    // The publisher leaves: every listener on both nodes stops.
    await alice.destroySession(pub.id);
    for (const l of [...listeners, late]) {
      await eventually(() => events.some((e) => e.obj_id === l.id && e.type === 'destroyed'), 5000, `listener ${l.id} stopped`);
    }
    await eventually(() => server.nodes!.engine.pipes.size === 0, 3000, 'pipe closed');
    await Promise.all([pub, ...listeners, late].map((x) => x.peer.close()));
  });

  it('listeners joining at once are counted as they are placed: still two per node', async () => {
    const pub = await connectParked(alice, { type: 'publish' });
    const room = (await alice.getInfo(pub.id)).room_id as string;
    const pubNode = (await alice.getInfo(pub.id)).node_id as string;
    const listeners = await Promise.all(Array.from({ length: 4 }, () => connectParked(alice, { type: 'listen', publisher_id: pub.id, room_id: room })));
    const nodes = await Promise.all(listeners.map(async (l) => (await alice.getInfo(l.id)).node_id as string));
    assert.equal(nodes.filter((n) => n === pubNode).length, 2, nodes.join(', '));
    await alice.destroySession(pub.id);
    await Promise.all([pub, ...listeners].map((x) => x.peer.close()));
  });

  it('SIGKILL of one worker: its sessions stop with media_node_down, the other keeps its media, a new worker takes new sessions', async () => {
    const a = await connectParked(alice, { type: 'echo' });
    const b = await connectParked(alice, { type: 'echo' });
    const nodeOf = async (id: string) => (await alice.getInfo(id)).node_id as string;
    const [na, nb] = [await nodeOf(a.id), await nodeOf(b.id)];
    assert.notEqual(na, nb);
    a.peer.startSending();
    b.peer.startSending();
    await receives(a.peer, 'video', a.peer.tag);
    await receives(b.peer, 'video', b.peer.tag);
    const victim = (await nodeList(admin)).find((n) => n.node_id === na)!;
    process.kill(victim.pid, 'SIGKILL');
    const destroyed = await alice.waitEvent((e) => e.obj_id === a.id && e.type === 'destroyed', 10000);
    assert.equal(destroyed.body?.code, 303002);
    assert.match(String(destroyed.body?.reason), /^Media node down/);
    // The other worker's session goes on.
    await receives(b.peer, 'video', b.peer.tag, 20);
    assert.equal((await alice.getStatus(b.id)).state, 'ready');
    // A new worker comes up under the same name, with another process.
    const back = await eventually(async () => (await nodeList(admin)).find((n) => n.node_id === na && n.state === 'up'), 15000, 'the worker restarted');
    assert.notEqual(back.pid, victim.pid);
    const c = await connectParked(alice, { type: 'echo' });
    assert.equal(await nodeOf(c.id), na, 'the new, empty worker takes the next session');
    c.peer.startSending();
    await receives(c.peer, 'video', c.peer.tag);
    for (const x of [b, c]) await alice.destroySession(x.id);
    await Promise.all([a, b, c].map((x) => x.peer.close()));
    // Nothing is left in the main process: no session, no pool element.
    assert.equal(server.core.sessions.list({ user: 'admin', admin: true, connId: '' }).length, 0);
    assert.deepEqual((await nodeList(admin)).map((n) => n.elements), [0, 0]);
  });
});

describe('remote nodes', () => {
  let remote: TestNode;
  let server: Server;
  let admin: NkMediaClient;
  before(async () => {
    remote = await startMediaNode({ auth: { mode: 'static', users: [{ user: 'main', password_hash: await hashPassword('s3cret-main'), admin: true }] } });
    server = await startTestServer({
      media: {
        nodes: [
          { id: 'far', url: remote.url, token: 'main:s3cret-main' },
          { id: 'refused', url: remote.url, token: 'main:wrong' },
        ],
      },
    });
    admin = await connectClient(server, 'admin');
  });
  after(async () => {
    await admin?.close();
    await server?.close();
    await remote?.server.close();
  });

  it('uses the node that accepts its token; the one refused is reported down and gets nothing', async () => {
    const list = await nodeList(admin);
    const far = list.find((n) => n.node_id === 'far')!;
    const refused = list.find((n) => n.node_id === 'refused')!;
    assert.equal(far.state, 'up');
    assert.equal(far.kind, 'remote');
    assert.notEqual(refused.state, 'up');
    assert.ok(refused.error, 'says why');
    for (let i = 0; i < 3; i++) {
      const s = await connectParked(admin, { type: 'echo' });
      assert.equal((await admin.getInfo(s.id)).node_id, 'far');
      s.peer.startSending();
      await receives(s.peer, 'video', s.peer.tag);
      await admin.destroySession(s.id);
      await s.peer.close();
    }
  });

  it('a node that goes away: its sessions stop, new sessions are refused until a node is up', async () => {
    const s = await connectParked(admin, { type: 'echo' });
    await remote.server.close();
    await admin.waitEvent((e) => e.obj_id === s.id && e.type === 'destroyed' && e.body?.code === 303002, 15000);
    await eventually(async () => (await nodeList(admin)).every((n) => n.state !== 'up'), 15000, 'reported down');
    await assert.rejects(admin.createSession({ type: 'park', offer: { sdp: 'v=0' } as never }));
    await s.peer.close();
  });
});
