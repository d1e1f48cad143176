// Media between elements of two nodes: one pipe per source element and destination node, made of
// a plain RTP endpoint on each side (the destination offers, the source answers), shared by every
// sink of that source on that node — a room's publisher reaches a node once however many of its
// listeners are there. The RTP endpoints carry RTCP both ways, so keyframe requests from the far
// side reach the source's side. They are plain RTP (no SRTP yet: keep remote nodes on a private
// network) and take each node's JavaScript path: the native forwarding plane handles WebRTC
// endpoints only, so a fan-out through a pipe costs about twice the CPU per packet of one kept on
// one node (README "Workers and media nodes"). A pipe closes with its last sink, its source, or
// either node.
import { EngineError, MEDIA_KINDS, type ElementId, type EngineEvent, type MediaKind } from '../types.js';
import type { MediaNode } from './node.js';
import type { Placed } from './placed.js';

interface Pipe {
  readonly key: string;
  readonly source: Placed;
  readonly dst: MediaNode;
  /** The source node's end (its engine's id), and the destination's. */
  out?: ElementId;
  in?: ElementId;
  readonly ready: Promise<void>;
  /** Sinks on the destination node fed by it, with the media each takes. */
  readonly sinks: Map<ElementId, { sink: Placed; kinds: Set<MediaKind> }>;
  closed: boolean;
}

export interface PipeInfo { source: ElementId; from: string; to: string; sinks: number }

export class PipeSet {
  private readonly pipes = new Map<string, Pipe>();
  /** sink id → kind → the pipe feeding it that media. */
  private readonly feeding = new Map<ElementId, Map<MediaKind, Pipe>>();

  constructor(private readonly emit: (ev: EngineEvent) => void) {}

  get size(): number { return this.pipes.size; }

  list(): PipeInfo[] {
    return [...this.pipes.values()].map((p) => ({ source: p.source.id, from: p.source.node.id, to: p.dst.id, sinks: p.sinks.size }));
  }

  /** Media of `kind` (all when omitted) from `source` reaches `sink` on another node. */
  async link(source: Placed, sink: Placed, kind?: MediaKind): Promise<void> {
    const kinds = kind ? [kind] : [...MEDIA_KINDS];
    // Whatever fed this sink these media before (another source, or the same through an old pipe) stops.
    await this.unlink(sink, kind);
    const pipe = this.pipeFor(source, sink.node);
    await pipe.ready;
    if (pipe.closed) throw new EngineError('failed', `the pipe from media node ${source.node.id} to ${sink.node.id} closed`);
    let entry = pipe.sinks.get(sink.id);
    if (!entry) pipe.sinks.set(sink.id, (entry = { sink, kinds: new Set() }));
    for (const k of kinds) {
      entry.kinds.add(k);
      let byKind = this.feeding.get(sink.id);
      if (!byKind) this.feeding.set(sink.id, (byKind = new Map()));
      byKind.set(k, pipe);
    }
    // The far end's RTP endpoint asks its source (the pipe) for a keyframe on connect, which crosses as RTCP.
    await sink.node.engine.connect(pipe.in!, sink.inner, kind);
  }

  /** Stops what reaches `sink` through pipes (for `kind`, or all; only from `source` if given). */
  async unlink(sink: Placed, kind?: MediaKind, source?: Placed): Promise<void> {
    const byKind = this.feeding.get(sink.id);
    if (!byKind) return;
    const kinds = kind ? [kind] : [...MEDIA_KINDS];
    const touched = new Set<Pipe>();
    for (const k of kinds) {
      const pipe = byKind.get(k);
      if (!pipe || (source && pipe.source !== source)) continue;
      byKind.delete(k);
      pipe.sinks.get(sink.id)?.kinds.delete(k);
      touched.add(pipe);
    }
    if (byKind.size === 0) this.feeding.delete(sink.id);
    for (const pipe of touched) {
      // One call for every media cut (the engine cuts only what this pipe feeds the sink).
      if (!pipe.closed && pipe.in !== undefined && sink.node.state === 'up') await sink.node.engine.disconnect(pipe.in, sink.inner, kind).catch(() => undefined);
      if (pipe.sinks.get(sink.id)?.kinds.size === 0) pipe.sinks.delete(sink.id);
      if (pipe.sinks.size === 0) await this.close(pipe);
    }
  }

