// Fan-out benchmark: one publisher (about 1 Mbit/s of synthetic video plus 50 audio packets/s)
// to N listeners in an SFU room, for N = 10, 50, 100, 200, 400. For each N: the share of the
// publisher's packets that reached the listeners, the server's CPU (% of a core) and its CPU
// time per packet it sent out.
//   npm run build && node --import tsx bench/fanout.ts
//   env: LISTENERS=10,50,100,200,400  SECONDS=8  WORKERS=2  CONCURRENCY=8 (connections in
//        flight per worker)  VIDEO_PPS=110 VIDEO_BYTES=1100 AUDIO_BYTES=120  PIN=1  VALIDATE=0
//        QUIET_WAIT=60 QUIET_MAX=0.25  IDLE_SECONDS=3  PROBE=1  PROFILE_N=  PROFILE_FILE=
//        PROFILE_IDLE=0  NKMEDIA_PROBE_INGRESS=0  NKMEDIA_PROBE_UDP=1  DEBUG_PROBE=  DEBUG_COUNTS=
//        MEDIA_WORKERS= (--workers N)  ROOM_MAX_PER_NODE= (rooms.max_listeners_per_node)
//        BENCH_RESULT_FILE= (the rows as JSON, for bench/workers.ts)
//        (NKMEDIA_* variables reach the server too, e.g. NKMEDIA_NATIVE_SRTP=0 for werift's JS SRTP)
//
// The server runs in its own process (spawnServer); its CPU comes from /proc. With PIN=1 (the
// default on a machine with 2+ cores) the server is pinned to CPU 0 and every client process to
// the other CPUs, so the server has one core to itself -- as far as this benchmark goes: other
// processes on the machine are not pinned, so before each window it waits (up to QUIET_WAIT s)
// for them to use less than QUIET_MAX of a core, and reports what they used during the window
// ("other processes", and how much of that ran on the server's core).
//
// bench/server-probe.mjs is loaded into the server (PROBE=1): it reports the server's event-loop
// delay, GC and heap per window, and with PROFILE_N=n writes a CPU profile of the measured
// window at N=n to PROFILE_FILE (PROFILE_IDLE=1: of the idle window, listeners connected and no
// media); read it with `node bench/analyze-profile.mjs FILE`. Profile with PIN=0: pinned, V8's
// sampling thread shares the server's one core and misses samples while the server is busy (a
// pinned profile showed 35% busy for a server using 54% of the core). NKMEDIA_PROBE_INGRESS=1 also
// reports how far behind the publisher's packets the server's loop fell (DEBUG_PROBE=1 prints
// the per-second values).
//
// Listeners are werift peers held by WORKERS child processes (bench/fanout-worker.ts). A werift
// receiver costs ~20-30 us per packet (parse, decrypt, route), more than the server spends
// forwarding it, so once connected each listener's packets are counted where its UDP socket
// hands them to werift and go no further (bench/fanout-peers.ts countAtSocket): the RTP header
// is in clear in SRTP, so audio and video are told apart by payload type. VALIDATE=1 lets every
// packet go on to werift as well and compares the socket count with what werift decrypted and
// delivered to the track (use a small N: real decryption is expensive).
//
// Delivered = packets counted at all listeners / (packets the publisher sent x N). The publisher
// only sends inside the measured window (preceded by a warm-up burst), and counts are read after
// a drain, so no packet straddles the window's edges.
//
// With MEDIA_WORKERS=n the server's media runs in n worker processes (README "Workers and media
// nodes") and "the server" is its main process and its workers (found with media/node get_list),
// each measured apart and summed; with PIN=1 all of them are pinned to CPU 0 and share that core
// (what is compared is then CPU time, not parallelism; PIN=0 lets them spread). A room's listeners
// join the publisher's worker until ROOM_MAX_PER_NODE of them are there, then go to another worker,
// which the publisher's media reaches through a pipe. Listeners accumulate over the steps of a run,
// so for an even split at each N run one N per invocation with ROOM_MAX_PER_NODE=N/2 (as
// bench/workers.ts does). The probe is loaded into every server process (NODE_OPTIONS): per process
// its loop, and per node what its listeners got (get_stats, by get_info node_id) next to the
// datagrams its plane read and forwarded and those its JS received and sent (NKMEDIA_PROBE_UDP),
// each net of the idle window's rate, per packet the publisher sent: a pipe shows as one JS send
// on the publisher's node and one JS receive on the other.
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NkMediaClient } from '../src/client/index.js';
import { connectParked } from '../test/helpers/flows.js';
import { startSynthetic, type SendOptions } from './fanout-peers.js';
import { cpuOf, cpuOfAll, describeServer, fmt, pin, probeEnv, rssOf, serverOptionsFromEnv, spawnServer, writeResult } from './lib.js';

