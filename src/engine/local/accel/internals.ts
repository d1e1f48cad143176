// The one module that reaches into werift's and Node's private parts (and one private field of
// mediabunny's). Everything else in the engine goes through the accessors and patch points
// below, so that what we depend on is listed, typed and checked in one place.
//
// werift is pinned (package.json) because of this: its private fields and methods change between
// releases without notice. `checkInternals()` probes throwaway werift objects (a peer connection
// with one transceiver, an SRTP session with dummy keys, a candidate pair, an unbound UDP socket)
// for every field, method and prototype we read, write or replace, and names what is missing
// together with werift's installed version. The engine runs it once, when it is constructed.
// What is missing is either fatal (the engine would misbehave: `required`), turns the native
// forwarding plane off (`plane`), or only loses a refinement (`optional`).
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import dgram, { type Socket } from 'node:dgram';
import {
  CandidatePair, Connection, ProtectionProfileAes128CmHmacSha1_80, RTCPeerConnection, type RTCRtpReceiver, type RTCRtpSender,
  RtpHeader, RtpPacket, SrtcpSession, SrtpSession, StunProtocol, TcpPassiveProtocol, UdpTransport,
  type RTCDtlsTransport,
} from 'werift';
import { BufferTarget, Mp4OutputFormat, Output } from 'mediabunny';

// ---- versions -----------------------------------------------------------------------------------

/** The version in the package.json of the installed package `name` (found from its entry point). */
function installedVersion(name: string): string {
  try {
    let dir = dirname(createRequire(import.meta.url).resolve(name));
    for (;;) {
      const file = join(dir, 'package.json');
      if (existsSync(file)) {
        const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
        if (pkg.name === name) return pkg.version ?? 'unknown';
      }
      const up = dirname(dir);
      if (up === dir) return 'unknown';
      dir = up;
    }
  } catch {
    return 'unknown';
  }
}

/** The version our own package.json (the nearest one above this file) pins. */
function pinnedVersion(name: string): string | undefined {
  try {
    let dir = dirname(fileURLToPath(import.meta.url));
    for (;;) {
      const file = join(dir, 'package.json');
      if (existsSync(file)) {
        const pkg = JSON.parse(readFileSync(file, 'utf8')) as { dependencies?: Record<string, string> };
        return pkg.dependencies?.[name];
      }
      const up = dirname(dir);
      if (up === dir) return undefined;
      dir = up;
    }
  } catch {
    return undefined;
  }
}

export const weriftVersion = installedVersion('werift');
export const weriftPinned = pinnedVersion('werift');

// ---- Node: dgram ----------------------------------------------------------------------------------

/** The libuv handle of a dgram socket: its descriptor, and reading stopped/restarted. */
export interface UdpHandle { fd: number; recvStart(): number; recvStop(): number }

/** dgram keeps its handle in a state object behind a symbol (the `_handle` getter is deprecated). */
function dgramState(socket: Socket): { handle?: Partial<UdpHandle> } | undefined {
  const sym = Object.getOwnPropertySymbols(socket).find((s) => s.description === 'state symbol');
  return sym ? (socket as unknown as Record<symbol, { handle?: Partial<UdpHandle> } | undefined>)[sym] : undefined;
}

/** A bound socket's handle, or undefined (not bound, closed, or Node keeps it elsewhere). */
export function udpHandle(socket: Socket): UdpHandle | undefined {
  const h = dgramState(socket)?.handle;
  return h && typeof h.fd === 'number' && h.fd >= 0 && typeof h.recvStop === 'function' && typeof h.recvStart === 'function'
    ? h as UdpHandle : undefined;
}

// ---- werift: ICE ------------------------------------------------------------------------------------

