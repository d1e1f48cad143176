// What a command handler may use: the calling connection and the server's services.
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { EventBus, Subscriber } from '../events/bus.js';
import type { Tid } from '../protocol/frames.js';
import type { SessionManager, Caller } from '../sessions/manager.js';
import type { RoomManager } from '../rooms/manager.js';
import type { CallManager } from '../calls/manager.js';
import type { Authenticator, Identity } from './auth.js';

/** Logged-in API connections per user (for the per-user cap). */
export class ConnectionCounter {
  private readonly byUser = new Map<string, number>();
  count(user: string): number { return this.byUser.get(user) ?? 0; }
  add(user: string): void { this.byUser.set(user, this.count(user) + 1); }
  remove(user: string): void {
    const n = this.count(user) - 1;
    if (n <= 0) this.byUser.delete(user); else this.byUser.set(user, n);
  }
}

export interface Services {
  config: Config;
  connections: ConnectionCounter;
  log: Logger;
  bus: EventBus;
  sessions: SessionManager;
  rooms: RoomManager;
  calls: CallManager;
  auth: Authenticator;
}

export interface ConnectionHandle extends Subscriber {
  /** The connection's session id (returned by login). */
  readonly id: string;
  identity?: Identity;
  /** Sessions this connection created and that are still alive. */
  readonly ownedSessions: number;
  login(identity: Identity): void;
  /** Reports fields the server ignored (core/session_event/unrecognized_fields). */
  reportUnknownFields(cls: string, subclass: string, cmd: string, fields: string[]): void;
  sendAck(tid: Tid): void;
}

export interface CommandContext {
  conn: ConnectionHandle;
  services: Services;
  tid: Tid;
  /** The logged-in caller (commands other than login run only after login). */
  caller: Caller;
}

export type Handler = (ctx: CommandContext, data: unknown) => Promise<unknown>;
