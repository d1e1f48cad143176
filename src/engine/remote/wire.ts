// What a media node sends back over the Kurento protocol, checked before anything of it is used:
// the JSON-RPC frames, the values of the operations RemoteEngine invokes, and the events it
// subscribes to (Kurento's, and the nkmedia extension event). Plus Kurento's error codes read
// back as EngineError kinds.
import { z } from 'zod';
import { EngineError } from '../types.js';

// ---- JSON-RPC ---------------------------------------------------------------------------------

const rpcError = z.object({
  code: z.number(),
  message: z.string().max(64 * 1024),
  data: z.unknown().optional(),
});
export type RpcError = z.output<typeof rpcError>;

/** A frame from the node: a response (id with result or error) or a notification (method). */
export const frameSchema = z.object({
  jsonrpc: z.literal('2.0'),
  id: z.union([z.number(), z.string(), z.null()]).optional(),
  result: z.unknown().optional(),
  error: rpcError.optional(),
  method: z.string().max(128).optional(),
  params: z.unknown().optional(),
});

/** Every result of the Kurento protocol is an object; `value` holds what the operation returns. */
export const resultSchema = z.looseObject({ value: z.unknown().optional(), sessionId: z.string().max(256).optional() });

const ENGINE_KINDS = ['invalid_sdp', 'invalid_candidate', 'not_found', 'invalid_state', 'invalid_uri', 'no_resources', 'failed'] as const;
type EngineKind = (typeof ENGINE_KINDS)[number];

/** Kurento's codes as the engine's kinds (what KMS and our door mean by them). */
function kindOfCode(code: number): EngineKind {
  switch (code) {
    case 40101: return 'not_found'; // MEDIA_OBJECT_NOT_FOUND
    case 40200: case 40201: case 40204: case 40205: case 40206: return 'invalid_sdp'; // SDP create/parse, offer/answer processing
    case 40401: return 'invalid_candidate';
    case 40600: return 'invalid_uri';
    case 40009: return 'no_resources';
    // Not available, no local/remote SDP, already negotiated, no offer, answer already
    // processed, gathering without an SDP, seek failed: the element is not in a state for it.
    case 40108: case 40202: case 40203: case 40208: case 40209: case 40210: case 40400: case 40700: return 'invalid_state';
    default: return 'failed';
  }
}

/** An EngineError from a node's error reply, keeping the Kurento code it came with. */
export class NodeError extends EngineError {
  constructor(kind: EngineError['kind'], message: string, readonly kurentoCode: number) {
    super(kind, message);
  }
}

/**
 * A node's error reply as an EngineError. Our door adds `data.nkmediaKind` (the engine's own
 * kind, which Kurento's codes do not always tell); otherwise the code decides. The message is
 * the node's: the engine's texts are fixed ones, fit for clients.
 */
export function engineErrorOf(err: RpcError): NodeError {
  const data = err.data as { nkmediaKind?: unknown } | undefined;
  const kind = typeof data?.nkmediaKind === 'string' && (ENGINE_KINDS as readonly string[]).includes(data.nkmediaKind)
    ? data.nkmediaKind as EngineKind
    : kindOfCode(err.code);
  return new NodeError(kind, err.message, err.code);
}

/** The Kurento code behind an error that came from a node's reply, if any. */
export function kurentoCodeOf(err: unknown): number | undefined {
  return err instanceof NodeError ? err.kurentoCode : undefined;
}

// ---- values -----------------------------------------------------------------------------------

export const objectId = z.string().min(1).max(1024);
export const sdpText = z.string().min(1).max(1024 * 1024);
const count = z.number().finite().min(0);

export const serverInfoSchema = z.looseObject({
  version: z.string().max(64).optional(),
  type: z.string().max(64).optional(),
  modules: z.array(z.looseObject({ name: z.string().max(128) })).max(256).optional(),
});

/** ServerManager.nkmediaInfo (our door's extension handshake). */
export const nkmediaInfoSchema = z.looseObject({ server: z.string().max(128), extensions: z.number().int() });

export const countersSchema = z.object({ elements: count, endpoints: count, udpSockets: count, plane: z.object({ forwarded: count, toJs: count }).optional() });

const mediaStats = z.object({
  packets: count,
  bytes: count,
  bitrate: count,
  packets_lost: z.number().finite().optional(),
  fraction_lost: z.number().finite().optional(),
  jitter_ms: z.number().finite().optional(),
  rtt_ms: z.number().finite().optional(),
});
const perKind = z.object({ audio: mediaStats.optional(), video: mediaStats.optional(), data: mediaStats.optional() });
export const connectionStates = ['new', 'connecting', 'connected', 'disconnected', 'failed', 'closed'] as const;

/** nkmediaGetStats: the engine's ElementStats without its element id. */
export const nkmediaStatsSchema = z.object({ connectionState: z.enum(connectionStates), inbound: perKind, outbound: perKind });

