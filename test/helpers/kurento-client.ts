// The real Kurento client libraries for tests, from the separately locked test-only package
// test/kurento-peer (installed by scripts/ensure-test-peers.mjs, which the test runners call):
// - loadKurentoClient(): kurento-client 7.3.0 for Node (CommonJS, loaded with createRequire);
// - kurentoCall(): a kurento-client method call whose promise rejects on server errors;
// - kurentoUtilsBundle(): kurento-utils 7.3.0 bundled for a browser page, exposing
//   `window.kurentoUtils` (kurentoUtils.WebRtcPeer.WebRtcPeerSendrecv, ...).
// Neither package ships types; they are typed loosely here and nowhere else.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

export const KURENTO_PEER_DIR = fileURLToPath(new URL('../kurento-peer/', import.meta.url));
const modules = join(KURENTO_PEER_DIR, 'node_modules');

function missing(pkg: string): Error {
  return new Error(`${pkg} is not installed in ${KURENTO_PEER_DIR}: run \`node scripts/ensure-test-peers.mjs\``);
}

/**
 * The kurento-client module: a function `kurentoClient(wsUri, options?, callback?)` (the returned
 * client is also a thenable), with `getComplexType(name)`, `getSingleton(...)`, `register(...)`.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type KurentoClientModule = any;

let client: KurentoClientModule | undefined;

/**
 * Loads kurento-client once per process.
 *
 * kurento-client 7.3.0 depends on a git fork of reconnect-ws whose reconnect-core (also a fork)
 * swallows connection errors when nobody listens for them. test/kurento-peer has the registry's
 * reconnect-ws@0.1.0 instead (an npm override), whose reconnect-core re-emits every socket error
 * on an emitter kurento-client never listens on: a refused or reset connection would throw as an
 * uncaught 'error' event and end the test process. So before kurento-client first requires it,
 * reconnect-ws is wrapped to give each of its emitters a no-op 'error' listener, as the fork
 * does; kurento-client still sees the failures through its own 'close'/'fail' handling.
 */
export function loadKurentoClient(): KurentoClientModule {
  if (client) return client;
  if (!existsSync(join(modules, 'kurento-client', 'package.json'))) throw missing('kurento-client');
  const require = createRequire(join(KURENTO_PEER_DIR, 'package.json'));
  const fromClient = createRequire(require.resolve('kurento-client'));
  const reconnectPath = fromClient.resolve('reconnect-ws');
  const reconnect = fromClient('reconnect-ws') as (...args: unknown[]) => { on(ev: string, f: () => void): unknown };
  const cached = fromClient.cache[reconnectPath];
  if (cached && cached.exports === reconnect) {
    cached.exports = function (this: unknown, ...args: unknown[]) {
      const emitter = reconnect.apply(this, args);
      emitter.on('error', () => { /* as KurentoForks' reconnect-core: not fatal */ });
      return emitter;
    };
  }
  // TransactionsManager makes `Transaction` inherit node:domain's `Domain` the ES5 way
  // (`Domain.call(this)`), which throws on Node 20 ("Class constructor Domain cannot be invoked
  // without 'new'"); without `Domain` it uses its own EventEmitter-based one (its browser path).
  // It reads `Domain` once, at load: hide it for that moment only.
  const domain = require('node:domain') as { Domain: unknown };
  const saved = domain.Domain;
  domain.Domain = undefined;
  try {
    client = require('kurento-client') as KurentoClientModule;
  } finally {
    domain.Domain = saved;
  }
  return client;
}

/**
 * Calls a kurento-client method in its callback form and returns a promise of its result, e.g.
 * `await kurentoCall(endpoint, 'processOffer', offer)`. Use it where a test needs to see errors:
 * the methods' own promise form resolves with `undefined` when the server answers with an error
 * (kurento-client passes a callback of its own that only logs the error with console.trace).
 */
export function kurentoCall(target: KurentoClientModule, method: string, ...args: unknown[]): Promise<KurentoClientModule> {
  return new Promise((resolve, reject) => {
    target[method](...args, (error: unknown, result: unknown) => (error ? reject(error) : resolve(result)));
  });
}

let bundle: Promise<string> | undefined;

/**
 * kurento-utils bundled for the browser as one classic-script IIFE that sets
 * `window.kurentoUtils` (the same surface as Kurento's own kurento-utils.js). Built once per
 * process with esbuild, then served from memory. The only Node built-in it needs, `events`, comes
 * from npm's `events` package pinned in test/kurento-peer.
 */
export function kurentoUtilsBundle(): Promise<string> {
  if (!bundle) {
    const p = buildBundle();
    p.catch(() => { if (bundle === p) bundle = undefined; }); // a failed build is retried on the next call
    bundle = p;
  }
  return bundle;
}

async function buildBundle(): Promise<string> {
  const utilsDir = join(modules, 'kurento-utils');
  if (!existsSync(join(utilsDir, 'package.json'))) throw missing('kurento-utils');
  const out = await build({
    stdin: {
      // lib/browser.js is the package's browser entry (what Kurento's own bundle is built from).
      contents: "window.kurentoUtils = require('./lib/browser.js');\n",
      resolveDir: utilsDir,
      sourcefile: 'kurento-utils-entry.js',
      loader: 'js',
    },
    bundle: true,
    platform: 'browser',
    format: 'iife',
    target: 'es2020',
    write: false,
    logLevel: 'silent',
    absWorkingDir: KURENTO_PEER_DIR,
  });
  const file = out.outputFiles[0];
  if (!file) throw new Error('esbuild produced no kurento-utils bundle');
  return file.text;
}
