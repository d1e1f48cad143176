// Kurento "hello world": the browser sends its camera to a WebRtcEndpoint on the media server,
// which is connected to itself, so the page plays its own media back as the remote video.
//
// This is the application server of that tutorial, a plain kurento-client application:
// - HTTP: the page (static/index.html, static/app.js) and /kurento-utils.js, a browser bundle of
//   kurento-utils built with esbuild when the server starts;
// - WebSocket /helloworld: a small JSON protocol with the page (one pipeline per page socket):
//     page -> server  {id: 'start', sdpOffer} | {id: 'onIceCandidate', candidate} | {id: 'stop'}
//     server -> page  {id: 'startResponse', sdpAnswer} | {id: 'iceCandidate', candidate}
//                     | {id: 'error', message}
// - kurento-client: the Kurento JSON-RPC server given by --ws_uri.
//
// Usage: node server.js [--host 127.0.0.1] [--port 8080] [--ws_uri ws://127.0.0.1:9010/kurento]
//        (or HOST, PORT, WS_URI in the environment)
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import esbuild from 'esbuild';
import kurento from 'kurento-client';
import { WebSocketServer } from 'ws';

const here = dirname(fileURLToPath(import.meta.url));

// ---- options ------------------------------------------------------------------------------------
let args;
try {
  args = parseArgs({
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      ws_uri: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  }).values;
} catch (err) {
  console.error(`${err.message}\nUsage: node server.js [--host HOST] [--port PORT] [--ws_uri WS_URI]`);
  process.exit(2);
}
if (args.help) {
  console.log('Usage: node server.js [--host 127.0.0.1] [--port 8080] [--ws_uri ws://127.0.0.1:9010/kurento]');
  process.exit(0);
}
const host = args.host ?? process.env.HOST ?? '127.0.0.1';
const port = Number(args.port ?? process.env.PORT ?? 8080);
const wsUri = args.ws_uri ?? process.env.WS_URI ?? 'ws://127.0.0.1:9010/kurento';
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`bad port: ${args.port ?? process.env.PORT}`);
  process.exit(2);
}

// ---- the page -----------------------------------------------------------------------------------
async function bundleKurentoUtils() {
  const require = createRequire(import.meta.url);
  const utilsDir = dirname(require.resolve('kurento-utils/package.json'));
  const out = await esbuild.build({
    // lib/browser.js is kurento-utils' browser entry; the page finds it as window.kurentoUtils.
    stdin: { contents: "window.kurentoUtils = require('./lib/browser.js');\n", resolveDir: utilsDir, loader: 'js' },
    bundle: true,
    platform: 'browser',
    format: 'iife',
    minify: true,
    write: false,
    logLevel: 'warning',
  });
  return out.outputFiles[0].text;
}

const files = {
  '/': { file: join(here, 'static', 'index.html'), type: 'text/html; charset=utf-8' },
  '/index.html': { file: join(here, 'static', 'index.html'), type: 'text/html; charset=utf-8' },
  '/app.js': { file: join(here, 'static', 'app.js'), type: 'text/javascript; charset=utf-8' },
};
const kurentoUtilsJs = await bundleKurentoUtils();