/** Kurento's getStats: a map of RTC stats objects (only the RTP ones are read). */
export const kurentoStatsSchema = z.record(z.string().max(1024), z.looseObject({
  type: z.string().max(64).optional(),
  packetsReceived: z.number().optional(),
  bytesReceived: z.number().optional(),
  packetsLost: z.number().optional(),
  jitter: z.number().optional(),
  fractionLost: z.number().optional(),
  packetsSent: z.number().optional(),
  bytesSent: z.number().optional(),
  roundTripTime: z.number().optional(),
  bitrate: z.number().optional(),
}));

export const codecsSchema = z.object({ audio: z.string().max(128).optional(), video: z.string().max(128).optional() });

/** The engine's PlayerInfo (nkmediaPlay). */
export const playerInfoSchema = z.object({ duration: z.number().finite(), is_seekable: z.boolean(), first_position: z.number().finite(), last_position: z.number().finite() });

/** Kurento's VideoInfo (getVideoInfo); KMS sends its int64 fields as numbers. */
export const videoInfoSchema = z.looseObject({
  isSeekable: z.boolean(),
  seekableInit: z.coerce.number().finite(),
  seekableEnd: z.coerce.number().finite(),
  duration: z.coerce.number().finite(),
});

export const recordingResultSchema = z.object({
  path: z.string().max(4096),
  format: z.enum(['webm', 'mp4']),
  durationMs: z.number().finite().min(0),
  tracks: z.array(z.enum(['audio', 'video'])).max(2),
  bytes: count,
});

/** A number KMS may send as an int64 or a float (getPosition, getUsedCpu). */
export const numberValue = z.coerce.number().finite();

// ---- events -----------------------------------------------------------------------------------

/** An `onEvent` notification's params. */
export const notificationSchema = z.object({
  value: z.object({
    data: z.record(z.string(), z.unknown()),
    object: objectId,
    type: z.string().max(128),
  }),
});

const candidate = z.object({ candidate: z.string().max(2048), sdpMid: z.string().max(64).optional(), sdpMLineIndex: z.number().int().min(0).max(1023) });

/** The extension event's `event`: an EngineEvent without elementId and tag. */
export const engineEventSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('ice_candidate'), candidate }),
  z.object({ type: z.literal('ice_gathering_done') }),
  z.object({ type: z.literal('connection_state'), state: z.enum(connectionStates) }),
  z.object({ type: z.literal('media_flow'), direction: z.enum(['in', 'out']), media: z.enum(['audio', 'video', 'data']), state: z.enum(['up', 'down']) }),
  z.object({ type: z.literal('recorder_state'), state: z.enum(['recording', 'paused', 'stopped']), uri: z.string().max(4096) }),
  z.object({ type: z.literal('player_state'), state: z.enum(['playing', 'paused', 'stopped', 'eos']), position: z.number().finite() }),
  z.object({ type: z.literal('player_loop'), loop: z.number().int().min(0), loops_left: z.number().int().min(0).nullable() }),
  z.object({ type: z.literal('error'), message: z.string().max(16 * 1024), code: z.string().max(128).optional() }),
]);
export type RemoteEngineEvent = z.output<typeof engineEventSchema>;

export const engineEventDataSchema = z.object({ element: objectId, event: engineEventSchema });

const mediaType = z.enum(['AUDIO', 'VIDEO', 'DATA']);

/** The data of each Kurento event RemoteEngine subscribes to (other fields are ignored). */
export const kurentoEventSchemas = {
  IceCandidateFound: z.object({ candidate }),
  IceGatheringDone: z.object({}),
  IceComponentStateChanged: z.object({ state: z.enum(['DISCONNECTED', 'GATHERING', 'CONNECTING', 'CONNECTED', 'READY', 'FAILED']) }),
  ConnectionStateChanged: z.object({ newState: z.enum(['CONNECTED', 'DISCONNECTED']) }),
  MediaFlowInStateChanged: z.object({ state: z.enum(['FLOWING', 'NOT_FLOWING']), mediaType }),
  MediaFlowOutStateChanged: z.object({ state: z.enum(['FLOWING', 'NOT_FLOWING']), mediaType }),
  Recording: z.object({}),
  Paused: z.object({}),
  Stopped: z.object({}),
  EndOfStream: z.object({}),
  UriEndpointStateChanged: z.object({ state: z.enum(['STOP', 'START', 'PAUSE']) }),
  Error: z.object({ description: z.string().max(16 * 1024), type: z.string().max(128).optional(), errorCode: z.number().optional() }),
} as const;
export type KurentoEventType = keyof typeof kurentoEventSchemas;
export type KurentoEventData<T extends KurentoEventType> = z.output<(typeof kurentoEventSchemas)[T]>;
