// A pool element: which node holds it and under which id (shared by the pool engine and its pipes).
import type { ElementId } from '../types.js';
import type { MediaNode } from './node.js';

/** Where a pool element is: its node, and its id there. */
export interface Placed {
  readonly id: ElementId;
  readonly node: MediaNode;
  /** The node engine's id of it (valid for the node's engine of `generation`). */
  readonly inner: ElementId;
  readonly generation: number;
  readonly tag: string;
  readonly kind: 'webrtc' | 'rtp' | 'passthrough' | 'player' | 'recorder';
  /** The room a listener joins, on the element placed for it (placement counts them per node). */
  readonly room?: string;
  /** Its placement group (`with`): elements made together stay together. */
  readonly group?: string;
}