const server = http.createServer(async (req, res) => {
  const path = new URL(req.url ?? '/', 'http://localhost').pathname;
  try {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
    } else if (path === '/kurento-utils.js') {
      res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'no-cache' })
        .end(req.method === 'HEAD' ? undefined : kurentoUtilsJs);
    } else if (path === '/favicon.ico') {
      res.writeHead(204).end();
    } else if (files[path]) {
      const body = await readFile(files[path].file);
      res.writeHead(200, { 'content-type': files[path].type, 'cache-control': 'no-cache' })
        .end(req.method === 'HEAD' ? undefined : body);
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  } catch (err) {
    res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`);
  }
});

// ---- Kurento ------------------------------------------------------------------------------------
let clientPromise = null;

/** The one kurento-client connection the application shares, made on first use. */
function getKurentoClient() {
  clientPromise ??= new Promise((resolve, reject) => {
    // The callback form also checks that the media server has the modules kurento-client knows.
    const client = kurento(wsUri, { failAfter: 3 }, (error, connected) => {
      if (error) reject(new Error(`Could not find media server at address ${wsUri}: ${error.message}`));
      else resolve(connected);
    });
    client.on('disconnect', () => { clientPromise = null; });
    // The registry's reconnect-ws@0.1.0 (see "overrides" in package.json) brings the registry's
    // reconnect-core, which re-emits every socket error on kurento-client's internal reconnecting
    // emitter; kurento-client never listens for it (the git fork of reconnect-core it is meant to
    // get swallows it), so an unreachable media server would crash this process. Listen here.
    client._re?.on('error', (err) => console.error(`media server connection: ${err.message}`));
  });
  clientPromise.catch(() => { clientPromise = null; });
  return clientPromise;
}

const IceCandidate = kurento.getComplexType('IceCandidate');

/**
 * Calls a kurento-client method in its callback form. (Its promise form resolves with undefined
 * when the media server answers with an error: it only logs the error with console.trace.)
 */
function call(target, method, ...args) {
  return new Promise((resolve, reject) => {
    target[method](...args, (error, result) => (error ? reject(error) : resolve(result)));
  });
}

/** One page: its pipeline and endpoint, and the page's candidates that came before the endpoint. */
class Session {
  constructor(socket, id) {
    this.socket = socket;
    this.id = id;
    this.pipeline = null;
    this.endpoint = null;
    this.pendingCandidates = [];
    this.generation = 0; // bumped by release(): a start still in progress sees it and backs out
  }

  send(message) {
    if (this.socket.readyState === this.socket.OPEN) this.socket.send(JSON.stringify(message));
  }

  /** Rejects only while this start is still the current one (not after a stop or a new start). */
  async start(sdpOffer) {
    this.release(); // a second start replaces the first (keeping candidates already queued)
    const generation = this.generation;
    const current = () => generation === this.generation;
    try {
      await this.negotiate(sdpOffer, current);
    } catch (err) {
      if (current()) throw err;
    }
  }

  async negotiate(sdpOffer, current) {
    const client = await getKurentoClient();
    if (!current()) return;
    const pipeline = await call(client, 'create', 'MediaPipeline');
    if (!current()) { pipeline.release(() => {}); return; }
    this.pipeline = pipeline;

    const endpoint = await call(pipeline, 'create', 'WebRtcEndpoint');
    if (!current()) return;
    this.endpoint = endpoint;
    while (this.pendingCandidates.length > 0) {
      await call(endpoint, 'addIceCandidate', this.pendingCandidates.shift());
    }

    endpoint.on('IceCandidateFound', (event) => {
      this.send({ id: 'iceCandidate', candidate: IceCandidate(event.candidate) });
    });
    await call(endpoint, 'connect', endpoint);
    const sdpAnswer = await call(endpoint, 'processOffer', sdpOffer);
    if (!current()) return;
    this.send({ id: 'startResponse', sdpAnswer });
    await call(endpoint, 'gatherCandidates');
  }

  async addCandidate(raw) {
    const candidate = IceCandidate(raw);
    if (this.endpoint) await call(this.endpoint, 'addIceCandidate', candidate);
    else this.pendingCandidates.push(candidate);
  }

  stop() {
    this.pendingCandidates = [];
    this.release();
  }

  release() {
    this.generation++;
    const pipeline = this.pipeline;
    this.pipeline = null;
    this.endpoint = null;
    if (pipeline) {
      console.log(`[${this.id}] releasing pipeline`);
      pipeline.release((err) => { if (err) console.error(`[${this.id}] release failed: ${err.message}`); });
    }
  }
}

// ---- the page's WebSocket -----------------------------------------------------------------------
const wss = new WebSocketServer({ server, path: '/helloworld' });
const sessions = new Set();
let nextId = 1;

wss.on('connection', (socket) => {
  const session = new Session(socket, nextId++);
  sessions.add(session);
  console.log(`[${session.id}] page connected`);
  const fail = (err) => {
    console.error(`[${session.id}] ${err.message}`);
    session.send({ id: 'error', message: err.message });
  };

  socket.on('message', (data) => {
    let message;
    try { message = JSON.parse(String(data)); } catch { return fail(new Error('invalid JSON message')); }
    switch (message.id) {
      case 'start':
        session.start(message.sdpOffer).catch((err) => { fail(err); session.stop(); });
        break;
      case 'onIceCandidate':
        session.addCandidate(message.candidate).catch(fail);
        break;
      case 'stop':
        session.stop();
        break;
      default:
        fail(new Error(`invalid message id: ${message.id}`));
    }
  });
  socket.on('close', () => {
    console.log(`[${session.id}] page disconnected`);
    session.stop();
    sessions.delete(session);
  });
});

// ---- start and stop -----------------------------------------------------------------------------
const onListenError = (err) => { console.error(`cannot listen on ${host}:${port}: ${err.message}`); process.exit(1); };
server.on('error', onListenError);
wss.on('error', onListenError); // ws re-emits the HTTP server's errors
server.listen(port, host, () => {
  const { port: actual } = server.address();
  const shown = host.includes(':') ? `[${host}]` : host;
  console.log(`Kurento hello world on http://${shown}:${actual}/ (media server: ${wsUri})`);
});

function shutdown() {
  for (const session of sessions) session.stop();
  wss.close();
  server.close();
  // Let the release requests go out, then close the media server connection.
  setTimeout(async () => {
    if (clientPromise) { try { (await clientPromise).close(); } catch { /* never connected */ } }
    process.exit(0);
  }, 300).unref();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
