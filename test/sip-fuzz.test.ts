// Fuzz and property tests of the SIP stack (issue #6: malformed SIP never crashes the server;
// unknown dialogs and bad requests get the right SIP error responses).
//
// 1. The parser, fed arbitrary bytes, SIP-looking noise and mutated valid messages (truncation,
//    byte flips, duplicated and missing headers, huge or bogus Content-Length, bad start lines,
//    inserted garbage), returns a message or throws SipParseError — nothing else — and what it
//    returns serializes and re-parses to the same message. The header views throw only their own
//    documented errors on arbitrary values.
// 2. Round trips: messages, URIs, name-addrs, Vias and CSeqs built from random valid fields
//    serialize and parse back to the same fields; equivalent encodings (compact names, any case,
//    white space around colons, folded lines, LF-only line ends) parse to the same message.
// 3. A live SipUserAgent on 127.0.0.1 (UDP and TCP): malformed requests that can be answered get
//    400 (and 505/416/420 where RFC 3261 says so), requests in unknown dialogs 481, unknown
//    methods 501 and known-but-unsupported ones 405 with Allow, ACKs are never answered; random
//    sequences of in-dialog requests against a live call follow a model of RFC 3261 §12.2.2;
//    TCP framing survives any chunking; a storm of mutated and random messages over UDP and TCP
//    leaves it answering OPTIONS, with everything it sent back well-formed and nothing leaked.
//
// Everything stays on 127.0.0.1; nothing here measures time.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { SipUserAgent } from '../src/sip/index.js';
import {
  parseMessage, serialize, SipParseError, SipRequest, SipResponse, canonicalName, parseVia, formatVia,
  parseCSeq, parseUint, parseAuthParams, makeResponse, HeaderError, type SipMessage, type Via,
} from '../src/sip/message.js';
import { parseUri, formatUri, parseNameAddr, formatNameAddr, SipUriError, type SipUri, type NameAddr } from '../src/sip/uri.js';
import { parseChallenge } from '../src/sip/digest.js';
import { tagOf } from '../src/sip/dialog.js';
import { startTestServer, eventually } from './helpers/server.js';
import { SipInbox } from './helpers/sip-inbox.js';

const HOST = '127.0.0.1';
const OFFER = 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n';
const ANSWER = OFFER.replace('4000', '5000');
// What the UA serves, recognises without serving (405), and everything else is unknown (501).
const SERVED = ['INVITE', 'ACK', 'CANCEL', 'BYE', 'OPTIONS', 'INFO'];
const UNSUPPORTED = ['REGISTER', 'SUBSCRIBE', 'NOTIFY', 'REFER', 'MESSAGE', 'UPDATE', 'PRACK', 'PUBLISH'];

// ---------------------------------------------------------------------------------------------
// Parser helpers

/** The parts of a message that must survive serialize → parse (Content-Length is recomputed). */
function fields(m: SipMessage): unknown {
  return {
    start: m.kind === 'request' ? [m.method, m.uri, m.version] : [m.status, m.reason, m.version],
    headers: m.headers.filter((h) => h.name !== 'Content-Length').map((h) => [h.name, h.value]),
    body: m.body,
  };
}

/**
 * Parses `buf`: a message, or undefined after a SipParseError. Anything else thrown fails the
 * property. A parsed message must survive serialize → parse unchanged, and a request must be
 * answerable (makeResponse never throws, its response re-parses).
 */
function parseOrReject(buf: Buffer): SipMessage | undefined {
  let m: SipMessage;
  try {
    m = parseMessage(buf);
  } catch (e) {
    if (!(e instanceof SipParseError)) throw new Error(`parser threw ${String(e)} (not a SipParseError)`);
    if (e.partial) checkParsed(e.partial, false);
    return undefined;
  }
  checkParsed(m, true);
  return m;
}

function checkParsed(m: SipMessage, whole: boolean): void {
  assert.ok(m.kind === 'request' || m.kind === 'response');
  for (const h of m.headers) {
    assert.ok(!/[\r\n\0]/.test(h.name + h.value), 'no line breaks or NULs in headers');
    assert.equal(h.value, h.value.trim());
  }
  if (whole) {
    const again = parseMessage(serialize(m));
    assert.deepEqual(fields(again), fields(m));
    assert.equal(again.getAll('Content-Length').length, 1);
    assert.equal(Number(again.get('Content-Length')), Buffer.byteLength(m.body));
  }
  if (m.kind === 'request') {
    const res = makeResponse(m, 400, 'Bad Request', 'tag');
    parseMessage(serialize(res));
  }
}

// Valid seeds: an INVITE with SDP, an in-dialog BYE, an OPTIONS, a 200 with SDP.
function seedMessages(viaPort: number, transport: 'UDP' | 'TCP'): Buffer[] {
  const common = (method: string, cseq: number, toTag = ''): string[] => [
    `Via: SIP/2.0/${transport} ${HOST}:${viaPort};branch=z9hG4bKseed${method}${cseq};rport`,
    'Max-Forwards: 70',
    `From: "Fuzz" <sip:fuzz@${HOST}>;tag=fz${cseq}`,
    `To: <sip:bob@${HOST}>${toTag}`,
    `Call-ID: fuzz-${method}-${cseq}@${HOST}`,
    `CSeq: ${cseq} ${method}`,
    `Contact: <sip:fuzz@${HOST}:${viaPort}>`,
  ];
  const build = (start: string, lines: string[], body = ''): Buffer => Buffer.from([
    start, ...lines, ...(body ? ['Content-Type: application/sdp'] : []), `Content-Length: ${Buffer.byteLength(body)}`, '', body,
  ].join('\r\n'));
  return [
    build(`INVITE sip:bob@${HOST} SIP/2.0`, common('INVITE', 1), OFFER),
    build(`BYE sip:bob@${HOST} SIP/2.0`, common('BYE', 2, ';tag=abc')),
    build(`OPTIONS sip:bob@${HOST} SIP/2.0`, common('OPTIONS', 3)),
    build('SIP/2.0 200 OK', common('INVITE', 4, ';tag=x'), OFFER),
  ];
}

type Mutation =
  | { kind: 'truncate'; at: number }
  | { kind: 'flip'; flips: [number, number][] }
  | { kind: 'bigHeader'; size: number; at: number }
  | { kind: 'contentLength'; value: string }
  | { kind: 'lines'; ops: [number, number][] }
  | { kind: 'drop'; name: string }
  | { kind: 'startLine'; line: string }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'header'; name: string; value: string }
  | { kind: 'random'; bytes: Uint8Array };

const MANDATORY = ['Via', 'From', 'To', 'Call-ID', 'CSeq', 'Max-Forwards', 'Contact', 'Content-Length', 'Content-Type'];

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('flip' as const), flips: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }) }),
  fc.record({ kind: fc.constant('bigHeader' as const), size: fc.integer({ min: 100, max: 70_000 }), at: fc.nat() }),
  fc.record({
    kind: fc.constant('contentLength' as const),
    value: fc.oneof(fc.integer({ min: -100, max: 2 ** 40 }).map(String), fc.string({ maxLength: 12 }),
      fc.constantFrom('', '0', '99999999999', '4294967296', ' 5 ', '1e3', '0x10', '+3', '3.0')),
  }),
  // Delete, duplicate or swap lines (headers, the start line, the blank line, body lines).
  fc.record({ kind: fc.constant('lines' as const), ops: fc.array(fc.tuple(fc.nat(), fc.nat()), { minLength: 1, maxLength: 5 }) }),
  fc.record({ kind: fc.constant('drop' as const), name: fc.constantFrom(...MANDATORY) }),
  fc.record({
    kind: fc.constant('startLine' as const),
    line: fc.oneof(
      fc.constantFrom('', 'INVITE', 'INVITE sip:bob@127.0.0.1', 'INVITE  sip:bob@127.0.0.1  SIP/2.0', 'INVITE <sip:bob@127.0.0.1> SIP/2.0',
        'INVITE sip:bob@127.0.0.1 SIP/2.0 extra', 'INVITE sip:bob@127.0.0.1 HTTP/1.1', 'GET / HTTP/1.1', 'SIP/2.0 99 Low', 'SIP/2.0 700 High',
        'SIP/2.0 4294967301 Big', 'SIP/2.0', 'SIP/2.0 200', 'SIP/2.0 2000 OK', 'SIP/3.0 200 OK', 'IN\u0000VITE sip:b@h SIP/2.0', 'INVITE sip:b@h SIP/2.0\r'),
      fc.string({ maxLength: 60 })),
  }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 40 }) }),
  fc.record({ kind: fc.constant('header' as const), name: fc.oneof(fc.string({ maxLength: 20 }), fc.constantFrom(...MANDATORY, 'v', 'l', 'i', 'f', 't')), value: fc.string({ maxLength: 200 }) }),
  fc.record({ kind: fc.constant('random' as const), bytes: fc.uint8Array({ maxLength: 1500 }) }),
);

