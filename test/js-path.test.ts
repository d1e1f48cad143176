// The media tests once more with the native forwarding plane switched off
// (NKMEDIA_NATIVE_FORWARD=0): the JS path, which a server without the native addon uses and
// which the plane hands streams back to, must carry echo, bridge, switches and mute by itself.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';

it('test/media.test.ts passes on the JS forwarding path', async () => {
  // Without NODE_TEST_CONTEXT the child is a test run of its own, not a nested one.
  const { NODE_TEST_CONTEXT: _nested, ...env } = process.env;
  const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=tap', 'test/media.test.ts'], {
    env: { ...env, NKMEDIA_NATIVE_FORWARD: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { out += d; });
  const code = await new Promise<number | null>((r) => child.on('close', r));
  assert.equal(code, 0, out.slice(-4000));
  assert.match(out, /# pass [1-9]/);
  assert.match(out, /# fail 0/);
});
