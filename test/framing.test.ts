// Framing under hostile input (issue #2): malformed JSON, frames that are not requests, bad or
// missing tid/class/cmd, unknown commands, binary and oversize frames, commands before login,
// a second login, and 1,000 requests at once. Every bad frame gets its own error reply naming
// the problem, and the connection (and every other one) keeps working afterwards.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, connectClient, eventually } from './helpers/server.js';
import { RawSocket, type Frame } from './helpers/raw.js';
import { TestPeer } from './helpers/peer.js';
import type { Server } from '../src/main.js';
import type { EventData, NkMediaClient } from '../src/client/index.js';

let server: Server;
/** A second server whose frame limit is small (4096 bytes). */
let small: Server;
let alice: NkMediaClient;
const sockets: RawSocket[] = [];
const peers: TestPeer[] = [];

before(async () => {
  server = await startTestServer();
  small = await startTestServer({ limits: { max_frame_bytes: 4096 } });
  alice = await connectClient(server, 'alice');
});
after(async () => {
  for (const p of peers) await p.close();
  for (const s of sockets) await s.close();
  await alice.close();
  await server.close();
  await small.close();
});

async function open(srv: Server = server, user?: string): Promise<RawSocket> {
  const s = await RawSocket.open(srv.url);
  sockets.push(s);
  if (user !== undefined) await s.login(user);
  return s;
}

/** An error reply with this code, this tid, and an error text matching `text`. */
function assertError(frame: Frame, code: number, text: string | RegExp, tid: unknown = frame.tid): void {
  assert.equal(frame.result, 'error', JSON.stringify(frame));
  assert.equal(frame.data?.code, code, JSON.stringify(frame));
  if (typeof text === 'string') assert.equal(frame.data.error, text);
  else assert.match(frame.data.error, text);
  assert.equal(frame.tid, tid);
  assert.deepEqual(Object.keys(frame).sort(), ['data', 'result', 'tid']);
}

/** The connection still answers a request with `ok`. */
async function stillWorks(s: RawSocket): Promise<void> {
  const r = await s.request('media', 'session', 'get_list');
  assert.equal(r.result, 'ok', JSON.stringify(r));
}

