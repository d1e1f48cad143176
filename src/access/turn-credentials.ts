// Short-lived TURN credentials for clients, by the TURN REST convention that coturn follows with
// `use-auth-secret`: the username is "<expiry unix time>:<user>", the password the base64 of
// HMAC-SHA1(shared secret, username). The TURN server checks them with the same secret and
// refuses them after the expiry, so nothing is stored and a leaked one soon stops working.
import { createHmac } from 'node:crypto';

export interface ClientTurnServer { urls: string | string[]; secret: string }

/** What a client puts in its RTCPeerConnection's `iceServers`. */
export interface IceServer { urls: string | string[]; username: string; credential: string }

export interface TurnCredentials {
  ice_servers: IceServer[];
  /** When they stop working (unix seconds): ask again before then (`core/user/get_ice_servers`). */
  expires: number;
}

/** The credentials a user gets from the configuration's TURN servers for clients, if it has any. */
export function clientTurnCredentials(ice: { client_turn: readonly ClientTurnServer[]; client_turn_ttl_seconds: number }, user: string): TurnCredentials | undefined {
  return ice.client_turn.length > 0 ? turnCredentials(ice.client_turn, user, ice.client_turn_ttl_seconds) : undefined;
}

export function turnCredentials(servers: readonly ClientTurnServer[], user: string, ttlSeconds: number, nowMs = Date.now()): TurnCredentials {
  const expires = Math.floor(nowMs / 1000) + ttlSeconds;
  // The user name stays readable in the TURN server's logs; a ':' in it would be ambiguous there.
  const username = `${expires}:${user.replaceAll(':', '_')}`;
  return {
    ice_servers: servers.map((s) => ({ urls: s.urls, username, credential: createHmac('sha1', s.secret).update(username).digest('base64') })),
    expires,
  };
}
