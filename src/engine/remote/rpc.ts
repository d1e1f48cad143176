// One WebSocket to a media node speaking Kurento's JSON-RPC 2.0: requests with ids, each with its
// own timeout; at most `maxInFlight` on the wire (the node refuses more than its limit), the rest
// queued in order; notifications handed on. Frames that are not JSON-RPC, replies to no request
// and replies of the wrong shape are logged and dropped (a request whose reply is malformed fails
// at once). When the socket goes, every request waiting fails at once.
import { WebSocket, type RawData } from 'ws';
import type { Logger } from 'pino';
import { EngineError } from '../types.js';
import { engineErrorOf, frameSchema, resultSchema } from './wire.js';

export interface RpcSocketOptions {
  /** ws:// or wss:// URL of the node's Kurento door. */
  url: string;
  /** Sent as the `access_token` query parameter (as kurento-client does). */
  token?: string;
  /** Names the node in errors and logs. */
  nodeId: string;
  log: Logger;
  requestTimeoutMs: number;
  maxInFlight: number;
  /** Frames larger than this from the node close the socket (ws's maxPayload). */
  maxFrameBytes?: number;
}

export type RpcResult = { value?: unknown; sessionId?: string };

interface Request {
  id: number;
  method: string;
  frame: string;
  resolve(r: RpcResult): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout;
}

export class RpcSocket {
  private nextId = 1;
  /** Sent, waiting for their reply. */
  private readonly inFlight = new Map<number, Request>();
  /** Not sent yet: the in-flight cap was reached. */
  private readonly queued: Request[] = [];
  private downReason?: string;
  /** Requests that timed out whose late reply still matters (an object made anyway), by id. */
  private readonly late = new Map<number, (r: RpcResult) => void>();
  /** Notifications (`onEvent`): method and params, unchecked (the engine checks them). */
  onNotification: (method: string, params: unknown) => void = () => undefined;
  /** Called once when the socket is gone (closed by either side, or failed). */
  onClose: (reason: string) => void = () => undefined;

  private constructor(private readonly ws: WebSocket, private readonly opts: RpcSocketOptions) {
    ws.on('message', (data) => this.onFrame(data));
    ws.on('close', (code, reason) => this.gone(`connection closed (${code}${reason.length ? ` ${reason.toString().slice(0, 200)}` : ''})`));
    ws.on('error', (err) => opts.log.debug({ node: opts.nodeId, err: err.message }, 'media node websocket error'));
  }

