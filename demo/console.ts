// Console page: the live list of sessions, rooms, calls, Kurento pipelines and media nodes. Events (a
// subscription to every media event: an admin gets every user's) add, change and remove rows at once;
// a poll every second (get_list, get_status, get_stats, room and call get_info, media/node get_list)
// fills in states and bitrates and catches what has no event (calls have no `created`, nodes none at
// all). Each row but a node's can be destroyed; the node list is for admins only.
import { $, action, demo, h, kbps, NkMediaError, onRefresh, pageHeader, requireClient, setupLogin, showError, type EventData, type NkMediaClient } from './lib.js';

pageHeader('console.html');

/** A table body whose rows are kept by id: cells are updated in place, so buttons stay put. */
class KeyedTable {
  private readonly rows = new Map<string, { tr: HTMLTableRowElement; cells: HTMLTableCellElement[] }>();
  /** `button`: each row's action (e.g. Destroy) in a last column; a table without one has no such column. */
  constructor(private readonly table: HTMLTableElement, private readonly columns: number, private readonly count: HTMLElement, private readonly button?: (id: string) => HTMLButtonElement) {
    this.renderEmpty();
  }

  has(id: string): boolean { return this.rows.has(id); }
  ids(): string[] { return [...this.rows.keys()]; }

  /** Adds the row if new; sets the given cells (undefined leaves a cell as it is). */
  set(id: string, cells: (string | undefined)[]): void {
    let row = this.rows.get(id);
    if (!row) {
      const tds = Array.from({ length: this.columns }, () => h('td'));
      tds[0]!.className = 'id';
      tds[0]!.textContent = id;
      const tr = h('tr', { dataset: { id } }, ...tds, ...(this.button ? [h('td', {}, this.button(id))] : []));
      row = { tr, cells: tds };
      this.rows.set(id, row);
      this.body().querySelector('tr.empty-row')?.remove();
      this.body().append(tr);
    }
    cells.forEach((c, i) => {
      const td = row!.cells[i + 1];
      if (c !== undefined && td && td.textContent !== c) td.textContent = c;
    });
    this.count.textContent = `(${this.rows.size})`;
  }

  remove(id: string): void {
    this.rows.get(id)?.tr.remove();
    this.rows.delete(id);
    this.count.textContent = this.rows.size ? `(${this.rows.size})` : '';
    this.renderEmpty();
  }

  clear(): void { for (const id of this.ids()) this.remove(id); }

  private body(): HTMLTableSectionElement { return this.table.tBodies[0]!; }

  private renderEmpty(): void {
    if (this.rows.size > 0 || this.body().querySelector('tr.empty-row')) return;
    this.body().append(h('tr', { className: 'empty-row' }, h('td', { className: 'empty', colSpan: this.columns + (this.button ? 1 : 0), textContent: 'none' })));
  }
}

function destroyButton(label: string, context: string, run: (client: NkMediaClient) => Promise<unknown>): HTMLButtonElement {
  const b = h('button', { className: 'danger', textContent: label });
  action(b, context, () => run(requireClient()));
  return b;
}

const sessions = new KeyedTable($<HTMLTableElement>('sessions'), 6, $('session-count'),
  (id) => destroyButton('Destroy', `Destroy ${id}`, async (c) => { await c.destroySession(id); sessions.remove(id); }));
const rooms = new KeyedTable($<HTMLTableElement>('rooms'), 5, $('room-count'),
  (id) => destroyButton('Destroy', `Destroy ${id}`, async (c) => { await c.request('media', 'room', 'destroy', { room_id: id }); rooms.remove(id); }));
const calls = new KeyedTable($<HTMLTableElement>('calls'), 5, $('call-count'),
  (id) => destroyButton('Hang up', `Hang up ${id}`, async (c) => { await c.hangupCall(id, 'console'); calls.remove(id); }));

const pipelines = new KeyedTable($<HTMLTableElement>('pipelines'), 4, $('pipeline-count'),
  (id) => destroyButton('Release', `Release ${id}`, async (c) => { await c.request('media', 'kurento', 'destroy', { pipeline_id: id }); pipelines.remove(id); }));

interface PipelineRow { id: string; user: string; elements: { type: string; media_state: string; flowing_in: string[] }[] }

// Where media runs (docs/API.md §14): one `local` node with media in the server's process, else its
// workers and remote media servers. Nothing to destroy here: a node is the server's to manage.
const nodes = new KeyedTable($<HTMLTableElement>('nodes'), 9, $('node-count'));

