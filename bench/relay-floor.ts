// The floor under bench/forward.ts on this machine: a bare Node UDP relay (no SRTP, no RTP
// parsing, no werift) forwarding the same traffic pattern, 1000-byte video and 120-byte audio
// datagrams from clients ticking every 10 ms. Whatever this relay costs per packet is what the
// kernel, the VM and Node's event loop charge before any media-server work; forward.ts's figure
// is to be read against it.
//   node --import tsx bench/relay-floor.ts   (PAIRS=10,40 SECONDS=8 VIDEO_PPS=100 by default)
import { spawn } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { cpuSplitOf, fmt } from './lib.js';

const PAIRS = (process.env.PAIRS ?? '10,40').split(',').map(Number);
const SECONDS = Number(process.env.SECONDS ?? 8);
const VIDEO_PPS = Number(process.env.VIDEO_PPS ?? 100);

// The relay: one socket per leg, like one ICE socket per session; what arrives on leg 2i goes
// out of leg 2i+1's socket to its client, and back.
const RELAY = `
import { createSocket } from 'node:dgram';
const n = Number(process.env.LEGS);
const socks = [];
const peers = [];
let ready = 0;
for (let i = 0; i < n; i++) {
  const s = createSocket('udp4');
  s.on('message', (m, r) => {
    peers[i] ??= r.port;
    const j = i ^ 1;
    if (peers[j] !== undefined) socks[j].send(m, peers[j], '127.0.0.1');
  });
  s.bind(0, '127.0.0.1', () => { if (++ready === n) console.log(JSON.stringify(socks.map((x) => x.address().port))); });
  socks.push(s);
}
`;

async function measure(pairs: number): Promise<void> {
  const relay = spawn(process.execPath, ['--input-type=module', '-e', RELAY], { env: { ...process.env, LEGS: String(pairs * 2) }, stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = await once(relay.stdout!, 'data') as [Buffer];
  const ports = JSON.parse(line.toString()) as number[];
  const clients: Socket[] = [];
  let received = 0;
  for (const port of ports) {
    const c = createSocket('udp4');
    c.on('message', () => received++);
    c.bind(0, '127.0.0.1');
    await once(c, 'listening');
    c.send(Buffer.alloc(10), port, '127.0.0.1'); // introduce the client to the relay
    clients.push(c);
  }
  await new Promise((r) => setTimeout(r, 300));
  const video = Buffer.alloc(1000, 0x22);
  const audio = Buffer.alloc(120, 0x11);
  let sent = 0;
  const started = performance.now();
  const due = clients.map(() => ({ audio: 0, video: 0 }));
  const timers = clients.map((c, i) => setInterval(() => {
    const elapsed = (performance.now() - started) / 1000;
    const d = due[i]!;
    while (d.audio < elapsed * 50) { d.audio++; sent++; c.send(audio, ports[i]!, '127.0.0.1'); }
    while (d.video < elapsed * VIDEO_PPS) { d.video++; sent++; c.send(video, ports[i]!, '127.0.0.1'); }
  }, 10));
  await new Promise((r) => setTimeout(r, 2000));
  const [r0, s0, c0] = [received, sent, cpuSplitOf(relay.pid!)];
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  const [r1, s1, c1] = [received, sent, cpuSplitOf(relay.pid!)];
  const secs = (performance.now() - t0) / 1000;
  const pkts = r1 - r0;
  const user = c1.user - c0.user;
  const system = c1.system - c0.system;
  console.log(`  ${String(pairs).padStart(2)} pairs: ${fmt(pkts / secs, 0)} packets/s relayed (${fmt((100 * pkts) / (s1 - s0), 1)}% of sent), relay CPU ${fmt(((user + system) / 1e6 / secs) * 100, 0)}% of a core, ${fmt((user + system) / pkts, 1)} us per packet (${fmt(user / pkts, 1)} user + ${fmt(system / pkts, 1)} kernel)`);
  for (const t of timers) clearInterval(t);
  for (const c of clients) c.close();
  relay.kill();
  await once(relay, 'exit');
}

console.log(`bare Node UDP relay, same traffic as bench:forward (audio 50 + video ${VIDEO_PPS} packets/s per client, ${SECONDS} s):`);
for (const n of PAIRS) await measure(n);
