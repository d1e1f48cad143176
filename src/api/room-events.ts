// Rooms' domain events in the NkMEDIA API's words: `class:"media", subclass:"room"` events
// (docs/API.md §6). Rooms are shared spaces: their events reach every subscriber (no owner filter).
import type { EventBus } from './event-bus.js';
import { wireReason } from '../protocol/errors.js';
import type { Membership, Room } from '../core/rooms/room.js';
import { BACKEND } from '../protocol/session-schemas.js';
import { displayUser } from '../util/principals.js';
import type { RoomManager } from '../core/rooms/manager.js';

/** Publishes every room's events from its creation on (call once per core, before any room). */
export function publishRoomEvents(rooms: RoomManager, bus: EventBus): void {
  rooms.events.on('room', (room) => follow(room, bus));
}

function follow(room: Room, bus: EventBus): void {
  const publish = (type: string, body: Record<string, unknown>) => bus.publish({ class: 'media', subclass: 'room', type, obj_id: room.id, body });
  room.events.on('created', () => publish('created', roomInfo(room)));
  room.events.on('memberStarted', (m) => publish('started_member', memberBody(m)));
  room.events.on('memberStopped', (m) => publish('stopped_member', memberBody(m)));
  room.events.on('destroyed', (cause) => publish('destroyed', wireReason(cause)));
}

/** A room's `get_info` body (and its `created` event's). */
export function roomInfo(room: Room): Record<string, unknown> {
  const members: Record<string, unknown> = {};
  const nodes = new Set<string>();
  for (const m of room.memberships()) {
    const node = m.member.nodeId;
    if (node !== undefined) nodes.add(node);
    members[m.member.id] = { role: m.role, user_id: m.member.userId, ...(m.peerId ? { peer_id: m.peerId } : {}), ...(node !== undefined ? { node_id: node } : {}) };
  }
  // With several media nodes: the room's node is its publisher's; `nodes` are all it spans.
  const publisherNode = room.memberships().find((m) => m.role === 'publisher')?.member.nodeId;
  const o = room.opts;
  return {
    room_id: room.id,
    class: room.class,
    backend: BACKEND,
    owner: displayUser(room.owner),
    timeout: room.timeoutSeconds,
    members,
    status: { publishers: room.publishers, members: room.size },
    ...(o.bitrate !== undefined ? { bitrate: o.bitrate } : {}),
    ...(o.audio_codec ? { audio_codec: o.audio_codec } : {}),
    ...(o.video_codec ? { video_codec: o.video_codec } : {}),
    ...(o.room_meta ? { room_meta: o.room_meta } : {}),
    ...(publisherNode !== undefined ? { node_id: publisherNode } : {}),
    ...(nodes.size > 0 ? { nodes: [...nodes] } : {}),
  };
}

function memberBody(m: Membership): Record<string, unknown> {
  return { session_id: m.member.id, role: m.role, user_id: m.member.userId, ...(m.peerId ? { peer_id: m.peerId } : {}) };
}
