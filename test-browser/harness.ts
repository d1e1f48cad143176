// The browser suite's harness: the nkmedia server in-process, a tiny HTTP server for the test
// page (test-browser/page, bundled with esbuild), and Debian's headless Chromium driven by
// playwright-core. Run only through `npm run test:browser` (scripts/run-browser-tests.mjs),
// which puts the whole test process in a network namespace of its own: Chromium gathers ICE
// candidates only on a non-loopback interface with a default route, and there the only such
// interface is the namespace's private one, so no packet can leave the machine.
//
//   const suite = await startBrowserSuite();
//   const page = await suite.openPage();
//   await page.connect('alice');
//   const id = await page.startSession({ type: 'park' });   // or { type: 'echo', offerer: 'server' }
//   await page.waitConnected(id);
//   const s = await page.stats(id);                         // framesDecoded, packets, bytesSent
//   const r = await page.switchAndWatch(id, 'set_type', { type: 'echo' }, { aspect: [1.2, 1.45] });
//   // r.resumeMs: from the request to the first newly decoded frame, measured in the page
//   const n = (await page.state(id)).negotiation;           // negotiationneeded / set*Description counts
//   await page.screenshot('park-browser-offers');
//   await suite.close();
//
// With NKMEDIA_TEST_WORKERS=N (`npm run test:browser -- --workers N`) the server's media runs in N
// worker processes (media.workers) instead of the test process.
import { createServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdirSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { startServer, type Server } from '../src/main.js';
import type { ConfigInput } from '../src/config.js';
import { NkMediaClient, type EventData } from '../src/client/index.js';
import type { FrameWatch, NkPageApi, PeerStats, SessionState, StartOptions, SwitchResult, SwitchWatch } from './page/api.js';

const here = dirname(fileURLToPath(import.meta.url));
export const SCREENSHOT_DIR = join(here, 'screenshots');
const CHROMIUM = process.env.NKMEDIA_CHROMIUM ?? '/usr/bin/chromium';
/** The namespace's private address (scripts/run-browser-tests.mjs). */
export const NETNS_ADDR = process.env.NKMEDIA_BROWSER_ADDR ?? '10.213.0.1';

/**
 * Playwright passes its own --disable-features list and Chromium keeps only the last one
 * given, so ours repeats Playwright's network-quietening entries next to the one we need:
 * WebRtcHideLocalIpsWithMdns off = host candidates carry real addresses, not .local names.
 */
const DISABLED_FEATURES = [
  'WebRtcHideLocalIpsWithMdns', 'OptimizationHints', 'NetworkTimeServiceQuerying', 'AimEnabled', 'PreconnectToSearch',
  'MediaRouter', 'DestroyProfileOnBrowserClose', 'HttpsUpgrades', 'HttpsFirstBalancedModeAutoEnable', 'LensOverlay',
  'PaintHolding', 'ThirdPartyStoragePartitioning', 'AvoidUnnecessaryBeforeUnloadCheckSync', 'AvoidCorsURLLoaderRestartOnRedirect',
];

export const CHROMIUM_ARGS = [
  '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-default-apps',
  '--disable-domain-reliability', '--disable-client-side-phishing-detection', '--no-pings',
  '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
  '--autoplay-policy=no-user-gesture-required',
  `--disable-features=${DISABLED_FEATURES.join(',')}`,
];

/**
 * Refuses to run outside the namespace made by scripts/run-browser-tests.mjs: on a normal
 * machine Chromium and the server would use the machine's real interfaces.
 */
export function assertInsideTestNamespace(): void {
  const ns = process.env.NKMEDIA_BROWSER_NETNS;
  const foreign: string[] = [];
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    for (const a of addrs ?? []) {
      if (a.internal || a.family !== 'IPv4') continue;
      if (!a.address.startsWith(NETNS_ADDR.split('.').slice(0, 3).join('.') + '.')) foreign.push(`${name} ${a.address}`);
    }
  }
  if (!ns || foreign.length > 0) {
    throw new Error(
      `the browser suite must run inside its own network namespace: use \`npm run test:browser\` ` +
      `(NKMEDIA_BROWSER_NETNS=${ns ?? 'unset'}; interfaces outside the test network: ${foreign.join(', ') || 'none'})`,
    );
  }
}

/**
 * NKMEDIA_TEST_WORKERS=N (`npm run test:browser -- --workers N`) runs every suite server's media in
 * N worker processes (`media.workers`; `auto` too), as `npm run test:workers` does for test/. The
 * workers listen on 127.0.0.1 inside the same namespace and get the server's ICE settings, so
 * Chromium reaches them on the namespace's address. Unset: media in the test process.
 */
export const TEST_WORKERS = testWorkers(process.env.NKMEDIA_TEST_WORKERS);