const STEPS = (process.env.LISTENERS ?? '10,50,100,200,400').split(',').map(Number);
const SECONDS = Number(process.env.SECONDS ?? 8);
const WORKERS = Number(process.env.WORKERS ?? 2);
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 8);
const VALIDATE = process.env.VALIDATE === '1';
const PIN = (process.env.PIN ?? (cpus().length >= 2 ? '1' : '0')) === '1';
const SERVER = serverOptionsFromEnv();
const IDLE_SECONDS = Number(process.env.IDLE_SECONDS ?? 3);
const PROBE = process.env.PROBE !== '0';
/** Profile the server's measured window at this N (a CPU profile written to PROFILE_FILE); with
 *  PROFILE_IDLE=1 its idle window (listeners connected, no media) instead. */
const PROFILE_N = Number(process.env.PROFILE_N ?? 0);
const PROFILE_FILE = process.env.PROFILE_FILE ?? join(tmpdir(), `fanout-${PROFILE_N}.cpuprofile`);
/** Before each measured window, wait up to QUIET_WAIT s for other processes to use < QUIET_MAX of a core. */
const QUIET_WAIT = Number(process.env.QUIET_WAIT ?? 60);
const QUIET_MAX = Number(process.env.QUIET_MAX ?? 0.25);
const SEND: SendOptions = {
  audioPps: 50,
  videoPps: Number(process.env.VIDEO_PPS ?? 110),
  audioBytes: Number(process.env.AUDIO_BYTES ?? 120),
  videoBytes: Number(process.env.VIDEO_BYTES ?? 1100),
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---- workers (listener processes) ---------------------------------------------------------------

class Worker {
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (r: any) => void; reject: (e: Error) => void }>();
  readonly child: ChildProcess;
  constructor(readonly index: number) {
    this.child = fork(fileURLToPath(new URL('./fanout-worker.ts', import.meta.url)), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.child.on('message', (m: any) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.ok) p.resolve(m);
      else p.reject(new Error(`worker ${index}: ${m.error}`));
    });
    this.child.once('exit', (code) => {
      for (const p of this.pending.values()) p.reject(new Error(`worker ${index} exited (${code})`));
      this.pending.clear();
    });
  }
  get pid(): number { return this.child.pid!; }
  call(op: string, args: Record<string, unknown> = {}): Promise<any> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.child.send({ id, op, ...args });
    });
  }
}

interface ListenerCounts { audio: number; video: number; rtcp: number; bytes: number; other: number; pts: string; decrypted: { audio: number; video: number } }

// ---- machine-wide accounting ------------------------------------------------------------------

/** Per CPU, in clock ticks: busy in processes (user, nice, system), in interrupts (irq, softirq: the
 *  kernel's loopback packet handling mostly, not charged to any process), and the total. */
function cpuTimes(): { busy: number; irq: number; total: number }[] {
  return readFileSync('/proc/stat', 'utf8').split('\n').filter((l) => /^cpu\d/.test(l)).map((l) => {
    const v = l.split(/\s+/).slice(1).map(Number);
    const irq = v[5]! + v[6]!;
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
    return { busy: v[0]! + v[1]! + v[2]!, irq, total };
  });
}

