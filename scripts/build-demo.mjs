// Builds the demo pages (demo/, served by the server under /demo/) into dist/demo/: each page
// demo/<x>.html has its script demo/<x>.ts, bundled by esbuild with the client SDK (src/client),
// and the .html and .css files are copied next to the bundles. Nothing outside the server is loaded.
//
//   node scripts/build-demo.mjs          # build now
//   import { buildDemoIfStale } from './build-demo.mjs'   # build when missing or older than demo/ or src/client/
import { existsSync, mkdirSync, readdirSync, copyFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const srcDir = join(root, 'demo');
export const demoOutDir = join(root, 'dist', 'demo');
const stamp = join(demoOutDir, '.build-stamp');

function newest(dir) {
  let t = 0;
  if (!existsSync(dir)) return t;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

/** Builds dist/demo/ from demo/ (into a temporary folder first, then swapped in whole). */
export async function buildDemo() {
  const { build } = await import('esbuild');
  const files = readdirSync(srcDir);
  // A page is x.html with its script x.ts; other .ts files are shared modules.
  const entries = files.filter((f) => f.endsWith('.ts') && files.includes(f.replace(/\.ts$/, '.html'))).map((f) => join(srcDir, f));
  const tmp = `${demoOutDir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    await build({
      entryPoints: entries,
      outdir: tmp,
      bundle: true,
      platform: 'browser',
      format: 'esm',
      target: 'es2022',
      // The SDK imports `ws` only where there is no global WebSocket (Node); browsers have one.
      external: ['ws'],
      sourcemap: true,
      logLevel: 'warning',
    });
    for (const f of files.filter((n) => /\.(html|css|svg)$/.test(n))) copyFileSync(join(srcDir, f), join(tmp, f));
    writeFileSync(join(tmp, '.build-stamp'), `${new Date().toISOString()}\n`);
    // Swap: a server reading dist/demo/ meanwhile sees the old build or the new one.
    const old = `${demoOutDir}.old-${process.pid}`;
    try { renameSync(demoOutDir, old); } catch { /* none yet (or another build moved it) */ }
    try { renameSync(tmp, demoOutDir); } catch { rmSync(demoOutDir, { recursive: true, force: true }); renameSync(tmp, demoOutDir); }
    rmSync(old, { recursive: true, force: true });
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}

/** Builds when dist/demo/ is missing or older than demo/ or the client SDK; true if it built. */
export async function buildDemoIfStale() {
  if (!existsSync(srcDir)) return false;
  const sources = Math.max(newest(srcDir), newest(join(root, 'src', 'client')));
  if (existsSync(stamp) && statSync(stamp).mtimeMs >= sources) return false;
  if (!existsSync(join(root, 'node_modules', 'esbuild', 'package.json'))) {
    console.error('[nkmedia] WARNING: demo pages not built (esbuild is not installed: npm ci with dev dependencies)');
    return false;
  }
  console.error('[nkmedia] bundling the demo pages...');
  await buildDemo();
  return true;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  buildDemo().then(() => console.error(`[nkmedia] demo pages built in ${demoOutDir}`), (err) => {
    console.error(err);
    process.exit(1);
  });
}