function applyMutation(buf: Buffer, m: Mutation): Buffer {
  const lines = (): string[] => buf.toString('latin1').split('\r\n');
  const join = (ls: string[]): Buffer => Buffer.from(ls.join('\r\n'), 'latin1');
  switch (m.kind) {
    case 'truncate':
      return buf.subarray(0, m.at % (buf.length + 1));
    case 'flip': {
      const b = Buffer.from(buf);
      for (const [i, v] of m.flips) if (b.length > 0) b[i % b.length] = v;
      return b;
    }
    case 'bigHeader': {
      const ls = lines();
      ls.splice(1 + (m.at % Math.max(1, ls.length - 1)), 0, `X-Huge: ${'a'.repeat(m.size)}`);
      return join(ls);
    }
    case 'contentLength':
      return Buffer.from(buf.toString('latin1').replace(/Content-Length: [^\r]*/i, `Content-Length: ${m.value}`), 'latin1');
    case 'lines': {
      const ls = lines();
      for (const [a, b] of m.ops) {
        if (ls.length === 0) break;
        const i = a % ls.length;
        const j = b % ls.length;
        if (b % 3 === 0) ls.splice(i, 1);
        else if (b % 3 === 1) ls.splice(i, 0, ls[j]!);
        else [ls[i], ls[j]] = [ls[j]!, ls[i]!];
      }
      return join(ls);
    }
    case 'drop':
      return join(lines().filter((l) => !l.toLowerCase().startsWith(`${m.name.toLowerCase()}:`)));
    case 'startLine': {
      const ls = lines();
      ls[0] = m.line;
      return join(ls);
    }
    case 'insert': {
      const at = m.at % (buf.length + 1);
      return Buffer.concat([buf.subarray(0, at), Buffer.from(m.bytes), buf.subarray(at)]);
    }
    case 'header': {
      const ls = lines();
      ls.splice(1, 0, `${m.name}: ${m.value}`);
      return join(ls);
    }
    case 'random':
      return Buffer.from(m.bytes);
  }
}

function mutated(base: Buffer[]): fc.Arbitrary<Buffer> {
  return fc.tuple(fc.constantFrom(...base), fc.array(mutation, { minLength: 1, maxLength: 3 }))
    .map(([seed, ms]) => ms.reduce(applyMutation, seed));
}

// SIP-looking noise: start lines and header lines from SIP's vocabulary with random values,
// joined by any line ending, with or without the blank line, then a random body.
const sipish: fc.Arbitrary<Buffer> = fc.tuple(
  fc.oneof(fc.constantFrom('INVITE sip:a@b SIP/2.0', 'SIP/2.0 200 OK', 'ACK sip:x SIP/2.0', 'SIP/2.0 180 ', 'BYE sips:[::1]:5 SIP/2.0', 'FOO bar baz'), fc.string({ maxLength: 40 })),
  fc.array(fc.tuple(
    fc.oneof(fc.constantFrom('Via', 'v', 'From', 'f', 'To', 't', 'Call-ID', 'i', 'CSeq', 'Content-Length', 'l', 'content-length ', 'Contact', 'm', 'Route', ' Via', ''), fc.string({ maxLength: 12 })),
    fc.oneof(fc.string({ maxLength: 40 }), fc.constantFrom('0', '5', '-1', 'SIP/2.0/UDP h;branch=z9hG4bK1', '<sip:a@b>;tag=1', '1 INVITE', '"x', '<', ';;;')),
    fc.constantFrom(':', ': ', ' : ', '', '\r\n :'),
  ), { maxLength: 12 }),
  fc.constantFrom('\r\n', '\n', '\r', '\r\n\r\n'),
  fc.boolean(),
  fc.string({ maxLength: 60 }),
).map(([start, hs, eol, blank, body]) => Buffer.from(
  [start, ...hs.map(([n, v, sep]) => `${n}${sep}${v}`)].join(eol) + (blank ? `${eol}${eol}` : eol) + body,
));

describe('SIP parser: arbitrary and mutated input', () => {
  it('arbitrary bytes: a message or a SipParseError, never anything else', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 2048 }), (b) => { parseOrReject(Buffer.from(b)); }), { numRuns: 1500 });
  });

  it('SIP-looking noise: a message or a SipParseError; what parses round-trips', () => {
    fc.assert(fc.property(sipish, (b) => { parseOrReject(b); }), { numRuns: 2000 });
  });

  it('mutated valid messages: a message or a SipParseError; what parses round-trips', () => {
    fc.assert(fc.property(mutated(seedMessages(5062, 'UDP')), (b) => { parseOrReject(b); }), { numRuns: 3000 });
  });

  it('a Content-Length beyond the body is refused, keeping the headers to answer 400 with', () => {
    const seeds = seedMessages(5062, 'UDP');
    fc.assert(fc.property(fc.constantFrom(...seeds), fc.integer({ min: 1, max: 9_999_999_999 }), (seed, extra) => {
      const body = parseMessage(seed).body;
      const text = seed.toString('latin1').replace(/Content-Length: \d+/, `Content-Length: ${Buffer.byteLength(body) + extra}`);
      assert.throws(() => parseMessage(Buffer.from(text, 'latin1')), (e: unknown) => {
        assert.ok(e instanceof SipParseError);
        assert.ok(e.partial, 'partial message kept');
        assert.equal(e.partial.get('Call-ID'), parseMessage(seed).get('Call-ID'));
        return true;
      });
    }), { numRuns: 300 });
  });

  it('truncation inside the body is refused; the body is opaque to framing', () => {
    const seeds = seedMessages(5062, 'UDP').filter((s) => parseMessage(s).body !== '');
    fc.assert(fc.property(fc.constantFrom(...seeds), fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 20 }), (seed, cut, junk) => {
      const bodyLen = Buffer.byteLength(parseMessage(seed).body);
      const bodyStart = seed.length - bodyLen;
      // Cut somewhere inside the body: Content-Length now promises more than there is.
      const at = bodyStart + (cut % bodyLen);
      assert.throws(() => parseMessage(seed.subarray(0, at)), (e: unknown) => e instanceof SipParseError && e.partial !== undefined);
      // Any bytes in the body (same length) leave the headers as they were.
      const flipped = Buffer.from(seed);
      for (const [k, v] of junk.entries()) flipped[bodyStart + ((cut + k * 7) % bodyLen)] = v;
      const m = parseMessage(flipped);
      assert.deepEqual(m.headers, parseMessage(seed).headers);
      // Bytes past Content-Length are ignored (RFC 3261 §18.3).
      assert.deepEqual(fields(parseMessage(Buffer.concat([seed, Buffer.from(junk)]))), fields(parseMessage(seed)));
    }), { numRuns: 300 });
  });

  it('header views throw only their own errors on arbitrary values', () => {
    const only = (f: () => unknown, ...errs: (new (...a: never[]) => Error)[]): void => {
      try { f(); } catch (e) {
        if (!errs.some((E) => e instanceof E)) throw new Error(`unexpected ${String(e)}`);
      }
    };
    const value = fc.oneof(fc.string({ maxLength: 80 }), fc.string({ unit: 'binary', maxLength: 40 }),
      fc.constantFrom('SIP/2.0/UDP', 'SIP/2.0/UDP h:99999', '<sip:a@b', '"a\\', 'Digest realm="x', 'sip:a@b;x="y', '2147483648 INVITE', ';tag='));
    fc.assert(fc.property(value, (v) => {
      only(() => parseVia(v), HeaderError);
      only(() => parseCSeq(v), HeaderError);
      only(() => parseUint(v, 'x', 255), HeaderError);
      only(() => parseAuthParams(v), HeaderError);
      only(() => parseUri(v), SipUriError);
      only(() => parseNameAddr(v), SipUriError);
      parseChallenge(v);   // undefined when unusable, never throws
      tagOf(v);            // undefined when unusable, never throws
    }), { numRuns: 1000 });
  });
});

