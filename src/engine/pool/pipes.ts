// Media between elements of two nodes: one pipe per source element and destination node, shared
// by every sink of that source on that node — a room's publisher reaches a node once however many
// of its listeners are there. A pipe is a pair of WebRTC endpoints, one on each node (the
// destination offers, the source answers, candidates cross as they are found), because that
// gives, with the code every session already runs:
// - SRTP (DTLS-keyed) between machines;
// - the native forwarding plane on both ends: the source's node sends each packet once more
//   (one output), the destination's receives it once (one input) and fans it out natively;
// - keyframe requests and NACKs answered hop by hop, as for any client.
// The pipe carries the video codec of its first sink (video is forwarded, never transcoded) and
// Opus. A simulcast source sends one layer down a pipe: sinks that chose another layer (`setLayer`)
// are fed by another pipe from the same source, one per layer in use on that node. A pipe closes
// with its last sink, its source, or either node; one that fails (ICE, DTLS, an error of an end)
// stops what it fed with `media_node_down`.
import { parse, write } from 'sdp-transform';
import { EngineError, MEDIA_KINDS, NODE_DOWN, type ElementId, type EngineEvent, type MediaKind } from '../types.js';
import type { MediaNode } from './node.js';
import type { Placed } from './placed.js';

/** How long a new pipe may take to connect (ICE and DTLS between two nodes). */
const CONNECT_TIMEOUT_MS = 10_000;

/** The layer a sink gets unless it chose another (as the engines' own default). */
const DEFAULT_LAYER = 'high';

interface Pipe {
  readonly key: string;
  readonly source: Placed;
  readonly dst: MediaNode;
  /** The simulcast layer its source end sends (when the source is simulcast). */
  readonly layer: string;
  /** The source node's end (its engine's id), and the destination's. */
  out?: ElementId;
  in?: ElementId;
  readonly ready: Promise<void>;
  /** Sinks on the destination node fed by it, with the media each takes. */
  readonly sinks: Map<ElementId, { sink: Placed; kinds: Set<MediaKind> }>;
  /** Which ends reported `connected`; `connected()` runs when both have. */
  readonly up: Set<'in' | 'out'>;
  connected?: () => void;
  failed?: (why: string) => void;
  closed: boolean;
}

export interface PipeInfo { source: ElementId; from: string; to: string; layer: string; sinks: number }

export class PipeSet {
  private readonly pipes = new Map<string, Pipe>();
  /** sink id → kind → the pipe feeding it that media. */
  private readonly feeding = new Map<ElementId, Map<MediaKind, Pipe>>();
  /** `${node id} ${engine id}` of each pipe end → its pipe and side (to route the ends' events). */
  private readonly ends = new Map<string, { pipe: Pipe; side: 'in' | 'out' }>();
  /** The simulcast layer each sink chose, if not the default. */
  private readonly layers = new Map<ElementId, string>();

  constructor(private readonly emit: (ev: EngineEvent) => void) {}

  get size(): number { return this.pipes.size; }

  list(): PipeInfo[] {
    return [...this.pipes.values()].map((p) => ({ source: p.source.id, from: p.source.node.id, to: p.dst.id, layer: p.layer, sinks: p.sinks.size }));
  }