/** UDP datagrams dropped by the kernel (receive or send buffer full), machine-wide. */
function udpDrops(): { rcvbuf: number; sndbuf: number } {
  const lines = readFileSync('/proc/net/snmp', 'utf8').split('\n').filter((l) => l.startsWith('Udp:'));
  const names = lines[0]!.split(/\s+/);
  const values = lines[1]!.split(/\s+/).map(Number);
  const get = (n: string) => values[names.indexOf(n)] ?? 0;
  return { rcvbuf: get('RcvbufErrors'), sndbuf: get('SndbufErrors') };
}

/** The server probe's once-a-second records (bench/server-probe.mjs) of process `pid` inside [from, to] (Date.now() times). */
interface ProbeRecord {
  t: number; pid: number; loopDelayMaxMs: number; ingressLagMaxMs: number; elu: number; gc: { count: number; ms: number; maxMs: number; majorCount: number; majorMs: number };
  heapUsedMiB: number; externalMiB: number; rssMiB: number; udp: { jsIn: number; jsOut: number }; plane?: { datagrams: number; forwarded: number; toJs: number };
}
function probeRecords(file: string | undefined, pid: number, from = -Infinity, to = Infinity): ProbeRecord[] {
  if (!file) return [];
  let text = '';
  try { text = readFileSync(file, 'utf8'); } catch { return []; }
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as ProbeRecord).filter((r) => r.pid === pid && r.t > from && r.t <= to);
}

/** A process's datagram counters (what its plane read and forwarded, what its JS received and sent). */
interface Datagrams { planeIn: number; planeFwd: number; planeToJs: number; jsIn: number; jsOut: number }
const DATAGRAM_KEYS = ['planeIn', 'planeFwd', 'planeToJs', 'jsIn', 'jsOut'] as const;
const datagramsOf = (r: ProbeRecord): Datagrams => ({
  planeIn: r.plane?.datagrams ?? 0, planeFwd: r.plane?.forwarded ?? 0, planeToJs: r.plane?.toJs ?? 0, jsIn: r.udp?.jsIn ?? 0, jsOut: r.udp?.jsOut ?? 0,
});
/** The counters' growth from the last record at or before `from` to the last one (and over how many ms). */
function datagramsSince(records: ProbeRecord[], from: number): { d: Datagrams; ms: number } | undefined {
  const before = records.filter((r) => r.t <= from).at(-1);
  const last = records.at(-1);
  if (!before || !last || last === before) return undefined;
  const a = datagramsOf(before);
  const b = datagramsOf(last);
  return { d: Object.fromEntries(DATAGRAM_KEYS.map((k) => [k, b[k] - a[k]])) as unknown as Datagrams, ms: last.t - before.t };
}

// ---- the benchmark ----------------------------------------------------------------------------

/** One server process in a window: CPU (share of a core), its idle rate, RSS. */
interface ProcRow { name: string; pid: number; cpu: number; idleCpu: number; rssMiB: number }
/** One media node in a window: its listeners, what get_stats says they were sent, and its datagram
 *  counters net of its idle rate, all per packet the publisher sent. */
interface NodeRow { node: string; listeners: number; outPerPacket: number; net?: Datagrams }

interface Row {
  procs: ProcRow[]; nodes: NodeRow[]; sent: number;
  n: number; delivered: number; deliveredAudio: number; deliveredVideo: number; worstListener: number;
  serverCpu: number; serverIdleCpu: number; usPerPacket: number; usPerPacketNet: number; serverOut: number;
  clientCpu: number; clientUsPerPacket: number; otherCpu: number; irqCpu: number; serverCoreOther: number; drops: number; rssMiB: number; setupS: number; secs: number;
}

