// One API client connection: framing, limits (frame size, requests in flight, idle time),
// login, dispatch, event delivery, and the clean-up when it goes away.
import { randomUUID } from 'node:crypto';
import type { WebSocket, RawData } from 'ws';
import { ApiError, toApiError } from '../protocol/errors.js';
import { errorReply, FrameError, okReply, parseFrame, type Request, type Tid } from '../protocol/frames.js';
import { parseData } from '../protocol/validate.js';
import type { EventData } from './event-bus.js';
import type { Identity } from '../access/auth.js';
import type { CommandContext, ConnectionHandle, Handler, Services } from './context.js';
import { coreCommands, loginSchema } from './core-commands.js';
import { sessionCommands } from './session-commands.js';
import { roomCommands } from './room-commands.js';
import { callCommands } from './call-commands.js';
import { kurentoCommands } from './kurento-commands.js';
import { nodeCommands } from './node-commands.js';
import { WireCallParty, type ClientReply, type RequestingSubscriber } from './call-party.js';
import { clientTurnCredentials } from '../access/turn-credentials.js';

const HANDLERS: Record<string, Record<string, Record<string, Handler>>> = {
  core: coreCommands,
  media: { session: sessionCommands, room: roomCommands, call: callCommands, kurento: kurentoCommands, node: nodeCommands },
};

/**
 * The answer to a command this server does not have (docs/API.md §2 "Errors"), as the
 * original's: its core, session and call APIs each named the command they did not know
 * (`unknown_command`); anything else under `media` (a room command, another subclass) fell
 * through to its last resort, `not_implemented`. A class unknown here is an unknown command.
 */
function missingCommand(cls: string, subclass: string, name: string): ApiError {
  const named = cls !== 'media' || subclass === 'session' || subclass === 'call';
  return new ApiError(named ? 'unknown_command' : 'not_implemented', name);
}

/** A table entry by the client's name: own keys only (no `constructor`, `__proto__`...). */
function own<T>(table: Record<string, T> | undefined, key: string): T | undefined {
  return table !== undefined && Object.hasOwn(table, key) ? table[key] : undefined;
}

/** Largest frame read before login: a login (with a JWT) fits easily; a stalled huge frame does not. */
export const PRE_LOGIN_MAX_PAYLOAD = 64 * 1024;

/** A request this server sent to its client (e.g. a call invite), waiting for the reply. */
interface ServerRequest { settle(err: Error | undefined, reply?: ClientReply): void }

export class ApiConnection implements ConnectionHandle, RequestingSubscriber {
  readonly id = randomUUID();
  identity?: Identity;
  private inFlight = 0;
  private idleTimer?: NodeJS.Timeout;
  private pingTimer?: NodeJS.Timeout;
  private failedLogins = 0;
  /** The login being checked: one at a time per connection (a flood of parallel guesses waits). */
  private loginInProgress?: Promise<unknown>;
  private loginTimer?: NodeJS.Timeout;
  private closed = false;
  private nextServerTid = 1;
  private readonly serverRequests = new Map<Tid, ServerRequest>();
  /** This connection as a party of calls (what calls tell it, as NkMEDIA call events). */
  readonly callParty: WireCallParty;

  /**
   * @param address the client's IP address (login failures are counted per address)
   * @param remote address:port, for logs
   * @param fullMaxPayload the frame size allowed once logged in (before, PRE_LOGIN_MAX_PAYLOAD)
   */
  constructor(private readonly ws: WebSocket, private readonly services: Services, readonly address: string, readonly remote: string, private readonly fullMaxPayload: number) {
    const limits = services.config.limits;
    this.callParty = new WireCallParty(this, services.bus);
    this.whenClosed = new Promise((resolve) => ws.once('close', () => resolve()));
    ws.on('message', (data, isBinary) => this.onMessage(data, isBinary));
    ws.on('pong', () => this.touch());
    ws.on('close', () => void this.onClose());
    ws.on('error', (err) => services.log.debug({ conn: this.id, err: err.message }, 'websocket error'));
    this.pingTimer = setInterval(() => { if (ws.readyState === ws.OPEN) ws.ping(); }, limits.ping_interval * 1000);
    // Unauthenticated connections cost a descriptor and memory: they get a short while to log in.
    this.loginTimer = setTimeout(() => {
      if (this.identity) return;
      services.log.info({ conn: this.id, remote }, 'no login in time; closing');
      this.closeHard(1008, 'login timeout');
    }, limits.login_timeout * 1000);
    this.setMaxPayload(PRE_LOGIN_MAX_PAYLOAD);
    this.touch();
  }

