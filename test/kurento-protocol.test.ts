// The Kurento protocol door (`/kurento`), driven by the real kurento-client 7.3.0 and by raw
// JSON-RPC frames, with werift peers sending tagged RTP: hello world (an endpoint looped to
// itself), one-to-one, one-to-many, transactions, reconnecting within and past the grace time,
// the error codes, authentication, the ServerManager, and the `media-server` mode.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket, type RawData } from 'ws';
import { SignJWT } from 'jose';
import { startTestServer, eventually } from './helpers/server.js';
import { TestPeer } from './helpers/peer.js';
import { loadKurentoClient, type KurentoClientModule } from './helpers/kurento-client.js';
import { hashPassword } from '../src/access/auth.js';
import { startServer, type Server } from '../src/main.js';
import type { ConfigInput } from '../src/config.js';

// kurento-client is untyped (see helpers/kurento-client.ts).
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let kurento: KurentoClientModule;

/** kurento-client (the loader makes its explicit transactions work on Node 20). */
function loadKurento(): KurentoClientModule {
  kurento ??= loadKurentoClient();
  return kurento;
}

/**
 * A kurento-client connected to `server`'s Kurento door (closed with `client.close()`). Its
 * JSON-RPC layer keeps a timer per response to recognise duplicates (20 s by default), which
 * would hold the test process that long after the last test: 1 s here. Awaiting the client
 * resolves once its WebSocket is open, while its own check of the server's modules (describe
 * the ServerManager, getInfo) is still under way; a client closed then leaves that request to
 * time out (20 s), so the check is waited for here by a round trip of the same kind.
 */
async function kurentoClient(server: Server, options: Record<string, unknown> = {}): Promise<Any> {
  loadKurento();
  const client = await kurento(`${server.url}kurento`, { failAfter: 1, duplicates_timeout: 1000, ...options });
  await (await client.getServerManager()).getInfo();
  return client;
}

/**
 * The Kurento error code of a kurento-client call (0 when it succeeds), made with a callback:
 * called without one, kurento-client's generated methods hand the error to a `noop` callback that
 * prints it and resolves the promise with undefined.
 */
function codeOf(call: (callback: (error?: { code?: number } | null) => void) => unknown): Promise<number> {
  return new Promise((resolve) => {
    call((error) => resolve(error ? error.code ?? -1 : 0));
  });
}

/**
 * Negotiates `ep` with `peer` as a Kurento application does: candidates trickled both ways
 * (IceCandidateFound → peer, the peer's → addIceCandidate), processOffer, gatherCandidates.
 * Resolves once the peer is connected.
 */
async function negotiate(ep: Any, peer: TestPeer): Promise<void> {
  const IceCandidate = kurento.getComplexType('IceCandidate');
  ep.on('IceCandidateFound', (ev: Any) => {
    void peer.addCandidate({ candidate: ev.candidate.candidate, sdpMid: ev.candidate.sdpMid, sdpMLineIndex: ev.candidate.sdpMLineIndex }).catch(() => undefined);
  });
  const offer = await peer.makeOffer();
  const answer: string = await ep.processOffer(offer.sdp);
  assert.match(answer, /^v=0/);
  await peer.takeAnswer({ sdp: answer });
  await ep.gatherCandidates();
  for (const c of offer.candidates) await ep.addIceCandidate(IceCandidate(c));
  await peer.waitConnected(15000);
}

// ---- raw JSON-RPC ----------------------------------------------------------------------------

interface RpcError { code: number; message: string; data?: { type?: string } }
interface RpcResponse { jsonrpc: '2.0'; id: number | string | null; result?: Any; error?: RpcError }

/** The outcome of a WebSocket upgrade: 101, or the refusal's HTTP status. */
function upgrade(url: string): Promise<{ status: number; ws?: WebSocket }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    ws.once('open', () => resolve({ status: 101, ws }));
    ws.once('unexpected-response', (_req, res) => { res.resume(); resolve({ status: res.statusCode ?? 0 }); });
    ws.once('error', () => resolve({ status: -1 }));
  });
}

/**
 * A Kurento client written by hand: JSON-RPC requests with numeric ids, the responses matched to
 * them, `onEvent` notifications collected. Once a response names a session, later requests carry
 * it (unless the request sets its own `sessionId`, or `null` to send none).
 */
