// The API server: an HTTP(S) listener carrying the WebSocket API on any path.
import { createServer as createHttp, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttps } from 'node:https';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { resolvesToLoopbackOnly } from '../util/addresses.js';
import { EventBus } from '../events/bus.js';
import { SessionManager } from '../sessions/manager.js';
import { RoomManager } from '../rooms/manager.js';
import { CallManager } from '../calls/manager.js';
import type { MediaEngine } from '../engine/types.js';
import { Authenticator } from './auth.js';
import { ApiConnection } from './connection.js';
import { handleRecordings } from './recordings-http.js';
import { handleDemo } from './demo-http.js';
import type { Services } from './context.js';

export interface RunningServer {
  url: string;
  port: number;
  services: Services;
  connections(): number;
  close(): Promise<void>;
}

export class StartupError extends Error {}

export async function startApiServer(config: Config, engine: MediaEngine, log: Logger): Promise<RunningServer> {
  // Decided on what the name resolves to: `127.lan` may well be a public address.
  if (config.auth.mode === 'open' && !(await resolvesToLoopbackOnly(config.host))) {
    throw new StartupError(`refusing to listen on ${config.host} with open auth: use static users or JWT (auth.mode), or listen on 127.0.0.1`);
  }
  const bus = new EventBus();
  const rooms = new RoomManager(bus);
  const paths = { recordingsDir: config.recordings_dir, playDirs: config.play_dirs, allowHttp: config.play_allow_http };
  const sessions = new SessionManager(engine, bus, rooms, paths, log);
  const calls = new CallManager(sessions, bus, log);
  const services: Services = { config, log, bus, sessions, rooms, calls, auth: new Authenticator(config.auth) };

  const onHttp = (req: IncomingMessage, res: ServerResponse) => {
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
      res.end(JSON.stringify({ status: 'ok', sessions: sessions.size, rooms: rooms.size, connections: conns.size }));
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('nkmedia-ts: connect a WebSocket to this address to use the API\n');
  };
  const http: Server = config.tls
    ? createHttps({ cert: readFileSync(config.tls.cert), key: readFileSync(config.tls.key) }, onHttp)
    : createHttp(onHttp);

  // Frames above the configured limit get an error reply; far above it the socket is closed
  // by ws itself before anything is buffered (1009), so a hostile client cannot exhaust memory.
  const hardLimit = Math.max(16 * 1024 * 1024, config.limits.max_frame_bytes * 4);
  const wss = new WebSocketServer({ server: http, maxPayload: hardLimit, perMessageDeflate: false });
  const conns = new Set<ApiConnection>();
  wss.on('connection', (ws, req) => {
    const conn = new ApiConnection(ws, services, `${req.socket.remoteAddress}:${req.socket.remotePort}`);
    conns.add(conn);
    ws.on('close', () => conns.delete(conn));
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
    connections: () => conns.size,
    async close() {
      for (const c of conns) c.close(1001, 'server shutting down');
      await calls.endAll('api_stop');
      await sessions.stopAll('api_stop');
      await rooms.destroyAll('api_stop');
      sessions.close();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      http.closeAllConnections?.();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
}
