// Runs a test suite with node's test runner: type-checks everything first, then runs every
// *.test.ts under the given folder (tests are TypeScript, loaded through tsx).
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ensureTestPeers } from './ensure-test-peers.mjs';

const root = new URL('..', import.meta.url).pathname;
const dir = join(root, process.argv[2] ?? 'test');
const only = process.argv.slice(3);

// The separately locked Kurento client packages (test/kurento-peer, examples/kurento-hello-world).
try { ensureTestPeers(); } catch (err) { console.error(`installing the Kurento test peers failed: ${err.message}`); process.exit(1); }

const check = spawnSync('npx', ['tsc', '-p', 'tsconfig.check.json'], { cwd: root, stdio: 'inherit' });
if (check.status !== 0) { console.error('type check failed'); process.exit(1); }

function find(d) {
  return readdirSync(d, { withFileTypes: true }).flatMap((e) => {
    const p = join(d, e.name);
    if (e.isDirectory()) return e.name === 'node_modules' ? [] : find(p);
    return e.name.endsWith('.test.ts') ? [p] : [];
  });
}
let files = find(dir).sort();
if (only.length > 0) files = files.filter((f) => only.some((o) => f.includes(o)));
if (files.length === 0) { console.error(`no test files under ${relative(root, dir)}`); process.exit(1); }

const r = spawnSync(process.execPath, [
  '--import', 'tsx', '--test', '--test-reporter=spec', '--test-concurrency=1', ...files,
], { cwd: root, stdio: 'inherit', env: { ...process.env, NODE_ENV: 'test' } });
process.exit(r.status ?? 1);
