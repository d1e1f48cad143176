// The API server: an HTTP(S) listener carrying the WebSocket API on any path.
import { createServer as createHttp, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttps } from 'node:https';
import { readFileSync } from 'node:fs';
import type { AddressInfo, Socket } from 'node:net';
import { WebSocketServer } from 'ws';
import type { Logger } from 'pino';
import type { MediaCore } from '../core/core.js';
import { publishSessionEvents } from './session-events.js';
import { publishRoomEvents } from './room-events.js';
import { publishCallEvents } from './call-events.js';
import { EventBus } from './event-bus.js';
import type { Config } from '../config.js';
import { resolvesToLoopbackOnly } from '../util/addresses.js';
import { Authenticator } from '../access/auth.js';
import { ApiConnection } from './connection.js';
import { handleRecordings } from './recordings-http.js';
import { handleDemo } from './demo-http.js';
import type { Services, UpgradeDoor } from './context.js';
import { Admission, refuseSocket, type Refusal } from '../access/admission.js';
import type { ResolvedLimits } from '../limits.js';
import type { NodeInfo } from '../engine/pool/nodes.js';

export interface RunningServer {
  url: string;
  port: number;
  services: Services;
  connections(): number;
  /** Refuses new WebSocket upgrades (shutting down); connected clients stay until close. */
  drain(): void;
  /** Closes the doors and every connection (stop the core's sessions first: clients hear it). */
  close(): Promise<void>;
}

export class StartupError extends Error {}

export interface ApiServerOptions {
  /** Serve the NkMEDIA API, demo pages and recordings (off for `nkmedia media-server`). */
  nkmedia?: boolean;
  /** The media nodes, when media runs in workers or elsewhere (`media/node get_list`). */
  nodes?: { list(): NodeInfo[] };
  /** Other protocols on this port, each under its path, made once the services exist. */
  doors?: ((services: Services) => UpgradeDoor)[];
}

