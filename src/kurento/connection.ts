// One Kurento client's WebSocket: JSON-RPC frames in (text or binary: kurento-client sends
// binary), the protocol's methods dispatched, results and events out. Limits as on the NkMEDIA
// API: frame size, requests in flight, bytes waiting to be sent, silence.
import type { RawData, WebSocket } from 'ws';
import type { Logger } from 'pino';
import type { MediaEngine } from '../engine/types.js';
import { JSONRPC, KMS, KurentoError, illegalParam } from './errors.js';
import { toKurentoError, type KurentoContext } from './context.js';
import { createObject } from './create.js';
import { invoke } from './methods.js';
import type { ClientSession, EventSink, MediaSet } from './media-set.js';
import { HIERARCHY, type Principal } from './objects.js';
import type { UriPolicy } from './uris.js';
import { errorFrame, parseRequest, resultFrame, type RpcId } from './wire.js';

export interface ConnectionLimits {
  maxFrameBytes: number;
  maxInFlight: number;
  maxBufferedBytes: number;
  pingIntervalMs: number;
  idleTimeoutMs: number;
  maxTransactionOperations: number;
}

export interface ConnectionDeps { set: MediaSet; engine: MediaEngine; uris: UriPolicy; log: Logger; serverId: string }

type Params = Record<string, unknown>;
type Result = Record<string, unknown>;

export class KurentoConnection implements EventSink {
  private inFlight = 0;
  private lastHeard = Date.now();
  private readonly pingTimer: NodeJS.Timeout;
  private closed = false;
  readonly whenClosed: Promise<void>;

  constructor(private readonly ws: WebSocket, readonly principal: Principal, readonly remote: string, private readonly deps: ConnectionDeps, private readonly limits: ConnectionLimits) {
    this.whenClosed = new Promise((resolve) => ws.once('close', () => resolve()));
    ws.on('message', (data, isBinary) => this.onMessage(data, isBinary));
    ws.on('pong', () => { this.lastHeard = Date.now(); });
    ws.on('error', (err) => deps.log.debug({ remote, err: err.message }, 'kurento websocket error'));
    ws.on('close', () => this.onClose());
    this.pingTimer = setInterval(() => {
      if (Date.now() - this.lastHeard > limits.idleTimeoutMs) { this.ws.terminate(); return; }
      if (ws.readyState === ws.OPEN) ws.ping();
    }, limits.pingIntervalMs);
  }

  send(frame: string): void {
    if (this.closed || this.ws.readyState !== this.ws.OPEN) return;
    // A client that does not read its events must not make the server hold them without end.
    if (this.ws.bufferedAmount + frame.length > this.limits.maxBufferedBytes) {
      this.deps.log.warn({ remote: this.remote, buffered: this.ws.bufferedAmount }, 'kurento client does not read; closing');
      this.ws.terminate();
      return;
    }
    this.ws.send(frame);
  }

  close(code: number, reason: string): void {
    if (this.ws.readyState === this.ws.OPEN) this.ws.close(code, reason);
    setTimeout(() => this.ws.terminate(), 1000).unref();
  }

  private onClose(): void {
    this.closed = true;
    clearInterval(this.pingTimer);
    this.deps.set.detach(this);
  }

  private onMessage(data: RawData, _isBinary: boolean): void {
    this.lastHeard = Date.now();
    const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
    if (buf.length > this.limits.maxFrameBytes) {
      this.send(errorFrame(null, new KurentoError(JSONRPC.SERVER_BUSY, `frame of ${buf.length} bytes is over this server's limit of ${this.limits.maxFrameBytes}`)));
      return;
    }
    let req;
    try {
      req = parseRequest(buf.toString('utf8'));
    } catch (err) {
      const e = err as KurentoError & { id?: RpcId | null };
      this.send(errorFrame(e.id ?? null, e));
      return;
    }
    const id = req.id;
    if (this.inFlight >= this.limits.maxInFlight) {
      if (id !== undefined) this.send(errorFrame(id, new KurentoError(JSONRPC.SERVER_BUSY, `too many requests in flight (limit ${this.limits.maxInFlight})`)));
      return;
    }
    this.inFlight++;
    this.handle(req.method, req.params ?? undefined).then(
      (result) => { if (id !== undefined) this.send(resultFrame(id, result)); },
      (err: unknown) => {
        const e = err instanceof KurentoError ? err : toKurentoError(err);
        if (!(err instanceof KurentoError)) this.deps.log.warn({ err, method: req.method }, 'kurento request failed');
        if (id !== undefined) this.send(errorFrame(id, e));
      },
    ).finally(() => { this.inFlight--; });
  }

  private ctx(session: ClientSession): KurentoContext {
    const { set, engine, uris, log } = this.deps;
    return { set, engine, uris, log, session, principal: this.principal };
  }

  private session(params: Params | undefined, mustExist = false): ClientSession {
    const id = params?.sessionId;
    if (id !== undefined && (typeof id !== 'string' || id.length === 0 || id.length > 128)) throw illegalParam('sessionId must be a string');
    return this.deps.set.sessionFor(id as string | undefined, this.principal, this, { mustExist });
  }

