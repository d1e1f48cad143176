// Makes a fresh clone runnable: installs the locked dependencies when they are missing, then
// compiles the TypeScript sources when dist/ is missing or older than them.
import { execSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

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
const out = join(root, 'dist', 'cli.js');
if (!existsSync(out) || statSync(out).mtimeMs < newest(join(root, 'src'))) {
  console.error('[nkmedia] compiling TypeScript...');
  run('npx tsc -p tsconfig.json');
}