  /**
   * ws keeps the frame size limit per server; a connection's own receiver holds a copy, which is
   * lowered until login (ws 8's Receiver field, checked to exist).
   */
  private setMaxPayload(bytes: number): void {
    const receiver = (this.ws as unknown as { _receiver?: { _maxPayload?: number } })._receiver;
    if (receiver && typeof receiver._maxPayload === 'number') receiver._maxPayload = bytes;
  }

  /** Sends a close frame, and drops the socket if the peer does not complete the close quickly. */
  closeHard(code: number, reason: string): void {
    this.close(code, reason);
    setTimeout(() => this.ws.terminate(), 1000).unref();
  }

  /** Resolves once the socket is closed. */
  readonly whenClosed: Promise<void>;

  get user(): string { return this.identity?.user ?? ''; }
  get admin(): boolean { return this.identity?.admin ?? false; }

  login(identity: Identity): void {
    this.identity = identity;
    clearTimeout(this.loginTimer);
    this.setMaxPayload(this.fullMaxPayload);
    // As the original: a connection hears its user's and its own connection events.
    this.services.bus.subscribe(this, { class: 'core', subclass: 'user_event', type: '*', obj_id: identity.user });
    this.services.bus.subscribe(this, { class: 'core', subclass: 'session_event', type: '*', obj_id: this.id });
    // Calls ring logged-in connections (by user name or connection id).
    this.services.calls.connectionUp(this.callParty);
  }