class RawKurento {
  private nextId = 1;
  private readonly pending = new Map<number | string, (r: RpcResponse) => void>();
  /** Responses with a null id (frames the server could not read an id from), in order. */
  private readonly orphans: ((r: RpcResponse) => void)[] = [];
  readonly events: { object: string; type: string; data: Any }[] = [];
  sessionId?: string;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: RawData) => this.onMessage(data));
    ws.on('error', () => undefined);
  }

  static async open(url: string): Promise<RawKurento> {
    const r = await upgrade(url);
    if (!r.ws) throw new Error(`Kurento upgrade to ${url} refused with HTTP ${r.status}`);
    return new RawKurento(r.ws);
  }

  private onMessage(data: RawData): void {
    const msg = JSON.parse(String(data)) as Any;
    if (msg.method === 'onEvent') {
      this.events.push(msg.params.value);
      return;
    }
    if (msg.id === null || msg.id === undefined) {
      this.orphans.shift()?.(msg as RpcResponse);
      return;
    }
    const done = this.pending.get(msg.id);
    this.pending.delete(msg.id);
    done?.(msg as RpcResponse);
  }

  /** Sends one request; resolves with the whole response frame. */
  request(method: string, params: Record<string, unknown> = {}, opts: { binary?: boolean } = {}): Promise<RpcResponse> {
    const id = this.nextId++;
    const p = { ...params };
    if (p.sessionId === undefined && this.sessionId) p.sessionId = this.sessionId;
    if (p.sessionId === null) delete p.sessionId;
    const frame = JSON.stringify({ jsonrpc: '2.0', id, method, params: p });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.pending.delete(id); reject(new Error(`no response to ${method} (id ${id})`)); }, 10000);
      this.pending.set(id, (r) => {
        clearTimeout(timer);
        if (r.result && typeof r.result.sessionId === 'string' && method !== 'closeSession') this.sessionId ??= r.result.sessionId;
        resolve(r);
      });
      this.ws.send(opts.binary ? Buffer.from(frame) : frame, { binary: opts.binary ?? false });
    });
  }

  /** Sends a frame as it is; resolves with the next response that has a null id. */
  sendRaw(frame: string | Buffer, binary = false): Promise<RpcResponse> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no response to a raw frame')), 10000);
      this.orphans.push((r) => { clearTimeout(timer); resolve(r); });
      this.ws.send(frame, { binary });
    });
  }

  /** A request that must succeed: its result. */
  async ok(method: string, params: Record<string, unknown> = {}): Promise<Any> {
    const r = await this.request(method, params);
    if (r.error) throw new Error(`${method} failed: ${r.error.code} ${r.error.message}`);
    return r.result;
  }

  /** A request that must fail: its error. */
  async fails(method: string, params: Record<string, unknown> = {}): Promise<RpcError> {
    const r = await this.request(method, params);
    if (!r.error) throw new Error(`${method} succeeded (${JSON.stringify(r.result)}) where an error was expected`);
    return r.error;
  }

  async create(type: string, constructorParams?: Record<string, unknown>): Promise<string> {
    return (await this.ok('create', { type, ...(constructorParams ? { constructorParams } : {}) })).value as string;
  }

  async invoke(object: string, operation: string, operationParams?: Record<string, unknown>): Promise<Any> {
    return (await this.ok('invoke', { object, operation, ...(operationParams ? { operationParams } : {}) })).value;
  }

  close(): Promise<void> {
    if (this.ws.readyState === this.ws.CLOSED) return Promise.resolve();
    return new Promise((resolve) => {
      this.ws.once('close', () => resolve());
      this.ws.close();
    });
  }
}

const kurentoUrl = (server: Server, token?: string) => `${server.url}kurento${token !== undefined ? `?access_token=${encodeURIComponent(token)}` : ''}`;

// ---- the tests ---------------------------------------------------------------------------------

