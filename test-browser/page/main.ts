// The browser suite's test page: a real WebRTC client in Chromium that drives sessions through
// the project's own SDK (src/client), bundled by esbuild. Tests call `window.nk.*` (see api.ts)
// through Playwright. Each session gets a row on the page with the local and remote video, so
// screenshots show what the browser sends and receives.
import { NkMediaClient, type CallInvite, type CandidateInit, type EventData, type SdpObject } from '../../src/client/index.js';
import type { CallAnswerOptions, CallStartOptions, FrameWatch, NegotiationRecord, NkPageApi, PeerStats, SessionState, SimulcastEncoding, StartOptions, SwitchResult, SwitchWatch } from './api.js';

interface PageSession {
  id: string;
  type: string;
  offerer: 'browser' | 'server';
  pc: RTCPeerConnection;
  local?: MediaStream;
  remote: MediaStream;
  events: EventData[];
  localCandidates: string[];
  remoteCandidates: string[];
  remoteTracks: string[];
  channel?: RTCDataChannel;
  messages: string[];
  closed: boolean;
  row: HTMLElement;
  negotiation: NegotiationRecord;
  createReply: Record<string, unknown>;
  createSentAtEpochMs: number;
  connectedAtEpochMs?: number;
}

/** `simulcast: true`: three layers, lowest first (the order Chromium's SDP lists them in). */
const DEFAULT_SIMULCAST: SimulcastEncoding[] = [
  { rid: 'l', scaleResolutionDownBy: 4 }, { rid: 'm', scaleResolutionDownBy: 2 }, { rid: 'h' },
];

let client: NkMediaClient | undefined;
const sessions = new Map<string, PageSession>();
/** Every event by object id, so a session sees events that came before its id was known. */
const eventsById = new Map<string, EventData[]>();
/** Listeners for one object id (a session being set up). */
const eventTaps = new Map<string, (e: EventData) => void>();

function log(...args: unknown[]): void { console.log('[nk-page]', ...args); }

function requireClient(): NkMediaClient {
  if (!client || client.closed) throw new Error('not connected: call nk.connect(url, user) first');
  return client;
}

function pick(sessionId?: string): PageSession {
  const id = sessionId ?? [...sessions.keys()].pop();
  const s = id === undefined ? undefined : sessions.get(id);
  if (!s) throw new Error(sessionId ? `no session ${sessionId} on this page` : 'no session on this page');
  return s;
}

function onServerEvent(e: EventData): void {
  if (e.obj_id === undefined) return;
  let list = eventsById.get(e.obj_id);
  if (!list) eventsById.set(e.obj_id, (list = []));
  list.push(e);
  eventTaps.get(e.obj_id)?.(e);
}

function addRow(label: string): { row: HTMLElement; localVideo: HTMLVideoElement; remoteVideo: HTMLVideoElement } {
  const row = document.createElement('section');
  row.className = 'session';
  const title = document.createElement('h2');
  title.textContent = label;
  const localVideo = document.createElement('video');
  const remoteVideo = document.createElement('video');
  for (const [v, name] of [[localVideo, 'sent'], [remoteVideo, 'received']] as const) {
    v.autoplay = true;
    v.muted = true;
    v.playsInline = true;
    v.width = 320;
    v.height = 240;
    const fig = document.createElement('figure');
    const cap = document.createElement('figcaption');
    cap.textContent = name;
    // The picture's own size in the caption (e.g. which simulcast layer is decoded).
    v.addEventListener('resize', () => { cap.textContent = `${name} ${v.videoWidth}×${v.videoHeight}`; });
    fig.append(v, cap);
    row.append(fig);
  }
  row.prepend(title);
  document.getElementById('sessions')!.append(row);
  return { row, localVideo, remoteVideo };
}

/**
 * Counts this peer connection's signalling: negotiationneeded events, every
 * setLocalDescription / setRemoteDescription call (whoever makes it), signalingState changes.
 */
