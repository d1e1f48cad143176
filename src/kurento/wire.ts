// The Kurento protocol's wire: JSON-RPC 2.0 frames (in text or binary WebSocket frames alike),
// the shapes of results and `onEvent` notifications, and the enumerations Kurento spells in
// upper case.
import { z } from 'zod';
import type { MediaKind } from '../engine/types.js';
import { JSONRPC, KurentoError, illegalParam } from './errors.js';

export type RpcId = number | string;

export const requestSchema = z.object({
  jsonrpc: z.literal('2.0'),
  id: z.union([z.number().int().safe(), z.string().max(128)]).optional(),
  method: z.string().min(1).max(64),
  params: z.record(z.string(), z.unknown()).nullable().optional(),
});
export type RpcRequest = z.output<typeof requestSchema>;

/** Parses one frame; throws a JSON-RPC error (with the id when one could be read). */
export function parseRequest(text: string): RpcRequest {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw Object.assign(new KurentoError(JSONRPC.PARSE_ERROR, 'Parse error: the frame is not JSON'), { id: null });
  }
  const r = requestSchema.safeParse(raw);
  if (!r.success) {
    const id = raw && typeof raw === 'object' && 'id' in raw && (typeof raw.id === 'number' || typeof raw.id === 'string') ? raw.id : null;
    const issue = r.error.issues[0]!;
    throw Object.assign(new KurentoError(JSONRPC.INVALID_REQUEST, `Invalid request: ${issue.path.join('.') || '(frame)'}: ${issue.message}`), { id });
  }
  return r.data;
}

export function resultFrame(id: RpcId, result: unknown): string {
  return JSON.stringify({ jsonrpc: '2.0', id, result });
}

export function errorFrame(id: RpcId | null, err: KurentoError): string {
  return JSON.stringify({ jsonrpc: '2.0', id, error: err.toJson() });
}

/** An event as KMS sends it: the object, the type, and the data with source, tags and time. */
export function eventFrame(objectId: string, type: string, data: Record<string, unknown>, tags: { key: string; value: string }[]): string {
  const now = Date.now();
  return JSON.stringify({
    jsonrpc: '2.0',
    method: 'onEvent',
    params: {
      value: {
        data: { source: objectId, tags, timestamp: String(Math.floor(now / 1000)), timestampMillis: String(now), type, ...data },
        object: objectId,
        type,
      },
    },
  });
}

export const MEDIA_TYPES = { AUDIO: 'audio', VIDEO: 'video', DATA: 'data' } as const satisfies Record<string, MediaKind>;
export type KurentoMediaType = keyof typeof MEDIA_TYPES;
export const kurentoMediaType = (k: MediaKind): KurentoMediaType => k.toUpperCase() as KurentoMediaType;
export const mediaTypeSchema = z.enum(['AUDIO', 'VIDEO', 'DATA']);

/** A complex-type value as kurento-client serialises it: the fields plus `__module__`/`__type__`, which we ignore. */
export const complex = <T extends z.ZodRawShape>(shape: T) => z.looseObject(shape);

/**
 * A request's parameters checked against their schema; the first problem is a 40107 naming
 * where (`what`: the type or operation) and which field (`whole` when it is the object itself).
 */
export function checkedParams<S extends z.ZodType>(schema: S, what: string, whole: string, params: unknown): z.output<S> {
  const r = schema.safeParse(params ?? {});
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  throw illegalParam(`${what}: ${issue.path.join('.') || whole}: ${issue.message}`);
}