describe('Kurento protocol with kurento-client and WebRTC peers', () => {
  let server: Server;
  const clients: Any[] = [];
  const peers: TestPeer[] = [];
  before(async () => {
    loadKurento();
    server = await startTestServer();
  });
  after(async () => {
    for (const c of clients) c.close();
    await Promise.all(peers.map((p) => p.close().catch(() => undefined)));
    await server.close();
  });

  it('hello world: a WebRtcEndpoint connected to itself sends the peer its own audio and video', { timeout: 60000 }, async () => {
    const client = await kurentoClient(server);
    clients.push(client);
    const pipeline = await client.create('MediaPipeline');
    const ep = await pipeline.create('WebRtcEndpoint');
    const peer = new TestPeer();
    peers.push(peer);

    let gatheringDone = false;
    const flowingIn: string[] = [];
    const mediaStates: string[] = [];
    ep.on('IceGatheringDone', () => { gatheringDone = true; });
    ep.on('MediaFlowInStateChanged', (ev: Any) => { if (ev.state === 'FLOWING') flowingIn.push(ev.mediaType); });
    ep.on('MediaStateChanged', (ev: Any) => mediaStates.push(ev.newState));
    await ep.connect(ep);
    await negotiate(ep, peer);
    const sending = peer.startSending();
    try {
      await eventually(() => peer.from('video', peer.tag).length > 25 && peer.from('audio', peer.tag).length > 25, 10000, 'the peer\'s own audio and video back');
      await eventually(() => gatheringDone, 5000, 'IceGatheringDone');
      await eventually(() => flowingIn.includes('VIDEO') && flowingIn.includes('AUDIO'), 5000, 'MediaFlowInStateChanged FLOWING (audio and video)');
      await eventually(() => mediaStates.includes('CONNECTED'), 5000, 'MediaStateChanged CONNECTED');
      assert.equal(await ep.getMediaState(), 'CONNECTED');
      assert.equal(await ep.getConnectionState(), 'CONNECTED');
      assert.equal(await ep.isMediaFlowingIn('VIDEO'), true);
      assert.equal(await ep.isMediaFlowingIn('AUDIO'), true);

      // Connected to itself: the same connections seen from both sides, one per media type.
      const sources: Any[] = await ep.getSourceConnections();
      const sinks: Any[] = await ep.getSinkConnections();
      const shape = (list: Any[]) => list.map((c) => ({
        source: typeof c.source === 'string' ? c.source : c.source?.id,
        sink: typeof c.sink === 'string' ? c.sink : c.sink?.id,
        type: c.type, sourceDescription: c.sourceDescription, sinkDescription: c.sinkDescription,
      })).sort((a, b) => String(a.type).localeCompare(String(b.type)));
      const expected = ['AUDIO', 'DATA', 'VIDEO'].map((type) => ({ source: ep.id, sink: ep.id, type, sourceDescription: 'default', sinkDescription: 'default' }));
      assert.deepEqual(shape(sources), expected);
      assert.deepEqual(shape(sinks), expected);
      assert.deepEqual(shape(await ep.getSourceConnections('VIDEO')), [expected[2]]);

      // Statistics as kurento-client reads them: the video the peer sent us, counted.
      const stats: Record<string, Any> = await ep.getStats('VIDEO');
      const inbound = Object.values(stats).find((x) => x.type === 'inboundrtp');
      assert.ok(inbound, JSON.stringify(stats));
      assert.ok(inbound.packetsReceived > 0, JSON.stringify(inbound));
    } finally {
      sending.stop();
    }
    await pipeline.release();
    const c = await server.engine.counters();
    assert.equal(c.endpoints, 0, 'the endpoint is gone with its pipeline');
  });

  it('one-to-one: two endpoints connected both ways; each peer receives the other', { timeout: 60000 }, async () => {
    const client = await kurentoClient(server);
    clients.push(client);
    const pipeline = await client.create('MediaPipeline');
    const [a, b] = await Promise.all([pipeline.create('WebRtcEndpoint'), pipeline.create('WebRtcEndpoint')]);
    const pa = new TestPeer();
    const pb = new TestPeer();
    peers.push(pa, pb);
    await a.connect(b);
    await b.connect(a);
    await Promise.all([negotiate(a, pa), negotiate(b, pb)]);
    const sa = pa.startSending();
    const sb = pb.startSending();
    try {
      await eventually(() => pa.from('video', pb.tag).length > 25 && pa.from('audio', pb.tag).length > 25, 10000, 'A receives B');
      await eventually(() => pb.from('video', pa.tag).length > 25 && pb.from('audio', pa.tag).length > 25, 10000, 'B receives A');
      assert.equal(pa.from('video', pa.tag).length, 0, 'A does not hear itself');
      assert.equal(pb.from('video', pb.tag).length, 0, 'B does not hear itself');
      const srcA: Any[] = await a.getSourceConnections('VIDEO');
      assert.equal(srcA.length, 1);
      assert.equal(typeof srcA[0].source === 'string' ? srcA[0].source : srcA[0].source.id, b.id);
    } finally {
      sa.stop();
      sb.stop();
    }
    await pipeline.release();
  });

  it('one-to-many: one presenter, 20 viewers; every viewer receives the presenter\'s audio and video', { timeout: 120000 }, async () => {
    const client = await kurentoClient(server);
    clients.push(client);
    const pipeline = await client.create('MediaPipeline');
    const presenter = await pipeline.create('WebRtcEndpoint');
    const pp = new TestPeer();
    peers.push(pp);
    await negotiate(presenter, pp);
    const viewers: { ep: Any; peer: TestPeer }[] = [];
    await Promise.all(Array.from({ length: 20 }, async () => {
      const ep = await pipeline.create('WebRtcEndpoint');
      const peer = new TestPeer();
      peers.push(peer);
      viewers.push({ ep, peer });
      await presenter.connect(ep);
      await negotiate(ep, peer);
    }));
    assert.equal(viewers.length, 20);
    const sending = pp.startSending();
    try {
      await eventually(() => viewers.every((v) => v.peer.from('video', pp.tag).length > 10 && v.peer.from('audio', pp.tag).length > 10), 20000, 'every viewer receiving the presenter');
      const counts = viewers.map((v) => [v.peer.from('audio', pp.tag).length, v.peer.from('video', pp.tag).length]);
      for (const [i, [audio, video]] of counts.entries()) {
        assert.ok(audio! > 0 && video! > 0, `viewer ${i}: audio ${audio}, video ${video}`);
      }
      const sinks: Any[] = await presenter.getSinkConnections('VIDEO');
      assert.equal(sinks.length, 20);
    } finally {
      sending.stop();
    }
    await pipeline.release();
    await Promise.all(viewers.map((v) => v.peer.close()));
    const c = await server.engine.counters();
    assert.equal(c.endpoints, 0);
  });
});

