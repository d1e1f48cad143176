// Sessions' domain events in the NkMEDIA API's words: each becomes the `class:"media",
// subclass:"session"` event its subscribers get (docs/API.md §5 "Events"), published on the bus
// to the session's owner, its parties and admins, and straight to the creator for the types it
// listed in `session_events`.
import { pathToFileURL } from 'node:url';
import type { EventBus, Subscriber } from './event-bus.js';
import type { Session } from '../core/sessions/session.js';
import type { SessionManager } from '../core/sessions/manager.js';
import { wireReason } from '../protocol/errors.js';
import { BACKEND } from '../protocol/session-schemas.js';
import { displayUser } from '../util/principals.js';

/** The connection that created each session: it gets the types it listed in `session_events` directly. */
const creators = new WeakMap<Session, Subscriber>();

/** Records the creating connection of a session (before it starts, e.g. in `create`'s onSession). */
export function setCreator(s: Session, creator: Subscriber): void { creators.set(s, creator); }

/** Publishes every session's events from its creation on (call once per core, before any session). */
export function publishSessionEvents(sessions: SessionManager, bus: EventBus): void {
  sessions.events.on('session', (s) => follow(s, bus));
}

function follow(s: Session, bus: EventBus): void {
  const publish = (type: string, body: Record<string, unknown>): void => {
    const directTypes = s.opts.session_events;
    const creator = creators.get(s);
    const direct = directTypes && creator && directTypes.includes(type)
      ? { to: creator, body: s.opts.session_events_body } : undefined;
    bus.publish({ class: 'media', subclass: 'session', type, obj_id: s.id, body, owner: s.owner.user, viewers: s.owner.parties }, direct);
  };
  const ev = s.events;
  ev.on('created', () => publish('created', sessionInfo(s)));
  ev.on('answer', (answer) => publish('answer', { answer }));
  ev.on('candidate', (c) => publish('candidate', { sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex, candidate: c.candidate }));
  ev.on('candidateEnd', () => publish('candidate_end', {}));
  ev.on('connection', (status) => publish('info', { info: s.sdpType, status }));
  ev.on('mediaFlow', (f) => publish('info', { info: 'media', direction: f.direction, media: f.media, status: f.state }));
  ev.on('recorder', (r) => publish('recorder', { state: r.state, ...(r.error !== undefined ? { error: r.error } : {}), uri: pathToFileURL(r.path).href }));
  ev.on('player', (p) => publish('player', p.error !== undefined
    ? { state: p.state, error: p.error, ...(p.code ? { code: p.code } : {}) }
    : { state: p.state, position: p.position }));
  ev.on('typeChanged', () => publish('type', { type: s.type, ...s.typeExt }));
  ev.on('problem', (p) => publish('info', { info: 'error', ...(p.code ? { code: p.code } : {}), error: p.text }));
  ev.on('codecMismatch', (m) => publish('info', { info: 'codec_mismatch', media: m.media, detail: m.detail }));
  ev.on('stopped', (cause) => {
    publish('destroyed', wireReason(cause));
    // Nobody hears a gone session any more: its subscriptions go with it.
    bus.removeForObject(s.id);
  });
}

/** A session's `status` (its `get_status` reply, and part of `get_info`). */
export function sessionStatus(s: Session): Record<string, unknown> {
  const flows = s.mediaFlows;
  return {
    state: s.state,
    webrtc_ready: s.connectionState === 'connected',
    connection_state: s.connectionState,
    mute_audio: s.mute.audio,
    mute_video: s.mute.video,
    mute_data: s.mute.data,
    ...(s.bitrate !== undefined ? { bitrate: s.bitrate } : {}),
    media_in: Object.fromEntries(flows.in),
    media_out: Object.fromEntries(flows.out),
  };
}

/** A session's `get_info` body (and its `created` event's). */
export function sessionInfo(s: Session): Record<string, unknown> {
  const o = s.opts;
  const typeExt = s.typeExt;
  const info: Record<string, unknown> = {
    session_id: s.id,
    type: s.type,
    type_ext: { ...typeExt },
    backend: BACKEND,
    backend_role: s.role,
    user_id: displayUser(s.owner.user),
    user_session: s.owner.connId,
    status: sessionStatus(s),
    sdp_type: o.sdp_type ?? s.offer?.sdp_type ?? 'webrtc',
    no_offer_trickle_ice: o.no_offer_trickle_ice ?? false,
    no_answer_trickle_ice: o.no_answer_trickle_ice ?? false,
    trickle_ice_timeout: s.trickleTimeoutMs,
    set_master_answer: o.set_master_answer ?? false,
    stop_after_peer: s.stopAfterPeer,
    wait_timeout: o.wait_timeout ?? 60,
    ready_timeout: o.ready_timeout ?? 86400,
    mute_audio: s.mute.audio,
    mute_video: s.mute.video,
    mute_data: s.mute.data,
    video_layer: s.videoLayer,
    start_time: Math.floor(s.startTime / 1000),
  };
  const optional: Record<string, unknown> = {
    offer: s.offer, answer: s.answer, master_id: s.masterId,
    slave_id: [...s.slaveIds].pop(), bitrate: s.bitrate,
    session_meta: o.session_meta, session_events: o.session_events, session_events_body: o.session_events_body,
    stop_time: s.stopTime !== undefined ? Math.floor(s.stopTime / 1000) : undefined,
    node_id: s.nodeId,
    ...typeExt,
  };
  for (const [k, v] of Object.entries(optional)) if (v !== undefined) info[k] = v;
  return info;
}
