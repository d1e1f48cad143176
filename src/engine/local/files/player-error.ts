// The player's failures: a fixed text of ours (fit for clients) and a code, with the underlying
// text kept as `detail` for logs. Shared by the player and its transcoder.

export type PlayerErrorCode = 'invalid_uri' | 'invalid_media' | 'transcoder_failed' | 'read_failed' | 'invalid_state' | 'not_seekable';

/** A failure: `message` is a fixed text fit for clients, `detail` the underlying one (for logs). */
export class PlayerError extends Error {
  constructor(readonly code: PlayerErrorCode, message: string, readonly detail?: string) {
    super(message);
    this.name = 'PlayerError';
  }
}