describe('transactions', () => {
  let server: Server;
  const clients: Any[] = [];
  const raws: RawKurento[] = [];
  before(async () => {
    loadKurento();
    server = await startTestServer();
  });
  after(async () => {
    for (const c of clients) c.close();
    await Promise.all(raws.map((r) => r.close()));
    await server.close();
  });

  it('kurento-client: beginTransaction/commit creates a pipeline and elements (newref), then they are used', { timeout: 30000 }, async () => {
    const client = await kurentoClient(server);
    clients.push(client);
    const tx = client.beginTransaction();
    const pipeline = client.create(tx, 'MediaPipeline');
    const pass = pipeline.create(tx, 'PassThrough');
    const ep = pipeline.create(tx, 'WebRtcEndpoint');
    // Only creates: kurento-client 7.3.0's generated methods do not take a transaction argument
    // (connect re-reads it after shifting it off and drops it; setName(tx, ...) takes the
    // transaction for the name), so invokes are made once the objects exist.
    await tx.commit();
    assert.equal(tx.commited, true);
    assert.match(pipeline.id, /MediaPipeline$/);
    assert.ok(pass.id.startsWith(`${pipeline.id}/`), pass.id);
    assert.ok(ep.id.startsWith(`${pipeline.id}/`), ep.id);
    // Used after the transaction, as any object.
    await pass.connect(ep);
    const children: Any[] = await pipeline.getChildren();
    assert.deepEqual(children.map((c) => (typeof c === 'string' ? c : c.id)).sort(), [pass.id, ep.id].sort());
    const src: Any[] = await ep.getSourceConnections('VIDEO');
    assert.equal(src.length, 1);
    assert.equal(typeof src[0].source === 'string' ? src[0].source : src[0].source.id, pass.id);
    const sm = await client.getServerManager();
    const pipelines: Any[] = await sm.getPipelines();
    assert.ok(pipelines.map((p) => (typeof p === 'string' ? p : p.id)).includes(pipeline.id));
    await pipeline.release();
  });

  it('kurento-client: client.transaction(fn) creates in one transaction', { timeout: 30000 }, async () => {
    const client = await kurentoClient(server);
    clients.push(client);
    let pipeline: Any;
    let ep: Any;
    await client.transaction(function (this: Any) {
      pipeline = this.create('MediaPipeline');
      ep = pipeline.create('WebRtcEndpoint');
    });
    assert.match(pipeline.id, /MediaPipeline$/);
    assert.ok(ep.id.startsWith(`${pipeline.id}/`), ep.id);
    await ep.addTag('k', 'v');
    assert.equal(await ep.getTag('k'), 'v');
    const mp = await ep.getMediaPipeline();
    assert.equal(typeof mp === 'string' ? mp : mp.id, pipeline.id);
    await pipeline.release();
  });

  it('raw: a transaction with newref:N answers one response per operation', async () => {
    const raw = await RawKurento.open(kurentoUrl(server));
    raws.push(raw);
    await raw.ok('connect');
    const r = await raw.ok('transaction', {
      operations: [
        { jsonrpc: '2.0', id: 0, method: 'create', params: { type: 'MediaPipeline' } },
        { jsonrpc: '2.0', id: 1, method: 'create', params: { type: 'WebRtcEndpoint', constructorParams: { mediaPipeline: 'newref:0' } } },
        { jsonrpc: '2.0', id: 2, method: 'invoke', params: { object: 'newref:1', operation: 'getMediaPipeline' } },
        { jsonrpc: '2.0', id: 3, method: 'invoke', params: { object: 'newref:0', operation: 'getChildren' } },
      ],
    });
    assert.equal(r.sessionId, raw.sessionId);
    const responses = r.value as RpcResponse[];
    assert.ok(Array.isArray(responses));
    assert.equal(responses.length, 4);
    responses.forEach((x, i) => {
      assert.equal(x.jsonrpc, '2.0');
      assert.equal(x.id, i);
      assert.equal(x.error, undefined);
      assert.equal(x.result.sessionId, raw.sessionId);
    });
    const pipeline = responses[0]!.result.value as string;
    const ep = responses[1]!.result.value as string;
    assert.match(pipeline, /_kurento\.MediaPipeline$/);
    assert.ok(ep.startsWith(`${pipeline}/`));
    assert.equal(responses[2]!.result.value, pipeline);
    assert.deepEqual(responses[3]!.result.value, [ep]);
    // Usable outside the transaction too.
    assert.equal(await raw.invoke(ep, 'getMediaPipeline'), pipeline);
    await raw.ok('release', { object: pipeline });
  });

  it('raw: a failing operation ends the transaction; the ones after it do not run', async () => {
    const raw = await RawKurento.open(kurentoUrl(server));
    raws.push(raw);
    await raw.ok('connect');
    const r = await raw.ok('transaction', {
      operations: [
        { jsonrpc: '2.0', id: 0, method: 'create', params: { type: 'MediaPipeline' } },
        { jsonrpc: '2.0', id: 1, method: 'create', params: { type: 'NoSuchType', constructorParams: { mediaPipeline: 'newref:0' } } },
        { jsonrpc: '2.0', id: 2, method: 'create', params: { type: 'PassThrough', constructorParams: { mediaPipeline: 'newref:0' } } },
      ],
    });
    const responses = r.value as RpcResponse[];
    assert.equal(responses.length, 2, JSON.stringify(responses));
    assert.ok(responses[0]!.result);
    assert.equal(responses[1]!.id, 1);
    assert.equal(responses[1]!.error?.code, 40100);
    assert.equal(responses[1]!.result, undefined);
    const pipeline = responses[0]!.result.value as string;
    assert.deepEqual(await raw.invoke(pipeline, 'getChildren'), [], 'the PassThrough after the failure was not created');
    await raw.ok('release', { object: pipeline });

    // Not a request list at all: the transaction itself is malformed.
    assert.equal((await raw.fails('transaction', { operations: 'nope' })).code, 40008);
  });

  it('raw: a newref to no result fails that operation only; what came before is answered', async () => {
    const raw = await RawKurento.open(kurentoUrl(server));
    raws.push(raw);
    await raw.ok('connect');
    const r = await raw.ok('transaction', {
      operations: [
        { jsonrpc: '2.0', id: 0, method: 'create', params: { type: 'MediaPipeline' } },
        { jsonrpc: '2.0', id: 1, method: 'create', params: { type: 'PassThrough', constructorParams: { mediaPipeline: 'newref:7' } } },
      ],
    });
    const responses = r.value as RpcResponse[];
    assert.equal(responses.length, 2, JSON.stringify(responses));
    const pipeline = responses[0]!.result.value as string;
    assert.match(pipeline, /_kurento\.MediaPipeline$/, 'the client learns the id of what operation 0 made');
    assert.equal(responses[1]!.error?.code, 40008);
    await raw.ok('release', { object: pipeline });
  });
});

