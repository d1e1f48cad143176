// Listener and ICE settings: wss with a configured certificate, the ICE UDP port range,
// announced addresses in host candidates.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { CipherContext, NamedCurveAlgorithm, SignatureAlgorithm, HashAlgorithm } from 'werift';
import { startTestServer, connectClient, eventually } from './helpers/server.js';
import { connectParked } from './helpers/flows.js';
import { NkMediaClient, type EventData } from '../src/client/index.js';
import { candidateRewriter } from '../src/engine/local/graph/candidates.js';

describe('wss', () => {
  it('serves the API over TLS with the configured certificate', async () => {
    const { certPem, keyPem } = await CipherContext.createSelfSignedCertificateWithKey(
      { signature: SignatureAlgorithm.ecdsa_3, hash: HashAlgorithm.sha256_4 }, NamedCurveAlgorithm.secp256r1_23);
    const dir = mkdtempSync(join(tmpdir(), 'nkm-tls-'));
    writeFileSync(join(dir, 'cert.pem'), certPem);
    writeFileSync(join(dir, 'key.pem'), keyPem);
    const server = await startTestServer({ tls: { cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') } });
    try {
      assert.match(server.url, /^wss:\/\/127\.0\.0\.1:\d+\/$/);
      // A self-signed certificate (no host name in it): the client trusts exactly this one.
      class TrustingWebSocket extends WebSocket { constructor(url: string) { super(url, { ca: certPem, checkServerIdentity: (() => undefined) as never }); } }
      const client = await NkMediaClient.connect(server.url, { WebSocket: TrustingWebSocket as never });
      assert.ok(await client.login('alice'));
      const { id, peer } = await connectParked(client);
      await client.destroySession(id);
      await peer.close();
      await client.close();
      // Without trusting it, the handshake fails: the certificate really is the one served.
      await assert.rejects(NkMediaClient.connect(server.url), /cannot connect/);
    } finally {
      await server.close();
      rmSync(dir, { recursive: true });
    }
  });
});

describe('ICE settings', () => {
  it('host candidates use ports from the configured range', async () => {
    const server = await startTestServer({ ice: { port_min: 47100, port_max: 47119 } });
    const client = await connectClient(server);
    const events: EventData[] = [];
    client.onEvent((e) => events.push(e));
    try {
      const sessions = [];
      for (let i = 0; i < 3; i++) sessions.push(await connectParked(client));
      const ports = events.filter((e) => e.type === 'candidate').map((e) => Number(String(e.body!.candidate).split(' ')[5]));
      assert.ok(ports.length >= 3);
      for (const p of ports) assert.ok(p >= 47100 && p <= 47119, `port ${p} outside 47100-47119`);
      for (const s of sessions) { await client.destroySession(s.id); await s.peer.close(); }
      await eventually(async () => (await server.engine.counters()).elements === 0, 5000, 'release');
    } finally {
      await client.close();
      await server.close();
    }
  });

  it('announced addresses replace interface addresses in host candidates, loopback stays', () => {
    const rewrite = candidateRewriter(['203.0.113.7', '198.51.100.9']);
    const out = rewrite('candidate:1 1 udp 2130706431 10.0.0.5 40000 typ host generation 0');
    assert.deepEqual(out, [
      'candidate:1 1 udp 2130706431 203.0.113.7 40000 typ host generation 0',
      'candidate:1a1 1 udp 2130706431 198.51.100.9 40000 typ host generation 0',
    ]);
    assert.deepEqual(rewrite('candidate:2 1 udp 2130706431 127.0.0.1 40001 typ host'), ['candidate:2 1 udp 2130706431 127.0.0.1 40001 typ host']);
    assert.deepEqual(rewrite('candidate:3 1 udp 1694498815 1.2.3.4 40002 typ srflx raddr 10.0.0.5 rport 40000'), ['candidate:3 1 udp 1694498815 1.2.3.4 40002 typ srflx raddr 10.0.0.5 rport 40000']);
    assert.deepEqual(candidateRewriter([])('candidate:1 1 udp 1 10.0.0.5 40000 typ host'), ['candidate:1 1 udp 1 10.0.0.5 40000 typ host']);
  });
});