describe('malformed frames', () => {
  it('text that is not JSON gets syntax_error with a null tid', async () => {
    const s = await open(server, 'alice');
    for (const text of ['{"class":', 'hello', '', '{tid: 1}', '{"tid":1,}', '\u0000\u0001\u0002', '{"a":1}{"b":2}', '\uFEFF{}']) {
      s.send(text);
      assertError(await s.untaggedError(), 100044, 'Syntax error: frame is not valid JSON', null);
    }
    await stillWorks(s);
  });

  it('JSON that is not an object gets syntax_error', async () => {
    const s = await open(server, 'alice');
    for (const text of ['[]', '[{"class":"core","cmd":"x","tid":1}]', '42', '"login"', 'null', 'true']) {
      s.send(text);
      assertError(await s.untaggedError(), 100044, 'Syntax error: frame is not a JSON object', null);
    }
    await stillWorks(s);
  });

  it('a missing tid is missing_field naming tid', async () => {
    const s = await open(server, 'alice');
    s.send({ class: 'media', subclass: 'session', cmd: 'get_list' });
    assertError(await s.untaggedError(), 100045, 'Missing field: tid', null);
    s.send({ class: 'event', data: { class: 'media' } });
    assertError(await s.untaggedError(), 100045, 'Missing field: tid', null);
    await stillWorks(s);
  });

  it('a tid of the wrong type is invalid_value naming tid', async () => {
    const s = await open(server, 'alice');
    const frames = [
      '{"class":"core","cmd":"x","tid":true}',
      '{"class":"core","cmd":"x","tid":null}',
      '{"class":"core","cmd":"x","tid":{"a":1}}',
      '{"class":"core","cmd":"x","tid":[1]}',
      '{"class":"core","cmd":"x","tid":1e400}', // parses as Infinity
      JSON.stringify({ class: 'core', cmd: 'x', tid: 'x'.repeat(257) }),
    ];
    for (const f of frames) {
      s.send(f);
      assertError(await s.untaggedError(), 100046, 'Invalid value: tid: expected a string or number', null);
    }
    await stillWorks(s);
  });

  it('any JSON string or number is a tid, echoed back as sent', async () => {
    const s = await open(server, 'alice');
    for (const tid of [0, -1.5, 1e300, '', 'x'.repeat(256), 'ünïcødé ✓']) {
      s.send({ class: 'media', subclass: 'session', cmd: 'get_list', tid });
      const r = await s.reply(tid);
      assert.equal(r.result, 'ok');
    }
  });

  it('a missing class or cmd is missing_field naming it, with the tid kept', async () => {
    const s = await open(server, 'alice');
    s.send({ subclass: 'session', cmd: 'get_list', tid: 1 });
    assertError(await s.reply(1), 100045, 'Missing field: class');
    s.send({ class: 'media', subclass: 'session', tid: 2 });
    assertError(await s.reply(2), 100045, 'Missing field: cmd');
    s.send({ tid: 3 });
    assertError(await s.reply(3), 100045, 'Missing field: class');
    await stillWorks(s);
  });

  it('class, subclass, cmd and data of the wrong type are invalid_value naming the field', async () => {
    const s = await open(server, 'alice');
    const cases: [Record<string, unknown>, string][] = [
      [{ class: 5, cmd: 'get_list' }, 'class: expected a lower-case name'],
      [{ class: null, cmd: 'get_list' }, 'class: expected a lower-case name'],
      [{ class: ['media'], cmd: 'get_list' }, 'class: expected a lower-case name'],
      [{ class: 'Media', subclass: 'session', cmd: 'get_list' }, 'class: expected a lower-case name'],
      [{ class: 'media/session', cmd: 'get_list' }, 'class: expected a lower-case name'],
      [{ class: 'm'.repeat(65), cmd: 'get_list' }, 'class: expected a lower-case name'],
      [{ class: '', cmd: 'get_list' }, 'class: expected a lower-case name'],
      [{ class: 'media', subclass: 'session', cmd: 7 }, 'cmd: expected a lower-case name'],
      [{ class: 'media', subclass: 'session', cmd: '../../etc' }, 'cmd: expected a lower-case name'],
      [{ class: 'media', subclass: 'session', cmd: 'get list' }, 'cmd: expected a lower-case name'],
      [{ class: 'media', subclass: 9, cmd: 'get_list' }, 'subclass: expected a lower-case name'],
      [{ class: 'media', subclass: 'Session', cmd: 'get_list' }, 'subclass: expected a lower-case name'],
      [{ class: 'media', subclass: 'session', cmd: 'get_list', data: [] }, 'data: expected an object'],
      [{ class: 'media', subclass: 'session', cmd: 'get_list', data: 'x' }, 'data: expected an object'],
      [{ class: 'media', subclass: 'session', cmd: 'get_list', data: 3 }, 'data: expected an object'],
    ];
    for (const [i, [frame, text]] of cases.entries()) {
      const tid = `bad-${i}`;
      s.send({ ...frame, tid });
      assertError(await s.reply(tid), 100046, `Invalid value: ${text}`);
    }
    // data: null is the same as no data.
    s.send({ class: 'media', subclass: 'session', cmd: 'get_list', data: null, tid: 'null-data' });
    assert.equal((await s.reply('null-data')).result, 'ok');
    await stillWorks(s);
  });

  it('unknown class, subclass or cmd is an error naming the command (unknown_command or not_implemented)', async () => {
    const s = await open(server, 'alice');
    // not_implemented where the original answered so: anything under `media` but its session
    // and call APIs (docs/API.md §2 "Errors").
    const cases: [string, string | undefined, string, string, number][] = [
      ['nope', 'session', 'create', 'nope/session/create', 100042],
      ['media', 'nope', 'create', 'media/nope/create', 100006],
      ['media', 'session', 'frobnicate', 'media/session/frobnicate', 100042],
      ['media', undefined, 'create', 'media/core/create', 100006],
      ['core', undefined, 'login', 'core/core/login', 100042],
      ['core', 'event', 'publish', 'core/event/publish', 100042],
      ['event', undefined, 'x', 'event/core/x', 100042],
      // Names every plain object inherits: never commands.
      ['media', 'session', 'constructor', 'media/session/constructor', 100042],
      ['media', 'session', '__proto__', 'media/session/__proto__', 100042],
      ['core', 'constructor', 'keys', 'core/constructor/keys', 100042],
      ['media', 'constructor', 'assign', 'media/constructor/assign', 100006],
      ['constructor', 'prototype', 'constructor', 'constructor/prototype/constructor', 100042],
      ['__proto__', 'session', 'get_list', '__proto__/session/get_list', 100042],
    ];
    for (const [cls, subclass, cmd, name, code] of cases) {
      const r = await s.request(cls, subclass, cmd, {});
      assertError(r, code, code === 100042 ? `Unknown command '${name}'` : `Not implemented: ${name}`);
    }
    await stillWorks(s);
  });

  it('unknown and retired commands get, per class and subclass, what the original answered', async () => {
    const s = await open(server, 'alice');
    const unknown = (name: string) => [100042, `Unknown command '${name}'`] as const;
    const notImplemented = (text: string) => [100006, `Not implemented: ${text}`] as const;
    const cases: [string, string, string, Record<string, unknown>, readonly [number, string]][] = [
      // core: the original's core API named any command it lacked.
      ['core', 'event', 'publish', {}, unknown('core/event/publish')],
      ['core', 'user', 'frobnicate', {}, unknown('core/user/frobnicate')],
      ['core', 'session', 'frobnicate', {}, unknown('core/session/frobnicate')],
      // media/session: unknown and most retired names (Sept 2016 `start_record`, `media`, …) too…
      ['media', 'session', 'frobnicate', {}, unknown('media/session/frobnicate')],
      ['media', 'session', 'start_record', { session_id: 'x' }, unknown('media/session/start_record')],
      ['media', 'session', 'media', { session_id: 'x' }, unknown('media/session/media')],
      ['media', 'session', 'candidate', { session_id: 'x' }, unknown('media/session/candidate')],
      // …but room_action and the retired pause_record / resume_record reached the backend,
      // which did not implement them (for a session you have; else session_not_found).
      ['media', 'session', 'pause_record', { session_id: 'nope' }, [100062, 'Session not found']],
      ['media', 'session', 'resume_record', {}, [100045, 'Missing field: session_id']],
      ['media', 'session', 'room_action', { session_id: 'nope' }, [100062, 'Session not found']],
      // media/call: the call API named unknown commands, the retired 2016 names among them.
      ['media', 'call', 'frobnicate', {}, unknown('media/call/frobnicate')],
      ['media', 'call', 'start', { callee: 'bob' }, unknown('media/call/start')],
      ['media', 'call', 'answered', { call_id: 'x' }, unknown('media/call/answered')],
      // media/room: nothing claimed a command the room API lacked → not implemented
      // (the original's message log among them).
      ['media', 'room', 'frobnicate', {}, notImplemented('media/room/frobnicate')],
      ['media', 'room', 'msglog_send', { room_id: 'x', msg: {} }, notImplemented('media/room/msglog_send')],
      ['media', 'room', 'get_status', { room_id: 'x' }, notImplemented('media/room/get_status')],
      // Any other media subclass, ours (kurento) included.
      ['media', 'kurento', 'frobnicate', {}, notImplemented('media/kurento/frobnicate')],
      ['media', 'conf', 'create', {}, notImplemented('media/conf/create')],
    ];
    for (const [cls, subclass, cmd, data, [code, text]] of cases) {
      const r = await s.request(cls, subclass, cmd, data);
      assertError(r, code, text);
    }
    // With a session of yours, the retired recorder commands are not implemented.
    const created = await s.request('media', 'session', 'create', { type: 'park' });
    assert.equal(created.result, 'ok', JSON.stringify(created));
    const id = created.data.session_id as string;
    for (const cmd of ['pause_record', 'resume_record']) {
      assertError(await s.request('media', 'session', cmd, { session_id: id }), 100006, `Not implemented: ${cmd} (retired: use recorder_action)`);
    }
    assertError(await s.request('media', 'session', 'room_action', { session_id: id }), 100006, 'Not implemented: room_action');
    assert.equal((await s.request('media', 'session', 'destroy', { session_id: id })).result, 'ok');
    await stillWorks(s);
  });

  it('binary frames get syntax_error, even when they hold valid JSON', async () => {
    const s = await open(server, 'alice');
    s.sendBinary(Buffer.from(JSON.stringify({ class: 'media', subclass: 'session', cmd: 'get_list', tid: 'bin' })));
    assertError(await s.untaggedError(), 100044, 'Syntax error: binary frames are not accepted; send JSON text', null);
    s.sendBinary(Buffer.from([0, 1, 2, 0xff, 0xfe]));
    assertError(await s.untaggedError(), 100044, /binary frames are not accepted/, null);
    s.sendBinary(Buffer.alloc(0));
    assertError(await s.untaggedError(), 100044, /binary frames are not accepted/, null);
    await stillWorks(s);
    assert.ok(!s.received.some((f) => f.tid === 'bin'), 'the binary frame was not run');
  });

  it('data nested too deeply is refused before any command runs (no stack overflow)', async () => {
    const s = await open(server, 'alice');
    const before = server.services.sessions.size;
    for (const depth of [32, 1000, 100_000]) {
      const nested = '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);
      for (const field of ['session_meta', 'events_body', 'session_events_body']) {
        const tid = `deep-${field}-${depth}`;
        s.send(`{"class":"media","subclass":"session","cmd":"create","tid":"${tid}","data":{"type":"park","${field}":${nested}}}`);
        assertError(await s.reply(tid), 100046, `Invalid value: ${field}: nested more than 32 levels deep`);
      }
      const tid = `deep-offer-${depth}`;
      s.send(`{"class":"media","subclass":"session","cmd":"create","tid":"${tid}","data":{"type":"park","offer":{"sdp":"v=0","x":${nested}}}}`);
      assertError(await s.reply(tid), 100046, 'Invalid value: offer: nested more than 32 levels deep');
      const arrays = '['.repeat(depth) + ']'.repeat(depth);
      s.send(`{"class":"core","subclass":"event","cmd":"subscribe","tid":"arr-${depth}","data":{"class":"media","body":{"x":${arrays}}}}`);
      assertError(await s.reply(`arr-${depth}`), 100046, 'Invalid value: body: nested more than 32 levels deep');
    }
    assert.equal(server.services.sessions.size, before, 'no session was created (or left behind)');
    // 32 levels in all (data itself is the first) are fine, and come back intact.
    const meta = JSON.parse('{"a":'.repeat(31) + '1' + '}'.repeat(31));
    const r = await s.request('media', 'session', 'create', { type: 'park', session_meta: meta });
    assert.equal(r.result, 'ok', JSON.stringify(r));
    const info = await s.request('media', 'session', 'get_info', { session_id: r.data.session_id });
    assert.deepEqual(info.data.session_meta, meta);
    assert.equal((await s.request('media', 'session', 'destroy', { session_id: r.data.session_id })).result, 'ok');
    await stillWorks(s);
  });

  it('"__proto__" keys in requests pollute nothing', async () => {
    const s = await RawSocket.open(server.url);
    sockets.push(s);
    s.send('{"class":"core","subclass":"user","cmd":"login","tid":"l","data":{"user":"mallory","__proto__":{"admin":true,"polluted":1}}}');
    assert.equal((await s.reply('l')).result, 'ok');
    s.send('{"class":"media","subclass":"session","cmd":"create","tid":"c","data":{"type":"park","__proto__":{"polluted":2},"session_meta":{"__proto__":{"polluted":3}},"events_body":{"__proto__":{"polluted":4}}}}');
    const created = await s.reply('c');
    assert.equal(created.result, 'ok', JSON.stringify(created));
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.equal(({} as Record<string, unknown>).admin, undefined);
    // Not an admin: alice's sessions stay invisible to mallory.
    const mine = await alice.createSession({ type: 'park' });
    const list = await s.request('media', 'session', 'get_list');
    assert.deepEqual(list.data.map((x: { session_id: string }) => x.session_id), [created.data.session_id]);
    await alice.destroySession(mine.session_id);
    assert.equal((await s.request('media', 'session', 'destroy', { session_id: created.data.session_id })).result, 'ok');
  });

  it('replies and acks from the client are ignored; malformed ones get an error', async () => {
    const s = await open(server, 'alice');
    s.send({ ack: 'whatever' });
    s.send({ result: 'ok', tid: 'not-ours' });
    s.send({ result: 'error', data: { code: 1, error: 'x' }, tid: 99 });
    const r = await s.request('media', 'session', 'get_list');
    assert.equal(r.result, 'ok');
    assert.equal(s.received.length, 2, 'only the login and get_list replies: nothing for the client reply and ack');
    s.send({ result: 'ok' });
    assertError(await s.untaggedError(), 100045, 'Missing field: tid', null);
    s.send({ ack: { tid: 1 } });
    assertError(await s.untaggedError(), 100046, 'Invalid value: ack', null);
    await stillWorks(s);
  });

  it('the SDK hands errors for unreadable frames to its event listeners', async () => {
    const got: EventData[] = [];
    const off = alice.onEvent((e) => { if (e.class === 'error') got.push(e); });
    alice.sendRaw('not json at all');
    alice.sendRaw('{"class":"media","cmd":"get_list"}');
    await eventually(() => got.length >= 2, 5000, 'two error events');
    off();
    assert.deepEqual(got[0]!.body, { code: 100044, error: 'Syntax error: frame is not valid JSON' });
    assert.deepEqual(got[1]!.body, { code: 100045, error: 'Missing field: tid' });
    assert.deepEqual(await alice.listSessions(), []);
  });
});

