// SIP messages (RFC 3261 §7, §20): parsing, serialization and header helpers.
//
// The parser checks framing only (start line, header syntax, Content-Length); the meaning of
// individual headers (Via, CSeq, From...) is checked by the helpers below when the UA needs it,
// so that a request with one bad header can still be answered with a precise 400.

import { parseParams, readQuoted, splitHostPort, SipUriError } from './uri.js';

export class SipParseError extends Error {
  override name = 'SipParseError';
  /** What could be parsed (start line and headers), for answering a broken request with 400. */
  partial?: SipMessage;
  constructor(message: string, partial?: SipMessage) {
    super(message);
    if (partial) this.partial = partial;
  }
}

export interface Header { name: string; value: string }

// Compact forms (RFC 3261 §7.3.3 and later RFCs) and the canonical spelling of common names.
// Maps, not object literals: a header named `__proto__` or `constructor` must not find
// Object.prototype's members (its name became an object, and get() threw on the message).
const COMPACT = new Map<string, string>(Object.entries({
  i: 'Call-ID', m: 'Contact', e: 'Content-Encoding', l: 'Content-Length', c: 'Content-Type',
  f: 'From', s: 'Subject', k: 'Supported', t: 'To', v: 'Via', o: 'Event', r: 'Refer-To',
  b: 'Referred-By', u: 'Allow-Events', a: 'Accept-Contact', j: 'Reject-Contact',
  d: 'Request-Disposition', x: 'Session-Expires', y: 'Identity', n: 'Identity-Info',
}));
const CANONICAL = new Map<string, string>(
  ['Accept', 'Accept-Encoding', 'Accept-Language', 'Alert-Info', 'Allow', 'Authentication-Info',
    'Authorization', 'Call-ID', 'Call-Info', 'Contact', 'Content-Disposition', 'Content-Encoding',
    'Content-Language', 'Content-Length', 'Content-Type', 'CSeq', 'Date', 'Error-Info', 'Expires',
    'From', 'In-Reply-To', 'Max-Forwards', 'Min-Expires', 'MIME-Version', 'Organization',
    'Priority', 'Proxy-Authenticate', 'Proxy-Authorization', 'Proxy-Require', 'Record-Route',
    'Reply-To', 'Require', 'Retry-After', 'Route', 'Server', 'Subject', 'Supported', 'Timestamp',
    'To', 'Unsupported', 'User-Agent', 'Via', 'Warning', 'WWW-Authenticate', 'Event',
    'Allow-Events', 'Session-Expires', 'Min-SE', 'RSeq', 'RAck', 'Path', 'Service-Route',
    'Refer-To', 'Referred-By'].map((n) => [n.toLowerCase(), n]),
);
// Headers whose value is a comma-separated list that may also be split over several lines.
const LIST_HEADERS = new Set(['via', 'route', 'record-route', 'contact', 'allow', 'supported',
  'require', 'proxy-require', 'unsupported', 'accept', 'accept-encoding', 'accept-language',
  'content-encoding', 'allow-events', 'in-reply-to', 'path', 'service-route']);

export function canonicalName(name: string): string {
  const lower = name.toLowerCase();
  return COMPACT.get(lower) ?? CANONICAL.get(lower) ?? name;
}

