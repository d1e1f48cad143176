// One MediaEngine over several media nodes (worker processes, remote media servers): the core
// drives it as it drives the in-process engine. Each element lives on one node, chosen when it is
// made (placement.ts); media between elements of two nodes goes through a pipe (pipes.ts). A node
// that is lost takes its elements with it: each gets an `error` event with code NODE_DOWN (its
// session stops with `media_node_down`), every other node goes on.
import {
  EngineError, NODE_DOWN,
  type ElementId, type ElementOptions, type ElementStats, type EngineCounters, type EngineEvent, type IceCandidateInit,
  type MediaEngine, type MediaKind, type OfferOptions, type PlayerInfo, type RecordingFormat, type RecordingResult,
} from '../types.js';
import type { MediaNode } from './node.js';
import { choose, type PlacementPolicy } from './placement.js';
import { PipeSet } from './pipes.js';
import type { Placed } from './placed.js';
import { Spares } from './spares.js';

/** What a node carries. Endpoints and rooms count elements from the moment they are placed. */
interface NodeLoad { elements: number; endpoints: number; rooms: Map<string, number> }

const isEndpoint = (kind: Placed['kind']): boolean => kind === 'webrtc' || kind === 'rtp';

/** Whether an element's node still holds it (the same generation, up). */
const alive = (e: Placed): boolean => e.node.generation === e.generation && e.node.state === 'up';

export class PoolEngine implements MediaEngine {
  private seq = 0;
  private readonly elements = new Map<ElementId, Placed>();
  /** Per node id, its engine's element id → pool element (to name events). */
  private readonly byInner = new Map<string, Map<ElementId, Placed>>();
  private readonly listeners = new Set<(ev: EngineEvent) => void>();
  private readonly detach: (() => void)[] = [];
  /** What each node carries, kept as elements come and go (placement reads it for every new element). */
  private readonly loads = new Map<MediaNode, NodeLoad>();
  /** Placement groups (`with`): their node, and how many of their elements are made or being made. */
  private readonly groups = new Map<string, { node: MediaNode; n: number }>();
  readonly pipes: PipeSet;
  readonly spares = new Spares();

  constructor(readonly nodes: readonly MediaNode[], private readonly policy: PlacementPolicy) {
    this.pipes = new PipeSet((ev) => this.emit(ev));
    for (const node of nodes) {
      this.detach.push(node.onEngine((engine) => {
        const off = engine.onEvent((ev) => this.fromNode(node, ev));
        this.spares.refill(node);
        return off;
      }));
      this.detach.push(node.onDown((reason) => this.nodeLost(node, reason)));
    }
  }

  /** The node holding an element (for `node_id` in get_info), if it is one of ours. */
  nodeOf(id: ElementId): string | undefined { return this.elements.get(id)?.node.id; }

  /** Elements and endpoints on a node (placement and the node list read it). */
  countOn(node: MediaNode): { endpoints: number; elements: number } {
    const l = this.loads.get(node);
    return { endpoints: l?.endpoints ?? 0, elements: l?.elements ?? 0 };
  }

  // ---- element table -----------------------------------------------------------------------------

  private get(id: ElementId): Placed {
    const e = this.elements.get(id);
    if (!e) throw new EngineError('not_found', `element ${id}`);
    if (!alive(e)) throw new EngineError('failed', `media node ${e.node.id} is down`);
    return e;
  }

  private async make(kind: Placed['kind'], opts: ElementOptions, create: (engine: MediaEngine, o: ElementOptions) => Promise<ElementId>): Promise<ElementId> {
    const near = opts.placement?.near !== undefined ? this.elements.get(opts.placement.near) : undefined;
    const groupKey = opts.placement?.with;
    const joined = groupKey !== undefined ? this.groups.get(groupKey) : undefined;
    // The first of a group is placed (and counts for its room); the others follow it.
    const room = joined ? undefined : opts.placement?.room;
    const node = joined && joined.node.state === 'up' ? joined.node : choose(this.nodes, this.policy, {
      near: near?.node,
      room,
      load: (n) => this.countOn(n),
      roomCount: (n, r) => this.roomCount(n, r),
    });
    if (groupKey !== undefined) {
      if (joined && joined.node === node) joined.n++;
      else this.groups.set(groupKey, { node, n: 1 });
    }
    const engine = node.engine;
    const generation = node.generation;
    // Counted from now, so that joins in flight do not all see the old load.
    this.account(node, kind, room, 1);
    let inner: ElementId;
    try {
      // A WebRTC endpoint or pass-through made ahead on that node costs no round trip.
      const spare = kind === 'webrtc' || kind === 'passthrough' ? this.spares.take(node, kind) : undefined;
      inner = spare ?? await create(engine, { tag: opts.tag });
      // The node went down while the element was being made: nothing to keep.
      if (node.generation !== generation || node.state !== 'up') throw new EngineError('failed', `media node ${node.id} went down`);
    } catch (err) {
      this.account(node, kind, room, -1);
      this.leaveGroup(groupKey, node);
      throw err;
    }
    this.loadOf(node).elements++;
    const id = `${node.id}/${++this.seq}`;
    const placed: Placed = { id, node, inner, generation, tag: opts.tag, kind, ...(room !== undefined ? { room } : {}), ...(groupKey !== undefined ? { group: groupKey } : {}) };
    this.elements.set(id, placed);
    let map = this.byInner.get(node.id);
    if (!map) this.byInner.set(node.id, (map = new Map()));
    map.set(inner, placed);
    return id;
  }