/** werift's UdpTransport (one ICE socket). */
export interface WeriftUdpTransport {
  readonly type: 'udp';
  socketType: 'udp4' | 'udp6';
  options: { port?: number; portRange?: [number, number]; interfaceAddresses?: Partial<Record<'udp4' | 'udp6', string>> };
  socket: Socket;
  closed: boolean;
}
type RequestListener = (msg: unknown, addr: unknown, data?: Buffer) => void;
/** werift's Event, as far as the STUN guard uses it. */
export interface RequestEvent { subscribe: (execute: RequestListener, ...rest: unknown[]) => unknown }
/** A protocol werift's ICE agent reads from: a StunProtocol (UDP) or a TCP/TURN one. */
export interface WeriftProtocol {
  type: string;
  transport?: { type?: string; closed?: boolean; socket?: Socket };
  onRequestReceived?: RequestEvent;
}
/** werift's CandidatePair. */
export interface WeriftPair { protocol: WeriftProtocol; remoteAddr: [string, number]; packetsSent: number; bytesSent: number }
/** werift's mDNS resolver (a multicast socket). */
export interface MdnsLookupLike { mdnsInstance?: { on(ev: 'error', l: (err: Error) => void): unknown }; close?: () => void }
/** werift's ICE Connection: the fields we read or write. */
export interface WeriftIceConnection {
  localUsername: string;
  localPassword: string;
  userHistory: Record<string, string>;
  lookup?: MdnsLookupLike;
  stunServer?: unknown;
  localCandidates: unknown[];
  protocols: WeriftProtocol[];
  nominated?: WeriftPair;
  canSendApplicationData(): boolean;
  send(data: Buffer): Promise<void>;
}
/** werift's TcpPassiveProtocol (ICE TCP listener). */
export interface WeriftTcpPassive { server: { on(ev: 'error', l: (err: Error) => void): unknown } }

/** The ICE connections of a peer connection (one when bundled). */
export function iceConnections(pc: RTCPeerConnection): WeriftIceConnection[] {
  return pc.iceTransports.map((t) => t.connection as unknown as WeriftIceConnection);
}

/** The ICE connection under a DTLS transport. */
export function iceConnectionOf(dtls: RTCDtlsTransport): WeriftIceConnection {
  return dtls.iceTransport.connection as unknown as WeriftIceConnection;
}

// ---- werift: RTP senders and receivers ---------------------------------------------------------

/** werift's StreamStatistics (RFC 3550 receive statistics per incoming SSRC). */
export interface StreamStats {
  packets_received: number; bytesReceived: number; headerBytesReceived: number; base_seq?: number; max_seq?: number;
  cycles: number; jitter_q4: number; last_arrival?: number; last_timestamp?: number;
  readonly packets_lost: number; readonly jitter: number; clockRate: number;
}
/** werift's NackHandler. */
export interface NackHandler {
  mediaSourceSsrc?: number;
  setLost(seq: number, count: number): void;
  getLost(seq: number): number | undefined;
  removeLost(seq: number): void;
  addPacket: unknown;
}
/** werift's per-stream RTCP loops (RTCRtpSender/RTCRtpReceiver.runRtcp). */
export interface RtcpLoop { rtcpRunning: boolean; rtcpCancel: AbortController; stopped?: boolean; runRtcp(): Promise<void> }
/** werift receiver fields (private in its typings). */
export interface ReceiverInternals extends RtcpLoop {
  nack: NackHandler; remoteStreams: Record<number, StreamStats>;
  lastSRtimestamp: Record<number, number>; receiveLastSRTimestamp: Record<number, number>;
  senderReportsReceivedBySsrc: Record<number, number>; remoteTimestampsBySsrc: Record<number, number>;
  remotePacketCountBySsrc: Record<number, number>; remoteOctetCountBySsrc: Record<number, number>;
}
/** werift sender fields: what its sender reports say, and what reception reports update. */
export interface SenderInternals extends RtcpLoop {
  packetCount: number; octetCount: number; ntpTimestamp: bigint; rtpTimestamp: number; cname?: string;
  remotePacketsLost?: number; remoteFractionLost?: number; lastSRtimestamp?: number; lastSentSRTimestamp?: number;
  rtt?: number; totalRoundTripTime: number; roundTripTimeMeasurements: number;
}

