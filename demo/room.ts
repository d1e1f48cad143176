// Room page: enter an SFU room (created if it does not exist), publish the camera into it
// (simulcast: three rid layers), listen to any publisher and pick the simulcast layer it sends
// you (update_media video_layer). Members come and go live (the room's events).
import { $, NkMediaError, Peer, action, demo, h, onRefresh, pageHeader, reasonText, refresh, requireClient, setupLogin, showError, showStats, tap, type EventData, type NkMediaClient, type SimulcastEncoding } from './lib.js';

pageHeader('room.html');

/** Three layers, lowest first; the low ones capped so that the top one fits the browser's first bandwidth estimate. */
const LAYERS: SimulcastEncoding[] = [
  { rid: 'l', scaleResolutionDownBy: 4, maxBitrate: 60000 },
  { rid: 'm', scaleResolutionDownBy: 2, maxBitrate: 150000 },
  { rid: 'h' },
];
const CAMERA: MediaTrackConstraints = { width: { ideal: 640 }, height: { ideal: 360 } };

interface Member { role: string; user_id: string; peer_id?: string }
interface Listening { peer: Peer; card: HTMLElement; layer: HTMLSelectElement }

let roomId: string | undefined;
let untapRoom: (() => void) | undefined;
const members = new Map<string, Member>();
let publisher: Peer | undefined;
const listening = new Map<string, Listening>();

const roomStatus = $('room-status');
const publishStatus = $('publish-status');

setupLogin({ onDisconnected: () => { forgetRoom('disconnected'); } });

function note(text: string): void {
  const ul = $('member-log');
  ul.prepend(h('li', {}, h('span', { className: 'muted', textContent: new Date().toLocaleTimeString() }), h('span', { textContent: text })));
  while (ul.children.length > 20) ul.lastElementChild!.remove();
}

async function roomInfo(c: NkMediaClient, id: string): Promise<{ members: Record<string, Member> }> {
  return c.request('media', 'room', 'get_info', { room_id: id });
}

action($<HTMLButtonElement>('enter'), 'Enter room', async () => {
  const c = requireClient();
  const id = $<HTMLInputElement>('room-id').value.trim();
  if (!id) throw new Error('give the room a name');
  let info;
  try {
    info = await roomInfo(c, id);
  } catch (err) {
    if (!(err instanceof NkMediaError && err.code === 304001)) throw err; // room_not_found: make it
    await c.request('media', 'room', 'create', { class: 'sfu', room_id: id }).catch((e) => {
      if (!(e instanceof NkMediaError && e.code === 304002)) throw e; // someone else made it meanwhile
    });
    note(`room ${id} created`);
    info = await roomInfo(c, id);
  }
  await c.subscribe({ class: 'media', subclass: 'room', obj_id: id });
  roomId = id;
  untapRoom = tap(id, onRoomEvent);
  members.clear();
  for (const [sid, m] of Object.entries(info.members ?? {})) members.set(sid, m);
  roomStatus.textContent = `in room ${id}`;
  renderMembers();
});

action($<HTMLButtonElement>('leave'), 'Leave room', async () => {
  const c = demo.client;
  const id = roomId;
  await stopAll();
  if (c && !c.closed && id) await c.unsubscribe({ class: 'media', subclass: 'room', obj_id: id }).catch(() => undefined);
  forgetRoom('left');
});

async function stopAll(): Promise<void> {
  const p = publisher;
  publisher = undefined;
  await p?.stop();
  for (const [pub, l] of [...listening]) { listening.delete(pub); l.card.remove(); await l.peer.stop(); }
}

function forgetRoom(why: string): void {
  untapRoom?.();
  untapRoom = undefined;
  if (roomId) note(`${why} room ${roomId}`);
  roomId = undefined;
  members.clear();
  publisher = undefined;
  for (const l of listening.values()) l.card.remove();
  listening.clear();
  roomStatus.textContent = 'not in a room';
  publishStatus.textContent = '';
  renderMembers();
  refresh();
}

function onRoomEvent(e: EventData): void {
  const b = e.body ?? {};
  if (e.type === 'started_member') {
    members.set(String(b.session_id), { role: String(b.role), user_id: String(b.user_id), ...(b.peer_id ? { peer_id: String(b.peer_id) } : {}) });
    const of = b.peer_id ? ` of ${members.get(String(b.peer_id))?.user_id ?? b.peer_id}` : '';
    note(`${b.user_id} joined as ${b.role}${of}`);
  } else if (e.type === 'stopped_member') {
    members.delete(String(b.session_id));
    note(`${b.user_id} left (${b.role})`);
  } else if (e.type === 'destroyed') {
    showError(`room ${e.obj_id} destroyed: ${reasonText(String(b.reason ?? ''), Number(b.code) || undefined)}`, 'Room');
    void stopAll().finally(() => forgetRoom('destroyed:'));
    return;
  }
  renderMembers();
  refresh();
}

