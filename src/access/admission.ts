// Who may open a connection to the API's HTTP port, before any byte of the API is read: caps on
// TCP connections (all, and per source address), and in `open` mode the browser checks that keep
// other web pages on the same machine out (a foreign Origin on a WebSocket upgrade: cross-site
// WebSocket hijacking; a foreign Host: DNS rebinding).
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { isLoopbackIp } from '../util/addresses.js';

export interface AdmissionOptions {
  /** open mode: Host must name a loopback address, Origin must be this server (or listed). */
  openMode: boolean;
  allowedOrigins: readonly string[];
  maxConnections: number;
  maxPerAddress: number;
}

export interface Refusal { status: number; reason: string; retryAfter?: number }

/** Host names that only ever mean this machine (checked without DNS: no lookup per request). */
const LOOPBACK_NAMES = new Set(['localhost', 'localhost.']);

/** The host part of a Host header or an origin's authority, lower case, without brackets. */
function hostOf(authority: string): string | undefined {
  const m = /^(\[[0-9a-f:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/i.exec(authority.trim());
  if (!m) return undefined;
  const h = m[1]!.toLowerCase();
  return h.startsWith('[') ? h.slice(1, -1) : h;
}

/** A Host header that names this machine by a loopback name or address (never a DNS name). */
export function isLoopbackHostHeader(host: string | undefined): boolean {
  if (host === undefined) return false;
  const h = hostOf(host);
  return h !== undefined && (LOOPBACK_NAMES.has(h) || h.endsWith('.localhost') || isLoopbackIp(h));
}

export class Admission {
  private readonly perAddress = new Map<string, number>();
  private total = 0;

  constructor(private readonly opts: AdmissionOptions) {}

  /**
   * A new TCP connection: counted until it closes; refused (false) over the caps, in which case
   * the caller answers 503 and closes it.
   */
  admitSocket(socket: Socket): boolean {
    const addr = socket.remoteAddress ?? '';
    const n = this.perAddress.get(addr) ?? 0;
    if (this.total >= this.opts.maxConnections || n >= this.opts.maxPerAddress) return false;
    this.total++;
    this.perAddress.set(addr, n + 1);
    socket.once('close', () => {
      this.total--;
      const left = (this.perAddress.get(addr) ?? 1) - 1;
      if (left <= 0) this.perAddress.delete(addr); else this.perAddress.set(addr, left);
    });
    return true;
  }

  /** Checks any HTTP request's Host (open mode only). */
  checkHost(req: IncomingMessage): Refusal | undefined {
    if (!this.opts.openMode) return undefined;
    if (!isLoopbackHostHeader(req.headers.host)) {
      return { status: 403, reason: 'open mode serves only loopback host names (Host header)' };
    }
    return undefined;
  }

  /** Checks a WebSocket upgrade's Origin: listed, or (open mode) this very server. */
  checkOrigin(req: IncomingMessage): Refusal | undefined {
    const origin = req.headers.origin;
    // Non-browser clients send no Origin; browsers always do on WebSocket upgrades.
    if (origin === undefined) return undefined;
    if (this.opts.allowedOrigins.includes(origin)) return undefined;
    if (!this.opts.openMode && this.opts.allowedOrigins.length === 0) return undefined;
    if (this.opts.openMode && sameOrigin(origin, req.headers.host)) return undefined;
    return { status: 403, reason: 'origin not allowed' };
  }
}

/** Whether a page's origin is this server as the request reached it (loopback host, same port). */
function sameOrigin(origin: string, host: string | undefined): boolean {
  let u: URL;
  try { u = new URL(origin); } catch { return false; }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return false;
  if (!isLoopbackHostHeader(u.host) || host === undefined) return false;
  return u.host.toLowerCase() === host.trim().toLowerCase();
}

const STATUS_TEXT: Record<number, string> = { 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 503: 'Service Unavailable' };

/** A raw HTTP error response on a socket that is not (or no longer) handled by the HTTP server. */
export function refuseSocket(socket: Socket, r: Refusal): void {
  const body = `${r.reason}\n`;
  const head = [
    `HTTP/1.1 ${r.status} ${STATUS_TEXT[r.status] ?? 'Error'}`,
    'Content-Type: text/plain; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(body)}`,
    ...(r.retryAfter !== undefined ? [`Retry-After: ${r.retryAfter}`] : []),
    'Connection: close',
  ].join('\r\n');
  socket.on('error', () => undefined);
  socket.end(`${head}\r\n\r\n${body}`);
  // A peer that never reads must not keep the descriptor.
  setTimeout(() => socket.destroy(), 1000).unref();
}