describe('reconnecting with the session id', () => {
  let server: Server;
  const raws: RawKurento[] = [];
  before(async () => { server = await startTestServer({ kurento: { session_grace_seconds: 1 } }); });
  after(async () => {
    await Promise.all(raws.map((r) => r.close()));
    await server.close();
  });

  it('within the grace time: connect {sessionId} on a new socket finds the session and its objects', async () => {
    const a = await RawKurento.open(kurentoUrl(server));
    raws.push(a);
    const { sessionId } = await a.ok('connect');
    assert.equal(typeof sessionId, 'string');
    const pipeline = await a.create('MediaPipeline');
    const ep = await a.create('WebRtcEndpoint', { mediaPipeline: pipeline });
    const pass = await a.create('PassThrough', { mediaPipeline: pipeline });
    await a.ok('subscribe', { object: pass, type: 'ElementConnected' });
    await a.close();

    const b = await RawKurento.open(kurentoUrl(server));
    raws.push(b);
    const again = await b.ok('connect', { sessionId });
    assert.equal(again.sessionId, sessionId);
    assert.equal(typeof again.serverId, 'string');
    const d = await b.ok('describe', { object: ep });
    assert.equal(d.type, 'WebRtcEndpoint');
    assert.equal(d.qualifiedType, 'kurento.WebRtcEndpoint');
    assert.ok(Array.isArray(d.hierarchy) && d.hierarchy.includes('kurento.MediaElement'));
    assert.equal(await b.invoke(ep, 'getMediaPipeline'), pipeline);
    // The session's subscriptions came along: its events now go to the new socket.
    await b.invoke(pass, 'connect', { sink: ep, mediaType: 'VIDEO' });
    await eventually(() => b.events.some((e) => e.type === 'ElementConnected' && e.object === pass && e.data.sink === ep && e.data.mediaType === 'VIDEO'), 5000, 'ElementConnected on the new socket');
    // Attached again: past the grace time (1 s here) it is still there.
    await sleep(1500);
    assert.equal(await b.invoke(ep, 'getMediaPipeline'), pipeline);
    await b.ok('release', { object: pipeline });
    await b.close();
  });

  it('past the grace time: the session is invalid (40007) and everything it held is released', { timeout: 30000 }, async () => {
    // Let releases from earlier tests settle before reading the baseline.
    await sleep(100);
    const baseline = await server.engine.counters();
    const a = await RawKurento.open(kurentoUrl(server));
    raws.push(a);
    const { sessionId } = await a.ok('connect');
    const pipeline = await a.create('MediaPipeline');
    const ep = await a.create('WebRtcEndpoint', { mediaPipeline: pipeline });
    const rtp = await a.create('RtpEndpoint', { mediaPipeline: pipeline });
    await a.create('PassThrough', { mediaPipeline: pipeline });
    // Negotiated, so the endpoints hold their sockets.
    const peer = new TestPeer();
    try {
      const offer = await peer.makeOffer();
      await a.invoke(ep, 'processOffer', { offer: offer.sdp });
      await a.invoke(ep, 'gatherCandidates');
    } finally {
      await peer.close();
    }
    await a.invoke(rtp, 'generateOffer');
    const during = await server.engine.counters();
    assert.ok(during.elements > baseline.elements && during.endpoints > baseline.endpoints, JSON.stringify({ baseline, during }));
    await a.close();
    await sleep(1600);

    const b = await RawKurento.open(kurentoUrl(server));
    raws.push(b);
    const err = await b.fails('connect', { sessionId });
    assert.equal(err.code, 40007);
    await b.ok('connect');
    assert.notEqual(b.sessionId, sessionId);
    assert.equal((await b.fails('describe', { object: ep })).code, 40101);
    assert.equal((await b.fails('invoke', { object: pipeline, operation: 'getChildren' })).code, 40101);
    await eventually(async () => {
      const c = await server.engine.counters();
      return c.elements === baseline.elements && c.endpoints === baseline.endpoints && c.udpSockets === baseline.udpSockets;
    }, 5000, 'engine counters back to the baseline');
    assert.deepEqual(await b.invoke('manager_ServerManager', 'getPipelines'), []);
  });
});

