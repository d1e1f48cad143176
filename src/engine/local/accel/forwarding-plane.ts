// The native forwarding plane (native/forward.c) seen from JS: one per process, shared by all
// WebRTC endpoints of the local engine. When the addon is built, a connected endpoint's ICE
// socket is read by the plane instead of libuv; SRTP of SSRCs that have a route (decided here
// from the element graph) is forwarded natively, and everything else comes back through
// `dispatch` as if the socket had delivered it (RTP already decrypted). Without the addon, with
// an addon built without the plane (it is Linux only: binding.gyp), or with
// NKMEDIA_NATIVE_FORWARD=0, `forwardingPlane()` is undefined and endpoints keep the JS path;
// both paths produce the same packets on the wire.
//
// Sockets and outputs are named by handles (`sock`, `out`): numbers that also carry the
// generation of the addon's slot, so a handle kept after its release (in a route, in a late
// callback) is refused rather than reaching whatever reuses the slot.
import { isMainThread } from 'node:worker_threads';
import { native } from './native-srtp.js';
import type { NativeHandle } from './native-srtp.js';
import { planeInternalsMissing } from './internals.js';

/** The plane's functions in the addon (native/forward.c). `sock` and `out` are handles. */
export interface PlaneBinding {
  planeStart(cb: (kind: number, sock: number, a: unknown, b: unknown, c: unknown) => void, batchMs: number): void;
  planeStop(): void;
  planeAttach(fd: number, remoteCtx: NativeHandle, remoteRtcpCtx: NativeHandle | null): number;
  planeDetach(sock: number): void;
  planeSeedInput(sock: number, ssrc: number, roc: number, lastSeq: number, processed: number, clockRate: number, nack: number): number;
  planeAddOutput(sock: number, localCtx: NativeHandle, ssrc: number, payloadType: number, keepForNack: number): number;
  /** From now on the plane sends the socket's sender and receiver reports (every 0.5-1.5 s). */
  planeSetRtcp(sock: number, localRtcpCtx: NativeHandle): void;
  planeSeedOutputRtcp(out: number, cname: string, srtcpIndex: number): void;
  planeSeedOutput(out: number, roc: number, rocLast: number, rocProcessed: number, lastSeq: number, lastTs: number, msSinceLastSent: number): void;
  planeSetDest(out: number, ip: string, port: number): void;
  /** [packets, octets, bytes, lastSeq | -1, lastTs, msSinceLastSent, roc, rocLast, rocProcessed, srtcpIndex] */
  planeRemoveOutput(out: number): number[] | undefined;
  planeSetRoute(sock: number, ssrc: number, payloadType: number, origin: number, clockRate: number, outs: Int32Array | null): number;
  planeClearRoutes(sock: number): void;
  planeSend(out: number, origin: number, ssrcIn: number, seq: number, ts: number, marker: number, payload: Uint8Array, clockRate: number, csrcs?: Uint8Array): number;
  planeRetransmit(out: number, seqs: number[]): number;
  planeInputStats(sock: number, into: Float64Array): number;
  /** Fills [packets, octets, bytes, msSinceLastPacket | -1, lastTimestamp, sendErrors, rrCount, rrFraction, rrLost, rrHighest, rrJitter, rrLsr, rrDlsr, rrAt, srSent, srCompactNtp, srSentAt]; 0 if no such output. */
  planeOutputStats(out: number, into: Float64Array): number;
  planeCounters(): PlaneCounters;
}

export interface PlaneCounters {
  /** forwarded: packets the plane sent to outputs itself (one per output). */
  wakeups: number; datagrams: number; forwarded: number; toJs: number; authFailures: number;
  sendErrors: number; truncated: number; sockets: number; outputs: number;
  /** Report-only SRTCP packets (SR/RR/SDES) read natively instead of in werift. */
  reports: number;
  /** Our own SR/RR compound packets the plane sent. */
  reportsSent: number;
}

/** Numbers per SSRC in planeInputStats (see native/forward.c). */
export const IN_FIELDS = 25;
export const In = {
  Ssrc: 0, Packets: 1, Bytes: 2, HeaderBytes: 3, BaseSeq: 4, MaxSeq: 5, Cycles: 6, JitterQ4: 7, LastArrival: 8,
  LastTs: 9, Age: 10, FwdPackets: 11, FwdBytes: 12, Roc: 13, RocLast: 14, RocProcessed: 15, Routed: 16, NackEst: 17,
  SrCount: 18, SrNtpHi: 19, SrNtpLo: 20, SrRtp: 21, SrPackets: 22, SrOctets: 23, SrAt: 24,
} as const;

/** Numbers planeOutputStats fills (see native/forward.c). */
export const OUT_FIELDS = 17;
export const Out = {
  Packets: 0, Octets: 1, Bytes: 2, Age: 3, LastTs: 4, SendErrors: 5, RrCount: 6, RrFraction: 7, RrLost: 8,
  RrHighest: 9, RrJitter: 10, RrLsr: 11, RrDlsr: 12, RrAt: 13, SrSent: 14, SrCompact: 15, SrSentAt: 16,
} as const;

