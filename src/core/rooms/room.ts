// An SFU room (docs/API.md §6): members are publishing and listening sessions. The room holds
// no media itself: listeners are wired to their publisher's proxy by the sessions.
import type { ErrorTerm, StopCause } from '../../protocol/errors.js';
import { EventEmitter } from 'node:events';
import type { RoomCreateRequest } from '../../protocol/room-schemas.js';

export type MemberRole = 'publisher' | 'listener';

/** What a room needs of a member session (kept small so rooms do not depend on sessions). */
export interface RoomMember {
  readonly id: string;
  readonly userId: string;
  /** The media node holding its media, when media runs on several. */
  readonly nodeId?: string | undefined;
  stop(term: ErrorTerm): Promise<void>;
}

export interface Membership { member: RoomMember; role: MemberRole; peerId?: string }

/** Domain events of a room (its `events` emitter); the API publishes them as room events. */
export interface RoomEvents {
  created: [];
  memberStarted: [m: Membership];
  memberStopped: [m: Membership];
  destroyed: [cause: StopCause];
}

export const DEFAULT_ROOM_TIMEOUT_S = 300;

export class Room {
  readonly class = 'sfu';
  private readonly members = new Map<string, Membership>();
  private timer?: NodeJS.Timeout;
  destroyed = false;
  readonly createdAt = Date.now();
  readonly events = new EventEmitter<RoomEvents>();

  constructor(
    readonly id: string,
    readonly owner: string,
    readonly opts: RoomCreateRequest,
    private readonly onDestroyed: (room: Room) => void,
  ) {
    this.armTimer();
  }

  get timeoutSeconds(): number { return this.opts.timeout ?? DEFAULT_ROOM_TIMEOUT_S; }
  get publishers(): number { return [...this.members.values()].filter((m) => m.role === 'publisher').length; }
  get size(): number { return this.members.size; }

  addMember(member: RoomMember, role: MemberRole, peerId?: string): void {
    const m = { member, role, peerId };
    this.members.set(member.id, m);
    this.events.emit('memberStarted', m);
    this.armTimer();
  }

  /** A member left; a publisher's listeners stop with `publisher_stop` (docs/API.md §6). */
  removeMember(member: RoomMember): void {
    const m = this.members.get(member.id);
    if (!m || m.member !== member) return;
    this.members.delete(member.id);
    this.events.emit('memberStopped', m);
    if (m.role === 'publisher') {
      for (const other of [...this.members.values()]) {
        if (other.role === 'listener' && other.peerId === member.id) void other.member.stop('publisher_stop');
      }
    }
    this.armTimer();
  }

  async destroy(term: ErrorTerm): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    clearTimeout(this.timer);
    const members = [...this.members.values()];
    await Promise.all(members.map((m) => m.member.stop('room_destroyed')));
    this.members.clear();
    this.events.emit('destroyed', { term });
    this.events.removeAllListeners();
    this.onDestroyed(this);
  }

  /** The members, in the order they joined. */
  memberships(): Membership[] { return [...this.members.values()]; }

  emitCreated(): void { this.events.emit('created'); }

  /** A room without publishers lives `timeout` seconds; any member change starts it again. */
  private armTimer(): void {
    clearTimeout(this.timer);
    if (this.destroyed) return;
    this.timer = setTimeout(() => {
      if (this.publishers === 0) void this.destroy('timeout');
      else this.armTimer();
    }, this.timeoutSeconds * 1000);
  }
}
