// SIP user agent: two SipUserAgent instances calling each other on 127.0.0.1 over UDP and TCP,
// plus a raw SIP peer (a bare socket speaking through our message layer) for what a UA of ours
// would never send: late offers, missing ACKs, unknown dialogs, broken requests, challenges,
// and a small registrar; raw TCP streams for framing cases; and SIPp (`sipp`, skipped when it is
// not installed) calling the UA and called by it with its built-in uac/uas scenarios.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { once } from 'node:events';
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { SipUserAgent, type IncomingCall, type OutgoingCall, type SipUserAgentOptions } from '../src/sip/index.js';
import {
  parseMessage, serialize, makeResponse, parseAuthParams, parseCSeq, parseVia,
  type SipMessage, type SipRequest, type SipResponse,
} from '../src/sip/message.js';
import { parseNameAddr } from '../src/sip/uri.js';
import { SipInbox } from './helpers/sip-inbox.js';

const T1 = 50;
const HOST = '127.0.0.1';
const OFFER = 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n';
const ANSWER = OFFER.replace('4000', '5000');

const uas: SipUserAgent[] = [];
async function ua(opts: Partial<SipUserAgentOptions> = {}): Promise<SipUserAgent> {
  const u = await SipUserAgent.start({ udp: { host: HOST, port: 0 }, tcp: { host: HOST, port: 0 }, t1Ms: T1, ...opts });
  uas.push(u);
  return u;
}
after(async () => { await Promise.all(uas.map((u) => u.close())); });

function target(u: SipUserAgent, transport: 'udp' | 'tcp', user = 'bob'): string {
  return `sip:${user}@${HOST}:${u.addresses()[transport]!.port}${transport === 'tcp' ? ';transport=tcp' : ''}`;
}

