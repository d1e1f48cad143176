// What a Kurento method needs: the object set, the engine, the calling session, and the URI
// policy; plus the translation of engine and core errors into Kurento's codes.
import type { Logger } from 'pino';
import { EngineError, type MediaEngine } from '../engine/types.js';
import { ApiError } from '../protocol/errors.js';
import { KMS, KurentoError } from './errors.js';
import type { ClientSession, MediaSet } from './media-set.js';
import type { Principal } from './objects.js';
import type { UriPolicy } from './uris.js';

export interface KurentoContext {
  set: MediaSet;
  engine: MediaEngine;
  session: ClientSession;
  principal: Principal;
  uris: UriPolicy;
  log: Logger;
}

/** An engine or core error as the Kurento error closest to it (`fallback` for a plain failure). */
export function toKurentoError(err: unknown, fallback: number = KMS.UNEXPECTED_ERROR): KurentoError {
  if (err instanceof KurentoError) return err;
  if (err instanceof EngineError) {
    const code = (() => {
      switch (err.kind) {
        case 'invalid_sdp': return KMS.SDP_PARSE_ERROR;
        case 'invalid_candidate': return KMS.ICE_ADD_CANDIDATE_ERROR;
        case 'not_found': return KMS.MEDIA_OBJECT_NOT_FOUND;
        case 'invalid_uri': return KMS.URI_PATH_FILE_NOT_FOUND;
        case 'no_resources': return KMS.NOT_ENOUGH_RESOURCES;
        case 'invalid_state': return fallback === KMS.UNEXPECTED_ERROR ? KMS.MEDIA_OBJECT_NOT_AVAILABLE : fallback;
        case 'failed': return fallback;
      }
    })();
    // The engine's kind travels along (data.nkmediaKind): the code alone does not always tell it.
    return new KurentoError(code, err.message, err.kind);
  }
  if (err instanceof ApiError) {
    if (err.term === 'too_many_sessions' || err.term === 'out_of_resources') return new KurentoError(KMS.NOT_ENOUGH_RESOURCES, err.message);
    const text = err.detail !== undefined && !err.message.includes(err.detail) ? `${err.message}: ${err.detail}` : err.message;
    if (err.term === 'invalid_sdp') return new KurentoError(KMS.SDP_PARSE_ERROR, text);
    return new KurentoError(fallback, text);
  }
  return new KurentoError(fallback, 'internal error');
}
