// The demo pages (demo/, served by the server under /demo/) in Chromium: each test opens a
// page from the server's own HTTP port, logs in through its form and clicks through its flow,
// checking what the page decodes (getStats framesDecoded on the page's own peer connections,
// `window.demo.peers`) and what the server holds. Every page load is watched: a request to
// anywhere but the server (or blob:/data:) fails the test, as does an uncaught page error.
// Screenshots of each page go to docs/images/demo-<page>.png (the README shows them).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BrowserContext, Page } from 'playwright-core';
import { startBrowserSuite, eventually, sleep, type BrowserSuite } from './harness.js';
import { buildDemo } from '../scripts/build-demo.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const IMAGES = join(here, '..', 'docs', 'images');

let suite: BrowserSuite;
let dir: string;
let origin: string;
const opened: DemoPage[] = [];
/** The console page, left open by its test for the later ones. */
let consolePage: DemoPage | undefined;

before(async () => {
  // The pages as they are in demo/ now (npm start and the test runner build them too).
  await buildDemo();
  dir = mkdtempSync(join(tmpdir(), 'nkm-demo-'));
  mkdirSync(join(dir, 'media'));
  suite = await startBrowserSuite({
    // The player page plays a file served on loopback, which `play` refuses unless allowed.
    server: { recordings_dir: join(dir, 'recordings'), play_dirs: [join(dir, 'media')], play_http_allow: ['127.0.0.1'] },
    // Three simulcast layers from a 640×360 camera (see rooms.test.ts).
    chromiumArgs: ['--force-fieldtrials=WebRTC-LegacySimulcastLayerLimit/Disabled/'],
  });
  origin = suite.server.url.replace(/^ws/, 'http').replace(/\/$/, '');
});
after(async () => {
  for (const p of opened) await p.close().catch(() => undefined);
  await suite?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** One demo page in its own browser context (own user, own camera permission). */
class DemoPage {
  readonly problems: string[] = [];
  readonly logs: string[] = [];
  private constructor(readonly context: BrowserContext, readonly page: Page, readonly label: string) {}

  static async open(file: string, label = file): Promise<DemoPage> {
    const context = await suite.browser.newContext({ viewport: { width: 1100, height: 800 }, permissions: ['camera', 'microphone'] });
    const page = await context.newPage();
    const p = new DemoPage(context, page, label);
    opened.push(p);
    page.on('request', (r) => {
      const url = r.url();
      if (!url.startsWith(`${origin}/`) && !url.startsWith('blob:') && !url.startsWith('data:')) p.problems.push(`request to ${url}`);
    });
    // WebSockets are not `request`s: the API's must go to the server too.
    page.on('websocket', (ws) => { if (!ws.url().startsWith(`${origin.replace(/^http/, 'ws')}/`)) p.problems.push(`websocket to ${ws.url()}`); });
    page.on('pageerror', (e) => p.problems.push(`page error: ${e.message}`));
    page.on('console', (m) => { p.logs.push(`${m.type()}: ${m.text()}`); if (p.logs.length > 200) p.logs.shift(); });
    const res = await page.goto(`${origin}/demo/${file}`);
    assert.equal(res?.status(), 200, `GET /demo/${file}`);
    return p;
  }

  /** Logs in through the page's form. */
  async login(user: string): Promise<void> {
    await this.page.fill('#user', user);
    await this.page.click('#connect');
    await this.page.waitForFunction((u) => document.getElementById('conn-status')?.textContent === `connected as ${u}`, user, { timeout: 10000 });
  }

  /** The errors the page has shown. */
  errors(): Promise<string[]> { return this.page.evaluate(() => [...window.demo.errors]); }

  async assertNoErrors(): Promise<void> {
    assert.deepEqual(await this.errors(), [], `[${this.label}] the page shows no error`);
    assert.deepEqual(this.problems, [], `[${this.label}] no external request, no page error`);
  }

  /** Decoded video on the page's peer connection `peer`. */
  video(peer: string): Promise<{ framesDecoded: number; width: number; height: number; state: string }> {
    return this.page.evaluate(async (name) => {
      const pc = window.demo.peers[name];
      if (!pc) return { framesDecoded: 0, width: 0, height: 0, state: 'none' };
      let framesDecoded = 0; let width = 0; let height = 0;
      (await pc.getStats()).forEach((r: any) => {
        if (r.type === 'inbound-rtp' && r.kind === 'video') {
          framesDecoded += r.framesDecoded ?? 0;
          width = Math.max(width, r.frameWidth ?? 0);
          height = Math.max(height, r.frameHeight ?? 0);
        }
      });
      return { framesDecoded, width, height, state: pc.connectionState };
    }, peer);
  }

  /** Waits until `peer` has decoded `frames` more video frames (with a width in `width` if given). */
  async decodes(peer: string, what: string, frames = 15, width?: [number, number], ms = 15000): Promise<{ framesDecoded: number; width: number; height: number }> {
    const start = (await this.video(peer)).framesDecoded;
    let last = { framesDecoded: start, width: 0, height: 0, state: '' };
    try {
      return await eventually(async () => {
        last = await this.video(peer);
        return last.framesDecoded >= start + frames && last.width > 0 && (!width || (last.width >= width[0] && last.width <= width[1])) ? last : undefined;
      }, ms, `[${this.label}] ${what}`);
    } catch (err) {
      const errors = await this.errors().catch(() => []);
      throw new Error(`${(err as Error).message} (frames ${start} → ${last.framesDecoded}, ${last.width}x${last.height}, ${last.state}; page errors ${JSON.stringify(errors)}; log ${this.logs.slice(-10).join(' | ')})`);
    }
  }

  text(selector: string): Promise<string> { return this.page.locator(selector).innerText(); }

  async screenshot(name: string): Promise<void> {
    mkdirSync(IMAGES, { recursive: true });
    await this.page.screenshot({ path: join(IMAGES, `demo-${name}.png`), fullPage: true });
  }

  async close(): Promise<void> { await this.context.close(); }
}

const sessionsOf = async (user: string) => (await suite.admin.listSessions()).filter((s) => s.user_id === user);

/** The user's first listed session: checks its type and that the page's status element (`statusSelector`) names it; returns its id. */
async function pageSession(p: DemoPage, user: string, type: string, statusSelector: string): Promise<string> {
  const [s] = await sessionsOf(user);
  assert.equal(s?.type, type);
  const id = s!.session_id;
  assert.equal(await p.page.getAttribute(statusSelector, 'data-session-id'), id);
  return id;
}

/** `seconds` of VP8 test pattern (320×240, a keyframe a second) and an Opus tone, made by ffmpeg. */
function makeClip(path: string, seconds: number): void {
  execFileSync('ffmpeg', ['-v', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=25', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
    '-t', String(seconds), '-c:v', 'libvpx', '-deadline', 'realtime', '-cpu-used', '8', '-b:v', '300k', '-g', '25', '-c:a', 'libopus', '-shortest', path]);
}

/** Serves one file over HTTP on 127.0.0.1 with byte ranges (so the server's player can seek in it). */
async function serveFile(path: string, type: string): Promise<{ url: string; close(): Promise<void> }> {
  const body = readFileSync(path);
  const http = createServer((req, res) => {
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    const head = { 'content-type': type, 'accept-ranges': 'bytes' };
    if (!m) { res.writeHead(200, { ...head, 'content-length': body.length }); res.end(req.method === 'HEAD' ? undefined : body); return; }
    const start = Number(m[1]);
    const end = m[2] ? Math.min(Number(m[2]), body.length - 1) : body.length - 1;
    if (start > end) { res.writeHead(416, { 'content-range': `bytes */${body.length}` }); res.end(); return; }
    res.writeHead(206, { ...head, 'content-range': `bytes ${start}-${end}/${body.length}`, 'content-length': end - start + 1 });
    res.end(req.method === 'HEAD' ? undefined : body.subarray(start, end + 1));
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const name = path.split('/').pop()!;
  return {
    url: `http://127.0.0.1:${(http.address() as AddressInfo).port}/${name}`,
    close: () => new Promise<void>((r) => { http.closeAllConnections(); http.close(() => r()); }),
  };
}

describe('demo pages', { timeout: 120000 }, () => {
  it('serves the index and the pages from the server, with no outside resource', async () => {
    const index = await DemoPage.open('', 'index');
    const links = await index.page.locator('#pages a').evaluateAll((as) => as.map((a) => (a as HTMLAnchorElement).getAttribute('href')));
    assert.ok(links.includes('echo.html'), `the index links the pages: ${links.join(', ')}`);
    for (const l of links) {
      const res = await fetch(`${origin}/demo/${l}`);
      assert.equal(res.status, 200, `GET /demo/${l}`);
      assert.match(res.headers.get('content-security-policy') ?? '', /default-src 'self'/);
    }
    assert.equal((await fetch(`${origin}/demo/../package.json`)).status, 404);
    assert.equal((await fetch(`${origin}/demo/nothing.js`)).status, 404);
    const redirect = await fetch(`${origin}/demo`, { redirect: 'manual' });
    assert.equal(redirect.status, 301);
    await index.screenshot('index');
    await index.assertNoErrors();
    await index.close();
  });

  it('echo: trickle and buffered ICE, mutes, bitrate limit, recording and its link', async () => {
    const p = await DemoPage.open('echo.html', 'echo');
    // A refused login shows its error clearly (here: no user name).
    await p.page.fill('#user', '');
    await p.page.click('#connect');
    await p.page.waitForSelector('#errors .error');
    assert.match((await p.errors()).join('\n'), /^Login: .*user/i);
    await p.page.click('#errors .error button');
    await p.page.evaluate(() => { window.demo.errors.length = 0; });
    await p.login('eve');
    await p.page.click('#start');
    await p.decodes('echo', 'decodes its own echo (trickle ICE)');
    const id = await pageSession(p, 'eve', 'echo', '#session-status');

    // Mutes and the bitrate limit reach the session (update_media).
    await p.page.click('#mute-video');
    await eventually(async () => (await suite.admin.getInfo(id)).mute_video === true, 5000, 'mute_video on the server');
    await p.page.waitForFunction(() => document.getElementById('mute-video')?.textContent === 'Unmute video');
    await p.page.waitForFunction(() => !(document.getElementById('mute-audio') as HTMLButtonElement).disabled);
    await p.page.click('#mute-audio');
    await eventually(async () => (await suite.admin.getInfo(id)).mute_audio === true, 5000, 'mute_audio on the server');
    await p.page.waitForFunction(() => document.getElementById('mute-audio')?.textContent === 'Unmute audio');
    await p.page.click('#mute-video');
    await p.page.click('#mute-audio');
    await eventually(async () => { const i = await suite.admin.getInfo(id); return i.mute_video === false && i.mute_audio === false; }, 5000, 'unmuted');
    await p.decodes('echo', 'decodes again after unmuting video');
    // The server's REMB reaches Chromium: its video encoder aims at 100 kbps or less.
    const target = () => p.page.evaluate(async () => {
      let t = 0;
      (await window.demo.peers.echo!.getStats()).forEach((r: any) => { if (r.type === 'outbound-rtp' && r.kind === 'video') t += r.targetBitrate ?? 0; });
      return t;
    });
    await p.page.fill('#bitrate', '100');
    await p.page.click('#apply-bitrate');
    await eventually(async () => (await suite.admin.getInfo(id)).bitrate === 100000, 5000, 'bitrate on the server');
    await eventually(async () => { const t = await target(); return t > 0 && t <= 100000; }, 10000, 'the browser\'s video target bitrate at or below the limit');

    // Record a few seconds' worth of frames, stop, and play the recording from its link.
    await p.page.click('#record');
    await p.page.waitForFunction(() => document.getElementById('record')?.textContent === 'Stop recording');
    await p.decodes('echo', 'decodes while recording', 50);
    await p.page.click('#record');
    await p.page.waitForFunction(() => /^saved /.test(document.getElementById('record-status')?.textContent ?? ''), undefined, { timeout: 10000 });
    const name = await p.page.locator('#recordings li[data-name]').first().getAttribute('data-name');
    assert.match(name ?? '', new RegExp(`^${id}_p0000\\.webm$`));
    await p.page.locator('#recordings li[data-name] button.play').first().click();
    await p.page.waitForFunction(() => {
      const v = document.getElementById('playback') as HTMLVideoElement;
      return v.readyState >= 2 && v.videoWidth > 0 && v.duration > 0;
    }, undefined, { timeout: 10000 });
    // The download link works with the same credentials (fetched, then saved from a blob).
    // The file saved is the recording, byte for byte.
    const download = p.page.waitForEvent('download');
    await p.page.locator('#recordings a.recording').first().click();
    const saved = await download;
    assert.equal(saved.suggestedFilename(), name);
    const bytes = readFileSync((await saved.path())!);
    const folder = readdirSync(join(dir, 'recordings')).find((f) => f.startsWith('eve-'))!;
    assert.equal(bytes.readUInt32BE(0), 0x1a45dfa3, 'the download is a WEBM (EBML) file');
    assert.ok(bytes.equals(readFileSync(join(dir, 'recordings', folder, name!))), `the download is ${name} as the server has it (${bytes.length} bytes)`);

    // Stop; start again with buffered ICE (complete SDPs both ways).
    await p.page.click('#stop');
    await eventually(async () => (await sessionsOf('eve')).length === 0, 5000, 'the session gone');
    await p.page.selectOption('#ice', 'buffered');
    await p.page.fill('#bitrate', '0'); // the next session starts with no limit
    await p.page.click('#start');
    await p.decodes('echo', 'decodes its own echo (buffered ICE)');
    const [s2] = await sessionsOf('eve');
    const info = await suite.admin.getInfo(s2!.session_id);
    assert.equal(info.no_answer_trickle_ice, true);
    assert.equal(info.offer.trickle_ice, false);
    assert.equal(info.answer.trickle_ice, false);
    assert.ok(!info.bitrate, 'no bitrate limit on the new session');
    await p.decodes('echo', 'decodes before the screenshot', 25);
    await p.screenshot('echo');
    await p.assertNoErrors();
    await p.page.click('#stop');
    await eventually(async () => (await sessionsOf('eve')).length === 0, 5000, 'the session gone');
    await p.close();
  });

  it('console: sessions and rooms appear and disappear live, with bitrates; destroy from the console', async () => {
    const con = await DemoPage.open('console.html', 'console');
    assert.equal(await con.page.inputValue('#user'), 'admin', 'the console logs in as admin by default');
    await con.login('admin');
    const echo = await DemoPage.open('echo.html', 'echo for the console');
    await echo.login('frank');
    await echo.page.click('#start');
    await echo.decodes('echo', 'the echo decodes');
    const [s1] = await sessionsOf('frank');
    const row = (id: string) => con.page.locator(`#sessions tr[data-id="${id}"]`);
    await row(s1!.session_id).waitFor();
    // Type, state, owner and bitrates (what the browser sends and gets back, both > 0).
    await eventually(async () => {
      const cells = await row(s1!.session_id).locator('td').allInnerTexts();
      return cells[1] === 'echo' && /connected/.test(cells[2] ?? '') && cells[3] === 'frank' && Number(cells[4]) > 0 && Number(cells[5]) > 0;
    }, 10000, 'the session row with type, state, owner and bitrates');

    // A room (made here through the API; the room page has its own test) shows up too.
    await suite.admin.request('media', 'room', 'create', { class: 'sfu', room_id: 'console-room' });
    const roomRow = con.page.locator('#rooms tr[data-id="console-room"]');
    await roomRow.waitFor();
    assert.equal((await roomRow.locator('td').allInnerTexts())[2], 'admin');

    // The media nodes (admins only): each node the server lists, up, with its kind; the echo's
    // endpoint counted on one of them (one `local` node in-process, worker-N with workers).
    const nodeList = await suite.admin.request<{ node_id: string; kind: string }[]>('media', 'node', 'get_list');
    assert.ok(nodeList.length > 0, 'the server lists its media nodes');
    const nodeRows = con.page.locator('#nodes tbody tr[data-id]');
    await eventually(async () => {
      const rows = await nodeRows.evaluateAll((trs) => trs.map((tr) => Array.from(tr.querySelectorAll('td'), (td) => td.textContent ?? '')));
      const ok = nodeList.every((n) => rows.some((c) => c[0] === n.node_id && c[1] === n.kind && c[3] === 'up'));
      return ok && rows.length === nodeList.length && rows.reduce((t, c) => t + Number(c[5]), 0) >= 1;
    }, 10000, `the nodes table lists ${nodeList.map((n) => `${n.node_id} (${n.kind})`).join(', ')}, up, with the echo's endpoint`);
    assert.equal(await con.text('#node-count'), `(${nodeList.length})`);
    assert.equal(await con.page.isHidden('#node-note'), true, 'no "admins only" note for an admin');
    await con.screenshot('console');
    // Anyone else gets a short note instead of the table.
    const user = await DemoPage.open('console.html', 'console (not admin)');
    await user.login('gina');
    await user.page.locator('#node-note').waitFor({ state: 'visible' });
    assert.match(await user.text('#node-note'), /^Admins only/);
    assert.equal(await user.page.isHidden('#nodes'), true, 'no node table for a non-admin');
    await user.assertNoErrors();
    await user.close();

    // Stopped on its page: the row goes.
    await echo.page.click('#stop');
    await row(s1!.session_id).waitFor({ state: 'detached' });

    // Destroyed from the console: the row goes and the echo page says why its session ended.
    await echo.page.click('#start');
    await echo.decodes('echo', 'the second echo decodes');
    const [s2] = await sessionsOf('frank');
    await row(s2!.session_id).waitFor();
    await row(s2!.session_id).locator('button').click();
    await row(s2!.session_id).waitFor({ state: 'detached' });
    await eventually(async () => (await echo.errors()).some((e) => /User stop \(100011\)/.test(e)), 5000, 'the echo page shows the session ended');
    assert.equal((await sessionsOf('frank')).length, 0);
    assert.match(await echo.text('#session-status'), /ended: User stop/);

    await roomRow.locator('button').click();
    await roomRow.waitFor({ state: 'detached' });
    assert.ok(!(await suite.admin.request('media', 'room', 'get_list')).some((r: { room_id: string }) => r.room_id === 'console-room'));
    await con.assertNoErrors();
    assert.deepEqual(echo.problems, []);
    await echo.close();
    // The console stays open: the later tests check it shows their rooms and calls.
    consolePage = con;
  });

  it('room: publish with simulcast, listen to any publisher, pick a layer, members come and go', async () => {
    const a = await DemoPage.open('room.html', 'room alice');
    await a.login('alice');
    await a.page.click('#enter');
    await a.page.waitForFunction(() => document.getElementById('room-status')?.textContent === 'in room demo-room');
    await a.page.click('#publish');
    await a.page.waitForFunction(() => /^publishing \(simulcast\)/.test(document.getElementById('publish-status')?.textContent ?? ''), undefined, { timeout: 15000 });
    const alicePub = (await sessionsOf('alice')).find((x) => x.type === 'publish')!.session_id;
    // Chromium sends three layers of growing size.
    await eventually(async () => {
      const rids = await a.page.evaluate(async () => {
        const out: Record<string, number> = {};
        (await window.demo.peers.publish!.getStats()).forEach((r: any) => { if (r.type === 'outbound-rtp' && r.kind === 'video' && r.rid && r.framesEncoded > 5) out[r.rid] = r.frameWidth; });
        return out;
      });
      return rids.l! > 0 && rids.l! < rids.m! && rids.m! < rids.h!;
    }, 15000, 'three simulcast layers sent');

    // Bob enters: Alice's publisher is listed; he listens and decodes her, then picks layers.
    const b = await DemoPage.open('room.html', 'room bob');
    await b.login('bob');
    await b.page.click('#enter');
    const listenAlice = b.page.locator(`#members tr[data-id="${alicePub}"] button.listen`);
    await listenAlice.click();
    const card = b.page.locator(`figure.listener[data-publisher="${alicePub}"]`);
    await card.waitFor();
    const peer = (await card.getAttribute('data-peer'))!;
    const high = await b.decodes(peer, 'bob decodes alice (high layer)', 15, [300, 100000]);
    await card.locator('select.layer').selectOption('low');
    const low = await b.decodes(peer, 'bob decodes alice\'s low layer', 10, [1, Math.floor(high.width / 2)]);
    await card.locator('select.layer').selectOption('high');
    await b.decodes(peer, 'bob decodes alice\'s high layer again', 10, [low.width + 1, 100000]);
    assert.equal((await suite.admin.getInfo((await card.getAttribute('data-session-id'))!)).video_layer ?? 'high', 'high');

    // Bob publishes too: Alice sees him come and listens to him.
    await b.page.click('#publish');
    const listenBob = a.page.locator('#members tr[data-role="publisher"][data-user="bob"] button.listen');
    await listenBob.click();
    const bobPub = (await sessionsOf('bob')).find((x) => x.type === 'publish')!.session_id;
    const aliceCard = a.page.locator(`figure.listener[data-publisher="${bobPub}"]`);
    await aliceCard.waitFor();
    await a.decodes((await aliceCard.getAttribute('data-peer'))!, 'alice decodes bob');
    assert.equal(await a.page.locator('#members tbody tr').count(), 4, 'two publishers and two listeners');
    if (consolePage) {
      const roomRow = consolePage.page.locator('#rooms tr[data-id="demo-room"]');
      await eventually(async () => { const c = await roomRow.locator('td').allInnerTexts(); return c[3] === '2' && c[4] === '2'; }, 5000, 'the console shows the room with 2 publishers, 2 listeners');
    }
    await b.decodes(peer, 'bob still decodes alice', 10);
    await a.screenshot('room');

    // Bob stops publishing: Alice's listening to him ends and he leaves her member list.
    await b.page.click('#unpublish');
    await aliceCard.waitFor({ state: 'detached' });
    await a.page.locator(`#members tr[data-id="${bobPub}"]`).waitFor({ state: 'detached' });
    assert.match(await a.text('#member-log'), /stopped listening to bob: they stopped publishing/);
    await a.assertNoErrors();
    await b.assertNoErrors();
    await b.page.click('#leave');
    await a.page.click('#leave');
    await eventually(async () => (await sessionsOf('alice')).length + (await sessionsOf('bob')).length === 0, 5000, 'every room session gone');
    await a.close();
    await b.close();
  });

  it('call: call a user by name, accept, switch to echo and back, hang up; reject; unknown user', async () => {
    const a = await DemoPage.open('call.html', 'call alice');
    const b = await DemoPage.open('call.html', 'call bob');
    await a.login('anna');
    await b.login('ben');

    // Nobody by that name: a clear error, nothing left behind.
    await a.page.fill('#callee', 'nobody-here');
    await a.page.click('#call');
    await eventually(async () => (await a.errors()).some((e) => /^Call: .*nobody-here/.test(e)), 5000, 'the page shows who is not connected');
    await a.page.click('#errors .error button');
    await a.page.evaluate(() => { window.demo.errors.length = 0; });
    assert.equal((await sessionsOf('anna')).length, 0);

    // Anna calls Ben; Ben accepts; each decodes the other.
    await a.page.fill('#callee', 'ben');
    await a.page.click('#call');
    const invite = b.page.locator('#incoming .invite[data-from="anna"]');
    await invite.waitFor();
    await eventually(async () => /ringing ben/.test(await a.text('#call-status')), 5000, 'the caller hears it ringing');
    await invite.locator('button.accept').click();
    await a.page.waitForFunction(() => document.getElementById('call-status')?.textContent === 'in a call with ben', undefined, { timeout: 10000 });
    // Each page sets its status on its own reply or event: either may come first.
    const status = (d: DemoPage, text: string) => d.page.waitForFunction((t) => document.getElementById('call-status')?.textContent === t, text, { timeout: 5000 });
    await status(b, 'in a call with anna');
    await a.decodes('call', 'anna decodes ben');
    await b.decodes('call', 'ben decodes anna');
    const callId = (await a.page.getAttribute('#call-status', 'data-call-id'))!;
    const annaSession = (await a.page.getAttribute('#call-status', 'data-session-id'))!;
    const benSession = (await b.page.getAttribute('#call-status', 'data-session-id'))!;
    assert.equal((await suite.admin.getInfo(annaSession)).type, 'bridge');
    if (consolePage) {
      const row = consolePage.page.locator(`#calls tr[data-id="${callId}"]`);
      await eventually(async () => (await row.locator('td').allInnerTexts())[2] === 'answered', 5000, 'the console shows the answered call');
    }

    // Ben switches to echo (Anna is parked meanwhile) and back to the call.
    assert.equal(await a.page.isDisabled('#echo'), true, 'the caller cannot switch (it would end the callee\'s leg)');
    await b.page.click('#echo');
    await b.page.waitForFunction(() => document.getElementById('echo')?.textContent === 'Back to the call', undefined, { timeout: 5000 });
    assert.equal((await suite.admin.getInfo(benSession)).type, 'echo');
    assert.equal((await suite.admin.getInfo(annaSession)).type, 'park');
    await b.decodes('call', 'ben decodes his own echo');
    await b.page.click('#echo');
    await b.page.waitForFunction(() => document.getElementById('echo')?.textContent === 'Switch to echo', undefined, { timeout: 5000 });
    assert.equal((await suite.admin.getInfo(benSession)).type, 'bridge');
    assert.equal((await suite.admin.getInfo(annaSession)).type, 'bridge');
    await a.decodes('call', 'anna decodes ben again');
    await b.decodes('call', 'ben decodes anna again');
    await b.screenshot('call');

    // Anna hangs up: both pages say so, every session of the call is gone.
    await a.page.click('#hangup');
    await b.page.waitForFunction(() => /^call ended: API hangup/.test(document.getElementById('call-status')?.textContent ?? ''), undefined, { timeout: 5000 });
    await status(a, 'you hung up');
    await eventually(async () => (await sessionsOf('anna')).length + (await sessionsOf('ben')).length === 0, 5000, 'the call\'s sessions gone');

    // Anna calls again; Ben rejects.
    await a.page.click('#call');
    await invite.waitFor();
    await invite.locator('button.reject').click();
    await a.page.waitForFunction(() => /^call ended: Call rejected/.test(document.getElementById('call-status')?.textContent ?? ''), undefined, { timeout: 5000 });
    await status(b, 'you rejected anna');
    await a.assertNoErrors();
    await b.assertNoErrors();
    await a.close();
    await b.close();
  });

  it('player: a server file (default name), a bad one, pause/resume, seek on the bar, an http URL to its end', async () => {
    makeClip(join(dir, 'media', 'clip.webm'), 30);
    mkdirSync(join(dir, 'web'));
    makeClip(join(dir, 'web', 'short.webm'), 4);
    const web = await serveFile(join(dir, 'web', 'short.webm'), 'video/webm');
    try {
      const p = await DemoPage.open('player.html', 'player');
      assert.equal(await p.page.inputValue('#uri'), 'clip.webm', 'the field offers clip.webm (in the media folder) by default');
      await p.login('paula');

      // A file that is not there: a clear error naming it, no session left behind.
      await p.page.fill('#uri', 'missing.webm');
      await p.page.click('#play');
      await eventually(async () => (await p.errors()).some((e) => /^Play: missing\.webm: cannot be opened .*Invalid Uri/.test(e)), 5000, 'the page says missing.webm cannot be opened');
      assert.match(await p.text('#errors'), /missing\.webm/);
      await p.page.click('#errors .error button');
      await p.page.evaluate(() => { window.demo.errors.length = 0; });
      assert.equal((await sessionsOf('paula')).length, 0);

      // The 30 s clip: frames decode, the bar knows the duration, the console lists the session.
      await p.page.fill('#uri', 'clip.webm');
      await p.page.click('#play');
      await p.decodes('play', 'decodes the file');
      const id = await pageSession(p, 'paula', 'play', '#player-status');
      await p.page.waitForFunction(() => Math.abs(Number(document.getElementById('time')?.dataset.duration) - 30000) < 500, undefined, { timeout: 5000 });
      assert.match(await p.text('#time'), /^0:\d\d \/ 0:30$/);
      assert.equal(await p.page.isDisabled('#position'), false, 'the bar can seek');
      if (consolePage) {
        const row = consolePage.page.locator(`#sessions tr[data-id="${id}"]`);
        await eventually(async () => { const c = await row.locator('td').allInnerTexts(); return c[1] === 'play' && c[3] === 'paula'; }, 5000, 'the console lists the play session');
      }
      const position = async () => Number((await suite.admin.session<{ position: number }>('player_action', { session_id: id, action: 'get_position' })).position);
      // Frames no longer decoded: two reads a second apart agree (retried until they do).
      const stalls = (what: string) => eventually(async () => {
        const a = (await p.video('play')).framesDecoded;
        await sleep(1000);
        return (await p.video('play')).framesDecoded === a;
      }, 10000, what);

      // Pause: the pictures stop and so does the position; resume: they come back.
      await p.page.click('#pause');
      await p.page.waitForFunction(() => document.getElementById('player-status')?.dataset.state === 'paused' && document.getElementById('pause')?.textContent === 'Resume', undefined, { timeout: 5000 });
      await stalls('no frame decoded while paused');
      const pausedAt = await position();
      await sleep(500);
      assert.equal(await position(), pausedAt, 'the position holds while paused');
      await p.page.click('#pause');
      await p.page.waitForFunction(() => document.getElementById('player-status')?.dataset.state === 'playing' && document.getElementById('pause')?.textContent === 'Pause', undefined, { timeout: 5000 });
      await p.decodes('play', 'decodes again after resuming');
      await eventually(async () => (await position()) > pausedAt, 5000, 'the position moves on after resuming');

      // Seek with the position bar: the server's position and the page's time jump there.
      const before = await position();
      assert.ok(before < 20000, `the clip has not reached 0:20 yet (at ${before} ms)`);
      await p.page.locator('#position').fill('20000');
      await eventually(async () => (await position()) >= 20000, 5000, 'the server plays from 0:20');
      await p.page.waitForFunction(() => Number(document.getElementById('time')?.dataset.position) >= 20000, undefined, { timeout: 5000 });
      assert.match(await p.text('#time'), /^0:2\d \/ 0:30$/);
      await p.decodes('play', 'decodes after the seek', 15);
      await p.screenshot('player');

      // An http(s) URL on the same session (player_action start, no new session): played to its end.
      await p.page.fill('#uri', web.url);
      await p.page.click('#play');
      await p.page.waitForFunction(() => Math.abs(Number(document.getElementById('time')?.dataset.duration) - 4000) < 500, undefined, { timeout: 10000 });
      assert.equal((await sessionsOf('paula')).map((x) => x.session_id).join(), id, 'the same session plays the URL');
      assert.equal((await suite.admin.getInfo(id)).type_ext.uri, web.url);
      await p.decodes('play', 'decodes the URL');
      await p.page.waitForFunction(() => document.getElementById('player-status')?.dataset.state === 'eos', undefined, { timeout: 15000 });
      assert.equal(await p.text('#player-status'), 'finished short.webm');
      await stalls('no frame decoded after the end');
      assert.equal(await p.page.isDisabled('#pause'), true);

      // Stop: the session goes, here and on the console.
      await p.page.click('#stop');
      await eventually(async () => (await sessionsOf('paula')).length === 0, 5000, 'the session gone');
      if (consolePage) await consolePage.page.locator(`#sessions tr[data-id="${id}"]`).waitFor({ state: 'detached' });
      await p.page.waitForFunction(() => document.getElementById('player-status')?.textContent === 'no player', undefined, { timeout: 5000 });
      await p.assertNoErrors();
      await p.close();
    } finally {
      await web.close();
    }
  });
});