interface NodeRow {
  node_id: string; kind: string; address?: string; state: string; pid?: number;
  sessions: number; elements: number; cpu_percent?: number; error?: string; up_since?: number;
}

/** The node list is for admins (others get `unauthorized`): the table then gives way to a note. */
function showNodes(list: NodeRow[] | 'admins only'): void {
  const denied = list === 'admins only';
  $('nodes').hidden = denied;
  $('node-note').hidden = !denied;
  if (denied) { nodes.clear(); return; }
  const ids = new Set(list.map((n) => n.node_id));
  for (const id of nodes.ids()) if (!ids.has(id)) nodes.remove(id);
  for (const n of list) {
    const since = n.up_since !== undefined ? new Date(n.up_since * 1000).toLocaleTimeString() : '–';
    nodes.set(n.node_id, [n.kind, n.address ?? '–', n.error ? `${n.state}: ${n.error}` : n.state, n.pid !== undefined ? String(n.pid) : '–',
      String(n.sessions), String(n.elements), n.cpu_percent !== undefined ? n.cpu_percent.toFixed(1) : '–', since]);
  }
}

/** Clears the node table and note (logged out). */
function resetNodes(): void {
  nodes.clear();
  $('nodes').hidden = false;
  $('node-note').hidden = true;
}

/** Sessions and rooms recently destroyed: a poll that started before the event must not bring them back. */
const gone = new Map<string, number>();
const isGone = (id: string) => (gone.get(id) ?? 0) > Date.now() - 10000;
function markGone(id: string): void {
  gone.set(id, Date.now());
  if (gone.size > 1000) for (const [k, t] of gone) if (t < Date.now() - 10000) gone.delete(k);
}

let poller: ReturnType<typeof setTimeout> | undefined;

setupLogin({
  user: 'admin',
  async onConnected(client) {
    client.onEvent(onEvent);
    // Every media event (session, room and call) this user may see: an admin sees all.
    await client.subscribe({ class: 'media' });
    await poll();
  },
  onDisconnected() {
    clearTimeout(poller);
    poller = undefined;
    sessions.clear();
    rooms.clear();
    calls.clear();
    pipelines.clear();
    resetNodes();
  },
});
onRefresh(() => undefined);

function logEvent(e: EventData): void {
  if (e.type === 'candidate' || e.type === 'candidate_end') return;
  const ul = $('event-log');
  const detail = e.type === 'info' ? ` ${[e.body?.info, e.body?.direction, e.body?.media, e.body?.status].filter(Boolean).join(' ')}` : e.type === 'destroyed' || e.type === 'hangup' ? ` — ${e.body?.reason ?? ''}` : e.type === 'type' ? ` → ${e.body?.type ?? ''}` : e.type === 'started_member' || e.type === 'stopped_member' ? ` ${e.body?.role ?? ''} ${e.body?.session_id ?? ''}` : '';
  ul.prepend(h('li', {}, h('span', { className: 'muted', textContent: new Date().toLocaleTimeString() }), h('code', { textContent: `${e.subclass ?? ''}/${e.type ?? ''}` }), h('span', { className: 'id', textContent: `${e.obj_id ?? ''}${detail}` })));
  while (ul.children.length > 30) ul.lastElementChild!.remove();
}

function onEvent(e: EventData): void {
  if (e.class !== 'media' || !e.obj_id) return;
  logEvent(e);
  const id = e.obj_id;
  const b = e.body ?? {};
  if (e.subclass === 'session') {
    if (e.type === 'destroyed') { markGone(id); sessions.remove(id); return; }
    if (isGone(id)) return;
    if (e.type === 'created') sessions.set(id, [String(b.type ?? ''), String(b.status?.state ?? 'new'), String(b.user_id ?? ''), '–', '–']);
    else if (e.type === 'type') sessions.set(id, [String(b.type ?? '')]);
    else if (e.type === 'info' && b.info === 'webrtc') sessions.set(id, [undefined, b.status === 'up' ? 'connected' : 'disconnected']);
  } else if (e.subclass === 'room') {
    if (e.type === 'destroyed') { markGone(id); rooms.remove(id); return; }
    if (isGone(id)) return;
    if (e.type === 'created') rooms.set(id, [String(b.class ?? 'sfu'), String(b.owner ?? ''), '0', '0']);
    else if (e.type === 'started_member' || e.type === 'stopped_member') void roomInfo(requireClient(), id).catch(() => undefined);
  } else if (e.subclass === 'call') {
    if (e.type === 'hangup' && b.session_id === undefined) { markGone(id); calls.remove(id); return; }
    if (isGone(id)) return;
    if (e.type === 'accepted') calls.set(id, [undefined, 'answered']);
    else if (e.type === 'ringing') calls.set(id, [undefined, 'ringing']);
  }
}

