// The descriptor limit (issue #13): the server, run as `nkmedia serve` under a low limit
// (prlimit), derives its caps from it, so floods of sessions, silent TCP connections and SIP
// INVITEs meet clear refusals (too_many_sessions, HTTP 503, SIP 503) and never EMFILE: the
// process lives, and serves again once the flood is gone.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { NkMediaClient, NkMediaError } from '../src/client/index.js';
import { eventually } from './helpers/server.js';

const LIMIT = 400;
const hasPrlimit = spawnSync('prlimit', ['--version']).status === 0;

interface Child { proc: ChildProcess; url: string; sipPort: number; logs: Record<string, any>[]; stderr: string[] }

async function spawnLimited(configPath: string): Promise<Child> {
  const script = "const { main } = await import('./src/cli.ts'); const code = await main(process.argv.slice(1)); if (code >= 0) process.exit(code);";
  const proc = spawn('prlimit', [`--nofile=${LIMIT}:${LIMIT}`, process.execPath, '--import', 'tsx', '--input-type=module', '-e', script,
    'serve', '--config', configPath, '--port', '0', '--ice-loopback-only'], { cwd: join(import.meta.dirname, '..'), stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: Record<string, any>[] = [];
  const stderr: string[] = [];
  let url = '';
  let buf = '';
  proc.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      const m = /listening on (\S+)/.exec(line);
      if (m && !line.startsWith('{')) url = m[1]!;
      try { logs.push(JSON.parse(line)); } catch { /* not a log line */ }
    }
  });
  proc.stderr!.on('data', (d: Buffer) => stderr.push(d.toString()));
  await eventually(() => url !== '' || proc.exitCode !== null, 30000, 'the server to start');
  if (!url) throw new Error(`server did not start: ${stderr.join('')}`);
  // The JSON logs may reach the pipe after the CLI's own line: wait for the SIP one too.
  const sip = await eventually(() => logs.find((l) => l.msg === 'SIP listening') ?? (proc.exitCode !== null ? {} : undefined), 10000, 'the SIP listening log');
  return { proc, url, sipPort: sip?.sip?.udp?.port ?? 0, logs, stderr };
}

async function codeOf(p: Promise<unknown>): Promise<number> {
  try { await p; return 0; } catch (err) { if (err instanceof NkMediaError) return err.code; throw err; }
}

