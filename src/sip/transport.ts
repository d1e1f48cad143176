// SIP over UDP and TCP (RFC 3261 §18). One UDP socket and one TCP listener; TCP connections are
// reused in both directions, keyed by the peer's address. Stream framing uses Content-Length
// (mandatory on streams). Nothing thrown by parsing or by the receiver escapes a socket handler.

import dgram from 'node:dgram';
import net from 'node:net';
import { lookup } from 'node:dns/promises';
import { contentLengthOf, findHeaderEnd, parseMessage, serialize, SipParseError, unfoldHeaderLines, type Header, type SipMessage } from './message.js';
import { bareHost } from './uri.js';
import type { SipLogger } from './log.js';

export type TransportName = 'udp' | 'tcp';

export interface Destination {
  transport: TransportName;
  host: string;     // IP or name (names are resolved with the system resolver; no SRV/NAPTR)
  port: number;
  /** Prefer this TCP connection (responses go back on the request's connection). */
  connId?: number;
  /** Only over `connId`: fail rather than open a new connection when it is gone. */
  connOnly?: boolean;
}

export interface Source {
  transport: TransportName;
  host: string;     // IP, without brackets
  port: number;
  connId?: number;  // TCP only
}

export interface TransportOptions {
  udp?: { host: string; port: number };
  tcp?: { host: string; port: number };
  maxMessageBytes: number;
  logger: SipLogger;
  onMessage(msg: SipMessage, src: Source): void;
  /** A message that could not be parsed; `err.partial` may allow a 400 answer. */
  onBadMessage(err: SipParseError, src: Source): void;
  /** Idle TCP connections are closed after this (default 5 min). */
  tcpIdleMs?: number;
  /** Cap on simultaneous TCP connections (default 1024); more are refused. */
  maxConnections?: number;
}

interface Conn {
  id: number;
  socket: net.Socket;
  key: string;
  pending: Buffer;
  ready: Promise<void>;
}

const CONNECT_TIMEOUT_MS = 10_000;

export class TransportError extends Error {
  override name = 'TransportError';
}

export class SipTransport {
  private udp?: dgram.Socket;
  private server?: net.Server;
  private readonly conns = new Map<number, Conn>();
  private readonly byKey = new Map<string, Conn>();
  private nextConnId = 1;
  private closed = false;
  private udpAddr?: { host: string; port: number };
  private tcpAddr?: { host: string; port: number };

  private constructor(private readonly opts: TransportOptions) {}

  static async start(opts: TransportOptions): Promise<SipTransport> {
    const t = new SipTransport(opts);
    try {
      if (opts.udp) await t.startUdp(opts.udp);
      if (opts.tcp) await t.startTcp(opts.tcp);
    } catch (e) {
      await t.close();
      throw e;
    }
    return t;
  }

  addresses(): { udp?: { host: string; port: number }; tcp?: { host: string; port: number } } {
    const a: { udp?: { host: string; port: number }; tcp?: { host: string; port: number } } = {};
    if (this.udpAddr) a.udp = { ...this.udpAddr };
    if (this.tcpAddr) a.tcp = { ...this.tcpAddr };
    return a;
  }

  socketCount(): number {
    return (this.udp ? 1 : 0) + (this.server ? 1 : 0) + this.conns.size;
  }

  /** Whether `transport` is available for sending. */
  has(transport: TransportName): boolean {
    return transport === 'udp' ? this.udp !== undefined : this.server !== undefined;
  }

  private startUdp(a: { host: string; port: number }): Promise<void> {
    return new Promise((resolve, reject) => {
      const sock = dgram.createSocket(net.isIPv6(bareHost(a.host)) ? 'udp6' : 'udp4');
      this.udp = sock;
      sock.once('error', reject);
      sock.bind(a.port, bareHost(a.host), () => {
        sock.off('error', reject);
        // Errors on a bound datagram socket (e.g. ICMP reports) are not fatal.
        sock.on('error', (err) => this.opts.logger.warn({ err: String(err) }, 'sip udp socket error'));
        const ad = sock.address();
        this.udpAddr = { host: ad.address, port: ad.port };
        resolve();
      });
      sock.on('message', (buf, rinfo) => this.onDatagram(buf, { transport: 'udp', host: rinfo.address, port: rinfo.port }));
    });
  }