/** Resolves with the args of the first `event`, failing after `ms` so a test cannot hang. */
async function next<T extends unknown[]>(em: { once(e: string, f: (...a: never[]) => void): unknown }, event: string, ms = 5000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      once(em as never, event) as Promise<T>,
      new Promise<never>((_, rej) => { timer = setTimeout(() => rej(new Error(`no '${event}' within ${ms} ms`)), ms); }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

async function eventually(check: () => boolean, what: string, ms = 5000): Promise<void> {
  for (let waited = 0; !check(); waited += 20) {
    if (waited > ms) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

// --- a raw SIP peer over UDP -----------------------------------------------------------------

class RawPeer extends SipInbox {
  private constructor(readonly sock: dgram.Socket, readonly port: number) {
    super();
    sock.on('message', (buf) => {
      let m: SipMessage;
      try { m = parseMessage(buf); } catch { return; }
      this.got(m);
    });
  }
  static async open(): Promise<RawPeer> {
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((r) => sock.bind(0, HOST, () => r()));
    return new RawPeer(sock, sock.address().port);
  }
  send(m: SipMessage | Buffer | string, port: number): void {
    this.sock.send(typeof m === 'string' ? Buffer.from(m) : Buffer.isBuffer(m) ? m : serialize(m), port, HOST);
  }
  /** The first received message matching `pred` (already queued or still to come). */
  next(pred: (m: SipMessage) => boolean, ms = 5000): Promise<SipMessage> {
    return this.waitFor(pred, ms, 'raw peer: no matching message');
  }
  response(callId: string, status?: number): Promise<SipResponse> {
    return this.next((m) => m.kind === 'response' && m.get('Call-ID') === callId && (status === undefined || m.status === status)) as Promise<SipResponse>;
  }
  request(method: string, callId?: string): Promise<SipRequest> {
    return this.next((m) => m.kind === 'request' && m.method === method && (callId === undefined || m.get('Call-ID') === callId)) as Promise<SipRequest>;
  }
  close(): void { this.sock.close(); }
}

interface RawReq {
  callId?: string; fromTag?: string; toTag?: string; cseq?: number; body?: string; contentType?: string;
  extra?: string[]; branch?: string; uri?: string; omit?: string[]; cseqMethod?: string; version?: string;
}
function raw(method: string, peer: RawPeer, uaPort: number, o: RawReq = {}): string {
  const lines = [
    `${method} ${o.uri ?? `sip:bob@${HOST}:${uaPort}`} ${o.version ?? 'SIP/2.0'}`,
    `Via: SIP/2.0/UDP ${HOST}:${peer.port};branch=${o.branch ?? `z9hG4bK${randomBytes(6).toString('hex')}`};rport`,
    'Max-Forwards: 70',
    `From: <sip:raw@${HOST}>;tag=${o.fromTag ?? 'rawtag'}`,
    `To: <sip:bob@${HOST}>${o.toTag ? `;tag=${o.toTag}` : ''}`,
    `Call-ID: ${o.callId ?? randomBytes(6).toString('hex')}`,
    `CSeq: ${o.cseq ?? 1} ${o.cseqMethod ?? method}`,
    `Contact: <sip:raw@${HOST}:${peer.port}>`,
    ...(o.body !== undefined && o.body !== '' ? [`Content-Type: ${o.contentType ?? 'application/sdp'}`] : []),
  ].filter((l) => !(o.omit ?? []).some((h) => l.toLowerCase().startsWith(`${h.toLowerCase()}:`)));
  lines.push(...(o.extra ?? []));
  const body = o.body ?? '';
  return [...lines, `Content-Length: ${Buffer.byteLength(body)}`, '', body].join('\r\n');
}

/** The ACK (or other in-dialog request) a raw UAC sends for a 2xx. */
function rawInDialog(method: string, peer: RawPeer, res: SipResponse, seq: number, body = ''): string {
  const contact = parseNameAddr(res.getAll('Contact')[0]!).uri;
  const lines = [
    `${method} ${contact} SIP/2.0`,
    `Via: SIP/2.0/UDP ${HOST}:${peer.port};branch=z9hG4bK${randomBytes(6).toString('hex')};rport`,
    'Max-Forwards: 70', `From: ${res.get('From')}`, `To: ${res.get('To')}`, `Call-ID: ${res.get('Call-ID')}`,
    `CSeq: ${seq} ${method}`, ...(body ? ['Content-Type: application/sdp'] : []),
  ];
  return [...lines, `Content-Length: ${Buffer.byteLength(body)}`, '', body].join('\r\n');
}

function md5(s: string): string { return createHash('md5').update(s).digest('hex'); }

/** Checks a digest Authorization value independently of src/sip/digest.ts (RFC 2617, MD5). */
function checkDigest(value: string, method: string, username: string, password: string, nonce: string): boolean {
  const { scheme, params: p } = parseAuthParams(value);
  if (scheme !== 'Digest' || p.get('username') !== username || p.get('nonce') !== nonce) return false;
  const ha1 = md5(`${username}:${p.get('realm')}:${password}`);
  const ha2 = md5(`${method}:${p.get('uri')}`);
  const expected = p.get('qop') === 'auth'
    ? md5(`${ha1}:${nonce}:${p.get('nc')}:${p.get('cnonce')}:auth:${ha2}`)
    : md5(`${ha1}:${nonce}:${ha2}`);
  return p.get('response') === expected;
}

// ---------------------------------------------------------------------------------------------

for (const transport of ['udp', 'tcp'] as const) {
  describe(`calls between two user agents over ${transport.toUpperCase()}`, { timeout: 30_000 }, () => {
    it('INVITE / 100 / 180 / 200 / ACK, then BYE from the caller', async () => {
      const [a, b] = [await ua(), await ua()];
      const seen: string[] = [];
      let incoming: IncomingCall | undefined;
      b.onInvite((call) => {
        incoming = call;
        seen.push(`offer:${call.offer === OFFER}`, `from:${call.from.uri}`, `transport:${call.remote.transport}`);
        call.ringing();
        setTimeout(() => void call.accept(ANSWER).then(() => seen.push('acked')), 10);
      });
      const call = a.invite(target(b, transport), OFFER, { from: 'alice', headers: { 'X-Test': 'yes' } });
      const trying = next(call, 'trying');
      const ringing = next<[{ code: number }]>(call, 'ringing');
      const [answer] = await next<[string]>(call, 'answer');
      await trying;
      assert.equal((await ringing)[0].code, 180);
      assert.equal(answer, ANSWER);
      await eventually(() => seen.includes('acked'), 'ACK at the callee');
      assert.deepEqual(seen.slice(0, 3), ['offer:true', `from:sip:alice@${HOST}`, `transport:${transport}`]);
      assert.equal(a.counters().dialogs, 1);
      assert.equal(b.counters().dialogs, 1);
      const byeAtB = next(incoming!, 'bye');
      await call.bye();
      await byeAtB;
      assert.equal(a.counters().dialogs, 0);
      await eventually(() => b.counters().dialogs === 0, 'callee dialog gone');
    });

    it('BYE from the callee reaches the caller', async () => {
      const [a, b] = [await ua(), await ua()];
      let incoming: IncomingCall | undefined;
      b.onInvite((call) => { incoming = call; void call.accept(ANSWER); });
      const call = a.invite(target(b, transport), OFFER);
      await next(call, 'answer');
      await eventually(() => incoming !== undefined && b.counters().dialogs === 1, 'callee call');
      const bye = next(call, 'bye');
      const ended = next<[{ by: string }]>(call, 'ended');
      await new Promise((r) => setTimeout(r, 2 * T1)); // let the ACK land first
      await incoming!.bye();
      await bye;
      assert.equal((await ended)[0].by, 'remote');
      assert.equal(a.counters().dialogs, 0);
      assert.equal(b.counters().dialogs, 0);
    });

    it('CANCEL before the answer: 487 for the INVITE, cancel event at the callee', async () => {
      const [a, b] = [await ua(), await ua()];
      const cancelled = new Promise<void>((r) => b.onInvite((call) => { call.ringing(); call.once('cancel', () => r()); }));
      const call = a.invite(target(b, transport), OFFER);
      await next(call, 'ringing');
      call.cancel();
      const [failed] = await next<[{ code: number }]>(call, 'failed');
      assert.equal(failed.code, 487);
      await cancelled;
      assert.equal(b.counters().dialogs, 0);
      assert.equal(a.counters().dialogs, 0);
    });

    it('reject with 486', async () => {
      const [a, b] = [await ua(), await ua()];
      b.onInvite((call) => call.reject(486));
      const call = a.invite(target(b, transport), OFFER);
      const [failed] = await next<[{ code: number; reason: string }]>(call, 'failed');
      assert.deepEqual(failed, { code: 486, reason: 'Busy Here' });
    });

    it('re-INVITE both ways: hold (sendonly answered recvonly) and resume', async () => {
      const [a, b] = [await ua(), await ua()];
      let incoming: IncomingCall | undefined;
      let acked: Promise<string | undefined> | undefined;
      b.onInvite((call) => {
        incoming = call;
        call.on('reinvite', (sdp, respond) => {
          acked = respond(sdp?.includes('a=sendonly') ? ANSWER.replace('a=sendrecv', 'a=recvonly') : ANSWER);
        });
        void call.accept(ANSWER);
      });
      const call = a.invite(target(b, transport), OFFER);
      await next(call, 'answer');
      await eventually(() => incoming !== undefined, 'incoming call');
      await new Promise((r) => setTimeout(r, 2 * T1));
      const held = await call.reinvite(OFFER.replace('a=sendrecv', 'a=sendonly'));
      assert.match(held, /a=recvonly/);
      // §14.1: no new INVITE either way until the last one is ACKed.
      await acked;
      // The callee resumes: the caller's handler answers.
      call.on('reinvite', (sdp, respond) => { assert.match(sdp!, /a=sendrecv/); void respond(OFFER); });
      const resumed = await incoming!.reinvite(ANSWER);
      assert.equal(resumed, OFFER);
      await call.bye();
    });
  });
}

describe('UAS behaviour toward a raw peer', { timeout: 30_000 }, () => {
  it('late offer: our offer goes in the 200, the answer comes in the ACK', async () => {
    const b = await ua();
    const peer = await RawPeer.open();
    const port = b.addresses().udp!.port;
    let acceptResult: Promise<string | undefined> | undefined;
    const answered = new Promise<string>((r) => b.onInvite((call) => {
      assert.equal(call.offer, undefined);
      call.once('answer', (sdp) => r(sdp));
      acceptResult = call.accept(OFFER);
    }));
    peer.send(raw('INVITE', peer, port, { callId: 'late1' }), port);
    const ok = await peer.response('late1', 200);
    assert.equal(ok.body, OFFER);
    assert.equal(ok.get('Content-Type'), 'application/sdp');
    peer.send(rawInDialog('ACK', peer, ok, 1, ANSWER), port);
    assert.equal(await answered, ANSWER);
    assert.equal(await acceptResult, ANSWER);
    peer.close();
  });

  it('200 retransmitted until the ACK; without ACK: ack-timeout, BYE sent, accept() rejects', async () => {
    const b = await ua();
    const peer = await RawPeer.open();
    const port = b.addresses().udp!.port;
    let accept: Promise<string | undefined> | undefined;
    const timedOut = new Promise<void>((r) => b.onInvite((call) => { call.once('ack-timeout', () => r()); accept = call.accept(ANSWER); }));
    peer.send(raw('INVITE', peer, port, { callId: 'noack', body: OFFER }), port);
    await peer.response('noack', 200);
    await peer.response('noack', 200); // a retransmission
    const bye = await peer.request('BYE', 'noack');
    peer.send(makeResponse(bye, 200), port);
    await timedOut;
    await assert.rejects(accept!, /no ACK/);
    assert.equal(b.counters().dialogs, 0);
    peer.close();
  });

  it('481 for requests in unknown dialogs and CANCEL without a transaction', async () => {
    const b = await ua();
    b.onInvite((call) => call.reject(486));
    const peer = await RawPeer.open();
    const port = b.addresses().udp!.port;
    for (const m of ['BYE', 'INVITE', 'INFO']) {
      peer.send(raw(m, peer, port, { callId: `unknown-${m}`, toTag: 'nosuchtag', body: m === 'INVITE' ? OFFER : '' }), port);
      assert.equal((await peer.response(`unknown-${m}`)).status, 481, m);
    }
    peer.send(raw('BYE', peer, port, { callId: 'no-to-tag' }), port);
    assert.equal((await peer.response('no-to-tag')).status, 481);
    peer.send(raw('CANCEL', peer, port, { callId: 'cancel-nothing' }), port);
    assert.equal((await peer.response('cancel-nothing')).status, 481);
    // An ACK for nothing is absorbed: the next answer we get is the OPTIONS'.
    peer.send(raw('ACK', peer, port, { callId: 'ack-nothing', toTag: 'x' }), port);
    peer.send(raw('OPTIONS', peer, port, { callId: 'after-ack' }), port);
    const next1 = await peer.next((m) => m.kind === 'response');
    assert.equal(next1.get('Call-ID'), 'after-ack');
    peer.close();
  });

  it('OPTIONS, unknown and unsupported methods, broken requests', async () => {
    const b = await ua();
    b.onInvite((call) => call.reject(486));
    const peer = await RawPeer.open();
    const port = b.addresses().udp!.port;
    const ask = async (callId: string, text: string): Promise<SipResponse> => {
      peer.send(text, port);
      return peer.response(callId);
    };
    const opt = await ask('o1', raw('OPTIONS', peer, port, { callId: 'o1' }));
    assert.equal(opt.status, 200);
    assert.match(opt.get('Allow')!, /INVITE.*BYE|BYE.*INVITE/);
    assert.equal(opt.get('Accept'), 'application/sdp');
    assert.ok(parseNameAddrTag(opt.get('To')!));
    // RFC 3581: received and rport are added to our Via in the response.
    const via = parseVia(opt.getAll('Via')[0]!);
    assert.equal(via.params.get('rport'), String(peer.port));
    assert.equal((await ask('m1', raw('FOO', peer, port, { callId: 'm1' }))).status, 501);
    const sub = await ask('m2', raw('SUBSCRIBE', peer, port, { callId: 'm2' }));
    assert.equal(sub.status, 405);
    assert.ok(sub.get('Allow'));
    peer.send(raw('OPTIONS', peer, port, { omit: ['Call-ID'], cseq: 77 }), port);
    const r400 = await peer.next((m) => m.kind === 'response' && m.get('CSeq') === '77 OPTIONS');
    assert.equal(r400.kind === 'response' && r400.status, 400);
    assert.equal(r400.kind === 'response' && r400.reason, 'Missing Call-ID header');
    const mismatch = await ask('m3', raw('OPTIONS', peer, port, { callId: 'm3', cseqMethod: 'INVITE' }));
    assert.equal(mismatch.status, 400);
    assert.match(mismatch.reason, /CSeq/);
    assert.equal((await ask('m4', raw('OPTIONS', peer, port, { callId: 'm4', version: 'SIP/3.0' }))).status, 505);
    assert.equal((await ask('m5', raw('OPTIONS', peer, port, { callId: 'm5', extra: ['Max-Forwards: lots'], omit: ['Max-Forwards'] }))).status, 400);
    assert.equal((await ask('m6', raw('OPTIONS', peer, port, { callId: 'm6', uri: 'tel:+123' }))).status, 416);
    const req420 = await ask('m7', raw('OPTIONS', peer, port, { callId: 'm7', extra: ['Require: 100rel, foo'] }));
    assert.equal(req420.status, 420);
    assert.equal(req420.get('Unsupported'), '100rel, foo');
    const r415 = await ask('m8', raw('INVITE', peer, port, { callId: 'm8', body: 'hello', contentType: 'text/plain' }));
    assert.equal(r415.status, 415);
    assert.equal(r415.get('Accept'), 'application/sdp');
    const clerr = await ask('m9', raw('OPTIONS', peer, port, { callId: 'm9' }).replace('Content-Length: 0', 'Content-Length: 50'));
    assert.equal(clerr.status, 400);
    assert.match(clerr.reason, /Content-Length/);
    // No usable Via: dropped, logged; the next response we see is the following request's.
    peer.send(raw('OPTIONS', peer, port, { callId: 'novia', omit: ['Via'] }), port);
    peer.send(raw('OPTIONS', peer, port, { callId: 'after-novia' }), port);
    const nx = await peer.next((m) => m.kind === 'response');
    assert.equal(nx.get('Call-ID'), 'after-novia');
    peer.close();
  });

  it('merged requests get 482; retransmissions are absorbed by the transaction', async () => {
    const b = await ua();
    const peer = await RawPeer.open();
    const port = b.addresses().udp!.port;
    let calls = 0;
    b.onInvite((call) => { calls++; call.ringing(); });
    const first = raw('INVITE', peer, port, { callId: 'merge', body: OFFER, branch: 'z9hG4bKfirst' });
    peer.send(first, port);
    await peer.response('merge', 180);
    peer.send(first, port); // retransmission: the 180 again, no new call
    await peer.response('merge', 180);
    peer.send(raw('INVITE', peer, port, { callId: 'merge', body: OFFER, branch: 'z9hG4bKsecond' }), port);
    assert.equal((await peer.response('merge', 482)).status, 482);
    assert.equal(calls, 1);
    // CANCEL the first: 200 for the CANCEL, 487 for the INVITE, then our ACK is absorbed.
    peer.send(raw('CANCEL', peer, port, { callId: 'merge', branch: 'z9hG4bKfirst' }), port);
    const [c200, i487] = await Promise.all([
      peer.next((m) => m.kind === 'response' && m.get('CSeq') === '1 CANCEL'),
      peer.response('merge', 487),
    ]);
    assert.equal(c200.kind === 'response' && c200.status, 200);
    peer.send(['ACK sip:bob@x SIP/2.0', `Via: SIP/2.0/UDP ${HOST}:${peer.port};branch=z9hG4bKfirst;rport`, 'Max-Forwards: 70',
      `From: ${i487.get('From')}`, `To: ${i487.get('To')}`, 'Call-ID: merge', 'CSeq: 1 ACK', 'Content-Length: 0', '', ''].join('\r\n'), port);
    await eventually(() => b.counters().dialogs === 0, 'call gone');
    peer.close();
  });
});

function parseNameAddrTag(v: string): string | null | undefined {
  return parseNameAddr(v).params.get('tag');
}

describe('digest authentication toward a challenging UAS', { timeout: 30_000 }, () => {
  it('INVITE challenged with 401 (ACKed, resent once with Authorization) and BYE with 407', async () => {
    const a = await ua({ credentials: (realm) => (realm === 'test.realm' ? { username: 'alice', password: 's3cret' } : undefined) });
    const peer = await RawPeer.open();
    const port = a.addresses().udp!.port;
    const call = a.invite(`sip:bob@${HOST}:${peer.port}`, OFFER);
    const inv1 = await peer.request('INVITE');
    const callId = inv1.get('Call-ID')!;
    const ch = makeResponse(inv1, 401, undefined, 'uastag');
    ch.add('WWW-Authenticate', 'Digest realm="test.realm", nonce="n0nce1", qop="auth", algorithm=MD5');
    peer.send(ch, port);
    const ack = await peer.request('ACK', callId);
    assert.equal(parseVia(ack.getAll('Via')[0]!).branch, parseVia(inv1.getAll('Via')[0]!).branch, 'the 401 ACK is hop-by-hop');
    assert.equal(parseCSeq(ack.get('CSeq')!).seq, parseCSeq(inv1.get('CSeq')!).seq);
    const inv2 = await peer.request('INVITE', callId);
    assert.ok(parseCSeq(inv2.get('CSeq')!).seq > parseCSeq(inv1.get('CSeq')!).seq, 'new CSeq');
    assert.notEqual(parseVia(inv2.getAll('Via')[0]!).branch, parseVia(inv1.getAll('Via')[0]!).branch, 'new transaction');
    assert.equal(inv2.get('From'), inv1.get('From'));
    assert.ok(checkDigest(inv2.get('Authorization')!, 'INVITE', 'alice', 's3cret', 'n0nce1'), inv2.get('Authorization'));
    const ok = makeResponse(inv2, 200, undefined, 'uastag');
    ok.add('Contact', `<sip:bob@${HOST}:${peer.port}>`);
    ok.add('Content-Type', 'application/sdp');
    ok.body = ANSWER;
    peer.send(ok, port);
    assert.equal((await next<[string]>(call, 'answer'))[0], ANSWER);
    const ack2 = await peer.request('ACK', callId);
    assert.equal(parseCSeq(ack2.get('CSeq')!).seq, parseCSeq(inv2.get('CSeq')!).seq);
    const done = call.bye();
    const bye1 = await peer.request('BYE', callId);
    const pch = makeResponse(bye1, 407);
    pch.add('Proxy-Authenticate', 'Digest realm="test.realm", nonce="n0nce2"');
    peer.send(pch, port);
    const bye2 = await peer.request('BYE', callId);
    assert.ok(checkDigest(bye2.get('Proxy-Authorization')!, 'BYE', 'alice', 's3cret', 'n0nce2'));
    peer.send(makeResponse(bye2, 200), port);
    await done;
    peer.close();
  });

  it('retries only once: a second 401 fails the call; no credentials: fails at once', async () => {
    const a = await ua({ credentials: () => ({ username: 'alice', password: 'wrong' }) });
    const peer = await RawPeer.open();
    let invites = 0;
    peer.sock.on('message', (buf, rinfo) => {
      const m = parseMessage(buf);
      if (m.kind !== 'request' || m.method !== 'INVITE') return;
      invites++;
      const ch = makeResponse(m, 401, undefined, 'x');
      ch.add('WWW-Authenticate', `Digest realm="r", nonce="n${invites}"`);
      peer.send(ch, rinfo.port);
    });
    const call = a.invite(`sip:bob@${HOST}:${peer.port}`, OFFER);
    assert.equal((await next<[{ code: number }]>(call, 'failed'))[0].code, 401);
    assert.equal(invites, 2);
    const b = await ua();
    const call2 = b.invite(`sip:bob@${HOST}:${peer.port}`, OFFER);
    assert.equal((await next<[{ code: number }]>(call2, 'failed'))[0].code, 401);
    assert.equal(invites, 3);
    peer.close();
  });
});

describe('REGISTER', { timeout: 30_000 }, () => {
  it('registers with digest, refreshes before expiry, unREGISTERs on close', async () => {
    const peer = await RawPeer.open();
    const bindings: number[] = []; // Expires of each accepted REGISTER
    let challenges = 0;
    peer.sock.on('message', (buf, rinfo) => {
      const m = parseMessage(buf);
      if (m.kind !== 'request' || m.method !== 'REGISTER') return;
      const auth = m.get('Authorization');
      if (!auth || !checkDigest(auth, 'REGISTER', 'reguser', 'regpass', `nonce${challenges}`)) {
        challenges++;
        const ch = makeResponse(m, 401, undefined, 'reg');
        ch.add('WWW-Authenticate', `Digest realm="registrar", nonce="nonce${challenges}", qop="auth"`);
        peer.sock.send(serialize(ch), rinfo.port, rinfo.address);
        return;
      }
      const expires = Number(m.get('Expires'));
      bindings.push(expires);
      const ok = makeResponse(m, 200, undefined, 'reg');
      // Grant 2 s whatever was asked, so a refresh comes soon.
      if (expires > 0) ok.add('Contact', `${m.get('Contact')};expires=2`);
      peer.sock.send(serialize(ok), rinfo.port, rinfo.address);
    });
    const u = await SipUserAgent.start({
      udp: { host: HOST, port: 0 }, t1Ms: T1,
      register: [{ registrar: `sip:${HOST}:${peer.port}`, aor: `sip:reguser@${HOST}`, username: 'reguser', password: 'regpass', expires: 600 }],
    });
    try {
      await eventually(() => u.registrations()[0]!.state === 'registered', 'registered');
      assert.deepEqual(u.registrations(), [{ aor: `sip:reguser@${HOST}`, state: 'registered', expires: 2 }]);
      assert.equal(bindings[0], 600);
      await eventually(() => bindings.length >= 2, 'a refresh', 6000);
    } finally {
      await u.close();
    }
    assert.equal(bindings.at(-1), 0, 'unREGISTER on close');
    assert.ok(challenges >= 3);
    assert.deepEqual(u.counters(), { transactions: 0, dialogs: 0, sockets: 0 });
    peer.close();
  });

  it('reports a failing registrar', async () => {
    const peer = await RawPeer.open();
    peer.sock.on('message', (buf, rinfo) => {
      const m = parseMessage(buf);
      if (m.kind === 'request') peer.sock.send(serialize(makeResponse(m, 403, 'Go Away', 'x')), rinfo.port, rinfo.address);
    });
    const u = await SipUserAgent.start({
      udp: { host: HOST, port: 0 }, t1Ms: T1,
      register: [{ registrar: `sip:${HOST}:${peer.port}`, aor: `sip:x@${HOST}`, username: 'x', password: 'y' }],
    });
    await eventually(() => u.registrations()[0]!.state === 'failed', 'failed');
    assert.equal(u.registrations()[0]!.error, '403 Go Away');
    await u.close();
    peer.close();
  });
});

describe('close()', { timeout: 30_000 }, () => {
  it('hangs up live calls and releases every transaction, dialog, socket and timer', async () => {
    const a = await SipUserAgent.start({ udp: { host: HOST, port: 0 }, tcp: { host: HOST, port: 0 }, t1Ms: T1 });
    const b = await SipUserAgent.start({ udp: { host: HOST, port: 0 }, tcp: { host: HOST, port: 0 }, t1Ms: T1 });
    const incoming: IncomingCall[] = [];
    b.onInvite((call) => { incoming.push(call); if (incoming.length <= 2) void call.accept(ANSWER).catch(() => undefined); else call.ringing(); });
    const calls: OutgoingCall[] = [a.invite(target(b, 'udp'), OFFER), a.invite(target(b, 'tcp'), OFFER)];
    await Promise.all(calls.map((c) => next(c, 'answer')));
    const ringing = a.invite(target(b, 'udp'), OFFER);
    await next(ringing, 'ringing');
    assert.equal(a.counters().dialogs, 3);
    const byes = incoming.slice(0, 2).map((c) => next(c, 'bye'));
    const cancel = next(incoming[2]!, 'cancel');
    await a.close();
    await Promise.all(byes);
    await cancel;
    assert.deepEqual(a.counters(), { transactions: 0, dialogs: 0, sockets: 0 });
    await b.close();
    assert.deepEqual(b.counters(), { transactions: 0, dialogs: 0, sockets: 0 });
    assert.throws(() => a.invite(target(b, 'udp'), OFFER), /closed/);
  });

  it('a call to a closed TCP port fails with 503; to a silent UDP peer with 408', async () => {
    const a = await ua();
    const silent = await RawPeer.open();
    const tcp = a.invite(`sip:x@${HOST}:${silent.port};transport=tcp`, OFFER); // nothing listens on TCP there
    assert.equal((await next<[{ code: number }]>(tcp, 'failed'))[0].code, 503);
    const udp = a.invite(`sip:x@${HOST}:${silent.port}`, OFFER);
    assert.equal((await next<[{ code: number }]>(udp, 'failed', 10_000))[0].code, 408);
    assert.ok(silent.inbox.filter((m) => m.kind === 'request' && m.method === 'INVITE').length > 1, 'Timer A retransmissions');
    silent.close();
  });
});

// --- raw TCP streams ---------------------------------------------------------------------------

/** A raw TCP connection to a UA: writes bytes, collects the SIP messages it gets back. */
async function rawTcp(port: number): Promise<{ sock: net.Socket; got: SipMessage[]; wait(pred: (m: SipMessage) => boolean, what: string): Promise<SipMessage> }> {
  const sock = net.connect(port, HOST);
  sock.setNoDelay(true);
  await once(sock, 'connect');
  const got: SipMessage[] = [];
  let buf = Buffer.alloc(0);
  sock.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      while (buf[0] === 0x0d || buf[0] === 0x0a) buf = buf.subarray(1);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const total = end + 4 + Number(/\r\nContent-Length: (\d+)/i.exec(buf.toString('latin1', 0, end))?.[1] ?? 0);
      if (buf.length < total) return;
      got.push(parseMessage(buf.subarray(0, total)));
      buf = buf.subarray(total);
    }
  });
  const wait = async (pred: (m: SipMessage) => boolean, what: string): Promise<SipMessage> => {
    await eventually(() => got.some(pred), what);
    return got.find(pred)!;
  };
  return { sock, got, wait };
}

function tcpRequest(method: string, port: number, o: { callId: string; branch?: string; toTag?: string; cseq?: number; body?: string; via?: string; cl?: string; extra?: string[] }): string {
  const body = o.body ?? '';
  return [
    `${method} sip:bob@${HOST}:${port};transport=tcp SIP/2.0`,
    o.via ?? `Via: SIP/2.0/TCP ${HOST}:9;branch=${o.branch ?? `z9hG4bK${randomBytes(6).toString('hex')}`};rport`,
    'Max-Forwards: 70', `From: <sip:raw@${HOST}>;tag=rawtag`, `To: <sip:bob@${HOST}>${o.toTag ? `;tag=${o.toTag}` : ''}`,
    `Call-ID: ${o.callId}`, `CSeq: ${o.cseq ?? 1} ${method}`, `Contact: <sip:raw@${HOST}:9;transport=tcp>`,
    ...(body ? ['Content-Type: application/sdp'] : []), ...(o.extra ?? []),
    `${o.cl ?? 'Content-Length: '}${Buffer.byteLength(body)}`, '', body,
  ].join('\r\n');
}

describe('UAS behaviour on TCP streams', { timeout: 30_000 }, () => {
  it('an ACK and a re-INVITE in one read: the ACK confirms the call at once (no 491)', async () => {
    const b = await ua();
    b.onInvite((call) => {
      call.on('reinvite', (_sdp, respond) => { void respond(ANSWER).catch(() => undefined); });
      void call.accept(ANSWER).catch(() => undefined);
    });
    const port = b.addresses().tcp!.port;
    const c = await rawTcp(port);
    c.sock.write(tcpRequest('INVITE', port, { callId: 'same-read', body: OFFER }));
    const ok = await c.wait((m) => m.kind === 'response' && m.status === 200, '200 to the INVITE');
    const toTag = tagOfValue(ok.get('To')!);
    // The 2xx ACK and the re-INVITE leave in one write, so the UA reads them in one chunk.
    c.sock.write(tcpRequest('ACK', port, { callId: 'same-read', toTag, extra: [] }).replace(/Contact: [^\r]*\r\n/, '')
      + tcpRequest('INVITE', port, { callId: 'same-read', toTag, cseq: 2, body: OFFER }));
    const re = await c.wait((m) => m.kind === 'response' && m.get('CSeq') === '2 INVITE' && m.status >= 200, 'final response to the re-INVITE');
    assert.equal(re.kind === 'response' && re.status, 200);
    c.sock.destroy();
  });

  it('frames a folded Content-Length as the parser reads it; answers a broken Via on the connection', async () => {
    const b = await ua();
    const port = b.addresses().tcp!.port;
    const c = await rawTcp(port);
    c.sock.write(tcpRequest('OPTIONS', port, { callId: 'folded', cl: 'Content-Length:\r\n  ' }) + tcpRequest('OPTIONS', port, { callId: 'after-folded' }));
    await c.wait((m) => m.get('Call-ID') === 'after-folded', 'the second OPTIONS answered');
    assert.equal(c.got.find((m) => m.get('Call-ID') === 'folded')?.kind === 'response', true);
    c.sock.write(tcpRequest('OPTIONS', port, { callId: 'badvia', via: 'Via: SIP/2.0/TCP bad host' }));
    const r = await c.wait((m) => m.get('Call-ID') === 'badvia', 'the 400');
    assert.equal(r.kind === 'response' && r.status, 400);
    assert.equal(r.getAll('Via')[0], 'SIP/2.0/TCP bad host');
    c.sock.destroy();
  });
});

function tagOfValue(v: string): string {
  return String(parseNameAddr(v).params.get('tag'));
}

// --- SIPp ------------------------------------------------------------------------------------

const haveSipp = spawnSync('sipp', ['-v']).error === undefined;

/** Runs sipp to completion; resolves with its exit code and output. */
function sipp(args: string[]): { done: Promise<{ code: number | null; out: string }>; kill(): void } {
  const p = spawn('sipp', [...args, '-nostdin', '-timeout', '20', '-timeout_error'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  p.stdout.on('data', (d) => { out += d; });
  p.stderr.on('data', (d) => { out += d; });
  const done = new Promise<{ code: number | null; out: string }>((resolve) => p.on('close', (code) => resolve({ code, out })));
  return { done, kill: () => { if (p.exitCode === null) p.kill(); } };
}

async function freePort(transport: 'udp' | 'tcp'): Promise<number> {
  if (transport === 'tcp') {
    const s = net.createServer();
    await new Promise<void>((r) => s.listen(0, HOST, () => r()));
    const port = (s.address() as net.AddressInfo).port;
    await new Promise((r) => s.close(r));
    return port;
  }
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, HOST, () => r()));
  const port = s.address().port;
  s.close();
  return port;
}

/** The UA calls a SIPp uas on `transport` and hangs up once answered; SIPp must exit 0. */
async function callSipp(a: SipUserAgent, transport: 'udp' | 'tcp'): Promise<void> {
  const port = await freePort(transport);
  // The uas scenario lingers 4 s after the BYE (its timewait) before it exits.
  const run = sipp(['-sn', 'uas', '-i', HOST, '-p', String(port), '-t', transport === 'udp' ? 'u1' : 't1', '-m', '1']);
  try {
    const target = `sip:sipp@${HOST}:${port}${transport === 'tcp' ? ';transport=tcp' : ''}`;
    // SIPp may not listen yet: UDP retransmits the INVITE by itself; TCP is retried on 503.
    let call: OutgoingCall | undefined;
    for (let i = 0; i < 50 && !call; i++) {
      const c = a.invite(target, OFFER);
      const first = await Promise.race([next(c, 'ringing', 10_000).then(() => 'ringing'), next<[{ code: number }]>(c, 'failed', 10_000).then(([f]) => f.code)]);
      if (first === 'ringing') call = c;
      else if (first === 503 && transport === 'tcp') await new Promise((r) => setTimeout(r, 100));
      else assert.fail(`call to SIPp over ${transport} failed with ${first}`);
    }
    assert.ok(call, 'SIPp answered');
    // Generous: SIPp's 200 OK is retransmitted by T1 doubling if a datagram goes missing.
    const [sdp] = await next<[string]>(call, 'answer', 15_000);
    assert.match(sdp, /^m=audio \d+ RTP\/AVP/m);
    await call.bye();
    const { code, out } = await run.done;
    assert.equal(code, 0, `sipp (uas, ${transport}) failed:\n${out.slice(-1500)}`);
  } finally {
    run.kill();
  }
}

describe('SIPp', { skip: haveSipp ? false : 'sipp is not installed', timeout: 60_000 }, () => {
  it("SIPp's uac scenario calls the UA over UDP and TCP: 3 calls each, answered and hung up", async () => {
    const b = await ua();
    let invites = 0;
    let byes = 0;
    b.onInvite((call) => {
      invites++;
      call.ringing();
      call.on('bye', () => { byes++; });
      void call.accept(ANSWER).catch(() => undefined);
    });
    await Promise.all((['udp', 'tcp'] as const).map(async (transport) => {
      const run = sipp(['-sn', 'uac', '-i', HOST, '-t', transport === 'udp' ? 'u1' : 't1', '-m', '3', '-r', '10', '-d', '100',
        '-recv_timeout', '5000', '-s', 'echo', `${HOST}:${b.addresses()[transport]!.port}`]);
      const { code, out } = await run.done;
      assert.equal(code, 0, `sipp (uac, ${transport}) failed:\n${out.slice(-1500)}`);
      assert.match(out, /Successful call\s*\|\s*\d+\s*\|\s*3\b/);
    }));
    assert.equal(invites, 6);
    await eventually(() => byes === 6 && b.counters().dialogs === 0, 'six BYEs, no dialog left');
  });

  it("the UA calls SIPp's uas scenario over UDP and TCP: ringing, answer, BYE", async () => {
    const a = await ua();
    await Promise.all([callSipp(a, 'udp'), callSipp(a, 'tcp')]);
    assert.equal(a.counters().dialogs, 0);
  });
});