export async function startApiServer(config: Config, core: MediaCore, log: Logger, limits: ResolvedLimits, options: ApiServerOptions = {}): Promise<RunningServer> {
  const nkmedia = options.nkmedia ?? true;
  // Decided on what the name resolves to: `127.lan` may well be a public address.
  if (config.auth.mode === 'open' && !(await resolvesToLoopbackOnly(config.host))) {
    throw new StartupError(`refusing to listen on ${config.host} with open auth: use static users or JWT (auth.mode), or listen on 127.0.0.1`);
  }
  const { rooms, sessions, calls, quota } = core;
  // Sessions, rooms and calls speak domain events; the API's subscribers hear them as NkMEDIA events.
  const bus = new EventBus();
  publishSessionEvents(sessions, bus);
  publishRoomEvents(rooms, bus);
  publishCallEvents(calls, bus);
  const paths = sessions.paths;
  const auth = new Authenticator(config.auth, { perAddress: config.limits.login_failures_per_address, perUser: config.limits.login_failures_per_user });
  const services: Services = { config, log, bus, sessions, rooms, calls, auth, quota, engine: core.engine, ...(options.nodes ? { nodes: options.nodes } : {}) };
  const doors = (options.doors ?? []).map((make) => make(services));
  const pipelines = doors.find((d) => d.directory)?.directory;
  if (pipelines) services.pipelines = pipelines;
  const admission = new Admission({
    openMode: config.auth.mode === 'open',
    allowedOrigins: config.http.allowed_origins,
    maxConnections: limits.maxConnections,
    maxPerAddress: config.limits.max_connections_per_address,
  });
  let closing = false;

  const refuseHttp = (res: ServerResponse, r: Refusal) => {
    res.writeHead(r.status, { 'content-type': 'text/plain; charset=utf-8', ...(r.retryAfter !== undefined ? { 'retry-after': String(r.retryAfter) } : {}) });
    res.end(`${r.reason}\n`);
  };
  const onHttp = (req: IncomingMessage, res: ServerResponse) => {
    const refusal = admission.checkHost(req);
    if (refusal) { refuseHttp(res, refusal); return; }
    if (!nkmedia) { onOtherHttp(req, res); return; }
    handleRecordings(req, res, services.auth, paths).then(async (handled) => {
      if (!handled && !(await handleDemo(req, res))) onOtherHttp(req, res);
    }).catch((err: unknown) => {
      log.error({ err }, 'http request failed');
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  };
  const onOtherHttp = (req: IncomingMessage, res: ServerResponse) => {
    if (req.url === '/health') {
      res.writeHead(200, { 'content-type': 'application/json' });
      const doorConns = doors.reduce((n, d) => n + d.connections(), 0);
      res.end(JSON.stringify({ status: 'ok', sessions: sessions.size, rooms: rooms.size, connections: conns.size + doorConns }));
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end(nkmedia ? 'nkmedia-ts: connect a WebSocket to this address to use the API\n' : `nkmedia-ts media server: connect a Kurento client to ${doors.map((d) => d.path).join(', ')}\n`);
  };
  // A connection that sends no complete request within the login timeout is dropped: silent
  // sockets hold descriptors. (Checked every second rather than Node's default 30 s.)
  const timeouts = {
    headersTimeout: config.limits.login_timeout * 1000,
    requestTimeout: Math.max(30_000, config.limits.login_timeout * 1000),
    connectionsCheckingInterval: 1000,
  };
  const http: Server = config.tls
    ? createHttps({ cert: readFileSync(config.tls.cert), key: readFileSync(config.tls.key), ...timeouts }, onHttp)
    : createHttp(timeouts, onHttp);
  // Every TCP connection counts against the caps from its first byte, HTTP and WebSocket alike.
  http.on('connection', (socket: Socket) => {
    if (admission.admitSocket(socket)) {
      // Node times out requests that started, not sockets that never send a byte.
      const silent = setTimeout(() => { if (socket.bytesRead === 0) socket.destroy(); }, config.limits.login_timeout * 1000);
      socket.once('close', () => clearTimeout(silent));
      return;
    }
    log.debug({ remote: socket.remoteAddress }, 'connection refused: too many connections');
    if (config.tls) socket.destroy(); // no TLS handshake yet: nothing readable can be said
    else refuseSocket(socket, { status: 503, reason: 'too many connections', retryAfter: 10 });
  });

  // Frames above the configured limit get an error reply; above twice that the socket is closed
  // by ws itself before anything more is buffered (1009), so a stalled huge frame holds little.
  const hardLimit = Math.max(16 * 1024, config.limits.max_frame_bytes * 2);
  const wss = new WebSocketServer({ noServer: true, maxPayload: hardLimit, perMessageDeflate: false });
  const conns = new Set<ApiConnection>();
  http.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const refusal: Refusal | undefined = closing
      ? { status: 503, reason: 'server shutting down', retryAfter: 5 }
      : admission.checkHost(req) ?? admission.checkOrigin(req);
    if (refusal) {
      log.info({ remote: socket.remoteAddress, origin: req.headers.origin, host: req.headers.host, reason: refusal.reason }, 'WebSocket upgrade refused');
      refuseSocket(socket, refusal);
      return;
    }
    const path = (req.url ?? '/').split('?')[0]!.replace(/\/+$/, '');
    const door = doors.find((d) => path === d.path);
    if (door) { door.handleUpgrade(req, socket, head); return; }
    if (!nkmedia) { refuseSocket(socket, { status: 404, reason: `no such endpoint: use ${doors.map((d) => d.path).join(', ')}` }); return; }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const conn = new ApiConnection(ws, services, req.socket.remoteAddress ?? '', `${req.socket.remoteAddress}:${req.socket.remotePort}`, hardLimit);
      conns.add(conn);
      ws.on('close', () => conns.delete(conn));
    });
  });

  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(config.port, config.host, () => { http.off('error', reject); resolve(); });
  });
  const port = (http.address() as AddressInfo).port;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  const url = `${config.tls ? 'wss' : 'ws'}://${host}:${port}/`;
  log.info({ url, auth: config.auth.mode }, 'API listening');

  return {
    url,
    port,
    services,
    connections: () => conns.size + doors.reduce((n, d) => n + d.connections(), 0),
    drain() { closing = true; },
    async close() {
      closing = true;
      for (const d of doors) await d.close();
      const gone = [...conns].map((c) => c.whenClosed);
      for (const c of conns) c.closeHard(1001, 'server shutting down');
      // The close frames follow the last events out; a client that does not answer is cut at 1 s.
      await Promise.all(gone);
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      http.closeAllConnections?.();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
}