function testWorkers(v: string | undefined): number | 'auto' | undefined {
  if (v === undefined || v === '') return undefined;
  if (v === 'auto') return 'auto';
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`NKMEDIA_TEST_WORKERS must be a number of workers (0, 1, 2...) or auto, not ${JSON.stringify(v)}`);
  return n;
}

export interface SuiteOptions {
  /** Server configuration overrides (ICE defaults to the namespace interface, no loopback). */
  server?: ConfigInput;
  /** Chromium switches added to CHROMIUM_ARGS (e.g. a `--force-fieldtrials=...`). */
  chromiumArgs?: string[];
}

/** Polls until `check` returns a truthy value, or fails after `ms`. */
export async function eventually<T>(check: () => T | Promise<T>, ms = 10000, what = 'condition'): Promise<NonNullable<T>> {
  const end = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v as NonNullable<T>;
    } catch (err) { last = err; }
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let bundle: Promise<string> | undefined;
/** The page script (page/main.ts with the SDK) bundled for the browser; built once per process. */
function pageBundle(): Promise<string> {
  bundle ??= build({
    entryPoints: [join(here, 'page', 'main.ts')],
    bundle: true,
    platform: 'browser',
    format: 'esm',
    target: 'es2022',
    external: ['ws'],
    sourcemap: 'inline',
    write: false,
    logLevel: 'silent',
  }).then((r) => r.outputFiles[0]!.text);
  return bundle;
}

const INDEX_HTML = `<!doctype html>
<html><head><meta charset="utf-8"><title>nkmedia-ts browser test</title>
<style>
  body { font: 14px system-ui, sans-serif; margin: 12px; background: #f4f4f4; }
  h1 { font-size: 16px; margin: 0 0 8px; } h2 { font-size: 13px; margin: 0 0 4px; width: 100%; }
  .session { display: flex; flex-wrap: wrap; gap: 8px; background: #fff; border: 1px solid #ccc; padding: 8px; margin-bottom: 8px; }
  .session.failed { border-color: #c00; } .session.closed { opacity: .5; }
  figure { margin: 0; } figcaption { font-size: 12px; color: #555; }
  video { background: #222; display: block; }
</style></head>
<body><h1>nkmedia-ts browser test — <span id="status">loading</span></h1><div id="sessions"></div>
<script type="module" src="/page.js"></script></body></html>`;

async function startPageServer(): Promise<{ http: HttpServer; url: string }> {
  const js = await pageBundle();
  const http = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/' || path === '/index.html') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(INDEX_HTML);
    } else if (path === '/page.js') {
      res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'no-store' });
      res.end(js);
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found');
    }
  });
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(0, '127.0.0.1', () => resolve());
  });
  return { http, url: `http://127.0.0.1:${(http.address() as AddressInfo).port}/` };
}

export interface BrowserSuite {
  server: Server;
  browser: Browser;
  /** The test page's address (http on 127.0.0.1). */
  pageUrl: string;
  /** An admin API client from Node: sees (and can get_stats on) every user's sessions. */
  admin: NkMediaClient;
  /** A new page (in its own browser context) with the test page loaded. */
  openPage(label?: string): Promise<TestPage>;
  close(): Promise<void>;
}

