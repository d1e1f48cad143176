// SIP URIs (RFC 3261 §19.1) and name-addr values (From, To, Contact, Route, Record-Route).
// Parsing is strict enough to refuse what would break routing (spaces, bad ports, bad hosts)
// and lenient about everything that only needs to be carried through unchanged.

export class SipUriError extends Error {
  override name = 'SipUriError';
}

export interface SipUri {
  scheme: 'sip' | 'sips';
  /** The user part exactly as written (may hold %-escapes and ';' — RFC 4475 "semiuri"). */
  user?: string;
  password?: string;
  /** Lower-cased; IPv6 references keep their brackets. */
  host: string;
  port?: number;
  /** URI parameters: names lower-cased, values as written (`null` for a flag such as `lr`). */
  params: Map<string, string | null>;
  /** The `?headers` part as written, without the `?`. */
  headers?: string;
}

const HOST_RE = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\.?)$/;
const TOKEN_RE = /^[A-Za-z0-9\-.!%*_+`'~]+$/;
// RFC 3261 user/param characters (unreserved, escaped and the user/param-unreserved sets).
const USER_RE = /^(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|%[0-9A-Fa-f]{2})+$/;
const PARAM_RE = /^(?:[A-Za-z0-9\-_.!~*'()[\]/:&+$]|%[0-9A-Fa-f]{2})+$/;

/** Decodes %XX escapes; invalid escapes are kept as written. */
export function unescape(s: string): string {
  return s.replace(/%([0-9A-Fa-f]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
}

/** Parses a sip:/sips: URI. Throws SipUriError on anything else. */
export function parseUri(text: string): SipUri {
  const s = text.trim();
  const colon = s.indexOf(':');
  if (colon <= 0) throw new SipUriError(`not a URI: ${JSON.stringify(text.slice(0, 80))}`);
  const scheme = s.slice(0, colon).toLowerCase();
  if (scheme !== 'sip' && scheme !== 'sips') throw new SipUriError(`unsupported URI scheme ${JSON.stringify(scheme.slice(0, 20))}`);
  if (/[\s<>"]/.test(s)) throw new SipUriError('URI contains white space or delimiters');
  let rest = s.slice(colon + 1);
  const uri: SipUri = { scheme, host: '', params: new Map() };
  // The first '@' ends the userinfo: users, params and headers cannot hold a raw '@'.
  const at = rest.indexOf('@');
  if (at >= 0) {
    const userinfo = rest.slice(0, at);
    rest = rest.slice(at + 1);
    const pw = userinfo.indexOf(':');
    const user = pw >= 0 ? userinfo.slice(0, pw) : userinfo;
    if (user === '' || !USER_RE.test(user)) throw new SipUriError('bad user part');
    uri.user = user;
    if (pw >= 0) uri.password = userinfo.slice(pw + 1);
  }
  const q = rest.indexOf('?');
  if (q >= 0) {
    uri.headers = rest.slice(q + 1);
    rest = rest.slice(0, q);
  }
  const parts = rest.split(';');
  const hostport = parts.shift() ?? '';
  const hp = splitHostPort(hostport);
  if (!hp) throw new SipUriError(`bad host/port ${JSON.stringify(hostport.slice(0, 80))}`);
  uri.host = hp.host;
  if (hp.port !== undefined) uri.port = hp.port;
  for (const p of parts) {
    if (p === '') continue;
    const eq = p.indexOf('=');
    const name = (eq >= 0 ? p.slice(0, eq) : p).toLowerCase();
    const value = eq >= 0 ? p.slice(eq + 1) : null;
    if (!PARAM_RE.test(name) || (value !== null && value !== '' && !PARAM_RE.test(value))) {
      throw new SipUriError(`bad URI parameter ${JSON.stringify(p.slice(0, 40))}`);
    }
    uri.params.set(name, value);
  }
  return uri;
}

/** `host[:port]` with IPv6 brackets; undefined when malformed. Host is lower-cased. */
export function splitHostPort(s: string): { host: string; port?: number } | undefined {
  let host: string;
  let portText: string | undefined;
  if (s.startsWith('[')) {
    const end = s.indexOf(']');
    if (end < 0) return undefined;
    host = s.slice(0, end + 1);
    const after = s.slice(end + 1);
    if (after !== '') {
      if (!after.startsWith(':')) return undefined;
      portText = after.slice(1);
    }
  } else {
    const c = s.indexOf(':');
    host = c >= 0 ? s.slice(0, c) : s;
    if (c >= 0) portText = s.slice(c + 1);
  }
  if (!HOST_RE.test(host)) return undefined;
  if (portText === undefined) return { host: host.toLowerCase() };
  if (!/^\d{1,5}$/.test(portText)) return undefined;
  const port = Number(portText);
  if (port < 1 || port > 65535) return undefined;
  return { host: host.toLowerCase(), port };
}

export function formatUri(u: SipUri): string {
  let s = `${u.scheme}:`;
  if (u.user !== undefined) s += u.user + (u.password !== undefined ? `:${u.password}` : '') + '@';
  s += u.host;
  if (u.port !== undefined) s += `:${u.port}`;
  for (const [k, v] of u.params) s += v === null ? `;${k}` : `;${k}=${v}`;
  if (u.headers !== undefined) s += `?${u.headers}`;
  return s;
}

/** Host with brackets removed, for socket calls. */
export function bareHost(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

/** Host as written in a URI or Via (IPv6 gets brackets). */
export function uriHost(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

// ---------------------------------------------------------------------------------------------
// name-addr / addr-spec with header parameters

export interface NameAddr {
  display?: string;
  /** The URI text as written (may be a non-SIP URI such as tel: — we carry those unparsed). */
  uri: string;
  /** Header parameters (after the URI): names lower-cased. `tag` lives here. */
  params: Map<string, string | null>;
}

/** Parses `"Display" <uri>;p=v`, `Display <uri>` or `uri;p=v`. Throws SipUriError. */
export function parseNameAddr(text: string): NameAddr {
  let s = text.trim();
  let display: string | undefined;
  let uri: string;
  if (s.startsWith('"')) {
    const q = readQuoted(s, 0);
    if (!q) throw new SipUriError('unterminated quoted display name');
    display = q.value;
    s = s.slice(q.end).trimStart();
    if (!s.startsWith('<')) throw new SipUriError('display name without <URI>');
  }
  if (!s.startsWith('<')) {
    const lt = s.indexOf('<');
    if (lt > 0 && display === undefined) {
      // Unquoted display name: a run of tokens separated by white space.
      const d = s.slice(0, lt).trim();
      if (!d.split(/\s+/).every((t) => TOKEN_RE.test(t))) throw new SipUriError('bad display name');
      display = d;
      s = s.slice(lt);
    }
  }
  if (s.startsWith('<')) {
    const gt = s.indexOf('>');
    if (gt < 0) throw new SipUriError('missing ">"');
    uri = s.slice(1, gt).trim();
    s = s.slice(gt + 1);
  } else {
    // addr-spec: the URI cannot contain ';', ',' or '?' here; what follows ';' is header params.
    const semi = s.indexOf(';');
    uri = (semi >= 0 ? s.slice(0, semi) : s).trim();
    s = semi >= 0 ? s.slice(semi) : '';
  }
  if (uri === '' || !/^[A-Za-z][A-Za-z0-9+.-]*:\S+$/.test(uri)) throw new SipUriError('bad URI in name-addr');
  const params = parseParams(s);
  const out: NameAddr = { uri, params };
  if (display !== undefined && display !== '') out.display = display;
  return out;
}

export function formatNameAddr(na: NameAddr): string {
  let s = na.display !== undefined ? `${quote(na.display)} <${na.uri}>` : `<${na.uri}>`;
  for (const [k, v] of na.params) s += v === null ? `;${k}` : `;${k}=${v}`;
  return s;
}

/** Quotes a display name, escaping quotes and backslashes. */
export function quote(s: string): string {
  return `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/** Reads a quoted-string starting at s[i] === '"'; returns the unescaped value and end index. */
export function readQuoted(s: string, i: number): { value: string; end: number } | undefined {
  let value = '';
  for (let j = i + 1; j < s.length; j++) {
    const c = s[j];
    if (c === '\\') {
      if (j + 1 >= s.length) return undefined;
      value += s[++j];
    } else if (c === '"') {
      return { value, end: j + 1 };
    } else {
      value += c;
    }
  }
  return undefined;
}

/** `;a=b;c;d="x y"` → Map (names lower-cased; quoted values keep their quotes). */
export function parseParams(s: string): Map<string, string | null> {
  const params = new Map<string, string | null>();
  let i = 0;
  const n = s.length;
  const skipWs = (): void => { while (i < n && (s[i] === ' ' || s[i] === '\t')) i++; };
  skipWs();
  while (i < n) {
    if (s[i] !== ';') throw new SipUriError(`unexpected ${JSON.stringify(s.slice(i, i + 20))} in parameters`);
    i++;
    skipWs();
    const start = i;
    while (i < n && /[A-Za-z0-9\-.!%*_+`'~]/.test(s[i]!)) i++;
    const name = s.slice(start, i).toLowerCase();
    if (name === '') throw new SipUriError('empty parameter name');
    skipWs();
    let value: string | null = null;
    if (s[i] === '=') {
      i++;
      skipWs();
      if (s[i] === '"') {
        const q = readQuoted(s, i);
        if (!q) throw new SipUriError('unterminated quoted parameter');
        value = s.slice(i, q.end); // kept quoted, so that it serializes back unchanged
        i = q.end;
      } else {
        const vs = i;
        while (i < n && /[^\s;,]/.test(s[i]!)) i++;
        value = s.slice(vs, i);
      }
      skipWs();
    }
    params.set(name, value);
  }
  return params;
}
