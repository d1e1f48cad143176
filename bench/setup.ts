// Setup benchmark (issue #2): answer-creation time, answer → connected, and resident memory
// per parked connected session. The server runs in its own process; werift clients here.
//   npm run bench:setup            (SESSIONS=200 by default)
//   env: SESSIONS=200  MEMORY=1 (the memory part)  MEDIA_WORKERS= (media in N worker processes:
//        --workers N; memory is then the main process's and each worker's)  BENCH_RESULT_FILE=
import { NkMediaClient } from '../src/client/index.js';
import { connectParked } from '../test/helpers/flows.js';
import { TestPeer } from '../test/helpers/peer.js';
import type { CandidateInit } from '../src/client/index.js';
import { describeServer, fmt, quantile, rssOf, serverOptionsFromEnv, spawnServer, writeResult, type ServerProc } from './lib.js';

const SESSIONS = Number(process.env.SESSIONS ?? 200);
const MEMORY = process.env.MEMORY !== '0';
const SERVER = serverOptionsFromEnv();

async function timedCycle(client: NkMediaClient): Promise<{ answerMs: number; connectMs: number }> {
  const peer = new TestPeer();
  const offer = await peer.makeOffer();
  const early: { obj_id?: string; c: CandidateInit }[] = [];
  let id: string | undefined;
  const off = client.onEvent((e) => {
    if (e.type !== 'candidate') return;
    if (id === undefined) early.push({ obj_id: e.obj_id, c: e.body as CandidateInit });
    else if (e.obj_id === id) void peer.addCandidate(e.body as CandidateInit).catch(() => undefined);
  });
  const t0 = performance.now();
  const reply = await client.createSession({ type: 'park', offer: { sdp: offer.sdp, trickle_ice: true }, wait_reply: true });
  const t1 = performance.now();
  id = reply.session_id;
  await peer.takeAnswer(reply.answer!);
  for (const e of early) if (e.obj_id === id) await peer.addCandidate(e.c).catch(() => undefined);
  for (const c of offer.candidates) await client.setCandidate(id, c);
  await peer.waitConnected();
  const t2 = performance.now();
  off();
  await client.destroySession(id);
  await peer.close();
  return { answerMs: t1 - t0, connectMs: t2 - t1 };
}

/** RSS of each server process, in MiB, and in all. */
function rssMiB(procs: readonly ServerProc[]): { each: number[]; total: number } {
  const each = procs.map((p) => rssOf(p.pid) / 2 ** 20);
  return { each, total: each.reduce((a, b) => a + b, 0) };
}
const describeRss = (procs: readonly ServerProc[], r: { each: number[]; total: number }) =>
  (procs.length > 1 ? `${fmt(r.total)} MiB (${procs.map((p, i) => `${p.name} ${fmt(r.each[i]!)}`).join(', ')})` : `${fmt(r.total)} MiB`);

async function main(): Promise<void> {
  const server = await spawnServer([], SERVER);
  const procs = server.processes;
  const client = await NkMediaClient.connect(server.url);
  await client.login('bench');
  try {
    for (let i = 0; i < 10; i++) await timedCycle(client); // warm-up (JIT, certificate)
    const answer: number[] = [];
    const connect: number[] = [];
    for (let i = 0; i < SESSIONS; i++) {
      const r = await timedCycle(client);
      answer.push(r.answerMs);
      connect.push(r.connectMs);
    }
    const q = (v: number[]) => ({ median: quantile(v, 0.5), p90: quantile(v, 0.9), p95: quantile(v, 0.95) });
    const result = { server: SERVER.workers ?? 0, sessions: SESSIONS, answer: q(answer), connect: q(connect), memory: [] as { sessions: number; rssMiB: number[] }[] };
    console.log(`setup over ${SESSIONS} sessions (server in its own process, ${describeServer(SERVER)}, loopback, werift clients):`);
    console.log(`  create+answer round trip  median ${fmt(result.answer.median, 2)} ms   p90 ${fmt(result.answer.p90, 2)} ms   p95 ${fmt(result.answer.p95, 2)} ms`);
    console.log(`  answer -> connected       median ${fmt(result.connect.median, 1)} ms   p90 ${fmt(result.connect.p90, 1)} ms   p95 ${fmt(result.connect.p95, 1)} ms`);

    if (MEMORY) {
      await new Promise((r) => setTimeout(r, 1500));
      const base = rssMiB(procs);
      result.memory.push({ sessions: 0, rssMiB: base.each });
      const live: { id: string; peer: TestPeer }[] = [];
      console.log(`memory (server RSS; baseline ${describeRss(procs, base)} with no session):`);
      for (const n of [1, 50, 200]) {
        while (live.length < n) live.push(await connectParked(client));
        await new Promise((r) => setTimeout(r, 1500));
        const rss = rssMiB(procs);
        result.memory.push({ sessions: n, rssMiB: rss.each });
        console.log(`  ${String(n).padStart(3)} parked connected sessions: RSS ${describeRss(procs, rss)}, ${fmt(((rss.total - base.total) * 1024) / n, 0)} KiB per session`);
      }
      for (const s of live) { await client.destroySession(s.id); await s.peer.close(); }
    }
    writeResult(result);
  } finally {
    await client.close();
    await server.stop();
  }
}

await main();