// ---------------------------------------------------------------------------------------------
// Round trips from random valid fields

const alnum = 'abcdefghijklmnopqrstuvwxyz0123456789';
const label = fc.stringMatching(/^[a-z0-9](?:[a-z0-9-]{0,6}[a-z0-9])?$/);
const hostArb = fc.oneof(
  fc.array(label, { minLength: 1, maxLength: 4 }).map((ls) => ls.join('.')),
  fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((a) => a.join('.')),
  fc.array(fc.stringMatching(/^[0-9a-f]{1,4}$/), { minLength: 2, maxLength: 8 }).map((g) => `[${g.join(':')}]`),
);
const tokenArb = fc.stringMatching(/^[A-Za-z0-9\-.!%*_+`'~]{1,16}$/);
const userArb = fc.stringMatching(/^(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|%[0-9A-Fa-f]{2}){1,16}$/);
const paramName = fc.stringMatching(/^[a-z0-9\-_.!~*'()]{1,10}$/);
const paramValue = fc.stringMatching(/^(?:[A-Za-z0-9\-_.!~*'()[\]/:&+$]|%[0-9A-Fa-f]{2}){0,12}$/);

const uriArb: fc.Arbitrary<SipUri> = fc.record({
  scheme: fc.constantFrom('sip' as const, 'sips' as const),
  user: fc.option(userArb, { nil: undefined }),
  password: fc.option(fc.stringMatching(/^[a-z0-9]{1,8}$/), { nil: undefined }),
  host: hostArb,
  port: fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined }),
  params: fc.uniqueArray(fc.tuple(paramName, fc.option(paramValue, { nil: null })), { selector: ([k]) => k, maxLength: 4 }).map((ps) => new Map(ps)),
  headers: fc.option(fc.stringMatching(/^[A-Za-z0-9=&%-]{1,20}$/), { nil: undefined }),
}).map((u) => {
  const out: SipUri = { scheme: u.scheme, host: u.host, params: u.params };
  if (u.user !== undefined) {
    out.user = u.user;
    if (u.password !== undefined) out.password = u.password;
  }
  if (u.port !== undefined) out.port = u.port;
  if (u.headers !== undefined) out.headers = u.headers;
  return out;
});

const headerParamArb = fc.uniqueArray(fc.tuple(
  fc.stringMatching(/^[a-z0-9\-.!%*_+`'~]{1,10}$/),
  fc.oneof(fc.constant(null), tokenArb, fc.string({ maxLength: 10 }).map((s) => `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`)),
), { selector: ([k]) => k, maxLength: 4 }).map((ps) => new Map<string, string | null>(ps));

const nameAddrArb: fc.Arbitrary<NameAddr> = fc.record({
  display: fc.option(fc.string({ minLength: 1, maxLength: 20 }).filter((s) => !/[\r\n\0]/.test(s)), { nil: undefined }),
  uri: uriArb.map(formatUri),
  params: headerParamArb,
}).map((na) => {
  const out: NameAddr = { uri: na.uri, params: na.params };
  if (na.display !== undefined) out.display = na.display;
  return out;
});

