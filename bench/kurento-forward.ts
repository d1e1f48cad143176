// Kurento forwarding benchmark: server CPU per forwarded SRTP packet and packets/s for CALLS
// concurrent Kurento one2one calls (one MediaPipeline each: two WebRtcEndpoints connected both
// ways, each to a werift peer), next to the same number of NkMEDIA bridges (two park sessions,
// the second a bridge to the first, as bench/forward.ts sets them up). Measured the way
// bench/forward.ts does it: the server runs in its own process and its CPU comes from /proc;
// the clients (this process) send synthetic RTP (audio 50/s, video VIDEO_PPS/s each);
// "forwarded" is what the server's endpoints sent (Kurento getStats packetsSent; NkMEDIA
// get_stats outbound packets, the same engine counters). Kurento calls are measured first,
// released, then the NkMEDIA bridges, for each count on the same server.
// Whether the native forwarding plane carried the media: bench/server-probe.mjs is loaded into
// the server and appends the plane's counters (process-wide, cumulative) to a file once a
// second; over each window, the plane's own sends (`forwarded`) are compared with what the
// endpoints sent, and `toJs` counts the datagrams it handed to JS instead (RTP it does not
// route, RTCP feedback, STUN). The probe costs the server one small write a second (both sides).
//   npm run bench:kurento-forward    (CALLS=1,10,40 SECONDS=4 ROUNDS=3 VIDEO_PPS=100 by default;
//                                    the median of ROUNDS windows of SECONDS is reported;
//                                    npm run bench:kurento runs bench/kurento-setup.ts, then this)
//   PIN=0 ...                        no CPU pinning (default: server on CPU 0, clients on the rest)
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NkMediaClient } from '../src/client/index.js';
import { accelerate } from '../src/engine/local/accel/native-srtp.js';
import type { PlaneCounters } from '../src/engine/local/accel/forwarding-plane.js';
import { connectParked } from '../test/helpers/flows.js';
import { loadKurentoClient } from '../test/helpers/kurento-client.js';
import { TestPeer } from '../test/helpers/peer.js';
import { cpuSplitOf, fmt, idleCpuPerSecond, pin, spawnServer, threadCpuOf } from './lib.js';

const CALLS = (process.env.CALLS ?? '1,10,40').split(',').map(Number);
const SECONDS = Number(process.env.SECONDS ?? 4);
const ROUNDS = Math.max(1, Number(process.env.ROUNDS ?? 3));
const VIDEO_PPS = Number(process.env.VIDEO_PPS ?? 100);
const PIN = (process.env.PIN ?? (cpus().length >= 2 ? '1' : '0')) === '1';

const probeDir = mkdtempSync(join(tmpdir(), 'kurento-forward-'));
const PROBE_FILE = join(probeDir, 'probe.jsonl');
process.env.NKMEDIA_PROBE_FILE = PROBE_FILE;
process.env.BENCH_SERVER_NODE_ARGS = `${process.env.BENCH_SERVER_NODE_ARGS ?? ''} --import ${fileURLToPath(new URL('./server-probe.mjs', import.meta.url))}`;

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- kurento-client ships no types
type Kurento = any;

/** One client and what the server sent toward it so far (packets). */
interface Leg { peer: TestPeer; forwarded(): Promise<number> }
/** A set of calls to measure: its legs, and how to end them. */
interface Calls { legs: Leg[]; end(): Promise<void> }

function sentBy(sendings: { sent: { audio: number; video: number } }[]): number {
  return sendings.reduce((n, s) => n + s.sent.audio + s.sent.video, 0);
}

async function forwarded(legs: Leg[]): Promise<number> {
  let n = 0;
  for (const l of legs) n += await l.forwarded();
  return n;
}

/** The plane's counters the probe wrote inside [from, to] (Date.now() times): first and last. */
function planeOver(from: number, to: number): { first: PlaneCounters & { t: number }; last: PlaneCounters & { t: number } } | undefined {
  let text = '';
  try { text = readFileSync(PROBE_FILE, 'utf8'); } catch { return undefined; }
  const recs = text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { t: number; plane?: PlaneCounters })
    .filter((r) => r.t >= from && r.t <= to && r.plane).map((r) => ({ ...r.plane!, t: r.t }));
  return recs.length >= 2 ? { first: recs[0]!, last: recs[recs.length - 1]! } : undefined;
}