  /**
   * Sends the client a request of the server's own (a call `invite`) and resolves with its
   * reply; rejects on timeout, on `signal`, or when the connection closes.
   */
  request(cls: string, subclass: string, cmd: string, data: unknown, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<ClientReply> {
    if (this.closed || this.ws.readyState !== this.ws.OPEN) return Promise.reject(new ApiError('process_not_found'));
    if (opts.signal?.aborted) return Promise.reject(new ApiError('user_stop'));
    const tid = this.nextServerTid++;
    return new Promise<ClientReply>((resolve, reject) => {
      const onAbort = () => settle(new ApiError('user_stop'));
      const timer = setTimeout(() => settle(new ApiError('timeout')), opts.timeoutMs ?? 30000);
      const settle = (err: Error | undefined, reply?: ClientReply) => {
        if (!this.serverRequests.delete(tid)) return;
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        if (err) reject(err); else resolve(reply!);
      };
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      this.serverRequests.set(tid, { settle });
      this.send({ class: cls, subclass, cmd, data, tid });
    });
  }

  deliver(event: EventData): void {
    this.send({ class: 'event', data: event });
  }

  sendAck(tid: Tid): void { this.send({ ack: tid }); }

  reportUnknownFields(cls: string, subclass: string, cmd: string, fields: string[]): void {
    this.services.bus.publish({
      class: 'core', subclass: 'session_event', type: 'unrecognized_fields', obj_id: this.id,
      body: { class: cls, subclass, cmd, fields }, owner: this.user,
    });
  }

  close(code = 1000, reason = ''): void {
    if (this.ws.readyState === this.ws.OPEN || this.ws.readyState === this.ws.CONNECTING) this.ws.close(code, reason);
  }

  private send(msg: unknown): void {
    if (this.closed || this.ws.readyState !== this.ws.OPEN) return;
    if (this.ws.bufferedAmount > this.services.config.limits.max_buffered_bytes) {
      this.services.log.warn({ conn: this.id }, 'client not reading; closing');
      this.ws.terminate();
      return;
    }
    this.ws.send(JSON.stringify(msg));
  }

  private touch(): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      this.services.log.info({ conn: this.id }, 'idle timeout');
      // Its sessions stop now, not when the silent client completes the close (ws waits 30 s).
      this.closeHard(1001, 'idle timeout');
      void this.onClose();
    }, this.services.config.limits.api_idle_timeout * 1000);
  }

  private onMessage(data: RawData, isBinary: boolean): void {
    this.touch();
    const size = Array.isArray(data) ? data.reduce((n, b) => n + b.length, 0) : (data as Buffer | ArrayBuffer).byteLength;
    const limit = this.services.config.limits.max_frame_bytes;
    if (size > limit) {
      this.send(errorReply(null, new ApiError('frame_too_large', `${size} bytes, limit ${limit}`)));
      return;
    }
    if (isBinary) {
      this.send(errorReply(null, new ApiError('syntax_error', 'binary frames are not accepted; send JSON text')));
      return;
    }
    const text = Array.isArray(data) ? Buffer.concat(data).toString('utf8') : Buffer.from(data as Buffer).toString('utf8');
    let incoming;
    try {
      incoming = parseFrame(text);
    } catch (err) {
      if (err instanceof FrameError) this.send(errorReply(err.tid, err.error));
      return;
    }
    if (incoming.kind === 'reply') {
      // The client's reply to one of our requests (an unknown tid is a late or stray one).
      const { result, data: replyData, tid } = incoming.reply;
      this.serverRequests.get(tid)?.settle(undefined, { result: result === 'ok' ? 'ok' : 'error', data: replyData });
      return;
    }
    if (incoming.kind !== 'request') return; // acks to our requests: nothing to do
    const { request } = incoming;
    if (this.inFlight >= this.services.config.limits.max_in_flight) {
      this.send(errorReply(request.tid, new ApiError('too_many_requests', `limit ${this.services.config.limits.max_in_flight} per connection`)));
      return;
    }
    this.inFlight++;
    this.dispatch(request)
      .then((data) => this.send(okReply(request.tid, data)))
      .catch((err: unknown) => {
        const e = toApiError(err);
        if (!(err instanceof ApiError)) this.services.log.error({ conn: this.id, cmd: request.cmd, err }, 'command failed unexpectedly');
        this.send(errorReply(request.tid, e));
      })
      .finally(() => { this.inFlight--; });
  }

  private async dispatch(req: Request): Promise<unknown> {
    const subclass = req.subclass ?? 'core';
    const name = `${req.class}/${subclass}/${req.cmd}`;
    if (req.class === 'core' && subclass === 'user' && req.cmd === 'login') return this.doLogin(req.data);
    const handler = own(own(own(HANDLERS, req.class), subclass), req.cmd);
    if (!this.identity) throw new ApiError('not_authenticated');
    if (!handler) throw missingCommand(req.class, subclass, name);
    const ctx: CommandContext = { conn: this, services: this.services, tid: req.tid, caller: { user: this.user, admin: this.admin, connId: this.id } };
    return handler(ctx, req.data);
  }

  private async doLogin(data: unknown): Promise<unknown> {
    while (this.loginInProgress) await this.loginInProgress.catch(() => undefined);
    if (this.identity) throw new ApiError('already_authenticated');
    const attempt = this.checkLogin(data);
    this.loginInProgress = attempt;
    try {
      return await attempt;
    } finally {
      if (this.loginInProgress === attempt) this.loginInProgress = undefined;
    }
  }

  private async checkLogin(data: unknown): Promise<unknown> {
    const { value } = parseData(loginSchema, data);
    try {
      const identity = await this.services.auth.loginFrom(this.address, { user: value.user, password: value.password ?? value.pass, token: value.token });
      if (this.identity) throw new ApiError('already_authenticated');
      const limit = this.services.config.limits.max_connections_per_user;
      if (this.services.calls.connectionsOf(identity.user) >= limit) {
        throw new ApiError('too_many_connections', `user ${identity.user} already has ${limit} connections`);
      }
      this.login(identity);
      this.failedLogins = 0;
      this.services.log.info({ conn: this.id, user: identity.user, admin: identity.admin, remote: this.remote }, 'login');
      // TURN credentials for the client's own peer connections, when TURN servers are configured.
      return { session_id: this.id, ...clientTurnCredentials(this.services.config.ice, identity.user) };
    } catch (err) {
      // Failed logins are slowed down, doubling each time (as the original), up to 5 s.
      if (err instanceof ApiError && err.term === 'unauthorized') {
        await new Promise((r) => setTimeout(r, Math.min(100 * 2 ** this.failedLogins++, 5000)));
      }
      throw err;
    }
  }

  private async onClose(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.idleTimer);
    clearTimeout(this.loginTimer);
    clearInterval(this.pingTimer);
    this.services.bus.removeAll(this);
    for (const r of [...this.serverRequests.values()]) r.settle(new ApiError('process_not_found'));
    // Its calls end (or lose its leg) with a call reason before its sessions stop.
    await this.services.calls.connectionDown(this);
    await this.services.sessions.stopOwnedBy(this.id, 'registered_down');
    this.services.log.info({ conn: this.id, user: this.user }, 'connection closed');
  }
}