describe('error codes', () => {
  let server: Server;
  let raw: RawKurento;
  let pipeline: string;
  const peers: TestPeer[] = [];
  before(async () => {
    server = await startTestServer();
    raw = await RawKurento.open(kurentoUrl(server));
    await raw.ok('connect');
    pipeline = await raw.create('MediaPipeline');
  });
  after(async () => {
    await Promise.all(peers.map((p) => p.close()));
    await raw.close();
    await server.close();
  });

  it('40100: a type not provided (named in the message) and a type that does not exist', async () => {
    const composite = await raw.fails('create', { type: 'Composite', constructorParams: { mediaPipeline: pipeline } });
    assert.equal(composite.code, 40100);
    assert.match(composite.message, /Composite/);
    assert.equal(composite.data?.type, 'MEDIA_OBJECT_TYPE_NOT_FOUND');
    const none = await raw.fails('create', { type: 'NoSuchType', constructorParams: { mediaPipeline: pipeline } });
    assert.equal(none.code, 40100);
    assert.match(none.message, /NoSuchType/);
  });

  it('40101 unknown object, 40105 unknown operation, 40007 unknown session', async () => {
    assert.equal((await raw.fails('invoke', { object: 'no-such-object_kurento.MediaPipeline', operation: 'getChildren' })).code, 40101);
    assert.equal((await raw.fails('describe', { object: 'nope' })).code, 40101);
    assert.equal((await raw.fails('release', { object: 'nope' })).code, 40101);
    assert.equal((await raw.fails('invoke', { object: pipeline, operation: 'noSuchOperation' })).code, 40105);
    assert.equal((await raw.fails('connect', { sessionId: 'no-such-session' })).code, 40007);
    assert.equal((await raw.fails('keepAlive', { sessionId: 'no-such-session' })).code, 40007);
  });

  it('40107: bad parameters (no mediaPipeline, connecting across pipelines, RtpEndpoint with crypto)', async () => {
    const noPipeline = await raw.fails('create', { type: 'WebRtcEndpoint', constructorParams: {} });
    assert.equal(noPipeline.code, 40107);
    assert.match(noPipeline.message, /mediaPipeline/);
    const other = await raw.create('MediaPipeline');
    const here = await raw.create('PassThrough', { mediaPipeline: pipeline });
    const there = await raw.create('PassThrough', { mediaPipeline: other });
    assert.equal((await raw.fails('invoke', { object: here, operation: 'connect', operationParams: { sink: there } })).code, 40107);
    assert.equal((await raw.fails('invoke', { object: here, operation: 'connect', operationParams: {} })).code, 40107);
    const crypto = await raw.fails('create', { type: 'RtpEndpoint', constructorParams: { mediaPipeline: pipeline, crypto: { __module__: 'kurento', __type__: 'SDES', crypto: 'AES_128_CM_HMAC_SHA1_80', key: 'x'.repeat(30) } } });
    assert.equal(crypto.code, 40107);
    assert.match(crypto.message, /crypto/);
    await raw.ok('release', { object: other });
    await raw.ok('release', { object: here });
  });

  it('SDP negotiation: 40208 processOffer twice, 40209 processAnswer without an offer, 40201 garbage SDP', async () => {
    const peer = new TestPeer();
    peers.push(peer);
    const offer = await peer.makeOffer();
    const ep = await raw.create('WebRtcEndpoint', { mediaPipeline: pipeline });
    const answer = await raw.invoke(ep, 'processOffer', { offer: offer.sdp });
    assert.match(answer, /^v=0/);
    const twice = await raw.fails('invoke', { object: ep, operation: 'processOffer', operationParams: { offer: offer.sdp } });
    assert.equal(twice.code, 40208);

    const ep2 = await raw.create('WebRtcEndpoint', { mediaPipeline: pipeline });
    const noOffer = await raw.fails('invoke', { object: ep2, operation: 'processAnswer', operationParams: { answer: offer.sdp } });
    assert.equal(noOffer.code, 40209);
    const garbage = await raw.fails('invoke', { object: ep2, operation: 'processOffer', operationParams: { offer: 'this is not SDP at all' } });
    assert.equal(garbage.code, 40201);
    // The refused offer left the endpoint unnegotiated: a good one still works.
    assert.match(await raw.invoke(ep2, 'processOffer', { offer: offer.sdp }), /^v=0/);
    await raw.ok('release', { object: ep });
    await raw.ok('release', { object: ep2 });
  });

  it('40110 getTag of a missing key, 40106 subscribing to an event the type does not have', async () => {
    await raw.invoke(pipeline, 'addTag', { key: 'here', value: 'yes' });
    assert.equal(await raw.invoke(pipeline, 'getTag', { key: 'here' }), 'yes');
    assert.equal((await raw.fails('invoke', { object: pipeline, operation: 'getTag', operationParams: { key: 'missing' } })).code, 40110);
    assert.equal((await raw.fails('subscribe', { object: pipeline, type: 'NoSuchEvent' })).code, 40106);
    const ep = await raw.create('WebRtcEndpoint', { mediaPipeline: pipeline });
    assert.equal((await raw.fails('subscribe', { object: ep, type: 'EndOfStream' })).code, 40106, 'a player event on a WebRtcEndpoint');
    assert.equal(typeof (await raw.ok('subscribe', { object: ep, type: 'IceCandidateFound' })).value, 'string');
    await raw.ok('release', { object: ep });
  });

  it('JSON-RPC: -32700 not JSON, -32600 no method, -32601 unknown method', async () => {
    const parse = await raw.sendRaw('{ this is not json');
    assert.equal(parse.id, null);
    assert.equal(parse.error?.code, -32700);
    const noMethod = await raw.sendRaw(JSON.stringify({ jsonrpc: '2.0', params: {} }));
    assert.equal(noMethod.id, null);
    assert.equal(noMethod.error?.code, -32600);
    // With an id the error answers that id.
    const withId = await raw.request('', {});
    assert.equal(withId.error?.code, -32600);
    const unknown = await raw.request('noSuchMethod', {});
    assert.equal(unknown.error?.code, -32601);
    // The connection is still usable.
    assert.deepEqual((await raw.request('ping')).result, { value: 'pong' });
  });

  it('requests that name no session do not each leave a session behind', async () => {
    // A request without `sessionId` is answered in a new session; one that creates nothing
    // should not leave that session held for the life of the connection (KMS keeps sessions
    // only for the objects they reference), or a client can grow the server's session table
    // without bound.
    const other = await RawKurento.open(kurentoUrl(server));
    try {
      const before = (await raw.invoke('manager_ServerManager', 'getSessions') as string[]).length;
      for (let i = 0; i < 50; i++) {
        const r = await other.request('invoke', { object: 'manager_ServerManager', operation: 'getCpuCount', sessionId: null });
        assert.equal(r.error, undefined);
      }
      const after = (await raw.invoke('manager_ServerManager', 'getSessions') as string[]).length;
      assert.ok(after - before <= 1, `50 session-less requests left ${after - before} sessions behind`);
    } finally {
      await other.close();
    }
  });

  it('40009: a user holds at most kurento.max_objects_per_user objects; releasing makes room', async () => {
    const small = await startTestServer({ kurento: { max_objects_per_user: 3 } });
    const r = await RawKurento.open(kurentoUrl(small));
    try {
      await r.ok('connect');
      const p = await r.create('MediaPipeline');
      await r.create('PassThrough', { mediaPipeline: p });
      await r.create('PassThrough', { mediaPipeline: p });
      const err = await r.fails('create', { type: 'MediaPipeline' });
      assert.equal(err.code, 40009);
      assert.match(err.message, /limit 3/);
      await r.ok('release', { object: p });
      await r.create('MediaPipeline');
    } finally {
      await r.close();
      await small.close();
    }
  });

  it('text and binary frames are both accepted', async () => {
    const text = await raw.request('ping', { interval: 240000 }, { binary: false });
    const binary = await raw.request('ping', { interval: 240000 }, { binary: true });
    assert.deepEqual(text.result, { value: 'pong' });
    assert.deepEqual(binary.result, { value: 'pong' });
    const created = await raw.request('create', { type: 'PassThrough', constructorParams: { mediaPipeline: pipeline } }, { binary: true });
    assert.equal(typeof created.result?.value, 'string');
    await raw.ok('release', { object: created.result.value });
  });
});

