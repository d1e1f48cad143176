// Error terms, codes and texts of the NkMEDIA API (docs/API.md §2 "Errors"). Codes are part of the
// wire contract: clients match on them, so they keep the original numbers.

const TABLE = {
  normal_termination: [100001, 'Normal termination'],
  internal_error: [100002, 'Internal error'],
  invalid_state: [100004, 'Invalid state'],
  timeout: [100005, 'Timeout'],
  not_implemented: [100006, 'Not implemented'],
  process_not_found: [100008, 'Process not found'],
  process_down: [100009, 'Process failed'],
  registered_down: [100010, 'Registered process stopped'],
  user_stop: [100011, 'User stop'],
  member_stop: [100012, 'Member stop'],
  api_stop: [100013, 'API stop received'],
  unauthorized: [100030, 'Unauthorized'],
  not_authenticated: [100031, 'Not authenticated'],
  already_authenticated: [100032, 'Already authenticated'],
  user_not_found: [100033, 'User not found'],
  duplicated_session_id: [100034, 'Duplicated session id'],
  invalid_session_id: [100035, 'Invalid session id'],
  invalid_operation: [100040, 'Invalid operation'],
  invalid_parameters: [100041, 'Invalid parameters'],
  unknown_command: [100042, 'Unknown command'],
  invalid_action: [100043, 'Invalid action'],
  syntax_error: [100044, 'Syntax error'],
  missing_field: [100045, 'Missing field'],
  invalid_value: [100046, 'Invalid value'],
  invalid_reply: [100047, 'Invalid reply'],
  // Not in the original: a connection's cap on requests in flight (SPEC framing limits).
  too_many_requests: [100048, 'Too many requests in flight'],
  frame_too_large: [100049, 'Frame too large'],
  // Not in the original: caps that keep one client (or a flood) from exhausting the server.
  too_many_sessions: [100050, 'Too many sessions'],
  too_many_connections: [100051, 'Too many connections'],
  too_many_subscriptions: [100052, 'Too many subscriptions'],
  too_many_logins: [100053, 'Too many login attempts'],
  out_of_resources: [100054, 'Server out of resources'],
  session_timeout: [100060, 'Session timeout'],
  session_stop: [100061, 'Session stop'],
  session_not_found: [100062, 'Session not found'],
  // The original sent this unmapped (999999); we give it a code of its own in the same range.
  session_stopped: [100063, 'Session stopped'],
  invalid_uri: [100070, 'Invalid Uri'],
  unknown_peer: [100071, 'Unknown peer'],
  no_mediaserver: [300001, 'No mediaserver available'],
  different_mediaserver: [300002, 'Different mediaserver'],
  unknown_backend: [300003, 'Unknown backend'],
  session_failed: [300004, 'Session has failed'],
  incompatible_session: [300005, 'Incompatible session'],
  offer_not_set: [300010, 'Offer not set'],
  offer_already_set: [300011, 'Offer already set'],
  answer_not_set: [300012, 'Answer not set'],
  answer_already_set: [300013, 'Answer already set'],
  no_ice_candidates: [300014, 'No ICE candidates'],
  missing_sdp: [300015, 'Missing SDP'],
  invalid_sdp: [300016, 'Invalid SDP'],
  bridge_stop: [300020, 'Bridge stop'],
  peer_stopped: [300021, 'Peer session stopped'],
  no_active_recorder: [300030, 'No active recorder'],
  no_active_player: [300031, 'No active player'],
  no_active_room: [300032, 'No active room'],
  media_error: [303001, 'Media engine error'],
  // Not in the original (one process had one engine): the media node holding a session was lost.
  media_node_down: [303002, 'Media node down'],
  room_not_found: [304001, 'Room not found'],
  room_already_exists: [304002, 'Room already exists'],
  room_destroyed: [304003, 'Room destroyed'],
  no_room_members: [304004, 'No remaining room members'],
  invalid_publisher: [304005, 'Invalid publisher'],
  publisher_stop: [304006, 'Publisher stopped'],
  // Calls (docs/API.md §10). The original used call_not_found and already_answered
  // unmapped (999999); they and the call plugin's other terms get codes in its 305xxx range.
  call_not_found: [305001, 'Call not found'],
  already_answered: [305002, 'Already answered'],
  call_already_exists: [305003, 'Call already exists'],
  not_invited: [305004, 'Not invited to this call'],
  no_destination: [305005, 'No destination'],
  call_rejected: [305006, 'Call rejected'],
  no_answer: [305007, 'No answer'],
  answered_elsewhere: [305008, 'Answered elsewhere'],
  caller_disconnected: [305009, 'Caller disconnected'],
  callee_disconnected: [305010, 'Callee disconnected'],
  api_hangup: [305011, 'API hangup'],
} as const satisfies Record<string, readonly [number, string]>;

export type ErrorTerm = keyof typeof TABLE;

/** Terms whose text carries a detail, rendered "Text: detail" (or "Unknown command 'x'"). */
const DETAILED = new Set<ErrorTerm>([
  'unknown_command', 'invalid_action', 'syntax_error', 'missing_field', 'invalid_value',
  'media_error', 'media_node_down', 'invalid_sdp', 'too_many_requests', 'frame_too_large', 'internal_error',
  'invalid_parameters', 'invalid_operation', 'not_implemented', 'incompatible_session',
  'no_destination', 'api_hangup', 'not_invited', 'too_many_sessions', 'too_many_connections',
  'too_many_subscriptions', 'too_many_logins', 'out_of_resources', 'invalid_uri',
]);

export interface WireError { code: number; error: string }

/** An error meant for the client: a term of the table plus an optional detail. */
export class ApiError extends Error {
  constructor(readonly term: ErrorTerm, readonly detail?: string) {
    super(renderText(term, detail));
    this.name = 'ApiError';
  }
  get code(): number { return TABLE[this.term][0]; }
  toWire(): WireError { return { code: this.code, error: this.message }; }
}

function renderText(term: ErrorTerm, detail?: string): string {
  const text = TABLE[term][1];
  if (detail === undefined || !DETAILED.has(term)) return text;
  if (term === 'unknown_command' || term === 'invalid_action') return `${text} '${detail}'`;
  return `${text}: ${detail}`;
}

/**
 * Why something stopped, as the domain says it: a term of the table and an optional detail.
 * Front doors render it (the NkMEDIA API as `stopReason`, SIP as a response code).
 */
export interface StopCause { term: ErrorTerm; detail?: string }

/** A cause from a term and an optional detail (no `detail` key when there is none). */
export function causeOf(term: ErrorTerm, detail?: string): StopCause {
  return detail !== undefined ? { term, detail } : { term };
}

/** Stop reason as sent in `destroyed` events: `{code, reason}`. */
export function stopReason(term: ErrorTerm, detail?: string): { code: number; reason: string } {
  return { code: TABLE[term][0], reason: renderText(term, detail) };
}

/** A cause as NkMEDIA events carry it. */
export function wireReason(c: StopCause): { code: number; reason: string } { return stopReason(c.term, c.detail); }

/** Any thrown value to a wire error; unexpected ones become internal_error without leaking. */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  return new ApiError('internal_error', 'unexpected failure');
}
