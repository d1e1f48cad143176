// Echo page: the camera and microphone go to the server in an `echo` session and come back.
// Trickle or buffered ICE, server-side mutes and bitrate limit (update_media), recording
// (recorder_action) and the user's recordings (GET /recordings with the login's credentials).
import { $, Peer, action, authHeader, demo, errorText, h, onRefresh, pageHeader, reasonText, refresh, requireClient, setupLogin, showError, showStats } from './lib.js';

pageHeader('echo.html');

let peer: Peer | undefined;
let muted = { audio: false, video: false };
let recording = false;

const live = () => !!peer && !peer.ended;
const sessionStatus = $('session-status');
const recordStatus = $('record-status');

setupLogin({
  onConnected: () => { void listRecordings().catch((err) => showError(err, 'Recordings')); },
  onDisconnected: () => { if (peer && !peer.ended) { peer = undefined; sessionStatus.textContent = 'no session (disconnected)'; } },
});

action($<HTMLButtonElement>('start'), 'Start echo', async () => {
  const trickle = $<HTMLSelectElement>('ice').value === 'trickle';
  const bitrate = Number($<HTMLInputElement>('bitrate').value) || 0;
  muted = { audio: false, video: false };
  recording = false;
  recordStatus.textContent = '';
  sessionStatus.textContent = 'starting…';
  const p = new Peer(requireClient(), {
    name: 'echo',
    create: { type: 'echo', ...(bitrate > 0 ? { bitrate: bitrate * 1000 } : {}) },
    audio: true,
    video: true,
    trickle,
    localVideo: $<HTMLVideoElement>('local'),
    remoteVideo: $<HTMLVideoElement>('remote'),
    onEnded: (reason, code) => {
      sessionStatus.textContent = `ended: ${reasonText(reason, code)}`;
      showError(`the server ended the session: ${reasonText(reason, code)}`, 'Echo');
      if (recording) { recording = false; recordStatus.textContent = 'recording saved'; void listRecordings().catch(() => undefined); }
      refresh();
    },
    onEvent: (e) => {
      if (e.type === 'recorder') recordStatus.textContent = `recorder ${e.body?.state ?? ''}`;
    },
  });
  peer = p;
  try {
    await p.start();
  } catch (err) {
    sessionStatus.textContent = 'no session';
    peer = undefined;
    throw err;
  }
  sessionStatus.textContent = `session ${p.id} (${trickle ? 'trickle ICE' : 'buffered ICE'})`;
  sessionStatus.dataset.sessionId = p.id;
  showStats(p.pc, $('remote-stats'));
});

action($<HTMLButtonElement>('stop'), 'Stop', async () => {
  const p = peer;
  peer = undefined;
  await p?.stop();
  sessionStatus.textContent = 'no session';
  if (recording) { recording = false; recordStatus.textContent = 'recording saved'; await listRecordings(); }
});

for (const kind of ['audio', 'video'] as const) {
  action($<HTMLButtonElement>(`mute-${kind}`), `Mute ${kind}`, async () => {
    const next = !muted[kind];
    await peer!.command('update_media', { [`mute_${kind}`]: next });
    muted[kind] = next;
  });
}

action($<HTMLButtonElement>('apply-bitrate'), 'Bitrate', async () => {
  const v = Number($<HTMLInputElement>('bitrate').value);
  if (!Number.isFinite(v) || v < 0) throw new Error('the bitrate limit is a number of kbps, 0 or more');
  await peer!.command('update_media', { bitrate: Math.round(v * 1000) });
});

action($<HTMLButtonElement>('record'), 'Recording', async () => {
  if (!recording) {
    const r = await peer!.command<{ uri: string }>('recorder_action', { action: 'start' });
    recording = true;
    recordStatus.textContent = `recording to ${r.uri.split('/').pop()}`;
  } else {
    const r = await peer!.command<{ uri: string; duration: number }>('recorder_action', { action: 'stop' });
    recording = false;
    recordStatus.textContent = `saved ${r.uri.split('/').pop()} (${(r.duration / 1000).toFixed(1)} s)`;
    await listRecordings();
  }
});

action($<HTMLButtonElement>('refresh-recordings'), 'Recordings', () => listRecordings());

onRefresh(() => {
  const connected = !!demo.client;
  $<HTMLButtonElement>('start').disabled = !connected || live();
  $<HTMLSelectElement>('ice').disabled = live();
  $<HTMLButtonElement>('stop').disabled = !live();
  for (const kind of ['audio', 'video'] as const) {
    const b = $<HTMLButtonElement>(`mute-${kind}`);
    b.disabled = !live();
    b.textContent = muted[kind] ? `Unmute ${kind}` : `Mute ${kind}`;
    b.classList.toggle('on', muted[kind]);
  }
  $<HTMLButtonElement>('apply-bitrate').disabled = !live();
  const rec = $<HTMLButtonElement>('record');
  rec.disabled = !live();
  rec.textContent = recording ? 'Stop recording' : 'Record';
  rec.classList.toggle('on', recording);
  $<HTMLButtonElement>('refresh-recordings').disabled = !connected;
});

interface Recording { name: string; size: number; modified: string; url: string }

async function fetchRecording(r: Recording): Promise<string> {
  const res = await fetch(r.url, { headers: { authorization: authHeader() } });
  if (!res.ok) throw new Error(`GET ${r.url}: ${res.status} ${res.statusText}`);
  return URL.createObjectURL(await res.blob());
}

async function listRecordings(): Promise<void> {
  const res = await fetch('/recordings', { headers: { authorization: authHeader() } });
  if (!res.ok) throw new Error(`GET /recordings: ${res.status} ${await res.text().catch(() => res.statusText)}`);
  const list = (await res.json()) as Recording[];
  const ul = $('recordings');
  if (list.length === 0) { ul.replaceChildren(h('li', { className: 'empty', textContent: 'no recordings yet' })); return; }
  ul.replaceChildren(...list.slice().reverse().map((r) => {
    const play = h('button', { textContent: 'Play', className: 'play' });
    play.addEventListener('click', () => {
      fetchRecording(r).then((url) => {
        const v = $<HTMLVideoElement>('playback');
        v.src = url;
        $('playback-name').textContent = r.name;
        void v.play().catch(() => undefined);
      }).catch((err) => showError(errorText(err), 'Play recording'));
    });
    // A plain link cannot carry the credentials: fetch with them, then save the file.
    const link = h('a', { href: r.url, textContent: r.name, className: 'recording', download: r.name });
    link.addEventListener('click', (ev) => {
      if (link.href.startsWith('blob:')) return;
      ev.preventDefault();
      fetchRecording(r).then((url) => { link.href = url; link.click(); }).catch((err) => showError(err, 'Download recording'));
    });
    return h('li', { dataset: { name: r.name } }, link, h('span', { className: 'muted', textContent: `${(r.size / 1024).toFixed(0)} KiB · ${new Date(r.modified).toLocaleTimeString()}` }), play);
  }));
}
