// The demo pages over HTTP: GET /demo/ and /demo/<file> serve the bundle that
// scripts/build-demo.mjs makes from demo/ into dist/demo/ (npm start and the test runners build
// it). Only files of that folder with plain names are served; a Content-Security-Policy keeps
// the pages to this server (no script, style, font or media from anywhere else).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { IncomingMessage, ServerResponse } from 'node:http';

/** dist/demo/ at the project's root: two levels up from both src/api/ and dist/api/. */
export const DEMO_DIR = fileURLToPath(new URL('../../dist/demo/', import.meta.url));

const TYPES: Record<string, string> = {
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
  map: 'application/json; charset=utf-8',
  svg: 'image/svg+xml',
};
const FILE = /^[a-z0-9][a-z0-9-]*\.(html|js|css|map|svg)$/;

function csp(req: IncomingMessage): string {
  // WebSocket to this same server only ('self' does not cover ws: everywhere).
  const host = String(req.headers.host ?? '').replace(/[^A-Za-z0-9.:[\]-]/g, '');
  const ws = host ? ` ws://${host} wss://${host}` : '';
  return `default-src 'self'; connect-src 'self'${ws}; media-src 'self' blob:; img-src 'self' data: blob:; ` +
    `style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'`;
}

/** Handles /demo requests; returns false for other paths. */
export async function handleDemo(req: IncomingMessage, res: ServerResponse, dir: string = DEMO_DIR): Promise<boolean> {
  const path = new URL(req.url ?? '/', 'http://x').pathname;
  if (path !== '/demo' && !path.startsWith('/demo/')) return false;
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' });
    res.end('method not allowed\n');
    return true;
  }
  if (path === '/demo') {
    res.writeHead(301, { location: '/demo/' });
    res.end();
    return true;
  }
  const name = path === '/demo/' ? 'index.html' : path.slice('/demo/'.length);
  const body = FILE.test(name) ? await readFile(join(dir, name)).catch(() => undefined) : undefined;
  if (!body) {
    const built = await readFile(join(dir, 'index.html')).then(() => true, () => false);
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
    res.end(built ? 'no such demo file\n' : 'the demo pages are not built: run `node scripts/build-demo.mjs` (npm start does it)\n');
    return true;
  }
  res.writeHead(200, {
    'content-type': TYPES[name.slice(name.lastIndexOf('.') + 1)] ?? 'application/octet-stream',
    'content-length': String(body.length),
    'cache-control': 'no-cache',
    'x-content-type-options': 'nosniff',
    'content-security-policy': csp(req),
    'referrer-policy': 'no-referrer',
  });
  res.end(req.method === 'HEAD' ? undefined : body);
  return true;
}
