// Player page: a `play` session plays a file of the server's media folders (play_dirs) or an
// http(s) URL the server fetches, to this browser over WebRTC (receive only). Pause, resume,
// seek and a position bar with the duration go through `player_action` (pause, resume,
// set_position, get_info, get_position); `player` events report the state and errors, and a
// new file or URL on a live session is `player_action start` (no renegotiation).
import { $, NkMediaError, Peer, action, demo, errorText, h, onRefresh, pageHeader, reasonText, refresh, requireClient, setupLogin, showError, showStats, type EventData } from './lib.js';

pageHeader('player.html');

type PlayState = 'starting' | 'playing' | 'paused' | 'stopped' | 'eos';

let peer: Peer | undefined;
let state: PlayState = 'stopped';
let uri = '';
/** From get_info, in ms. */
let info = { duration: 0, first: 0, last: 0, seekable: false };
let position = 0;
/** True while the position bar is being dragged (polling does not move it meanwhile). */
let dragging = false;
let poll: ReturnType<typeof setInterval> | undefined;

const live = () => !!peer && !peer.ended;
const statusEl = $('player-status');
const uriInput = $<HTMLInputElement>('uri');
const bar = $<HTMLInputElement>('position');
const timeEl = $('time');

// ---- the file or URL field: ?uri=, else the last one played here, else clip.webm ----------------

const RECENT_KEY = 'nkmedia-demo-player-recent';
function recent(): string[] {
  try {
    const v = JSON.parse(localStorage.getItem(RECENT_KEY) ?? '[]');
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string').slice(0, 8) : [];
  } catch { return []; }
}
function remember(u: string): void {
  try { localStorage.setItem(RECENT_KEY, JSON.stringify([u, ...recent().filter((x) => x !== u)].slice(0, 8))); } catch { /* storage off */ }
  fillRecent();
}
function fillRecent(): void {
  $('recent-uris').replaceChildren(...recent().map((u) => h('option', { value: u })));
}
uriInput.after(h('datalist', { id: 'recent-uris' }));
uriInput.setAttribute('list', 'recent-uris');
fillRecent();
uriInput.value = new URLSearchParams(location.search).get('uri') ?? recent()[0] ?? 'clip.webm';

function chosenUri(): string {
  const u = uriInput.value.trim();
  if (!u) throw new Error('give a file name (in the server\'s media folder), a path inside it, or an http(s):// URL');
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(u) && !/^(https?|file):\/\//i.test(u)) throw new Error(`${u}: only files and http(s):// URLs can be played`);
  return u;
}

function loops(): number { return $<HTMLInputElement>('loop').checked ? 0 : 1; }

// ---- position and duration ------------------------------------------------------------------------

