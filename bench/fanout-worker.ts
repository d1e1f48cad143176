// A child process of the fan-out benchmark (bench/fanout.ts) holding some of the listener peers.
// Driven over the fork IPC channel: { id, op, ... } requests, { id, ok, ... } replies.
//   ops: init {url, user, passThrough}  add {n, publisherId, concurrency}  reset  counts  stats (by node too)  diagnose  close
import { NkMediaClient } from '../src/client/index.js';
import { connectParked } from '../test/helpers/flows.js';
import type { TestPeer } from '../test/helpers/peer.js';
import { countAtSocket, zeroCounts, type Counts } from './fanout-peers.js';

/** node: the media node the server placed the listener's session on (get_info node_id; 'local' without workers). */
interface Listener { id: string; node: string; peer: TestPeer; counts: Counts; base: { audio: number; video: number } }

let client: NkMediaClient | undefined;
let passThrough = false;
const listeners: Listener[] = [];

async function add(n: number, publisherId: string, concurrency: number): Promise<number> {
  const t0 = performance.now();
  let next = 0;
  const one = async () => {
    while (next < n) {
      next++;
      const l = await connectParked(client!, { type: 'listen', publisher_id: publisherId });
      const counts = zeroCounts();
      countAtSocket(l.peer, counts, passThrough);
      const node = String((await client!.getInfo(l.id)).node_id ?? 'local');
      listeners.push({ ...l, node, counts, base: { ...l.peer.received } });
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, one));
  return performance.now() - t0;
}

async function handle(msg: Record<string, any>): Promise<Record<string, unknown>> {
  switch (msg.op) {
    case 'init':
      client = await NkMediaClient.connect(msg.url);
      await client.login(msg.user);
      passThrough = Boolean(msg.passThrough);
      return {};
    case 'add':
      return { ms: await add(msg.n, msg.publisherId, msg.concurrency), total: listeners.length };
    case 'reset':
      for (const l of listeners) { Object.assign(l.counts, zeroCounts()); l.base = { ...l.peer.received }; }
      return {};
    case 'counts':
      // Per listener: counted at the socket, and (pass-through mode) decrypted and delivered by werift.
      return {
        listeners: listeners.map((l) => ({
          audio: l.counts.audio, video: l.counts.video, rtcp: l.counts.rtcp, bytes: l.counts.bytes, other: l.counts.other,
          pts: `${l.peer.audio?.sender.codec?.payloadType}/${l.peer.video?.sender.codec?.payloadType}`,
          decrypted: { audio: l.peer.received.audio - l.base.audio, video: l.peer.received.video - l.base.video },
        })),
      };
    case 'stats': {
      // What the server says it sent these listeners (get_stats outbound), summed, in all and by
      // media node. (at most 16 requests in flight: the server allows 64 per connection)
      let packets = 0;
      const byNode: Record<string, { listeners: number; packets: number }> = {};
      let next = 0;
      await Promise.all(Array.from({ length: 16 }, async () => {
        while (next < listeners.length) {
          const l = listeners[next++]!;
          const { stats } = await client!.getStats(l.id);
          const n = stats.outbound.audio.packets + stats.outbound.video.packets;
          packets += n;
          const node = (byNode[l.node] ??= { listeners: 0, packets: 0 });
          node.listeners++;
          node.packets += n;
        }
      }));
      return { packets, byNode };
    }
    case 'diagnose': {
      // Listeners that counted nothing since the last reset: what each side says about them.
      const silent = listeners.filter((l) => l.counts.audio + l.counts.video === 0);
      return {
        silent: await Promise.all(silent.slice(0, 10).map(async (l) => {
          const s = await client!.getStats(l.id).then((r) => r.stats, (e: Error) => ({ error: e.message }));
          const ice = (l.peer.pc as any).iceTransports?.[0]?.connection;
          return {
            id: l.id, index: listeners.indexOf(l), peerState: l.peer.pc.connectionState, weriftDelivered: l.peer.received, rtcp: l.counts.rtcp,
            localPort: ice?.nominated?.protocol?.transport?.port, pairs: ice?.checkList?.length, server: s,
          };
        })),
        count: silent.length,
      };
    }
    case 'close':
      for (const l of listeners) await client!.destroySession(l.id).catch(() => undefined);
      await Promise.all(listeners.map((l) => l.peer.close().catch(() => undefined)));
      await client?.close();
      setImmediate(() => process.exit(0));
      return {};
    default:
      throw new Error(`unknown op ${String(msg.op)}`);
  }
}

process.on('message', (msg: Record<string, any>) => {
  handle(msg).then(
    (r) => process.send!({ id: msg.id, ok: true, ...r }),
    (err: Error) => process.send!({ id: msg.id, ok: false, error: err.stack ?? String(err) }),
  );
});
process.on('disconnect', () => process.exit(0));