const viaArb: fc.Arbitrary<Via> = fc.record({
  transport: fc.constantFrom('UDP', 'TCP', 'TLS', 'SCTP', 'WS'),
  host: hostArb,
  port: fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined }),
  params: fc.uniqueArray(fc.tuple(fc.stringMatching(/^[a-z0-9\-.!%*_+`'~]{1,10}$/), fc.option(tokenArb, { nil: null })), { selector: ([k]) => k, maxLength: 4 }),
  branch: fc.stringMatching(/^[A-Za-z0-9.]{1,16}$/).map((b) => `z9hG4bK${b}`),
}).map((v) => {
  const params = new Map<string, string | null>([['branch', v.branch], ...v.params.filter(([k]) => k !== 'branch')]);
  const out: Via = { transport: v.transport, host: v.host, params, branch: v.branch };
  if (v.port !== undefined) out.port = v.port;
  return out;
});

// A header value: printable, no surrounding white space (the parser trims), any Unicode inside.
const headerValue = fc.string({ unit: 'grapheme', maxLength: 60 })
  .map((s) => s.replace(/[\r\n\0]/g, ' ').trim());
const headerName = fc.oneof(
  fc.constantFrom('Via', 'From', 'To', 'Call-ID', 'CSeq', 'Contact', 'Route', 'Record-Route', 'Allow', 'Supported', 'Subject',
    'User-Agent', 'Content-Type', 'Max-Forwards', 'Expires', 'X-Custom', 'v', 'f', 't', 'i', 'm', 'c', 'k', 's', 'x',
    // Names of Object.prototype members must stay plain header names.
    '__proto__', 'constructor', 'Constructor', 'toString', 'hasOwnProperty', 'valueOf'),
  tokenArb,
).filter((n) => canonicalName(n) !== 'Content-Length');
const bodyArb = fc.oneof(fc.constant(''), fc.string({ unit: 'grapheme', maxLength: 200 }), fc.constant(OFFER));

const messageArb: fc.Arbitrary<SipMessage> = fc.tuple(
  fc.oneof(
    fc.record({ kind: fc.constant('request' as const), method: tokenArb, uri: uriArb.map(formatUri) }),
    fc.record({
      kind: fc.constant('response' as const),
      status: fc.integer({ min: 100, max: 699 }),
      reason: fc.oneof(fc.string({ unit: 'grapheme', maxLength: 30 }).map((s) => s.replace(/[\r\n\0]/g, ' ')),
        fc.constantFrom('', ' ', 'OK ', '\u2028', 'Line\u2029Sep', '\u043d\u043e \u0441\u0442\u043e', '\t')),
    }),
  ),
  fc.array(fc.tuple(headerName, headerValue), { maxLength: 15 }),
  bodyArb,
).map(([start, headers, body]) => {
  const m = start.kind === 'request' ? new SipRequest(start.method, start.uri) : new SipResponse(start.status, start.reason);
  for (const [n, v] of headers) m.add(n, v);
  m.body = body;
  return m;
});

describe('SIP round trips from random valid fields', () => {
  it('messages serialize and parse back to the same start line, headers and body', () => {
    fc.assert(fc.property(messageArb, (m) => {
      const back = parseMessage(serialize(m));
      assert.equal(back.kind, m.kind);
      if (back.kind === 'request' && m.kind === 'request') assert.deepEqual([back.method, back.uri, back.version], [m.method, m.uri, m.version]);
      if (back.kind === 'response' && m.kind === 'response') assert.deepEqual([back.status, back.reason, back.version], [m.status, m.reason, m.version]);
      assert.deepEqual(back.headers.slice(0, -1), m.headers.map((h) => ({ name: canonicalName(h.name), value: h.value })));
      assert.deepEqual(back.headers.at(-1), { name: 'Content-Length', value: String(Buffer.byteLength(m.body)) });
      assert.equal(back.body, m.body);
    }), { numRuns: 1500 });
  });

  it('whatever text goes into a reason phrase or header value, the message cannot be split', () => {
    const text = fc.oneof(fc.string({ maxLength: 40 }), fc.constantFrom('a\r\nX-Injected: 1', '\r\n\r\nbody', 'nul\0', '\n', 'x\ry'));
    fc.assert(fc.property(fc.integer({ min: 100, max: 699 }), text, fc.array(fc.tuple(tokenArb.filter((n) => canonicalName(n) !== 'Content-Length'), text), { maxLength: 5 }), (status, reason, headers) => {
      const res = new SipResponse(status, reason);
      for (const [n, v] of headers) res.add(n, v);
      const back = parseMessage(serialize(res));
      assert.equal(back.kind === 'response' && back.status, status);
      assert.equal(back.headers.length, headers.length + 1, 'one header per header, plus Content-Length');
      assert.equal(back.get('X-Injected'), headers.find(([n]) => n.toLowerCase() === 'x-injected')?.[1].replace(/[\0\r\n]/g, ' ').trim());
      assert.equal(back.body, '');
    }), { numRuns: 1000 });
  });

  it('equivalent encodings parse alike: compact names, any case, spaces around colons, folding, LF line ends', () => {
    const variant = fc.record({ compact: fc.boolean(), upper: fc.boolean(), before: fc.constantFrom('', ' ', '\t', '   '), after: fc.constantFrom('', ' ', '  ', '\t'), fold: fc.boolean(), foldWs: fc.constantFrom(' ', '\t', '   ') });
    const COMPACT = new Map(Object.entries({ 'Call-ID': 'i', Contact: 'm', 'Content-Type': 'c', From: 'f', To: 't', Via: 'v', Subject: 's', Supported: 'k' }));
    fc.assert(fc.property(messageArb, fc.array(variant, { minLength: 15, maxLength: 15 }), fc.constantFrom('\r\n', '\n'), (m, vs, eol) => {
      const start = serialize(m).toString('utf8').split('\r\n')[0]!;
      const body = Buffer.from(m.body, 'utf8');
      const lines = m.headers.map((h, i) => {
        const v = vs[i]!;
        const canon = canonicalName(h.name);
        let name = v.compact ? COMPACT.get(canon) ?? canon : canon;
        name = v.upper ? name.toUpperCase() : name.toLowerCase();
        // Fold at a single space between two non-space characters (unfolding yields one space).
        const value = v.fold ? h.value.replace(/(\S) (\S)/, `$1${eol}${v.foldWs}$2`) : h.value;
        return `${name}${v.before}:${v.after}${value}`;
      });
      const text = Buffer.concat([Buffer.from([start, ...lines, `l:${body.length}`, '', ''].join(eol), 'utf8'), body]);
      // Header names are case-insensitive (RFC 3261 §7.3.1): unknown ones keep their spelling.
      const lower = (x: SipMessage): unknown => ({ ...(fields(x) as object), headers: x.headers.filter((h) => h.name !== 'Content-Length').map((h) => [h.name.toLowerCase(), h.value]) });
      const back = parseMessage(text);
      assert.deepEqual(lower(back), lower(m));
      for (const h of m.headers) assert.equal(back.get(h.name), m.get(h.name));
    }), { numRuns: 1000 });
  });

  it('URIs, name-addrs, Vias and CSeqs format and parse back to the same fields', () => {
    fc.assert(fc.property(uriArb, (u) => { assert.deepEqual(parseUri(formatUri(u)), u); }), { numRuns: 1000 });
    fc.assert(fc.property(nameAddrArb, (na) => { assert.deepEqual(parseNameAddr(formatNameAddr(na)), na); }), { numRuns: 1000 });
    fc.assert(fc.property(viaArb, (v) => { assert.deepEqual(parseVia(formatVia(v)), v); }), { numRuns: 1000 });
    fc.assert(fc.property(fc.integer({ min: 0, max: 2 ** 31 - 1 }), tokenArb, (seq, method) => {
      assert.deepEqual(parseCSeq(`${seq} ${method}`), { seq, method });
    }), { numRuns: 500 });
  });
});

// ---------------------------------------------------------------------------------------------
// A live user agent

/** Collects complete SIP messages from a TCP byte stream (framed by Content-Length). */
class StreamReader {
  private buf = Buffer.alloc(0);
  push(chunk: Buffer, out: (m: SipMessage | Buffer) => void): void {
    this.buf = Buffer.concat([this.buf, chunk]);
    for (;;) {
      while (this.buf.length > 0 && (this.buf[0] === 0x0d || this.buf[0] === 0x0a)) this.buf = this.buf.subarray(1);
      const end = this.buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const cl = /\r\nContent-Length: (\d+)\r\n/i.exec(this.buf.toString('latin1', 0, end + 2));
      const total = end + 4 + Number(cl?.[1] ?? 0);
      if (this.buf.length < total) return;
      const one = this.buf.subarray(0, total);
      this.buf = this.buf.subarray(total);
      try { out(parseMessage(one)); } catch { out(Buffer.from(one)); }
    }
  }
}

/** A SIP peer over UDP or TCP that sends raw text and waits for messages by predicate. */
class Peer extends SipInbox {
  /** What the UA sent us that did not parse (must stay empty). */
  readonly garbage: Buffer[] = [];
  private constructor(readonly transport: 'UDP' | 'TCP', readonly viaPort: number, private readonly out: (b: Buffer) => void, readonly close: () => void) {
    super();
  }

  static async udp(uaPort: number): Promise<Peer> {
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((r) => sock.bind(0, HOST, () => r()));
    const p = new Peer('UDP', sock.address().port, (b) => sock.send(b, uaPort, HOST), () => sock.close());
    sock.on('message', (b) => { try { p.got(parseMessage(b)); } catch { p.garbage.push(b); } });
    return p;
  }

  /** `viaPort`: where the UA would open a connection if ours were gone (a sink we own). */
  static async tcp(uaPort: number, viaPort: number): Promise<Peer> {
    const sock = net.connect(uaPort, HOST);
    sock.setNoDelay(true);
    await new Promise<void>((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject); });
    sock.on('error', () => undefined);
    const reader = new StreamReader();
    const p = new Peer('TCP', viaPort, (b) => { if (!sock.destroyed) sock.write(b); }, () => sock.destroy());
    sock.on('data', (d) => reader.push(d, (m) => (Buffer.isBuffer(m) ? p.garbage.push(m) : p.got(m))));
    return p;
  }

  send(m: string | Buffer): void { this.out(Buffer.isBuffer(m) ? m : Buffer.from(m)); }

  next(pred: (m: SipMessage) => boolean, what: string, ms = 5000): Promise<SipMessage> {
    return this.waitFor(pred, ms, `${this.transport} peer: no ${what}`);
  }

  /** The first final response whose top Via has `branch` (and whose CSeq has `method`). */
  response(branch: string, method?: string): Promise<SipResponse> {
    return this.next((m) => m.kind === 'response' && m.status >= 200 && topBranch(m) === branch
      && (method === undefined || m.get('CSeq')?.split(/\s+/)[1] === method), `response for ${method ?? ''} ${branch}`) as Promise<SipResponse>;
  }

  /** Everything queued so far for `branch` (after a barrier, this is all that will come). */
  queued(branch: string): SipMessage[] {
    return this.inbox.filter((m) => topBranch(m) === branch);
  }
}

function topBranch(m: SipMessage): string | undefined {
  try { return parseVia(m.getAll('Via')[0] ?? '').branch; } catch { return undefined; }
}

const newBranch = (): string => `z9hG4bK${randomBytes(8).toString('hex')}`;
const newId = (): string => randomBytes(8).toString('hex');

interface Req {
  method: string;
  uri?: string;
  version?: string;
  branch?: string;
  callId?: string;
  fromTag?: string;
  toTag?: string;
  cseq?: string;
  /** Header values to use instead of the defaults (null: leave the header out). */
  set?: Record<string, string | null>;
  extra?: string[];
  body?: string;
  /** Raw Content-Length value (default: the body's length). */
  contentLength?: string;
}

function request(peer: Peer, uaPort: number, r: Req): { text: string; branch: string; callId: string; method: string } {
  const branch = r.branch ?? newBranch();
  const callId = r.callId ?? newId();
  const body = r.body ?? '';
  const defaults: [string, string][] = [
    ['Via', `SIP/2.0/${peer.transport} ${HOST}:${peer.viaPort};branch=${branch};rport`],
    ['Max-Forwards', '70'],
    ['From', `<sip:fuzz@${HOST}>;tag=${r.fromTag ?? newId()}`],
    ['To', `<sip:bob@${HOST}>${r.toTag ? `;tag=${r.toTag}` : ''}`],
    ['Call-ID', callId],
    ['CSeq', r.cseq ?? `1 ${r.method}`],
    ['Contact', `<sip:fuzz@${HOST}:${peer.viaPort}${peer.transport === 'TCP' ? ';transport=tcp' : ''}>`],
  ];
  if (body !== '') defaults.push(['Content-Type', 'application/sdp']);
  const lines = defaults.map(([n, v]) => [n, r.set && n in r.set ? r.set[n] : v] as const)
    .filter((x): x is readonly [string, string] => x[1] !== null).map(([n, v]) => `${n}: ${v}`);
  for (const [n, v] of Object.entries(r.set ?? {})) if (v !== null && !defaults.some(([d]) => d === n)) lines.push(`${n}: ${v}`);
  const text = [
    `${r.method} ${r.uri ?? `sip:bob@${HOST}:${uaPort}`} ${r.version ?? 'SIP/2.0'}`,
    ...lines, ...(r.extra ?? []),
    `Content-Length: ${r.contentLength ?? Buffer.byteLength(body)}`, '', body,
  ].join('\r\n');
  return { text, branch, callId, method: r.method };
}

/** The ACK for a non-2xx final response (same branch, RFC 3261 §17.1.1.3). */
function ackFor(peer: Peer, uaPort: number, req: { branch: string; callId: string; fromTag: string; seq: number }, res: SipResponse): string {
  return request(peer, uaPort, {
    method: 'ACK', branch: req.branch, callId: req.callId, fromTag: req.fromTag, cseq: `${req.seq} ACK`,
    set: { To: res.get('To') ?? '', Contact: null },
  }).text;
}

/** Sends a valid OPTIONS and waits for its 200: everything sent before it has been handled. */
async function barrier(peer: Peer, uaPort: number): Promise<void> {
  const r = request(peer, uaPort, { method: 'OPTIONS' });
  peer.send(r.text);
  const res = await peer.response(r.branch, 'OPTIONS');
  assert.equal(res.status, 200, 'OPTIONS barrier');
}

/** Common checks of any response the UA sends to one of our requests. */
function checkResponse(res: SipResponse, branch: string, sent: string): void {
  const via = parseVia(res.getAll('Via')[0]!);
  assert.equal(via.branch, branch);
  assert.ok(via.params.has('rport') && via.params.has('received'), 'received and rport added (RFC 3581)');
  for (const h of ['Call-ID', 'CSeq', 'From']) {
    const inReq = new RegExp(`\\r\\n${h}: ([^\\r]*)\\r\\n`, 'i').exec(sent)?.[1];
    if (inReq !== undefined && inReq !== '') assert.equal(res.get(h), inReq, `${h} copied`);
  }
  if (res.status > 100 && res.get('To') !== undefined && /\r\nTo: <sip:bob@[^>]*>(;tag=[^\r]*)?\r\n/.test(sent)) assert.ok(tagOf(res.get('To')), 'To tag added');
}

describe('a live user agent fed bad and fuzzed SIP', { timeout: 60_000 }, () => {
  let ua: SipUserAgent;
  let uaUdp: number;
  let uaTcp: number;
  const warnings: string[] = [];
  let sink: net.Server;
  let sinkPort: number;
  const sinkGarbage: Buffer[] = [];
  const peers: Peer[] = [];
  const stats = { invites: 0, accepted: 0, byes: 0, reinvites: 0 };

  before(async () => {
    ua = await SipUserAgent.start({
      udp: { host: HOST, port: 0 }, tcp: { host: HOST, port: 0 }, t1Ms: 20,
      logger: { debug() {}, info() {}, warn: (o: object, m?: string) => { warnings.push(`${m} ${JSON.stringify(o)}`); } },
    });
    uaUdp = ua.addresses().udp!.port;
    uaTcp = ua.addresses().tcp!.port;
    // Calls to sip:accept@ are answered (and their re-INVITEs too); every other INVITE is rejected,
    // so that no fuzzed message can make the UA call or hang up anyone else.
    ua.onInvite((call) => {
      stats.invites++;
      if (parseUri(call.requestUri).user !== 'accept') { call.reject(486); return; }
      stats.accepted++;
      call.on('bye', () => { stats.byes++; });
      call.on('reinvite', (sdp, respond) => { stats.reinvites++; void respond(sdp !== undefined ? ANSWER : { code: 488 }).catch(() => undefined); });
      call.accept(ANSWER).catch(() => undefined);
    });
    // Where the UA would connect if a TCP request's connection were gone: we own that port.
    sink = net.createServer((s) => {
      const reader = new StreamReader();
      s.on('error', () => undefined);
      s.on('data', (d) => reader.push(d, (m) => { if (Buffer.isBuffer(m)) sinkGarbage.push(m); }));
    });
    await new Promise<void>((r) => sink.listen(0, HOST, () => r()));
    sinkPort = (sink.address() as net.AddressInfo).port;
  });

  after(async () => {
    for (const p of peers) p.close();
    await ua.close();
    await new Promise<void>((r) => sink.close(() => r()));
    assert.deepEqual(ua.counters(), { transactions: 0, dialogs: 0, sockets: 0 }, 'nothing left after close()');
  });

  async function peer(transport: 'UDP' | 'TCP'): Promise<Peer> {
    const p = transport === 'UDP' ? await Peer.udp(uaUdp) : await Peer.tcp(uaTcp, sinkPort);
    peers.push(p);
    return p;
  }

  function assertHealthy(ps: Peer[]): void {
    for (const p of ps) assert.deepEqual(p.garbage.map((b) => b.toString('latin1', 0, 80)), [], `everything the UA sent over ${p.transport} parses`);
    assert.deepEqual(sinkGarbage, []);
    assert.deepEqual(warnings.filter((w) => /threw|failed/.test(w)), [], 'no handler blew up');
  }

  it('answers malformed requests it can route back with 400 (505, 416, 420 where the RFC says)', async () => {
    const [udp, tcp] = [await peer('UDP'), await peer('TCP')];
    // Each corruption keeps the top Via intact (the way back) and names the expected status.
    type Corruption = { what: string; code: number; r: Omit<Req, 'method'>; invite?: boolean; udpOnly?: boolean };
    const corruptions: fc.Arbitrary<Corruption> = fc.oneof(
      fc.constantFrom('From', 'To', 'Call-ID', 'CSeq').map((h): Corruption => ({ what: `no ${h}`, code: 400, r: { set: { [h]: null } } })),
      fc.constantFrom('From', 'To', 'Call-ID', 'CSeq').map((h): Corruption => ({ what: `empty ${h}`, code: 400, r: { set: { [h]: '' } } })),
      fc.constantFrom('abc', '1', 'OPTIONS 1', '2147483648 OPTIONS', '-1 OPTIONS', '1 NOTIT', '1.5 OPTIONS', '99999999999 OPTIONS')
        .map((v): Corruption => ({ what: `CSeq ${v}`, code: 400, r: { cseq: v } })),
      fc.tuple(fc.constantFrom('From', 'To'), fc.constantFrom('<sip:a@', '"x <sip:a@b>', '<>', 'a b c', '<sip:a@b> junk', '<sip:a@b>;=1', 'sip:a@b;tag="x'))
        .map(([h, v]): Corruption => ({ what: `${h} ${v}`, code: 400, r: { set: { [h]: v } } })),
      fc.constantFrom('abc', '-1', '256', '1.5', '').map((v): Corruption => ({ what: `Max-Forwards ${v}`, code: 400, r: { set: { 'Max-Forwards': v } } })),
      fc.constantFrom('sip:@h', `sip:bob@${HOST}:0`, `sip:bob@${HOST}:65536`, 'sip:bob@ho_st', 'sip:bob@[::1', 'sip:b@h;=x')
        .map((u): Corruption => ({ what: `Request-URI ${u}`, code: 400, r: { uri: u } })),
      fc.stringMatching(/^[A-Za-z][A-Za-z -]{0,19}$/).map((l): Corruption => ({ what: `header line ${l}`, code: 400, r: { extra: [l] } })),
      fc.oneof(fc.integer({ min: 1000, max: 2 ** 31 }).map(String), fc.constantFrom('abc', '-1', '1e3', '0x10', '+3', '12345678901'))
        .map((v): Corruption => ({ what: `Content-Length ${v}`, code: 400, r: { contentLength: v }, udpOnly: true })),
      fc.constantFrom('SIP/2.1', 'SIP/3.0', 'SIP/1.0', 'SIP/20.0').map((v): Corruption => ({ what: v, code: 505, r: { version: v } })),
      fc.constantFrom('tel:+12345', 'mailto:a@b', 'http://x/', 'urn:service:sos', 'im:a@b').map((u): Corruption => ({ what: u, code: 416, r: { uri: u } })),
      fc.array(fc.stringMatching(/^[a-z0-9]{1,8}$/), { minLength: 1, maxLength: 3 })
        .map((tags): Corruption => ({ what: `Require ${tags}`, code: 420, r: { set: { Require: tags.join(', ') } } })),
      fc.constant<Corruption>({ what: 'INVITE without Contact', code: 400, r: { set: { Contact: null } }, invite: true }),
      fc.constantFrom('<mailto:a@b>', '<sip:a@b', 'sip:a b').map((c): Corruption => ({ what: `INVITE Contact ${c}`, code: 400, r: { set: { Contact: c } }, invite: true })),
      fc.constant<Corruption>({ what: 'INVITE body without Content-Type', code: 400, r: { body: OFFER, set: { 'Content-Type': null } }, invite: true }),
      fc.constantFrom('text/plain', 'application/json').map((t): Corruption => ({ what: `INVITE body as ${t}`, code: 415, r: { body: OFFER, set: { 'Content-Type': t } }, invite: true })),
    );
    await fc.assert(fc.asyncProperty(corruptions, fc.constantFrom('OPTIONS', 'INVITE', 'BYE', 'INFO', 'CANCEL'), fc.boolean(), async (c, m, useTcp) => {
      const p = useTcp && !c.udpOnly ? tcp : udp;
      const method = c.invite ? 'INVITE' : m;
      const uaPort = p.transport === 'UDP' ? uaUdp : uaTcp;
      const r = request(p, uaPort, { method, ...c.r, ...(method === 'INVITE' && c.r.body === undefined ? { body: OFFER } : {}) });
      p.send(r.text);
      const res = await p.response(r.branch);
      // RFC 3261 §8.2.2.3: Require is ignored in a CANCEL (which here cancels nothing: 481).
      const code = c.code === 420 && method === 'CANCEL' ? 481 : c.code;
      assert.equal(res.status, code, `${method} with ${c.what} over ${p.transport}: ${res.status} ${res.reason}`);
      checkResponse(res, r.branch, r.text);
      if (res.status === 420) assert.equal(res.get('Unsupported'), c.r.set!.Require);
      if (res.status === 415) assert.equal(res.get('Accept'), 'application/sdp');
      if (method === 'INVITE' && res.get('To') !== undefined) {
        const fromTag = tagOf(/\r\nFrom: ([^\r]*)/.exec(r.text)?.[1]) ?? '';
        p.send(ackFor(p, uaPort, { branch: r.branch, callId: r.callId, fromTag, seq: 1 }, res));
      }
    }), { numRuns: 150 });
    assertHealthy([udp, tcp]);
  });

  it('a broken Via: dropped over UDP (no way back), answered 400 on the TCP connection', async () => {
    const [udp, tcp] = [await peer('UDP'), await peer('TCP')];
    await fc.assert(fc.asyncProperty(fc.constantFrom('garbage', 'SIP/2.0/UDP', 'SIP/2.0/UDP host:99999;branch=z9hG4bKx', 'SIP/2.0/UDP h;branch="open', 'HTTP/1.1/TCP h'), async (via) => {
      for (const p of [udp, tcp]) {
        const uaPort = p.transport === 'UDP' ? uaUdp : uaTcp;
        const r = request(p, uaPort, { method: 'OPTIONS', set: { Via: via } });
        p.send(r.text);
        await barrier(p, uaPort);
        const got = p.inbox.filter((m) => m.get('Call-ID') === r.callId);
        if (p.transport === 'UDP') assert.deepEqual(got, [], 'nothing sent for an unusable Via over UDP');
        else {
          const res = got[0] ?? await p.next((m) => m.get('Call-ID') === r.callId, 'the 400');
          assert.equal(res.kind === 'response' && res.status, 400);
          assert.equal(res.getAll('Via')[0], via);
        }
        p.inbox.splice(0);
      }
    }), { numRuns: 10 });
    assertHealthy([udp, tcp]);
  });

  it('requests in unknown dialogs get 481, CANCEL without its INVITE 481, ACK never an answer', async () => {
    const [udp, tcp] = [await peer('UDP'), await peer('TCP')];
    const arb = fc.record({
      method: fc.constantFrom('BYE', 'INFO', 'INVITE', 'OPTIONS', 'CANCEL', 'ACK'),
      toTag: fc.option(fc.stringMatching(/^[A-Za-z0-9.~-]{1,20}$/), { nil: undefined }),
      callId: fc.stringMatching(/^[A-Za-z0-9.!%*_+`'~()<>:"/?{}-]{1,30}(@[a-z0-9.]{1,20})?$/),
      seq: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
      tcp: fc.boolean(),
    }).filter((x) => x.toTag !== undefined || !['INVITE', 'OPTIONS'].includes(x.method)); // those would be new calls / plain OPTIONS
    await fc.assert(fc.asyncProperty(arb, async (x) => {
      const p = x.tcp ? tcp : udp;
      const uaPort = x.tcp ? uaTcp : uaUdp;
      const fromTag = newId();
      const r = request(p, uaPort, {
        method: x.method, callId: x.callId, fromTag, cseq: `${x.seq} ${x.method}`,
        ...(x.toTag ? { toTag: x.toTag } : {}), ...(x.method === 'INVITE' ? { body: OFFER } : {}),
      });
      p.send(r.text);
      if (x.method === 'ACK') {
        await barrier(p, uaPort);
        assert.deepEqual(p.queued(r.branch), [], 'an ACK is never answered');
        return;
      }
      const res = await p.response(r.branch, x.method);
      assert.equal(res.status, 481, `${x.method} in an unknown dialog: ${res.status} ${res.reason}`);
      checkResponse(res, r.branch, r.text);
      if (x.method === 'INVITE') p.send(ackFor(p, uaPort, { branch: r.branch, callId: x.callId, fromTag, seq: x.seq }, res));
    }), { numRuns: 120 });
    assert.equal(stats.invites, 0, 'no call was created');
    assertHealthy([udp, tcp]);
  });

  it('unknown methods get 501, recognised but unsupported ones 405 with Allow', async () => {
    const [udp, tcp] = [await peer('UDP'), await peer('TCP')];
    const unknown = tokenArb.filter((m) => !SERVED.includes(m) && !UNSUPPORTED.includes(m));
    await fc.assert(fc.asyncProperty(fc.oneof(unknown, fc.constantFrom(...UNSUPPORTED)), fc.option(fc.constant('sometag'), { nil: undefined }), fc.boolean(), async (method, toTag, useTcp) => {
      const p = useTcp ? tcp : udp;
      const r = request(p, useTcp ? uaTcp : uaUdp, { method, ...(toTag ? { toTag } : {}) });
      p.send(r.text);
      const res = await p.response(r.branch, method);
      checkResponse(res, r.branch, r.text);
      if (UNSUPPORTED.includes(method)) {
        assert.equal(res.status, 405, method);
        const allow = (res.get('Allow') ?? '').split(/\s*,\s*/);
        assert.deepEqual([...allow].sort(), [...SERVED].sort());
      } else {
        assert.equal(res.status, 501, method);
      }
    }), { numRuns: 120 });
    assertHealthy([udp, tcp]);
  });

  it('random in-dialog requests against a live call follow the RFC 3261 §12.2.2 model', async () => {
    type Op =
      | { op: 'info' | 'options' | 'bye' | 'unknown' | 'cancel' | 'strayAck' }
      | { op: 'stale'; back: number }
      | { op: 'wrongTag'; side: 'to' | 'from'; method: 'BYE' | 'INFO' | 'OPTIONS' | 'INVITE' }
      | { op: 'reinvite'; sdp: boolean };
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.constantFrom('info', 'options', 'bye', 'unknown', 'cancel', 'strayAck').map((o) => ({ op: o }) as Op),
      fc.integer({ min: 1, max: 5 }).map((back): Op => ({ op: 'stale', back })),
      fc.record({ op: fc.constant('wrongTag' as const), side: fc.constantFrom('to' as const, 'from' as const), method: fc.constantFrom('BYE' as const, 'INFO' as const, 'OPTIONS' as const, 'INVITE' as const) }),
      fc.record({ op: fc.constant('reinvite' as const), sdp: fc.boolean() }),
    );
    const udp = await peer('UDP');
    const tcp = await peer('TCP');
    await fc.assert(fc.asyncProperty(fc.boolean(), fc.array(op, { maxLength: 10 }), async (useTcp, ops) => {
      const p = useTcp ? tcp : udp;
      const uaPort = useTcp ? uaTcp : uaUdp;
      const byesBefore = stats.byes;
      // Set up the call: INVITE, 200 with our answer, ACK.
      const callId = newId();
      const fromTag = newId();
      const inv = request(p, uaPort, { method: 'INVITE', uri: `sip:accept@${HOST}:${uaPort}`, callId, fromTag, body: OFFER });
      p.send(inv.text);
      const ok = await p.response(inv.branch, 'INVITE');
      assert.equal(ok.status, 200);
      assert.equal(ok.body, ANSWER);
      const toTag = tagOf(ok.get('To'))!;
      assert.ok(toTag);
      const inDialog = (method: string, seq: number, o: Partial<Req> = {}): ReturnType<typeof request> =>
        request(p, uaPort, { method, callId, fromTag, toTag, cseq: `${seq} ${method}`, ...o });
      p.send(inDialog('ACK', 1, { set: { Contact: null } }).text);
      let alive = true;
      let seq = 1;        // our last CSeq
      let remoteSeq = 1;  // the last CSeq the UA took in the dialog
      try {
        for (const o of ops) {
          const expect = async (r: ReturnType<typeof request>, codes: number[], what: string): Promise<SipResponse> => {
            p.send(r.text);
            const res = await p.response(r.branch, r.method);
            assert.ok(codes.includes(res.status), `${what} (dialog ${alive ? 'alive' : 'over'}): got ${res.status} ${res.reason}, want ${codes}`);
            checkResponse(res, r.branch, r.text);
            return res;
          };
          switch (o.op) {
            case 'info':
            case 'options': {
              const method = o.op.toUpperCase();
              const res = await expect(inDialog(method, ++seq), alive ? [200] : [481], method);
              if (alive) remoteSeq = seq;
              if (res.status === 200 && method === 'OPTIONS') assert.ok(res.get('Allow'));
              break;
            }
            case 'stale':
              await expect(inDialog('INFO', Math.max(0, remoteSeq - o.back)), alive ? [500] : [481], `INFO with an old CSeq (below ${remoteSeq})`);
              break;
            case 'wrongTag': {
              const r = request(p, uaPort, {
                method: o.method, callId, cseq: `${++seq} ${o.method}`,
                fromTag: o.side === 'from' ? `${fromTag}x` : fromTag, toTag: o.side === 'to' ? `${toTag}x` : toTag,
                ...(o.method === 'INVITE' ? { body: OFFER } : {}),
              });
              const res = await expect(r, [481], `${o.method} with a wrong ${o.side} tag`);
              if (o.method === 'INVITE') p.send(ackFor(p, uaPort, { branch: r.branch, callId, fromTag: o.side === 'from' ? `${fromTag}x` : fromTag, seq }, res));
              break;
            }
            case 'reinvite': {
              const r = inDialog('INVITE', ++seq, o.sdp ? { body: OFFER } : {});
              const res = await expect(r, alive ? [o.sdp ? 200 : 488] : [481], `re-INVITE ${o.sdp ? 'with' : 'without'} SDP`);
              if (alive) remoteSeq = seq;
              if (res.status === 200) {
                assert.equal(res.body, ANSWER);
                assert.equal(res.get('Content-Type'), 'application/sdp');
                assert.ok(res.get('Contact'));
                p.send(inDialog('ACK', seq, { set: { Contact: null } }).text);       // 2xx ACK: a new transaction
              } else {
                p.send(ackFor(p, uaPort, { branch: r.branch, callId, fromTag, seq }, res)); // non-2xx ACK: same branch
              }
              break;
            }
            case 'unknown':
              await expect(inDialog('FROB', ++seq), [501], 'an unknown method in the dialog');
              break;
            case 'cancel':
              // CANCEL after the final response: 200 while the INVITE transaction lingers, else 481;
              // either way it has no effect on the dialog (§9.2).
              await expect(request(p, uaPort, { method: 'CANCEL', branch: inv.branch, callId, fromTag, cseq: '1 CANCEL' }), [200, 481], 'a late CANCEL');
              break;
            case 'strayAck': {
              const r = inDialog('ACK', seq + 100, { set: { Contact: null } });
              p.send(r.text);
              await barrier(p, uaPort);
              assert.deepEqual(p.queued(r.branch), []);
              break;
            }
            case 'bye':
              await expect(inDialog('BYE', ++seq), alive ? [200] : [481], 'BYE');
              alive = false;
              break;
          }
        }
        if (alive) {
          const r = inDialog('BYE', ++seq);
          p.send(r.text);
          const res = await p.response(r.branch, 'BYE');
          assert.equal(res.status, 200);
        }
        assert.equal(stats.byes, byesBefore + 1, 'the UA saw exactly one BYE end the call');
        assert.equal(ua.counters().dialogs, 0, 'the dialog is gone');
      } finally {
        // A failed run must not leave its call behind to fail the runs that shrink it.
        if (ua.counters().dialogs > 0) {
          const r = inDialog('BYE', seq + 1000);
          p.send(r.text);
          await p.response(r.branch, 'BYE').catch(() => undefined);
        }
      }
    }), { numRuns: 40 });
    assertHealthy([udp, tcp]);
  });

  it('TCP framing survives any chunking, keep-alives and spellings of Content-Length', async () => {
    await fc.assert(fc.asyncProperty(
      fc.array(fc.record({ body: fc.oneof(fc.constant(''), fc.string({ unit: 'grapheme', maxLength: 80 })), cl: fc.constantFrom('Content-Length: ', 'l:', 'content-length   :', 'Content-Length:\r\n  '), ping: fc.boolean() }), { minLength: 1, maxLength: 8 }),
      fc.array(fc.nat(), { maxLength: 12 }),
      async (msgs, cuts) => {
        const p = await Peer.tcp(uaTcp, sinkPort);
        try {
          const sent = msgs.map((m) => {
            const r = request(p, uaTcp, { method: 'OPTIONS', body: m.body, set: { 'Content-Type': m.body ? 'text/plain' : null } });
            // Re-spell the Content-Length header (compact, lower case, spaces, folded).
            const text = r.text.replace('Content-Length: ', m.cl);
            return { branch: r.branch, bytes: Buffer.concat([Buffer.from(m.ping ? '\r\n\r\n' : ''), Buffer.from(text)]) };
          });
          const stream = Buffer.concat(sent.map((s) => s.bytes));
          const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
          let from = 0;
          for (const at of [...points, stream.length]) {
            p.send(stream.subarray(from, at));
            from = at;
            await new Promise((r) => setImmediate(r));
          }
          for (const s of sent) assert.equal((await p.response(s.branch, 'OPTIONS')).status, 200);
          assert.deepEqual(p.garbage, []);
        } finally {
          p.close();
        }
      },
    ), { numRuns: 40 });
  });

  it('closes TCP streams whose framing is lost, and only those', async () => {
    for (const bad of [
      `OPTIONS sip:bob@${HOST} SIP/2.0\r\nVia: SIP/2.0/TCP ${HOST}:1;branch=z9hG4bKx\r\nCall-ID: nocl\r\n\r\n`,
      `OPTIONS sip:bob@${HOST} SIP/2.0\r\nX-Endless: ${'b'.repeat(70_000)}`,
      `OPTIONS sip:bob@${HOST} SIP/2.0\r\nContent-Length: 999999\r\n\r\n`,
      `OPTIONS sip:bob@${HOST} SIP/2.0\r\nContent-Length: 5\r\nl: 6\r\n\r\nhello!`,
      `OPTIONS sip:bob@${HOST} SIP/2.0\r\nContent-Length: -1\r\n\r\n`,
    ]) {
      const s = net.connect(uaTcp, HOST);
      s.on('error', () => undefined);
      await new Promise<void>((r) => s.on('connect', () => r()));
      s.write(bad);
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`stream not closed by the UA: ${bad.slice(0, 60)}`)), 5000);
        s.on('close', () => { clearTimeout(t); resolve(); });
      });
    }
  });

  it('survives a storm of mutated and random messages over UDP and TCP, then answers OPTIONS', async () => {
    const udp = await peer('UDP');
    const seed = Date.now() & 0x7fffffff;
    const acceptedBefore = stats.accepted;
    // Only what the UA would answer to us: an rport/our port in a parseable top Via, or no usable
    // Via at all (then it answers nobody over UDP, or only our own connection over TCP).
    const routesToUs = (b: Buffer, port: number, tcp: boolean): boolean => {
      let m: SipMessage | undefined;
      try { m = parseMessage(b); } catch (e) { m = (e as SipParseError).partial; }
      if (!m || m.kind !== 'request') return true;
      if (m.uri.includes('accept')) return false;
      let via: Via;
      try { via = parseVia(m.getAll('Via')[0] ?? ''); } catch { return true; }
      return tcp ? via.port === port : via.params.has('rport') || via.port === port;
    };
    const garbage = fc.oneof({ weight: 4, arbitrary: mutated(seedMessages(udp.viaPort, 'UDP')) }, { weight: 1, arbitrary: sipish },
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: 1400 }).map((b) => Buffer.from(b)) });
    const dgrams = fc.sample(garbage, { numRuns: 600, seed }).filter((d) => routesToUs(d, udp.viaPort, false));
    for (const [i, d] of dgrams.entries()) {
      if (d.length <= 65507) udp.send(d);
      if (i % 50 === 0) await new Promise((r) => setImmediate(r));
    }
    // TCP: connections each carrying a stream of mutated messages; the UA may close them.
    const tcpGarbage = fc.oneof({ weight: 4, arbitrary: mutated(seedMessages(sinkPort, 'TCP')) }, { weight: 1, arbitrary: sipish });
    const streams = fc.sample(fc.array(tcpGarbage, { minLength: 1, maxLength: 30 }), { numRuns: 16, seed: seed + 1 })
      .map((ms) => ms.filter((m) => routesToUs(m, sinkPort, true)));
    const tcpReplies: Buffer[] = [];
    await Promise.all(streams.map((msgs) => new Promise<void>((resolve) => {
      const s = net.connect(uaTcp, HOST);
      const reader = new StreamReader();
      s.on('error', () => undefined);
      s.on('data', (d) => reader.push(d, (m) => { if (Buffer.isBuffer(m)) tcpReplies.push(m); }));
      s.on('close', () => resolve());
      s.on('connect', () => {
        for (const m of msgs) s.write(m);
        // Half-close: the UA answers what it can, then we hang up.
        setTimeout(() => s.destroy(), 100);
      });
    })));
    assert.deepEqual(tcpReplies.map((b) => b.toString('latin1', 0, 80)), [], `TCP replies parse (seed ${seed})`);

    // After the storm: a valid OPTIONS over UDP and over a fresh TCP connection.
    await barrier(udp, uaUdp);
    const tcp = await peer('TCP');
    await barrier(tcp, uaTcp);
    // Everything the UA sent us was a well-formed response.
    assert.ok(udp.inbox.every((m) => m.kind === 'response'), `only responses (seed ${seed})`);
    assertHealthy([udp, tcp]);
    assert.equal(stats.accepted, acceptedBefore, 'the storm made no call');
  });
});

