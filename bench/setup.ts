// Setup benchmark (issue #2): answer-creation time, answer → connected, and resident memory
// per parked connected session. The server runs in its own process; werift clients here.
//   npm run bench:setup            (SESSIONS=200 by default)
import { NkMediaClient } from '../src/client/index.js';
import { connectParked } from '../test/helpers/flows.js';
import { TestPeer } from '../test/helpers/peer.js';
import type { CandidateInit } from '../src/client/index.js';
import { fmt, quantile, rssOf, spawnServer } from './lib.js';

const SESSIONS = Number(process.env.SESSIONS ?? 200);

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

async function main(): Promise<void> {
  const server = await spawnServer();
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
    console.log(`setup over ${SESSIONS} sessions (server in its own process, loopback, werift clients):`);
    console.log(`  create+answer round trip  median ${fmt(quantile(answer, 0.5), 2)} ms   p95 ${fmt(quantile(answer, 0.95), 2)} ms`);
    console.log(`  answer -> connected       median ${fmt(quantile(connect, 0.5), 1)} ms   p95 ${fmt(quantile(connect, 0.95), 1)} ms`);

    await new Promise((r) => setTimeout(r, 1500));
    const base = rssOf(server.pid);
    const live: { id: string; peer: TestPeer }[] = [];
    console.log(`memory (server RSS; baseline ${fmt(base / 2 ** 20)} MiB with no session):`);
    for (const n of [1, 50, 200]) {
      while (live.length < n) live.push(await connectParked(client));
      await new Promise((r) => setTimeout(r, 1500));
      const rss = rssOf(server.pid);
      console.log(`  ${String(n).padStart(3)} parked connected sessions: RSS ${fmt(rss / 2 ** 20)} MiB, ${fmt((rss - base) / n / 1024, 0)} KiB per session`);
    }
    for (const s of live) { await client.destroySession(s.id); await s.peer.close(); }
  } finally {
    await client.close();
    await server.stop();
  }
}

await main();