function clock(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return hh ? `${hh}:${String(mm).padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
}

function showPosition(): void {
  if (!dragging) bar.value = String(position);
  const shown = dragging ? Number(bar.value) : position;
  timeEl.textContent = `${clock(shown)} / ${info.duration ? clock(info.duration) : '–:––'}`;
  timeEl.dataset.position = String(Math.round(position));
  timeEl.dataset.duration = String(info.duration);
}

function setState(s: PlayState): void {
  state = s;
  statusEl.dataset.state = s;
  const name = uri.split('/').pop() || uri;
  statusEl.textContent = {
    starting: `opening ${name}…`,
    playing: `playing ${name}`,
    paused: `paused: ${name}`,
    stopped: live() ? 'stopped' : 'no player',
    eos: `finished ${name}`,
  }[s];
  refresh();
}

async function readInfo(p: Peer): Promise<void> {
  const r = await p.command<{ duration: number; is_seekable: boolean; first_position: number; last_position: number }>('player_action', { action: 'get_info' });
  info = { duration: r.duration, first: r.first_position, last: r.last_position, seekable: r.is_seekable };
  bar.min = String(info.first);
  bar.max = String(info.last || info.duration);
  bar.title = info.seekable ? 'seek' : 'this source cannot seek (the server gets no byte ranges)';
  showPosition();
}

async function readPosition(p: Peer): Promise<void> {
  if (p !== peer || p.ended || (state !== 'playing' && state !== 'paused')) return;
  const r = await p.command<{ position: number }>('player_action', { action: 'get_position' });
  if (p !== peer) return;
  position = r.position;
  showPosition();
}

function startPolling(p: Peer): void {
  stopPolling();
  // get_position twice a second (events come only on state changes).
  poll = setInterval(() => { readPosition(p).catch(() => undefined); }, 500);
}
function stopPolling(): void { if (poll) clearInterval(poll); poll = undefined; }

// ---- events -------------------------------------------------------------------------------------------

function onPlayerEvent(e: EventData): void {
  const b = e.body ?? {};
  if (e.type === 'player') {
    if (typeof b.position === 'number') position = b.position;
    if (b.error) {
      showError(`${String(b.error)}${b.code ? ` (${String(b.code)})` : ''}`, 'Player');
    }
    const s = String(b.state ?? '');
    if (s === 'playing' || s === 'paused' || s === 'stopped' || s === 'eos') setState(s);
    showPosition();
  }
}

// ---- the actions ----------------------------------------------------------------------------------------

setupLogin({
  onDisconnected: () => {
    if (peer) { peer = undefined; stopPolling(); setState('stopped'); statusEl.textContent = 'no player (disconnected)'; }
  },
});

action($<HTMLButtonElement>('play'), 'Play', async () => {
  const u = chosenUri();
  const previous = { uri, state };
  uri = u;
  position = 0;
  setState('starting');
  try {
    if (live()) {
      // A new file on the same session: the server opens it first, so a bad one changes nothing.
      await peer!.command('player_action', { action: 'start', uri: u, loops: loops() });
    } else {
      const p = new Peer(requireClient(), {
        name: 'play',
        create: { type: 'play', uri: u, loops: loops() },
        audio: false,
        video: false,
        trickle: true,
        remoteVideo: $<HTMLVideoElement>('screen'),
        onEnded: (reason, code) => {
          if (peer !== p) return;
          peer = undefined;
          stopPolling();
          showError(`the server ended the session: ${reasonText(reason, code)}`, 'Player');
          setState('stopped');
          statusEl.textContent = `ended: ${reasonText(reason, code)}`;
        },
        onEvent: (e) => { if (peer === p) onPlayerEvent(e); },
      });
      peer = p;
      try {
        await p.start();
      } catch (err) {
        peer = undefined;
        throw err;
      }
      statusEl.dataset.sessionId = p.id;
      showStats(p.pc, $('screen-stats'), 'in');
      startPolling(p);
    }
  } catch (err) {
    uri = previous.uri;
    setState(live() ? previous.state : 'stopped');
    // Name what could not be played; "Invalid Uri" alone says neither what nor why.
    const why = err instanceof NkMediaError && err.code === 100070
      ? 'cannot be opened (no such file in the server\'s media folder, or the URL does not answer)'
      : errorText(err);
    throw new Error(`${u}: ${why}${err instanceof NkMediaError && err.code === 100070 ? ` — ${errorText(err)}` : ''}`);
  }
  remember(u);
  if (state === 'starting') setState('playing');
  await readInfo(peer!);
});

action($<HTMLButtonElement>('pause'), 'Pause', async () => {
  const p = peer!;
  if (state === 'paused') {
    await p.command('player_action', { action: 'resume' });
    if (state === 'paused') setState('playing');
  } else {
    await p.command('player_action', { action: 'pause' });
    if (state === 'playing') setState('paused');
  }
  await readPosition(p);
});

action($<HTMLButtonElement>('stop'), 'Stop', async () => {
  const p = peer;
  peer = undefined;
  stopPolling();
  try {
    await p?.stop();
  } finally {
    delete statusEl.dataset.sessionId;
    position = 0;
    info = { duration: 0, first: 0, last: 0, seekable: false };
    bar.max = '0';
    showPosition();
    setState('stopped');
  }
});

// The position bar: dragging shows the target time; letting go seeks there.
bar.addEventListener('input', () => { dragging = true; showPosition(); });
bar.addEventListener('change', () => {
  const p = peer;
  const target = Number(bar.value);
  if (!p || p.ended) { dragging = false; showPosition(); return; }
  p.command('player_action', { action: 'set_position', position: target })
    .then(() => { position = target; })
    .catch((err) => showError(err, 'Seek'))
    .finally(() => { dragging = false; showPosition(); void readPosition(p).catch(() => undefined); });
});

onRefresh(() => {
  const connected = !!demo.client;
  const playing = state === 'playing' || state === 'paused';
  $<HTMLButtonElement>('play').disabled = !connected || state === 'starting';
  const pause = $<HTMLButtonElement>('pause');
  pause.disabled = !live() || !playing;
  pause.textContent = state === 'paused' ? 'Resume' : 'Pause';
  pause.classList.toggle('on', state === 'paused');
  $<HTMLButtonElement>('stop').disabled = !live();
  bar.disabled = !live() || !playing || !info.seekable;
});
showPosition();