  private loadOf(node: MediaNode): NodeLoad {
    let l = this.loads.get(node);
    if (!l) this.loads.set(node, (l = { elements: 0, endpoints: 0, rooms: new Map() }));
    return l;
  }

  /** An element placed on a node (+1) or gone from it, or never made (-1): its endpoint and room share. */
  private account(node: MediaNode, kind: Placed['kind'], room: string | undefined, delta: 1 | -1): void {
    const l = this.loadOf(node);
    if (isEndpoint(kind)) l.endpoints += delta;
    if (room === undefined) return;
    const n = (l.rooms.get(room) ?? 0) + delta;
    if (n > 0) l.rooms.set(room, n);
    else l.rooms.delete(room);
  }

  /** A room's listeners on a node: one element per listener carries the room (its proxy); the rest sit near it. */
  private roomCount(node: MediaNode, room: string): number {
    return this.loads.get(node)?.rooms.get(room) ?? 0;
  }

  private forget(e: Placed): void {
    this.elements.delete(e.id);
    this.byInner.get(e.node.id)?.delete(e.inner);
    this.account(e.node, e.kind, e.room, -1);
    this.loadOf(e.node).elements--;
    this.leaveGroup(e.group, e.node);
  }

  private leaveGroup(key: string | undefined, node: MediaNode): void {
    if (key === undefined) return;
    const g = this.groups.get(key);
    if (!g || g.node !== node) return;
    if (--g.n <= 0) this.groups.delete(key);
  }

  // ---- events ------------------------------------------------------------------------------------

  private fromNode(node: MediaNode, ev: EngineEvent): void {
    const placed = this.byInner.get(node.id)?.get(ev.elementId);
    if (!placed) {
      this.pipes.nodeEvent(node, ev);
      return;
    }
    this.emit({ ...ev, elementId: placed.id, tag: placed.tag });
  }

  private emit(ev: EngineEvent): void {
    for (const l of [...this.listeners]) {
      try { l(ev); } catch { /* a listener's failure is its own */ }
    }
  }

  onEvent(listener: (event: EngineEvent) => void): () => void {
    this.listeners.add(listener);
    return () => { this.listeners.delete(listener); };
  }

  /** A node is lost: its elements are gone; each says so once, and pipes through it close. */
  private nodeLost(node: MediaNode, reason: string): void {
    const lost = [...this.elements.values()].filter((e) => e.node === node);
    for (const e of lost) this.forget(e);
    this.byInner.delete(node.id);
    this.pipes.nodeLost(node);
    this.spares.nodeLost(node);
    const message = `media node ${node.id} is down${reason ? `: ${reason}` : ''}`;
    // Endpoints first: a session stops on its endpoint's event; the rest follow for anyone else.
    for (const e of lost.sort((a, b) => Number(isEndpoint(b.kind)) - Number(isEndpoint(a.kind)))) {
      this.emit({ type: 'error', elementId: e.id, tag: e.tag, message, code: NODE_DOWN });
    }
  }

  // ---- creation ----------------------------------------------------------------------------------

  createWebRtcEndpoint(opts: ElementOptions): Promise<ElementId> { return this.make('webrtc', opts, (e, o) => e.createWebRtcEndpoint(o)); }
  createRtpEndpoint(opts: ElementOptions): Promise<ElementId> { return this.make('rtp', opts, (e, o) => e.createRtpEndpoint(o)); }
  createPassThrough(opts: ElementOptions): Promise<ElementId> { return this.make('passthrough', opts, (e, o) => e.createPassThrough(o)); }
  createRecorderEndpoint(opts: ElementOptions): Promise<ElementId> { return this.make('recorder', opts, (e, o) => e.createRecorderEndpoint(o)); }
  createPlayerEndpoint(opts: ElementOptions): Promise<ElementId> { return this.make('player', opts, (e, o) => e.createPlayerEndpoint(o)); }

  // ---- one element's operations: routed to its node ------------------------------------------------

  private on<T>(id: ElementId, f: (engine: MediaEngine, inner: ElementId) => Promise<T>): Promise<T> {
    let e: Placed;
    try { e = this.get(id); } catch (err) { return Promise.reject(err); }
    return f(e.node.engine, e.inner);
  }

