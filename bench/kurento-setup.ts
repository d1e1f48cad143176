// Kurento setup benchmark: what a kurento-client application waits for to set up one WebRTC
// endpoint (create MediaPipeline, create WebRtcEndpoint, processOffer, gatherCandidates, each
// until its reply), next to the NkMEDIA API's create+answer for the same offer (a park session,
// until the answer is back, as bench/setup.ts times it). The server runs in its own process;
// both clients are here. The offers are made up front by werift peers and reused (an offer is
// just text; nothing connects): both protocols get the same SDP. The two are timed alternately
// (which goes first alternates too), each pipeline released and each session destroyed after
// it is timed. The application subscribes to no event (IceCandidateFound...): only the four
// calls are timed. The same four requests are also timed from a bare JSON-RPC client (ws, one
// request at a time): the server's own share, without kurento-client's per-call overhead.
//   npm run bench:kurento-setup    (ITERATIONS=200 by default; npm run bench:kurento runs this,
//                                  then bench/kurento-forward.ts)
import WebSocket from 'ws';
import { NkMediaClient } from '../src/client/index.js';
import { loadKurentoClient } from '../test/helpers/kurento-client.js';
import { TestPeer } from '../test/helpers/peer.js';
import { fmt, quantile, spawnServer } from './lib.js';

const ITERATIONS = Number(process.env.ITERATIONS ?? 200);
const WARMUP = 10;
const OFFERS = 5;

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- kurento-client ships no types
type KurentoClient = any;

interface KurentoTimes { pipeline: number; endpoint: number; offer: number; gather: number; total: number }

async function kurentoCycle(kc: KurentoClient, sdp: string): Promise<KurentoTimes> {
  const t0 = performance.now();
  const pipeline = await kc.create('MediaPipeline');
  const t1 = performance.now();
  const ep = await pipeline.create('WebRtcEndpoint');
  const t2 = performance.now();
  await ep.processOffer(sdp);
  const t3 = performance.now();
  await ep.gatherCandidates();
  const t4 = performance.now();
  await pipeline.release();
  return { pipeline: t1 - t0, endpoint: t2 - t1, offer: t3 - t2, gather: t4 - t3, total: t4 - t0 };
}

/** A bare JSON-RPC client: one request at a time, replies matched by id. */
class RawRpc {
  private id = 0;
  private readonly pending = new Map<number, (m: { result?: { value?: unknown; sessionId?: string }; error?: { message: string } }) => void>();
  sessionId?: string;
  constructor(private readonly ws: WebSocket) {
    ws.on('message', (d) => { const m = JSON.parse(String(d)); this.pending.get(m.id)?.(m); this.pending.delete(m.id); });
  }
  static async open(url: string): Promise<RawRpc> {
    const ws = new WebSocket(url);
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
    return new RawRpc(ws);
  }
  call(method: string, params: Record<string, unknown>): Promise<unknown> {
    const id = ++this.id;
    return new Promise((resolve, reject) => {
      this.pending.set(id, (m) => {
        if (m.error) { reject(new Error(`${method}: ${m.error.message}`)); return; }
        this.sessionId ??= m.result?.sessionId;
        resolve(m.result?.value);
      });
      this.ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, params: { ...params, ...(this.sessionId ? { sessionId: this.sessionId } : {}) } }));
    });
  }
  close(): void { this.ws.close(); }
}

async function rawCycle(rpc: RawRpc, sdp: string): Promise<KurentoTimes> {
  const t0 = performance.now();
  const pipeline = await rpc.call('create', { type: 'MediaPipeline' });
  const t1 = performance.now();
  const ep = await rpc.call('create', { type: 'WebRtcEndpoint', constructorParams: { mediaPipeline: pipeline } });
  const t2 = performance.now();
  await rpc.call('invoke', { object: ep, operation: 'processOffer', operationParams: { offer: sdp } });
  const t3 = performance.now();
  await rpc.call('invoke', { object: ep, operation: 'gatherCandidates' });
  const t4 = performance.now();
  await rpc.call('release', { object: pipeline });
  return { pipeline: t1 - t0, endpoint: t2 - t1, offer: t3 - t2, gather: t4 - t3, total: t4 - t0 };
}

