// A loopback HTTP relay for one played URL. mediabunny and ffmpeg read remote media from here,
// never from the network: each GET/HEAD (with its Range) becomes a fresh checked request to
// the one validated URL (safe-http.ts), so neither reader can be steered elsewhere — not by a
// redirect, nor by a playlist naming other hosts. Bound to 127.0.0.1 on an ephemeral port and
// served under an unguessable path; closing it revokes that path and ends every exchange.
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream';
import { checkedRequest, HttpFailure, type AddressPolicy } from './safe-http.js';

/** Response headers passed on: what readers need to read by ranges, nothing else. */
const PASSED = ['content-length', 'content-range', 'accept-ranges'] as const;
/** One plain byte range; anything else is not forwarded. */
const RANGE = /^bytes=\d{0,15}-\d{0,15}$/;

export class HttpRelay {
  /** Where readers read the target: http://127.0.0.1:<port>/<token>. */
  readonly url: string;
  /** What last went wrong upstream, in words fit for clients (HTTP status or HttpFailure). */
  lastFailure?: { message: string; detail?: string };
  private readonly exchanges = new Set<AbortController>();
  private closed = false;

  private constructor(private readonly server: Server, private readonly path: string, private readonly target: URL, private readonly allow: AddressPolicy) {
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}${path}`;
  }

  static async open(target: URL, allow: AddressPolicy): Promise<HttpRelay> {
    const path = `/${randomBytes(24).toString('hex')}`;
    let relay: HttpRelay | undefined;
    const server = createServer((req, res) => relay?.serve(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => { server.off('error', reject); resolve(); });
    });
    relay = new HttpRelay(server, path, target, allow);
    return relay;
  }

  private serve(req: IncomingMessage, res: ServerResponse): void {
    if (this.closed || req.url !== this.path) { res.writeHead(404).end(); return; }
    if (req.method !== 'GET' && req.method !== 'HEAD') { res.writeHead(405, { allow: 'GET, HEAD' }).end(); return; }
    const range = req.headers.range;
    const ac = new AbortController();
    this.exchanges.add(ac);
    res.once('close', () => { ac.abort(); this.exchanges.delete(ac); });
    checkedRequest(this.target, { allow: this.allow, method: req.method, range: range && RANGE.test(range) ? range : undefined, signal: ac.signal }).then((up) => {
      if (ac.signal.aborted) { up.body.destroy(); return; }
      // 416 is a reader asking past the end (a seek there), not a failure of the source.
      if (up.status >= 400 && up.status !== 416) this.lastFailure = { message: `HTTP ${up.status}` };
      const headers: Record<string, string> = {};
      for (const h of PASSED) {
        const v = up.headers[h];
        if (typeof v === 'string') headers[h] = v;
      }
      // Error bodies are not passed on: readers only need the status.
      if (up.status >= 400 || req.method === 'HEAD') {
        up.body.destroy();
        res.writeHead(up.status, up.status >= 400 ? {} : headers).end();
        return;
      }
      res.writeHead(up.status, headers);
      pipeline(up.body, res, (err) => {
        if (err && !ac.signal.aborted) this.lastFailure = { message: 'connection lost', detail: err.message };
      });
    }, (err: unknown) => {
      if (ac.signal.aborted) return;
      const f = err instanceof HttpFailure ? err : new HttpFailure('cannot_connect', (err as Error).message);
      this.lastFailure = { message: f.message, detail: f.detail };
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    });
  }

  /** Revokes the path, ends every exchange (both sides) and closes the port. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const ac of this.exchanges) ac.abort();
    this.exchanges.clear();
    const done = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await done;
  }
}