  private startTcp(a: { host: string; port: number }): Promise<void> {
    return new Promise((resolve, reject) => {
      const server = net.createServer((sock) => this.onIncomingConnection(sock));
      this.server = server;
      server.once('error', reject);
      server.listen(a.port, bareHost(a.host), () => {
        server.off('error', reject);
        server.on('error', (err) => this.opts.logger.warn({ err: String(err) }, 'sip tcp server error'));
        const ad = server.address() as net.AddressInfo;
        this.tcpAddr = { host: ad.address, port: ad.port };
        resolve();
      });
    });
  }

  private onDatagram(buf: Buffer, src: Source): void {
    if (buf.length > this.opts.maxMessageBytes) {
      this.opts.logger.debug({ src, bytes: buf.length }, 'sip datagram too large, dropped');
      return;
    }
    // Keep-alive (RFC 5626 §3.5.1: CRLFCRLF) and stray empty datagrams.
    if (buf.every((b) => b === 0x0d || b === 0x0a || b === 0x20)) return;
    this.deliver(buf, src);
  }

  private deliver(buf: Buffer, src: Source): void {
    let msg: SipMessage;
    try {
      msg = parseMessage(buf);
    } catch (e) {
      const err = e instanceof SipParseError ? e : new SipParseError(String(e));
      this.opts.logger.debug({ src, err: err.message }, 'sip parse error');
      this.guard(() => this.opts.onBadMessage(err, src));
      return;
    }
    this.guard(() => this.opts.onMessage(msg, src));
  }

  /** The receiver's errors are logged, never thrown into socket handlers. */
  private guard(f: () => void): void {
    try {
      f();
    } catch (e) {
      this.opts.logger.warn({ err: e instanceof Error ? e.stack ?? e.message : String(e) }, 'sip receiver failed');
    }
  }

  // --- TCP connections -----------------------------------------------------------------------

  private onIncomingConnection(sock: net.Socket): void {
    if (this.closed || this.conns.size >= (this.opts.maxConnections ?? 1024)) {
      sock.destroy();
      return;
    }
    const host = sock.remoteAddress ?? '';
    this.addConn(sock, `${host}:${sock.remotePort}`, Promise.resolve());
  }

  private addConn(sock: net.Socket, key: string, ready: Promise<void>): Conn {
    const c: Conn = { id: this.nextConnId++, socket: sock, key, pending: Buffer.alloc(0), ready };
    this.conns.set(c.id, c);
    this.byKey.set(key, c);
    // Signalling is small messages often written back to back (100, 180, 200): without this,
    // Nagle's algorithm holds each one after the first until the peer's delayed ACK (~40 ms).
    sock.setNoDelay(true);
    sock.setTimeout(this.opts.tcpIdleMs ?? 300_000, () => sock.destroy());
    sock.on('data', (chunk) => this.onData(c, chunk));
    sock.on('error', (err) => this.opts.logger.debug({ key, err: String(err) }, 'sip tcp connection error'));
    sock.on('close', () => {
      this.conns.delete(c.id);
      if (this.byKey.get(key) === c) this.byKey.delete(key);
    });
    return c;
  }

  private onData(c: Conn, chunk: Buffer): void {
    c.pending = c.pending.length === 0 ? chunk : Buffer.concat([c.pending, chunk]);
    const max = this.opts.maxMessageBytes;
    const src: Source = { transport: 'tcp', host: c.socket.remoteAddress ?? '', port: c.socket.remotePort ?? 0, connId: c.id };
    while (c.pending.length > 0 && !c.socket.destroyed) {
      // Leading CRLFs: keep-alive pings (RFC 5626 §3.5.1), answered with a single CRLF pong.
      let skip = 0;
      while (skip < c.pending.length && (c.pending[skip] === 0x0d || c.pending[skip] === 0x0a)) skip++;
      if (skip > 0) {
        if (skip >= 4 && c.pending.subarray(0, 4).toString('latin1') === '\r\n\r\n') c.socket.write('\r\n');
        c.pending = c.pending.subarray(skip);
        continue;
      }
      const he = findHeaderEnd(c.pending);
      if (!he) {
        if (c.pending.length > max) this.badStream(c, 'header section too large');
        return;
      }
      let cl: number | undefined;
      try {
        cl = contentLengthOf(headerLines(c.pending.toString('utf8', 0, he.end)));
      } catch (e) {
        this.badStream(c, (e as Error).message);
        return;
      }
      if (cl === undefined) {
        this.badStream(c, 'Content-Length missing on a stream transport');
        return;
      }
      const total = he.bodyStart + cl;
      if (total > max) {
        this.badStream(c, `message of ${total} bytes exceeds the limit`);
        return;
      }
      if (c.pending.length < total) return;
      const one = c.pending.subarray(0, total);
      c.pending = c.pending.subarray(total);
      this.deliver(Buffer.from(one), src);
    }
  }

