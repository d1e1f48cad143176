// SIP side of issue #13: dialogs of SIP phones belong to a system principal no login can claim
// (a user called "sip" sees and touches nothing), an incoming SIP call rings a user whose
// unanswered leg cannot be wired to the phone, and a flood of INVITEs meets per-address and
// global dialog caps (503 with Retry-After) while other phones still get through.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { startTestServer, connectClient, eventually } from './helpers/server.js';
import { parseMessage, type SipMessage, type SipResponse } from '../src/sip/message.js';
import { parseNameAddr } from '../src/sip/uri.js';
import { NkMediaError, type CallInvite } from '../src/client/index.js';
import type { Server } from '../src/main.js';

const OFFER = 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n';

async function codeOf(p: Promise<unknown>): Promise<number> {
  try { await p; return 0; } catch (err) { if (err instanceof NkMediaError) return err.code; throw err; }
}

/** A bare SIP phone on one local address: sends INVITEs, ACKs 2xx, hangs up with BYE. */
class Phone {
  private readonly responses: SipResponse[] = [];
  private constructor(private readonly sock: dgram.Socket, readonly host: string, readonly port: number, private readonly serverPort: number) {
    sock.on('message', (buf) => {
      let m: SipMessage;
      try { m = parseMessage(buf); } catch { return; }
      if (m.kind === 'response') this.responses.push(m);
    });
  }

  static async open(host: string, serverPort: number): Promise<Phone> {
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((r) => sock.bind(0, host, () => r()));
    return new Phone(sock, host, sock.address().port, serverPort);
  }

  private send(text: string): void { this.sock.send(Buffer.from(text), this.serverPort, '127.0.0.1'); }

  /** INVITEs `user` and resolves with the final response (a 2xx is ACKed). */
  async invite(user: string): Promise<SipResponse> {
    const callId = randomBytes(8).toString('hex');
    const lines = [
      `INVITE sip:${user}@127.0.0.1:${this.serverPort} SIP/2.0`,
      `Via: SIP/2.0/UDP ${this.host}:${this.port};branch=z9hG4bK${randomBytes(6).toString('hex')};rport`,
      'Max-Forwards: 70', `From: <sip:phone@${this.host}>;tag=${randomBytes(4).toString('hex')}`, `To: <sip:${user}@127.0.0.1>`,
      `Call-ID: ${callId}`, 'CSeq: 1 INVITE', `Contact: <sip:phone@${this.host}:${this.port}>`, 'Content-Type: application/sdp',
    ];
    this.send([...lines, `Content-Length: ${Buffer.byteLength(OFFER)}`, '', OFFER].join('\r\n'));
    const res = await eventually(() => this.responses.find((r) => r.get('Call-ID') === callId && r.status >= 200), 10000, `final response to ${callId}`);
    if (res.status < 300) this.inDialog('ACK', res, 1);
    return res;
  }

  inDialog(method: 'ACK' | 'BYE', res: SipResponse, seq: number): void {
    const contact = parseNameAddr(res.getAll('Contact')[0]!).uri;
    this.send([
      `${method} ${contact} SIP/2.0`, `Via: SIP/2.0/UDP ${this.host}:${this.port};branch=z9hG4bK${randomBytes(6).toString('hex')};rport`,
      'Max-Forwards: 70', `From: ${res.get('From')}`, `To: ${res.get('To')}`, `Call-ID: ${res.get('Call-ID')}`,
      `CSeq: ${seq} ${method}`, 'Content-Length: 0', '', '',
    ].join('\r\n'));
  }

  close(): void { this.sock.close(); }
}

describe('SIP dialogs and calls', () => {
  let server: Server;
  let sipPort: number;
  const phones: Phone[] = [];
  before(async () => {
    server = await startTestServer({ sip: { udp_port: 0, t1_ms: 100, max_dialogs: 5, max_dialogs_per_address: 3 } });
    sipPort = server.sip!.addresses().udp!.port;
  });
  after(async () => {
    for (const p of phones) p.close();
    await server.close();
  });
  const phone = async (host = '127.0.0.1') => { const p = await Phone.open(host, sipPort); phones.push(p); return p; };

  it('a login named "sip" sees and touches no SIP dialog; admins see it as user sip', async () => {
    const p = await phone();
    const ok = await p.invite('park');
    assert.equal(ok.status, 200);
    const admin = await connectClient(server, 'admin');
    const listed = await admin.listSessions();
    assert.equal(listed.length, 1);
    assert.equal(listed[0]!.user_id, 'sip');
    const id = listed[0]!.session_id;
    const sip = await connectClient(server, 'sip');
    assert.deepEqual(await sip.listSessions(), []);
    assert.equal(await codeOf(sip.getInfo(id)), 100062);
    assert.equal(await codeOf(sip.session('recorder_action', { session_id: id, action: 'start' })), 100062);
    assert.equal(await codeOf(sip.setType(id, 'echo')), 100062);
    await sip.destroySession(id); // not an error, and no effect
    assert.equal((await admin.getInfo(id)).type, 'park');
    p.inDialog('BYE', ok, 2);
    await eventually(() => server.services.sessions.size === 0);
    await Promise.all([admin.close(), sip.close()]);
  });

  it('a phone calling a user: the rung leg cannot be bridged to the phone before it is accepted', async () => {
    const bob = await connectClient(server, 'bob');
    const invites: CallInvite[] = [];
    bob.onInvite((inv) => { invites.push(inv); return {}; });
    const p = await phone();
    const final = p.invite('bob');
    const invite = await eventually(() => invites[0]);
    const call = await bob.getCallInfo(invite.call_id);
    assert.equal(call.user_id, 'sip');
    assert.equal(await codeOf(bob.setType(invite.session_id, 'bridge', { peer_id: call.session_id })), 100040);
    await bob.rejectCall(invite.call_id);
    assert.equal((await final).status, 603);
    await bob.close();
    await eventually(() => server.services.sessions.size === 0);
  });

  it('past the per-address and global dialog caps INVITEs get 503 with Retry-After; other phones go on', async () => {
    const a = await phone('127.0.0.1');
    const b = await phone('127.0.0.2');
    const answered: { phone: Phone; res: SipResponse }[] = [];
    for (let i = 0; i < 3; i++) answered.push({ phone: a, res: await a.invite('park') });
    assert.ok(answered.every((x) => x.res.status === 200));
    const refused = await a.invite('park');
    assert.equal(refused.status, 503);
    assert.equal(refused.get('Retry-After'), '30');
    // Another address still gets in, up to the server's 5.
    for (let i = 0; i < 2; i++) {
      const r = await b.invite('park');
      assert.equal(r.status, 200);
      answered.push({ phone: b, res: r });
    }
    assert.equal((await b.invite('park')).status, 503, 'the global cap');
    assert.equal(server.services.sessions.size, 5);
    // A dialog ends: room again.
    const first = answered.shift()!;
    first.phone.inDialog('BYE', first.res, 2);
    await eventually(() => server.services.sessions.size === 4);
    const again = await b.invite('park');
    assert.equal(again.status, 200);
    answered.push({ phone: b, res: again });
    for (const x of answered) x.phone.inDialog('BYE', x.res, 2);
    await eventually(() => server.services.sessions.size === 0);
  });
});
