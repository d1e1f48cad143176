// What one server process holds: descriptors and memory per logged-in connection, per parked
// WebRTC session (server's offer, not connected) and per SIP dialog (INVITE + ACK to `park`),
// the caps the server derived from its descriptor limit, and how many parked sessions it takes
// before refusing (too_many_sessions). The server runs in its own process (npm run build first).
//   node --import tsx bench/capacity.ts   [CONNS=500 SESSIONS=1000 DIALOGS=200]
import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnServer, rssOf, fmt } from './lib.js';
import { NkMediaClient, NkMediaError } from '../src/client/index.js';

const CONNS = Number(process.env.CONNS ?? 500);
const SESSIONS = Number(process.env.SESSIONS ?? 1000);
const DIALOGS = Number(process.env.DIALOGS ?? 200);

const fds = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;
const settle = () => new Promise((r) => setTimeout(r, 1500));

const dir = mkdtempSync(join(tmpdir(), 'nkm-capacity-'));
const config = join(dir, 'config.json');
const sipPort = 20000 + Math.floor(Math.random() * 20000);
writeFileSync(config, JSON.stringify({ sip: { udp_port: sipPort, max_dialogs: 100000, max_dialogs_per_address: 100000 }, limits: { max_connections_per_address: 100000, max_connections_per_user: 100000, max_sessions_per_user: 1_000_000, max_sessions_per_connection: 100000 } }));
const server = await spawnServer(['--config', config]);
const pid = server.pid;
const limitsOf = () => /Max open files\s+(\d+)/.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'))?.[1];

function measure(label: string, n: number, before: { fds: number; rss: number }): void {
  const f = fds(pid);
  const r = rssOf(pid);
  console.log(`${label}: ${fmt((f - before.fds) / n, 2)} descriptors and ${fmt((r - before.rss) / n / 1024)} KiB each (${n})`);
}

const base = { fds: fds(pid), rss: rssOf(pid) };
console.log(`server pid ${pid}: ${base.fds} descriptors, ${fmt(base.rss / 1048576)} MiB at start; descriptor limit ${limitsOf() ?? '?'}`);

// Connections.
const conns: NkMediaClient[] = [];
for (let i = 0; i < CONNS; i++) {
  const c = await NkMediaClient.connect(server.url);
  await c.login(`user${i % 50}`);
  conns.push(c);
}
await settle();
measure('logged-in connection', CONNS, base);

// Parked WebRTC sessions.
const b2 = { fds: fds(pid), rss: rssOf(pid) };
const owner = conns[0]!;
for (let i = 0; i < SESSIONS; i++) await owner.createSession({ type: 'park', wait_reply: true });
await settle();
measure('parked WebRTC session (loopback only)', SESSIONS, b2);

// SIP dialogs.
const b3 = { fds: fds(pid), rss: rssOf(pid) };
const sock = dgram.createSocket('udp4');
await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
const me = sock.address().port;
let answered = 0;
sock.on('message', (buf) => {
  const text = buf.toString();
  if (!text.startsWith('SIP/2.0 200')) return;
  answered++;
  const get = (h: string) => new RegExp(`\\r\\n${h}: *([^\\r]+)`, 'i').exec(text)?.[1] ?? '';
  const contact = /<([^>]+)>/.exec(get('Contact'))?.[1] ?? '';
  sock.send(Buffer.from([`ACK ${contact} SIP/2.0`, `Via: SIP/2.0/UDP 127.0.0.1:${me};branch=z9hG4bK${randomBytes(6).toString('hex')};rport`,
    'Max-Forwards: 70', `From: ${get('From')}`, `To: ${get('To')}`, `Call-ID: ${get('Call-ID')}`, 'CSeq: 1 ACK', 'Content-Length: 0', '', ''].join('\r\n')), sipPort, '127.0.0.1');
});
const sdp = 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n';
for (let i = 0; i < DIALOGS; i++) {
  const id = randomBytes(6).toString('hex');
  sock.send(Buffer.from([`INVITE sip:park@127.0.0.1:${sipPort} SIP/2.0`, `Via: SIP/2.0/UDP 127.0.0.1:${me};branch=z9hG4bK${id};rport`,
    'Max-Forwards: 70', `From: <sip:b@127.0.0.1>;tag=${id}`, 'To: <sip:park@127.0.0.1>', `Call-ID: ${id}`, 'CSeq: 1 INVITE',
    `Contact: <sip:b@127.0.0.1:${me}>`, 'Content-Type: application/sdp', `Content-Length: ${sdp.length}`, '', sdp].join('\r\n')), sipPort, '127.0.0.1');
  if (i % 50 === 49) await new Promise((r) => setTimeout(r, 200));
}
for (let t = 0; answered < DIALOGS && t < 100; t++) await new Promise((r) => setTimeout(r, 100));
await settle();
measure(`SIP dialog (audio-only plain RTP, ${answered} answered)`, answered, b3);

// To the first refusal.
let made = 0;
let refusal = '';
const t0 = performance.now();
for (;;) {
  try {
    await conns[1 + (made % (conns.length - 1))]!.createSession({ type: 'park', wait_reply: true });
    made++;
  } catch (err) {
    refusal = err instanceof NkMediaError ? `${err.code} ${err.message}` : String(err);
    break;
  }
}
const total = SESSIONS + answered + made;
console.log(`refused after ${made} more parked sessions (${total} sessions in all, ${fds(pid)} descriptors, ${fmt(rssOf(pid) / 1048576)} MiB, ${fmt((performance.now() - t0) / 1000)} s): ${refusal}`);
const alive = await NkMediaClient.connect(server.url).then(async (c) => { await c.login('probe'); await c.close(); return true; }, () => false);
console.log(`server still serving logins: ${alive}`);
sock.close();
await Promise.all(conns.map((c) => c.close()));
await server.stop();
