// Media nodes for RemoteEngine tests: our media server (startServer in media-server mode: only
// the engine behind the Kurento door) on a free loopback port, a TCP proxy to put between an
// engine and its node (freeze it: a node that stops answering; cut it: a node gone), and a werift
// peer negotiated with an endpoint of any MediaEngine.
import net from 'node:net';
import pino from 'pino';
import { startServer, type Server } from '../../src/main.js';
import type { ConfigInput } from '../../src/config.js';
import type { ElementId, EngineEvent, MediaEngine } from '../../src/engine/types.js';
import { TestPeer } from './peer.js';
import { eventually } from './server.js';

export interface MediaNode { server: Server; url: string }

/** `nkmedia media-server` in this process: loopback ICE, silent logs, port 0. */
export async function startMediaNode(overrides: ConfigInput = {}): Promise<MediaNode> {
  const server = await startServer({
    port: 0,
    log_level: (process.env.NKMEDIA_TEST_LOG as ConfigInput['log_level']) ?? 'silent',
    ...overrides,
    ice: { use_interfaces: false, include_loopback: true, ...(overrides.ice ?? {}) },
  }, undefined, { mode: 'media-server' });
  return { server, url: `${server.url}kurento` };
}

export const silentLog = () => pino({ level: process.env.NKMEDIA_TEST_LOG ?? 'silent' });

/**
 * A TCP proxy to a port: `freeze()` holds back what the node sends (requests still reach it, the
 * replies wait) until `thaw()`, `cut()` resets every connection as a killed node's kernel would.
 */
export class TcpProxy {
  private readonly pairs = new Set<{ client: net.Socket; upstream: net.Socket; held: Buffer[] }>();
  private frozen = false;
  private constructor(private readonly server: net.Server, readonly port: number) {}

  static async start(targetPort: number, host = '127.0.0.1'): Promise<TcpProxy> {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, host, resolve));
    const proxy = new TcpProxy(server, (server.address() as net.AddressInfo).port);
    server.on('connection', (client) => {
      const upstream = net.connect(targetPort, host);
      const pair = { client, upstream, held: [] as Buffer[] };
      proxy.pairs.add(pair);
      client.on('data', (d) => upstream.write(d));
      upstream.on('data', (d: Buffer) => { if (proxy.frozen) pair.held.push(d); else client.write(d); });
      const end = () => { proxy.pairs.delete(pair); client.destroy(); upstream.destroy(); };
      client.on('close', end).on('error', end);
      upstream.on('close', end).on('error', end);
    });
    return proxy;
  }

  url(path = '/kurento'): string { return `ws://127.0.0.1:${this.port}${path}`; }
  freeze(): void { this.frozen = true; }
  thaw(): void {
    this.frozen = false;
    for (const p of this.pairs) for (const d of p.held.splice(0)) p.client.write(d);
  }

  /** Resets every proxied connection (RST to the client). */
  cut(): void {
    for (const { client, upstream } of this.pairs) {
      client.resetAndDestroy();
      upstream.destroy();
    }
    this.pairs.clear();
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/**
 * A werift peer offering (audio, video, data) to a new WebRTC endpoint of `engine`, trickle both
 * ways; resolves once connected. Returns the endpoint, the peer, the endpoint's events (collected
 * until `off()`).
 */
export async function peerOn(engine: MediaEngine, tag: string): Promise<{ ep: ElementId; peer: TestPeer; events: EngineEvent[]; off(): void }> {
  const peer = new TestPeer();
  const events: EngineEvent[] = [];
  let ep: ElementId | undefined;
  const early: EngineEvent[] = [];
  const off = engine.onEvent((ev) => {
    if (ev.tag !== tag) return;
    if (ep === undefined) { early.push(ev); return; }
    if (ev.elementId !== ep) return;
    events.push(ev);
    if (ev.type === 'ice_candidate') void peer.addCandidate(ev.candidate).catch(() => undefined);
  });
  try {
    ep = await engine.createWebRtcEndpoint({ tag });
    for (const ev of early.splice(0)) if (ev.elementId === ep) events.push(ev);
    const offer = await peer.makeOffer();
    const answer = await engine.processOffer(ep, offer.sdp);
    await peer.takeAnswer({ sdp: answer, sdp_type: 'webrtc' } as never);
    await engine.gatherCandidates(ep);
    for (const c of offer.candidates) await engine.addIceCandidate(ep, c);
    await peer.waitConnected();
    await eventually(() => events.some((e) => e.type === 'connection_state' && e.state === 'connected'), 5000, 'connection_state connected');
  } catch (err) {
    off();
    await peer.close();
    throw err;
  }
  return { ep, peer, events, off };
}
