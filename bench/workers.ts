// Media in worker processes against media in the server process (README "Workers and media
// nodes"): fan-out delivery and CPU by process, session set-up time, and idle memory, per mode.
//   npm run bench:workers
//   env: MODES=0,1,2 (MEDIA_WORKERS of each mode; 0: media in the server process)  LISTENERS=50,100
//        SECONDS=5  SESSIONS=100  IDLE_WAIT=5  CONCURRENCY=1 WORKERS=1 (fanout's: listeners joining
//        at once, client processes)  (PIN, QUIET_WAIT and the rest reach bench/fanout.ts too)
//
// Each fan-out (N, mode) is a bench/fanout.ts run of its own, with a fresh server and
// ROOM_MAX_PER_NODE=N/2, so that with 2 workers N/2 listeners are on the publisher's worker and N/2
// on the other, fed through one pipe. Listeners join one at a time (CONCURRENCY=1 in one client
// process): placement counts a room's listeners on a node only once their elements exist, so
// listeners joining together all see the same count and overshoot the cap (with fanout's default
// 2 x 8 in flight, 9 of 10 went to the publisher's worker with a cap of 5). The modes take turns at
// each N so that whatever else the machine does falls on all of them alike. CPU pinning is
// fanout's (PIN=1 on 2+ cores: every server process on CPU 0, the clients on the others). Set-up
// is bench/setup.ts without its memory part; memory is the RSS of each process of a server holding
// nothing, IDLE_WAIT s after it started.
// The tables at the end gather what the runs wrote to their BENCH_RESULT_FILE.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fmt, rssOf, spawnServer } from './lib.js';

const MODES = (process.env.MODES ?? '0,1,2').split(',').map(Number);
const LISTENERS = (process.env.LISTENERS ?? '50,100').split(',').map(Number);
const SECONDS = process.env.SECONDS ?? '5';
const SESSIONS = process.env.SESSIONS ?? '100';
const IDLE_WAIT = Number(process.env.IDLE_WAIT ?? 5);

const modeName = (workers: number) => (workers ? `--workers ${workers}` : 'in-process');
const dir = mkdtempSync(join(tmpdir(), 'nkm-workers-'));

/** Runs bench/<script> with `env` added; resolves with what it wrote to its BENCH_RESULT_FILE. */
async function run(script: string, label: string, env: Record<string, string>): Promise<any> {
  const file = join(dir, `${label.replace(/\W+/g, '-')}.json`);
  console.log(`\n== ${label} ==`);
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL(`./${script}`, import.meta.url))], {
    env: { ...process.env, ...env, BENCH_RESULT_FILE: file }, stdio: 'inherit',
  });
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  if (code !== 0) throw new Error(`${script} (${label}) exited with ${code}`);
  return JSON.parse(readFileSync(file, 'utf8'));
}

const pct = (x: number) => fmt(100 * x, 1);

