// What a command handler may use: the calling connection and the server's services.
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { EventBus, Subscriber } from '../events/bus.js';
import type { Tid } from '../protocol/frames.js';
import type { SessionManager, Caller } from '../sessions/manager.js';
import type { RoomManager } from '../rooms/manager.js';
import type { CallManager } from '../calls/manager.js';
import type { Authenticator, Identity } from '../access/auth.js';

export interface Services {
  config: Config;
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