export async function startBrowserSuite(opts: SuiteOptions = {}): Promise<BrowserSuite> {
  assertInsideTestNamespace();
  const overrides = opts.server ?? {};
  // The test page comes from a server of its own: an origin the API must be told to accept.
  const page = await startPageServer();
  const closePage = () => new Promise<void>((r) => { page.http.closeAllConnections(); page.http.close(() => r()); });
  let server: Server;
  try {
    server = await startServer({
      host: '127.0.0.1',
      port: 0,
      log_level: (process.env.NKMEDIA_TEST_LOG as ConfigInput['log_level']) ?? 'silent',
      ...overrides,
      // Media in this process unless the run asks for workers (the server's own default is `auto`).
      media: { workers: TEST_WORKERS ?? 0, ...(overrides.media ?? {}) },
      http: { allowed_origins: [new URL(page.url).origin], ...(overrides.http ?? {}) },
      // Chromium ignores loopback candidates: the server must offer the namespace's address.
      ice: { use_interfaces: true, include_loopback: false, ...(overrides.ice ?? {}) },
    });
  } catch (err) {
    await closePage();
    throw err;
  }
  const cleanups: (() => Promise<unknown>)[] = [() => server.close(), closePage];
  const closeAll = async () => {
    for (const c of cleanups.reverse()) await c().catch((err) => console.error('browser suite cleanup:', err));
  };
  try {
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [...CHROMIUM_ARGS, ...(opts.chromiumArgs ?? [])],
      timeout: 60000,
      env: { ...process.env, TZ: 'UTC' },
    });
    cleanups.push(() => browser.close());
    const admin = await NkMediaClient.connect(server.url);
    await admin.login('admin');
    cleanups.push(() => admin.close());
    const pages = new Set<TestPage>();
    return {
      server, browser, admin, pageUrl: page.url,
      async openPage(label?: string) {
        const context = await browser.newContext({ viewport: { width: 1000, height: 700 }, permissions: ['camera', 'microphone'] });
        const p = await TestPage.open(context, page.url, server.url, label ?? `page${pages.size + 1}`);
        pages.add(p);
        return p;
      },
      async close() {
        for (const p of pages) await p.close().catch(() => undefined);
        await closeAll();
      },
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

/** One browser page running the test page; its methods call `window.nk` (page/api.ts). */
export class TestPage {
  /** The page's console output and errors, newest last. */
  readonly logs: string[] = [];
  private closed = false;

  private constructor(readonly context: BrowserContext, readonly page: Page, readonly apiUrl: string, readonly label: string) {
    page.on('console', (m) => this.note(`console.${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => this.note(`pageerror: ${e.message}`));
    page.on('crash', () => this.note('page crashed'));
  }

  static async open(context: BrowserContext, pageUrl: string, apiUrl: string, label: string): Promise<TestPage> {
    const page = await context.newPage();
    const p = new TestPage(context, page, apiUrl, label);
    await page.goto(pageUrl);
    await page.waitForFunction(() => typeof window.nk === 'object', undefined, { timeout: 10000 });
    return p;
  }

  private note(line: string): void {
    this.logs.push(line);
    if (this.logs.length > 500) this.logs.shift();
    if (process.env.NKMEDIA_TEST_LOG) console.error(`[${this.label}] ${line}`);
  }

  /**
   * Calls `window.nk[method](...args)` in the page. A failure carries the page's recent
   * console lines, so a broken negotiation explains itself in the test output.
   */
  async call<K extends keyof NkPageApi>(method: K, ...args: Parameters<NkPageApi[K]>): Promise<Awaited<ReturnType<NkPageApi[K]>>> {
    try {
      return await this.page.evaluate(
        ([m, a]) => (window.nk as any)[m](...a),
        [method, args] as [string, unknown[]],
      );
    } catch (err) {
      const tail = this.logs.slice(-30).map((l) => `    ${l}`).join('\n');
      const e = new Error(`[${this.label}] nk.${String(method)} failed: ${(err as Error).message}${tail ? `\n  page log:\n${tail}` : ''}`);
      throw e;
    }
  }

  /** Runs any function in the page. */
  evaluate: Page['evaluate'] = (fn: any, arg?: any) => this.page.evaluate(fn, arg);

  connect(user = 'alice', creds: { password?: string; token?: string } = {}): Promise<string> { return this.call('connect', this.apiUrl, user, creds); }
  startSession(opts: StartOptions): Promise<string> { return this.call('startSession', opts); }
  waitConnected(sessionId?: string, timeoutMs = 15000): Promise<void> { return this.call('waitConnected', sessionId, timeoutMs); }
  stats(sessionId?: string): Promise<PeerStats> { return this.call('stats', sessionId); }
  rawStats(sessionId?: string, types?: string[]): Promise<Record<string, unknown>[]> { return this.call('rawStats', sessionId, types); }
  state(sessionId?: string): Promise<SessionState> { return this.call('state', sessionId); }
  events(sessionId?: string): Promise<EventData[]> { return this.call('events', sessionId); }
  command(cmd: string, data?: Record<string, unknown>): Promise<any> { return this.call('command', cmd, data); }
  sendData(text: string, sessionId?: string): Promise<void> { return this.call('sendData', text, sessionId); }
  /** Sends `cmd` for `sessionId` and measures, in the page, how long until new video frames are decoded. */
  switchAndWatch(sessionId: string, cmd: string, data: Record<string, unknown>, watch?: SwitchWatch): Promise<SwitchResult> {
    return this.call('switchAndWatch', sessionId, cmd, data, watch);
  }
  /** Watches, in the page, until `sessionId` decodes new video frames (e.g. after another page's command). */
  watchFrames(sessionId: string, watch?: SwitchWatch): Promise<FrameWatch> { return this.call('watchFrames', sessionId, watch); }
  closeSession(sessionId?: string, keepServer = false): Promise<void> { return this.call('closeSession', sessionId, keepServer); }

  /** Saves a PNG of the page under test-browser/screenshots/ and returns its path. */
  async screenshot(name: string): Promise<string> {
    mkdirSync(SCREENSHOT_DIR, { recursive: true });
    const path = join(SCREENSHOT_DIR, `${name.replace(/[^A-Za-z0-9._-]+/g, '_')}.png`);
    await this.page.screenshot({ path, fullPage: true });
    return path;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.page.evaluate(() => window.nk?.disconnect()).catch(() => undefined);
    await this.context.close();
  }
}
