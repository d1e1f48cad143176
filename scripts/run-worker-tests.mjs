// The media suites again with media on two worker processes (npm run test:workers): every test
// server of these files starts `media.workers: 2` (test/helpers/server.ts reads
// NKMEDIA_TEST_WORKERS), so sessions, rooms, calls, plain RTP, play and record, and the Kurento
// door all go through the pool engine, the Kurento protocol and the workers' engines. Suites that
// look inside the in-process engine (its sockets, werift callbacks, child processes) are not here.
import { spawnSync } from 'node:child_process';

const SUITES = [
  'park', 'media', 'bad-input', 'calls', 'call-switch', 'rooms', 'simulcast', 'rtp-sessions',
  'play-record-api', 'lifecycle', 'leaks', 'hardening-api', 'framing', 'auth', 'transport',
  'kurento-protocol', 'kurento-door', 'sip-ua', 'sip-baresip', 'recording-crash',
].map((s) => `/${s}.test.ts`);

const r = spawnSync(process.execPath, [new URL('./run-tests.mjs', import.meta.url).pathname, 'test', ...SUITES], {
  stdio: 'inherit',
  env: { ...process.env, NKMEDIA_TEST_WORKERS: process.env.NKMEDIA_TEST_WORKERS ?? '2' },
});
process.exit(r.status ?? 1);
