// Wire schemas of the media session commands (docs/API.md §5).
import { z } from 'zod';

/** Ids end up in log lines and file names (recordings), so they are kept to a safe alphabet. */
export const idSchema = z.string().min(1).max(128).regex(/^[A-Za-z0-9][A-Za-z0-9._:@-]*$/, 'use letters, digits and . _ : @ - (not first)');

export const MAX_SDP_BYTES = 128 * 1024;

/** An offer/answer object; extra keys are kept (the original echoes them back in answers). */
export const sdpObjectSchema = z.object({
  sdp: z.string().min(1).max(MAX_SDP_BYTES),
  sdp_type: z.enum(['webrtc', 'rtp']).optional(),
  trickle_ice: z.boolean().optional(),
}).loose();
export type SdpObject = z.output<typeof sdpObjectSchema> & { backend?: string };

/** Types the Kurento backend has; the others of the original (p2p, proxy, mcu) are refused. */
/** The one backend this server has, by the name the original's Kurento backend used (clients may name it). */
export const BACKEND = 'nkmedia_kms';

export const SESSION_TYPES = ['park', 'echo', 'bridge', 'publish', 'listen', 'play'] as const;
export type SessionType = (typeof SESSION_TYPES)[number];
export const FOREIGN_TYPES = ['p2p', 'proxy', 'mcu'] as const;

const typeSchema = z.enum([...SESSION_TYPES, ...FOREIGN_TYPES]);

const muteFields = {
  mute_audio: z.boolean().optional(),
  mute_video: z.boolean().optional(),
  mute_data: z.boolean().optional(),
  bitrate: z.number().int().min(0).max(1_000_000_000).optional(),
  /** Simulcast: which layer of the source this session's client gets (high, medium, low or a rid). */
  video_layer: z.string().min(1).max(32).regex(/^[A-Za-z0-9_-]+$/, 'a layer name (high, medium, low) or a rid').optional(),
};

/** Fields that choose or feed a session type (create and set_type). */
const typeFields = {
  peer_id: idSchema.optional(),
  room_id: idSchema.optional(),
  create_room: z.boolean().optional(),
  publisher_id: idSchema.optional(),
  layout: z.string().max(256).optional(),
  loops: z.number().int().min(0).max(1_000_000).optional(),
  uri: z.string().min(1).max(4096).optional(),
};

export const createSchema = z.object({
  type: typeSchema,
  session_id: idSchema.optional(),
  wait_reply: z.boolean().optional(),
  offer: sdpObjectSchema.optional(),
  no_offer_trickle_ice: z.boolean().optional(),
  no_answer_trickle_ice: z.boolean().optional(),
  trickle_ice_timeout: z.number().int().min(100).max(30000).optional(),
  sdp_type: z.enum(['webrtc', 'rtp']).optional(),
  backend: z.string().max(64).optional(),
  master_id: idSchema.optional(),
  set_master_answer: z.boolean().optional(),
  stop_after_peer: z.boolean().optional(),
  subscribe: z.boolean().optional(),
  events_body: z.record(z.string(), z.unknown()).optional(),
  wait_timeout: z.number().int().min(1).max(86400 * 365).optional(),
  ready_timeout: z.number().int().min(1).max(86400 * 365).optional(),
  session_meta: z.record(z.string(), z.unknown()).optional(),
  session_events: z.array(z.string().max(64)).max(32).optional(),
  session_events_body: z.record(z.string(), z.unknown()).optional(),
  ...typeFields,
  ...muteFields,
});
export type CreateRequest = z.output<typeof createSchema>;

export const sessionIdOnly = z.object({ session_id: idSchema });

export const setAnswerSchema = z.object({ session_id: idSchema, answer: sdpObjectSchema });

export const candidateSchema = z.object({
  session_id: idSchema,
  sdpMid: z.string().max(64).optional(),
  sdpMLineIndex: z.number().int().min(0).max(63),
  candidate: z.string().max(1024),
});

export const updateMediaSchema = z.object({ session_id: idSchema, ...muteFields });

export const setTypeSchema = z.object({ session_id: idSchema, type: typeSchema, ...typeFields });

export const recorderActionSchema = z.object({
  session_id: idSchema,
  action: z.string().max(32).optional(),
  uri: z.string().min(1).max(4096).optional(),
});

export const playerActionSchema = z.object({
  session_id: idSchema,
  action: z.string().max(32).optional(),
  uri: z.string().min(1).max(4096).optional(),
  loops: z.number().int().min(0).max(1_000_000).optional(),
  position: z.number().int().min(0).optional(),
});

export const roomActionSchema = z.object({
  session_id: idSchema,
  action: z.string().max(32).optional(),
  layout: z.string().max(256).optional(),
});