const TOKEN_RE = /^[A-Za-z0-9\-.!%*_+`'~]+$/;

abstract class MessageBase {
  headers: Header[] = [];
  body = '';

  /** First value of a header (compact or long name, any case); for lists, the whole first line. */
  get(name: string): string | undefined {
    const n = canonicalName(name).toLowerCase();
    return this.headers.find((h) => h.name.toLowerCase() === n)?.value;
  }
  /** All values, list headers split at top-level commas (outside quotes and <>). */
  getAll(name: string): string[] {
    const n = canonicalName(name).toLowerCase();
    const vals = this.headers.filter((h) => h.name.toLowerCase() === n).map((h) => h.value);
    return LIST_HEADERS.has(n) ? vals.flatMap(splitList) : vals;
  }
  has(name: string): boolean {
    return this.get(name) !== undefined;
  }
  set(name: string, value: string): this {
    this.remove(name);
    this.headers.push({ name: canonicalName(name), value });
    return this;
  }
  add(name: string, value: string): this {
    this.headers.push({ name: canonicalName(name), value });
    return this;
  }
  remove(name: string): this {
    const n = canonicalName(name).toLowerCase();
    this.headers = this.headers.filter((h) => h.name.toLowerCase() !== n);
    return this;
  }
  /** Replaces the first Via value (used to add received/rport). */
  setTopVia(value: string): void {
    const i = this.headers.findIndex((h) => h.name === 'Via');
    if (i < 0) return;
    const list = splitList(this.headers[i]!.value);
    list[0] = value;
    this.headers[i] = { name: 'Via', value: list.join(', ') };
  }
}

export class SipRequest extends MessageBase {
  readonly kind = 'request' as const;
  constructor(public method: string, public uri: string, public version = 'SIP/2.0') { super(); }
}

export class SipResponse extends MessageBase {
  readonly kind = 'response' as const;
  constructor(public status: number, public reason: string, public version = 'SIP/2.0') { super(); }
}

export type SipMessage = SipRequest | SipResponse;

/** Splits a header value at commas outside quoted strings and <...>. */
export function splitList(value: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let quoted = false;
  let start = 0;
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (quoted) {
      if (c === '\\') i++;
      else if (c === '"') quoted = false;
    } else if (c === '"') quoted = true;
    else if (c === '<') depth++;
    else if (c === '>') depth = Math.max(0, depth - 1);
    else if (c === ',' && depth === 0) {
      out.push(value.slice(start, i).trim());
      start = i + 1;
    }
  }
  out.push(value.slice(start).trim());
  return out.filter((v) => v !== '');
}

/** Where the header section ends: index of the blank line and where the body starts. */
export function findHeaderEnd(buf: Buffer, from = 0): { end: number; bodyStart: number } | undefined {
  const crlf = buf.indexOf('\r\n\r\n', from);
  const lf = buf.indexOf('\n\n', from);
  if (crlf >= 0 && (lf < 0 || crlf < lf)) return { end: crlf, bodyStart: crlf + 4 };
  if (lf >= 0) return { end: lf, bodyStart: lf + 2 };
  return undefined;
}

/** Parses the Content-Length values of a header section (undefined: none). Throws on bad ones. */
export function contentLengthOf(headers: Header[]): number | undefined {
  let cl: number | undefined;
  for (const h of headers) {
    if (h.name !== 'Content-Length') continue;
    const v = h.value.trim();
    if (!/^\d{1,10}$/.test(v)) throw new Error(`bad Content-Length ${JSON.stringify(v.slice(0, 20))}`);
    const n = Number(v);
    if (cl !== undefined && cl !== n) throw new Error('conflicting Content-Length headers');
    cl = n;
  }
  return cl;
}

/**
 * Parses one message. `buf` is a whole datagram or one framed stream message. Bytes past
 * Content-Length are ignored (RFC 3261 §18.3); with no Content-Length the rest is the body.
 * Throws SipParseError (and nothing else) on malformed input.
 */
export function parseMessage(buf: Buffer): SipMessage {
  try {
    return parseUnchecked(buf);
  } catch (e) {
    if (e instanceof SipParseError) throw e;
    throw new SipParseError(e instanceof Error ? e.message : String(e));
  }
}

function parseUnchecked(buf: Buffer): SipMessage {
  // Empty lines before the start line are ignored (RFC 3261 §7.5; also keep-alive CRLFs).
  let offset = 0;
  while (offset < buf.length && (buf[offset] === 0x0d || buf[offset] === 0x0a)) offset++;
  if (offset >= buf.length) throw new SipParseError('empty message');
  const he = findHeaderEnd(buf, offset);
  // A datagram without the blank line is taken as headers only (lenient: missing final CRLF).
  const headEnd = he ? he.end : buf.length;
  const bodyStart = he ? he.bodyStart : buf.length;
  // A CR before an LF-only blank line ("\r\n\n") belongs to the line end, not to the header.
  const head = buf.toString('utf8', offset, headEnd).replace(/\r$/, '');
  if (head.includes('\0')) throw new SipParseError('NUL byte in header section');
  const rawLines = head.split(/\r?\n/);
  const startLine = rawLines.shift() ?? '';
  const msg = parseStartLine(startLine);

  const lines = unfoldHeaderLines(rawLines);
  let headerError: string | undefined;
  for (const l of lines) {
    if (l === '') continue; // only possible at the end, when the final blank line is missing
    if (l.includes('\r')) {
      // A CR not followed by LF: other stacks may take it as a line end, so a header carrying
      // one (and echoed into our responses) could read as two. RFC 3261 §7.3.1 has no bare CR.
      headerError ??= `bare CR in header line ${JSON.stringify(l.slice(0, 40))}`;
      continue;
    }
    const colon = l.indexOf(':');
    const name = colon > 0 ? l.slice(0, colon).trimEnd() : '';
    if (!TOKEN_RE.test(name)) {
      headerError ??= `malformed header line ${JSON.stringify(l.slice(0, 40))}`;
      continue;
    }
    msg.headers.push({ name: canonicalName(name), value: l.slice(colon + 1).trim() });
  }
  if (headerError) throw new SipParseError(headerError, msg);

  let cl: number | undefined;
  try {
    cl = contentLengthOf(msg.headers);
  } catch (e) {
    throw new SipParseError((e as Error).message, msg);
  }
  const available = buf.length - bodyStart;
  if (cl !== undefined && cl > available) {
    throw new SipParseError(`Content-Length ${cl} larger than the ${available} body bytes`, msg);
  }
  const bodyEnd = cl !== undefined ? bodyStart + cl : buf.length;
  msg.body = buf.toString('utf8', bodyStart, bodyEnd);
  return msg;
}

/**
 * Header lines with continuation lines (starting with SP/HT) joined to the header before them
 * (RFC 3261 §7.3.1). The transport frames TCP with it too, so framing and parsing agree.
 */
export function unfoldHeaderLines(rawLines: string[]): string[] {
  const lines: string[] = [];
  for (const l of rawLines) {
    if ((l.startsWith(' ') || l.startsWith('\t')) && lines.length > 0) {
      lines[lines.length - 1] += ' ' + l.trim();
    } else {
      lines.push(l);
    }
  }
  return lines;
}

function parseStartLine(line: string): SipMessage {
  if (/^SIP\//i.test(line)) {
    // Not `.`: it stops at U+2028/U+2029, which a UTF-8 reason phrase may hold (RFC 3261 §25.1).
    const m = /^(SIP\/\d+\.\d+) (\d{3})(?: ([^\r\n]*))?$/i.exec(line);
    if (!m) throw new SipParseError(`malformed status line ${JSON.stringify(line.slice(0, 60))}`);
    const status = Number(m[2]);
    if (status < 100 || status > 699) throw new SipParseError(`status code ${status} out of range`);
    return new SipResponse(status, m[3] ?? '', m[1]!.toUpperCase());
  }
  const parts = line.split(' ');
  if (parts.length !== 3) throw new SipParseError(`malformed request line ${JSON.stringify(line.slice(0, 60))}`);
  const [method, uri, version] = parts as [string, string, string];
  if (!TOKEN_RE.test(method)) throw new SipParseError('bad method');
  if (!/^[A-Za-z][A-Za-z0-9+.-]*:\S+$/.test(uri)) throw new SipParseError('bad Request-URI');
  if (!/^SIP\/\d+\.\d+$/i.test(version)) throw new SipParseError('bad SIP version');
  return new SipRequest(method, uri, version.toUpperCase());
}

// What must never reach the wire inside a start line or header: a CR or LF would split it
// (response splitting: a header injected by whoever chose the text), a NUL makes the message
// unparseable.
const BREAK_RE = /[\0\r\n]/g;

/**
 * Serializes a message; Content-Length is always (re)computed from the body. CR, LF and NUL in
 * the reason phrase and header values (say, a reason built from a decoded Request-URI) become
 * spaces, so that what we send parses back as what we built.
 */
export function serialize(msg: SipMessage): Buffer {
  const start = msg.kind === 'request'
    ? `${msg.method} ${msg.uri} ${msg.version}`
    : `${msg.version} ${msg.status} ${msg.reason.replace(BREAK_RE, ' ')}`;
  const body = Buffer.from(msg.body, 'utf8');
  let head = start + '\r\n';
  for (const h of msg.headers) {
    if (h.name === 'Content-Length') continue;
    head += `${h.name}: ${h.value.replace(BREAK_RE, ' ')}\r\n`;
  }
  head += `Content-Length: ${body.length}\r\n\r\n`;
  return Buffer.concat([Buffer.from(head, 'utf8'), body]);
}

// ---------------------------------------------------------------------------------------------
// Typed views of individual headers. Each throws HeaderError with a message naming the problem.

export class HeaderError extends Error {
  override name = 'HeaderError';
}

export interface Via {
  transport: string;          // upper-case: UDP, TCP, TLS...
  host: string;               // lower-case, IPv6 with brackets
  port?: number;
  params: Map<string, string | null>;
  branch?: string;
}

const VIA_RE = /^([A-Za-z0-9\-.!%*_+`'~]+)\s*\/\s*([A-Za-z0-9.]+)\s*\/\s*([A-Za-z0-9\-.!%*_+`'~]+)\s+([^;\s]+)\s*(?::\s*(\d+))?\s*(;.*)?$/s;

