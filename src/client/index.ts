// The nkmedia-ts client SDK: a WebSocket client for the NkMEDIA JSON API that works in Node
// (with the `ws` package) and in browsers (native WebSocket). No reconnection: a closed
// connection fails every pending request with a clear error, and the caller decides.

export type Tid = number;

export interface EventData {
  class: string;
  subclass?: string;
  type?: string;
  obj_id?: string;
  body?: Record<string, any>;
}

export interface SdpObject { sdp: string; sdp_type?: 'webrtc' | 'rtp'; trickle_ice?: boolean; [key: string]: unknown }

export interface CandidateInit { candidate: string; sdpMid?: string; sdpMLineIndex: number }

export type SessionType = 'park' | 'echo' | 'bridge' | 'publish' | 'listen' | 'play';

export interface CreateSessionRequest {
  type: SessionType;
  session_id?: string;
  offer?: SdpObject;
  wait_reply?: boolean;
  no_offer_trickle_ice?: boolean;
  no_answer_trickle_ice?: boolean;
  trickle_ice_timeout?: number;
  sdp_type?: 'webrtc' | 'rtp';
  backend?: string;
  master_id?: string;
  set_master_answer?: boolean;
  stop_after_peer?: boolean;
  subscribe?: boolean;
  events_body?: Record<string, unknown>;
  wait_timeout?: number;
  ready_timeout?: number;
  peer_id?: string;
  room_id?: string;
  publisher_id?: string;
  uri?: string;
  loops?: number;
  mute_audio?: boolean;
  mute_video?: boolean;
  mute_data?: boolean;
  bitrate?: number;
  video_layer?: string;
  session_meta?: Record<string, unknown>;
  session_events?: string[];
  session_events_body?: Record<string, unknown>;
}

export interface CreateSessionReply { session_id: string; offer?: SdpObject; answer?: SdpObject }

/** `media/call/create`: call `callee` (a user, `user:<name>`, `session:<connection id>`, `sip:` URI, or a list). */
export interface CreateCallRequest {
  callee: string | string[];
  offer: SdpObject;
  type?: 'user' | 'session' | 'all' | 'sip';
  call_id?: string;
  caller?: Record<string, unknown>;
  ring_time?: number;
  wait_reply?: boolean;
  no_offer_trickle_ice?: boolean;
  no_answer_trickle_ice?: boolean;
  trickle_ice_timeout?: number;
  sdp_type?: 'webrtc' | 'rtp';
  subscribe?: boolean;
  events_body?: Record<string, unknown>;
  call_meta?: Record<string, unknown>;
  backend?: string;
}

/** The caller's session is answered at once: `answer` is here with `wait_reply`, else in an `answer` call event. */
export interface CreateCallReply { call_id: string; session_id: string; answer?: SdpObject }

/** The server's `media/call/invite` request to a callee: our offer for its leg of the call. */
export interface CallInvite {
  call_id: string;
  /** How this connection was named by the caller: `user` or `session`. */
  type: string;
  /** The callee's media session for this call (its leg). */
  session_id: string;
  offer: SdpObject;
  caller: Record<string, unknown>;
  /** The calling user. */
  user_id: string;
}

/** What an invite handler returns: false declines; an object may set `subscribe` and `events_body`. */
export type InviteDecision = void | boolean | { subscribe?: boolean; events_body?: Record<string, unknown> };

/** A request the server sent this client (e.g. a call invite). */
export interface ServerRequest { class: string; subclass?: string; cmd: string; data: any }
export type RequestHandler = (req: ServerRequest) => unknown | Promise<unknown>;

/** An error reply from the server (or a local failure with code 0). */
export class NkMediaError extends Error {
  constructor(readonly code: number, readonly error: string, readonly tid?: Tid) {
    super(`${error} (${code})`);
    this.name = 'NkMediaError';
  }
}

export class ConnectionClosedError extends NkMediaError {
  constructor(reason: string) { super(0, `connection closed: ${reason}`); this.name = 'ConnectionClosedError'; }
}

/** The parts of a WebSocket the client uses (browser WebSocket and `ws` both fit). */
interface SocketLike {
  readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: any) => void) | null;
  onclose: ((ev: any) => void) | null;
  onerror: ((ev: any) => void) | null;
  onmessage: ((ev: { data: any }) => void) | null;
}
type SocketCtor = new (url: string) => SocketLike;