export const receiverInternals = (r: RTCRtpReceiver): ReceiverInternals => r as unknown as ReceiverInternals;
export const senderInternals = (s: RTCRtpSender): SenderInternals => s as unknown as SenderInternals;

/** Every sender's and receiver's RTCP loop of a peer connection. */
export function rtcpLoops(pc: RTCPeerConnection): RtcpLoop[] {
  return pc.getTransceivers().flatMap((t) => [senderInternals(t.sender), receiverInternals(t.receiver)]);
}

// ---- werift: patch points ---------------------------------------------------------------------

/** werift's own RTP header parser, as loaded (before any replacement). */
export const weriftRtpHeaderParser: (raw: Buffer) => RtpHeader = RtpHeader.deSerialize.bind(RtpHeader);

/** Makes werift parse every incoming RTP header with `parse`. */
export function replaceRtpHeaderParser(parse: (raw: Buffer) => RtpHeader): void {
  (RtpHeader as unknown as { deSerialize: (raw: Buffer) => RtpHeader }).deSerialize = parse;
}

type Method<T, A extends unknown[], R> = (this: T, ...args: A) => R;

/** Replaces a prototype method with `wrap(original)`. */
function wrapMethod<T, A extends unknown[], R>(proto: object, name: string, wrap: (original: Method<T, A, R>) => Method<T, A, R>): void {
  const p = proto as Record<string, Method<T, A, R>>;
  p[name] = wrap(p[name]!);
}

/** UdpTransport.init: binds the ICE socket. */
export function wrapUdpTransportInit(wrap: (original: Method<WeriftUdpTransport, [], Promise<void>>) => Method<WeriftUdpTransport, [], Promise<void>>): void {
  wrapMethod(UdpTransport.prototype, 'init', wrap);
}

/** TcpPassiveProtocol.connectionMade: starts the ICE TCP listener. */
export function wrapTcpPassiveConnectionMade(wrap: (original: Method<WeriftTcpPassive, unknown[], Promise<void>>) => Method<WeriftTcpPassive, unknown[], Promise<void>>): void {
  wrapMethod(TcpPassiveProtocol.prototype, 'connectionMade', wrap);
}

/** Connection.ensureProtocol: the ICE agent starts reading a protocol (subscribes its request handler). */
export function wrapIceEnsureProtocol(wrap: (original: Method<WeriftIceConnection, [WeriftProtocol], void>) => Method<WeriftIceConnection, [WeriftProtocol], void>): void {
  wrapMethod(Connection.prototype, 'ensureProtocol', wrap);
}

/** Connection.addRemoteCandidate (creates the mDNS resolver for `.local` candidates). */
export function wrapIceAddRemoteCandidate(wrap: (original: Method<WeriftIceConnection, [unknown], Promise<void>>) => Method<WeriftIceConnection, [unknown], Promise<void>>): void {
  wrapMethod(Connection.prototype, 'addRemoteCandidate', wrap);
}

/** StunProtocol.datagramReceived: every datagram of a UDP ICE socket. */
export function wrapStunDatagramReceived(wrap: (original: Method<object, [Buffer, unknown], void>) => Method<object, [Buffer, unknown], void>): void {
  wrapMethod(StunProtocol.prototype, 'datagramReceived', wrap);
}

/** Replaces one SRTP session's transforms (instance properties, so werift's transport uses them). */
export function replaceSrtpTransforms(session: SrtpSession, t: { encrypt: SrtpSession['encrypt']; decrypt: SrtpSession['decrypt'] }): void {
  session.encrypt = t.encrypt;
  session.decrypt = t.decrypt;
}

/** The same for SRTCP. */
export function replaceSrtcpTransforms(session: SrtcpSession, t: { encrypt: SrtcpSession['encrypt']; decrypt: SrtcpSession['decrypt'] }): void {
  session.encrypt = t.encrypt;
  session.decrypt = t.decrypt;
}

