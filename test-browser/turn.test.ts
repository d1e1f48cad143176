// Chromium reaching the server only through a TURN relay: coturn, started here on the test
// namespace's address with a secret it shares with the server, and a page restricted to relayed
// candidates (`iceTransportPolicy: "relay"`) with the credentials of its login reply. An echo
// session connects through the relay and the page decodes its own video.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBrowserSuite, eventually, NETNS_ADDR, type BrowserSuite } from './harness.js';

const haveCoturn = spawnSync('turnserver', ['--version']).error === undefined;
const SECRET = 'browser-suite-turn-secret-0123456';

let suite: BrowserSuite | undefined;
let coturn: ChildProcess | undefined;
let dir = '';
let turnPort = 0;

async function freeUdpPort(address: string): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((resolve, reject) => { s.once('error', reject); s.bind(0, address, () => resolve()); });
  const port = s.address().port;
  s.close();
  return port;
}

/** Whether coturn answers a STUN binding request on its port. */
async function answersStun(address: string, port: number): Promise<boolean> {
  const s = createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, address, () => resolve()));
  try {
    const req = Buffer.alloc(20);
    req.writeUInt16BE(0x0001, 0);
    req.writeUInt32BE(0x2112a442, 4);
    req.writeUInt32BE(Math.floor(Math.random() * 2 ** 32), 8);
    return await new Promise<boolean>((resolve) => {
      s.once('message', () => resolve(true));
      setTimeout(() => resolve(false), 200);
      s.send(req, port, address);
    });
  } finally {
    s.close();
  }
}

before(async () => {
  if (!haveCoturn) return;
  dir = mkdtempSync(join(tmpdir(), 'nkm-turn-browser-'));
  turnPort = await freeUdpPort(NETNS_ADDR);
  const relay = 40000 + Math.floor(Math.random() * 20000);
  let out = '';
  coturn = spawn('turnserver', ['-n', `--listening-ip=${NETNS_ADDR}`, `--relay-ip=${NETNS_ADDR}`, `--listening-port=${turnPort}`,
    `--min-port=${relay}`, `--max-port=${relay + 50}`, '--use-auth-secret', `--static-auth-secret=${SECRET}`, '--realm=nkmedia.test',
    '--no-tls', '--no-dtls', '--no-cli', '--fingerprint', `--pidfile=${join(dir, 'turn.pid')}`, `--userdb=${join(dir, 'turndb')}`,
    '--log-file=stdout', '--simple-log'], { stdio: ['ignore', 'pipe', 'pipe'] });
  coturn.stdout!.on('data', (d) => { out += String(d); });
  coturn.stderr!.on('data', (d) => { out += String(d); });
  await eventually(() => answersStun(NETNS_ADDR, turnPort), 10000, 'coturn answering STUN')
    .catch((err: Error) => { throw new Error(`${err.message}: ${out.slice(-2000)}`); });
  suite = await startBrowserSuite({ server: { ice: { client_turn: [{ urls: `turn:${NETNS_ADDR}:${turnPort}?transport=udp`, secret: SECRET }] } } });
});

after(async () => {
  await suite?.close();
  coturn?.kill('SIGKILL');
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('TURN relay with credentials from the server', { skip: haveCoturn ? false : 'coturn (turnserver) is not installed', timeout: 60000 }, () => {
  it('a relay-only page echoes through coturn and decodes its own video', async () => {
    const page = await suite!.openPage('relay-echo');
    await page.connect('alice');
    const id = await page.startSession({ type: 'echo', relayOnly: true });
    await page.waitConnected(id);
    const st = await eventually(async () => {
      const s = await page.stats(id);
      return s.inbound.video.framesDecoded > 20 && s.inbound.audio.packets > 20 ? s : undefined;
    }, 15000, 'the page decoding its own video through the relay');
    assert.equal(st.selectedPair?.localType, 'relay', `the pair in use is relayed: ${JSON.stringify(st.selectedPair)}`);
    assert.equal(st.selectedPair?.local.split(':')[0], NETNS_ADDR, 'the relay is coturn\'s, on the namespace address');
    await page.screenshot('turn-relay-echo');
  });
});
