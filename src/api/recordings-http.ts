// Recordings over HTTP (docs/API.md §5.6): their owner lists and downloads them.
// GET /recordings            → [{name, size, modified, url}]   (an admin may add ?user=NAME)
// GET /recordings/<name>     → the file (Range requests supported for seeking players)
// Authentication: "Authorization: Bearer <JWT>" (jwt mode) or "Basic base64(user:password)"
// (static mode; in open mode the password is ignored, as at login).
import { createReadStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Authenticator, Identity } from '../access/auth.js';
import { userRecordingsDir, type MediaPaths } from '../core/sessions/media-paths.js';
import { ApiError } from '../protocol/errors.js';

const NAME = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,250}\.(webm|mkv|mp4)$/;

/** The caller, undefined when not authenticated, or the refusal of a rate-limited address. */
async function identify(req: IncomingMessage, auth: Authenticator): Promise<Identity | ApiError | undefined> {
  const h = req.headers.authorization ?? '';
  // Counted with the API's logins: guessing passwords here is no cheaper than over the WebSocket.
  const address = req.socket.remoteAddress ?? '';
  try {
    if (h.startsWith('Bearer ')) return await auth.loginFrom(address, { token: h.slice(7).trim() });
    if (h.startsWith('Basic ')) {
      const [user, ...rest] = Buffer.from(h.slice(6).trim(), 'base64').toString('utf8').split(':');
      return await auth.loginFrom(address, { user, password: rest.join(':') });
    }
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    if (err.term === 'too_many_logins') return err;
  }
  return undefined;
}

function send(res: ServerResponse, code: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(code, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

/** Handles /recordings requests; returns false for other paths. */
export async function handleRecordings(req: IncomingMessage, res: ServerResponse, auth: Authenticator, paths: MediaPaths): Promise<boolean> {
  const url = new URL(req.url ?? '/', 'http://x');
  if (url.pathname !== '/recordings' && !url.pathname.startsWith('/recordings/')) return false;
  if (req.method !== 'GET' && req.method !== 'HEAD') { send(res, 405, { error: 'method not allowed' }, { allow: 'GET, HEAD' }); return true; }
  const who = await identify(req, auth);
  if (who instanceof ApiError) {
    send(res, 429, { error: who.message }, { 'retry-after': String(/in (\d+) s/.exec(who.message)?.[1] ?? 60) });
    return true;
  }
  if (!who) {
    // Slows down password guessing, as failed logins on the API are.
    await new Promise((r) => setTimeout(r, 250));
    send(res, 401, { error: 'authentication required' }, { 'www-authenticate': 'Basic realm="nkmedia", Bearer' });
    return true;
  }
  const owner = who.admin && url.searchParams.get('user') ? url.searchParams.get('user')! : who.user;
  const dir = userRecordingsDir(paths, owner);

  if (url.pathname === '/recordings' || url.pathname === '/recordings/') {
    const names = await readdir(dir).catch(() => [] as string[]);
    const files = [];
    for (const name of names.filter((n) => NAME.test(n)).sort()) {
      const st = await stat(join(dir, name)).catch(() => undefined);
      if (st?.isFile()) files.push({ name, size: st.size, modified: st.mtime.toISOString(), url: `/recordings/${encodeURIComponent(name)}${owner !== who.user ? `?user=${encodeURIComponent(owner)}` : ''}` });
    }
    send(res, 200, files);
    return true;
  }

  let name: string;
  try {
    name = decodeURIComponent(url.pathname.slice('/recordings/'.length));
  } catch {
    send(res, 400, { error: 'bad %-escape in the recording name' });
    return true;
  }
  if (!NAME.test(name)) { send(res, 404, { error: 'no such recording' }); return true; }
  const path = join(dir, name);
  const st = await stat(path).catch(() => undefined);
  if (!st?.isFile()) { send(res, 404, { error: 'no such recording' }); return true; }
  const type = name.endsWith('.mp4') ? 'video/mp4' : 'video/webm';
  const range = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range ?? '');
  let start = 0;
  let end = st.size - 1;
  if (range && (range[1] || range[2])) {
    if (range[1]) { start = Number(range[1]); if (range[2]) end = Math.min(end, Number(range[2])); } else { start = Math.max(0, st.size - Number(range[2])); }
    if (start > end || start >= st.size) { res.writeHead(416, { 'content-range': `bytes */${st.size}` }); res.end(); return true; }
    res.writeHead(206, { 'content-type': type, 'content-length': String(end - start + 1), 'content-range': `bytes ${start}-${end}/${st.size}`, 'accept-ranges': 'bytes' });
  } else {
    res.writeHead(200, { 'content-type': type, 'content-length': String(st.size), 'accept-ranges': 'bytes' });
  }
  if (req.method === 'HEAD') { res.end(); return true; }
  createReadStream(path, { start, end }).on('error', () => res.destroy()).pipe(res);
  return true;
}