function recordNegotiation(pc: RTCPeerConnection): NegotiationRecord {
  const rec: NegotiationRecord = { negotiationNeeded: 0, setLocalDescription: 0, setRemoteDescription: 0, signalingStates: [pc.signalingState] };
  pc.addEventListener('negotiationneeded', () => { rec.negotiationNeeded++; });
  pc.addEventListener('signalingstatechange', () => { rec.signalingStates.push(pc.signalingState); });
  const setLocal = pc.setLocalDescription.bind(pc);
  const setRemote = pc.setRemoteDescription.bind(pc);
  pc.setLocalDescription = ((d?: RTCLocalSessionDescriptionInit) => { rec.setLocalDescription++; return setLocal(d); }) as typeof pc.setLocalDescription;
  pc.setRemoteDescription = ((d: RTCSessionDescriptionInit) => { rec.setRemoteDescription++; return setRemote(d); }) as typeof pc.setRemoteDescription;
  return rec;
}

function waitGathered(pc: RTCPeerConnection, ms: number): Promise<void> {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`ICE gathering not complete after ${ms} ms`)), ms);
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') { clearTimeout(timer); resolve(); }
    });
  });
}

function withoutSdp(reply: object): Record<string, unknown> {
  const { offer: _o, answer: _a, ...rest } = reply as Record<string, unknown>;
  return rest;
}

