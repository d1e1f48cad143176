// SIP message layer: parser and serializer (cases in the style of RFC 4475's torture tests),
// URI and name-addr parsing, Via/CSeq views, and digest against the RFCs' worked examples.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  parseMessage, serialize, parseVia, parseCSeq, parseUint, SipParseError, HeaderError, SipRequest,
  SipResponse, makeResponse, parseAuthParams, type SipMessage,
} from '../src/sip/message.js';
import { parseUri, parseNameAddr, formatUri, unescape, SipUriError } from '../src/sip/uri.js';
import { digestResponse, parseChallenge, pickChallenge, authorization } from '../src/sip/digest.js';

/** Builds a message from lines joined by CRLF, with a body and its real Content-Length. */
function msg(lines: string[], body = '', cl: number | string = Buffer.byteLength(body)): Buffer {
  return Buffer.from([...lines, `Content-Length: ${cl}`, '', body].join('\r\n'));
}

function req(m: SipMessage): SipRequest {
  assert.equal(m.kind, 'request');
  return m as SipRequest;
}

describe('SIP parser: valid messages', () => {
  it('a short tortuous INVITE (RFC 4475 3.1.1.1 style): folding, odd case, compact forms, LWS', () => {
    const body = 'v=0\r\no=mhandley 29739 7272939 IN IP4 192.0.2.3\r\ns=-\r\nc=IN IP4 192.0.2.4\r\nt=0 0\r\nm=audio 49217 RTP/AVP 0 12\r\n';
    const text = [
      'INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0',
      'TO :',
      ' sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n',
      'from   : "J Rosenberg \\\\\\""       <sip:jdrosen@example.com>',
      '  ;',
      '  tag = 98asjd8',
      'MaX-fOrWaRdS: 0068',
      'Call-ID: wsinv.ndaksdj@192.0.2.1',
      `Content-Length   : ${Buffer.byteLength(body)}`,
      'cseq: 0009',
      '  INVITE',
      'Via  : SIP  /   2.0',
      ' /UDP',
      '    192.0.2.2;branch=390skdjuw',
      's :',
      'NewFangledHeader:   newfangled value',
      ' continued newfangled value',
      'UnknownHeaderWithUnusualValue: ;;,,;;,;',
      'Content-Type: application/sdp',
      'Route:',
      ' <sip:services.example.com;lr;unknownwith=value;unknown-no-value>',
      'v:  SIP  / 2.0  / TCP     spindle.example.com   ;',
      '  branch  =   z9hG4bK9ikj8  ,',
      ' SIP  /    2.0   / UDP  192.168.255.111   ; branch=',
      ' z9hG4bK30239',
      'm:"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam =',
      '      newvalue ;',
      '  secondparam ; q = 0.33',
      '',
      body,
    ].join('\r\n');
    const m = req(parseMessage(Buffer.from(text)));
    assert.equal(m.method, 'INVITE');
    assert.equal(m.uri, 'sip:vivekg@chair-dnrc.example.com;unknownparam');
    assert.equal(m.body, body);
    // Folded values are unfolded; names are canonical whatever their case or compact form.
    assert.equal(m.get('NewFangledHeader'), 'newfangled value continued newfangled value');
    assert.equal(parseCSeq(m.get('CSeq')!).seq, 9);
    assert.equal(parseCSeq(m.get('cseq')!).method, 'INVITE');
    assert.equal(parseUint(m.get('max-forwards')!, 'Max-Forwards', 255), 68);
    assert.equal(m.get('Subject'), '');
    const to = parseNameAddr(m.get('t')!);
    assert.equal(to.uri, 'sip:vivekg@chair-dnrc.example.com');
    assert.equal(to.params.get('tag'), '1918181833n');
    const from = parseNameAddr(m.get('From')!);
    assert.equal(from.display, 'J Rosenberg \\"');
    assert.equal(from.params.get('tag'), '98asjd8');
    // Three Vias: one in a long-form line, two in one compact line separated by a comma.
    const vias = m.getAll('Via').map(parseVia);
    assert.deepEqual(vias.map((v) => [v.transport, v.host, v.branch]), [
      ['UDP', '192.0.2.2', '390skdjuw'],
      ['TCP', 'spindle.example.com', 'z9hG4bK9ikj8'],
      ['UDP', '192.168.255.111', 'z9hG4bK30239'],
    ]);
    const contact = parseNameAddr(m.getAll('m')[0]!);
    assert.equal(contact.display, 'Quoted string ""');
    assert.equal(contact.params.get('newparam'), 'newvalue');
    assert.equal(contact.params.get('secondparam'), null);
    assert.equal(contact.params.get('q'), '0.33');
    const route = parseUri(parseNameAddr(m.getAll('Route')[0]!).uri);
    assert.equal(route.params.get('lr'), null);
    assert.equal(route.params.get('unknownwith'), 'value');
  });

  it('a method and URI made of every allowed odd character (RFC 4475 3.1.1.2 style)', () => {
    const m = req(parseMessage(msg([
      "!interesting-Method0123456789_*+`.%indeed'~ sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0",
      'Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`\'~',
      'To: <sip:1_unusual.URI~(to-be!sure)&isn\'t+it$/crazy?,/;;*@example.com>',
      'From: <sip:mundane@example.com>;tag=_.!~*\'()-%3D+$',
      'Call-ID: intmeth.word%ZK-!.*_+\'@word`~)(><:\\/"][?}{',
      "CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~",
      'Max-Forwards: 255',
    ])));
    assert.equal(m.method, "!interesting-Method0123456789_*+`.%indeed'~");
    const u = parseUri(m.uri);
    assert.equal(u.user, "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*");
    assert.equal(u.password, "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)");
    assert.equal(u.host, 'example.com');
    assert.equal(parseCSeq(m.get('CSeq')!).method, m.method);
    assert.equal(m.get('Call-ID'), 'intmeth.word%ZK-!.*_+\'@word`~)(><:\\/"][?}{');
  });

  it('escaped characters in URIs (RFC 4475 3.1.1.3/3.1.1.9 style)', () => {
    const u = parseUri('sip:sips%3Auser%40example.com@example.net');
    assert.equal(u.scheme, 'sip');
    assert.equal(u.host, 'example.net');
    assert.equal(unescape(u.user!), 'sips:user@example.com');
    assert.equal(unescape(parseUri('sip:%75se%72@example.com').user!), 'user');
    // A ';' inside the user part does not start URI parameters.
    const semi = parseUri('sip:user;par=u%40example.net@example.com;lr');
    assert.equal(semi.user, 'user;par=u%40example.net');
    assert.deepEqual([...semi.params], [['lr', null]]);
    assert.equal(formatUri(semi), 'sip:user;par=u%40example.net@example.com;lr');
    const v6 = parseUri('sip:[2001:db8::10]:5070;transport=tcp?Subject=x');
    assert.equal(v6.host, '[2001:db8::10]');
    assert.equal(v6.port, 5070);
    assert.equal(v6.params.get('transport'), 'tcp');
    assert.equal(v6.headers, 'Subject=x');
  });

  it('multiple values in one header line and over several lines keep their order', () => {
    const m = parseMessage(msg([
      'SIP/2.0 200 OK',
      'Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1',
      'Record-Route: <sip:p1.example.com;lr>, "Proxy, Two" <sip:p2.example.com;lr>',
      'record-route: <sip:p3.example.com;lr>',
      'Allow: INVITE,ACK , BYE',
      'WWW-Authenticate: Digest realm="a, b", nonce="x"',
    ]));
    assert.equal(m.kind, 'response');
    assert.deepEqual(m.getAll('Record-Route'), [
      '<sip:p1.example.com;lr>', '"Proxy, Two" <sip:p2.example.com;lr>', '<sip:p3.example.com;lr>',
    ]);
    assert.deepEqual(m.getAll('Allow'), ['INVITE', 'ACK', 'BYE']);
    // Not a list header: its commas are parameter separators.
    assert.equal(m.getAll('WWW-Authenticate').length, 1);
    assert.equal(parseAuthParams(m.get('WWW-Authenticate')!).params.get('realm'), 'a, b');
  });

  it('tolerates bare LF line endings, a missing final CRLF, leading CRLFs and extra bytes after the body', () => {
    const lf = parseMessage(Buffer.from('OPTIONS sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\nCall-ID: lf\nContent-Length: 2\n\nhi'));
    assert.equal(lf.get('Call-ID'), 'lf');
    assert.equal(lf.body, 'hi');
    // No blank line at all: headers only (a lenient reading of a truncated datagram).
    const noEnd = parseMessage(Buffer.from('OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\nContent-Length: 0\r\n'));
    assert.equal(noEnd.get('Call-ID'), 'x');
    assert.equal(noEnd.body, '');
    const lead = parseMessage(Buffer.from('\r\n\r\nOPTIONS sip:a@b SIP/2.0\r\nCall-ID: y\r\n\r\n'));
    assert.equal(lead.get('Call-ID'), 'y');
    // Two requests in one datagram (RFC 4475 3.1.1.8): only the first counts.
    const two = parseMessage(Buffer.concat([msg(['REGISTER sip:example.com SIP/2.0', 'Call-ID: first']),
      msg(['INVITE sip:joe@example.com SIP/2.0', 'Call-ID: second'])]));
    assert.equal(two.get('Call-ID'), 'first');
    assert.equal(two.body, '');
  });

  it('header names that are Object.prototype members stay plain names (found by fuzzing)', () => {
    const m = parseMessage(msg(['OPTIONS sip:a@b SIP/2.0', '__proto__: x', 'Constructor: y', 'toString: z', 'Call-ID: c']));
    assert.deepEqual(m.headers.slice(0, 3), [{ name: '__proto__', value: 'x' }, { name: 'Constructor', value: 'y' }, { name: 'toString', value: 'z' }]);
    assert.equal(m.get('constructor'), 'y');
    assert.equal(m.get('Call-ID'), 'c');
    assert.match(serialize(m).toString(), /\r\n__proto__: x\r\n/);
  });

  it('a CR before an LF-only blank line ends the header section', () => {
    const m = parseMessage(Buffer.from('OPTIONS sip:a@b SIP/2.0\r\nCall-ID: crlflf\r\nContent-Length: 2\r\n\nhi'));
    assert.equal(m.get('Call-ID'), 'crlflf');
    assert.equal(m.body, 'hi');
  });

  it('responses: unusual and empty reason phrases (RFC 4475 3.1.1.12/13)', () => {
    const r1 = parseMessage(msg(['SIP/2.0 200 = 2**3 * 5**2 \u043d\u043e \u0441\u0442\u043e']));
    assert.equal(r1.kind === 'response' && r1.reason, '= 2**3 * 5**2 \u043d\u043e \u0441\u0442\u043e');
    const r2 = parseMessage(msg(['SIP/2.0 100 ']));
    assert.equal(r2.kind === 'response' && r2.status, 100);
    const r3 = parseMessage(msg(['SIP/2.0 180']));
    assert.equal(r3.kind === 'response' && r3.reason, '');
    // U+2028/U+2029 are UTF-8 text like any other, not line ends (found by fuzzing).
    const r4 = parseMessage(msg(['SIP/2.0 486 Busy\u2028Here\u2029']));
    assert.equal(r4.kind === 'response' && r4.reason, 'Busy\u2028Here\u2029');
  });
});