describe('authentication', () => {
  const secret = '0123456789abcdef0123';
  const sign = (sub: string) => new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setIssuedAt().setExpirationTime('1h').sign(new TextEncoder().encode(secret));

  describe('jwt', () => {
    let server: Server;
    const clients: Any[] = [];
    const raws: RawKurento[] = [];
    before(async () => {
      loadKurento();
      server = await startTestServer({ auth: { mode: 'jwt', jwt_secret: secret } });
    });
    after(async () => {
      for (const c of clients) c.close();
      await Promise.all(raws.map((r) => r.close()));
      await server.close();
    });

    it('refuses the upgrade without a token or with a bad one (401)', async () => {
      assert.equal((await upgrade(kurentoUrl(server))).status, 401);
      assert.equal((await upgrade(kurentoUrl(server, 'not-a-jwt'))).status, 401);
      const wrongKey = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('alice').setExpirationTime('1h').sign(new TextEncoder().encode('another-secret-of-20-chars'));
      assert.equal((await upgrade(kurentoUrl(server, wrongKey))).status, 401);
    });

    it('kurento-client connects with access_token and works', { timeout: 30000 }, async () => {
      const client = await kurentoClient(server, { access_token: await sign('alice') });
      clients.push(client);
      const pipeline = await client.create('MediaPipeline');
      const ep = await pipeline.create('WebRtcEndpoint');
      assert.ok(ep.id.startsWith(pipeline.id));
      await pipeline.release();
    });

    it('ServerManager ObjectCreated/ObjectDestroyed events reach only the objects\' owner, not another user', async () => {
      // getPipelines and getSessions answer each user with their own only; the events on the
      // same ServerManager must not name another user's objects either.
      const alice = await RawKurento.open(kurentoUrl(server, await sign('alice')));
      const bob = await RawKurento.open(kurentoUrl(server, await sign('bob')));
      raws.push(alice, bob);
      await alice.ok('connect');
      await bob.ok('connect');
      await bob.ok('subscribe', { object: 'manager_ServerManager', type: 'ObjectCreated' });
      await bob.ok('subscribe', { object: 'manager_ServerManager', type: 'ObjectDestroyed' });
      await alice.ok('subscribe', { object: 'manager_ServerManager', type: 'ObjectCreated' });
      const pipeline = await alice.create('MediaPipeline');
      await alice.ok('release', { object: pipeline });
      const mine = await bob.create('MediaPipeline');
      try {
        // Bob's own event is the marker that anything sent before it has arrived.
        await eventually(() => bob.events.some((e) => e.data.object === mine), 5000, "bob's own ObjectCreated");
        assert.ok(alice.events.some((e) => e.type === 'ObjectCreated' && e.data.object === pipeline), 'alice hears of her own pipeline');
        const leaked = bob.events.filter((e) => e.data.object === pipeline || e.data.objectId === pipeline);
        assert.deepEqual(leaked.map((e) => e.type), [], "bob was told of alice's pipeline");
      } finally {
        await bob.ok('release', { object: mine });
      }
    });

    it("one user's objects are not found (40101) for another; nor is their session", async () => {
      const alice = await RawKurento.open(kurentoUrl(server, await sign('alice')));
      const bob = await RawKurento.open(kurentoUrl(server, await sign('bob')));
      raws.push(alice, bob);
      await alice.ok('connect');
      await bob.ok('connect');
      const pipeline = await alice.create('MediaPipeline');
      const pass = await alice.create('PassThrough', { mediaPipeline: pipeline });
      assert.equal((await bob.fails('describe', { object: pipeline })).code, 40101);
      assert.equal((await bob.fails('invoke', { object: pass, operation: 'getName' })).code, 40101);
      assert.equal((await bob.fails('release', { object: pipeline })).code, 40101);
      assert.equal((await bob.fails('create', { type: 'PassThrough', constructorParams: { mediaPipeline: pipeline } })).code, 40101);
      const bobPass = await bob.create('PassThrough', { mediaPipeline: await bob.create('MediaPipeline') });
      assert.equal((await bob.fails('invoke', { object: bobPass, operation: 'connect', operationParams: { sink: pass } })).code, 40101);
      assert.equal((await bob.fails('connect', { sessionId: alice.sessionId })).code, 40007);
      assert.deepEqual(await bob.invoke('manager_ServerManager', 'getPipelines'), [await bob.invoke(bobPass, 'getMediaPipeline')]);
      // Alice's objects are untouched.
      assert.equal(await alice.invoke(pass, 'getMediaPipeline'), pipeline);
      await alice.ok('release', { object: pipeline });
    });
  });

  describe('static users', () => {
    let server: Server;
    before(async () => {
      server = await startTestServer({ auth: { mode: 'static', users: [{ user: 'u1', password_hash: await hashPassword('pw') }] } });
    });
    after(async () => { await server.close(); });

    it("access_token 'user:password' is accepted; a wrong password is 401", async () => {
      assert.equal((await upgrade(kurentoUrl(server, 'u1:bad'))).status, 401);
      assert.equal((await upgrade(kurentoUrl(server, 'u1'))).status, 401);
      assert.equal((await upgrade(kurentoUrl(server))).status, 401);
      const raw = await RawKurento.open(kurentoUrl(server, 'u1:pw'));
      try {
        await raw.ok('connect');
        const pipeline = await raw.create('MediaPipeline');
        assert.deepEqual(await raw.invoke('manager_ServerManager', 'getPipelines'), [pipeline]);
        await raw.ok('release', { object: pipeline });
      } finally {
        await raw.close();
      }
    });
  });
});

