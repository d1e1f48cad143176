// Runtime patches to werift for what a remote peer or the operating system can do to it
// (installed once per process, like fast-rtp.ts, through internals.ts's patch points, which are
// checked when the engine starts; node_modules is never edited). The project
// imports werift as ESM (lib/index.mjs): the classes patched here are the ones that bundle uses.
//
// - UDP sockets: werift binds its ICE sockets with no 'error' listener, so `bind EMFILE` (the
//   descriptor limit) or a port taken between its probe and its bind is an unhandled 'error'
//   event: the process exits. Here a bind error rejects `init()` (gathering then just has no
//   candidate on that address) and errors after binding go to a handler, never unhandled.
// - ICE TCP (not used by default): the passive listener gets a lasting 'error' listener too.
// - mDNS: a remote candidate named `<uuid>.local` (browsers hide their addresses so) makes werift
//   open a multicast-dns socket on port 5353 whose bind failure (EMFILE, EADDRINUSE) is an
//   'error' event nobody listens to. It gets a listener; the failed resolver is dropped.
// - STUN: werift answers every binding request, whatever its USERNAME and MESSAGE-INTEGRITY,
//   with a success response and a triggered check toward the sender (a new peer-reflexive
//   candidate and pair per source address). Requests that fail authentication are dropped
//   silently instead (RFC 8445 §7.3 lets an agent discard them; RFC 5389 would answer 400/401,
//   which only feeds a flood).
import { AsyncLocalStorage } from 'node:async_hooks';
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Socket } from 'node:dgram';
import {
  wrapIceAddRemoteCandidate, wrapIceEnsureProtocol, wrapStunDatagramReceived, wrapTcpPassiveConnectionMade, wrapUdpTransportInit,
  type WeriftIceConnection, type WeriftProtocol, type WeriftTcpPassive, type WeriftUdpTransport,
} from './internals.js';

// ---- UDP sockets ------------------------------------------------------------------------------

/** Every port of a configured range is taken (or refused): there is nothing left to bind. */
export class PortRangeExhausted extends Error {
  constructor(readonly range: [number, number], readonly last?: Error) {
    super(`ICE port range ${range[0]}-${range[1]} exhausted${last ? `; last: ${last.message}` : ''}`);
  }
}

/** A bind failure in words for an error message: the range used up, or the system's refusal. */
export function describeBindFailure(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EMFILE') return `${err.message}: the process has no file descriptor left`;
  if (code === 'ENFILE') return `${err.message}: the system has no file descriptor left`;
  return err.message;
}

/**
 * Bind failures of the sockets werift opens while gathering, collected per caller: an endpoint
 * runs its SDP work inside `bindFailures.run([])` and learns why it got no candidate.
 */
export const bindFailures = new AsyncLocalStorage<Error[]>();

/** Handlers for errors on bound sockets, per transport (set by the endpoint that owns it). */
const socketErrorHandlers = new WeakMap<object, (err: Error) => void>();
/** Socket errors no element owns (mDNS, ICE TCP, a socket not yet claimed): counted, never unhandled. */
export const unownedSocketErrors = { count: 0, last: undefined as Error | undefined };

/** Routes later errors of a werift transport's socket to `handler` (the owning element's). */
export function onTransportSocketError(transport: object, handler: (err: Error) => void): void {
  socketErrorHandlers.set(transport, handler);
}

/** Ports worth trying after this error; any other error (EMFILE, ENOBUFS, ...) ends the search. */
const NEXT_PORT = new Set(['EADDRINUSE', 'EACCES']);
/** Where the next search of each range starts: after the last port bound, not always at its start. */
const rangeCursor = new Map<string, number>();

function tryBind(socket: Socket, port: number, address: string | undefined): Promise<Error | undefined> {
  return new Promise((resolve) => {
    const done = (err?: Error): void => {
      socket.off('error', done);
      socket.off('listening', onListening);
      resolve(err);
    };
    const onListening = (): void => done();
    socket.once('error', done);
    socket.once('listening', onListening);
    try {
      socket.bind({ port, address });
    } catch (err) {
      done(err as Error);
    }
  });
}

