// Kurento's error codes (the numbers kurento-client and other Kurento clients map to their own
// exception types) and JSON-RPC's own codes for requests that are not even well formed.
import type { EngineError } from '../engine/types.js';

export const KMS = {
  MARSHALL_ERROR: 40001,
  UNEXPECTED_ERROR: 40003,
  CONNECT_ERROR: 40004,
  UNSUPPORTED_MEDIA_TYPE: 40005,
  NOT_IMPLEMENTED: 40006,
  INVALID_SESSION: 40007,
  MALFORMED_TRANSACTION: 40008,
  NOT_ENOUGH_RESOURCES: 40009,
  MEDIA_OBJECT_TYPE_NOT_FOUND: 40100,
  MEDIA_OBJECT_NOT_FOUND: 40101,
  MEDIA_OBJECT_CONSTRUCTOR_NOT_FOUND: 40104,
  MEDIA_OBJECT_METHOD_NOT_FOUND: 40105,
  MEDIA_OBJECT_EVENT_NOT_SUPPORTED: 40106,
  MEDIA_OBJECT_ILLEGAL_PARAM_ERROR: 40107,
  MEDIA_OBJECT_NOT_AVAILABLE: 40108,
  MEDIA_OBJECT_TAG_KEY_NOT_FOUND: 40110,
  MEDIA_OBJECT_OPERATION_NOT_SUPPORTED: 40111,
  SDP_CREATE_ERROR: 40200,
  SDP_PARSE_ERROR: 40201,
  SDP_END_POINT_NO_LOCAL_SDP_ERROR: 40202,
  SDP_END_POINT_NO_REMOTE_SDP_ERROR: 40203,
  SDP_END_POINT_GENERATE_OFFER_ERROR: 40204,
  SDP_END_POINT_PROCESS_OFFER_ERROR: 40205,
  SDP_END_POINT_PROCESS_ANSWER_ERROR: 40206,
  SDP_END_POINT_ALREADY_NEGOTIATED: 40208,
  SDP_END_POINT_NOT_OFFER_GENERATED: 40209,
  SDP_END_POINT_ANSWER_ALREADY_PROCCESED: 40210,
  ICE_GATHER_CANDIDATES_ERROR: 40400,
  ICE_ADD_CANDIDATE_ERROR: 40401,
  SERVER_MANAGER_ERROR_KMD_NOT_FOUND: 40500,
  URI_PATH_FILE_NOT_FOUND: 40600,
  PLAYER_SEEK_FAIL: 40700,
} as const;

export type KmsCode = (typeof KMS)[keyof typeof KMS];

const NAMES = new Map<number, string>(Object.entries(KMS).map(([k, v]) => [v, k]));

/** JSON-RPC 2.0's codes, for frames that are not a usable request at all. */
export const JSONRPC = {
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  /** Server-defined: a limit of this server (requests in flight, frame size). */
  SERVER_BUSY: -32000,
} as const;

/** The engine's own error kinds, as the `nkmediaKind` extension names them. */
export type EngineErrorKind = EngineError['kind'];

/**
 * An error reply: `code` is a Kurento code (40xxx) or a JSON-RPC one (negative). `engineKind`,
 * when the error is the engine's, goes out as `data.nkmediaKind` (an extension: Kurento's codes
 * are coarser than the engine's kinds; a RemoteEngine reads it back, other clients ignore it).
 */
export class KurentoError extends Error {
  constructor(readonly code: number, message: string, readonly engineKind?: EngineErrorKind) {
    super(message);
    this.name = 'KurentoError';
  }

  /** The `error` member of a JSON-RPC response, shaped as KMS sends it. */
  toJson(): { code: number; message: string; data?: { type?: string; nkmediaKind?: EngineErrorKind } } {
    const type = NAMES.get(this.code);
    const data = { ...(type ? { type } : {}), ...(this.engineKind ? { nkmediaKind: this.engineKind } : {}) };
    return { code: this.code, message: this.message, ...(Object.keys(data).length > 0 ? { data } : {}) };
  }
}

export const illegalParam = (message: string) => new KurentoError(KMS.MEDIA_OBJECT_ILLEGAL_PARAM_ERROR, message);
