// A media worker: `nkmedia media-server` on loopback, started by a main process (engine/pool/worker-process.ts)
// that gives it its configuration in NKMEDIA_WORKER_CONFIG and learns its URL over IPC. It ends
// when the main process goes (the IPC channel closes) or on SIGTERM, finalising what it holds.
import { startServer } from './main.js';

async function run(): Promise<void> {
  if (!process.send) throw new Error('a media worker is started by nkmedia serve (--workers), not by hand');
  const config = JSON.parse(process.env.NKMEDIA_WORKER_CONFIG ?? '{}') as unknown;
  const server = await startServer(config as Parameters<typeof startServer>[0], undefined, { mode: 'media-server' });
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    void server.close().finally(() => process.exit(0));
  };
  process.on('disconnect', stop);
  process.on('SIGTERM', stop);
  process.on('SIGINT', () => undefined);
  process.send({ type: 'ready', url: `${server.url}kurento` });
}

run().catch((err: unknown) => {
  process.stderr.write(`media worker failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
