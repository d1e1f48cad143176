// After 200 create/connect/destroy cycles nothing is left behind: no session, engine element,
// UDP socket, timer or subscription (counted, not assumed).
import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, connectClient, eventually } from './helpers/server.js';
import { connectParked } from './helpers/flows.js';
import type { Server } from '../src/main.js';
import type { NkMediaClient } from '../src/client/index.js';

const CYCLES = 200;
const PARALLEL = 8;

let server: Server;
before(async () => { server = await startTestServer(); });
after(async () => { await server.close(); });

function resources(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) counts[r] = (counts[r] ?? 0) + 1;
  return counts;
}

it(`${CYCLES} create/connect/destroy cycles leave nothing behind`, async () => {
  const clients: NkMediaClient[] = [];
  for (let i = 0; i < PARALLEL; i++) clients.push(await connectClient(server, `leak${i}`));
  // Warm-up cycle so lazily created, process-wide things (the certificate, timers) exist.
  const warm = await connectParked(clients[0]!);
  await clients[0]!.destroySession(warm.id);
  await warm.peer.close();
  await eventually(async () => (await server.engine.counters()).elements === 0, 5000, 'warm-up release');
  const before = resources();
  const subsBefore = server.services.bus.subscriptionCount;

  let done = 0;
  let receivedSomething = 0;
  await Promise.all(clients.map(async (client) => {
    while (done < CYCLES) {
      done++;
      const { id, peer } = await connectParked(client);
      peer.startSending();
      const got = await eventually(async () => (await client.getStats(id)).stats.inbound.audio.packets > 0, 5000, 'rtp').catch(() => false);
      if (got) receivedSomething++;
      await client.destroySession(id);
      await peer.close();
    }
  }));
  assert.equal(receivedSomething, done, 'every cycle carried media');

  const counters = await eventually(async () => {
    const c = await server.engine.counters();
    return c.elements === 0 && server.services.sessions.size === 0 ? c : undefined;
  }, 10000, 'all elements released');
  assert.equal(counters.endpoints, 0);
  assert.equal(server.services.bus.subscriptionCount, subsBefore, 'no subscription left');
  // Sockets and timers drain asynchronously after close; wait for them to return to baseline.
  const afterCounts = await eventually(() => {
    const now = resources();
    return (now.UDPWrap ?? 0) <= (before.UDPWrap ?? 0) && (now.Timeout ?? 0) <= (before.Timeout ?? 0) ? now : undefined;
  }, 15000, `sockets/timers back to baseline (before ${JSON.stringify(before)}, now ${JSON.stringify(resources())})`);
  assert.ok((afterCounts.UDPWrap ?? 0) <= (before.UDPWrap ?? 0), `UDP sockets: before ${before.UDPWrap}, after ${afterCounts.UDPWrap}`);
  assert.ok((afterCounts.Timeout ?? 0) <= (before.Timeout ?? 0), `timers: before ${before.Timeout}, after ${afterCounts.Timeout}`);
  for (const c of clients) await c.close();
});