// ---- Kurento one2one --------------------------------------------------------------------------

async function kurentoLeg(kurento: Kurento, ep: Kurento): Promise<Leg> {
  const peer = new TestPeer();
  const offer = await peer.makeOffer();
  ep.on('IceCandidateFound', (ev: { candidate: { candidate: string; sdpMid: string; sdpMLineIndex: number } }) => {
    void peer.addCandidate({ candidate: ev.candidate.candidate, sdpMid: ev.candidate.sdpMid, sdpMLineIndex: ev.candidate.sdpMLineIndex }).catch(() => undefined);
  });
  const answer: string = await ep.processOffer(offer.sdp);
  await peer.takeAnswer({ sdp: answer, sdp_type: 'webrtc' });
  await ep.gatherCandidates();
  for (const c of offer.candidates) await ep.addIceCandidate(kurento.getComplexType('IceCandidate')(c));
  await peer.waitConnected();
  return {
    peer,
    forwarded: async () => {
      const stats = (await ep.getStats()) as Record<string, { type?: string; packetsSent?: number }>;
      return Object.values(stats).reduce((n, s) => n + (s.type === 'outboundrtp' ? s.packetsSent ?? 0 : 0), 0);
    },
  };
}

async function kurentoCalls(kurento: Kurento, url: string, calls: number): Promise<Calls> {
  const kc: Kurento = await kurento(`${url}kurento`, { failAfter: 1 });
  const pipelines: Kurento[] = [];
  const legs: Leg[] = [];
  for (let i = 0; i < calls; i++) {
    const pipeline = await kc.create('MediaPipeline');
    pipelines.push(pipeline);
    const a = await pipeline.create('WebRtcEndpoint');
    const b = await pipeline.create('WebRtcEndpoint');
    await a.connect(b);
    await b.connect(a);
    legs.push(await kurentoLeg(kurento, a), await kurentoLeg(kurento, b));
  }
  return {
    legs,
    end: async () => {
      for (const l of legs) l.peer.stopSending();
      for (const l of legs) await l.peer.close();
      for (const p of pipelines) await p.release();
      kc.close();
    },
  };
}

// ---- NkMEDIA bridges (as bench/forward.ts) ---------------------------------------------------

async function nkmediaCalls(url: string, bridges: number): Promise<Calls> {
  const client = await NkMediaClient.connect(url);
  await client.login('bench');
  const sessions: { id: string; peer: TestPeer }[] = [];
  for (let i = 0; i < bridges; i++) {
    const a = await connectParked(client);
    const b = await connectParked(client, { type: 'bridge', peer_id: a.id });
    sessions.push(a, b);
  }
  return {
    legs: sessions.map((s) => ({
      peer: s.peer,
      forwarded: async () => {
        const { stats } = await client.getStats(s.id);
        return stats.outbound.audio.packets + stats.outbound.video.packets;
      },
    })),
    end: async () => {
      for (const s of sessions) { s.peer.stopSending(); await client.destroySession(s.id); await s.peer.close(); }
      await client.close();
    },
  };
}

// ---- the measurement (bench/forward.ts's) ------------------------------------------------------