describe('SIP parser: invalid messages', () => {
  const bad = (name: string, buf: Buffer, re: RegExp, partial = false): void => {
    it(name, () => {
      assert.throws(() => parseMessage(buf), (e: unknown) => {
        assert.ok(e instanceof SipParseError, `not a SipParseError: ${String(e)}`);
        assert.match(e.message, re);
        assert.equal(e.partial !== undefined, partial, 'partial message');
        return true;
      });
    });
  };
  const base = ['Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx', 'From: <sip:a@b>;tag=1', 'To: <sip:c@d>', 'Call-ID: x', 'CSeq: 1 INVITE'];
  bad('Content-Length larger than the body (clerr) keeps the headers for a 400',
    msg(['INVITE sip:user@example.com SIP/2.0', ...base], 'v=0\r\n', 9999), /larger than/, true);
  bad('negative Content-Length (ncl)', msg(['INVITE sip:user@example.com SIP/2.0', ...base], '', -999), /Content-Length/, true);
  bad('conflicting Content-Length headers',
    Buffer.from(['OPTIONS sip:a@b SIP/2.0', 'Content-Length: 0', 'l: 5', '', 'hello'].join('\r\n')), /conflicting/, true);
  bad('<> around the Request-URI (ltgtruri)', msg(['INVITE <sip:user@example.com> SIP/2.0', ...base]), /Request-URI/);
  bad('white space inside the Request-URI (lwsruri)', msg(['INVITE sip:user@example.com; lr SIP/2.0', ...base]), /request line/);
  bad('several spaces between request line elements (lwsstart)', msg(['INVITE  sip:user@example.com  SIP/2.0', ...base]), /request line/);
  bad('overlarge response code (bigcode)', msg(['SIP/2.0 4294967301 better not break the receiver', ...base]), /status line/);
  bad('status code out of range', msg(['SIP/2.0 700 Nope', ...base]), /out of range/);
  bad('a header line without a colon', msg(['OPTIONS sip:a@b SIP/2.0', 'This is not a header', ...base]), /malformed header/, true);
  bad('a bare CR inside a header line (it could read as two headers elsewhere)',
    msg(['OPTIONS sip:a@b SIP/2.0', ...base, 'Subject: a\rInjected: b']), /bare CR/, true);
  bad('a NUL byte in the headers', Buffer.from('OPTIONS sip:a@b SIP/2.0\r\nCall-ID: a\0b\r\n\r\n'), /NUL/);
  bad('nothing but line breaks', Buffer.from('\r\n\r\n\r\n'), /empty/);
  bad('garbage', Buffer.from('\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03'), /NUL/);
  bad('binary without NUL', Buffer.from('\x16\x03\x01\x02\x05\x01\x07\x01\xfc\x03\x03'), /request line/);

  it('field-level problems surface from the header views, not the parser', () => {
    // Overlarge scalars (RFC 4475 3.1.2.4 scalar02): the message parses; its CSeq does not.
    const m = parseMessage(msg(['REGISTER sip:example.com SIP/2.0', 'CSeq: 36893488147419103232 REGISTER', 'Max-Forwards: 300']));
    assert.throws(() => parseCSeq(m.get('CSeq')!), HeaderError);
    assert.throws(() => parseCSeq('2147483648 INVITE'), /too large/);
    assert.throws(() => parseUint(m.get('Max-Forwards')!, 'Max-Forwards', 255), /Max-Forwards/);
    assert.throws(() => parseVia('SIP/2.0/UDP'), HeaderError);
    assert.throws(() => parseVia('SIP/2.0/UDP host:99999'), /sent-by/);
    // Unterminated quote in a display name (quotbal) and a bad URI scheme for SIP parsing.
    assert.throws(() => parseNameAddr('"Mr J. User <sip:j.user@example.com>'), SipUriError);
    assert.throws(() => parseUri('nobodyKnowsThisScheme:totallyopaquecontent'), /scheme/);
    assert.throws(() => parseUri('sip:user@exa mple.com'), SipUriError);
    assert.throws(() => parseUri('sip:user@example.com:0'), /host\/port/);
    // A name-addr with a non-SIP URI is still carried (e.g. tel: in From).
    assert.equal(parseNameAddr('<tel:+1-201-555-0123>').uri, 'tel:+1-201-555-0123');
  });
});