async function nkmediaCycle(client: NkMediaClient, sdp: string): Promise<number> {
  const t0 = performance.now();
  const reply = await client.createSession({ type: 'park', offer: { sdp, trickle_ice: true }, wait_reply: true });
  const t1 = performance.now();
  if (!reply.answer) throw new Error('no answer in the create reply');
  await client.destroySession(reply.session_id);
  return t1 - t0;
}

async function main(): Promise<void> {
  const offers: string[] = [];
  for (let i = 0; i < OFFERS; i++) {
    const peer = new TestPeer();
    offers.push((await peer.makeOffer()).sdp);
    await peer.close();
  }
  const kurento = loadKurentoClient();
  const server = await spawnServer();
  const client = await NkMediaClient.connect(server.url);
  await client.login('bench');
  const kc: KurentoClient = await kurento(`${server.url}kurento`, { failAfter: 1 });
  const rpc = await RawRpc.open(`${server.url}kurento`);
  try {
    for (let i = 0; i < WARMUP; i++) { // warm-up (JIT, certificate)
      await kurentoCycle(kc, offers[i % OFFERS]!);
      await rawCycle(rpc, offers[i % OFFERS]!);
      await nkmediaCycle(client, offers[i % OFFERS]!);
    }
    const k: KurentoTimes[] = [];
    const r: KurentoTimes[] = [];
    const n: number[] = [];
    for (let i = 0; i < ITERATIONS; i++) {
      const sdp = offers[i % OFFERS]!;
      // Rotate which goes first, so no protocol always runs on a just-warmed server.
      const runs = [async () => { k.push(await kurentoCycle(kc, sdp)); }, async () => { r.push(await rawCycle(rpc, sdp)); }, async () => { n.push(await nkmediaCycle(client, sdp)); }];
      for (let j = 0; j < runs.length; j++) await runs[(i + j) % runs.length]!();
    }
    const kTotal = k.map((x) => x.total);
    const med = (v: number[]) => quantile(v, 0.5);
    const p95 = (v: number[]) => quantile(v, 0.95);
    const row = (label: string, m: number, p: number) => `  ${label.padEnd(56)} ${fmt(m, 2).padStart(7)} ms ${fmt(p, 2).padStart(7)} ms`;
    console.log(`setup over ${ITERATIONS} iterations (server in its own process, loopback; the same ${OFFERS} werift offers for both):`);
    console.log(`  ${''.padEnd(56)} ${'median'.padStart(10)} ${'p95'.padStart(10)}`);
    console.log(row('Kurento: pipeline + endpoint + processOffer + gather', med(kTotal), p95(kTotal)));
    console.log(row('NkMEDIA: create+answer round trip', med(n), p95(n)));
    console.log(row('Kurento - NkMEDIA', med(kTotal) - med(n), p95(kTotal) - p95(n)));
    const rTotal = r.map((x) => x.total);
    console.log(row('same 4 requests from a bare JSON-RPC client', med(rTotal), p95(rTotal)));
    console.log(row('bare Kurento - NkMEDIA', med(rTotal) - med(n), p95(rTotal) - p95(n)));
    const steps: [string, keyof KurentoTimes][] = [['create MediaPipeline', 'pipeline'], ['create WebRtcEndpoint', 'endpoint'], ['processOffer', 'offer'], ['gatherCandidates', 'gather']];
    const bySteps = (v: KurentoTimes[]) => steps.map(([label, key]) => `${label} ${fmt(med(v.map((x) => x[key])), 2)} / ${fmt(p95(v.map((x) => x[key])), 2)} ms`).join(', ');
    console.log(`  kurento-client by step (median / p95): ${bySteps(k)}`);
    console.log(`  bare client by step (median / p95):    ${bySteps(r)}`);
  } finally {
    kc.close();
    rpc.close();
    await client.close();
    await server.stop();
  }
}

await main();
// kurento-client's close() leaves its JSON-RPC duplicate-response timers (20 s) running.
process.exit(0);