  /** Media of `kind` (all when omitted) from `source` reaches `sink` on another node. */
  async link(source: Placed, sink: Placed, kind?: MediaKind): Promise<void> {
    const kinds = kind ? [kind] : [...MEDIA_KINDS];
    // Whatever fed this sink these media before (another source, or the same through an old pipe) stops.
    await this.unlink(sink, kind);
    const pipe = this.pipeFor(source, sink, this.layers.get(sink.id) ?? DEFAULT_LAYER);
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
    // Connecting asks the pipe's far end for a keyframe: it crosses as RTCP to the source.
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

  /**
   * A sink chose a simulcast layer. When pipes feed it, it moves (all its media) to the pipe of
   * that layer from the same source; its node's own choice is set by the caller.
   */
  async setLayer(sink: Placed, layer: string): Promise<void> {
    if (layer === DEFAULT_LAYER) this.layers.delete(sink.id);
    else this.layers.set(sink.id, layer);
    const byKind = this.feeding.get(sink.id);
    if (!byKind) return;
    const moves = new Map<Pipe, MediaKind[]>();
    for (const [k, pipe] of byKind) if (pipe.layer !== layer) moves.set(pipe, [...(moves.get(pipe) ?? []), k]);
    for (const [pipe, kinds] of moves) {
      // The new pipe is up before the old one is left: media goes on from one to the other.
      const next = this.pipeFor(pipe.source, sink, layer);
      try {
        await next.ready;
        if (kinds.length === MEDIA_KINDS.length) await this.link(pipe.source, sink);
        else for (const k of kinds) await this.link(pipe.source, sink, k);
      } finally {
        if (next.sinks.size === 0) await this.close(next); // opened for nothing (the sink went, a link failed)
      }
    }
  }

  /** An element was released: pipes it fed close, and it stops taking from any. */
  async released(e: Placed): Promise<void> {
    this.layers.delete(e.id);
    await this.unlink(e);
    for (const pipe of [...this.pipes.values()]) if (pipe.source === e) await this.close(pipe);
  }

  /** A node is lost: every pipe from or to it closes; the ends on live nodes are released. */
  nodeLost(node: MediaNode): void {
    for (const pipe of [...this.pipes.values()]) {
      if (pipe.source.node === node || pipe.dst === node) void this.close(pipe);
    }
    this.dropClosedFeeds();
  }

  /** Events of pipe ends (not elements of the core's): candidates cross, states settle the pipe. */
  nodeEvent(node: MediaNode, ev: EngineEvent): void {
    const end = this.ends.get(`${node.id} ${ev.elementId}`);
    if (!end) return;
    const { pipe, side } = end;
    switch (ev.type) {
      case 'ice_candidate': {
        // To the other end, on the other node.
        const [otherNode, other] = side === 'in' ? [pipe.source.node, pipe.out] : [pipe.dst, pipe.in];
        if (other !== undefined && otherNode.state === 'up') void otherNode.engine.addIceCandidate(other, ev.candidate).catch(() => undefined);
        break;
      }
      case 'connection_state':
        if (ev.state === 'connected') {
          pipe.up.add(side);
          if (pipe.up.size === 2) pipe.connected?.();
        } else if (ev.state === 'failed' || ev.state === 'closed') {
          this.fail(pipe, `its end on ${node.id} is ${ev.state}`);
        }
        break;
      case 'error':
        this.fail(pipe, `its end on ${node.id}: ${ev.message}`);
        break;
      default:
        break;
    }
  }

  /** A pipe that broke: it closes, and what it fed stops (its media is gone, as with a lost node). */
  private fail(pipe: Pipe, why: string): void {
    if (pipe.closed) return;
    if (pipe.failed) { pipe.failed(why); return; } // still opening: link() reports it
    const message = `the pipe from media node ${pipe.source.node.id} to ${pipe.dst.id} failed: ${why}`;
    const sinks = [...pipe.sinks.values()].map((s) => s.sink);
    void this.close(pipe);
    this.dropClosedFeeds();
    for (const s of sinks) this.emit({ type: 'error', elementId: s.id, tag: s.tag, message, code: NODE_DOWN });
  }

  private dropClosedFeeds(): void {
    for (const [sinkId, byKind] of [...this.feeding]) {
      for (const [k, pipe] of [...byKind]) if (pipe.closed) byKind.delete(k);
      if (byKind.size === 0) this.feeding.delete(sinkId);
    }
  }

  private pipeFor(source: Placed, sink: Placed, layer: string): Pipe {
    const dst = sink.node;
    const key = `${source.id}>${dst.id} ${layer}`;
    const existing = this.pipes.get(key);
    if (existing && !existing.closed) return existing;
    const pipe: Pipe = { key, source, dst, layer, sinks: new Map(), up: new Set(), closed: false, ready: Promise.resolve() };
    (pipe as { ready: Promise<void> }).ready = this.open(pipe, sink);
    this.pipes.set(key, pipe);
    // A pipe that failed to open is dropped (its waiters see the error).
    pipe.ready.catch(() => { if (this.pipes.get(key) === pipe) this.pipes.delete(key); pipe.closed = true; });
    return pipe;
  }

  private async open(pipe: Pipe, firstSink: Placed): Promise<void> {
    const { source, dst } = pipe;
    const srcEngine = source.node.engine;
    const dstEngine = dst.engine;
    const tag = `pipe ${source.id} > ${dst.id}`;
    let timer: NodeJS.Timeout | undefined;
    try {
      const connected = new Promise<void>((resolve, reject) => {
        pipe.connected = resolve;
        pipe.failed = (why) => reject(new EngineError('failed', `pipe ${tag}: ${why}`));
        timer = setTimeout(() => pipe.failed?.(`not connected after ${CONNECT_TIMEOUT_MS / 1000} s`), CONNECT_TIMEOUT_MS);
      });
      connected.catch(() => undefined); // awaited below; a failure before then must not go unhandled
      const [inId, outId, video] = await Promise.all([
        dstEngine.createWebRtcEndpoint({ tag }),
        srcEngine.createWebRtcEndpoint({ tag }),
        this.videoCodecOf(firstSink),
      ]);
      pipe.in = inId;
      pipe.out = outId;
      this.ends.set(`${dst.id} ${inId}`, { pipe, side: 'in' });
      this.ends.set(`${source.node.id} ${outId}`, { pipe, side: 'out' });
      const offer = await dstEngine.generateOffer(inId, { audio: true, video: true, data: false });
      const answer = await srcEngine.processOffer(outId, video ? onlyVideoCodec(offer, video) : offer);
      await dstEngine.processAnswer(inId, answer);
      await Promise.all([dstEngine.gatherCandidates(inId), srcEngine.gatherCandidates(outId)]);
      await connected;
      if (pipe.layer !== DEFAULT_LAYER) await srcEngine.setVideoLayer(outId, pipe.layer);
      await srcEngine.connect(source.inner, outId);
    } catch (err) {
      await this.releaseEnds(pipe);
      throw err instanceof EngineError ? err : new EngineError('failed', `pipe ${tag}: ${String(err)}`);
    } finally {
      clearTimeout(timer);
      pipe.connected = undefined;
      pipe.failed = undefined;
    }
  }

  /** The video codec a sink's endpoint negotiated with its client (what the pipe must carry), if it has one. */
  private async videoCodecOf(sink: Placed): Promise<string | undefined> {
    if (sink.kind !== 'webrtc' && sink.kind !== 'rtp') return undefined;
    const codecs = await sink.node.engine.negotiatedCodecs(sink.inner).catch(() => ({} as { video?: string }));
    return codecs.video;
  }

  private async close(pipe: Pipe): Promise<void> {
    if (pipe.closed) return;
    pipe.closed = true;
    if (this.pipes.get(pipe.key) === pipe) this.pipes.delete(pipe.key);
    pipe.failed?.('closed while opening');
    await pipe.ready.catch(() => undefined);
    await this.releaseEnds(pipe);
  }

  private async releaseEnds(pipe: Pipe): Promise<void> {
    const ends: [MediaNode, ElementId | undefined][] = [[pipe.source.node, pipe.out], [pipe.dst, pipe.in]];
    await Promise.all(ends.map(async ([node, id]) => {
      if (id === undefined) return;
      this.ends.delete(`${node.id} ${id}`);
      if (node.state === 'up') await node.engine.release(id).catch(() => undefined);
    }));
  }
}

/**
 * The offer with only `codec`'s video payload types (and their retransmission types) left: the
 * answering end would otherwise pick its own first choice, which the sinks may not decode.
 * Unchanged when the offer has no such codec (the session layer reports the mismatch).
 */
export function onlyVideoCodec(sdp: string, codec: string): string {
  const s = parse(sdp);
  const want = codec.toLowerCase().replace(/^video\//, '');
  let changed = false;
  for (const m of s.media) {
    if (m.type !== 'video') continue;
    const keep = new Set(m.rtp.filter((r) => r.codec.toLowerCase() === want).map((r) => r.payload));
    if (keep.size === 0) continue;
    for (const f of m.fmtp ?? []) {
      const apt = /(?:^|;)\s*apt=(\d+)/.exec(f.config);
      if (apt && keep.has(Number(apt[1])) && m.rtp.some((r) => r.payload === f.payload && r.codec.toLowerCase() === 'rtx')) keep.add(f.payload);
    }
    m.rtp = m.rtp.filter((r) => keep.has(r.payload));
    m.fmtp = (m.fmtp ?? []).filter((f) => keep.has(f.payload));
    if (m.rtcpFb) m.rtcpFb = m.rtcpFb.filter((f) => f.payload === '*' || keep.has(Number(f.payload)));
    m.payloads = [...keep].join(' ');
    changed = true;
  }
  return changed ? write(s) : sdp;
}