// ---- mediabunny --------------------------------------------------------------------------------

/**
 * Ends a fragmented MP4's current fragment now (not a public API of mediabunny: its HLS muxer
 * uses it), or undefined when this mediabunny has no such method.
 */
export function fragmentFinalizer(output: Output | undefined): (() => Promise<void>) | undefined {
  const muxer = (output as unknown as { _muxer?: { forceFragmentFinalization?: () => Promise<void> } } | undefined)?._muxer;
  return typeof muxer?.forceFragmentFinalization === 'function' ? () => muxer.forceFragmentFinalization!() : undefined;
}

// ---- the check ------------------------------------------------------------------------------------

/** Throwaway objects to look at (all of them made by `probe()`; a test may pass fakes). */
export interface Probe {
  rtpHeader: unknown;
  prototypes: Record<'udpTransport' | 'tcpPassive' | 'iceConnection' | 'stunProtocol', unknown>;
  connection: unknown;
  receiver: unknown;
  sender: unknown;
  streamStats: unknown;
  pair: unknown;
  stunProtocol: unknown;
  udpTransport: unknown;
  srtp: unknown;
  srtcp: unknown;
  /** An unbound dgram socket. */
  udpSocket: unknown;
  /** A fragmented-MP4 mediabunny Output. */
  mp4Output: unknown;
  /** What could not be built at all (the constructors themselves changed). */
  failures: string[];
}

export type Severity = 'required' | 'plane' | 'optional';

interface Requirement { severity: Severity; what: string; ok: (p: Probe) => boolean }

const field = (o: unknown, k: string): unknown => (o !== null && (typeof o === 'object' || typeof o === 'function') ? (o as Record<string, unknown>)[k] : undefined);
const has = (o: unknown, k: string): boolean => o !== null && (typeof o === 'object' || typeof o === 'function') && k in (o as object);
const fn = (o: unknown, k: string): boolean => typeof field(o, k) === 'function';
const num = (o: unknown, k: string): boolean => typeof field(o, k) === 'number';
const rec = (o: unknown, k: string): boolean => { const v = field(o, k); return v !== null && typeof v === 'object'; };

/** One requirement per name: `<object>.<field>` with a test of its shape. */
function each(severity: Severity, subject: string, pick: (p: Probe) => unknown, test: (o: unknown, k: string) => boolean, names: string[]): Requirement[] {
  return names.map((k) => ({ severity, what: `${subject}.${k}`, ok: (p) => test(pick(p), k) }));
}

