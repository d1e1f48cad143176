// Runs the browser suite (test-browser/**/*.test.ts): headless Chromium against the server,
// both inside a network namespace this script creates and always deletes again.
//
// Chromium never uses 127.0.0.1 for ICE and gathers no candidate at all without a
// non-loopback interface and a default route, so the suite needs an interface with a private
// address. It gets one in a fresh namespace: lo, plus a veth pair whose both ends stay in the
// namespace (10.213.0.1/24 on one end, nothing on the other) and a default route through it.
// Nothing routes out of the namespace: packets to any other address die at the veth's far end.
//
// Usage: node scripts/run-browser-tests.mjs [--workers N|auto] [filter...]
//   (needs root and iproute2's `ip netns`)
//   npm run test:browser -- --workers 2     the same suite with the server's media on two worker
//                                           processes (media.workers; or NKMEDIA_TEST_WORKERS=2)
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const dir = join(root, 'test-browser');
const only = [];
let workers = process.env.NKMEDIA_TEST_WORKERS || undefined;
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  if (a === '--workers' || a.startsWith('--workers=')) {
    workers = a === '--workers' ? (process.argv[++i] ?? '') : a.slice('--workers='.length);
  } else {
    only.push(a);
  }
}
if (workers !== undefined && !/^(\d+|auto)$/.test(workers)) {
  console.error(`\nbrowser tests: --workers (or NKMEDIA_TEST_WORKERS) takes a number of media worker processes or auto, not ${JSON.stringify(workers)}; the suite was NOT run\n`);
  process.exit(1);
}
const NS = `nkm-browser-${process.pid}`;
const ADDR = '10.213.0.1';
const CHROMIUM = process.env.NKMEDIA_CHROMIUM ?? '/usr/bin/chromium';

function fail(msg) {
  console.error(`\nbrowser tests: ${msg}\n`);
  process.exit(1);
}

// ---- preconditions: fail loudly, never skip ----------------------------------------------------
if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
  fail('must run as root (it creates a network namespace with `ip netns add`); the suite was NOT run');
}
const probe = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
if (probe.error || probe.status !== 0) {
  fail(`\`ip netns\` is unavailable (${probe.error?.message ?? probe.stderr.trim()}); install iproute2 (apt-get install -y iproute2); the suite was NOT run`);
}
if (!existsSync(CHROMIUM)) {
  fail(`no Chromium at ${CHROMIUM}; install it (apt-get install -y chromium) or set NKMEDIA_CHROMIUM; the suite was NOT run`);
}

function find(d) {
  return readdirSync(d, { withFileTypes: true }).flatMap((e) => {
    const p = join(d, e.name);
    if (e.isDirectory()) return e.name === 'node_modules' || e.name === 'screenshots' ? [] : find(p);
    return e.name.endsWith('.test.ts') ? [p] : [];
  });
}
let files = find(dir).sort();
if (only.length > 0) files = files.filter((f) => only.some((o) => f.includes(o)));
if (files.length === 0) fail(`no test files under ${relative(root, dir)}${only.length ? ` matching ${only.join(', ')}` : ''}`);

// ---- dependencies and type check (before the namespace exists: nothing to clean up) -------------
const deps = spawnSync(process.execPath, [join(root, 'scripts', 'ensure-deps.mjs')], { cwd: root, stdio: 'inherit' });
if (deps.status !== 0) fail('installing dependencies failed');
const peers = spawnSync(process.execPath, [join(root, 'scripts', 'ensure-test-peers.mjs')], { cwd: root, stdio: 'inherit' });
if (peers.status !== 0) fail('installing the Kurento test peers (test/kurento-peer, examples/kurento-hello-world) failed');
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
const check = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.check.json'], { cwd: root, stdio: 'inherit' });
if (check.status !== 0) fail('type check failed');

