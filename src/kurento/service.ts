// The Kurento protocol door: WebSocket upgrades on `/kurento`, authenticated as the NkMEDIA API
// is (open on loopback only; otherwise a JWT, or `user:password` for static users, in the
// `access_token` query parameter kurento-client sends), then one KurentoConnection each.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { WebSocketServer } from 'ws';
import type { Logger } from 'pino';
import { kurentoFileDirs, type Config } from '../config.js';
import type { MediaEngine } from '../engine/types.js';
import type { SessionQuota } from '../core/sessions/quota.js';
import type { Authenticator, Identity } from '../access/auth.js';
import { refuseSocket } from '../access/admission.js';
import { ApiError } from '../protocol/errors.js';
import { MediaSet } from './media-set.js';
import { KurentoConnection, type ConnectionLimits } from './connection.js';
import type { Element, Pipeline } from './objects.js';

export const KURENTO_PATH = '/kurento';

/** A pipeline as the NkMEDIA console lists it. */
export interface PipelineSummary {
  id: string;
  user: string;
  created: number;
  elements: { id: string; type: string; name: string; media_state: string; connection_state: string; flowing_in: string[]; flowing_out: string[]; sources: Record<string, string> }[];
}

function summary(p: Pipeline): PipelineSummary {
  const el = (e: Element) => ({
    id: e.id, type: e.elementType, name: e.name, media_state: e.mediaState, connection_state: e.connectionState,
    flowing_in: [...e.flowingIn], flowing_out: [...e.flowingOut],
    sources: Object.fromEntries([...e.sources].map(([k, l]) => [k, l.source.id])),
  });
  return { id: p.id, user: p.owner, created: p.creationTime, elements: [...p.elements].map(el) };
}

export class KurentoService {
  readonly path = KURENTO_PATH;
  readonly set: MediaSet;
  readonly directory = {
    list: (identity: Identity) => this.list(identity),
    release: (identity: Identity, id: string) => this.release(identity, id),
  };
  private readonly wss: WebSocketServer;
  private readonly conns = new Set<KurentoConnection>();
  private readonly perUser = new Map<string, number>();
  private readonly serverId = randomUUID();
  private readonly limits: ConnectionLimits;
  private closing = false;

  constructor(private readonly config: Config, private readonly engine: MediaEngine, quota: SessionQuota, private readonly auth: Authenticator, private readonly log: Logger) {
    this.set = new MediaSet(engine, quota, { graceMs: config.kurento.session_grace_seconds * 1000, maxObjectsPerUser: config.kurento.max_objects_per_user, log });
    const l = config.limits;
    this.limits = {
      maxFrameBytes: l.max_frame_bytes,
      maxInFlight: l.max_in_flight,
      maxBufferedBytes: l.max_buffered_bytes,
      pingIntervalMs: l.ping_interval * 1000,
      idleTimeoutMs: l.api_idle_timeout * 1000,
      maxTransactionOperations: 256,
    };
    // ws closes a connection whose frame is over twice the limit before buffering it whole.
    this.wss = new WebSocketServer({ noServer: true, maxPayload: Math.max(16 * 1024, l.max_frame_bytes * 2), perMessageDeflate: false });
  }

  connections(): number { return this.conns.size; }

  /** Pipelines for the NkMEDIA console: every one for admins, else the user's own. */
  list(identity: Identity): PipelineSummary[] {
    return (identity.admin ? this.set.allPipelines() : this.set.pipelines(identity)).map(summary);
  }

  /** Releases a pipeline from the NkMEDIA side (console); false when there is no such pipeline for this identity. */
  async release(identity: Identity, id: string): Promise<boolean> {
    const p = (identity.admin ? this.set.allPipelines() : this.set.pipelines(identity)).find((x) => x.id === id);
    if (!p) return false;
    await this.set.release(p);
    return true;
  }

  /** Takes a WebSocket upgrade on KURENTO_PATH (admission and browser checks are done by the listener). */
  handleUpgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    if (this.closing) { refuseSocket(socket, { status: 503, reason: 'server shutting down', retryAfter: 5 }); return; }
    const address = req.socket.remoteAddress ?? '';
    void this.authenticate(req, address).then((identity) => {
      if (socket.destroyed) return;
      const mine = this.perUser.get(identity.user) ?? 0;
      if (mine >= this.config.limits.max_connections_per_user) {
        refuseSocket(socket, { status: 503, reason: `user ${identity.user} has ${mine} Kurento connections (limit ${this.config.limits.max_connections_per_user})`, retryAfter: 10 });
        return;
      }
      this.wss.handleUpgrade(req, socket, head, (ws) => {
        const remote = `${address}:${req.socket.remotePort}`;
        const conn = new KurentoConnection(ws, identity, remote, { set: this.set, engine: this.engine, uris: this.uris(), log: this.log, serverId: this.serverId }, this.limits);
        this.conns.add(conn);
        this.perUser.set(identity.user, (this.perUser.get(identity.user) ?? 0) + 1);
        this.log.info({ remote, user: identity.user }, 'Kurento client connected');
        ws.on('close', () => {
          this.conns.delete(conn);
          const n = (this.perUser.get(identity.user) ?? 1) - 1;
          if (n <= 0) this.perUser.delete(identity.user); else this.perUser.set(identity.user, n);
        });
      });
    }, (err: unknown) => {
      const e = err instanceof ApiError ? err : undefined;
      const status = e?.term === 'too_many_logins' ? 503 : 401;
      this.log.info({ remote: address, reason: e?.message ?? String(err) }, 'Kurento connection refused');
      refuseSocket(socket, { status, reason: e?.message ?? 'unauthorized', ...(status === 503 ? { retryAfter: 60 } : {}) });
    });
  }

  private uris() {
    return { fileDirs: kurentoFileDirs(this.config), allowHttp: this.config.play_allow_http };
  }

  private async authenticate(req: IncomingMessage, address: string): Promise<Identity> {
    const mode = this.config.auth.mode;
    if (mode === 'open') return { user: this.config.kurento.open_user, admin: false };
    let token: string | null = null;
    try { token = new URL(req.url ?? '/', 'http://x').searchParams.get('access_token'); } catch { /* no token */ }
    if (!token) throw new ApiError('unauthorized', 'an access_token query parameter is required');
    if (mode === 'jwt') return this.auth.loginFrom(address, { token });
    const colon = token.indexOf(':');
    if (colon <= 0) throw new ApiError('unauthorized', 'access_token: give user:password for static users');
    return this.auth.loginFrom(address, { user: token.slice(0, colon), password: token.slice(colon + 1) });
  }

  async close(): Promise<void> {
    this.closing = true;
    const gone = [...this.conns].map((c) => c.whenClosed);
    for (const c of this.conns) c.close(1001, 'server shutting down');
    await Promise.all(gone);
    await this.set.close();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
  }
}