const REQUIREMENTS: Requirement[] = [
  // Patched or replaced (fast-rtp.ts, werift-patches.ts).
  ...each('required', 'RtpHeader', (p) => p.rtpHeader, fn, ['deSerialize']),
  ...each('required', 'UdpTransport.prototype', (p) => p.prototypes.udpTransport, fn, ['init']),
  ...each('required', 'TcpPassiveProtocol.prototype', (p) => p.prototypes.tcpPassive, fn, ['connectionMade']),
  ...each('required', 'Connection.prototype', (p) => p.prototypes.iceConnection, fn, ['ensureProtocol', 'addRemoteCandidate']),
  ...each('required', 'StunProtocol.prototype', (p) => p.prototypes.stunProtocol, fn, ['datagramReceived']),
  // The patched UDP bind and the STUN credential check.
  ...each('required', 'UdpTransport', (p) => p.udpTransport, has, ['socketType', 'options', 'socket', 'closed']),
  { severity: 'required', what: 'UdpTransport.socket (a dgram socket werift reads "message" from)', ok: (p) => {
    const s = field(p.udpTransport, 'socket') as Socket | undefined;
    return !!s && typeof s.listenerCount === 'function' && s.listenerCount('message') > 0;
  } },
  { severity: 'required', what: 'UdpTransport.type === "udp"', ok: (p) => field(p.udpTransport, 'type') === 'udp' },
  ...each('required', 'Connection', (p) => p.connection, has, ['localUsername', 'localPassword', 'userHistory', 'lookup', 'stunServer', 'nominated']),
  ...each('required', 'Connection', (p) => p.connection, (o, k) => Array.isArray(field(o, k)), ['localCandidates', 'protocols']),
  ...each('required', 'Connection', (p) => p.connection, fn, ['canSendApplicationData', 'send']),
  { severity: 'required', what: 'StunProtocol.type === "stun"', ok: (p) => field(p.stunProtocol, 'type') === 'stun' },
  { severity: 'required', what: 'StunProtocol.onRequestReceived.subscribe', ok: (p) => fn(field(p.stunProtocol, 'onRequestReceived'), 'subscribe') },
  ...each('required', 'StunProtocol', (p) => p.stunProtocol, has, ['transport']),
  // The fast send path (webrtc-endpoint.ts) and the plane's attachment.
  ...each('required', 'CandidatePair', (p) => p.pair, has, ['protocol', 'remoteAddr']),
  ...each('required', 'CandidatePair', (p) => p.pair, num, ['packetsSent', 'bytesSent']),
  ...each('required', 'RTCRtpSender', (p) => p.sender, num, ['packetCount', 'octetCount', 'rtpTimestamp', 'totalRoundTripTime', 'roundTripTimeMeasurements']),
  { severity: 'required', what: 'RTCRtpSender.ntpTimestamp (a bigint)', ok: (p) => typeof field(p.sender, 'ntpTimestamp') === 'bigint' },
  ...each('required', 'RTCRtpSender', (p) => p.sender, has, ['remotePacketsLost', 'remoteFractionLost', 'rtt', 'lastSRtimestamp', 'lastSentSRTimestamp', 'cname', 'stopped']),
  ...each('required', 'RTCRtpSender', (p) => p.sender, fn, ['runRtcp']),
  ...each('required', 'RTCRtpReceiver', (p) => p.receiver, rec, [
    'remoteStreams', 'lastSRtimestamp', 'receiveLastSRTimestamp', 'senderReportsReceivedBySsrc', 'remoteTimestampsBySsrc',
    'remotePacketCountBySsrc', 'remoteOctetCountBySsrc', 'nack',
  ]),
  ...each('required', 'RTCRtpReceiver.nack', (p) => field(p.receiver, 'nack'), fn, ['setLost', 'getLost', 'removeLost', 'addPacket']),
  ...each('required', 'RTCRtpReceiver.nack', (p) => field(p.receiver, 'nack'), has, ['mediaSourceSsrc']),
  ...each('required', 'StreamStatistics', (p) => p.streamStats, num, [
    'packets_received', 'bytesReceived', 'headerBytesReceived', 'base_seq', 'max_seq', 'cycles', 'jitter_q4',
    'last_arrival', 'last_timestamp', 'packets_lost', 'jitter', 'clockRate',
  ]),
  // The plane stops and restarts werift's RTCP loops.
  ...(['RTCRtpSender', 'RTCRtpReceiver'] as const).flatMap((c) => [
    { severity: 'required' as const, what: `${c}.rtcpRunning (a boolean)`, ok: (p: Probe) => typeof field(c === 'RTCRtpSender' ? p.sender : p.receiver, 'rtcpRunning') === 'boolean' },
    { severity: 'required' as const, what: `${c}.rtcpCancel (an AbortController)`, ok: (p: Probe) => field(c === 'RTCRtpSender' ? p.sender : p.receiver, 'rtcpCancel') instanceof AbortController },
  ]),
  // Native SRTP replaces the sessions' transforms and shares werift's rollover state.
  ...(['SrtpSession', 'SrtcpSession'] as const).flatMap((c) => {
    const session = (p: Probe): unknown => (c === 'SrtpSession' ? p.srtp : p.srtcp);
    return [
      ...each('required', c, session, fn, ['encrypt', 'decrypt']),
      ...each('required', `${c}.localContext`, (p) => field(session(p), 'localContext'), num, ['profile']),
      ...each('required', `${c}.localContext`, (p) => field(session(p), 'localContext'), (o, k) => Buffer.isBuffer(field(o, k)), [
        'srtpSessionKey', 'srtpSessionSalt', 'srtpSessionAuthTag', 'srtcpSessionKey', 'srtcpSessionSalt', 'srtcpSessionAuthTag',
      ]),
    ];
  }),
  ...each('required', 'SrtpSession.remoteContext', (p) => field(p.srtp, 'remoteContext'), rec, ['srtpSSRCStates']),
  ...each('required', 'SrtpSession.localContext', (p) => field(p.srtp, 'localContext'), fn, ['getSrtpSsrcState', 'updateRolloverCount']),
  ...each('required', 'SrtcpSession.localContext', (p) => field(p.srtcp, 'localContext'), fn, ['getSrtcpSsrcState']),
  // Node: the forwarding plane reads attached sockets itself.
  { severity: 'plane', what: 'a dgram socket\'s state (symbol "state symbol") with handle.recvStart/recvStop/fd', ok: (p) => {
    const h = p.udpSocket ? dgramState(p.udpSocket as Socket)?.handle : undefined;
    return !!h && typeof h.fd === 'number' && typeof h.recvStart === 'function' && typeof h.recvStop === 'function';
  } },
  // mediabunny: fragments of a recording are cut on time (else at keyframes only).
  { severity: 'optional', what: 'mediabunny Output._muxer.forceFragmentFinalization', ok: (p) => fragmentFinalizer(p.mp4Output as Output) !== undefined },
];