  processOffer(id: ElementId, sdp: string): Promise<string> { return this.on(id, (e, i) => e.processOffer(i, sdp)); }
  generateOffer(id: ElementId, opts: OfferOptions): Promise<string> { return this.on(id, (e, i) => e.generateOffer(i, opts)); }
  processAnswer(id: ElementId, sdp: string): Promise<void> { return this.on(id, (e, i) => e.processAnswer(i, sdp)); }
  gatherCandidates(id: ElementId): Promise<void> { return this.on(id, (e, i) => e.gatherCandidates(i)); }
  addIceCandidate(id: ElementId, c: IceCandidateInit): Promise<void> { return this.on(id, (e, i) => e.addIceCandidate(i, c)); }
  requestKeyframe(id: ElementId): Promise<void> { return this.on(id, (e, i) => e.requestKeyframe(i)); }
  setMaxBitrate(id: ElementId, bps: number | null): Promise<void> { return this.on(id, (e, i) => e.setMaxBitrate(i, bps)); }
  async setVideoLayer(id: ElementId, layer: string): Promise<void> {
    const e = this.get(id);
    await e.node.engine.setVideoLayer(e.inner, layer);
    // Fed from another node: the layer is chosen where the source is, by the pipe that brings it.
    await this.pipes.setLayer(e, layer);
  }
  async getStats(id: ElementId): Promise<ElementStats> { return { ...(await this.on(id, (e, i) => e.getStats(i))), elementId: id }; }
  negotiatedCodecs(id: ElementId): Promise<{ audio?: string; video?: string }> { return this.on(id, (e, i) => e.negotiatedCodecs(i)); }
  recorderStart(id: ElementId, path: string, format: RecordingFormat): Promise<void> { return this.on(id, (e, i) => e.recorderStart(i, path, format)); }
  recorderPause(id: ElementId): Promise<void> { return this.on(id, (e, i) => e.recorderPause(i)); }
  recorderResume(id: ElementId): Promise<void> { return this.on(id, (e, i) => e.recorderResume(i)); }
  recorderStop(id: ElementId): Promise<RecordingResult> { return this.on(id, (e, i) => e.recorderStop(i)); }
  playerStart(id: ElementId, uri: string, loops: number): Promise<PlayerInfo> { return this.on(id, (e, i) => e.playerStart(i, uri, loops)); }
  playerPause(id: ElementId): Promise<void> { return this.on(id, (e, i) => e.playerPause(i)); }
  playerResume(id: ElementId): Promise<void> { return this.on(id, (e, i) => e.playerResume(i)); }
  playerStop(id: ElementId): Promise<void> { return this.on(id, (e, i) => e.playerStop(i)); }
  playerSeek(id: ElementId, ms: number): Promise<void> { return this.on(id, (e, i) => e.playerSeek(i, ms)); }
  playerPosition(id: ElementId): Promise<number> { return this.on(id, (e, i) => e.playerPosition(i)); }
  playerInfo(id: ElementId): Promise<PlayerInfo> { return this.on(id, (e, i) => e.playerInfo(i)); }

  // ---- the graph: across nodes through pipes ---------------------------------------------------------

  async connect(source: ElementId, sink: ElementId, kind?: MediaKind): Promise<void> {
    const s = this.get(source);
    const d = this.get(sink);
    if (s.node === d.node) {
      // A pipe this sink had from elsewhere for that media is replaced by the local link.
      await this.pipes.unlink(d, kind);
      await s.node.engine.connect(s.inner, d.inner, kind);
      return;
    }
    await this.pipes.link(s, d, kind);
  }

  async disconnect(source: ElementId, sink: ElementId, kind?: MediaKind): Promise<void> {
    // As in one engine: either side may already be gone (a released peer, a lost node): nothing to cut.
    const s = this.elements.get(source);
    const d = this.elements.get(sink);
    if (!s || !d) return;
    if (s.node === d.node) {
      if (alive(d)) await d.node.engine.disconnect(s.inner, d.inner, kind);
      return;
    }
    await this.pipes.unlink(d, kind, s);
  }

  async release(id: ElementId): Promise<void> {
    const e = this.elements.get(id);
    if (!e) return;
    this.forget(e);
    await this.pipes.released(e);
    if (alive(e)) await e.node.engine.release(e.inner);
  }

  async counters(): Promise<EngineCounters> {
    const all = await Promise.all(this.nodes.filter((n) => n.state === 'up').map(async (n) => {
      const c = await n.engine.counters().catch(() => undefined);
      // The spares made ahead are not anyone's elements (nor leaks): left out.
      const spare = this.spares.count(n);
      return c && { ...c, elements: c.elements - spare.elements, endpoints: c.endpoints - spare.endpoints };
    }));
    const sum: EngineCounters = { elements: 0, endpoints: 0, udpSockets: 0 };
    for (const c of all) {
      if (!c) continue;
      sum.elements += c.elements;
      sum.endpoints += c.endpoints;
      sum.udpSockets += c.udpSockets;
    }
    return sum;
  }

  async close(): Promise<void> {
    await this.spares.close();
    for (const d of this.detach.splice(0)) d();
    this.listeners.clear();
    this.elements.clear();
    this.byInner.clear();
    this.loads.clear();
  }
}