async function startSession(opts: StartOptions): Promise<string> {
  const c = requireClient();
  const { offerer = 'browser', trickle = true, audio = true, video = true, data = false, gatherTimeoutMs = 10000, simulcast, simulcastDirection = 'sendrecv', relayOnly = false, ...create } = opts;
  if (simulcast && offerer !== 'browser') throw new Error('simulcast: only when the browser offers');
  // No ICE servers at all: host candidates only, nothing leaves the machine. Relay only: the
  // server's TURN servers with our credentials (a TURN server the test started in the namespace).
  const pc = new RTCPeerConnection(relayOnly
    ? { iceServers: c.iceServers, iceTransportPolicy: 'relay', bundlePolicy: 'max-bundle' }
    : { iceServers: [], bundlePolicy: 'max-bundle' });
  const negotiation = recordNegotiation(pc);
  const local = audio || video ? await navigator.mediaDevices.getUserMedia({ audio, video }) : undefined;
  const remote = new MediaStream();
  const view = addRow(`${create.type} (${offerer} offers${trickle ? ', trickle' : ', no trickle'}${simulcast ? ', simulcast' : ''})`);
  if (local) view.localVideo.srcObject = local;
  view.remoteVideo.srcObject = remote;

  const s: PageSession = {
    id: '', type: create.type, offerer, pc, local, remote, events: [], localCandidates: [], remoteCandidates: [],
    remoteTracks: [], messages: [], closed: false, row: view.row, negotiation, createReply: {}, createSentAtEpochMs: 0,
  };
  pc.addEventListener('track', (ev) => {
    remote.addTrack(ev.track);
    s.remoteTracks.push(ev.track.kind);
    void view.remoteVideo.play().catch(() => undefined);
  });
  const watchChannel = (ch: RTCDataChannel) => {
    s.channel = ch;
    ch.addEventListener('message', (m) => s.messages.push(String(m.data)));
  };
  pc.addEventListener('datachannel', (ev) => watchChannel(ev.channel));
  pc.addEventListener('connectionstatechange', () => {
    log(s.id || '(new)', 'connection', pc.connectionState);
    if (pc.connectionState === 'connected') s.connectedAtEpochMs ??= Date.now();
  });

  // Our candidates: trickled through set_candidate once the session id is known and our SDP is in.
  let canTrickle = false;
  const outgoing: (CandidateInit | 'end')[] = [];
  const sendCandidate = (x: CandidateInit | 'end') => {
    const p = x === 'end' ? c.setCandidateEnd(s.id) : c.setCandidate(s.id, x);
    p.catch((err) => log('set_candidate failed', String(err)));
  };
  pc.addEventListener('icecandidate', (ev) => {
    const cand = ev.candidate;
    if (cand && cand.candidate === '') return; // Chromium's per-generation end marker
    const x: CandidateInit | 'end' = cand ? { candidate: cand.candidate, sdpMid: cand.sdpMid ?? undefined, sdpMLineIndex: cand.sdpMLineIndex ?? 0 } : 'end';
    if (x !== 'end') s.localCandidates.push(x.candidate);
    if (!trickle) return;
    if (canTrickle) sendCandidate(x); else outgoing.push(x);
  });
  const startTrickling = () => {
    canTrickle = true;
    for (const x of outgoing.splice(0)) sendCandidate(x);
  };

  // The server's candidates: from `candidate` events, added once its SDP is set here.
  let remoteSet = false;
  const incoming: EventData[] = [];
  const takeServerEvent = (e: EventData) => {
    s.events.push(e);
    if (e.type !== 'candidate' && e.type !== 'candidate_end') return;
    if (!remoteSet) { incoming.push(e); return; }
    if (e.type === 'candidate_end') { pc.addIceCandidate().catch(() => undefined); return; }
    const b = e.body as CandidateInit;
    s.remoteCandidates.push(b.candidate);
    pc.addIceCandidate({ candidate: b.candidate, sdpMid: b.sdpMid || null, sdpMLineIndex: b.sdpMLineIndex })
      .catch((err) => log('addIceCandidate failed', b.candidate, String(err)));
  };
  const follow = (id: string) => {
    s.id = id;
    sessions.set(id, s);
    view.row.dataset.sessionId = id;
    view.row.querySelector('h2')!.textContent += ` — ${id}`;
    for (const e of eventsById.get(id) ?? []) takeServerEvent(e);
    eventTaps.set(id, takeServerEvent);
  };
  const remoteReady = () => {
    remoteSet = true;
    for (const e of incoming.splice(0)) takeServerEvent(e);
  };

  try {
    if (offerer === 'browser') {
      for (const kind of ['audio', 'video'] as const) {
        const track = local?.getTracks().find((t) => t.kind === kind);
        if (track && kind === 'video' && simulcast) {
          const sendEncodings = simulcast === true ? DEFAULT_SIMULCAST : simulcast;
          pc.addTransceiver(track, { direction: simulcastDirection, streams: [local!], sendEncodings });
        } else if (track) pc.addTrack(track, local!);
        else pc.addTransceiver(kind, { direction: 'recvonly' });
      }
      if (data) watchChannel(pc.createDataChannel('nkmedia'));
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      let sdp: SdpObject;
      if (trickle) {
        sdp = { sdp: offer.sdp!, trickle_ice: true };
      } else {
        await waitGathered(pc, gatherTimeoutMs);
        sdp = { sdp: pc.localDescription!.sdp, trickle_ice: false };
      }
      s.createSentAtEpochMs = Date.now();
      const reply = await c.createSession({
        ...(trickle ? {} : { no_answer_trickle_ice: true }),
        ...create,
        offer: sdp,
        wait_reply: true,
      });
      follow(reply.session_id);
      s.createReply = withoutSdp(reply);
      if (!reply.answer) throw new Error('create with wait_reply returned no answer');
      await pc.setRemoteDescription({ type: 'answer', sdp: reply.answer.sdp });
      remoteReady();
      startTrickling();
    } else {
      s.createSentAtEpochMs = Date.now();
      const reply = await c.createSession({
        ...(trickle ? {} : { no_offer_trickle_ice: true }),
        ...create,
        wait_reply: true,
      });
      follow(reply.session_id);
      s.createReply = withoutSdp(reply);
      if (!reply.offer) throw new Error('create with wait_reply returned no offer');
      await pc.setRemoteDescription({ type: 'offer', sdp: reply.offer.sdp });
      remoteReady();
      // The server's offer made the transceivers; send our tracks on them (or only receive).
      for (const t of pc.getTransceivers()) {
        const kind = t.receiver.track.kind;
        const track = local?.getTracks().find((x) => x.kind === kind);
        if (track) {
          await t.sender.replaceTrack(track);
          t.sender.setStreams?.(local!);
          t.direction = 'sendrecv';
        } else {
          t.direction = 'recvonly';
        }
      }
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      let sdp: SdpObject;
      if (trickle) {
        sdp = { sdp: answer.sdp!, trickle_ice: true };
      } else {
        await waitGathered(pc, gatherTimeoutMs);
        sdp = { sdp: pc.localDescription!.sdp, trickle_ice: false };
      }
      await c.setAnswer(s.id, sdp);
      startTrickling();
    }
  } catch (err) {
    pc.close();
    local?.getTracks().forEach((t) => t.stop());
    view.row.classList.add('failed');
    if (s.id) { s.closed = true; eventTaps.delete(s.id); }
    throw err;
  }
  log('session', s.id, 'signalled');
  return s.id;
}

