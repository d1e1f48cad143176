// What every demo page shares: the login bar, the error list, and a WebRTC session with the
// server driven through the project's SDK (the browser offers; trickle ICE or buffered). The
// pages are bundled by scripts/build-demo.mjs and served by the server under /demo/.
import { NkMediaClient, NkMediaError, type CandidateInit, type CreateSessionRequest, type EventData, type SdpObject } from '../src/client/index.js';

export { NkMediaClient, NkMediaError, type EventData };

/** What a page exposes as `window.demo` (read by the browser tests and handy in devtools). */
export interface DemoGlobal {
  client?: NkMediaClient;
  user: string;
  /** Peer connections by name (e.g. "echo", "publish", "listen"). */
  peers: Record<string, RTCPeerConnection>;
  /** Every error shown, oldest first. */
  errors: string[];
  /** Every server event received, newest last (at most 500). */
  events: EventData[];
}

declare global {
  interface Window { demo: DemoGlobal }
}

export const demo: DemoGlobal = { user: '', peers: {}, errors: [], events: [] };
window.demo = demo;

/** The demo pages (the index and every page's navigation bar list them). */
export const PAGES = [
  { file: 'echo.html', title: 'Echo', text: 'Camera and microphone to the server and back: trickle or buffered ICE, mutes, bitrate limit, recording.' },
  { file: 'room.html', title: 'Room', text: 'An SFU room: publish your camera (simulcast), listen to any publisher, pick a layer; members come and go.' },
  { file: 'player.html', title: 'Player', text: 'Play a file of the server\'s media folder or an http(s) URL: pause, resume, seek on a position bar, duration.' },
  { file: 'call.html', title: 'Call', text: 'Call another user by name, accept or reject calls, hang up, switch to echo and back while talking.' },
  { file: 'console.html', title: 'Console', text: 'Live sessions, rooms and calls with their type, state, owner and bitrates; destroy any (as admin); where media runs (media nodes, admins only).' },
] as const;

/** Fills <header> with the title and the links to every page. */
export function pageHeader(here: string): void {
  const nav = h('nav', {}, h('a', { href: './', textContent: 'Index', className: here === 'index.html' ? 'here' : '' }),
    ...PAGES.map((p) => h('a', { href: p.file, textContent: p.title, className: p.file === here ? 'here' : '' })));
  document.querySelector('header')!.replaceChildren(h('h1', { textContent: 'nkmedia-ts demo' }), nav);
}

export function $<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`no element #${id}`);
  return el as T;
}

/** Creates an element with attributes/properties and children. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, props: Partial<HTMLElementTagNameMap[K]> & { dataset?: Record<string, string> } = {}, ...children: (Node | string)[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  const { dataset, ...rest } = props;
  Object.assign(el, rest);
  if (dataset) for (const [k, v] of Object.entries(dataset)) el.dataset[k] = v;
  el.append(...children);
  return el;
}

export function errorText(err: unknown): string {
  if (err instanceof NkMediaError) return err.code ? `${err.error} (code ${err.code})` : err.error;
  if (err instanceof Error) return err.message;
  return String(err);
}

/** Shows an error at the top of the page (each line can be dismissed). */
export function showError(err: unknown, context?: string): void {
  const text = errorText(err);
  demo.errors.push(context ? `${context}: ${text}` : text);
  console.error('[demo]', context ?? '', err);
  const line = h('div', { className: 'error' }, h('b', {}, context ? `${context}:` : 'Error:'), h('span', {}, text));
  const close = h('button', { title: 'dismiss', textContent: '×' });
  close.addEventListener('click', () => line.remove());
  line.append(close);
  $('errors').append(line);
}

export function clearErrors(): void { $('errors').replaceChildren(); }

/** Runs an async UI action, showing any failure; the button is disabled meanwhile. */
export function action(button: HTMLButtonElement, context: string, f: () => Promise<unknown> | unknown): void {
  button.addEventListener('click', () => {
    if (button.disabled) return;
    button.disabled = true;
    Promise.resolve().then(f).catch((err) => showError(err, context)).finally(() => { button.disabled = false; refreshers.forEach((r) => r()); });
  });
}

/** Functions that bring buttons' enabled state up to date after each action. */
const refreshers = new Set<() => void>();
export function onRefresh(f: () => void): void { refreshers.add(f); f(); }
export function refresh(): void { refreshers.forEach((r) => r()); }

