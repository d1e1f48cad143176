// Makes a fresh clone runnable: installs the locked dependencies when they are missing, compiles
// the TypeScript sources when dist/ is missing or older than them, and builds the optional native
// SRTP addon when it is missing or older than native/.
import { execSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, realpathSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const run = (cmd) => execSync(cmd, { cwd: root, stdio: 'inherit' });

const installed = ['werift', 'ws', 'zod', 'pino', 'jose', 'typescript', 'tsx']
  .every((p) => existsSync(join(root, 'node_modules', p, 'package.json')));
if (!installed) {
  console.error('[nkmedia] installing dependencies (npm ci)...');
  run('npm ci --no-audit --no-fund');
}

function newest(dir) {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}
// tsc leaves unchanged outputs untouched, so a stamp written after each build marks freshness.
const stamp = join(root, 'dist', '.build-stamp');
if (!existsSync(join(root, 'dist', 'cli.js')) || !existsSync(stamp) || statSync(stamp).mtimeMs < newest(join(root, 'src'))) {
  console.error('[nkmedia] compiling TypeScript...');
  run('npx tsc -p tsconfig.json');
  writeFileSync(stamp, `${new Date().toISOString()}\n`);
}

// The optional native SRTP addon (native/srtp.c, see src/engine/local/accel/native-srtp.ts): rebuilt
// when missing or older than its sources. It is an accelerator only, so a failed build warns and
// the server carries on with werift's pure-JS SRTP.
buildNativeAddon();

function buildNativeAddon() {
  const addon = join(root, 'build', 'Release', 'nkmedia_native.node');
  if (!existsSync(join(root, 'binding.gyp')) || !existsSync(join(root, 'native'))) return;
  const sources = Math.max(newest(join(root, 'native')), statSync(join(root, 'binding.gyp')).mtimeMs);
  if (existsSync(addon) && statSync(addon).mtimeMs >= sources) return;
  const warn = (why) => console.error(
    `[nkmedia] WARNING: native SRTP addon not built (${why}); continuing with werift's JS SRTP, which costs ` +
    'several more microseconds of CPU per packet. Needs a C compiler, make, python3 and the Node headers.');

  // node-gyp ships inside npm; run it with this node rather than relying on it being on PATH.
  const npmRoots = [
    process.env.npm_execpath && dirname(dirname(process.env.npm_execpath)),
    join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm'),
    join(dirname(process.execPath), 'node_modules', 'npm'),
  ].filter(Boolean);
  try { npmRoots.push(dirname(dirname(realpathSync(execSync('command -v npm', { encoding: 'utf8' }).trim())))); } catch { /* no npm on PATH */ }
  const gyp = [join(root, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'), ...npmRoots.map((r) => join(r, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'))]
    .find((p) => existsSync(p));
  if (!gyp) { warn('node-gyp not found'); return; }

  // Headers: npm's configured nodedir when run under npm; else the ones installed next to this
  // node (no download, and they match the OpenSSL inside this node binary); else node-gyp's own
  // cache, which it may try to download.
  const args = [gyp, 'rebuild'];
  const prefix = dirname(dirname(process.execPath));
  const nodedir = process.env.npm_config_nodedir
    || (existsSync(join(prefix, 'include', 'node', 'common.gypi')) ? prefix : undefined);
  if (nodedir) args.push(`--nodedir=${nodedir}`);

  console.error('[nkmedia] building the native addon (SRTP, forwarding plane)...');
  const r = spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8' });
  if (r.status !== 0) {
    const out = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n').slice(-15).join('\n');
    if (out) console.error(out);
    warn(r.error ? r.error.message : `node-gyp exited with ${r.status}`);
    return;
  }
  // Check it actually loads in this node (symbols resolve against node's own OpenSSL).
  const load = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(addon)})`], { encoding: 'utf8' });
  if (load.status !== 0) { console.error(load.stderr.trim()); warn('it does not load'); return; }
  console.error('[nkmedia] native addon built');
}

// The demo pages (demo/, served under /demo/): bundled into dist/demo/ when missing or stale.
const { buildDemoIfStale } = await import('./build-demo.mjs');
await buildDemoIfStale().catch((err) => console.error(`[nkmedia] WARNING: demo pages not built: ${err.message}`));