  /** Opens the WebSocket; rejects with an EngineError when the node is unreachable or refuses (HTTP 401...). */
  static open(opts: RpcSocketOptions): Promise<RpcSocket> {
    let url: URL;
    try {
      url = new URL(opts.url);
    } catch {
      return Promise.reject(new EngineError('failed', `media node ${opts.nodeId}: not a URL: ${opts.url}`));
    }
    if (opts.token !== undefined) url.searchParams.set('access_token', opts.token);
    const ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: opts.requestTimeoutMs, maxPayload: opts.maxFrameBytes ?? 16 * 1024 * 1024 });
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (why: string) => {
        if (settled) return;
        settled = true;
        ws.terminate();
        reject(new EngineError('failed', `media node ${opts.nodeId} ${why}`));
      };
      // Whatever happens later, an 'error' without a listener must not end the process.
      ws.on('error', (err) => fail(`unreachable: ${err.message}`));
      ws.once('unexpected-response', (req, res) => {
        fail(`refused the connection: HTTP ${res.statusCode ?? '?'}${res.statusMessage ? ` ${res.statusMessage.slice(0, 200)}` : ''}`);
        res.resume();
        req.destroy();
      });
      ws.once('close', () => fail('closed the connection while opening it'));
      ws.once('open', () => {
        if (settled) return;
        settled = true;
        ws.removeAllListeners();
        resolve(new RpcSocket(ws, opts));
      });
    });
  }

  get isOpen(): boolean { return this.downReason === undefined; }

  /**
   * Sends a request; resolves with its result object. Rejects with an EngineError: the node's
   * error reply, a timeout, a malformed reply, or the connection lost.
   */
  request(method: string, params: Record<string, unknown>, opts: { timeoutMs?: number; onLateResult?: (r: RpcResult) => void } = {}): Promise<RpcResult> {
    if (this.downReason !== undefined) return Promise.reject(this.lostError());
    const timeoutMs = opts.timeoutMs ?? this.opts.requestTimeoutMs;
    return new Promise<RpcResult>((resolve, reject) => {
      const id = this.nextId++;
      const req: Request = {
        id, method, resolve, reject,
        frame: JSON.stringify({ jsonrpc: '2.0', id, method, params }),
        timer: setTimeout(() => {
          const sent = this.inFlight.has(id);
          this.forget(req);
          if (sent && opts.onLateResult) this.keepLate(id, opts.onLateResult);
          reject(new EngineError('failed', `media node ${this.opts.nodeId}: ${method} timed out after ${timeoutMs} ms`));
          this.pump();
        }, timeoutMs),
      };
      if (this.inFlight.size < this.opts.maxInFlight) this.send(req);
      else this.queued.push(req);
    });
  }

  /** Closes the socket (politely, then for good after a second); requests waiting fail now. */
  close(): Promise<void> {
    const closed = new Promise<void>((resolve) => {
      if (this.ws.readyState === WebSocket.CLOSED) { resolve(); return; }
      this.ws.once('close', () => resolve());
      setTimeout(resolve, 1000).unref();
    });
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close(1000, 'closing');
    setTimeout(() => this.ws.terminate(), 1000).unref();
    this.gone('closed by this engine');
    return closed;
  }

  /** Drops the connection at once (a node that stopped answering). */
  terminate(reason: string): void {
    this.ws.terminate();
    this.gone(reason);
  }

  /** Remembers a timed-out request whose result, should it come, needs undoing (a few hundred at most, for a few minutes). */
  private keepLate(id: number, fn: (r: RpcResult) => void): void {
    if (this.late.size >= 256) this.late.delete(this.late.keys().next().value!);
    this.late.set(id, fn);
    setTimeout(() => this.late.delete(id), 5 * 60_000).unref();
  }

  private send(req: Request): void {
    this.inFlight.set(req.id, req);
    this.ws.send(req.frame);
  }

  private forget(req: Request): void {
    clearTimeout(req.timer);
    if (!this.inFlight.delete(req.id)) {
      const i = this.queued.indexOf(req);
      if (i >= 0) this.queued.splice(i, 1);
    }
  }

  private pump(): void {
    while (this.downReason === undefined && this.queued.length > 0 && this.inFlight.size < this.opts.maxInFlight) this.send(this.queued.shift()!);
  }

  private lostError(): EngineError {
    return new EngineError('failed', `media node ${this.opts.nodeId} is unreachable: ${this.downReason ?? 'connection lost'}`);
  }

  private gone(reason: string): void {
    if (this.downReason !== undefined) return;
    this.downReason = reason;
    const err = this.lostError();
    const all = [...this.inFlight.values(), ...this.queued];
    this.inFlight.clear();
    this.queued.length = 0;
    for (const r of all) {
      clearTimeout(r.timer);
      r.reject(err);
    }
    try {
      this.onClose(reason);
    } catch (e) {
      this.opts.log.error({ node: this.opts.nodeId, err: e }, 'media node close handler failed');
    }
  }

  private onFrame(data: RawData): void {
    const text = (Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data)).toString('utf8');
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch {
      this.opts.log.warn({ node: this.opts.nodeId, frame: text.slice(0, 200) }, 'media node sent a frame that is not JSON; dropped');
      return;
    }
    const f = frameSchema.safeParse(raw);
    if (!f.success) {
      this.opts.log.warn({ node: this.opts.nodeId, issue: f.error.issues[0]?.message, frame: text.slice(0, 200) }, 'media node sent a frame that is not JSON-RPC 2.0; dropped');
      return;
    }
    const frame = f.data;
    if (frame.method !== undefined) {
      if (frame.id !== undefined && frame.id !== null) {
        // Kurento servers make no requests of their clients.
        this.opts.log.warn({ node: this.opts.nodeId, method: frame.method.slice(0, 64) }, 'media node sent a request; dropped');
        return;
      }
      try {
        this.onNotification(frame.method, frame.params);
      } catch (err) {
        this.opts.log.error({ node: this.opts.nodeId, err }, 'media node notification handler failed');
      }
      return;
    }
    const req = typeof frame.id === 'number' ? this.inFlight.get(frame.id) : undefined;
    const late = typeof frame.id === 'number' ? this.late.get(frame.id) : undefined;
    if (late) {
      this.late.delete(frame.id as number);
      const r = resultSchema.safeParse(frame.result);
      if (!frame.error && r.success) {
        try { late(r.data); } catch (err) { this.opts.log.error({ node: this.opts.nodeId, err }, 'late reply handler failed'); }
      }
      return;
    }
    if (!req) {
      // A reply to a request that timed out (or to none at all).
      this.opts.log.debug({ node: this.opts.nodeId, id: frame.id }, 'media node reply to no waiting request; dropped');
      return;
    }
    this.forget(req);
    if (frame.error) req.reject(engineErrorOf(frame.error));
    else {
      const r = resultSchema.safeParse(frame.result);
      if (r.success) req.resolve(r.data);
      else {
        this.opts.log.warn({ node: this.opts.nodeId, method: req.method, issue: r.error.issues[0]?.message }, 'media node sent a malformed reply');
        req.reject(new EngineError('failed', `media node ${this.opts.nodeId}: malformed reply to ${req.method}`));
      }
    }
    this.pump();
  }
}