describe('ServerManager', () => {
  let server: Server;
  let client: Any;
  before(async () => {
    loadKurento();
    server = await startTestServer();
    client = await kurentoClient(server);
  });
  after(async () => {
    client.close();
    await server.close();
  });

  it('getInfo, getPipelines, ObjectCreated/ObjectDestroyed, memory and CPU, getKmd', { timeout: 30000 }, async () => {
    const sm = await client.getServerManager();
    const info = await sm.getInfo();
    const modules: string[] = info.modules.map((m: Any) => m.name);
    for (const m of ['core', 'elements', 'filters']) assert.ok(modules.includes(m), `module ${m} in ${modules.join(', ')}`);
    assert.equal(typeof info.version, 'string');

    const created: string[] = [];
    const destroyed: string[] = [];
    const idOf = (x: Any) => (typeof x === 'string' ? x : x?.id);
    sm.on('ObjectCreated', (ev: Any) => created.push(idOf(ev.object)));
    sm.on('ObjectDestroyed', (ev: Any) => destroyed.push(idOf(ev.objectId)));
    // The subscriptions are requests of their own: make sure they are in before creating.
    await sm.getCpuCount();

    const pipeline = await client.create('MediaPipeline');
    const pass = await pipeline.create('PassThrough');
    const pipelines: Any[] = await sm.getPipelines();
    assert.deepEqual(pipelines.map(idOf), [pipeline.id]);
    await eventually(() => created.includes(pipeline.id) && created.includes(pass.id), 5000, 'ObjectCreated for the pipeline and its element');

    assert.ok((await sm.getUsedMemory()) > 0);
    assert.ok((await sm.getCpuCount()) >= 1);
    const kmd = JSON.parse(await sm.getKmd('core'));
    assert.equal(kmd.name, 'core');
    assert.ok(Array.isArray(kmd.remoteClasses) && kmd.remoteClasses.some((c: Any) => c.name === 'MediaPipeline'));
    assert.equal(await codeOf((cb) => sm.getKmd('nope', cb)), 40500);

    await pipeline.release();
    await eventually(() => destroyed.includes(pipeline.id) && destroyed.includes(pass.id), 5000, 'ObjectDestroyed for the pipeline and its element');
    assert.deepEqual(await sm.getPipelines(), []);
  });
});

describe('media-server mode', () => {
  let server: Server;
  before(async () => {
    const overrides: ConfigInput = {
      port: 0,
      log_level: (process.env.NKMEDIA_TEST_LOG as ConfigInput['log_level']) ?? 'silent',
      ice: { use_interfaces: false, include_loopback: true },
    };
    server = await startServer(overrides, undefined, { mode: 'media-server' });
  });
  after(async () => { await server.close(); });

  it('serves /kurento and refuses the NkMEDIA API WebSocket at / (404)', async () => {
    const raw = await RawKurento.open(kurentoUrl(server));
    try {
      assert.deepEqual((await raw.request('ping')).result, { value: 'pong' });
      await raw.ok('connect');
      const pipeline = await raw.create('MediaPipeline');
      await raw.create('WebRtcEndpoint', { mediaPipeline: pipeline });
      await raw.ok('release', { object: pipeline });
    } finally {
      await raw.close();
    }
    assert.equal((await upgrade(server.url)).status, 404);
    assert.equal((await upgrade(`${server.url}somewhere`)).status, 404);
  });
});