describe('frame size', () => {
  it('a frame over limits.max_frame_bytes gets frame_too_large (100049) and the connection stays usable', async () => {
    const s = await open(small, 'alice');
    const frameOf = (size: number, tid: string): string => {
      const base = JSON.stringify({ class: 'media', subclass: 'session', cmd: 'get_list', tid, data: { pad: '' } });
      return base.replace('"pad":""', `"pad":"${'x'.repeat(size - base.length)}"`);
    };
    const big = frameOf(5000, 'big');
    assert.equal(Buffer.byteLength(big), 5000);
    s.send(big);
    assertError(await s.untaggedError(), 100049, 'Frame too large: 5000 bytes, limit 4096', null);
    // Exactly at the limit is fine.
    const edge = frameOf(4096, 'edge');
    assert.equal(Buffer.byteLength(edge), 4096);
    s.send(edge);
    assert.equal((await s.reply('edge')).result, 'ok');
    // The limit counts bytes, not characters.
    const wide = JSON.stringify({ class: 'media', subclass: 'session', cmd: 'get_list', tid: 'wide', data: { pad: 'é'.repeat(2500) } });
    assert.ok(wide.length < 4096 && Buffer.byteLength(wide) > 4096);
    s.send(wide);
    assertError(await s.untaggedError(), 100049, `Frame too large: ${Buffer.byteLength(wide)} bytes, limit 4096`, null);
    // Binary frames over the limit too.
    s.sendBinary(Buffer.alloc(10_000, 1));
    assertError(await s.untaggedError(), 100049, 'Frame too large: 10000 bytes, limit 4096', null);
    // Many in a row.
    for (let i = 0; i < 20; i++) s.send(frameOf(8000, `many-${i}`));
    for (let i = 0; i < 20; i++) assertError(await s.untaggedError(), 100049, /^Frame too large: 8000 bytes/, null);
    assert.ok(!s.received.some((f) => f.tid === 'big' || f.tid === 'wide' || String(f.tid).startsWith('many-')), 'oversize frames were not run');
    await stillWorks(s);
    assert.ok(s.isOpen);
  });

  it('a frame far over the limit closes only that connection (1009); the server keeps serving', async () => {
    const bystander = await open(small, 'bob');
    const s = await open(small, 'alice');
    s.send(JSON.stringify({ class: 'media', subclass: 'session', cmd: 'get_list', tid: 'huge', data: { pad: 'x'.repeat(17 * 1024 * 1024) } }));
    const { code } = await s.closed;
    assert.equal(code, 1009);
    assert.ok(!s.received.some((f) => f.tid === 'huge'));
    await stillWorks(bystander);
    const fresh = await open(small, 'alice');
    await stillWorks(fresh);
  });
});

