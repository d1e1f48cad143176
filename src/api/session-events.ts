// Sessions' domain events in the NkMEDIA API's words: each becomes the `class:"media",
// subclass:"session"` event its subscribers get (docs/API.md §5 "Events"), published on the bus
// to the session's owner, its parties and admins, and straight to the creator for the types it
// listed in `session_events`.
import { pathToFileURL } from 'node:url';
import type { EventBus, Subscriber } from './event-bus.js';
import type { Session } from '../core/sessions/session.js';
import type { SessionManager } from '../core/sessions/manager.js';

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
  ev.on('created', () => publish('created', s.info()));
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
  ev.on('stopped', (reason) => {
    publish('destroyed', { ...reason });
    // Nobody hears a gone session any more: its subscriptions go with it.
    bus.removeForObject(s.id);
  });
}