function renderMembers(): void {
  const body = $<HTMLTableElement>('members').tBodies[0]!;
  if (members.size === 0) {
    body.replaceChildren(h('tr', {}, h('td', { colSpan: 4, className: 'empty', textContent: roomId ? 'nobody yet' : 'enter a room' })));
    return;
  }
  const sorted = [...members].sort(([, a], [, b]) => (a.role === b.role ? 0 : a.role === 'publisher' ? -1 : 1));
  body.replaceChildren(...sorted.map(([sid, m]) => {
    const cell = h('td');
    if (m.role === 'publisher') {
      const mine = publisher?.id === sid;
      const b = h('button', { textContent: mine ? 'you' : 'Listen', className: 'listen', disabled: mine || listening.has(sid) });
      action(b, `Listen to ${m.user_id}`, () => listen(sid, m.user_id));
      cell.append(b);
    }
    const role = m.role === 'listener' && m.peer_id ? `listener of ${members.get(m.peer_id)?.user_id ?? m.peer_id}` : m.role;
    return h('tr', { dataset: { id: sid, role: m.role, user: m.user_id } }, h('td', { className: 'id', textContent: sid }), h('td', { textContent: role }), h('td', { textContent: m.user_id }), cell);
  }));
}

action($<HTMLButtonElement>('publish'), 'Publish', async () => {
  if (!roomId) throw new Error('enter a room first');
  const simulcast = $<HTMLInputElement>('simulcast').checked;
  publishStatus.textContent = 'starting…';
  const p = new Peer(requireClient(), {
    name: 'publish',
    create: { type: 'publish', room_id: roomId },
    audio: true,
    video: CAMERA,
    receive: false,
    trickle: true,
    ...(simulcast ? { simulcast: LAYERS } : {}),
    localVideo: $<HTMLVideoElement>('local'),
    onEnded: (reason, code) => {
      if (publisher === p) publisher = undefined;
      publishStatus.textContent = `ended: ${reasonText(reason, code)}`;
      showError(`publishing ended: ${reasonText(reason, code)}`, 'Publish');
      renderMembers();
      refresh();
    },
  });
  publisher = p;
  try {
    await p.start();
  } catch (err) {
    publisher = undefined;
    publishStatus.textContent = '';
    throw err;
  }
  publishStatus.textContent = `publishing${simulcast ? ' (simulcast)' : ''} as ${p.id}`;
  showStats(p.pc, $('local-stats'), 'out', 'you, published:');
  renderMembers();
});

action($<HTMLButtonElement>('unpublish'), 'Stop publishing', async () => {
  const p = publisher;
  publisher = undefined;
  await p?.stop();
  publishStatus.textContent = 'not publishing';
  $('local-stats').textContent = 'your camera (not published)';
  renderMembers();
});

async function listen(publisherId: string, user: string): Promise<void> {
  if (!roomId || listening.has(publisherId)) return;
  const layer = h('select', { className: 'layer' }, ...['high', 'medium', 'low'].map((l) => h('option', { value: l, textContent: l })));
  const video = h('video', { autoplay: true, playsInline: true, muted: false });
  const caption = h('figcaption', { textContent: `${user}: connecting…` });
  const stop = h('button', { className: 'danger', textContent: 'Stop' });
  const card = h('figure', { className: 'listener', dataset: { publisher: publisherId, peer: `listen-${publisherId}` } },
    video, caption, h('div', { className: 'row' }, h('label', { textContent: `${user} — layer` }), layer, stop));
  $('videos').append(card);
  const p = new Peer(requireClient(), {
    name: `listen-${publisherId}`,
    create: { type: 'listen', publisher_id: publisherId, room_id: roomId, video_layer: layer.value },
    audio: false,
    video: false,
    trickle: true,
    remoteVideo: video,
    onEnded: (reason, code) => {
      listening.delete(publisherId);
      card.remove();
      // A publisher leaving ends its listeners: that is the room working, not an error.
      if (code === 304006) note(`stopped listening to ${user}: they stopped publishing`);
      else showError(`listening to ${user} ended: ${reasonText(reason, code)}`, 'Listen');
      renderMembers();
      refresh();
    },
  });
  const l: Listening = { peer: p, card, layer };
  listening.set(publisherId, l);
  action(stop, `Stop listening to ${user}`, async () => { listening.delete(publisherId); card.remove(); await p.stop(); renderMembers(); });
  layer.addEventListener('change', () => {
    p.command('update_media', { video_layer: layer.value }).catch((err) => showError(err, 'Layer'));
  });
  try {
    await p.start();
  } catch (err) {
    listening.delete(publisherId);
    card.remove();
    throw err;
  }
  card.dataset.sessionId = p.id;
  showStats(p.pc, caption, 'in', `${user}:`);
  renderMembers();
}

onRefresh(() => {
  const connected = !!demo.client;
  $<HTMLButtonElement>('enter').disabled = !connected || !!roomId;
  $<HTMLInputElement>('room-id').disabled = !!roomId;
  $<HTMLButtonElement>('leave').disabled = !roomId;
  $<HTMLButtonElement>('publish').disabled = !roomId || !!publisher;
  $<HTMLInputElement>('simulcast').disabled = !!publisher;
  $<HTMLButtonElement>('unpublish').disabled = !publisher;
});
renderMembers();
