// Wire schemas of the call commands (docs/API.md §10).
import { z } from 'zod';
import { idSchema, sdpObjectSchema } from './session-schemas.js';

/**
 * One destination: `user:<name>`, `session:<connection id>`, a `sip:`/`sips:` URI, or a bare
 * name (a user or a connection id, as `type` says).
 */
export const destinationSchema = z.string().min(1).max(512).regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces');
export const MAX_DESTINATIONS = 16;

/** How a bare callee is resolved (the original's call `type`). */
export const CALLEE_TYPES = ['user', 'session', 'all', 'sip'] as const;
export type CalleeType = (typeof CALLEE_TYPES)[number];

const objectField = z.record(z.string(), z.unknown());

export const callCreateSchema = z.object({
  callee: z.union([destinationSchema, z.array(destinationSchema).min(1).max(MAX_DESTINATIONS)]),
  type: z.enum(CALLEE_TYPES).optional(),
  offer: sdpObjectSchema,
  call_id: idSchema.optional(),
  /** Who is calling, as shown to the callees (sent in their invites). */
  caller: objectField.optional(),
  /** Seconds the callees may ring before the call ends with `no_answer`. */
  ring_time: z.number().int().min(1).max(180).optional(),
  backend: z.string().max(64).optional(),
  no_offer_trickle_ice: z.boolean().optional(),
  no_answer_trickle_ice: z.boolean().optional(),
  trickle_ice_timeout: z.number().int().min(100).max(30000).optional(),
  /** The kind of SDP offered to callees (API connections); SIP destinations are always "rtp". */
  sdp_type: z.enum(['webrtc', 'rtp']).optional(),
  wait_reply: z.boolean().optional(),
  subscribe: z.boolean().optional(),
  events_body: objectField.optional(),
  call_meta: objectField.optional(),
  /** The legacy name of call_meta. */
  meta: objectField.optional(),
});
export type CallCreateRequest = z.output<typeof callCreateSchema>;

export const callIdOnly = z.object({ call_id: idSchema });

export const callRingingSchema = z.object({ call_id: idSchema, callee: objectField.optional() });

export const callAcceptedSchema = z.object({
  call_id: idSchema,
  answer: sdpObjectSchema,
  callee: objectField.optional(),
  subscribe: z.boolean().optional(),
  events_body: objectField.optional(),
});

export const callHangupSchema = z.object({ call_id: idSchema, reason: z.string().max(256).optional() });

export const callCandidateSchema = z.object({
  call_id: idSchema,
  sdpMid: z.string().max(64).optional(),
  sdpMLineIndex: z.number().int().min(0).max(63),
  candidate: z.string().max(1024),
});

/** The callee's reply to an `invite` (optional fields of an ok reply). */
export const inviteReplySchema = z.object({
  subscribe: z.boolean().optional(),
  events_body: objectField.optional(),
});