export interface ConnectOptions {
  /** A WebSocket constructor; defaults to the global one, else the `ws` package. */
  WebSocket?: SocketCtor;
  /** How long a request may wait for its reply (default 30 s; acks extend it). */
  requestTimeoutMs?: number;
  connectTimeoutMs?: number;
}

interface Pending { resolve(v: any): void; reject(e: Error): void; timer: ReturnType<typeof setTimeout>; what: string }

export type EventListener = (event: EventData) => void;

/** An entry of RTCPeerConnection's `iceServers`. */
export interface IceServer { urls: string | string[]; username?: string; credential?: string }
interface IceServersReply { ice_servers: IceServer[]; expires?: number }

export class NkMediaClient {
  private nextTid = 1;
  private readonly pending = new Map<Tid, Pending>();
  private readonly listeners = new Set<EventListener>();
  private readonly closeListeners = new Set<(reason: string) => void>();
  private readonly requestHandlers = new Map<string, RequestHandler>();
  private closedReason?: string;
  sessionId?: string;

  private constructor(private readonly ws: SocketLike, private readonly timeoutMs: number) {
    ws.onmessage = (ev) => this.onMessage(typeof ev.data === 'string' ? ev.data : String(ev.data));
    ws.onclose = (ev) => this.onClosed(ev?.reason || `code ${ev?.code ?? '?'}`);
    ws.onerror = () => undefined; // the close that follows carries the outcome
  }

