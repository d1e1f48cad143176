// The Kurento door as a process and under load: `nkmedia media-server` from the command line
// over TLS, and the API's frame-size and in-flight limits applied to Kurento clients.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket, type ClientOptions, type RawData } from 'ws';
import { CipherContext, HashAlgorithm, NamedCurveAlgorithm, SignatureAlgorithm } from 'werift';
import { eventually, startTestServer } from './helpers/server.js';
import type { Server } from '../src/main.js';

interface Reply { id: number | null; result?: { value?: unknown; sessionId?: string }; error?: { code: number; message: string } }

/** A bare JSON-RPC client collecting every reply. */
async function openRpc(url: string, opts: ClientOptions = {}): Promise<{ ws: WebSocket; replies: Reply[]; send(frame: string | Buffer): void }> {
  const ws = new WebSocket(url, opts);
  const replies: Reply[] = [];
  ws.on('message', (d: RawData) => replies.push(JSON.parse(String(d)) as Reply));
  ws.on('error', () => undefined);
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  return { ws, replies, send: (frame) => ws.send(frame) };
}

const rpc = (id: number, method: string, params: Record<string, unknown> = {}) => JSON.stringify({ jsonrpc: '2.0', id, method, params });

describe('nkmedia media-server (the command)', () => {
  let dir: string;
  let proc: ChildProcess | undefined;
  let certPem: string;
  let url = '';
  const stderr: string[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'nkm-kms-'));
    const cert = await CipherContext.createSelfSignedCertificateWithKey(
      { signature: SignatureAlgorithm.ecdsa_3, hash: HashAlgorithm.sha256_4 }, NamedCurveAlgorithm.secp256r1_23);
    certPem = cert.certPem;
    writeFileSync(join(dir, 'cert.pem'), cert.certPem);
    writeFileSync(join(dir, 'key.pem'), cert.keyPem);
    const script = "const { main } = await import('./src/cli.ts'); const code = await main(process.argv.slice(1)); if (code >= 0) process.exit(code);";
    proc = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script,
      'media-server', '--port', '0', '--ice-loopback-only', '--log-level', 'warn',
      '--tls-cert', join(dir, 'cert.pem'), '--tls-key', join(dir, 'key.pem')], { cwd: join(import.meta.dirname, '..'), stdio: ['ignore', 'pipe', 'pipe'] });
    proc.stdout!.on('data', (d: Buffer) => {
      const m = /listening on (wss:\/\/\S+)/.exec(d.toString());
      if (m) url = m[1]!;
    });
    proc.stderr!.on('data', (d: Buffer) => stderr.push(d.toString()));
    await eventually(() => url !== '' || proc!.exitCode !== null, 30000, 'the media server to start');
    if (!url) throw new Error(`media-server did not start: ${stderr.join('')}`);
  });

  after(async () => {
    if (proc && proc.exitCode === null) { proc.kill('SIGKILL'); await new Promise((r) => proc!.once('exit', r)); }
    rmSync(dir, { recursive: true, force: true });
  });

  it('prints its wss:// Kurento URL, answers over TLS with the configured certificate, and exits cleanly on SIGTERM', async () => {
    assert.match(url, /^wss:\/\/127\.0\.0\.1:\d+\/kurento$/);
    const c = await openRpc(url, { ca: certPem, checkServerIdentity: (() => undefined) as never });
    c.send(rpc(1, 'ping'));
    c.send(rpc(2, 'create', { type: 'MediaPipeline' }));
    await eventually(() => c.replies.length === 2, 5000, 'two replies');
    assert.deepEqual(c.replies[0]!.result, { value: 'pong' });
    assert.match(String(c.replies[1]!.result?.value), /_kurento\.MediaPipeline$/);
    c.ws.close();
    // Without trusting the certificate the handshake fails: it really is the one served.
    await assert.rejects(openRpc(url));
    // The NkMEDIA API is not served by the media server.
    const api = new WebSocket(url.replace(/kurento$/, ''), { ca: certPem, checkServerIdentity: (() => undefined) as never });
    const status = await new Promise<number>((resolve) => {
      api.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      api.once('open', () => resolve(101));
      api.once('error', () => undefined);
    });
    assert.equal(status, 404);
    proc!.kill('SIGTERM');
    const code = await new Promise<number | null>((r) => proc!.once('exit', (c) => r(c)));
    assert.equal(code, 0, stderr.join(''));
  });
});

describe('Kurento clients meet the API limits', () => {
  let server: Server;
  before(async () => { server = await startTestServer({ limits: { max_frame_bytes: 4096, max_in_flight: 2 } }); });
  after(async () => { await server.close(); });

  it('a frame over max_frame_bytes gets an error reply (-32000) and the connection stays usable', async () => {
    const c = await openRpc(`${server.url}kurento`);
    try {
      c.send(rpc(1, 'create', { type: 'MediaPipeline', constructorParams: { pad: 'x'.repeat(6000) } }));
      await eventually(() => c.replies.length === 1, 5000, 'the refusal');
      assert.equal(c.replies[0]!.error?.code, -32000);
      assert.match(c.replies[0]!.error!.message, /limit of 4096/);
      c.send(rpc(2, 'ping'));
      await eventually(() => c.replies.length === 2, 5000, 'pong');
      assert.deepEqual(c.replies[1]!.result, { value: 'pong' });
      // Twice the limit (at least 16 KiB) closes the socket before it is buffered whole.
      const closed = new Promise<number>((r) => c.ws.once('close', (code) => r(code)));
      c.send(Buffer.alloc(20_000, 0x20));
      assert.equal(await closed, 1009);
    } finally {
      c.ws.terminate();
    }
  });

  it('requests past max_in_flight are refused at once (-32000); the ones admitted complete', async () => {
    const c = await openRpc(`${server.url}kurento`);
    try {
      // getUsedCpu waits its interval before answering: these stay in flight meanwhile.
      for (let i = 1; i <= 6; i++) c.send(rpc(i, 'invoke', { object: 'manager_ServerManager', operation: 'getUsedCpu', operationParams: { interval: 300 } }));
      await eventually(() => c.replies.length === 6, 5000, 'six replies');
      const refused = c.replies.filter((r) => r.error?.code === -32000);
      const answered = c.replies.filter((r) => typeof r.result?.value === 'number');
      assert.equal(answered.length, 2, JSON.stringify(c.replies));
      assert.equal(refused.length, 4);
      assert.match(refused[0]!.error!.message, /in flight \(limit 2\)/);
    } finally {
      c.ws.terminate();
    }
  });
});