/** Builds the throwaway objects the requirements look at (a few milliseconds, no socket bound). */
export function probe(): Probe {
  const failures: string[] = [];
  const attempt = <T>(what: string, make: () => T): T | undefined => {
    try { return make(); } catch (err) { failures.push(`${what}: ${(err as Error).message}`); return undefined; }
  };
  const p: Probe = {
    rtpHeader: RtpHeader,
    prototypes: {
      udpTransport: UdpTransport.prototype, tcpPassive: TcpPassiveProtocol.prototype,
      iceConnection: Connection.prototype, stunProtocol: StunProtocol.prototype,
    },
    connection: undefined, receiver: undefined, sender: undefined, streamStats: undefined, pair: undefined,
    stunProtocol: undefined, udpTransport: undefined, srtp: undefined, srtcp: undefined, udpSocket: undefined,
    mp4Output: undefined, failures,
  };
  const pc = attempt('new RTCPeerConnection()', () => new RTCPeerConnection({}));
  try {
    const t = pc && attempt('addTransceiver("video")', () => pc.addTransceiver('video', { direction: 'sendrecv' }));
    p.connection = attempt('RTCPeerConnection.iceTransports[0].connection', () => pc!.iceTransports[0]!.connection);
    p.sender = t?.sender;
    p.receiver = t?.receiver;
    if (t) {
      // A StreamStatistics exists only once a packet came: one goes through the probe receiver
      // (its RTCP loop is marked running first, so no timer starts).
      p.streamStats = attempt('RTCRtpReceiver stream statistics', () => {
        const r = t.receiver as unknown as { codecs: Record<number, unknown>; rtcpRunning: boolean; remoteStreams: Record<number, unknown>; handleRTP(p: RtpPacket, e: object, track?: unknown): void };
        r.codecs[96] = { payloadType: 96, mimeType: 'video/VP8', name: 'VP8', clockRate: 90000, rtcpFeedback: [], parameters: '' };
        r.rtcpRunning = true;
        r.handleRTP(new RtpPacket(new RtpHeader({ payloadType: 96, ssrc: 1, sequenceNumber: 1, timestamp: 1 }), Buffer.alloc(1)), {});
        return r.remoteStreams[1];
      });
    }
  } finally {
    void pc?.close().catch(() => undefined);
  }
  const stun = attempt('new StunProtocol()', () => new StunProtocol());
  p.stunProtocol = stun;
  p.pair = attempt('new CandidatePair()', () => new CandidatePair(stun as StunProtocol, undefined as never, true));
  // Its constructor is private in werift's typings (UdpTransport.init binds at once).
  const transport = attempt('new UdpTransport("udp4")', () => new (UdpTransport as unknown as new (type: 'udp4', options: object) => WeriftUdpTransport)('udp4', {}));
  p.udpTransport = transport;
  p.udpSocket = transport?.socket ?? attempt('dgram.createSocket', () => dgram.createSocket('udp4'));
  const keys = { localMasterKey: Buffer.alloc(16, 1), localMasterSalt: Buffer.alloc(14, 2), remoteMasterKey: Buffer.alloc(16, 3), remoteMasterSalt: Buffer.alloc(14, 4) };
  p.srtp = attempt('new SrtpSession()', () => new SrtpSession({ keys, profile: ProtectionProfileAes128CmHmacSha1_80 }));
  p.srtcp = attempt('new SrtcpSession()', () => new SrtcpSession({ keys, profile: ProtectionProfileAes128CmHmacSha1_80 }));
  p.mp4Output = attempt('mediabunny Output', () => new Output({ format: new Mp4OutputFormat({ fastStart: 'fragmented' }), target: new BufferTarget() }));
  return p;
}

