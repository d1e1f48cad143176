// Call page: call another user by name through the call API (media/call), take incoming calls
// (accept or reject the invite), hang up, and while talking switch your own session to echo
// and back (set_type; no renegotiation).
import { $, action, demo, h, onRefresh, pageHeader, reasonText, refresh, requireClient, setupLogin, showError, showStats, tap, type EventData, type NkMediaClient } from './lib.js';
import type { CallInvite, CandidateInit } from '../src/client/index.js';

pageHeader('call.html');

interface ActiveCall {
  callId: string;
  /** Our own session in the call (the caller's, or our leg). */
  sessionId: string;
  role: 'caller' | 'callee';
  other: string;
  pc: RTCPeerConnection;
  local?: MediaStream;
  untap: () => void;
  state: 'calling' | 'ringing' | 'talking' | 'echo';
}

let call: ActiveCall | undefined;
const invites = new Map<string, { invite: CallInvite; el: HTMLElement; untap: () => void; early: EventData[] }>();
const status = $('call-status');

setupLogin({
  onConnected(client) {
    client.onInvite((inv) => onInvite(client, inv));
  },
  onDisconnected() {
    if (call) endCall('disconnected');
    for (const i of invites.values()) { i.untap(); i.el.remove(); }
    invites.clear();
  },
});

/** A peer connection for our side of a call; our candidates go through the call. */
async function callPeer(client: NkMediaClient, callId: () => string | undefined) {
  const pc = new RTCPeerConnection({ iceServers: client.iceServers, bundlePolicy: 'max-bundle' });
  demo.peers.call = pc;
  const remote = new MediaStream();
  $<HTMLVideoElement>('remote').srcObject = remote;
  pc.addEventListener('track', (ev) => { remote.addTrack(ev.track); void $<HTMLVideoElement>('remote').play().catch(() => undefined); });
  const outgoing: (CandidateInit | 'end')[] = [];
  const send = (x: CandidateInit | 'end') => {
    const id = callId();
    if (!id) { outgoing.push(x); return; }
    (x === 'end' ? client.setCallCandidateEnd(id) : client.setCallCandidate(id, x)).catch(() => undefined);
  };
  pc.addEventListener('icecandidate', (ev) => {
    const c = ev.candidate;
    if (c && c.candidate === '') return;
    send(c ? { candidate: c.candidate, sdpMid: c.sdpMid ?? undefined, sdpMLineIndex: c.sdpMLineIndex ?? 0 } : 'end');
  });
  pc.addEventListener('connectionstatechange', () => {
    if (pc.connectionState === 'failed' && call?.pc === pc) { showError('the WebRTC connection failed', 'Call'); void hangup(); }
  });
  const local = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
  $<HTMLVideoElement>('local').srcObject = local;
  const flush = () => { for (const x of outgoing.splice(0)) send(x); };
  return { pc, local, flush };
}

/** Call events for our session: the other side's candidates, progress, the end. */
function onCallEvent(e: EventData, sessionId: string, pc: RTCPeerConnection): void {
  const b = e.body ?? {};
  if (e.type === 'candidate') {
    if (b.session_id !== sessionId) return;
    pc.addIceCandidate({ candidate: String(b.candidate), sdpMid: b.sdpMid || null, sdpMLineIndex: b.sdpMLineIndex }).catch(() => undefined);
  } else if (e.type === 'candidate_end') {
    if (b.session_id === sessionId) pc.addIceCandidate().catch(() => undefined);
  } else if (e.type === 'ringing' && call?.state === 'calling') {
    call.state = 'ringing';
    status.textContent = `ringing ${call.other}…`;
  } else if (e.type === 'accepted' && call && call.role === 'caller') {
    call.state = 'talking';
    status.textContent = `in a call with ${call.other}`;
  } else if (e.type === 'hangup' && call?.callId === e.obj_id && (b.session_id === undefined || b.session_id === sessionId)) {
    endCall(`call ended: ${reasonText(String(b.reason ?? 'hangup'), Number(b.code) || undefined)}`);
  }
  refresh();
}

action($<HTMLButtonElement>('call'), 'Call', async () => {
  const client = requireClient();
  const callee = $<HTMLInputElement>('callee').value.trim();
  if (!callee) throw new Error('type the user name to call');
  if (callee === demo.user) throw new Error('that is you: call another user (open this page in another tab with another name)');
  let callId: string | undefined;
  const { pc, local, flush } = await callPeer(client, () => callId);
  try {
    for (const t of local.getTracks()) pc.addTransceiver(t, { direction: 'sendrecv', streams: [local] });
    await pc.setLocalDescription(await pc.createOffer());
    status.textContent = `calling ${callee}…`;
    const reply = await client.createCall({ callee, type: 'user', offer: { sdp: pc.localDescription!.sdp, trickle_ice: true }, caller: { name: demo.user }, wait_reply: true });
    callId = reply.call_id;
    const sessionId = reply.session_id;
    call = { callId, sessionId, role: 'caller', other: callee, pc, local, state: 'calling', untap: () => undefined };
    await pc.setRemoteDescription({ type: 'answer', sdp: reply.answer!.sdp });
    // The call's events so far (kept by the router) and from now on; candidates need the answer set.
    if (call?.pc === pc) call.untap = tap(callId, (e) => onCallEvent(e, sessionId, pc));
    flush();
    status.dataset.callId = callId;
    status.dataset.sessionId = sessionId;
    showStats(pc, $('remote-stats'), 'in', `${callee}:`);
  } catch (err) {
    if (!call || call.pc !== pc) { pc.close(); local.getTracks().forEach((t) => t.stop()); status.textContent = 'no call'; }
    else endCall('no call');
    throw err;
  }
});