async function main(): Promise<void> {
  let probeFile: string | undefined;
  if (PROBE) {
    probeFile = join(mkdtempSync(join(tmpdir(), 'fanout-')), 'probe.jsonl');
    // (the profile, SIGUSR2, is of the main process only)
    const extra: Record<string, string> = { NKMEDIA_PROBE_UDP: process.env.NKMEDIA_PROBE_UDP ?? '1', ...(PROFILE_N ? { NKMEDIA_PROBE_PROFILE: PROFILE_FILE } : {}) };
    SERVER.env = probeEnv(probeFile, extra);
  }
  const server = await spawnServer([], SERVER);
  // The server's processes: its main process and its media workers.
  const procs = server.processes;
  const serverCpu = () => cpuOfAll(procs);
  const clientCpus = cpus().length >= 2 ? `1-${cpus().length - 1}` : '0';
  const workers = Array.from({ length: WORKERS }, (_, i) => new Worker(i));
  if (PROFILE_N && PIN) console.log('  (PROFILE_N with PIN=1: the profile under-samples the busy server; use PIN=0 for profiling)');
  if (PIN) {
    for (const p of procs) pin(p.pid, '0');
    pin(process.pid, clientCpus);
    for (const w of workers) pin(w.pid, clientCpus);
  }
  const clientPids = [process.pid, ...workers.map((w) => w.pid)];
  const clientCpu = () => clientPids.reduce((a, pid) => a + cpuOf(pid), 0);

  const client = await NkMediaClient.connect(server.url);
  await client.login('bench');
  const rows: Row[] = [];
  try {
    await Promise.all(workers.map((w) => w.call('init', { url: server.url, user: `bench-w${w.index}`, passThrough: VALIDATE })));
    const pub = await connectParked(client, { type: 'publish' });
    const info = await client.getInfo(pub.id);
    const vkbps = ((SEND.videoPps! * SEND.videoBytes! * 8) / 1000).toFixed(0);
    console.log(`fan-out: 1 publisher (video ${SEND.videoPps} packets/s x ${SEND.videoBytes} B payload = ${vkbps} kbit/s, audio 50 packets/s x ${SEND.audioBytes} B) in room ${String(info.type_ext.room_id)}`);
    const git = (...args: string[]) => { try { return execFileSync('git', args, { encoding: 'utf8' }).trim(); } catch { return '?'; } };
    const dirty = git('status', '--porcelain', '--', 'src').split('\n').filter(Boolean).length;
    const addon = existsSync(fileURLToPath(new URL('../build/Release/nkmedia_native.node', import.meta.url)));
    console.log(`  server: commit ${git('rev-parse', '--short', 'HEAD')}${dirty ? ` + ${dirty} changed file(s) in src/` : ''}, native SRTP addon ${addon ? (process.env.NKMEDIA_NATIVE_SRTP === '0' ? 'built but disabled (NKMEDIA_NATIVE_SRTP=0)' : 'built') : 'not built'}`);
    console.log(`  ${describeServer(SERVER)}: ${procs.map((p) => `${p.name} pid ${p.pid}`).join(', ')}`);
    console.log(`  listeners in ${WORKERS} client process(es)${VALIDATE ? ', VALIDATE: every packet also decrypted by werift' : ', counted at their sockets'}; ${SECONDS} s per step; ${PIN ? `server${procs.length > 1 ? ` (all ${procs.length} processes)` : ''} pinned to CPU 0, clients to CPU ${clientCpus}` : 'no CPU pinning'}`);

    let have = 0;
    for (const n of STEPS) {
      // Connect listeners up to n, spread over the workers.
      const t0 = performance.now();
      const share = workers.map((w, i) => Math.floor(n / WORKERS) + (i < n % WORKERS ? 1 : 0) - Math.floor(have / WORKERS) - (i < have % WORKERS ? 1 : 0));
      await Promise.all(workers.map((w, i) => (share[i]! > 0 ? w.call('add', { n: share[i], publisherId: pub.id, concurrency: CONCURRENCY }) : undefined)));
      have = n;
      const setupS = (performance.now() - t0) / 1000;

      // Warm-up burst (new listeners' first packets, keyframe requests, JIT), then quiet.
      const warm = startSynthetic(pub.peer, SEND);
      await sleep(1000);
      warm.stop();
      await sleep(2000); // (an overloaded server may still be working through a backlog)

      // The server's CPU with n connected listeners and no media.
      const profileIdle = PROBE && n === PROFILE_N && process.env.PROFILE_IDLE === '1';
      if (profileIdle) process.kill(server.pid, 'SIGUSR2');
      const i0 = serverCpu(); const it0 = performance.now(); const idleFrom = Date.now();
      await sleep(IDLE_SECONDS * 1000);
      const i1 = serverCpu(); const idleSecs = (performance.now() - it0) / 1000;
      const idleCpuRate = (i1.total - i0.total) / idleSecs; // us per s
      // Each process's datagram counters over the idle window (consent checks, reports): its background rate.
      const idleDatagrams = procs.map((p) => datagramsSince(probeRecords(probeFile, p.pid), idleFrom));
      if (profileIdle) { process.kill(server.pid, 'SIGUSR2'); console.log(`         (idle window profiled: ${PROFILE_FILE})`); }

      // Other processes on this machine (not ours) would take the server's core: wait for quiet.
      const q0 = performance.now();
      let other = Infinity;
      while (QUIET_WAIT > 0) {
        const a = cpuTimes(); const sa = serverCpu().total; const ka = clientCpu(); const ta = performance.now();
        await sleep(1000);
        const b = cpuTimes();
        const busy = b.reduce((x, c, i) => x + c.busy - a[i]!.busy, 0) * 10_000;
        other = (busy - (serverCpu().total - sa) - (clientCpu() - ka)) / 1e6 / ((performance.now() - ta) / 1000);
        if (other < QUIET_MAX || performance.now() - q0 > QUIET_WAIT * 1000) break;
      }
      if (performance.now() - q0 > 1500) console.log(`         (waited ${fmt((performance.now() - q0) / 1000, 0)} s for other processes to quieten: ${fmt(100 * Math.max(0, other), 0)}% of a core busy elsewhere)`);

      await Promise.all(workers.map((w) => w.call('reset')));
      const stats0 = await Promise.all(workers.map((w) => w.call('stats')));
      const out0 = stats0.reduce((a, r) => a + r.packets, 0);
      const drops0 = udpDrops();
      const m0 = cpuTimes();
      const s0 = serverCpu(); const k0 = clientCpu(); const w0 = performance.now(); const d0 = Date.now();
      const profiling = PROBE && n === PROFILE_N && !profileIdle;
      if (profiling) process.kill(server.pid, 'SIGUSR2');
      const sending = startSynthetic(pub.peer, SEND);
      await sleep(SECONDS * 1000);
      sending.stop();
      if (profiling) process.kill(server.pid, 'SIGUSR2');
      const s1 = serverCpu(); const k1 = clientCpu(); const w1 = performance.now(); const d1 = Date.now();
      const m1 = cpuTimes();
      // Drain: a busy listener process may still have packets queued in its sockets; read the
      // counts until they stop moving (and at least 1.1 s, for the probe's last record).
      const readCounts = async () => (await Promise.all(workers.map((w) => w.call('counts')))).flatMap((r) => r.listeners as ListenerCounts[]);
      const total = (cs: ListenerCounts[]) => cs.reduce((a, c) => a + c.audio + c.video, 0);
      await sleep(500);
      let counts = await readCounts();
      for (let i = 0; i < 20; i++) {
        await sleep(300);
        const again = await readCounts();
        const moved = total(again) !== total(counts);
        counts = again;
        if (!moved && performance.now() - w1 > 1100) break;
      }
      const drops1 = udpDrops();
      const stats1 = await Promise.all(workers.map((w) => w.call('stats')));
      const out1 = stats1.reduce((a, r) => a + r.packets, 0);

      const secs = (w1 - w0) / 1000;
      const sent = sending.sent.audio + sending.sent.video;
      const rxAudio = counts.reduce((a, c) => a + c.audio, 0);
      const rxVideo = counts.reduce((a, c) => a + c.video, 0);
      const received = rxAudio + rxVideo;
      const serverOut = out1 - out0;
      const serverUs = s1.total - s0.total;
      const clientUs = k1 - k0;
      const machineBusyUs = m1.reduce((a, c, i) => a + c.busy - m0[i]!.busy, 0) * 10_000;
      const irqUs = m1.reduce((a, c, i) => a + c.irq - m0[i]!.irq, 0) * 10_000;
      const procRows: ProcRow[] = procs.map((p, i) => ({
        name: p.name, pid: p.pid, cpu: (s1.each[i]! - s0.each[i]!) / 1e6 / secs, idleCpu: (i1.each[i]! - i0.each[i]!) / 1e6 / idleSecs, rssMiB: rssOf(p.pid) / 2 ** 20,
      }));
      const nodes = nodeRows(stats0, stats1, sent, procs.map((p, i) => {
        const win = datagramsSince(probeRecords(probeFile, p.pid), d0);
        const idle = idleDatagrams[i];
        if (!win || !idle) return { name: p.name };
        return { name: p.name, net: Object.fromEntries(DATAGRAM_KEYS.map((k) => [k, (win.d[k] - (idle.d[k] * win.ms) / idle.ms) / sent])) as unknown as Datagrams };
      }));
      const row: Row = {
        procs: procRows, nodes, sent,
        n, setupS, secs,
        delivered: received / (sent * n),
        deliveredAudio: rxAudio / (sending.sent.audio * n),
        deliveredVideo: rxVideo / (sending.sent.video * n),
        worstListener: Math.min(...counts.map((c) => (c.audio + c.video) / sent)),
        serverCpu: serverUs / 1e6 / secs,
        serverIdleCpu: idleCpuRate / 1e6,
        serverOut,
        usPerPacket: serverUs / serverOut,
        usPerPacketNet: (serverUs - idleCpuRate * secs) / serverOut,
        clientCpu: clientUs / 1e6 / secs,
        clientUsPerPacket: clientUs / Math.max(1, received),
        otherCpu: Math.max(0, machineBusyUs - serverUs - clientUs) / 1e6 / secs,
        irqCpu: irqUs / 1e6 / secs,
        // With pinning, what else ran on the server's core (CPU 0) besides the server.
        serverCoreOther: PIN ? Math.max(0, ((m1[0]!.busy - m0[0]!.busy) * 10_000 - serverUs) / 1e6 / secs) : NaN,
        drops: drops1.rcvbuf - drops0.rcvbuf + drops1.sndbuf - drops0.sndbuf,
        rssMiB: procRows.reduce((a, p) => a + p.rssMiB, 0),
      };
      rows.push(row);
      console.log(
        `  N=${String(n).padStart(3)}: delivered ${fmt(100 * row.delivered, 2)}% (audio ${fmt(100 * row.deliveredAudio, 2)}%, video ${fmt(100 * row.deliveredVideo, 2)}%, worst listener ${fmt(100 * row.worstListener, 1)}%), ` +
        `server ${fmt(100 * row.serverCpu, 0)}% of a core (${fmt(100 * row.serverIdleCpu, 1)}% idle), ${fmt(serverOut / secs, 0)} packets/s out, ${fmt(row.usPerPacket, 1)} us/packet (${fmt(row.usPerPacketNet, 1)} net of idle); ` +
        `clients ${fmt(100 * row.clientCpu, 0)}% (${fmt(row.clientUsPerPacket, 1)} us/packet), other processes ${fmt(100 * row.otherCpu, 0)}% (${fmt(100 * row.serverCoreOther, 0)}% on the server's core), softirq ${fmt(100 * row.irqCpu, 0)}%, UDP drops ${row.drops}; setup ${fmt(setupS, 1)} s, server RSS ${fmt(row.rssMiB, 0)} MiB`,
      );
      if (profiling) console.log(`         (server CPU profiled in this window: figures include the profiler; profile in ${PROFILE_FILE})`);
      if (procs.length > 1) console.log(`         by process: ${procRows.map((p) => `${p.name} ${fmt(100 * p.cpu, 1)}% (${fmt(100 * p.idleCpu, 1)}% idle), RSS ${fmt(p.rssMiB, 0)} MiB`).join('; ')}`);
      for (const p of procs) {
        const probe = probeRecords(probeFile, p.pid, d0 + 500, d1 + 500);
        if (probe.length === 0) continue;
        const gcMs = probe.reduce((a, r) => a + r.gc.ms, 0);
        const last = probe[probe.length - 1]!;
        console.log(`         ${procs.length > 1 ? p.name : 'server'} loop: utilisation ${fmt(100 * probe.reduce((a, r) => a + r.elu, 0) / probe.length, 0)}%, longest loop delay ${fmt(Math.max(...probe.map((r) => r.loopDelayMaxMs)), 0)} ms; ` +
          `GC ${fmt(gcMs / probe.length, 0)} ms/s (${probe.reduce((a, r) => a + r.gc.majorCount, 0)} major, ${fmt(probe.reduce((a, r) => a + r.gc.majorMs, 0), 0)} ms), longest GC pause ${fmt(Math.max(...probe.map((r) => r.gc.maxMs)), 0)} ms; ` +
          `heap ${fmt(last.heapUsedMiB, 0)} MiB, external ${fmt(last.externalMiB, 0)} MiB`);
        if (process.env.DEBUG_PROBE) console.log(`         publisher: longest gap between send ticks ${fmt(sending.maxTickGapMs, 0)} ms; per second: loop delay max ${probe.map((r) => fmt(r.loopDelayMaxMs, 0)).join(' ')} ms; ingress lag max ${probe.map((r) => fmt(r.ingressLagMaxMs, 0)).join(' ')} ms; GC ${probe.map((r) => fmt(r.gc.ms, 0)).join(' ')} ms`);
      }
      // (with workers the main process moves no media: its row is left out)
      if (PROBE) console.log(`         per packet sent, by node (net of idle): ${nodes.filter((r) => procs.length === 1 || r.node !== 'main').map(describeNode).join('; ')}`);
      if (serverOut !== received) console.log(`         server get_stats says ${serverOut} packets out, listeners counted ${received} (${fmt((100 * received) / serverOut, 2)}%)`);
      if (process.env.DEBUG_COUNTS) {
        const odd = counts.map((c, i) => ({ c, i })).filter(({ c }) => c.audio !== sending.sent.audio || c.video !== sending.sent.video || c.other !== 0);
        console.log(`         sent ${sending.sent.audio}/${sending.sent.video}; ${odd.length} listener(s) off: ${odd.slice(0, 20).map(({ c, i }) => `#${i} ${c.audio}/${c.video}/${c.other}/${c.rtcp}@${c.pts}`).join(' ')}`);
      }
      if (row.worstListener < 0.5) {
        for (const w of workers) {
          const d = await w.call('diagnose');
          if (d.count === 0) continue;
          const states = d.silent.map((x: any) => `peer ${x.peerState}/server ${x.server?.connection_state ?? x.server?.error}, server sent ${(x.server?.outbound?.audio?.packets ?? 0) + (x.server?.outbound?.video?.packets ?? 0)}`);
          console.log(`         worker ${w.index}: ${d.count} listener(s) received nothing: ${[...new Set(states)].join('; ')}`);
        }
      }
      if (VALIDATE) {
        const dec = counts.reduce((a, c) => a + c.decrypted.audio + c.decrypted.video, 0);
        const mismatched = counts.filter((c) => c.decrypted.audio !== c.audio || c.decrypted.video !== c.video).length;
        console.log(`         validation: counted at sockets ${received}, decrypted and delivered by werift ${dec} (${mismatched} of ${counts.length} listeners differ)`);
      }
    }
    pub.peer.stopSending();
    await client.destroySession(pub.id).catch(() => undefined);
    await pub.peer.close();
  } finally {
    await Promise.all(workers.map((w) => w.call('close').catch(() => undefined)));
    await client.close();
    await server.stop();
  }

  // With workers, each process's CPU too (% of a core).
  const each = procs.length > 1 ? procs.map((p) => ` ${p.name} |`).join('') : '';
  console.log(`\n| N | delivered | worst listener | server CPU (% core) |${each} idle | pkts/s out | us/pkt | us/pkt net | clients CPU | client us/pkt | other procs CPU | softirq | UDP drops |`);
  console.log(`|---|---|---|---|${procs.length > 1 ? '---|'.repeat(procs.length) : ''}---|---|---|---|---|---|---|---|---|`);
  for (const r of rows) {
    const cells = procs.length > 1 ? r.procs.map((p) => ` ${fmt(100 * p.cpu, 1)} |`).join('') : '';
    console.log(`| ${r.n} | ${fmt(100 * r.delivered, 2)}% | ${fmt(100 * r.worstListener, 1)}% | ${fmt(100 * r.serverCpu, 0)} |${cells} ${fmt(100 * r.serverIdleCpu, 1)} | ${fmt(r.serverOut / r.secs, 0)} | ${fmt(r.usPerPacket, 1)} | ${fmt(r.usPerPacketNet, 1)} | ${fmt(100 * r.clientCpu, 0)}% | ${fmt(r.clientUsPerPacket, 1)} | ${fmt(100 * r.otherCpu, 0)}% | ${fmt(100 * r.irqCpu, 0)}% | ${r.drops} |`);
  }
  writeResult({ server: SERVER.workers ?? 0, roomMaxPerNode: SERVER.roomMaxPerNode, pin: PIN, rows });
}

/**
 * Per media node: its listeners and what get_stats says they were sent in the window (from the
 * client processes' `stats` before and after), with the node's datagram counters (`net`, already
 * per packet sent), matched by name (a listener's node_id is its worker's name; 'local' is the
 * main process).
 */
function nodeRows(before: any[], after: any[], sent: number, procs: { name: string; net?: Datagrams }[]): NodeRow[] {
  const sum = (replies: any[]) => {
    const m = new Map<string, { listeners: number; packets: number }>();
    for (const r of replies) {
      for (const [node, v] of Object.entries(r.byNode as Record<string, { listeners: number; packets: number }>)) {
        const e = m.get(node) ?? { listeners: 0, packets: 0 };
        m.set(node, { listeners: e.listeners + v.listeners, packets: e.packets + v.packets });
      }
    }
    return m;
  };
  const b = sum(before);
  const a = sum(after);
  return procs.map(({ name, net }) => {
    const node = name === 'main' ? 'local' : name;
    const now = a.get(node);
    return { node: name, listeners: now?.listeners ?? 0, outPerPacket: ((now?.packets ?? 0) - (b.get(node)?.packets ?? 0)) / sent, ...(net ? { net } : {}) };
  });
}

/** e.g. "worker-1: 25 listeners, out 25.00 (get_stats); plane in 1.00 fwd 0.00 to JS 1.00; JS in 0.00 out 1.00". */
function describeNode(r: NodeRow): string {
  const d = r.net;
  const dg = d ? `; plane in ${fmt(d.planeIn, 2)} fwd ${fmt(d.planeFwd, 2)} to JS ${fmt(d.planeToJs, 2)}; JS in ${fmt(d.jsIn, 2)} out ${fmt(d.jsOut, 2)}` : '';
  return `${r.node}: ${r.listeners} listeners, out ${fmt(r.outPerPacket, 2)} (get_stats)${dg}`;
}

await main();
