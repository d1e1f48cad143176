// What a session is: its type and what the type points at, one shape per type, so that no code
// reads a field the current type does not have.
import type { SessionType } from '../../protocol/session-schemas.js';

export type TypeState =
  | { type: 'park' }
  | { type: 'echo' }
  | { type: 'bridge'; /** the peer session's id */ peer: string }
  | { type: 'publish'; room: string }
  | { type: 'listen'; room: string; /** the publishing session's id */ publisher: string }
  | { type: 'play'; /** what the player opened (a local real path or an http(s) URI) */ uri: string; /** plays left (0: forever) */ loops: number };

// Every SessionType has a shape here, and nothing else does.
type Covered = TypeState['type'];
const exhaustive: Record<SessionType, true> & Record<Covered, true> = { park: true, echo: true, bridge: true, publish: true, listen: true, play: true };
void exhaustive;

/** The type's fields as the NkMEDIA API names them (`type_ext`, and merged into `get_info`). */
export function typeExtOf(t: TypeState): Record<string, unknown> {
  switch (t.type) {
    case 'bridge': return { peer_id: t.peer };
    case 'publish': return { room_id: t.room };
    case 'listen': return { room_id: t.room, publisher_id: t.publisher };
    case 'play': return { uri: t.uri, loops: t.loops };
    default: return {};
  }
}