function onInvite(client: NkMediaClient, inv: CallInvite): boolean | void {
  const from = String(inv.caller?.name ?? inv.user_id);
  if (call) {
    setTimeout(() => showError(`${from} called while you were in a call: declined`, 'Incoming call'), 0);
    return false;
  }
  const early: EventData[] = [];
  const untap = tap(inv.call_id, (e) => {
    if (e.type === 'hangup' && (e.body?.session_id === undefined || e.body?.session_id === inv.session_id)) {
      dropInvite(inv.call_id);
      status.textContent = `${from} hung up before you answered`;
      return;
    }
    early.push(e);
  });
  const accept = h('button', { className: 'primary accept', textContent: 'Accept' });
  const reject = h('button', { className: 'danger reject', textContent: 'Reject' });
  const el = h('div', { className: 'invite row', dataset: { callId: inv.call_id, from } }, h('b', { textContent: `${from} is calling you` }), accept, reject);
  $('incoming').append(el);
  invites.set(inv.call_id, { invite: inv, el, untap, early });
  action(accept, `Accept ${from}`, () => acceptInvite(client, inv.call_id));
  action(reject, `Reject ${from}`, async () => { dropInvite(inv.call_id); await client.rejectCall(inv.call_id); status.textContent = `you rejected ${from}`; });
  // Ringing, after our ok reply to the invite has gone.
  setTimeout(() => { client.callRinging(inv.call_id, { name: demo.user }).catch(() => undefined); }, 0);
  refresh();
}

function dropInvite(callId: string): void {
  const i = invites.get(callId);
  if (!i) return;
  i.untap();
  i.el.remove();
  invites.delete(callId);
  refresh();
}

async function acceptInvite(client: NkMediaClient, callId: string): Promise<void> {
  const entry = invites.get(callId);
  if (!entry) throw new Error('that call is gone');
  if (call) throw new Error('hang up first');
  const { invite, early } = entry;
  entry.untap();
  entry.el.remove();
  invites.delete(callId);
  const from = String(invite.caller?.name ?? invite.user_id);
  const { pc, local, flush } = await callPeer(client, () => callId);
  call = { callId, sessionId: invite.session_id, role: 'callee', other: from, pc, local, state: 'talking', untap: () => undefined };
  try {
    await pc.setRemoteDescription({ type: 'offer', sdp: invite.offer.sdp });
    for (const t of pc.getTransceivers()) {
      const track = local.getTracks().find((x) => x.kind === t.receiver.track.kind);
      if (track) { await t.sender.replaceTrack(track); t.sender.setStreams(local); t.direction = 'sendrecv'; }
    }
    await pc.setLocalDescription(await pc.createAnswer());
    const sessionId = invite.session_id;
    call.untap = tap(callId, (e) => onCallEvent(e, sessionId, pc));
    for (const e of early) onCallEvent(e, sessionId, pc);
    await client.acceptCall(callId, { sdp: pc.localDescription!.sdp, trickle_ice: true }, { callee: { name: demo.user } });
    flush();
    status.textContent = `in a call with ${from}`;
    status.dataset.callId = callId;
    status.dataset.sessionId = sessionId;
    showStats(pc, $('remote-stats'), 'in', `${from}:`);
  } catch (err) {
    endCall('no call');
    client.rejectCall(callId).catch(() => undefined);
    throw err;
  }
}

async function hangup(): Promise<void> {
  const c = call;
  if (!c) return;
  endCall('you hung up');
  await requireClient().hangupCall(c.callId);
}

function endCall(text: string): void {
  const c = call;
  call = undefined;
  status.textContent = text;
  delete status.dataset.callId;
  delete status.dataset.sessionId;
  if (c) {
    c.untap();
    c.pc.close();
    c.local?.getTracks().forEach((t) => t.stop());
    if (demo.peers.call === c.pc) delete demo.peers.call;
  }
  refresh();
}

action($<HTMLButtonElement>('hangup'), 'Hang up', hangup);

// Echo and back: our own session leaves the bridge for echo (the other side is parked and hears
// nothing meanwhile), then bridges again with the other side's session. No renegotiation.
action($<HTMLButtonElement>('echo'), 'Echo', async () => {
  const c = call;
  if (!c) return;
  const client = requireClient();
  if (c.state !== 'echo') {
    await client.setType(c.sessionId, 'echo');
    c.state = 'echo';
    status.textContent = `echo (${c.other} is on hold)`;
  } else {
    const info = await client.getCallInfo(c.callId);
    const peer = c.role === 'callee' ? String(info.session_id) : String(info.answered_by);
    await client.setType(c.sessionId, 'bridge', { peer_id: peer });
    c.state = 'talking';
    status.textContent = `in a call with ${c.other}`;
  }
});

onRefresh(() => {
  const connected = !!demo.client;
  $<HTMLButtonElement>('call').disabled = !connected || !!call;
  $<HTMLInputElement>('callee').disabled = !!call;
  $<HTMLButtonElement>('hangup').disabled = !call;
  const echo = $<HTMLButtonElement>('echo');
  // The answering side switches: the caller's session leaving the bridge would end the callee's leg.
  echo.disabled = !call || call.role !== 'callee' || (call.state !== 'talking' && call.state !== 'echo');
  echo.title = call?.role === 'caller' ? 'only the side that answered can switch to echo (the caller leaving the bridge ends the call)' : '';
  echo.textContent = call?.state === 'echo' ? 'Back to the call' : 'Switch to echo';
  echo.classList.toggle('on', call?.state === 'echo');
});