describe('SIP serializer', () => {
  it('round-trips and recomputes Content-Length in bytes', () => {
    const r = new SipRequest('INVITE', 'sip:bob@example.com');
    r.add('Via', 'SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;rport');
    r.add('f', '"Zoë" <sip:zoe@example.com>;tag=1');
    r.add('Content-Length', '999');
    r.body = 'v=0\r\ns=é\r\n';
    const wire = serialize(r);
    assert.match(wire.toString(), /\r\nFrom: "Zoë" <sip:zoe@example.com>;tag=1\r\n/);
    assert.match(wire.toString(), new RegExp(`Content-Length: ${Buffer.byteLength(r.body)}\r\n\r\n`));
    const back = parseMessage(wire);
    assert.equal(back.body, r.body);
    assert.equal(back.get('From'), '"Zoë" <sip:zoe@example.com>;tag=1');
    assert.equal(back.getAll('Content-Length').length, 1);
  });

  it('CR, LF and NUL in a reason phrase or header value cannot split the message', () => {
    // A reason built from a decoded Request-URI (sip:a%0D%0AX-Injected:%20y@...) once could.
    const res = new SipResponse(404, "user 'a\r\nX-Injected: y' is not connected");
    res.add('Warning', '399 x "a\nb\0c"');
    const back = parseMessage(serialize(res));
    assert.equal(back.kind === 'response' && back.reason, "user 'a  X-Injected: y' is not connected");
    assert.equal(back.get('X-Injected'), undefined);
    assert.equal(back.get('Warning'), '399 x "a b c"');
  });

  it('responses copy Via, From, To, Call-ID and CSeq and add a To tag', () => {
    const r = req(parseMessage(msg(['BYE sip:a@b SIP/2.0', 'Via: SIP/2.0/UDP h1;branch=z9hG4bK1', 'Via: SIP/2.0/UDP h2;branch=z9hG4bK2',
      'From: <sip:x@y>;tag=f', 'To: <sip:a@b>', 'Call-ID: c', 'CSeq: 2 BYE', 'Timestamp: 54'])));
    const res = makeResponse(r, 404, undefined, 'tt');
    assert.equal(res.reason, 'Not Found');
    assert.deepEqual(res.getAll('Via'), ['SIP/2.0/UDP h1;branch=z9hG4bK1', 'SIP/2.0/UDP h2;branch=z9hG4bK2']);
    assert.equal(res.get('To'), '<sip:a@b>;tag=tt');
    assert.equal(res.get('Timestamp'), undefined);
    assert.equal(makeResponse(r, 100).get('Timestamp'), '54');
    assert.equal(makeResponse(r, 100, undefined, 'tt').get('To'), '<sip:a@b>');
  });
});