function waitConnected(sessionId?: string, timeoutMs = 15000): Promise<void> {
  const s = pick(sessionId);
  const pc = s.pc;
  return new Promise((resolve, reject) => {
    const check = () => {
      if (pc.connectionState === 'connected') { done(); resolve(); }
      else if (pc.connectionState === 'failed' || pc.connectionState === 'closed') {
        done();
        reject(new Error(`peer connection ${pc.connectionState} (ice ${pc.iceConnectionState}; local candidates ${s.localCandidates.length}, remote ${s.remoteCandidates.length})`));
      }
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`peer connection not connected after ${timeoutMs} ms: ${pc.connectionState}, ice ${pc.iceConnectionState}, gathering ${pc.iceGatheringState}; local candidates ${JSON.stringify(s.localCandidates)}, remote ${JSON.stringify(s.remoteCandidates)}`));
    }, timeoutMs);
    const done = () => { clearTimeout(timer); pc.removeEventListener('connectionstatechange', check); };
    pc.addEventListener('connectionstatechange', check);
    check();
  });
}

async function stats(sessionId?: string): Promise<PeerStats> {
  const s = pick(sessionId);
  const report = await s.pc.getStats();
  const out: PeerStats = {
    connectionState: s.pc.connectionState,
    iceConnectionState: s.pc.iceConnectionState,
    inbound: {
      audio: { packets: 0, bytes: 0 },
      video: { packets: 0, bytes: 0, framesDecoded: 0, keyFramesDecoded: 0, frameWidth: 0, frameHeight: 0 },
    },
    outbound: {
      audio: { packets: 0, bytes: 0 },
      video: { packets: 0, bytes: 0, framesEncoded: 0, pliCount: 0, nackCount: 0, frameWidth: 0, frameHeight: 0 },
    },
    bytesSent: 0,
    data: { messagesSent: 0, messagesReceived: 0 },
  };
  const byId = new Map<string, any>();
  report.forEach((r: any) => byId.set(r.id, r));
  const n = (v: unknown) => (typeof v === 'number' ? v : 0);
  for (const r of byId.values()) {
    if (r.type === 'inbound-rtp' && (r.kind === 'audio' || r.kind === 'video')) {
      const k = out.inbound[r.kind as 'audio' | 'video'];
      k.packets += n(r.packetsReceived);
      k.bytes += n(r.bytesReceived);
      if (r.kind === 'video') {
        const v = out.inbound.video;
        v.framesDecoded += n(r.framesDecoded);
        v.keyFramesDecoded += n(r.keyFramesDecoded);
        v.frameWidth = Math.max(v.frameWidth, n(r.frameWidth));
        v.frameHeight = Math.max(v.frameHeight, n(r.frameHeight));
      }
    } else if (r.type === 'outbound-rtp' && (r.kind === 'audio' || r.kind === 'video')) {
      const k = out.outbound[r.kind as 'audio' | 'video'];
      k.packets += n(r.packetsSent);
      k.bytes += n(r.bytesSent);
      out.bytesSent += n(r.bytesSent);
      if (r.kind === 'video') {
        const v = out.outbound.video;
        v.framesEncoded += n(r.framesEncoded);
        v.pliCount += n(r.pliCount);
        v.nackCount += n(r.nackCount);
        v.frameWidth = Math.max(v.frameWidth, n(r.frameWidth));
        v.frameHeight = Math.max(v.frameHeight, n(r.frameHeight));
      }
    } else if (r.type === 'data-channel') {
      out.data.messagesSent += n(r.messagesSent);
      out.data.messagesReceived += n(r.messagesReceived);
    } else if (r.type === 'transport' && r.selectedCandidatePairId) {
      const pair = byId.get(r.selectedCandidatePairId);
      const l = pair && byId.get(pair.localCandidateId);
      const rc = pair && byId.get(pair.remoteCandidateId);
      if (l && rc) {
        out.selectedPair = {
          local: `${l.address ?? l.ip}:${l.port}`, remote: `${rc.address ?? rc.ip}:${rc.port}`,
          localType: l.candidateType, remoteType: rc.candidateType,
        };
      }
    }
  }
  return out;
}

