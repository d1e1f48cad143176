// The JSON framing (docs/API.md §1, §2): requests, replies, acks and events.
import { ApiError, type WireError } from './errors.js';

export type Tid = string | number;

export interface Request { class: string; subclass?: string; cmd: string; data?: unknown; tid: Tid }
export interface OkReply { result: 'ok'; data?: unknown; tid: Tid }
export interface ErrorReply { result: 'error'; data: WireError; tid: Tid | null }
export type Reply = OkReply | ErrorReply;
export interface Ack { ack: Tid }

export type Incoming =
  | { kind: 'request'; request: Request }
  | { kind: 'reply'; reply: { result: string; data?: unknown; tid: Tid } }
  | { kind: 'ack'; tid: Tid };

/** A parse failure that still knows the request's tid (so the error reply can carry it). */
export class FrameError extends Error {
  constructor(readonly error: ApiError, readonly tid: Tid | null) { super(error.message); }
}

function isTid(v: unknown): v is Tid {
  return (typeof v === 'string' && v.length <= 256) || (typeof v === 'number' && Number.isFinite(v));
}

const NAME = /^[a-z_][a-z0-9_]{0,63}$/;

/**
 * How deeply `data` may nest objects and arrays. JSON.parse takes any depth, but what we echo
 * back (session_meta, events_body, extra offer keys) must be serialisable again: a value
 * nested some thousand levels deep would overflow JSON.stringify's stack on the way out.
 */
export const MAX_DATA_DEPTH = 32;

/** The top-level field of `data` holding a value nested too deeply, if any. */
function tooDeep(data: unknown): string | undefined {
  const stack: [value: unknown, level: number, field: string | undefined][] = [[data, 1, undefined]];
  while (stack.length > 0) {
    const [value, level, field] = stack.pop()!;
    if (typeof value !== 'object' || value === null) continue;
    if (level > MAX_DATA_DEPTH) return field === undefined ? 'data' : field.slice(0, 64);
    for (const [k, v] of Object.entries(value)) stack.push([v, level + 1, field ?? k]);
  }
  return undefined;
}

export function parseFrame(text: string): Incoming {
  let msg: unknown;
  try { msg = JSON.parse(text); } catch { throw new FrameError(new ApiError('syntax_error', 'frame is not valid JSON'), null); }
  if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) throw new FrameError(new ApiError('syntax_error', 'frame is not a JSON object'), null);
  const m = msg as Record<string, unknown>;
  if ('ack' in m && !('cmd' in m)) {
    if (!isTid(m.ack)) throw new FrameError(new ApiError('invalid_value', 'ack'), null);
    return { kind: 'ack', tid: m.ack };
  }
  const tid = isTid(m.tid) ? m.tid : null;
  if ('result' in m && !('cmd' in m)) {
    if (tid === null) throw new FrameError(new ApiError('missing_field', 'tid'), null);
    return { kind: 'reply', reply: { result: String(m.result), data: m.data, tid } };
  }
  if (m.tid === undefined) throw new FrameError(new ApiError('missing_field', 'tid'), null);
  if (tid === null) throw new FrameError(new ApiError('invalid_value', 'tid: expected a string or number'), null);
  for (const field of ['class', 'cmd'] as const) {
    if (m[field] === undefined) throw new FrameError(new ApiError('missing_field', field), tid);
    if (typeof m[field] !== 'string' || !NAME.test(m[field])) throw new FrameError(new ApiError('invalid_value', `${field}: expected a lower-case name`), tid);
  }
  if (m.subclass !== undefined && (typeof m.subclass !== 'string' || !NAME.test(m.subclass))) {
    throw new FrameError(new ApiError('invalid_value', 'subclass: expected a lower-case name'), tid);
  }
  if (m.data !== undefined && m.data !== null && (typeof m.data !== 'object' || Array.isArray(m.data))) {
    throw new FrameError(new ApiError('invalid_value', 'data: expected an object'), tid);
  }
  const deep = tooDeep(m.data);
  if (deep !== undefined) throw new FrameError(new ApiError('invalid_value', `${deep}: nested more than ${MAX_DATA_DEPTH} levels deep`), tid);
  return {
    kind: 'request',
    request: { class: m.class as string, subclass: m.subclass as string | undefined, cmd: m.cmd as string, data: m.data ?? {}, tid },
  };
}

export function okReply(tid: Tid, data?: unknown): OkReply {
  const r: OkReply = { result: 'ok', tid };
  if (data !== undefined && !(isEmptyObject(data))) r.data = data;
  return r;
}

export function errorReply(tid: Tid | null, err: ApiError): ErrorReply {
  return { result: 'error', data: err.toWire(), tid };
}

function isEmptyObject(v: unknown): boolean {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && Object.keys(v).length === 0;
}
