// The domain core: sessions, rooms and calls on one media engine, built in one place (main.ts)
// and handed to every front door (the NkMEDIA API, the SIP gateway, the Kurento door) and to the
// tests. Its objects tell what happens through typed domain events; each front door renders them
// in its own protocol. Nothing here knows WebSocket, SIP or the NkMEDIA wire events.
import type { Logger } from 'pino';
import type { MediaEngine } from '../engine/types.js';
import type { ErrorTerm } from '../protocol/errors.js';
import { RoomManager } from './rooms/manager.js';
import { SessionManager } from './sessions/manager.js';
import { CallManager } from './calls/manager.js';
import { SessionQuota, UNLIMITED, type QuotaLimits } from './sessions/quota.js';
import type { MediaPaths } from './sessions/media-paths.js';

export interface CoreOptions {
  engine: MediaEngine;
  log: Logger;
  /** Where recordings go and which files `play` may open. */
  paths: MediaPaths;
  /** Session admission (default: unlimited, for tests of the domain alone). */
  limits?: QuotaLimits;
}

export class MediaCore {
  readonly engine: MediaEngine;
  readonly rooms: RoomManager;
  readonly quota: SessionQuota;
  readonly sessions: SessionManager;
  readonly calls: CallManager;

  constructor(opts: CoreOptions) {
    this.engine = opts.engine;
    this.rooms = new RoomManager();
    this.quota = new SessionQuota(opts.limits ?? UNLIMITED);
    this.sessions = new SessionManager(opts.engine, this.rooms, opts.paths, opts.log, this.quota);
    this.calls = new CallManager(this.sessions, opts.log);
  }

  /**
   * Ends every call, session and room (`term` as their reason). Front doors still connected hear
   * each `hangup` and `destroyed`, so run this before closing them.
   */
  async stopAll(term: ErrorTerm): Promise<void> {
    await this.calls.endAll(term);
    await this.sessions.stopAll(term);
    await this.rooms.destroyAll(term);
  }

  /** Detaches from the engine (after stopAll; the engine is closed by whoever made it). */
  close(): void {
    this.sessions.close();
  }
}
