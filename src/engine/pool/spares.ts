// Elements made ahead on each node: a new session takes its WebRTC endpoint and its pass-through
// from here instead of waiting for a `create` round trip to the node (about 0.7 ms of a session's
// ~3 ms set-up through a worker), and the stock is refilled in the background. A spare is an
// empty element (a WebRTC endpoint binds no socket before it has an SDP); spares of a node that
// goes down are gone with it, and the pool's counters leave them out.
import type { ElementId } from '../types.js';
import type { MediaNode } from './node.js';

export type SpareKind = 'webrtc' | 'passthrough';

/** Spares kept per node and kind: a session takes one of each; two cover back-to-back sessions. */
const STOCK = 2;
/**
 * How long after a take the stock is refilled: the session that took them sends its offer right
 * after, and the node handles requests in order, so a refill sent at once would delay it.
 */
const REFILL_DELAY_MS = 20;

interface Stock { generation: number; ready: Record<SpareKind, ElementId[]>; making: Record<SpareKind, number>; timer?: NodeJS.Timeout }

export class Spares {
  private readonly stocks = new Map<MediaNode, Stock>();
  private closed = false;
  /** Spares taken by sessions so far. */
  taken = 0;

  /** A spare of `kind` on `node` (its engine's id), taken out of the stock, if one is there. */
  take(node: MediaNode, kind: SpareKind): ElementId | undefined {
    const s = this.stockOf(node);
    if (!s) return undefined;
    const id = s.ready[kind].shift();
    if (id !== undefined) this.taken++;
    if (!s.timer) {
      s.timer = setTimeout(() => { s.timer = undefined; this.refill(node); }, REFILL_DELAY_MS);
      s.timer.unref();
    }
    return id;
  }

  /** Spares ready on a node (the pool's counters leave them out). */
  count(node: MediaNode): { elements: number; endpoints: number } {
    const s = this.stocks.get(node);
    if (!s || s.generation !== node.generation) return { elements: 0, endpoints: 0 };
    return { elements: s.ready.webrtc.length + s.ready.passthrough.length, endpoints: s.ready.webrtc.length };
  }

  /** Makes what the node's stock lacks (a node just up, or one a session took from). */
  refill(node: MediaNode): void {
    const s = this.stockOf(node);
    if (!s || this.closed) return;
    for (const kind of ['webrtc', 'passthrough'] as const) {
      while (s.ready[kind].length + s.making[kind] < STOCK) {
        s.making[kind]++;
        void this.make(node, s, kind);
      }
    }
  }

  /** The node is down: its spares went with it. */
  nodeLost(node: MediaNode): void {
    clearTimeout(this.stocks.get(node)?.timer);
    this.stocks.delete(node);
  }

  /** No more spares; those made are released. */
  async close(): Promise<void> {
    this.closed = true;
    for (const s of this.stocks.values()) clearTimeout(s.timer);
    const all = [...this.stocks].map(([node, s]) => ({ node, s, ids: [...s.ready.webrtc, ...s.ready.passthrough] }));
    this.stocks.clear();
    await Promise.all(all.map(({ node, s, ids }) => this.releaseAll(node, s.generation, ids)));
  }

  /** The node's stock for its current generation (a new generation starts empty). */
  private stockOf(node: MediaNode): Stock | undefined {
    if (node.state !== 'up') return undefined;
    let s = this.stocks.get(node);
    if (!s || s.generation !== node.generation) {
      clearTimeout(s?.timer);
      s = { generation: node.generation, ready: { webrtc: [], passthrough: [] }, making: { webrtc: 0, passthrough: 0 } };
      this.stocks.set(node, s);
    }
    return s;
  }

  private async make(node: MediaNode, s: Stock, kind: SpareKind): Promise<void> {
    let id: ElementId | undefined;
    try {
      const engine = node.engine;
      id = await (kind === 'webrtc' ? engine.createWebRtcEndpoint({ tag: 'spare' }) : engine.createPassThrough({ tag: 'spare' }));
    } catch {
      // The node is going down (its stock goes with it) or refused: the next take makes no difference.
    } finally {
      s.making[kind]--;
    }
    if (id === undefined) return;
    if (this.closed || this.stocks.get(node) !== s || node.generation !== s.generation) {
      await this.releaseAll(node, s.generation, [id]);
      return;
    }
    s.ready[kind].push(id);
  }

  private async releaseAll(node: MediaNode, generation: number, ids: ElementId[]): Promise<void> {
    if (node.state !== 'up' || node.generation !== generation) return;
    await Promise.all(ids.map((id) => node.engine.release(id).catch(() => undefined)));
  }
}
