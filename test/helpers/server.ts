// Test servers: a real server on a free loopback port, loopback-only ICE, silent logs.
import { startServer, type Server } from '../../src/main.js';
import type { ConfigInput } from '../../src/config.js';
import { NkMediaClient } from '../../src/client/index.js';

/**
 * NKMEDIA_TEST_WORKERS=N runs every test server's media in N worker processes (npm run test:workers);
 * otherwise media is in the test process (not the server's default, `auto`), unless a test asks.
 */
const testWorkers = process.env.NKMEDIA_TEST_WORKERS ? Number(process.env.NKMEDIA_TEST_WORKERS) : undefined;

export async function startTestServer(overrides: ConfigInput = {}): Promise<Server> {
  return startServer({
    port: 0,
    log_level: (process.env.NKMEDIA_TEST_LOG as ConfigInput['log_level']) ?? 'silent',
    ...overrides,
    media: { workers: testWorkers ?? 0, ...(overrides.media ?? {}) },
    ice: { use_interfaces: false, include_loopback: true, ...(overrides.ice ?? {}) },
  });
}

export async function connectClient(server: Server, user = 'alice', creds: { password?: string; token?: string } = {}): Promise<NkMediaClient> {
  const c = await NkMediaClient.connect(server.url);
  await c.login(user, creds);
  return c;
}

/** Polls until `check` returns a truthy value (or fails after `ms`). */
export async function eventually<T>(check: () => T | Promise<T>, ms = 5000, what = "condition"): Promise<NonNullable<T>> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v as NonNullable<T>;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
