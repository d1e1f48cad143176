// What a command handler may use: the calling connection and the server's services.
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { SessionQuota } from '../core/sessions/quota.js';
import type { Config } from '../config.js';
import type { EventBus, Subscriber } from './event-bus.js';
import type { Tid } from '../protocol/frames.js';
import type { SessionManager, Caller } from '../core/sessions/manager.js';
import type { RoomManager } from '../core/rooms/manager.js';
import type { CallManager } from '../core/calls/manager.js';
import type { Authenticator, Identity } from '../access/auth.js';
import type { WireCallParty } from './call-party.js';
import type { MediaEngine } from '../engine/types.js';
import type { NodeInfo } from '../engine/pool/nodes.js';

export interface Services {
  config: Config;
  log: Logger;
  bus: EventBus;
  sessions: SessionManager;
  rooms: RoomManager;
  calls: CallManager;
  auth: Authenticator;
  quota: SessionQuota;
  /** Pipelines made over the Kurento protocol (when that door is open), for the console. */
  pipelines?: PipelineDirectory;
  /** The media nodes, when media runs in worker processes or elsewhere. */
  nodes?: { list(): NodeInfo[] };
  /** The engine the core drives (for `media/node get_list` when media runs in this process). */
  engine: MediaEngine;
}

/** The Kurento door's pipelines as the NkMEDIA API shows them (see src/kurento/service.ts). */
export interface PipelineDirectory {
  list(identity: Identity): unknown[];
  release(identity: Identity, id: string): Promise<boolean>;
}

/** Another protocol served on the API's port under its own path (the Kurento door). */
export interface UpgradeDoor {
  readonly path: string;
  handleUpgrade(req: IncomingMessage, socket: Socket, head: Buffer): void;
  connections(): number;
  close(): Promise<void>;
  directory?: PipelineDirectory;
}

export interface ConnectionHandle extends Subscriber {
  /** The connection's session id (returned by login). */
  readonly id: string;
  identity?: Identity;
  login(identity: Identity): void;
  /** Reports fields the server ignored (core/session_event/unrecognized_fields). */
  reportUnknownFields(cls: string, subclass: string, cmd: string, fields: string[]): void;
  sendAck(tid: Tid): void;
  /** The connection as a party of calls. */
  readonly callParty: WireCallParty;
}

export interface CommandContext {
  conn: ConnectionHandle;
  services: Services;
  tid: Tid;
  /** The logged-in caller (commands other than login run only after login). */
  caller: Caller;
}

export type Handler = (ctx: CommandContext, data: unknown) => Promise<unknown>;