async function rawStats(sessionId?: string, types?: string[]): Promise<Record<string, unknown>[]> {
  const out: Record<string, unknown>[] = [];
  (await pick(sessionId).pc.getStats()).forEach((r: any) => { if (!types || types.includes(r.type)) out.push({ ...r }); });
  return out;
}

function state(sessionId?: string): SessionState {
  const s = pick(sessionId);
  return {
    sessionId: s.id, type: s.type, offerer: s.offerer,
    connectionState: s.pc.connectionState, iceConnectionState: s.pc.iceConnectionState, signalingState: s.pc.signalingState,
    localCandidates: [...s.localCandidates], remoteCandidates: [...s.remoteCandidates], remoteTracks: [...s.remoteTracks],
    dataChannelState: s.channel?.readyState, messages: [...s.messages], closed: s.closed,
    createReply: { ...s.createReply }, createSentAtEpochMs: s.createSentAtEpochMs, connectedAtEpochMs: s.connectedAtEpochMs,
    negotiation: {
      ...s.negotiation, signalingStates: [...s.negotiation.signalingStates],
      localSdp: s.pc.currentLocalDescription?.sdp, remoteSdp: s.pc.currentRemoteDescription?.sdp,
    },
  };
}

/** Polls getStats from `t0` until more frames than `before` are decoded (with the right shape), or the timeout. */
async function framesAfter(s: PageSession, before: PeerStats['inbound']['video'], t0: number, watch: SwitchWatch): Promise<FrameWatch> {
  const { timeoutMs = 5000, aspect, width, pollMs = 20 } = watch;
  const framesBefore = watch.baselineFrames ?? before.framesDecoded;
  const out: FrameWatch = { framesBefore, frameWidth: before.frameWidth, frameHeight: before.frameHeight, polls: 0 };
  const end = performance.now() + timeoutMs;
  for (;;) {
    const v = (await stats(s.id)).inbound.video;
    const at = performance.now() - t0;
    out.polls++;
    out.frameWidth = v.frameWidth;
    out.frameHeight = v.frameHeight;
    const ratio = v.frameHeight > 0 ? v.frameWidth / v.frameHeight : 0;
    const shapeOk = (!aspect || (ratio >= aspect[0] && ratio <= aspect[1])) && (!width || (v.frameWidth >= width[0] && v.frameWidth <= width[1]));
    if (v.framesDecoded > framesBefore && shapeOk) {
      out.resumeMs = at;
      out.resumeAtEpochMs = Date.now();
      out.framesAtResume = v.framesDecoded;
      return out;
    }
    if (performance.now() > end) return out;
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

async function switchAndWatch(sessionId: string, cmd: string, data: Record<string, unknown>, watch: SwitchWatch = {}): Promise<SwitchResult> {
  const s = pick(sessionId);
  const before = (await stats(s.id)).inbound.video;
  const t0 = performance.now();
  const reply = await requireClient().session(cmd, { session_id: s.id, ...data });
  const replyMs = performance.now() - t0;
  return { reply, replyMs, ...(await framesAfter(s, before, t0, watch)) };
}

async function watchFrames(sessionId: string, watch: SwitchWatch = {}): Promise<FrameWatch> {
  const s = pick(sessionId);
  const before = (await stats(s.id)).inbound.video;
  return framesAfter(s, before, performance.now(), watch);
}

async function closeSession(sessionId?: string, keepServer = false): Promise<void> {
  const s = pick(sessionId);
  if (s.closed) return;
  s.closed = true;
  if (!keepServer && client && !client.closed) {
    // Keep following its events until the server confirms (the `destroyed` event).
    await client.destroySession(s.id);
    await new Promise((r) => setTimeout(r, 0));
  }
  s.pc.close();
  s.local?.getTracks().forEach((t) => t.stop());
  s.row.classList.add('closed');
}

// ---- calls (media/call) ----------------------------------------------------------------------

const callInvites: CallInvite[] = [];
let listeningForCalls = false;

/** A peer connection for one side of a call, shown as a row like a session's. */
async function callPeer(label: string, media: { audio?: boolean; video?: boolean | MediaTrackConstraints }) {
  const { audio = true, video = true } = media;
  const pc = new RTCPeerConnection({ iceServers: [], bundlePolicy: 'max-bundle' });
  const negotiation = recordNegotiation(pc);
  const local = audio || video ? await navigator.mediaDevices.getUserMedia({ audio, video }) : undefined;
  const remote = new MediaStream();
  const view = addRow(label);
  if (local) view.localVideo.srcObject = local;
  view.remoteVideo.srcObject = remote;
  const s: PageSession = {
    id: '', type: 'park', offerer: 'browser', pc, local, remote, events: [], localCandidates: [], remoteCandidates: [],
    remoteTracks: [], messages: [], closed: false, row: view.row, negotiation, createReply: {}, createSentAtEpochMs: 0,
  };
  pc.addEventListener('track', (ev) => {
    remote.addTrack(ev.track);
    s.remoteTracks.push(ev.track.kind);
    void view.remoteVideo.play().catch(() => undefined);
  });
  pc.addEventListener('datachannel', (ev) => { s.channel = ev.channel; ev.channel.addEventListener('message', (m) => s.messages.push(String(m.data))); });
  pc.addEventListener('connectionstatechange', () => {
    log(s.id || '(call)', 'connection', pc.connectionState);
    if (pc.connectionState === 'connected') s.connectedAtEpochMs ??= Date.now();
  });
  // Our candidates go through the call's set_candidate once it is known.
  let send: ((x: CandidateInit | 'end') => void) | undefined;
  const outgoing: (CandidateInit | 'end')[] = [];
  pc.addEventListener('icecandidate', (ev) => {
    const cand = ev.candidate;
    if (cand && cand.candidate === '') return;
    const x: CandidateInit | 'end' = cand ? { candidate: cand.candidate, sdpMid: cand.sdpMid ?? undefined, sdpMLineIndex: cand.sdpMLineIndex ?? 0 } : 'end';
    if (x !== 'end') s.localCandidates.push(x.candidate);
    if (send) send(x); else outgoing.push(x);
  });
  /** Starts trickling to the call and taking its `candidate` events for this side's session (past ones too). */
  const follow = (callId: string, sessionId: string) => {
    const c = requireClient();
    s.id = sessionId;
    sessions.set(sessionId, s);
    view.row.dataset.sessionId = sessionId;
    view.row.querySelector('h2')!.textContent += ` — ${callId} / ${sessionId}`;
    const take = (e: EventData) => {
      s.events.push(e);
      if (e.type !== 'candidate' || e.body?.session_id !== sessionId) return;
      const b = e.body as CandidateInit;
      s.remoteCandidates.push(b.candidate);
      pc.addIceCandidate({ candidate: b.candidate, sdpMid: b.sdpMid || null, sdpMLineIndex: b.sdpMLineIndex })
        .catch((err) => log('addIceCandidate failed', b.candidate, String(err)));
    };
    for (const e of eventsById.get(callId) ?? []) take(e);
    eventTaps.set(callId, take);
    send = (x) => {
      const p = x === 'end' ? c.setCallCandidateEnd(callId) : c.setCallCandidate(callId, x);
      p.catch((err) => log('call set_candidate failed', String(err)));
    };
    for (const x of outgoing.splice(0)) send(x);
  };
  return { s, pc, local, follow };
}

async function startCall(opts: CallStartOptions): Promise<{ callId: string; sessionId: string }> {
  const c = requireClient();
  const { audio, video, ...create } = opts;
  const { s, pc, local, follow } = await callPeer(`call to ${JSON.stringify(create.callee)} (caller)`, { audio, video });
  try {
    for (const kind of ['audio', 'video'] as const) {
      const track = local?.getTracks().find((t) => t.kind === kind);
      if (track) pc.addTrack(track, local!);
      else pc.addTransceiver(kind, { direction: 'recvonly' });
    }
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    s.createSentAtEpochMs = Date.now();
    const reply = await c.createCall({ ...create, offer: { sdp: offer.sdp!, trickle_ice: true }, wait_reply: true });
    s.createReply = { call_id: reply.call_id, session_id: reply.session_id };
    if (!reply.answer) throw new Error('call create with wait_reply returned no answer');
    await pc.setRemoteDescription({ type: 'answer', sdp: reply.answer.sdp });
    follow(reply.call_id, reply.session_id);
    log('call', reply.call_id, 'placed; caller session', reply.session_id);
    return { callId: reply.call_id, sessionId: reply.session_id };
  } catch (err) {
    pc.close();
    local?.getTracks().forEach((t) => t.stop());
    s.row.classList.add('failed');
    throw err;
  }
}

async function acceptCall(callId: string, opts: CallAnswerOptions = {}): Promise<string> {
  const c = requireClient();
  const invite = callInvites.find((i) => i.call_id === callId);
  if (!invite) throw new Error(`no invite for call ${callId} on this page`);
  const { s, pc, local, follow } = await callPeer(`call from ${invite.user_id} (callee)`, opts);
  s.offerer = 'server';
  try {
    await pc.setRemoteDescription({ type: 'offer', sdp: invite.offer.sdp });
    // The server's offer made the transceivers; send our tracks on them.
    for (const t of pc.getTransceivers()) {
      const track = local?.getTracks().find((x) => x.kind === t.receiver.track.kind);
      if (track) {
        await t.sender.replaceTrack(track);
        t.sender.setStreams?.(local!);
        t.direction = 'sendrecv';
      } else {
        t.direction = 'recvonly';
      }
    }
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    follow(callId, invite.session_id);
    await c.acceptCall(callId, { sdp: answer.sdp!, trickle_ice: true });
    log('call', callId, 'accepted on leg', invite.session_id);
    return invite.session_id;
  } catch (err) {
    pc.close();
    local?.getTracks().forEach((t) => t.stop());
    s.row.classList.add('failed');
    throw err;
  }
}

const api: NkPageApi = {
  async connect(url, user, creds = {}) {
    if (client && !client.closed) throw new Error('already connected');
    client = await NkMediaClient.connect(url);
    client.onEvent(onServerEvent);
    client.onClose((reason) => log('API connection closed:', reason));
    const id = await client.login(user, creds);
    document.getElementById('status')!.textContent = `connected to ${url} as ${user}`;
    return id;
  },
  startSession,
  waitConnected,
  stats,
  rawStats,
  state,
  events: (sessionId) => [...pick(sessionId).events],
  command: (cmd, data) => requireClient().session(cmd, data),
  switchAndWatch,
  watchFrames,
  sendData(text, sessionId) {
    const ch = pick(sessionId).channel;
    if (!ch || ch.readyState !== 'open') throw new Error(`data channel not open (${ch?.readyState ?? 'none'})`);
    ch.send(text);
  },
  closeSession,
  async disconnect() {
    for (const s of sessions.values()) await closeSession(s.id, true);
    await client?.close();
    client = undefined;
  },
  sessions: () => [...sessions.keys()],
  startCall,
  listenForCalls() {
    if (listeningForCalls) return;
    listeningForCalls = true;
    requireClient().onInvite((inv) => {
      log('invite', inv.call_id, 'from', inv.user_id);
      callInvites.push(inv);
    });
  },
  invites: () => [...callInvites],
  acceptCall,
  callCommand: (cmd, data) => requireClient().call(cmd, data),
};

window.nk = api;
document.getElementById('status')!.textContent = 'ready';
