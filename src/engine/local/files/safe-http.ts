// The only code that talks to the remote servers `play` reads from. URLs come from clients, so
// every connection is checked on the address actually connected to (a name is resolved by our
// own lookup, which refuses any address the policy does not allow: DNS rebinding gets nowhere),
// redirects are followed here, one checked hop at a time, and failures carry fixed texts
// chosen here, never the text of Node's errors (which would make `play` a port scanner).
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import http, { type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import https from 'node:https';
import { isIP, type LookupFunction, type Socket } from 'node:net';

/** Whether an address may be connected to (see addressPolicy in util/addresses.ts). */
export type AddressPolicy = (ip: string) => boolean;

export type HttpFailureReason =
  | 'bad_url' | 'not_allowed' | 'redirect_not_allowed' | 'bad_redirect' | 'too_many_redirects'
  | 'cannot_resolve' | 'cannot_connect' | 'timed_out';

const TEXTS: Record<HttpFailureReason, string> = {
  bad_url: 'not a valid http(s) URL',
  not_allowed: 'host not allowed (not a public address)',
  redirect_not_allowed: 'redirect to a host that is not allowed',
  bad_redirect: 'redirect to a URL that is not http(s)',
  too_many_redirects: 'too many redirects',
  cannot_resolve: 'cannot resolve the host',
  cannot_connect: 'cannot connect',
  timed_out: 'no response (timed out)',
};

/** A request that failed or was refused: `message` is fit for clients, `detail` is for logs only. */
export class HttpFailure extends Error {
  constructor(readonly reason: HttpFailureReason, readonly detail?: string) {
    super(TEXTS[reason]);
    this.name = 'HttpFailure';
  }
}

export interface CheckedRequestOptions {
  allow: AddressPolicy;
  method?: 'GET' | 'HEAD';
  /** A Range header value (`bytes=0-99`). */
  range?: string;
  /** Until the response headers arrive, per hop. */
  timeoutMs?: number;
  maxRedirects?: number;
  signal?: AbortSignal;
}

export interface CheckedResponse {
  status: number;
  headers: IncomingHttpHeaders;
  /** The body: read it or destroy it. */
  body: IncomingMessage;
  /** Where it came from after redirects. */
  url: URL;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/** Parses a client's http(s) URL; credentials in it are refused (they would be sent on). */
export function parseHttpUrl(uri: string): URL {
  let url: URL;
  try { url = new URL(uri); } catch { throw new HttpFailure('bad_url'); }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.username || url.password || !url.hostname) throw new HttpFailure('bad_url');
  return url;
}

const bare = (host: string) => (host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host);

/**
 * A GET or HEAD of `url`, following redirects (each hop checked like the first). Rejects with
 * an HttpFailure; any HTTP status is a response (the caller decides what 4xx/5xx mean).
 */
export async function checkedRequest(url: URL, opts: CheckedRequestOptions): Promise<CheckedResponse> {
  const max = opts.maxRedirects ?? 5;
  let current = url;
  for (let hop = 0; ; hop++) {
    let res: IncomingMessage;
    try {
      res = await requestOnce(current, opts);
    } catch (err) {
      if (hop > 0 && err instanceof HttpFailure && err.reason === 'not_allowed') throw new HttpFailure('redirect_not_allowed', err.detail);
      throw err;
    }
    const status = res.statusCode ?? 0;
    const location = res.headers.location;
    if (!REDIRECTS.has(status) || !location) return { status, headers: res.headers, body: res, url: current };
    res.destroy();
    if (hop >= max) throw new HttpFailure('too_many_redirects');
    let next: URL;
    try { next = parseHttpUrl(new URL(location, current).href); } catch { throw new HttpFailure('bad_redirect'); }
    current = next;
  }
}

/** One request, no redirects: the address is checked before connecting and once connected. */
function requestOnce(url: URL, opts: CheckedRequestOptions): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const host = bare(url.hostname);
    // Literal addresses are never passed to `lookup` by Node: check them here.
    if (isIP(host) !== 0 && !opts.allow(host)) { reject(new HttpFailure('not_allowed', host)); return; }
    if (opts.signal?.aborted) { reject(new HttpFailure('cannot_connect', 'aborted')); return; }
    const headers: Record<string, string> = { 'user-agent': 'nkmedia', accept: '*/*', 'accept-encoding': 'identity' };
    if (opts.range) headers.range = opts.range;
    const req = (url.protocol === 'https:' ? https : http).request({
      protocol: url.protocol, hostname: host, port: url.port || undefined, path: `${url.pathname}${url.search}`,
      method: opts.method ?? 'GET', headers, agent: false, lookup: checkedLookup(opts.allow), signal: opts.signal,
      // A host name for TLS (certificate and SNI); Node takes none for literal addresses.
      ...(url.protocol === 'https:' && isIP(host) === 0 ? { servername: host } : {}),
    });
    const timer = setTimeout(() => req.destroy(new HttpFailure('timed_out')), opts.timeoutMs ?? 10000);
    req.on('socket', (socket: Socket) => {
      // Belt and braces: whatever path led here, the peer must be an allowed address.
      socket.once('connect', () => {
        const peer = socket.remoteAddress;
        if (!peer || !opts.allow(peer)) req.destroy(new HttpFailure('not_allowed', peer));
      });
    });
    let response: IncomingMessage | undefined;
    req.once('response', (res) => { clearTimeout(timer); response = res; resolve(res); });
    // Kept on for the whole exchange: a later error ends the body (an unheard one would throw).
    req.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (response) { response.destroy(err); return; }
      if (err instanceof HttpFailure) reject(err);
      else if (err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN' || err.code === 'ENODATA') reject(new HttpFailure('cannot_resolve', err.message));
      else reject(new HttpFailure('cannot_connect', err.message));
    });
    req.end();
  });
}

/** A `lookup` for net.connect that fails when any address of the name is not allowed. */
function checkedLookup(allow: AddressPolicy): LookupFunction {
  return ((hostname: string, options: { family?: number | string; all?: boolean }, callback: (...args: unknown[]) => void) => {
    const family = options.family === 'IPv4' ? 4 : options.family === 'IPv6' ? 6 : Number(options.family ?? 0) || 0;
    dnsLookup(hostname, { all: true, verbatim: true, family }, (err, addresses: LookupAddress[]) => {
      if (err) { callback(err); return; }
      if (addresses.length === 0) { callback(new HttpFailure('cannot_resolve', `${hostname}: no address`)); return; }
      // One inward address refuses the name: a host that points inside is not "public".
      const refused = addresses.find((a) => !allow(a.address));
      if (refused) { callback(new HttpFailure('not_allowed', `${hostname} → ${refused.address}`)); return; }
      if (options.all) callback(null, addresses);
      else callback(null, addresses[0]!.address, addresses[0]!.family);
    });
  }) as LookupFunction;
}
