// Wire schemas of the room commands (docs/API.md §6).
import { z } from 'zod';
import { idSchema } from './session-schemas.js';

export const roomCreateSchema = z.object({
  class: z.enum(['sfu', 'mcu']),
  room_id: idSchema.optional(),
  backend: z.string().max(64).optional(),
  /** Seconds a room may stay without publishers before it is destroyed. */
  timeout: z.number().int().min(5).max(259200).optional(),
  /** Bits per second asked of every publisher (REMB), unless the session sets its own. */
  bitrate: z.number().int().min(0).max(1_000_000_000).optional(),
  audio_codec: z.enum(['opus', 'isac32', 'isac16', 'pcmu', 'pcma']).optional(),
  video_codec: z.enum(['vp8', 'vp9', 'h264']).optional(),
  room_meta: z.record(z.string(), z.unknown()).optional(),
});
export type RoomCreateRequest = z.output<typeof roomCreateSchema>;

export const roomIdOnly = z.object({ room_id: idSchema });