/** Releases what `probe()` opened (its unbound socket). */
export function disposeProbe(p: Probe): void {
  try { (p.udpSocket as Socket | undefined)?.close(); } catch { /* never bound: nothing to close */ }
}

export interface InternalsReport {
  weriftVersion: string;
  /** What is missing, by consequence. */
  missing: Record<Severity, string[]>;
}

/** What of `REQUIREMENTS` the probe's objects lack. */
export function findMissing(p: Probe): InternalsReport {
  const missing: Record<Severity, string[]> = { required: [...p.failures.map((f) => `cannot build ${f}`)], plane: [], optional: [] };
  for (const r of REQUIREMENTS) {
    let ok = false;
    try { ok = r.ok(p); } catch { ok = false; }
    if (!ok) missing[r.severity].push(r.what);
  }
  return { weriftVersion, missing };
}

/** The installed werift cannot be used as this engine uses it. */
export class InternalsError extends Error {
  constructor(readonly missing: string[]) {
    super(
      `werift ${weriftVersion} (the installed version) lacks internals the media engine relies on: ${missing.join(', ')}. ` +
      `This code is written against werift ${weriftPinned ?? 'as pinned in package.json'}: reinstall that version (npm ci).`,
    );
    this.name = 'InternalsError';
  }
}

/** Throws InternalsError when a required internal is missing; returns the report otherwise. */
export function checkInternals(p: Probe = probe()): InternalsReport {
  const report = findMissing(p);
  if (report.missing.required.length > 0) throw new InternalsError(report.missing.required);
  return report;
}

let report: InternalsReport | undefined;

/** findMissing() on fresh probes, once per process. */
export function internalsReport(): InternalsReport {
  if (report) return report;
  const p = probe();
  try {
    report = findMissing(p);
  } finally {
    disposeProbe(p);
  }
  return report;
}

/**
 * Throws InternalsError when a required internal is missing (the engine calls it when it is
 * constructed, so a wrong werift fails at start-up, not on the first call or packet).
 */
export function assertInternals(): InternalsReport {
  const r = internalsReport();
  if (r.missing.required.length > 0) throw new InternalsError(r.missing.required);
  return r;
}

/** Why the forwarding plane cannot read Node's dgram sockets itself, or undefined if it can. */
export function planeInternalsMissing(): string | undefined {
  const missing = internalsReport().missing.plane;
  return missing.length > 0 ? `Node ${process.version} lacks ${missing.join(', ')}` : undefined;
}