describe('digest', () => {
  it('matches RFC 2617 §3.5 (MD5, qop=auth)', () => {
    const challenge = parseChallenge('Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"')!;
    assert.ok(challenge);
    assert.deepEqual(challenge.qop, ['auth', 'auth-int']);
    const response = digestResponse({ challenge, username: 'Mufasa', password: 'Circle Of Life', method: 'GET', uri: '/dir/index.html', nc: 1, cnonce: '0a4f113b' });
    assert.equal(response, '6629fae49393a05397450978507c4ef1');
  });

  it('matches RFC 7616 §3.9.1 (SHA-256 and MD5) and prefers SHA-256', () => {
    const common = 'realm="http-auth@example.org", qop="auth, auth-int", nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"';
    const sha = `Digest ${common}, algorithm=SHA-256`;
    const md5 = `Digest ${common}, algorithm=MD5`;
    const input = { username: 'Mufasa', password: 'Circle of Life', method: 'GET', uri: '/dir/index.html', nc: 1, cnonce: 'f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ' };
    assert.equal(digestResponse({ ...input, challenge: parseChallenge(md5)! }), '8ca523f5e9506fed4657c9700eebdbec');
    assert.equal(digestResponse({ ...input, challenge: parseChallenge(sha)! }), '753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1');
    assert.equal(pickChallenge([md5, sha])!.algorithm, 'SHA-256');
    assert.equal(pickChallenge(['Basic realm="x"', md5])!.algorithm, 'MD5');
    assert.equal(pickChallenge(['Basic realm="x"', 'Digest realm="r", nonce="n", qop="auth-int"']), undefined);
  });

  it('writes an Authorization header with the fields a server checks', () => {
    const challenge = parseChallenge('Digest realm="sip.example", nonce="abc", qop="auth", opaque="o"')!;
    const h = authorization({ challenge, username: 'alice', password: 'pw', method: 'INVITE', uri: 'sip:bob@sip.example', cnonce: 'cn' });
    const p = parseAuthParams(h).params;
    assert.equal(p.get('username'), 'alice');
    assert.equal(p.get('uri'), 'sip:bob@sip.example');
    assert.equal(p.get('nc'), '00000001');
    assert.equal(p.get('qop'), 'auth');
    assert.equal(p.get('opaque'), 'o');
    assert.equal(p.get('response'), digestResponse({ challenge, username: 'alice', password: 'pw', method: 'INVITE', uri: 'sip:bob@sip.example', nc: 1, cnonce: 'cn' }));
    // Without qop (RFC 2069 style): no nc/cnonce.
    const old = authorization({ challenge: parseChallenge('Digest realm="r", nonce="n"')!, username: 'u', password: 'p', method: 'REGISTER', uri: 'sip:r' });
    assert.doesNotMatch(old, /nc=|cnonce=/);
  });
});