// ---------------------------------------------------------------------------------------------
// The whole server: its SIP gateway turns INVITEs into sessions and calls

describe("the server's SIP gateway fed odd INVITEs", { timeout: 60_000 }, () => {
  it('any user part, any SDP: 200, 488 or 404 — never a crash, a 500 or a leftover session', async () => {
    const server = await startTestServer({ sip: { udp_port: 0, t1_ms: 20 } });
    const rtpSink = dgram.createSocket('udp4');
    let p: Peer | undefined;
    try {
      await new Promise<void>((r) => rtpSink.bind(0, HOST, () => r()));
      rtpSink.on('message', () => undefined);
      const sipPort = server.sip!.addresses().udp!.port;
      const peer = await Peer.udp(sipPort);
      p = peer;
      // Media goes nowhere but to a socket of ours, whatever survives of this SDP.
      const base = `v=0\r\no=- 1 1 IN IP4 ${HOST}\r\ns=-\r\nc=IN IP4 ${HOST}\r\nt=0 0\r\nm=audio ${rtpSink.address().port} RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n`;
      const user = fc.oneof(
        fc.constantFrom('echo', 'park', '%65cho', 'pa%72k', 'ECHO', '%E0', '%FF%FE', '%00', 'a%0D%0AX-Injected:%20y', '%C3%A9', 'nobody'),
        fc.stringMatching(/^(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|%[0-9A-Fa-f]{2}){1,12}$/),
      );
      const lines = base.split('\r\n');
      const sdp = fc.oneof(
        fc.constant(base),
        fc.constant(''),                                           // late offer
        fc.string({ maxLength: 100 }),
        fc.array(fc.tuple(fc.nat(), fc.nat()), { minLength: 1, maxLength: 3 }).map((ops) => {
          const ls = [...lines];
          for (const [a, b] of ops) if (b % 2 === 0) ls.splice(a % ls.length, 1); else ls.splice(a % ls.length, 0, ls[b % ls.length]!);
          return ls.join('\r\n');
        }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0x20, max: 0x7e })), { minLength: 1, maxLength: 4 }).map((flips) => {
          const b = Buffer.from(base);
          for (const [i, v] of flips) b[i % b.length] = v;
          return b.toString('latin1');
        }),
        fc.constantFrom('RTP/SAVP 0', 'RTP/AVP 98\r\na=rtpmap:98 nothing/1', 'RTP/AVP', 'RTP/AVP 0 0 0 0', 'UDP/TLS/RTP/SAVPF 111')
          .map((m) => base.replace(/RTP\/AVP 0 8 101/, m)),
        fc.constantFrom('c=IN IP6 ::1', 'c=IN IP4 0.0.0.0', 'c=IN IP4 999.1.1.1', 'c=')
          .map((c) => base.replace(`c=IN IP4 ${HOST}`, c)),
        fc.integer({ min: 2, max: 6 }).map((n) => base + `m=audio ${rtpSink.address().port} RTP/AVP 0\r\n`.repeat(n - 1)),
      );
      await fc.assert(fc.asyncProperty(user, sdp, async (u, body) => {
        let decoded: string | undefined;
        try { decoded = decodeURIComponent(u); } catch { decoded = undefined; }
        const service = decoded === 'echo' || decoded === 'park';
        // Other users become calls to API users (none is logged in here: 404); such calls need
        // an offer in the INVITE (488 without). User parts are case-sensitive: ECHO is a user.
        // A user part whose escapes are not UTF-8 names nobody: 404.
        const expected = service ? [200, 488] : decoded === undefined || body !== '' ? [404] : [488];
        const callId = newId();
        const fromTag = newId();
        const inv = request(peer, sipPort, { method: 'INVITE', uri: `sip:${u}@${HOST}:${sipPort}`, callId, fromTag, body });
        peer.send(inv.text);
        const res = await peer.response(inv.branch, 'INVITE');
        assert.ok(expected.includes(res.status),
          `INVITE to ${JSON.stringify(u)} with ${JSON.stringify(body.slice(0, 80))}: ${res.status} ${res.reason}`);
        assert.equal(res.get('X-Injected'), undefined, 'no header injected through the reason phrase');
        if (res.status !== 200) {
          peer.send(ackFor(peer, sipPort, { branch: inv.branch, callId, fromTag, seq: 1 }, res));
          return;
        }
        const toTag = tagOf(res.get('To'));
        peer.send(request(peer, sipPort, { method: 'ACK', callId, fromTag, toTag, cseq: '1 ACK', set: { Contact: null } }).text);
        const bye = request(peer, sipPort, { method: 'BYE', callId, fromTag, toTag, cseq: '2 BYE' });
        peer.send(bye.text);
        // 481 when the server already hung up (a late offer whose ACK brought no answer).
        assert.ok([200, 481].includes((await peer.response(bye.branch, 'BYE')).status));
      }), { numRuns: 80, examples: [['%E0', base], ['a%0D%0AX-Injected:%20y', base], ['%65cho', base], ['park', '']] });
      await barrier(peer, sipPort);
      assert.deepEqual(peer.garbage, []);
      await eventually(async () => server.services.sessions.size === 0 && server.services.calls.size === 0
        && (await server.engine.counters()).elements === 0 && server.sip!.ua.counters().dialogs === 0, 10_000, 'no session, call, element or dialog left');
    } finally {
      p?.close();
      rtpSink.close();
      await server.close();
    }
  });
});