describe(`a server with ${LIMIT} descriptors`, { skip: !hasPrlimit && 'prlimit (util-linux) is not installed' }, () => {
  let dir: string;
  let child: Child;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'nkm-fds-'));
    const config = join(dir, 'config.json');
    // Media in this process: the caps it derives are what is tested (workers' are lifted).
    writeFileSync(config, JSON.stringify({ log_level: 'info', media: { workers: 0 }, sip: { udp_port: 0, host: '127.0.0.1', t1_ms: 100 }, recordings_dir: join(dir, 'rec'), play_dirs: [dir] }));
    child = await spawnLimited(config);
  });
  after(async () => {
    child.proc.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  const alive = () => {
    assert.equal(child.proc.exitCode, null, `the server exited: ${child.stderr.join('')}`);
    assert.ok(!child.logs.some((l) => /uncaught|unhandled/.test(String(l.msg))), 'nothing reached the backstop');
  };

  it('derives its caps from the limit and says so', () => {
    const l = child.logs.find((x) => x.msg === 'limits');
    assert.ok(l, 'a limits log line');
    assert.equal(l.descriptors, LIMIT);
    assert.equal(l.max_connections, 100);
    // 400 - 50 reserved - 100 connections = 250 for sessions.
    assert.equal(l.session_descriptors, 250);
    console.log(`# caps at ${LIMIT} descriptors: ${JSON.stringify(l)}`);
  });

  it('a flood of parked WebRTC sessions ends in too_many_sessions, not EMFILE; they come back when freed', async () => {
    const clients = await Promise.all([1, 2, 3, 4, 5].map(async () => {
      const c = await NkMediaClient.connect(child.url);
      await c.login('flooder');
      return c;
    }));
    const ids: { c: NkMediaClient; id: string }[] = [];
    let refusal = 0;
    for (let i = 0; refusal === 0 && i < 1000; i++) {
      const c = clients[i % clients.length]!;
      try {
        const r = await c.createSession({ type: 'park', wait_reply: true });
        assert.ok(r.offer);
        ids.push({ c, id: r.session_id });
      } catch (err) {
        assert.ok(err instanceof NkMediaError);
        refusal = err.code;
      }
    }
    console.log(`# ${ids.length} parked WebRTC sessions (loopback only: 1 UDP socket each) before the first refusal`);
    assert.equal(refusal, 100050, 'too_many_sessions');
    alive();
    const other = await NkMediaClient.connect(child.url);
    await other.login('other');
    assert.equal(await codeOf(other.createSession({ type: 'park', wait_reply: true })), 100050);
    for (const { c, id } of ids.slice(0, 10)) await c.destroySession(id);
    const r = await other.createSession({ type: 'park', wait_reply: true });
    assert.ok(r.offer?.sdp.includes('a=ice-ufrag'));
    await Promise.all([...clients, other].map((c) => c.close()));
    await eventually(async () => {
      const h = await fetch(child.url.replace(/^ws/, 'http') + 'health').then((x) => x.json() as Promise<{ sessions: number }>);
      return h.sessions === 0;
    }, 10000, 'every session gone');
  });

  it('silent TCP connections meet the connection cap (503), then are dropped; the server serves again', async () => {
    const port = Number(new URL(child.url).port);
    const socks: net.Socket[] = [];
    let refused = 0;
    for (let i = 0; i < 150; i++) {
      const s = net.connect(port, '127.0.0.1');
      s.on('error', () => undefined);
      let got = '';
      s.on('data', (d) => { got += d.toString(); if (got.startsWith('HTTP/1.1 503')) refused++; });
      socks.push(s);
    }
    await eventually(() => refused >= 40, 10000, 'refusals past the cap');
    alive();
    console.log(`# ${150 - refused} silent connections held, ${refused} refused with 503`);
    // Silent sockets are closed after the login timeout (10 s); then a client gets in.
    await eventually(() => socks.filter((s) => !s.destroyed).length === 0, 20000, 'silent connections closed by the server');
    const c = await NkMediaClient.connect(child.url);
    await c.login('after');
    await c.close();
  });

  it('a flood of SIP INVITEs gets 503 + Retry-After when the sessions run out; the server lives', async () => {
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    const me = sock.address().port;
    const finals = new Map<string, number>();
    const retryAfter: string[] = [];
    sock.on('message', (buf) => {
      const text = buf.toString();
      const status = /^SIP\/2\.0 (\d{3})/.exec(text)?.[1];
      const callId = /\r\nCall-ID: *(\S+)/i.exec(text)?.[1] ?? '';
      if (status && Number(status) >= 200) {
        finals.set(callId, Number(status));
        const ra = /\r\nRetry-After: *(\d+)/i.exec(text)?.[1];
        if (ra) retryAfter.push(ra);
      }
    });
    const sdp = 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n';
    const N = 120; // 4 descriptors per plain-RTP session: more than the 250 left for sessions
    for (let i = 0; i < N; i++) {
      const callId = randomBytes(6).toString('hex');
      sock.send(Buffer.from([
        `INVITE sip:park@127.0.0.1:${child.sipPort} SIP/2.0`, `Via: SIP/2.0/UDP 127.0.0.1:${me};branch=z9hG4bK${callId};rport`,
        'Max-Forwards: 70', `From: <sip:flood@127.0.0.1>;tag=${callId}`, 'To: <sip:park@127.0.0.1>', `Call-ID: ${callId}`,
        'CSeq: 1 INVITE', `Contact: <sip:flood@127.0.0.1:${me}>`, 'Content-Type: application/sdp', `Content-Length: ${sdp.length}`, '', sdp,
      ].join('\r\n')), child.sipPort, '127.0.0.1');
    }
    await eventually(() => finals.size === N, 20000, 'a final response to every INVITE');
    const codes = [...finals.values()];
    const ok = codes.filter((c) => c === 200).length;
    const busy = codes.filter((c) => c === 503).length;
    console.log(`# SIP flood: ${ok} answered, ${busy} refused with 503`);
    assert.equal(ok + busy, N, `only 200 or 503: ${codes}`);
    assert.ok(busy > 0 && ok > 0);
    assert.ok(retryAfter.length >= busy);
    alive();
    sock.close();
  });
});
