// Kurento's standard events as engine events, for nodes without the nkmedia extension event (a
// Kurento Media Server). The inverse of what our door does (src/kurento/events.ts), so that on
// our own node the two ways agree wherever Kurento's events carry enough: connection states are
// reported on change, ICE READY counts as connected once the endpoint's session has connected
// (DTLS), media flows on change, a player's STOP after EndOfStream is not a second end.
// Player positions are estimated (Kurento's events carry none).
import type { ConnectionState, EngineEvent, MediaKind } from '../types.js';
import type { RemoteElement } from './element.js';
import { kurentoEventSchemas, type KurentoEventType } from './wire.js';

/** An engine event before its element's id and tag are put in. */
export type BareEvent = EngineEvent extends infer E ? E extends EngineEvent ? Omit<E, 'elementId' | 'tag'> : never : never;

/** Kurento events RemoteEngine subscribes to, per element kind. */
export const STANDARD_EVENTS: Record<RemoteElement['kind'], KurentoEventType[]> = {
  webrtc: ['IceCandidateFound', 'IceGatheringDone', 'IceComponentStateChanged', 'ConnectionStateChanged', 'MediaFlowInStateChanged', 'MediaFlowOutStateChanged', 'Error'],
  rtp: ['ConnectionStateChanged', 'MediaFlowInStateChanged', 'MediaFlowOutStateChanged', 'Error'],
  passthrough: ['Error'],
  player: ['EndOfStream', 'UriEndpointStateChanged', 'Error'],
  recorder: ['Recording', 'Paused', 'Stopped', 'Error'],
};

/** A player's position now (ms), from what RemoteEngine knows of it. */
export function playerPosition(el: RemoteElement, now = performance.now()): number {
  const p = el.player;
  if (!p) return 0;
  const pos = p.since === undefined ? p.base : p.base + (now - p.since);
  const end = p.info ? Math.max(p.info.last_position, p.info.duration) : Infinity;
  return Math.round(Math.min(pos, end));
}

function connection(el: RemoteElement, state: ConnectionState): BareEvent[] {
  if (el.connection === state) return [];
  el.connection = state;
  return [{ type: 'connection_state', state }];
}

function playerState(el: RemoteElement, state: 'playing' | 'paused' | 'stopped' | 'eos', now: number): BareEvent[] {
  const p = el.player!;
  if (p.state === state) return [];
  if (state === 'playing') p.since ??= now;
  else {
    p.base = playerPosition(el, now);
    p.since = undefined;
  }
  p.state = state;
  return [{ type: 'player_state', state, position: playerPosition(el, now) }];
}

export interface Translated {
  events: BareEvent[];
  /** KMS: the player ended a loop and must play again (RemoteEngine plays loops itself). */
  replay?: boolean;
}

/**
 * One Kurento event of `el` as engine events (none when it changes nothing, or does not parse:
 * `invalid` then says why).
 */
export function translateStandard(el: RemoteElement, type: string, data: unknown, now = performance.now()): Translated & { invalid?: string } {
  if (!Object.hasOwn(kurentoEventSchemas, type)) return { events: [] };
  const parsed = kurentoEventSchemas[type as KurentoEventType].safeParse(data);
  if (!parsed.success) return { events: [], invalid: parsed.error.issues[0]?.message ?? 'malformed' };
  const d = parsed.data as Record<string, unknown>;
  switch (type as KurentoEventType) {
    case 'IceCandidateFound': {
      const c = d.candidate as { candidate: string; sdpMid?: string; sdpMLineIndex: number };
      return { events: [{ type: 'ice_candidate', candidate: { candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex } }] };
    }
    case 'IceGatheringDone':
      return { events: [{ type: 'ice_gathering_done' }] };
    case 'IceComponentStateChanged':
      switch (d.state) {
        case 'CONNECTING': return { events: connection(el, 'connecting') };
        // Connected once DTLS is up too (ConnectionStateChanged); after that ICE tells.
        case 'CONNECTED': case 'READY': return { events: el.sessionUp ? connection(el, 'connected') : [] };
        case 'FAILED': return { events: connection(el, 'failed') };
        case 'DISCONNECTED': return { events: el.connection === 'new' ? [] : connection(el, 'disconnected') };
        default: return { events: [] };
      }
    case 'ConnectionStateChanged':
      if (d.newState === 'CONNECTED') {
        el.sessionUp = true;
        return { events: connection(el, 'connected') };
      }
      // A WebRTC endpoint's ICE states say how it went down (failed, disconnected).
      return { events: el.kind === 'webrtc' ? [] : connection(el, 'disconnected') };
    case 'MediaFlowInStateChanged':
    case 'MediaFlowOutStateChanged': {
      const direction = type === 'MediaFlowInStateChanged' ? 'in' : 'out';
      const media = (d.mediaType as string).toLowerCase() as MediaKind;
      const state = d.state === 'FLOWING' ? 'up' : 'down';
      const key = `${direction}:${media}`;
      if ((el.flows.get(key) ?? 'down') === state) return { events: [] };
      el.flows.set(key, state);
      return { events: [{ type: 'media_flow', direction, media, state }] };
    }
    case 'Recording':
    case 'Paused':
    case 'Stopped': {
      const state = type === 'Recording' ? 'recording' : type === 'Paused' ? 'paused' : 'stopped';
      return { events: [{ type: 'recorder_state', state, uri: el.recorder?.path ?? '' }] };
    }
    case 'EndOfStream': {
      const p = el.player;
      if (!p || p.state === 'eos') return { events: [] };
      if (p.loops === 0 || p.play < p.loops) {
        // Another loop: the engine reports it as player_loop, not as an end.
        p.play++;
        p.replaying = true;
        p.base = p.info?.first_position ?? 0;
        p.since = now;
        return { events: [{ type: 'player_loop', loop: p.play - 1, loops_left: p.loops === 0 ? null : p.loops - p.play + 1 }], replay: true };
      }
      p.base = p.info ? p.info.last_position : playerPosition(el, now);
      p.since = undefined;
      p.state = 'eos';
      return { events: [{ type: 'player_state', state: 'eos', position: Math.round(p.base) }] };
    }
    case 'UriEndpointStateChanged': {
      const p = el.player;
      if (!p) return { events: [] };
      if (p.replaying) {
        // A loop's restart: the STOP of the end and the START of the next play are not news.
        if (d.state === 'START') p.replaying = false;
        return { events: [] };
      }
      if (d.state === 'STOP' && p.state === 'eos') return { events: [] };
      const state = d.state === 'START' ? 'playing' : d.state === 'PAUSE' ? 'paused' : 'stopped';
      return { events: playerState(el, state, now) };
    }
    case 'Error': {
      const code = d.type as string | undefined;
      return { events: [{ type: 'error', message: d.description as string, ...(code && code !== 'UNEXPECTED_ERROR' ? { code } : {}) }] };
    }
  }
}

/** Records a player's state as RemoteEngine's own calls change it (its events may come later on a KMS). */
export function notePlayer(el: RemoteElement, state: 'playing' | 'paused' | 'stopped', now = performance.now()): BareEvent[] {
  return playerState(el, state, now);
}