describe('login', () => {
  it('before login every other command is not_authenticated (100031), unknown ones too', async () => {
    const s = await open(server);
    const sessionsBefore = server.services.sessions.size;
    const cases: [string, string | undefined, string, unknown][] = [
      ['media', 'session', 'get_list', undefined],
      ['media', 'session', 'create', { type: 'park' }],
      ['media', 'session', 'destroy', { session_id: 'x' }],
      ['core', 'event', 'subscribe', { class: 'media' }],
      ['media', 'session', 'frobnicate', {}],
      ['nope', undefined, 'nope', {}],
    ];
    for (const [cls, subclass, cmd, data] of cases) assertError(await s.request(cls, subclass, cmd, data), 100031, 'Not authenticated');
    assert.equal(server.services.sessions.size, sessionsBefore, 'nothing was created');
    // Framing errors are still framing errors.
    s.send('{');
    assertError(await s.untaggedError(), 100044, 'Syntax error: frame is not valid JSON', null);
    // Bad login data names the field.
    assertError(await s.request('core', 'user', 'login', {}), 100045, 'Missing field: user');
    assertError(await s.request('core', 'user', 'login', { user: 5 }), 100046, 'Invalid value: user: expected string');
    assertError(await s.request('core', 'user', 'login', { user: '' }), 100046, 'Invalid value: user: must be >= 1 characters');
    assertError(await s.request('core', 'user', 'login', { user: 'a', password: {} }), 100046, 'Invalid value: password: expected string');
    await s.login('alice');
    await stillWorks(s);
  });

  it('a second login gets already_authenticated (100032) and changes nothing', async () => {
    const s = await open(server);
    const id = await s.login('alice');
    assertError(await s.request('core', 'user', 'login', { user: 'admin' }), 100032, 'Already authenticated');
    assertError(await s.request('core', 'user', 'login', { user: 'alice' }), 100032, 'Already authenticated');
    // Still alice, not admin: bob's sessions stay invisible.
    const bob = await connectClient(server, 'bob');
    const bobs = await bob.createSession({ type: 'park' });
    const list = await s.request('media', 'session', 'get_list');
    assert.deepEqual(list.data, []);
    await bob.close();
    assert.ok(id.length > 0);
    await eventually(() => server.services.sessions.lookup(bobs.session_id) === undefined, 5000, "bob's session to stop with its connection");
  });

  it('two logins sent at once: exactly one succeeds', async () => {
    const s = await open(server);
    s.send({ class: 'core', subclass: 'user', cmd: 'login', data: { user: 'alice' }, tid: 'l1' });
    s.send({ class: 'core', subclass: 'user', cmd: 'login', data: { user: 'admin' }, tid: 'l2' });
    const replies = [await s.reply('l1'), await s.reply('l2')];
    assert.deepEqual(replies.map((r) => r.result).sort(), ['error', 'ok']);
    const failed = replies.find((r) => r.result === 'error')!;
    assertError(failed, 100032, 'Already authenticated');
    await stillWorks(s);
  });
});

