// Forwarding benchmark (issue #3): server CPU per forwarded SRTP packet and packets/s with
// 1, 10 and 40 concurrent bridges, and time from a type switch to the first keyframe at the
// new sink. The server runs in its own process; its CPU comes from /proc. Clients are werift
// peers here sending synthetic RTP (audio 50/s, video VIDEO_PPS/s each).
//   npm run bench:forward        (BRIDGES=1,10,40 SECONDS=8 ROUNDS=3 VIDEO_PPS=100 by default;
//                                the median of ROUNDS windows of SECONDS is reported)
//   PIN=0 ...                    no CPU pinning (default: server on CPU 0, clients on the rest)
//   PROFILE=1 ...                also writes a CPU profile of the server over the last window
//                                (forward.cpuprofile; read it with bench/analyze-profile.mjs)
import { NkMediaClient } from '../src/client/index.js';
import { connectParked } from '../test/helpers/flows.js';
import type { TestPeer } from '../test/helpers/peer.js';
import { accelerate } from '../src/engine/local/accel/native-srtp.js';
import { cpus } from 'node:os';
import { cpuSplitOf, fmt, idleCpuPerSecond, pin, quantile, spawnServer, threadCpuOf } from './lib.js';

const BRIDGES = (process.env.BRIDGES ?? '1,10,40').split(',').map(Number);
const SECONDS = Number(process.env.SECONDS ?? 8);
const ROUNDS = Math.max(1, Number(process.env.ROUNDS ?? 3));
const VIDEO_PPS = Number(process.env.VIDEO_PPS ?? 100);
const PROFILE = process.env.PROFILE === '1';
// Server on CPU 0, the clients (this process) on the others, so that neither steals the
// other's core mid-measurement (as bench/fanout.ts does). PIN=0 to let the scheduler place them.
const PIN = (process.env.PIN ?? (cpus().length >= 2 ? '1' : '0')) === '1';
if (PROFILE) {
  // The last bridge count's window wins (each SIGUSR2 pair rewrites the file).
  process.env.NKMEDIA_PROBE_PROFILE ??= 'forward.cpuprofile';
  process.env.NKMEDIA_PROBE_FILE ??= '/dev/null';
  process.env.BENCH_SERVER_NODE_ARGS = `${process.env.BENCH_SERVER_NODE_ARGS ?? ''} --import ./bench/server-probe.mjs`;
}

interface Leg { id: string; peer: TestPeer }

/** Packets the legs' clients have actually sent (their timers catch up after a stall). */
function sentBy(sendings: { sent: { audio: number; video: number } }[]): number {
  return sendings.reduce((n, s) => n + s.sent.audio + s.sent.video, 0);
}

async function forwarded(client: NkMediaClient, legs: Leg[]): Promise<number> {
  let n = 0;
  for (const l of legs) {
    const { stats } = await client.getStats(l.id);
    n += stats.outbound.audio.packets + stats.outbound.video.packets;
  }
  return n;
}