/** What an attached socket's owner handles for the plane. */
export interface PlaneClient {
  /** A datagram the plane does not forward (`decrypted`: RTP, already unprotected). */
  datagram(buf: Buffer, address: string, port: number, decrypted: boolean): void;
  /** Video packets `first`..`first + count - 1` of `ssrc` never came (for NACKs). */
  lost(ssrc: number, first: number, count: number): void;
  /** A packet older than the newest one arrived (a retransmission, or reordering). */
  late(ssrc: number, seq: number): void;
  /** Copies the plane's counters into the owner's (the owner calls it with its flow checks and before stats). */
  sync(): void;
}

/**
 * How long packets may gather before the plane reads them while media flows (ms, 0-20). Each
 * wake-up costs tens of microseconds on a VM; at 2 ms (vs 1) bench:forward measured ~25% less
 * CPU per packet at 10 and 40 bridges, for at most ~2 ms more latency through the server.
 */
const BATCH_ENV = process.env.NKMEDIA_FORWARD_BATCH_MS;
const BATCH_MS = BATCH_ENV === undefined || BATCH_ENV === '' ? 2 : Number(BATCH_ENV);
const batchValid = Number.isInteger(BATCH_MS) && BATCH_MS >= 0 && BATCH_MS <= 20;

export class ForwardingPlane {
  private readonly clients = new Map<number, PlaneClient>();
  private readonly origins = new Map<string, number>();
  private nextOrigin = 1;
  /** Bumped on every change that may change where packets go: routes made before are void. */
  epoch = 1;

  constructor(readonly b: PlaneBinding) {
    b.planeStart(this.dispatch, BATCH_MS);
  }

  private readonly dispatch = (kind: number, sock: number, a: unknown, b: unknown, c: unknown): void => {
    const client = this.clients.get(sock);
    if (!client) return;
    try {
      if (kind <= 1) client.datagram(a as Buffer, b as string, c as number, kind === 1);
      else if (kind === 2) client.lost(a as number, b as number, c as number);
      else client.late(a as number, b as number);
    } catch {
      // One endpoint's failure must not reach the plane (it would end the process).
    }
  };

  attach(fd: number, remoteCtx: NativeHandle, remoteRtcpCtx: NativeHandle | null, client: PlaneClient): number {
    const sock = this.b.planeAttach(fd, remoteCtx, remoteRtcpCtx);
    this.clients.set(sock, client);
    this.invalidate();
    return sock;
  }

  detach(sock: number): void {
    this.b.planeDetach(sock);
    this.clients.delete(sock);
    this.invalidate();
  }

  /** Every route back to JS; each is re-decided on its SSRC's next packet. */
  invalidate(): void {
    this.epoch++;
    this.b.planeClearRoutes(-1);
  }

  /** A small number naming an element, for the outputs' continuity (a change of source). */
  origin(id: string): number {
    let n = this.origins.get(id);
    if (n === undefined) { n = this.nextOrigin++; this.origins.set(id, n); }
    return n;
  }

  forget(id: string): void { this.origins.delete(id); }

  counters(): PlaneCounters { return this.b.planeCounters(); }
}

let plane: ForwardingPlane | null | undefined;

/** The plane's functions, when the addon has them (it is built without them but on Linux). */
function planeBinding(): PlaneBinding | undefined {
  const b = native as (Partial<PlaneBinding> & object) | undefined;
  return typeof b?.planeStart === 'function' ? b as PlaneBinding : undefined;
}

/** The process's plane, started on first use; undefined when the addon cannot provide one. */
export function forwardingPlane(): ForwardingPlane | undefined {
  if (plane === undefined) {
    const b = planeBinding();
    plane = null;
    // One plane per process, on the main thread (its state in the addon is process-wide).
    // It also needs the descriptor of Node's dgram sockets (internals.ts).
    if (b && isMainThread && batchValid && process.env.NKMEDIA_NATIVE_FORWARD !== '0' && !planeInternalsMissing()) {
      try { plane = new ForwardingPlane(b); } catch { plane = null; }
    }
  }
  return plane ?? undefined;
}

/** The plane if something already started it (reading counters must not start one). */
export function startedPlane(): ForwardingPlane | undefined {
  return plane ?? undefined;
}

/** Why the plane is not in use (for the startup log), or undefined when it is. */
export function planeUnavailableReason(): string | undefined {
  if (forwardingPlane()) return undefined;
  if (process.env.NKMEDIA_NATIVE_FORWARD === '0') return 'disabled by NKMEDIA_NATIVE_FORWARD=0';
  if (!native) return 'the native addon is not built';
  if (!planeBinding()) return 'the native addon was built without it (it is built on Linux only)';
  if (!batchValid) return `NKMEDIA_FORWARD_BATCH_MS must be a whole number of milliseconds from 0 to 20 (got "${BATCH_ENV}")`;
  const internals = planeInternalsMissing();
  if (internals) return internals;
  return isMainThread ? 'the addon could not start it' : 'not on the main thread';
}

/** Changes that may re-route media (graph edits, endpoints connecting or going). */
export function invalidateRoutes(): void {
  plane?.invalidate();
}

/** An element is gone: its origin number (if media from it was ever sent) is not needed. */
export function forgetOrigin(id: string): void {
  plane?.forget(id);
}