async function bindInRange(socket: Socket, [min, max]: [number, number], address: string | undefined): Promise<void> {
  const key = `${address ?? '*'}:${min}-${max}`;
  const span = max - min + 1;
  const start = rangeCursor.get(key) ?? min;
  let last: Error | undefined;
  // Bound directly (no probe-then-bind like werift's findPort): two endpoints gathering at once
  // cannot pick the same port, and a failed bind leaves the socket ready for the next try.
  for (let i = 0; i < span; i++) {
    const port = min + ((start - min + i) % span);
    const err = await tryBind(socket, port, address);
    if (!err) {
      rangeCursor.set(key, port >= max ? min : port + 1);
      return;
    }
    if (!NEXT_PORT.has((err as NodeJS.ErrnoException).code ?? '')) throw err;
    last = err;
  }
  throw new PortRangeExhausted([min, max], last);
}

/** Replaces werift's UdpTransport.prototype.init: same binding choices, errors handled. */
async function initUdpTransport(this: WeriftUdpTransport): Promise<void> {
  const { socket, options } = this;
  const address = options.interfaceAddresses?.[this.socketType];
  try {
    if (options.port) {
      const err = await tryBind(socket, options.port, address);
      if (err) throw err;
    } else if (options.portRange) {
      await bindInRange(socket, options.portRange, address);
    } else {
      const err = await tryBind(socket, 0, address);
      if (err) throw err;
    }
  } catch (err) {
    bindFailures.getStore()?.push(err as Error);
    this.closed = true;
    try { socket.close(); } catch { /* never bound: nothing to close */ }
    throw err;
  }
  socket.on('error', (err: Error) => {
    const handler = socketErrorHandlers.get(this);
    if (handler) {
      try { handler(err); } catch { /* a handler's failure must not escape into the socket */ }
      return;
    }
    unownedSocketErrors.count++;
    unownedSocketErrors.last = err;
  });
}

// ---- mDNS ---------------------------------------------------------------------------------------

type AddRemoteCandidate = (this: WeriftIceConnection, candidate: unknown) => Promise<void>;
const guardedLookups = new WeakSet<object>();

function guardedAddRemoteCandidate(original: AddRemoteCandidate): AddRemoteCandidate {
  return function addRemoteCandidate(this: WeriftIceConnection, candidate: unknown): Promise<void> {
    // werift creates its resolver synchronously, before its first await; the socket's bind
    // fails later (asynchronously): a listener added now is in time.
    const result = original.call(this, candidate);
    const lookup = this.lookup;
    if (lookup?.mdnsInstance && !guardedLookups.has(lookup)) {
      guardedLookups.add(lookup);
      lookup.mdnsInstance.on('error', (err) => {
        unownedSocketErrors.count++;
        unownedSocketErrors.last = err;
        // The lookups waiting on it time out (werift ignores their candidates); the next
        // .local candidate gets a new resolver.
        if (this.lookup === lookup) this.lookup = undefined;
        try { lookup.close?.(); } catch { /* never bound */ }
      });
    }
    return result;
  };
}

// ---- STUN -------------------------------------------------------------------------------------

/** The werift ICE Connection fields the credential check reads. */
type IceCredentials = Pick<WeriftIceConnection, 'localUsername' | 'localPassword' | 'userHistory'>;

const STUN_COOKIE = 0x2112a442;
const ATTR_USERNAME = 0x0006;
const ATTR_MESSAGE_INTEGRITY = 0x0008;

/** A STUN request (RFC 5389 §6: top bits 0, the magic cookie, class bits 00). */
function isStunRequest(data: Buffer): boolean {
  return data.length >= 20 && (data[0]! & 0xc0) === 0 && (data.readUInt16BE(0) & 0x0110) === 0 && data.readUInt32BE(4) === STUN_COOKIE;
}

/**
 * Whether a STUN request carries our credentials (RFC 8445 §7.3, RFC 5389 §10.1.2): a USERNAME
 * "<our ufrag>:<theirs>" naming our current ufrag (or an earlier one, after an ICE restart) and
 * a MESSAGE-INTEGRITY made with that ufrag's password. Read from the raw datagram, before werift
 * parses it (its parser, CRC32 fingerprint included, is most of what a request costs): a wrong
 * ufrag costs an attribute walk, only a request naming our ufrag pays for the HMAC.
 */