  /** An element was released: pipes it fed close, and it stops taking from any. */
  async released(e: Placed): Promise<void> {
    await this.unlink(e);
    for (const pipe of [...this.pipes.values()]) if (pipe.source === e) await this.close(pipe);
  }

  /** A node is lost: every pipe from or to it closes; the ends on live nodes are released. */
  nodeLost(node: MediaNode): void {
    for (const pipe of [...this.pipes.values()]) {
      if (pipe.source.node === node || pipe.dst === node) void this.close(pipe);
    }
    for (const [sinkId, byKind] of [...this.feeding]) {
      for (const [k, pipe] of [...byKind]) if (pipe.closed) byKind.delete(k);
      if (byKind.size === 0) this.feeding.delete(sinkId);
    }
  }

  /** Events of pipe ends (not elements of the core's): errors are passed on as the source's. */
  nodeEvent(node: MediaNode, ev: EngineEvent): void {
    if (ev.type !== 'error') return;
    for (const pipe of this.pipes.values()) {
      const mine = (pipe.source.node === node && pipe.out === ev.elementId) || (pipe.dst === node && pipe.in === ev.elementId);
      if (mine) this.emit({ type: 'error', elementId: pipe.source.id, tag: pipe.source.tag, message: `pipe to media node ${pipe.dst.id}: ${ev.message}`, ...(ev.code ? { code: ev.code } : {}) });
    }
  }

  private pipeFor(source: Placed, dst: MediaNode): Pipe {
    const key = `${source.id}>${dst.id}`;
    const existing = this.pipes.get(key);
    if (existing && !existing.closed) return existing;
    const pipe: Pipe = { key, source, dst, sinks: new Map(), closed: false, ready: Promise.resolve() };
    (pipe as { ready: Promise<void> }).ready = this.open(pipe);
    this.pipes.set(key, pipe);
    // A pipe that failed to open is dropped (its waiters see the error).
    pipe.ready.catch(() => { if (this.pipes.get(key) === pipe) this.pipes.delete(key); pipe.closed = true; });
    return pipe;
  }

  private async open(pipe: Pipe): Promise<void> {
    const { source, dst } = pipe;
    const srcEngine = source.node.engine;
    const dstEngine = dst.engine;
    const tag = `pipe ${source.id} > ${dst.id}`;
    try {
      pipe.in = await dstEngine.createRtpEndpoint({ tag });
      pipe.out = await srcEngine.createRtpEndpoint({ tag });
      const offer = await dstEngine.generateOffer(pipe.in, { audio: true, video: true, data: false });
      const answer = await srcEngine.processOffer(pipe.out, offer);
      await dstEngine.processAnswer(pipe.in, answer);
      await srcEngine.connect(source.inner, pipe.out);
    } catch (err) {
      await this.releaseEnds(pipe);
      throw err instanceof EngineError ? err : new EngineError('failed', `pipe ${tag}: ${String(err)}`);
    }
  }

  private async close(pipe: Pipe): Promise<void> {
    if (pipe.closed) return;
    pipe.closed = true;
    if (this.pipes.get(pipe.key) === pipe) this.pipes.delete(pipe.key);
    await pipe.ready.catch(() => undefined);
    await this.releaseEnds(pipe);
  }

  private async releaseEnds(pipe: Pipe): Promise<void> {
    const ends: [MediaNode, ElementId | undefined][] = [[pipe.source.node, pipe.out], [pipe.dst, pipe.in]];
    await Promise.all(ends.map(async ([node, id]) => {
      if (id !== undefined && node.state === 'up') await node.engine.release(id).catch(() => undefined);
    }));
  }
}