export function parseVia(value: string): Via {
  const m = VIA_RE.exec(value.trim());
  if (!m || m[1]!.toUpperCase() !== 'SIP') throw new HeaderError('malformed Via');
  const hp = splitHostPort(m[5] !== undefined ? `${m[4]}:${m[5]}` : m[4]!);
  if (!hp) throw new HeaderError('bad Via sent-by');
  let params: Map<string, string | null>;
  try {
    params = parseParams(m[6] ?? '');
  } catch (e) {
    throw new HeaderError(`bad Via parameters: ${(e as SipUriError).message}`);
  }
  const via: Via = { transport: m[3]!.toUpperCase(), host: hp.host, params };
  if (hp.port !== undefined) via.port = hp.port;
  const branch = params.get('branch');
  if (branch) via.branch = branch;
  return via;
}

export function formatVia(v: Via): string {
  let s = `SIP/2.0/${v.transport} ${v.host}${v.port !== undefined ? `:${v.port}` : ''}`;
  for (const [k, val] of v.params) s += val === null ? `;${k}` : `;${k}=${val}`;
  return s;
}

export interface CSeq { seq: number; method: string }

export function parseCSeq(value: string): CSeq {
  const m = /^(\d{1,10})\s+([A-Za-z0-9\-.!%*_+`'~]+)$/.exec(value.trim());
  if (!m) throw new HeaderError('malformed CSeq');
  const seq = Number(m[1]);
  // RFC 3261 §8.1.1.5: the sequence number must be below 2**31.
  if (seq >= 2 ** 31) throw new HeaderError('CSeq number too large');
  return { seq, method: m[2]! };
}

/** A non-negative integer header such as Max-Forwards or Expires (with an upper bound). */
export function parseUint(value: string, what: string, max: number): number {
  const v = value.trim();
  if (!/^\d{1,10}$/.test(v) || Number(v) > max) throw new HeaderError(`bad ${what}`);
  return Number(v);
}

/** Media type of Content-Type without parameters, lower-cased. */
export function mediaType(value: string | undefined): string | undefined {
  return value?.split(';')[0]!.trim().toLowerCase();
}

/** `Digest a=b, c="d"` → scheme and params (names lower-cased, values unquoted). */
export function parseAuthParams(value: string): { scheme: string; params: Map<string, string> } {
  const s = value.trim();
  const sp = s.search(/\s/);
  if (sp <= 0) throw new HeaderError('malformed authentication header');
  const scheme = s.slice(0, sp);
  const params = new Map<string, string>();
  let i = sp;
  while (i < s.length) {
    while (i < s.length && /[\s,]/.test(s[i]!)) i++;
    if (i >= s.length) break;
    const ns = i;
    while (i < s.length && /[A-Za-z0-9\-_.]/.test(s[i]!)) i++;
    const name = s.slice(ns, i).toLowerCase();
    while (i < s.length && /\s/.test(s[i]!)) i++;
    if (name === '' || s[i] !== '=') throw new HeaderError('malformed authentication parameter');
    i++;
    while (i < s.length && /\s/.test(s[i]!)) i++;
    let val: string;
    if (s[i] === '"') {
      const q = readQuoted(s, i);
      if (!q) throw new HeaderError('unterminated quoted authentication parameter');
      val = q.value;
      i = q.end;
    } else {
      const vs = i;
      while (i < s.length && !/[\s,]/.test(s[i]!)) i++;
      val = s.slice(vs, i);
    }
    params.set(name, val);
  }
  return { scheme, params };
}

/** Default reason phrases for the codes we send. */
export const REASONS: Record<number, string> = {
  100: 'Trying', 180: 'Ringing', 181: 'Call Is Being Forwarded', 182: 'Queued',
  183: 'Session Progress', 200: 'OK', 202: 'Accepted', 400: 'Bad Request', 401: 'Unauthorized',
  403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed', 407: 'Proxy Authentication Required',
  408: 'Request Timeout', 415: 'Unsupported Media Type', 416: 'Unsupported URI Scheme',
  420: 'Bad Extension', 423: 'Interval Too Brief', 480: 'Temporarily Unavailable',
  481: 'Call/Transaction Does Not Exist', 482: 'Loop Detected', 483: 'Too Many Hops',
  486: 'Busy Here', 487: 'Request Terminated', 488: 'Not Acceptable Here', 491: 'Request Pending',
  500: 'Server Internal Error', 501: 'Not Implemented', 503: 'Service Unavailable',
  504: 'Server Time-out', 505: 'Version Not Supported', 513: 'Message Too Large',
  600: 'Busy Everywhere', 603: 'Decline', 604: 'Does Not Exist Anywhere', 606: 'Not Acceptable',
};

/**
 * Builds a response to `req` (RFC 3261 §8.2.6): copies Via, From, To, Call-ID, CSeq (whichever
 * exist, so that even a broken request can be answered) and adds `toTag` when To has no tag.
 */
export function makeResponse(req: SipRequest, status: number, reason?: string, toTag?: string): SipResponse {
  const res = new SipResponse(status, reason ?? REASONS[status] ?? 'Unknown');
  for (const h of req.headers) {
    if (h.name === 'Via') res.add('Via', h.value);
  }
  const from = req.get('From');
  if (from !== undefined) res.add('From', from);
  const to = req.get('To');
  if (to !== undefined) {
    const hasTag = /;\s*tag\s*=/i.test(to);
    res.add('To', !hasTag && toTag && status > 100 ? `${to};tag=${toTag}` : to);
  }
  for (const n of ['Call-ID', 'CSeq']) {
    const v = req.get(n);
    if (v !== undefined) res.add(n, v);
  }
  if (status === 100) {
    const ts = req.get('Timestamp');
    if (ts !== undefined) res.add('Timestamp', ts);
  }
  return res;
}