async function roomInfo(c: NkMediaClient, id: string): Promise<void> {
  const info = await c.request('media', 'room', 'get_info', { room_id: id });
  if (isGone(id)) return;
  const members = Object.values(info.members ?? {}) as { role: string }[];
  rooms.set(id, [String(info.class), String(info.owner), String(members.filter((m) => m.role === 'publisher').length), String(members.filter((m) => m.role === 'listener').length)]);
}

const sum = (o: Record<string, { bitrate?: number }> | undefined) => Object.values(o ?? {}).reduce((t, m) => t + (m?.bitrate ?? 0), 0);

async function poll(): Promise<void> {
  const c = demo.client;
  if (!c || c.closed) return;
  try {
    const [sl, rl, cl, pl, nl] = await Promise.all([
      c.listSessions(),
      c.request<{ room_id: string; class: string; owner: string }[]>('media', 'room', 'get_list'),
      c.listCalls(),
      // Kurento-protocol pipelines share the engine with these sessions (absent: the door is off).
      c.request<PipelineRow[]>('media', 'kurento', 'get_list').catch(() => [] as PipelineRow[]),
      // Media nodes: admins only (unauthorized, 100030, for anyone else).
      c.request<NodeRow[]>('media', 'node', 'get_list').catch((err: unknown) => {
        if (err instanceof NkMediaError && err.code === 100030) return 'admins only' as const;
        throw err;
      }),
    ]);
    showNodes(nl);
    const pIds = new Set(pl.map((p) => p.id));
    for (const id of pipelines.ids()) if (!pIds.has(id)) pipelines.remove(id);
    for (const p of pl) {
      const types = p.elements.map((e) => e.type.replace(/Endpoint$/, '')).join(', ') || 'none';
      const flowing = p.elements.filter((e) => e.flowing_in.length > 0).length;
      pipelines.set(p.id, [p.user, types, `${flowing}/${p.elements.length} receiving`]);
    }
    const sIds = new Set(sl.map((s) => s.session_id));
    for (const id of sessions.ids()) if (!sIds.has(id)) sessions.remove(id);
    await Promise.all(sl.filter((s) => !isGone(s.session_id)).slice(0, 100).map(async (s) => {
      const [status, stats] = await Promise.all([c.getStatus(s.session_id), c.getStats(s.session_id)]).catch(() => [undefined, undefined]);
      if (!status || isGone(s.session_id)) return;
      const st = stats?.stats;
      const state = `${status.state}${status.connection_state && status.connection_state !== status.state ? ` / ${status.connection_state}` : ''}`;
      sessions.set(s.session_id, [s.type, state, s.user_id, kbps(sum(st?.inbound)), kbps(sum(st?.outbound))]);
    }));
    const rIds = new Set(rl.map((r) => r.room_id));
    for (const id of rooms.ids()) if (!rIds.has(id)) rooms.remove(id);
    await Promise.all(rl.filter((r) => !isGone(r.room_id)).map((r) => roomInfo(c, r.room_id).catch(() => undefined)));
    const cIds = new Set(cl.map((x) => x.call_id));
    for (const id of calls.ids()) if (!cIds.has(id)) calls.remove(id);
    await Promise.all(cl.filter((x) => !isGone(x.call_id)).map(async (x) => {
      const info = await c.getCallInfo(x.call_id).catch(() => undefined);
      if (!info || isGone(x.call_id)) return;
      const legs = (info.legs ?? []) as { state: string }[];
      calls.set(x.call_id, [String(info.user_id), String(info.state), JSON.stringify(info.callee), legs.map((l) => l.state).join(', ')]);
    }));
  } catch (err) {
    if (!c.closed) showError(err, 'Refresh');
  } finally {
    if (demo.client === c && !c.closed) poller = setTimeout(() => void poll(), 1000);
    else { sessions.clear(); rooms.clear(); calls.clear(); pipelines.clear(); resetNodes(); }
  }
}