  /** Framing is lost: nothing further on this stream can be trusted. */
  private badStream(c: Conn, why: string): void {
    this.opts.logger.debug({ key: c.key, why }, 'sip tcp stream closed');
    c.pending = Buffer.alloc(0);
    c.socket.destroy();
  }

  private async connection(dest: Destination): Promise<Conn> {
    if (dest.connId !== undefined) {
      const c = this.conns.get(dest.connId);
      if (c && !c.socket.destroyed) return c;
      if (dest.connOnly) throw new TransportError('connection closed');
    }
    const host = await this.resolve(dest.host);
    const key = `${host}:${dest.port}`;
    const existing = this.byKey.get(key);
    if (existing && !existing.socket.destroyed) {
      await existing.ready;
      return existing;
    }
    if (this.closed) throw new TransportError('transport closed');
    if (this.conns.size >= (this.opts.maxConnections ?? 1024)) throw new TransportError('too many TCP connections');
    const local = this.tcpAddr?.host;
    const sock = net.connect({ host, port: dest.port, ...(local && local !== '0.0.0.0' && local !== '::' ? { localAddress: local } : {}) });
    const ready = new Promise<void>((resolve, reject) => {
      sock.setTimeout(CONNECT_TIMEOUT_MS);
      const fail = (err: Error): void => { sock.destroy(); reject(new TransportError(`connect to ${key} failed: ${err.message}`)); };
      sock.once('timeout', () => fail(new Error('timeout')));
      sock.once('error', fail);
      sock.once('connect', () => {
        sock.removeAllListeners('timeout');
        sock.off('error', fail);
        resolve();
      });
    });
    ready.catch(() => undefined);
    const c = this.addConn(sock, key, ready);
    await ready;
    return c;
  }

  private async resolve(host: string): Promise<string> {
    const h = bareHost(host);
    if (net.isIP(h)) return h;
    try {
      return (await lookup(h)).address;
    } catch (e) {
      throw new TransportError(`cannot resolve ${h}: ${(e as Error).message}`);
    }
  }

  /** Sends a message; rejects with TransportError when it cannot be handed to the network. */
  async send(msg: SipMessage | Buffer, dest: Destination): Promise<void> {
    if (this.closed) throw new TransportError('transport closed');
    const buf = Buffer.isBuffer(msg) ? msg : serialize(msg);
    if (dest.transport === 'udp') {
      const sock = this.udp;
      if (!sock) throw new TransportError('no UDP transport');
      if (buf.length > 65507) throw new TransportError('message too large for UDP');
      const host = await this.resolve(dest.host);
      await new Promise<void>((resolve, reject) => {
        sock.send(buf, dest.port, host, (err) => (err ? reject(new TransportError(err.message)) : resolve()));
      });
      return;
    }
    const c = await this.connection(dest);
    if (c.socket.destroyed || !c.socket.writable) throw new TransportError('connection closed');
    await new Promise<void>((resolve, reject) => {
      c.socket.write(buf, (err) => (err ? reject(new TransportError(err.message)) : resolve()));
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    const waits: Promise<void>[] = [];
    for (const c of this.conns.values()) {
      waits.push(new Promise((r) => { if (c.socket.destroyed && c.socket.closed) r(); else { c.socket.once('close', () => r()); c.socket.destroy(); } }));
    }
    if (this.server) {
      const s = this.server;
      waits.push(new Promise((r) => s.close(() => r())));
    }
    if (this.udp) {
      const u = this.udp;
      waits.push(new Promise((r) => { try { u.close(() => r()); } catch { r(); } }));
    }
    await Promise.all(waits);
    this.conns.clear();
    this.byKey.clear();
    this.server = undefined;
    this.udp = undefined;
  }
}

/**
 * The Content-Length headers of a header section, read as the parser reads them: continuation
 * lines (starting with SP/HT) are unfolded first, so that framing and parsing always agree.
 */
function headerLines(head: string): Header[] {
  const lines = unfoldHeaderLines(head.split(/\r?\n/).slice(1)); // the start line is not a header
  const out: Header[] = [];
  for (const l of lines) {
    const m = /^(content-length|l)[ \t]*:(.*)$/i.exec(l);
    if (m) out.push({ name: 'Content-Length', value: m[2]!.trim() });
  }
  return out;
}