export function authenticStunRequest(conn: IceCredentials, data: Buffer): boolean {
  let username: string | undefined;
  let pos = 20;
  const end = Math.min(data.length, 20 + data.readUInt16BE(2));
  while (pos + 4 <= end) {
    const type = data.readUInt16BE(pos);
    const len = data.readUInt16BE(pos + 2);
    if (pos + 4 + len > end) return false;
    if (type === ATTR_USERNAME) username = data.toString('utf8', pos + 4, pos + 4 + len);
    else if (type === ATTR_MESSAGE_INTEGRITY) {
      // Attributes after MESSAGE-INTEGRITY (FINGERPRINT) are outside what it signs.
      if (len !== 20 || username === undefined) return false;
      const colon = username.indexOf(':');
      if (colon <= 0) return false;
      const ufrag = username.slice(0, colon);
      const password = ufrag === conn.localUsername ? conn.localPassword
        : Object.hasOwn(conn.userHistory, ufrag) ? conn.userHistory[ufrag] : undefined;
      if (typeof password !== 'string') return false;
      // HMAC-SHA1 over the message up to this attribute, its length field set as if it ended here.
      const length = Buffer.allocUnsafe(2);
      length.writeUInt16BE(pos + 24 - 20);
      const mac = createHmac('sha1', password).update(data.subarray(0, 2)).update(length).update(data.subarray(4, pos)).digest();
      return timingSafeEqual(mac, data.subarray(pos + 4, pos + 24));
    }
    pos += 4 + len + ((4 - (len % 4)) % 4);
  }
  return false; // no MESSAGE-INTEGRITY
}

/** Requests dropped for bad credentials (process-wide, for tests and monitoring). */
export const stunRequestsDropped = { count: 0 };

/** Each protocol (socket) werift's ICE agent reads from, with that agent's credentials. */
const agentOf = new WeakMap<object, IceCredentials>();

type EnsureProtocol = (this: WeriftIceConnection, protocol: WeriftProtocol) => void;

function guardedEnsureProtocol(original: EnsureProtocol): EnsureProtocol {
  return function ensureProtocol(this: WeriftIceConnection, protocol: WeriftProtocol): void {
    agentOf.set(protocol, this);
    const event = protocol.onRequestReceived;
    if (!event || typeof event.subscribe !== 'function') { original.call(this, protocol); return; }
    const conn = this;
    const subscribe = event.subscribe;
    // werift subscribes its request handler here: it only ever sees authenticated requests,
    // whatever the protocol (UDP requests were already checked in datagramReceived; TCP ones
    // are checked here). Every werift protocol passes the raw message; without it nothing can
    // be verified and werift's own handling is kept rather than breaking an unknown path.
    event.subscribe = (execute, ...rest) => subscribe((msg, addr, data) => {
      if (Buffer.isBuffer(data) && !authenticStunRequest(conn, data)) { stunRequestsDropped.count++; return; }
      execute(msg, addr, data);
    }, ...rest);
    try {
      original.call(this, protocol);
    } finally {
      event.subscribe = subscribe;
    }
  };
}

type DatagramReceived = (this: object, data: Buffer, addr: unknown) => void;

/** UDP: unauthenticated requests are dropped before werift parses them. */
function guardedDatagramReceived(original: DatagramReceived): DatagramReceived {
  return function datagramReceived(this: object, data: Buffer, addr: unknown): void {
    if (Buffer.isBuffer(data) && isStunRequest(data)) {
      const conn = agentOf.get(this);
      if (conn && !authenticStunRequest(conn, data)) { stunRequestsDropped.count++; return; }
    }
    original.call(this, data, addr);
  };
}

// ---- install ------------------------------------------------------------------------------------

let installed = false;

/** Installs the patches above into werift (once per process). */
export function installWeriftPatches(): void {
  if (installed) return;
  installed = true;
  wrapUdpTransportInit(() => initUdpTransport);

  wrapTcpPassiveConnectionMade((tcpConnectionMade) => function connectionMade(this: WeriftTcpPassive, ...args: unknown[]): Promise<void> {
    // accept() at the descriptor limit is an 'error' event on a listening server.
    this.server.on('error', (err) => { unownedSocketErrors.count++; unownedSocketErrors.last = err; });
    return tcpConnectionMade.apply(this, args);
  });

  wrapIceEnsureProtocol(guardedEnsureProtocol);
  wrapIceAddRemoteCandidate(guardedAddRemoteCandidate);
  wrapStunDatagramReceived(guardedDatagramReceived);
}