async function measureBridges(url: string, pid: number, bridges: number): Promise<void> {
  const client = await NkMediaClient.connect(url);
  await client.login('bench');
  const legs: Leg[] = [];
  for (let i = 0; i < bridges; i++) {
    const a = await connectParked(client);
    const b = await connectParked(client, { type: 'bridge', peer_id: a.id });
    legs.push(a, b);
  }
  // The clients share this machine with the server: their SRTP goes through the native addon
  // too, so that they starve the server of CPU as little as possible.
  for (const l of legs) for (const t of l.peer.pc.dtlsTransports) if (t.srtp) accelerate(t.srtp, t.srtcp);
  // The same sessions connected but silent: what the server spends on them without media.
  const idlePerSec = await idleCpuPerSecond(pid, (SECONDS * 1000) / 2);
  const sendings = legs.map((l) => l.peer.startSending({ videoPps: VIDEO_PPS }));
  await new Promise((r) => setTimeout(r, 3000)); // let flows settle (DTLS, first keyframes, catch-up)
  const nominal = legs.length * (50 + VIDEO_PPS);
  // ROUNDS windows on the same sessions; the median one is the figure (this VM is noisy: the
  // clients share it, and when they stall they catch up in bursts).
  const windows: { cpu: number; user: number; system: number; pkts: number; sent: number; secs: number; threads: [string, number][] }[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const s0 = sentBy(sendings);
    const f0 = await forwarded(client, legs);
    const c0 = cpuSplitOf(pid);
    const th0 = threadCpuOf(pid);
    const t0 = performance.now();
    // With PROFILE=1 the server (started with bench/server-probe.mjs) profiles the last window.
    const profiling = PROFILE && round === ROUNDS - 1;
    if (profiling) process.kill(pid, 'SIGUSR2');
    await new Promise((r) => setTimeout(r, SECONDS * 1000));
    if (profiling) process.kill(pid, 'SIGUSR2');
    const s1 = sentBy(sendings);
    const f1 = await forwarded(client, legs);
    const c1 = cpuSplitOf(pid);
    const th1 = threadCpuOf(pid);
    const user = c1.user - c0.user;
    const system = c1.system - c0.system;
    // Which threads the CPU went to (the JS thread, V8's helpers...).
    const threads = [...th1].map(([t, us]) => [t, us - (th0.get(t) ?? 0)] as [string, number]).filter(([, us]) => us > 0).sort((a, b) => b[1] - a[1]);
    windows.push({ cpu: user + system, user, system, pkts: f1 - f0, sent: s1 - s0, secs: (performance.now() - t0) / 1000, threads });
  }
  const perPkt = (w: (typeof windows)[number]) => w.cpu / w.pkts;
  const w = [...windows].sort((a, b) => perPkt(a) - perPkt(b))[Math.floor(windows.length / 2)]!;
  // Each packet sent by one leg's client is forwarded once, to the other leg.
  console.log(`  ${String(bridges).padStart(2)} bridges: ${fmt(w.pkts / w.secs, 0)} packets/s forwarded (${fmt((100 * w.pkts) / w.sent, 1)}% of the ${fmt(w.sent / w.secs, 0)}/s sent; nominal ${nominal}/s), server CPU ${fmt((w.cpu / 1e6 / w.secs) * 100, 0)}% of a core, ${fmt(perPkt(w), 1)} us per forwarded packet (${fmt(w.user / w.pkts, 1)} user + ${fmt(w.system / w.pkts, 1)} kernel) [median of ${windows.length} windows: ${windows.map((x) => fmt(perPkt(x), 1)).join(', ')}]`);
  console.log(`      above the same sessions idle (${fmt(idlePerSec / 1e4, 1)}% of a core): ${fmt((w.cpu - idlePerSec * w.secs) / w.pkts, 1)} us per forwarded packet`);
  console.log(`      by thread: ${w.threads.map(([t, us]) => `${t.split(' ').slice(1).join(' ')} ${fmt(us / w.pkts, 1)}`).join(', ')} us/pkt`);
  for (const l of legs) { l.peer.stopSending(); await client.destroySession(l.id); await l.peer.close(); }
  await client.close();
}

async function switchToKeyframe(url: string, rounds = 20): Promise<void> {
  const client = await NkMediaClient.connect(url);
  await client.login('bench');
  const a = await connectParked(client);
  // b outlives a's leaving the bridge (else it would stop with bridge_stop).
  const b = await connectParked(client, { stop_after_peer: false });
  a.peer.startSending({ videoPps: VIDEO_PPS, keyframeOnPli: true });
  b.peer.startSending({ videoPps: VIDEO_PPS, keyframeOnPli: true });
  await new Promise((r) => setTimeout(r, 500));
  const delays: number[] = [];
  for (let i = 0; i < rounds; i++) {
    // Alternate a's downlink between b (bridge) and itself (echo); time to the new source's keyframe.
    const toBridge = i % 2 === 0;
    const source = toBridge ? b.peer : a.peer;
    const t0 = performance.now();
    await client.setType(a.id, toBridge ? 'bridge' : 'echo', toBridge ? { peer_id: b.id } : {});
    const kf = await waitKeyframe(a.peer, source.tag, t0);
    delays.push(kf - t0);
    // Requests to one source are merged within a second; space the rounds out accordingly.
    await new Promise((r) => setTimeout(r, 1100));
  }
  console.log(`  switch -> first keyframe at the new sink: median ${fmt(quantile(delays, 0.5), 1)} ms, p95 ${fmt(quantile(delays, 0.95), 1)} ms (${rounds} switches, PLI round trip included)`);
  for (const s of [a, b]) { s.peer.stopSending(); await client.destroySession(s.id); await s.peer.close(); }
  await client.close();
}

function waitKeyframe(peer: TestPeer, tag: number, after: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const deadline = setTimeout(() => { clearInterval(poll); reject(new Error('no keyframe within 5 s')); }, 5000);
    const poll = setInterval(() => {
      const kf = peer.rx.video.find((r) => r.tag === tag && r.keyframe && r.at >= after);
      if (kf) { clearInterval(poll); clearTimeout(deadline); resolve(kf.at); }
    }, 2);
  });
}

const server = await spawnServer();
if (PIN) { pin(server.pid, '0'); pin(process.pid, `1-${cpus().length - 1}`); }
try {
  console.log(`forwarding through bridges (audio 50 + video ${VIDEO_PPS} packets/s per client, ${SECONDS} s each; ${PIN ? 'server pinned to CPU 0, clients to the others' : 'no CPU pinning'}):`);
  for (const n of BRIDGES) await measureBridges(server.url, server.pid, n);
  await switchToKeyframe(server.url);
} finally {
  await server.stop();
}