/** The API's WebSocket: this same server. */
export function wsUrl(): string { return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/`; }

let password = '';
/** The credentials for the HTTP endpoints (/recordings): Basic with the login's user and password. */
export function authHeader(): string {
  const bytes = new TextEncoder().encode(`${demo.user}:${password}`);
  return `Basic ${btoa(String.fromCharCode(...bytes))}`;
}

function defaultUser(fallback?: string): string {
  const q = new URLSearchParams(location.search).get('user');
  if (q) return q;
  if (fallback) return fallback;
  const saved = sessionStorage.getItem('nkmedia-demo-user');
  if (saved) return saved;
  const u = `user-${Math.random().toString(36).slice(2, 7)}`;
  sessionStorage.setItem('nkmedia-demo-user', u);
  return u;
}

export interface LoginOptions {
  /** The user name offered (default: ?user=, else a random one kept for this tab). */
  user?: string;
  /** Called once logged in (e.g. to subscribe); a failure is shown and the connection closed. */
  onConnected?(client: NkMediaClient): Promise<void> | void;
  /** Called when the connection closes (by the user or not). */
  onDisconnected?(reason: string): void;
}

/** Fills #login with the user/password fields and the connect button. */
export function setupLogin(opts: LoginOptions = {}): void {
  const user = h('input', { type: 'text', id: 'user', value: defaultUser(opts.user), size: 14, autocomplete: 'username' });
  const pass = h('input', { type: 'password', id: 'password', placeholder: 'password (static auth)', size: 16, autocomplete: 'current-password' });
  const connect = h('button', { id: 'connect', className: 'primary', textContent: 'Connect' });
  const disconnect = h('button', { id: 'disconnect', textContent: 'Disconnect' });
  const status = h('span', { id: 'conn-status', className: 'status', textContent: 'not connected' });
  $('login').replaceChildren(h('div', { className: 'row' }, h('label', { htmlFor: 'user' }, 'User'), user, pass, connect, disconnect, status));
  const logIn = async () => {
    status.textContent = 'connecting…';
    status.className = 'status';
    const client = await NkMediaClient.connect(wsUrl());
    try {
      await client.login(user.value.trim(), pass.value ? { password: pass.value } : {});
    } catch (err) {
      await client.close();
      status.textContent = 'not connected';
      throw err;
    }
    demo.client = client;
    demo.user = user.value.trim();
    routeEvents(client);
    password = pass.value;
    client.onEvent((e) => { demo.events.push(e); if (demo.events.length > 500) demo.events.shift(); });
    client.onClose((reason) => {
      if (demo.client === client) demo.client = undefined;
      status.textContent = 'not connected';
      status.className = 'status';
      if (reason !== 'client close') showError(reason, 'Connection closed');
      opts.onDisconnected?.(reason);
      refresh();
    });
    status.textContent = `connected as ${demo.user}`;
    status.className = 'status ok';
    try {
      await opts.onConnected?.(client);
    } catch (err) {
      await client.close();
      throw err;
    }
  };
  action(connect, 'Login', logIn);
  action(disconnect, 'Disconnect', async () => { await demo.client?.close(); });
  onRefresh(() => {
    connect.disabled = !!demo.client;
    disconnect.disabled = !demo.client;
    user.disabled = !!demo.client;
    pass.disabled = !!demo.client;
  });
}

export function requireClient(): NkMediaClient {
  if (!demo.client || demo.client.closed) throw new Error('not connected: log in first');
  return demo.client;
}

// ---- events by object id ------------------------------------------------------------------------

const taps = new Map<string, Set<(e: EventData) => void>>();
const early = new Map<string, EventData[]>();

/** Routes every event of `client` to the taps of its object (events before a tap are kept briefly). */
export function routeEvents(client: NkMediaClient): void {
  client.onEvent((e) => {
    if (!e.obj_id) return;
    const set = taps.get(e.obj_id);
    if (set?.size) { for (const f of [...set]) f(e); return; }
    let list = early.get(e.obj_id);
    if (!list) {
      early.set(e.obj_id, (list = []));
      setTimeout(() => early.delete(e.obj_id!), 30000);
    }
    if (list.length < 200) list.push(e);
  });
}

/** Calls `f` for every event about `objId`, those already received first; returns the untap. */
export function tap(objId: string, f: (e: EventData) => void): () => void {
  let set = taps.get(objId);
  if (!set) taps.set(objId, (set = new Set()));
  set.add(f);
  for (const e of early.get(objId) ?? []) f(e);
  early.delete(objId);
  return () => { set!.delete(f); if (set!.size === 0) taps.delete(objId); };
}

// ---- WebRTC sessions ----------------------------------------------------------------------------

export interface SimulcastEncoding { rid: string; scaleResolutionDownBy?: number; maxBitrate?: number }

export interface PeerOptions {
  /** Name in window.demo.peers and in messages. */
  name: string;
  /** The `create` request (type and its fields), without the offer. */
  create: Omit<CreateSessionRequest, 'offer'>;
  /** Camera / microphone to send (false: receive only). */
  audio: boolean;
  video: boolean | MediaTrackConstraints;
  /** Receive what the server sends (false: send only). */
  receive?: boolean;
  /** true: trickle ICE both ways; false: complete SDPs (no_answer_trickle_ice, gathering waited for). */
  trickle: boolean;
  simulcast?: SimulcastEncoding[];
  localVideo?: HTMLVideoElement;
  remoteVideo?: HTMLVideoElement;
  /** The session ended on the server (destroyed event), or the connection failed. */
  onEnded?(reason: string, code?: number): void;
  onEvent?(e: EventData): void;
}

/** A media session with the server: the browser offers, the server answers (wait_reply). */
export class Peer {
  readonly pc: RTCPeerConnection;
  readonly remote = new MediaStream();
  local?: MediaStream;
  id = '';
  reply: Record<string, unknown> = {};
  ended = false;
  private untap?: () => void;
  private stopping = false;

  constructor(readonly client: NkMediaClient, readonly opts: PeerOptions) {
    // TURN servers with this user's credentials, when the server hands them out (login reply).
    this.pc = new RTCPeerConnection({ iceServers: client.iceServers, bundlePolicy: 'max-bundle' });
  }

  async start(): Promise<string> {
    const { pc, opts, client } = this;
    demo.peers[opts.name] = pc;
    try {
      const wantsMedia = opts.audio || opts.video;
      if (wantsMedia) this.local = await navigator.mediaDevices.getUserMedia({ audio: opts.audio, video: opts.video });
      if (opts.localVideo) opts.localVideo.srcObject = this.local ?? null;
      if (opts.remoteVideo) opts.remoteVideo.srcObject = this.remote;
      pc.addEventListener('track', (ev) => {
        this.remote.addTrack(ev.track);
        void opts.remoteVideo?.play().catch(() => undefined);
      });
      pc.addEventListener('connectionstatechange', () => {
        if (pc.connectionState === 'failed' && !this.ended) this.end('WebRTC connection failed');
      });
      const dir = opts.receive === false ? 'sendonly' : 'sendrecv';
      for (const kind of ['audio', 'video'] as const) {
        const track = this.local?.getTracks().find((t) => t.kind === kind);
        if (track && kind === 'video' && opts.simulcast) pc.addTransceiver(track, { direction: dir, streams: [this.local!], sendEncodings: opts.simulcast });
        else if (track) pc.addTransceiver(track, { direction: dir, streams: [this.local!] });
        else if (opts.receive !== false) pc.addTransceiver(kind, { direction: 'recvonly' });
      }

      // Our candidates, sent once the session exists (trickle), or waited for (buffered).
      const outgoing: (CandidateInit | 'end')[] = [];
      let send: ((c: CandidateInit | 'end') => void) | undefined;
      pc.addEventListener('icecandidate', (ev) => {
        if (!opts.trickle) return;
        const c = ev.candidate;
        if (c && c.candidate === '') return;
        const x: CandidateInit | 'end' = c ? { candidate: c.candidate, sdpMid: c.sdpMid ?? undefined, sdpMLineIndex: c.sdpMLineIndex ?? 0 } : 'end';
        if (send) send(x); else outgoing.push(x);
      });
      await pc.setLocalDescription(await pc.createOffer());
      if (!opts.trickle) await gathered(pc, 10000);
      const offer: SdpObject = { sdp: pc.localDescription!.sdp, trickle_ice: opts.trickle };
      const reply = await client.createSession({
        ...(opts.trickle ? {} : { no_answer_trickle_ice: true }),
        ...opts.create,
        offer,
        wait_reply: true,
      });
      this.id = reply.session_id;
      const { answer, ...rest } = reply;
      this.reply = rest;
      if (!answer) throw new Error('the server sent no answer');

      // The server's candidates: events, added once its answer is set.
      let remoteSet = false;
      const incoming: EventData[] = [];
      const take = (e: EventData) => {
        if (e.type === 'candidate' || e.type === 'candidate_end') {
          if (!remoteSet) { incoming.push(e); return; }
          if (e.type === 'candidate_end') { pc.addIceCandidate().catch(() => undefined); return; }
          const b = e.body as CandidateInit;
          pc.addIceCandidate({ candidate: b.candidate, sdpMid: b.sdpMid || null, sdpMLineIndex: b.sdpMLineIndex }).catch(() => undefined);
          return;
        }
        if (e.type === 'destroyed') this.end(String(e.body?.reason ?? 'destroyed'), Number(e.body?.code) || undefined);
        opts.onEvent?.(e);
      };
      this.untap = tap(this.id, take);
      await pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
      remoteSet = true;
      for (const e of incoming.splice(0)) take(e);
      send = (x) => {
        const p = x === 'end' ? client.setCandidateEnd(this.id) : client.setCandidate(this.id, x);
        p.catch(() => undefined);
      };
      for (const x of outgoing.splice(0)) send(x);
      return this.id;
    } catch (err) {
      this.close();
      if (this.id) client.destroySession(this.id).catch(() => undefined);
      throw err;
    }
  }

  /** Destroys the session on the server and closes the peer connection. */
  async stop(): Promise<void> {
    if (this.ended) return;
    this.stopping = true;
    try {
      if (this.id && !this.client.closed) await this.client.destroySession(this.id);
    } finally {
      this.end('stopped');
    }
  }

  command<T = any>(cmd: string, data: Record<string, unknown> = {}): Promise<T> {
    return this.client.session<T>(cmd, { session_id: this.id, ...data });
  }

  private end(reason: string, code?: number): void {
    if (this.ended) return;
    this.close();
    if (!this.stopping) this.opts.onEnded?.(reason, code);
  }

  private close(): void {
    this.ended = true;
    this.untap?.();
    this.pc.close();
    this.local?.getTracks().forEach((t) => t.stop());
    if (demo.peers[this.opts.name] === this.pc) delete demo.peers[this.opts.name];
  }
}

function gathered(pc: RTCPeerConnection, ms: number): Promise<void> {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`ICE gathering not complete after ${ms} ms`)), ms);
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') { clearTimeout(timer); resolve(); }
    });
  });
}

// ---- statistics ---------------------------------------------------------------------------------

export interface VideoStats { framesDecoded: number; width: number; height: number; kbpsIn: number; kbpsOut: number; state: RTCPeerConnectionState }

const lastBytes = new WeakMap<RTCPeerConnection, { at: number; inBytes: number; outBytes: number }>();

/** Received video and bitrates of a peer connection (bitrates since the previous call). */
export async function videoStats(pc: RTCPeerConnection): Promise<VideoStats> {
  const out: VideoStats = { framesDecoded: 0, width: 0, height: 0, kbpsIn: 0, kbpsOut: 0, state: pc.connectionState };
  let inBytes = 0;
  let outBytes = 0;
  (await pc.getStats()).forEach((r: any) => {
    if (r.type === 'inbound-rtp') {
      inBytes += r.bytesReceived ?? 0;
      if (r.kind === 'video') {
        out.framesDecoded += r.framesDecoded ?? 0;
        out.width = Math.max(out.width, r.frameWidth ?? 0);
        out.height = Math.max(out.height, r.frameHeight ?? 0);
      }
    } else if (r.type === 'outbound-rtp') {
      outBytes += r.bytesSent ?? 0;
    }
  });
  const now = performance.now();
  const prev = lastBytes.get(pc);
  if (prev && now > prev.at) {
    out.kbpsIn = Math.round(((inBytes - prev.inBytes) * 8) / (now - prev.at));
    out.kbpsOut = Math.round(((outBytes - prev.outBytes) * 8) / (now - prev.at));
  }
  lastBytes.set(pc, { at: now, inBytes, outBytes });
  return out;
}

/** Every second, writes `pc`'s received video and bitrates into `el` until the connection closes. */
export function showStats(pc: RTCPeerConnection, el: HTMLElement, what: 'in' | 'out' | 'both' = 'both', prefix?: string): void {
  const timer = setInterval(() => {
    if (pc.connectionState === 'closed') { clearInterval(timer); return; }
    videoStats(pc).then((s) => {
      const parts: string[] = prefix ? [prefix, s.state] : [s.state];
      if (what !== 'out') parts.push(s.width ? `${s.width}×${s.height}` : 'no video yet', `${s.framesDecoded} frames`, `in ${s.kbpsIn} kbps`);
      if (what !== 'in') parts.push(`out ${s.kbpsOut} kbps`);
      el.textContent = parts.join(' · ');
    }).catch(() => undefined);
  }, 1000);
}

export function kbps(bps: unknown): string {
  return typeof bps === 'number' ? `${Math.round(bps / 1000)}` : '–';
}

export function reasonText(reason: string, code?: number): string { return code ? `${reason} (${code})` : reason; }
