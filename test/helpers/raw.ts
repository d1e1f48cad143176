// A raw WebSocket client for the bad-input tests: sends frames the SDK never would (binary,
// oversize, malformed, hand-made tids) and keeps every frame the server writes, as written.
import { WebSocket } from 'ws';

export type Frame = Record<string, any>;

interface Waiter { pred: (f: Frame) => boolean; resolve: (f: Frame) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }

export class RawSocket {
  /** Every frame received, in order (parsed; a frame that is not JSON is kept as `{raw}`). */
  readonly received: Frame[] = [];
  /** Frames not yet taken by `next()`. */
  private unread: Frame[] = [];
  private waiters: Waiter[] = [];
  private nextTid = 1;
  readonly closed: Promise<{ code: number; reason: string }>;

  private constructor(private readonly ws: WebSocket) {
    ws.on('message', (data, isBinary) => {
      const text = isBinary ? '' : data.toString();
      let frame: Frame;
      try { frame = JSON.parse(text) as Frame; } catch { frame = { raw: text }; }
      this.received.push(frame);
      const w = this.waiters.find((x) => x.pred(frame));
      if (w) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        clearTimeout(w.timer);
        w.resolve(frame);
      } else {
        this.unread.push(frame);
      }
    });
    this.closed = new Promise((resolve) => ws.on('close', (code, reason) => {
      for (const w of this.waiters.splice(0)) { clearTimeout(w.timer); w.reject(new Error(`connection closed (${code})`)); }
      resolve({ code, reason: reason.toString() });
    }));
    ws.on('error', () => undefined); // the close that follows carries the outcome
  }

  static open(url: string): Promise<RawSocket> {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(new RawSocket(ws)));
      ws.once('error', reject);
    });
  }

  get isOpen(): boolean { return this.ws.readyState === WebSocket.OPEN; }

  /** Sends a text frame: a string as is, anything else as JSON. */
  send(frame: unknown): void { this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame)); }

  sendBinary(bytes: Buffer): void { this.ws.send(bytes, { binary: true }); }

  /** The first unread frame matching `pred` (waiting for it if needed); it is then read. */
  next(pred: (f: Frame) => boolean = () => true, ms = 10000): Promise<Frame> {
    const i = this.unread.findIndex(pred);
    if (i >= 0) return Promise.resolve(this.unread.splice(i, 1)[0]!);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.findIndex((w) => w.timer === timer), 1);
        reject(new Error(`no matching frame within ${ms} ms`));
      }, ms);
      this.waiters.push({ pred, resolve, reject, timer });
    });
  }

  /** The reply (ok or error) carrying `tid`; acks are skipped. */
  reply(tid: unknown, ms?: number): Promise<Frame> {
    return this.next((f) => 'result' in f && f.tid === tid, ms);
  }

  /** The next error reply that carries no tid (the server could not read the frame). */
  untaggedError(ms?: number): Promise<Frame> {
    return this.next((f) => f.result === 'error' && f.tid === null, ms);
  }

  /** A fresh tid: a string, so it never collides with the numbers tests write by hand. */
  tid(): string { return `t${this.nextTid++}`; }

  /** Sends a well-formed request and resolves with its reply frame (ok or error). */
  request(cls: string, subclass: string | undefined, cmd: string, data?: unknown): Promise<Frame> {
    const tid = this.tid();
    this.send({ class: cls, ...(subclass !== undefined ? { subclass } : {}), cmd, ...(data !== undefined ? { data } : {}), tid });
    return this.reply(tid);
  }

  async login(user: string): Promise<string> {
    const r = await this.request('core', 'user', 'login', { user });
    if (r.result !== 'ok') throw new Error(`login failed: ${JSON.stringify(r.data)}`);
    return r.data.session_id as string;
  }

  close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return Promise.resolve();
    if (this.ws.readyState !== WebSocket.CLOSING) this.ws.close(1000, 'test done');
    return this.closed.then(() => undefined);
  }
}