async function main(): Promise<void> {
  // ---- fan-out ----
  const fanout: { n: number; workers: number; pin: boolean; row: any }[] = [];
  for (const n of LISTENERS) {
    for (const workers of MODES) {
      const env: Record<string, string> = {
        LISTENERS: String(n), SECONDS, MEDIA_WORKERS: String(workers), ROOM_MAX_PER_NODE: String(Math.ceil(n / 2)),
        CONCURRENCY: process.env.CONCURRENCY ?? '1', WORKERS: process.env.WORKERS ?? '1',
      };
      const r = await run('fanout.ts', `fan-out N=${n}, ${modeName(workers)}`, env);
      fanout.push({ n, workers, pin: r.pin, row: r.rows[0] });
    }
  }
  // ---- set-up ----
  const setup: { workers: number; r: any }[] = [];
  for (const workers of MODES) {
    setup.push({ workers, r: await run('setup.ts', `set-up, ${modeName(workers)}`, { SESSIONS, MEMORY: '0', MEDIA_WORKERS: String(workers) }) });
  }
  // ---- idle memory ----
  const memory: { workers: number; rss: { name: string; mib: number }[] }[] = [];
  for (const workers of MODES) {
    const server = await spawnServer([], { workers });
    try {
      await new Promise((r) => setTimeout(r, IDLE_WAIT * 1000));
      memory.push({ workers, rss: server.processes.map((p) => ({ name: p.name, mib: rssOf(p.pid) / 2 ** 20 })) });
    } finally {
      await server.stop();
    }
  }

  // ---- tables ----
  const workerNames = [...new Set(fanout.flatMap((f) => f.row.procs.map((p: any) => p.name as string)))].filter((n) => n !== 'main');
  console.log(`\nfan-out (${SECONDS} s windows; ${fanout[0]?.pin ? 'every server process pinned to CPU 0, clients to the others' : 'no CPU pinning'}; CPU in % of a core):`);
  console.log(`| N | mode | delivered | worst listener | server CPU | main |${workerNames.map((w) => ` ${w} |`).join('')} idle | us/pkt | us/pkt net of idle | other procs |`);
  console.log(`|---|---|---|---|---|---|${'---|'.repeat(workerNames.length)}---|---|---|---|`);
  for (const { n, workers, row } of fanout) {
    const cpuOf = (name: string) => row.procs.find((p: any) => p.name === name);
    const cells = workerNames.map((w) => ` ${cpuOf(w) ? pct(cpuOf(w).cpu) : '-'} |`).join('');
    console.log(`| ${n} | ${modeName(workers)} | ${fmt(100 * row.delivered, 2)}% | ${fmt(100 * row.worstListener, 1)}% | ${pct(row.serverCpu)} | ${pct(cpuOf('main').cpu)} |${cells} ${pct(row.serverIdleCpu)} | ${fmt(row.usPerPacket, 1)} | ${fmt(row.usPerPacketNet, 1)} | ${pct(row.otherCpu)} |`);
  }

  console.log('\nper media node, per packet the publisher sent (datagram counters net of the idle rate):');
  console.log('| N | mode | node | listeners | sent to listeners (get_stats) | plane read | plane forwarded | plane to JS | JS received | JS sent |');
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  for (const { n, workers, row } of fanout) {
    for (const node of row.nodes) {
      if (workers && node.node === 'main') continue; // no media there
      const d = node.net;
      const c = d ? [d.planeIn, d.planeFwd, d.planeToJs, d.jsIn, d.jsOut].map((x: number) => fmt(x, 2)).join(' | ') : '- | - | - | - | -';
      console.log(`| ${n} | ${modeName(workers)} | ${node.node} | ${node.listeners} | ${fmt(node.outPerPacket, 2)} | ${c} |`);
    }
  }

  const base = setup.find((s) => s.workers === 0)?.r;
  console.log(`\nset-up (${SESSIONS} sessions one after another; create+answer is the client's round trip):`);
  console.log('| mode | create+answer median (ms) | p90 | median vs in-process | answer -> connected median (ms) | p90 |');
  console.log('|---|---|---|---|---|---|');
  for (const { workers, r } of setup) {
    const delta = base ? `${r.answer.median - base.answer.median >= 0 ? '+' : ''}${fmt(r.answer.median - base.answer.median, 2)}` : '-';
    console.log(`| ${modeName(workers)} | ${fmt(r.answer.median, 2)} | ${fmt(r.answer.p90, 2)} | ${delta} | ${fmt(r.connect.median, 1)} | ${fmt(r.connect.p90, 1)} |`);
  }

  console.log(`\nidle memory (RSS ${IDLE_WAIT} s after start, no session; MiB):`);
  console.log(`| mode | main |${workerNames.map((w) => ` ${w} |`).join('')} total |`);
  console.log(`|---|---|${'---|'.repeat(workerNames.length)}---|`);
  for (const { workers, rss } of memory) {
    const of = (name: string) => rss.find((p) => p.name === name);
    console.log(`| ${modeName(workers)} | ${fmt(of('main')!.mib)} |${workerNames.map((w) => ` ${of(w) ? fmt(of(w)!.mib) : '-'} |`).join('')} ${fmt(rss.reduce((a, p) => a + p.mib, 0))} |`);
  }
}

await main();
