// Dialog state (RFC 3261 §12): identifiers, CSeq spaces, remote target and route set, and the
// construction of in-dialog requests with loose or strict routing (§12.2.1.1, §16.12.1.2).

import { parseCSeq, SipRequest, type SipResponse } from './message.js';
import { formatNameAddr, parseNameAddr, parseUri, type NameAddr, type SipUri } from './uri.js';
import type { TransportName } from './transport.js';

export interface Dialog {
  callId: string;
  localTag: string;
  remoteTag: string;
  /** Our From (UAC) / To (UAS) without the tag, and the peer's. */
  local: NameAddr;
  remote: NameAddr;
  localSeq: number;
  /** Highest CSeq seen from the peer (undefined until its first request). */
  remoteSeq?: number;
  remoteTarget: string;
  /** Route set as name-addr values, first hop first. */
  routeSet: string[];
  /** Transport the dialog was made on: default for in-dialog requests. */
  transport: TransportName;
}

export function tagOf(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  try {
    const t = parseNameAddr(value).params.get('tag');
    return t ?? undefined;
  } catch {
    return undefined;
  }
}

function withoutTag(na: NameAddr): NameAddr {
  const params = new Map(na.params);
  params.delete('tag');
  return { ...na, params };
}

function contactUri(msg: SipRequest | SipResponse): string | undefined {
  const c = msg.getAll('Contact')[0];
  if (c === undefined) return undefined;
  try {
    return parseNameAddr(c).uri;
  } catch {
    return undefined;
  }
}

/** The dialog a UAS makes from a request it answers with a 1xx/2xx carrying `localTag`. */
export function dialogAsUas(req: SipRequest, localTag: string, transport: TransportName): Dialog {
  const from = parseNameAddr(req.get('From') ?? '');
  const to = parseNameAddr(req.get('To') ?? '');
  return {
    callId: req.get('Call-ID') ?? '',
    localTag,
    remoteTag: from.params.get('tag') ?? '',
    local: withoutTag(to),
    remote: withoutTag(from),
    localSeq: Math.floor(Math.random() * 10000) + 1,
    remoteSeq: parseCSeq(req.get('CSeq') ?? '').seq,
    remoteTarget: contactUri(req) ?? req.uri,
    routeSet: req.getAll('Record-Route'),
    transport,
  };
}

/** The dialog a UAC makes from its request and a 1xx/2xx response with a To tag. */
export function dialogAsUac(req: SipRequest, res: SipResponse, transport: TransportName): Dialog {
  const from = parseNameAddr(req.get('From') ?? '');
  const to = parseNameAddr(res.get('To') ?? '');
  return {
    callId: req.get('Call-ID') ?? '',
    localTag: from.params.get('tag') ?? '',
    remoteTag: to.params.get('tag') ?? '',
    local: withoutTag(from),
    remote: withoutTag(to),
    localSeq: parseCSeq(req.get('CSeq') ?? '').seq,
    remoteTarget: contactUri(res) ?? req.uri,
    routeSet: res.getAll('Record-Route').reverse(),
    transport,
  };
}

/** Updates the remote target from a target-refresh request or its 2xx (§12.2). */
export function refreshTarget(d: Dialog, msg: SipRequest | SipResponse): void {
  const u = contactUri(msg);
  if (u !== undefined) d.remoteTarget = u;
}

/**
 * A request inside the dialog, without Via (the UA adds it). CSeq is taken from `seq` when
 * given (ACK, CANCEL), else the dialog's next local number.
 */
export function inDialogRequest(d: Dialog, method: string, seq?: number): SipRequest {
  let uri = d.remoteTarget;
  const routes = [...d.routeSet];
  if (routes.length > 0 && !isLoose(routes[0]!)) {
    // Strict routing: the first route becomes the Request-URI, the remote target goes last.
    uri = parseNameAddr(routes.shift()!).uri;
    routes.push(`<${d.remoteTarget}>`);
  }
  const req = new SipRequest(method, uri);
  req.add('Max-Forwards', '70');
  for (const r of routes) req.add('Route', r);
  req.add('From', formatNameAddr({ ...d.local, params: new Map([...d.local.params, ['tag', d.localTag]]) }));
  req.add('To', formatNameAddr({ ...d.remote, params: new Map([...d.remote.params, ['tag', d.remoteTag]]) }));
  req.add('Call-ID', d.callId);
  const n = seq ?? ++d.localSeq;
  req.add('CSeq', `${n} ${method}`);
  return req;
}

function isLoose(route: string): boolean {
  try {
    return parseUri(parseNameAddr(route).uri).params.has('lr');
  } catch {
    return true;
  }
}

/** Where a request goes first: its first Route, else its Request-URI (§8.1.2). */
export function nextHopUri(req: SipRequest): SipUri {
  const route = req.getAll('Route')[0];
  return parseUri(route !== undefined ? parseNameAddr(route).uri : req.uri);
}