// ---- the namespace ------------------------------------------------------------------------------
function ip(...args) {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${(r.stderr || r.error?.message || '').trim()}`);
  return r.stdout;
}

function pidAlive(pid) {
  try { process.kill(pid, 0); return true; } catch (e) { return e.code === 'EPERM'; }
}

/** Namespaces left by runs that were killed outright (SIGKILL): their runner is gone. */
function removeStale() {
  const names = (spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout ?? '')
    .split('\n').map((l) => l.split(' ')[0]).filter((n) => /^nkm-browser-\d+$/.test(n));
  for (const n of names) {
    const pid = Number(n.slice('nkm-browser-'.length));
    if (pid !== process.pid && !pidAlive(pid)) {
      killInside(n);
      spawnSync('ip', ['netns', 'del', n]);
      console.error(`browser tests: removed stale namespace ${n}`);
    }
  }
}

/** Ends what is still running inside namespace `n` (only ever our own test processes). */
function killInside(n) {
  const pids = (spawnSync('ip', ['netns', 'pids', n], { encoding: 'utf8' }).stdout ?? '')
    .split('\n').map(Number).filter((p) => p > 0 && p !== process.pid);
  for (const p of pids) { try { process.kill(p, 'SIGKILL'); } catch { /* already gone */ } }
}

let created = false;
let cleaned = false;
function cleanup() {
  if (cleaned || !created) return;
  cleaned = true;
  killInside(NS);
  const r = spawnSync('ip', ['netns', 'del', NS], { encoding: 'utf8' });
  if (r.status !== 0) console.error(`browser tests: could not delete namespace ${NS}: ${r.stderr.trim()}`);
}
process.on('exit', cleanup);

removeStale();
try {
  ip('netns', 'add', NS);
  created = true;
  ip('-n', NS, 'link', 'set', 'lo', 'up');
  ip('-n', NS, 'link', 'add', 'nkm0', 'type', 'veth', 'peer', 'name', 'nkm1');
  ip('-n', NS, 'addr', 'add', `${ADDR}/24`, 'dev', 'nkm0');
  ip('-n', NS, 'link', 'set', 'nkm1', 'up');
  ip('-n', NS, 'link', 'set', 'nkm0', 'up');
  ip('-n', NS, 'route', 'add', 'default', 'dev', 'nkm0');
} catch (err) {
  cleanup();
  fail(`cannot set up network namespace ${NS}: ${err.message}`);
}
console.error(`browser tests: namespace ${NS} (lo, nkm0 ${ADDR}/24, default route via nkm0); ${files.length} file(s)` +
  `; media ${workers !== undefined && workers !== '0' ? `on ${workers} worker process(es)` : 'in the test process'}`);

// ---- the tests, inside the namespace --------------------------------------------------------------
const started = Date.now();
const child = spawn('ip', [
  'netns', 'exec', NS,
  process.execPath, '--import', 'tsx', '--test', '--test-reporter=spec', '--test-concurrency=1', ...files,
], {
  cwd: root,
  stdio: 'inherit',
  env: {
    ...process.env, NODE_ENV: 'test', NKMEDIA_BROWSER_NETNS: NS, NKMEDIA_BROWSER_ADDR: ADDR, NKMEDIA_CHROMIUM: CHROMIUM,
    ...(workers !== undefined ? { NKMEDIA_TEST_WORKERS: workers } : {}),
  },
});

let signalled;
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    signalled = sig;
    try { child.kill(sig); } catch { /* gone */ }
    // If it does not stop promptly, end it and everything it left in the namespace.
    setTimeout(() => { cleanup(); process.exit(130); }, 5000).unref();
  });
}

child.on('exit', (code, sig) => {
  cleanup();
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  if (signalled) { console.error(`browser tests: interrupted (${signalled}) after ${secs} s`); process.exit(130); }
  // On success node's own summary stays the last thing printed (CI reads closing lines).
  if (code === 0) process.exit(0);
  console.error(`browser tests: FAILED (${sig ? `signal ${sig}` : `exit code ${code}`}) after ${secs} s`);
  process.exit(code || 1);
});
child.on('error', (err) => { cleanup(); fail(`cannot start the test runner: ${err.message}`); });