  /** One protocol method; also each operation of a transaction. */
  private async handle(method: string, params: Params | undefined): Promise<Result> {
    const { set } = this.deps;
    switch (method) {
      case 'ping':
        return { value: 'pong' };
      case 'connect': {
        // No session named: a new one. One named must exist (a reconnect within the grace time).
        const s = this.session(params, params?.sessionId !== undefined);
        return { sessionId: s.id, serverId: this.deps.serverId };
      }
      case 'keepAlive': {
        const s = this.session(params, true);
        return { sessionId: s.id };
      }
      case 'closeSession': {
        const s = this.session(params, true);
        await set.expire(s);
        return { sessionId: s.id };
      }
      case 'create': {
        const s = this.session(params);
        const obj = await createObject(this.ctx(s), params?.type, params?.constructorParams);
        return { value: obj.id, sessionId: s.id };
      }
      case 'invoke': {
        const s = this.session(params);
        const obj = set.lookup(params?.object, this.principal);
        const value = await obj.serial(() => invoke(this.ctx(s), obj, params?.operation, params?.operationParams));
        return value === undefined ? { sessionId: s.id } : { value, sessionId: s.id };
      }
      case 'describe': {
        const s = this.session(params);
        const obj = set.lookup(params?.object, this.principal);
        return { sessionId: s.id, type: obj.type, qualifiedType: `kurento.${obj.type}`, hierarchy: HIERARCHY[obj.type] };
      }
      case 'subscribe': {
        const s = this.session(params);
        const obj = set.lookup(params?.object, this.principal);
        if (typeof params?.type !== 'string') throw illegalParam("subscribe: 'type' must be an event name");
        return { value: set.subscribe(s, obj, params.type), sessionId: s.id };
      }
      case 'unsubscribe': {
        const s = this.session(params);
        set.unsubscribe(s, params?.subscription);
        return { sessionId: s.id };
      }
      case 'release': {
        const s = this.session(params);
        const obj = set.lookup(params?.object, this.principal);
        await obj.serial(() => set.release(obj));
        return { sessionId: s.id };
      }
      case 'ref': {
        const s = this.session(params);
        set.ref(set.lookup(params?.object, this.principal), s);
        return { sessionId: s.id };
      }
      case 'unref': {
        const s = this.session(params);
        await set.unref(set.lookup(params?.object, this.principal), s);
        return { sessionId: s.id };
      }
      case 'transaction':
        return this.transaction(params);
      default:
        throw new KurentoError(JSONRPC.METHOD_NOT_FOUND, `Method not found: '${method.slice(0, 64)}'`);
    }
  }

  /**
   * Operations run in order; `newref:N` anywhere in an operation's parameters stands for the
   * value operation N returned (the id of an object it created). The first failure ends it.
   */
  private async transaction(params: Params | undefined): Promise<Result> {
    const s = this.session(params);
    const ops = params?.operations;
    if (!Array.isArray(ops)) throw new KurentoError(KMS.MALFORMED_TRANSACTION, "transaction: 'operations' must be an array");
    if (ops.length > this.limits.maxTransactionOperations) throw new KurentoError(KMS.MALFORMED_TRANSACTION, `transaction: at most ${this.limits.maxTransactionOperations} operations`);
    const responses: Result[] = [];
    for (const [i, raw] of ops.entries()) {
      const o = raw as { id?: unknown; method?: unknown; params?: unknown } | null;
      if (!o || typeof o !== 'object' || typeof o.method !== 'string' || o.method === 'transaction') {
        throw new KurentoError(KMS.MALFORMED_TRANSACTION, `transaction: operation ${i} is not a request`);
      }
      if (o.id !== undefined && o.id !== i) throw new KurentoError(KMS.MALFORMED_TRANSACTION, `Id of request '${i}' should be '${i}'`);
      try {
        const opParams = { ...(injectRefs(o.params ?? {}, responses) as Params), sessionId: s.id };
        responses.push({ jsonrpc: '2.0', id: i, result: await this.handle(o.method, opParams) });
      } catch (err) {
        responses.push({ jsonrpc: '2.0', id: i, error: (err instanceof KurentoError ? err : toKurentoError(err)).toJson() });
        break;
      }
    }
    return { value: responses, sessionId: s.id };
  }
}

function injectRefs(value: unknown, responses: Result[]): unknown {
  if (typeof value === 'string' && value.startsWith('newref:')) {
    const n = Number(value.slice('newref:'.length));
    const r = Number.isInteger(n) ? (responses[n]?.result as Result | undefined) : undefined;
    if (!r || r.value === undefined) throw new KurentoError(KMS.MALFORMED_TRANSACTION, `'${value}': no result of that operation`);
    return r.value;
  }
  if (Array.isArray(value)) return value.map((v) => injectRefs(v, responses));
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, injectRefs(v, responses)]));
  return value;
}