describe('requests in flight', () => {
  it('1,000 requests at once: each gets exactly one reply, ok or too_many_requests (100048)', async () => {
    const s = await open(server, 'alice');
    const other = await open(server, 'alice');
    const N = 1000;
    const tids = Array.from({ length: N }, (_, i) => `burst-${i}`);
    for (const [i, tid] of tids.entries()) {
      s.send(i % 2 === 0
        ? { class: 'media', subclass: 'session', cmd: 'get_list', tid }
        : { class: 'core', subclass: 'event', cmd: 'get_subscriptions', tid });
    }
    const repliesByTid = () => {
      const m = new Map<unknown, Frame[]>();
      for (const f of s.received) if ('result' in f) m.set(f.tid, [...(m.get(f.tid) ?? []), f]);
      return m;
    };
    await eventually(() => { const m = repliesByTid(); return tids.every((t) => m.has(t)); }, 30000, 'a reply to every request');
    // One more round trip: a duplicate reply would have been written before this one.
    await stillWorks(s);
    const byTid = repliesByTid();
    let ok = 0;
    let refused = 0;
    for (const tid of tids) {
      const replies = byTid.get(tid) ?? [];
      assert.equal(replies.length, 1, `exactly one reply to ${tid}`);
      const r = replies[0]!;
      if (r.result === 'ok') ok++;
      else { assertError(r, 100048, 'Too many requests in flight: limit 64 per connection', tid); refused++; }
    }
    assert.equal(ok + refused, N);
    assert.ok(ok >= 64, `at least the first 64 are served (served ${ok})`);
    await stillWorks(other);
    assert.deepEqual(await alice.listSessions(), []);
  });

  it('past 64 requests waiting, the next is refused at once; the waiting ones are all answered', async () => {
    const created = await alice.createSession({ type: 'park', wait_reply: true });
    const id = created.session_id;
    const peer = new TestPeer();
    peers.push(peer);
    const answer = await peer.answerOffer(created.offer!);
    const s = await open(server, 'alice');
    // get_answer waits for the answer: 64 of them fill the connection's in-flight budget.
    const tids = Array.from({ length: 64 }, (_, i) => `wait-${i}`);
    for (const tid of tids) s.send({ class: 'media', subclass: 'session', cmd: 'get_answer', data: { session_id: id }, tid });
    for (const tid of tids) await s.next((f) => f.ack === tid);
    s.send({ class: 'media', subclass: 'session', cmd: 'get_list', tid: 'one-too-many' });
    assertError(await s.reply('one-too-many'), 100048, 'Too many requests in flight: limit 64 per connection');
    s.send({ class: 'media', subclass: 'session', cmd: 'get_info', data: { session_id: id }, tid: 'two-too-many' });
    assertError(await s.reply('two-too-many'), 100048, /^Too many requests in flight/);
    // Another connection of the same user is not limited by this one.
    await alice.setAnswer(id, { sdp: answer.sdp, trickle_ice: true });
    for (const tid of tids) {
      const r = await s.reply(tid);
      assert.equal(r.result, 'ok', JSON.stringify(r));
      assert.equal(r.data.answer.sdp, answer.sdp);
    }
    await stillWorks(s);
    await alice.destroySession(id);
  });
});