  static async connect(url: string, opts: ConnectOptions = {}): Promise<NkMediaClient> {
    const Ctor: SocketCtor = opts.WebSocket ?? (globalThis as any).WebSocket ?? (await import('ws')).WebSocket;
    const ws = new Ctor(url);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { ws.close(); reject(new ConnectionClosedError('connect timeout')); }, opts.connectTimeoutMs ?? 10000);
      ws.onopen = () => { clearTimeout(timer); resolve(); };
      ws.onerror = () => { clearTimeout(timer); reject(new ConnectionClosedError(`cannot connect to ${url}`)); };
    });
    return new NkMediaClient(ws, opts.requestTimeoutMs ?? 30000);
  }

  get closed(): boolean { return this.closedReason !== undefined; }

  /** Sends a request and resolves with the reply's data, or rejects with NkMediaError. */
  request<T = any>(cls: string, subclass: string | undefined, cmd: string, data?: unknown): Promise<T> {
    if (this.closedReason !== undefined) return Promise.reject(new ConnectionClosedError(this.closedReason));
    const tid = this.nextTid++;
    const what = `${cls}/${subclass ?? 'core'}/${cmd}`;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => this.expire(tid), this.timeoutMs);
      this.pending.set(tid, { resolve, reject, timer, what });
      const msg: Record<string, unknown> = { class: cls, cmd, tid };
      if (subclass !== undefined) msg.subclass = subclass;
      if (data !== undefined) msg.data = data;
      this.ws.send(JSON.stringify(msg));
    });
  }

  /** Sends a raw text frame (for testing servers with malformed input). */
  sendRaw(text: string): void { this.ws.send(text); }

  async login(user: string, creds: { password?: string; token?: string } = {}): Promise<string> {
    const r = await this.request<{ session_id: string } & Partial<IceServersReply>>('core', 'user', 'login', { user, ...creds });
    this.sessionId = r.session_id;
    this.iceServers = r.ice_servers ?? [];
    this.iceServersExpire = r.expires;
    return r.session_id;
  }

  /**
   * TURN servers with credentials for this user (from the login reply, refreshed by
   * `refreshIceServers`): put them in RTCPeerConnection's `iceServers`. Empty when the server
   * hands out none.
   */
  iceServers: IceServer[] = [];
  /** When `iceServers`' credentials stop working (unix seconds). */
  iceServersExpire?: number;

  /** New TURN credentials (those of the login reply expire after `ice.client_turn_ttl_seconds`). */
  async refreshIceServers(): Promise<IceServer[]> {
    const r = await this.request<IceServersReply>('core', 'user', 'get_ice_servers', {});
    this.iceServers = r.ice_servers;
    this.iceServersExpire = r.expires;
    return r.ice_servers;
  }

  subscribe(sub: { class: string; subclass?: string; type?: string; obj_id?: string; body?: Record<string, unknown> }): Promise<void> {
    return this.request('core', 'event', 'subscribe', sub);
  }

  unsubscribe(sub: { class: string; subclass?: string; type?: string; obj_id?: string }): Promise<void> {
    return this.request('core', 'event', 'unsubscribe', sub);
  }

  /** `media/session/<cmd>` */
  session<T = any>(cmd: string, data?: Record<string, unknown>): Promise<T> {
    return this.request<T>('media', 'session', cmd, data);
  }

  createSession(req: CreateSessionRequest): Promise<CreateSessionReply> { return this.session('create', req as unknown as Record<string, unknown>); }
  destroySession(session_id: string): Promise<void> { return this.session('destroy', { session_id }); }
  setAnswer(session_id: string, answer: SdpObject): Promise<void> { return this.session('set_answer', { session_id, answer }); }
  setCandidate(session_id: string, c: CandidateInit): Promise<void> { return this.session('set_candidate', { session_id, ...c }); }
  setCandidateEnd(session_id: string): Promise<void> { return this.session('set_candidate_end', { session_id }); }
  getOffer(session_id: string): Promise<{ offer: SdpObject }> { return this.session('get_offer', { session_id }); }
  getAnswer(session_id: string): Promise<{ answer: SdpObject }> { return this.session('get_answer', { session_id }); }
  getInfo(session_id: string): Promise<Record<string, any>> { return this.session('get_info', { session_id }); }
  getStatus(session_id: string): Promise<Record<string, any>> { return this.session('get_status', { session_id }); }
  getStats(session_id: string): Promise<{ stats: Record<string, any> }> { return this.session('get_stats', { session_id }); }
  listSessions(): Promise<{ session_id: string; type: string; user_id: string }[]> { return this.session('get_list'); }
  updateMedia(session_id: string, update: { mute_audio?: boolean; mute_video?: boolean; mute_data?: boolean; bitrate?: number; video_layer?: string }): Promise<void> {
    return this.session('update_media', { session_id, ...update });
  }
  setType(session_id: string, type: SessionType, extra: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    return this.session('set_type', { session_id, type, ...extra });
  }

  /** `media/call/<cmd>` */
  call<T = any>(cmd: string, data?: Record<string, unknown>): Promise<T> {
    return this.request<T>('media', 'call', cmd, data);
  }

  createCall(req: CreateCallRequest): Promise<CreateCallReply> { return this.call('create', req as unknown as Record<string, unknown>); }
  callRinging(call_id: string, callee?: Record<string, unknown>): Promise<void> { return this.call('ringing', { call_id, ...(callee ? { callee } : {}) }); }
  acceptCall(call_id: string, answer: SdpObject, opts: { callee?: Record<string, unknown>; subscribe?: boolean; events_body?: Record<string, unknown> } = {}): Promise<void> {
    return this.call('accepted', { call_id, answer, ...opts });
  }
  rejectCall(call_id: string): Promise<void> { return this.call('rejected', { call_id }); }
  hangupCall(call_id: string, reason?: string): Promise<void> { return this.call('hangup', { call_id, ...(reason !== undefined ? { reason } : {}) }); }
  setCallCandidate(call_id: string, c: CandidateInit): Promise<void> { return this.call('set_candidate', { call_id, ...c }); }
  setCallCandidateEnd(call_id: string): Promise<void> { return this.call('set_candidate_end', { call_id }); }
  getCallInfo(call_id: string): Promise<Record<string, any>> { return this.call('get_info', { call_id }); }
  listCalls(): Promise<{ call_id: string; user_id: string; state: string }[]> { return this.call('get_list'); }

  /**
   * Handles the server's requests `class/subclass/cmd` (e.g. "media/call/invite"): the
   * handler's value is the ok reply's data; a throw is an error reply (an NkMediaError keeps
   * its code). Requests nobody handles get `unknown_command`. Returns a function that removes it.
   */
  onRequest(name: string, handler: RequestHandler): () => void {
    this.requestHandlers.set(name, handler);
    return () => { if (this.requestHandlers.get(name) === handler) this.requestHandlers.delete(name); };
  }

  /**
   * Handles call invites: reply at once (ok = this connection will ring and then answer with
   * `callRinging`/`acceptCall`/`rejectCall`; returning false declines the call).
   */
  onInvite(handler: (invite: CallInvite) => InviteDecision | Promise<InviteDecision>): () => void {
    return this.onRequest('media/call/invite', async (req) => {
      const decision = await handler(req.data as CallInvite);
      if (decision === false) throw new NkMediaError(305006, 'Call rejected');
      return typeof decision === 'object' && decision !== null ? decision : {};
    });
  }

  /** Every event pushed to this connection; returns an unsubscribe function. */
  onEvent(listener: EventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  onClose(listener: (reason: string) => void): () => void {
    this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  /** Resolves with the first event matching `pred` (events already past are not seen). */
  waitEvent(pred: (e: EventData) => boolean, timeoutMs = 10000): Promise<EventData> {
    return new Promise((resolve, reject) => {
      const off = this.onEvent((e) => { if (pred(e)) { cleanup(); resolve(e); } });
      const offClose = this.onClose((reason) => { cleanup(); reject(new ConnectionClosedError(reason)); });
      const timer = setTimeout(() => { cleanup(); reject(new NkMediaError(0, `no matching event within ${timeoutMs} ms`)); }, timeoutMs);
      function cleanup() { off(); offClose(); clearTimeout(timer); }
    });
  }

  close(): Promise<void> {
    if (this.closedReason !== undefined) return Promise.resolve();
    return new Promise((resolve) => {
      this.onClose(() => resolve());
      this.ws.close(1000, 'client close');
    });
  }

  private expire(tid: Tid): void {
    const p = this.pending.get(tid);
    if (!p) return;
    this.pending.delete(tid);
    p.reject(new NkMediaError(0, `no reply to ${p.what} within ${this.timeoutMs} ms`, tid));
  }

  private onMessage(text: string): void {
    let msg: any;
    try { msg = JSON.parse(text); } catch { return; }
    if (msg === null || typeof msg !== 'object') return;
    if (msg.class === 'event' && msg.tid === undefined) {
      for (const l of [...this.listeners]) l(msg.data as EventData);
      return;
    }
    if ('ack' in msg) {
      const p = this.pending.get(msg.ack);
      if (p) { clearTimeout(p.timer); p.timer = setTimeout(() => this.expire(msg.ack), Math.max(this.timeoutMs, 180000)); }
      return;
    }
    if ('result' in msg) {
      const p = this.pending.get(msg.tid);
      if (!p) {
        // A reply without a known tid (e.g. to an unparseable frame) goes to event listeners as an error.
        if (msg.result === 'error') for (const l of [...this.listeners]) l({ class: 'error', body: msg.data });
        return;
      }
      this.pending.delete(msg.tid);
      clearTimeout(p.timer);
      if (msg.result === 'ok') p.resolve(msg.data ?? {});
      else p.reject(new NkMediaError(msg.data?.code ?? 0, msg.data?.error ?? 'unknown error', msg.tid));
      return;
    }
    // A request from the server (e.g. a call invite).
    if (msg.cmd !== undefined && msg.tid !== undefined) void this.answerRequest(msg);
  }

  private async answerRequest(msg: { class: string; subclass?: string; cmd: string; data?: unknown; tid: unknown }): Promise<void> {
    const name = `${msg.class}/${msg.subclass ?? 'core'}/${msg.cmd}`;
    const handler = this.requestHandlers.get(name);
    let reply: Record<string, unknown>;
    if (!handler) {
      reply = { result: 'error', data: { code: 100042, error: `Unknown command '${name}'` }, tid: msg.tid };
    } else {
      try {
        const data = await handler({ class: msg.class, subclass: msg.subclass, cmd: msg.cmd, data: msg.data ?? {} });
        reply = { result: 'ok', tid: msg.tid, ...(data !== undefined ? { data } : {}) };
      } catch (err) {
        const e = err instanceof NkMediaError ? err : undefined;
        reply = { result: 'error', data: { code: e?.code || 100002, error: e?.error ?? String((err as Error)?.message ?? err) }, tid: msg.tid };
      }
    }
    if (this.closedReason === undefined) this.ws.send(JSON.stringify(reply));
  }

  private onClosed(reason: string): void {
    if (this.closedReason !== undefined) return;
    this.closedReason = reason;
    for (const [, p] of this.pending) { clearTimeout(p.timer); p.reject(new ConnectionClosedError(reason)); }
    this.pending.clear();
    for (const l of [...this.closeListeners]) l(reason);
  }
}