async function measure(label: string, pid: number, n: number, calls: Calls): Promise<void> {
  const { legs } = calls;
  // The clients share this machine with the server: their SRTP goes through the native addon
  // too, so that they starve the server of CPU as little as possible.
  for (const l of legs) for (const t of l.peer.pc.dtlsTransports) if (t.srtp) accelerate(t.srtp, t.srtcp);
  // The same sessions connected but silent: what the server spends on them without media.
  const idlePerSec = await idleCpuPerSecond(pid, (SECONDS * 1000) / 2);
  const sendings = legs.map((l) => l.peer.startSending({ videoPps: VIDEO_PPS }));
  await new Promise((r) => setTimeout(r, 3000)); // let flows settle (DTLS, first keyframes, catch-up)
  const nominal = legs.length * (50 + VIDEO_PPS);
  const windows: { cpu: number; user: number; system: number; pkts: number; sent: number; secs: number; threads: [string, number][]; f0: number; f1: number; from: number; to: number }[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const s0 = sentBy(sendings);
    const from = Date.now(); // around the reads of f0 and f1: for the plane's figures
    const f0 = await forwarded(legs);
    const c0 = cpuSplitOf(pid);
    const th0 = threadCpuOf(pid);
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, SECONDS * 1000));
    const s1 = sentBy(sendings);
    const f1 = await forwarded(legs);
    const to = Date.now();
    const c1 = cpuSplitOf(pid);
    const th1 = threadCpuOf(pid);
    const user = c1.user - c0.user;
    const system = c1.system - c0.system;
    const threads = [...th1].map(([t, us]) => [t, us - (th0.get(t) ?? 0)] as [string, number]).filter(([, us]) => us > 0).sort((a, b) => b[1] - a[1]);
    windows.push({ cpu: user + system, user, system, pkts: f1 - f0, sent: s1 - s0, secs: (performance.now() - t0) / 1000, threads, f0, f1, from, to });
  }
  const perPkt = (w: (typeof windows)[number]) => w.cpu / w.pkts;
  const w = [...windows].sort((a, b) => perPkt(a) - perPkt(b))[Math.floor(windows.length / 2)]!;
  // Each packet sent by one leg's client is forwarded once, to the other leg.
  console.log(`  ${label} ${String(n).padStart(2)}: ${fmt(w.pkts / w.secs, 0)} packets/s forwarded (${fmt((100 * w.pkts) / w.sent, 1)}% of the ${fmt(w.sent / w.secs, 0)}/s sent; nominal ${nominal}/s), server CPU ${fmt((w.cpu / 1e6 / w.secs) * 100, 0)}% of a core, ${fmt(perPkt(w), 1)} us per forwarded packet (${fmt(w.user / w.pkts, 1)} user + ${fmt(w.system / w.pkts, 1)} kernel) [median of ${windows.length} windows: ${windows.map((x) => fmt(perPkt(x), 1)).join(', ')}]`);
  console.log(`      above the same calls idle (${fmt(idlePerSec / 1e4, 1)}% of a core): ${fmt((w.cpu - idlePerSec * w.secs) / w.pkts, 1)} us per forwarded packet`);
  console.log(`      by thread: ${w.threads.map(([t, us]) => `${t.split(' ').slice(1).join(' ')} ${fmt(us / w.pkts, 1)}`).join(', ')} us/pkt`);
  // The plane from the first window's start to the last one's end (the probe's records inside),
  // next to what the endpoints sent over the same time (the clients sent between windows too).
  const first = windows[0]!;
  const last = windows[windows.length - 1]!;
  const p = planeOver(first.from, last.to);
  if (!p) {
    console.log('      native forwarding plane: no counters from the server (plane off: the addon is not built, or NKMEDIA_NATIVE_FORWARD=0)');
  } else {
    const secs = (p.last.t - p.first.t) / 1000;
    const planeRate = (p.last.forwarded - p.first.forwarded) / secs;
    const rate = (last.f1 - first.f0) / ((last.to - first.from) / 1000);
    console.log(`      native forwarding plane: ${fmt(planeRate, 0)} packets/s sent by the plane itself (${fmt((100 * planeRate) / rate, 1)}% of the ${fmt(rate, 0)}/s the endpoints sent over the ${windows.length} windows), ${fmt((p.last.toJs - p.first.toJs) / secs, 1)} datagrams/s handed to JS; ${p.last.sockets} sockets, ${p.last.outputs} outputs attached [probe records over ${fmt(secs, 0)} s]`);
  }
}

const kurento = loadKurentoClient();
const server = await spawnServer();
if (PIN) { pin(server.pid, '0'); pin(process.pid, `1-${cpus().length - 1}`); }
try {
  console.log(`forwarding, Kurento one2one calls vs NkMEDIA bridges (audio 50 + video ${VIDEO_PPS} packets/s per client, ${SECONDS} s windows; ${PIN ? 'server pinned to CPU 0, clients to the others' : 'no CPU pinning'}):`);
  for (const n of CALLS) {
    const k = await kurentoCalls(kurento, server.url, n);
    await measure('Kurento one2one calls', server.pid, n, k);
    await k.end();
    const b = await nkmediaCalls(server.url, n);
    await measure('NkMEDIA bridges       ', server.pid, n, b);
    await b.end();
  }
} finally {
  await server.stop();
  rmSync(probeDir, { recursive: true, force: true });
}
// kurento-client's close() leaves its JSON-RPC duplicate-response timers (20 s) running.
process.exit(0);
