// Installs the separately locked Node packages that the Kurento protocol tests drive the server
// with: test/kurento-peer (the real kurento-client and kurento-utils) and the runnable example
// examples/kurento-hello-world. Each folder is installed with `npm ci --ignore-scripts` when its
// node_modules does not match its package-lock.json (missing, or a locked package absent or at
// another version); silent when both are already in place.
//
// --ignore-scripts: kurento-client's install script names a file its package does not ship, and
// none of these packages needs a build step (ws's optional native helpers fall back to JS).
//
// Usage: node scripts/ensure-test-peers.mjs   (also imported by run-tests.mjs and
// run-browser-tests.mjs before they run anything)
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
export const TEST_PEER_DIRS = ['test/kurento-peer', 'examples/kurento-hello-world'];

/** Why `dir` needs installing, or null when its node_modules matches its lockfile. */
function staleReason(dir) {
  if (!existsSync(join(dir, 'node_modules', 'kurento-client', 'package.json'))) return 'not installed';
  let lock;
  try {
    lock = JSON.parse(readFileSync(join(dir, 'package-lock.json'), 'utf8'));
  } catch (err) {
    throw new Error(`${relative(root, dir)}/package-lock.json: ${err.message}`);
  }
  for (const [path, entry] of Object.entries(lock.packages ?? {})) {
    // npm records ws@7's optional peer utf-8-validate as "extraneous" and `npm ci` skips it.
    if (!path.startsWith('node_modules/') || entry.link || entry.extraneous) continue;
    const pkg = join(dir, path, 'package.json');
    if (!existsSync(pkg)) {
      if (entry.optional) continue; // e.g. esbuild's binaries for other platforms
      return `${path.slice('node_modules/'.length)} missing`;
    }
    let version;
    try { version = JSON.parse(readFileSync(pkg, 'utf8')).version; } catch { version = undefined; }
    if (version !== entry.version) return `${path.slice('node_modules/'.length)} is ${version ?? '?'}, locked ${entry.version}`;
  }
  return null;
}

/** Installs every folder that needs it; throws when an install fails. */
export function ensureTestPeers({ log = (msg) => console.error(msg) } = {}) {
  // Run inside an npm script (npm test), npm exports its own prefix settings; drop them so the
  // child npm works on the folder it is started in, not on the repository root.
  const env = Object.fromEntries(Object.entries(process.env)
    .filter(([k]) => !/^npm_config_(local_)?prefix$/i.test(k)));
  for (const rel of TEST_PEER_DIRS) {
    const dir = join(root, rel);
    if (!existsSync(join(dir, 'package.json'))) continue;
    const why = staleReason(dir);
    if (!why) continue;
    log(`[nkmedia] installing ${rel} (${why}): npm ci --ignore-scripts...`);
    const started = Date.now();
    const r = spawnSync('npm', ['ci', '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: dir, stdio: 'inherit', env });
    if (r.error || r.status !== 0) {
      throw new Error(`npm ci in ${rel} failed (${r.error ? r.error.message : `exit code ${r.status}`})`);
    }
    const left = staleReason(dir);
    if (left) throw new Error(`npm ci in ${rel} left it incomplete (${left})`);
    log(`[nkmedia] installed ${rel} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  try {
    ensureTestPeers();
  } catch (err) {
    console.error(`[nkmedia] ${err.message}`);
    process.exit(1);
  }
}
