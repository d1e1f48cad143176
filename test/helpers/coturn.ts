// coturn (Debian's TURN server) as a real TURN peer for the tests: started on one address with a
// shared secret (`use-auth-secret`, the TURN REST convention), its files in a folder of its own,
// and ready once it answers a STUN binding request.
import { spawn, spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bind, freeUdpPort } from './rtp-peer.js';

export const haveCoturn = spawnSync('turnserver', ['--version']).error === undefined;

export interface Coturn {
  /** Its UDP URL, `turn:<address>:<port>?transport=udp`. */
  readonly url: string;
  stop(): void;
}

/** Whether a STUN binding request to address:port gets an answer within 200 ms. */
async function answersStun(address: string, port: number): Promise<boolean> {
  const s = await bind(address, 0);
  try {
    const req = Buffer.alloc(20);
    req.writeUInt16BE(0x0001, 0);
    req.writeUInt32BE(0x2112a442, 4);
    randomFillSync(req, 8, 12);
    return await new Promise<boolean>((resolve) => {
      s.once('message', () => resolve(true));
      setTimeout(() => resolve(false), 200);
      s.send(req, port, address);
    });
  } finally {
    s.close();
  }
}

/**
 * coturn listening and relaying on `address` only, knowing `secret`. `loopbackPeers` lets it relay
 * to 127.0.0.1 (it refuses by default).
 */
export async function startCoturn(o: { address: string; secret: string; loopbackPeers?: boolean }): Promise<Coturn> {
  const dir = mkdtempSync(join(tmpdir(), 'nkm-coturn-'));
  const port = await freeUdpPort(o.address);
  const relay = 40000 + Math.floor(Math.random() * 20000);
  let out = '';
  const proc = spawn('turnserver', ['-n', `--listening-ip=${o.address}`, `--relay-ip=${o.address}`, `--listening-port=${port}`,
    `--min-port=${relay}`, `--max-port=${relay + 50}`, '--use-auth-secret', `--static-auth-secret=${o.secret}`, '--realm=nkmedia.test',
    '--no-tls', '--no-dtls', '--no-cli', ...(o.loopbackPeers ? ['--allow-loopback-peers'] : []), '--fingerprint',
    `--pidfile=${join(dir, 'turn.pid')}`, `--userdb=${join(dir, 'turndb')}`, '--log-file=stdout', '--simple-log'], { stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stdout!.on('data', (d) => { out += String(d); });
  proc.stderr!.on('data', (d) => { out += String(d); });
  const stop = () => { proc.kill('SIGKILL'); rmSync(dir, { recursive: true, force: true }); };
  const until = Date.now() + 10000;
  while (!(await answersStun(o.address, port))) {
    if (Date.now() > until || proc.exitCode !== null) {
      stop();
      throw new Error(`coturn did not answer STUN on ${o.address}:${port}: ${out.slice(-2000)}`);
    }
  }
  return { url: `turn:${o.address}:${port}?transport=udp`, stop };
}
