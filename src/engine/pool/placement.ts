// Which node a new element goes to. With another element (`near`): the same node, unless it is a
// room's listener and that node already carries its share of the room; then the least loaded node
// that still has room for it (preferring one that already receives the room, whose pipe is there).
// With nothing near: the least loaded node (endpoints, then CPU).
import { EngineError } from '../types.js';
import type { MediaNode } from './node.js';

export interface PlacementPolicy {
  /** How many listeners of one room share a node before the next go elsewhere. */
  maxListenersPerNode: number;
}

export interface PlacementQuery {
  near?: MediaNode;
  room?: string;
  load(node: MediaNode): { endpoints: number };
  roomCount(node: MediaNode, room: string): number;
}

export function choose(nodes: readonly MediaNode[], policy: PlacementPolicy, q: PlacementQuery): MediaNode {
  const up = nodes.filter((n) => n.state === 'up');
  if (up.length === 0) throw new EngineError('no_resources', 'no media node is up');
  if (q.near) {
    if (q.near.state !== 'up') throw new EngineError('failed', `media node ${q.near.id} is down`);
    if (q.room === undefined || q.roomCount(q.near, q.room) < policy.maxListenersPerNode) return q.near;
    const room = q.room;
    const open = up.filter((n) => q.roomCount(n, room) < policy.maxListenersPerNode);
    // Every node is full of this room: the least loaded takes one more rather than nobody.
    const candidates = open.length > 0 ? open : up;
    const receiving = candidates.filter((n) => q.roomCount(n, room) > 0 && n !== q.near);
    return leastLoaded(receiving.length > 0 ? receiving : candidates, q);
  }
  return leastLoaded(up, q);
}

function leastLoaded(nodes: readonly MediaNode[], q: PlacementQuery): MediaNode {
  let best = nodes[0]!;
  let bestLoad = q.load(best).endpoints;
  for (const n of nodes.slice(1)) {
    const l = q.load(n).endpoints;
    if (l < bestLoad || (l === bestLoad && (n.cpu ?? 0) < (best.cpu ?? 0))) { best = n; bestLoad = l; }
  }
  return best;
}
