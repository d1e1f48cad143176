// The set of rooms: ids, creation, lookup, listing by visibility.
import { randomUUID } from 'node:crypto';
import { ApiError, type ErrorTerm } from '../../protocol/errors.js';
import type { RoomCreateRequest } from '../../protocol/room-schemas.js';
import { EventEmitter } from 'node:events';
import { Room } from './room.js';
import { BACKEND } from '../../protocol/session-schemas.js';

export interface RoomCaller { user: string; admin: boolean }

export class RoomManager {
  private readonly rooms = new Map<string, Room>();
  /** Announces each new room before its `created` (the API publishes room events from here). */
  readonly events = new EventEmitter<{ room: [room: Room] }>();

  get size(): number { return this.rooms.size; }

  create(req: RoomCreateRequest, owner: string): Room {
    if (req.backend !== undefined && req.backend !== BACKEND) throw new ApiError('unknown_backend');
    if (req.class !== 'sfu') throw new ApiError('not_implemented', `room class "${req.class}" (the Kurento backend has SFU rooms only)`);
    const id = req.room_id ?? `room-${randomUUID()}`;
    if (this.rooms.has(id)) throw new ApiError('room_already_exists');
    const room = new Room(id, owner, req, (r) => { if (this.rooms.get(r.id) === r) this.rooms.delete(r.id); });
    this.rooms.set(id, room);
    this.events.emit('room', room);
    room.emitCreated();
    return room;
  }

  /** Rooms are shared: anyone who knows a room's id may join it and read its info. */
  get(id: string): Room {
    const room = this.rooms.get(id);
    if (!room || room.destroyed) throw new ApiError('room_not_found');
    return room;
  }

  lookup(id: string): Room | undefined { return this.rooms.get(id); }

  /** A user lists the rooms it created or has a member in; an admin lists all. */
  list(caller: RoomCaller, hasMemberOf: (room: Room) => boolean): Room[] {
    return [...this.rooms.values()].filter((r) => caller.admin || r.owner === caller.user || hasMemberOf(r));
  }

  /** Only the room's creator or an admin may destroy it. */
  async destroy(id: string, caller: RoomCaller, term: ErrorTerm = 'api_stop'): Promise<void> {
    const room = this.get(id);
    if (!caller.admin && room.owner !== caller.user) throw new ApiError('unauthorized');
    await room.destroy(term);
  }

  async destroyAll(term: ErrorTerm): Promise<void> {
    await Promise.all([...this.rooms.values()].map((r) => r.destroy(term)));
  }
}
