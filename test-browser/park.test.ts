// Parked sessions from real Chromium: both SDP roles, with trickle ICE both ways and without
// trickling. The browser's peer connection comes up on the namespace's interface, the server
// receives the fake camera's video and the fake microphone's audio (its get_stats keeps
// growing), and the browser receives and decodes nothing, because park sends nothing.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startBrowserSuite, eventually, sleep, NETNS_ADDR, type BrowserSuite, type TestPage } from './harness.js';
import type { StartOptions } from './page/api.js';

let suite: BrowserSuite;
before(async () => { suite = await startBrowserSuite(); });
after(async () => { await suite?.close(); });

async function serverStats(id: string) {
  return (await suite.admin.getStats(id)).stats;
}

async function parkAndCheck(page: TestPage, opts: StartOptions, shot: string): Promise<void> {
  await page.connect('alice');
  const id = await page.startSession(opts);
  await page.waitConnected(id);

  // The server gets the browser's media, and keeps getting it.
  const first = await eventually(async () => {
    const s = await serverStats(id);
    return s.inbound.audio.packets >= 20 && s.inbound.video.packets >= 20 ? s : undefined;
  }, 10000, 'the server to receive audio and video from Chromium');
  assert.equal(first.connection_state, 'connected');
  await sleep(1000);
  const second = await serverStats(id);
  assert.ok(second.inbound.audio.packets > first.inbound.audio.packets + 10, `audio keeps coming (${first.inbound.audio.packets} → ${second.inbound.audio.packets})`);
  assert.ok(second.inbound.video.packets > first.inbound.video.packets + 10, `video keeps coming (${first.inbound.video.packets} → ${second.inbound.video.packets})`);
  assert.ok(second.inbound.video.bytes > 10000, 'real video frames, not just padding');
  assert.equal(second.outbound.audio.packets + second.outbound.video.packets, 0, 'park sends nothing');

  // The browser's side agrees: it sends, decodes nothing, and ICE ran on the namespace address.
  const b = await page.stats(id);
  assert.equal(b.connectionState, 'connected');
  assert.ok(b.outbound.audio.packets > 0 && b.outbound.video.packets > 0, 'Chromium sends audio and video');
  assert.ok(b.outbound.video.framesEncoded > 0);
  assert.ok(b.bytesSent > 10000);
  assert.equal(b.inbound.video.framesDecoded, 0, 'a parked session sends no video to decode');
  assert.equal(b.inbound.audio.packets + b.inbound.video.packets, 0);
  assert.ok(b.selectedPair, 'a selected candidate pair');
  assert.equal(b.selectedPair.local.split(':')[0], NETNS_ADDR);
  assert.equal(b.selectedPair.remote.split(':')[0], NETNS_ADDR);

  // Candidates: real addresses (no mDNS names), and the server offers no loopback ones.
  const st = await page.state(id);
  assert.ok(st.localCandidates.some((c) => c.includes(` ${NETNS_ADDR} `)), `Chromium gathered ${NETNS_ADDR}: ${st.localCandidates.join(' | ')}`);
  assert.ok(!st.localCandidates.some((c) => c.includes('.local ')), 'no mDNS candidates');
  if (opts.trickle !== false) {
    assert.ok(st.remoteCandidates.length > 0, 'the server trickled candidates');
    assert.ok(st.remoteCandidates.every((c) => !c.includes(' 127.0.0.1 ')), 'no loopback candidates from the server');
  }

  // Session events seen by the page's own client.
  const events = await page.events(id);
  assert.equal(events[0]?.type, 'created');
  await eventually(async () => (await page.events(id)).some((e) => e.type === 'info' && e.body?.info === 'webrtc' && e.body.status === 'up'), 3000, 'webrtc up event');
  await eventually(async () => (await page.events(id)).some((e) => e.type === 'info' && e.body?.info === 'media' && e.body.direction === 'in' && e.body.media === 'video' && e.body.status === 'up'), 3000, 'media in video up event');
  const status = await page.command('get_status', { session_id: id });
  assert.equal(status.webrtc_ready, true);

  await page.screenshot(shot);

  await page.closeSession(id);
  await eventually(async () => (await suite.admin.listSessions()).every((s) => s.session_id !== id), 3000, 'the session to be gone');
  const destroyed = await eventually(async () => (await page.events(id)).find((e) => e.type === 'destroyed'), 3000, 'destroyed event');
  assert.equal(destroyed.body?.code, 100011, 'stopped by the user (user_stop)');
}

describe('park from Chromium', { timeout: 60000 }, () => {
  it('browser offers, trickle ICE both ways', async () => {
    const page = await suite.openPage('browser-offers');
    try { await parkAndCheck(page, { type: 'park' }, 'park-browser-offers-trickle'); } finally { await page.close(); }
  });

  it('server offers, trickle ICE both ways', async () => {
    const page = await suite.openPage('server-offers');
    try { await parkAndCheck(page, { type: 'park', offerer: 'server' }, 'park-server-offers-trickle'); } finally { await page.close(); }
  });

  it('browser offers, no trickle: complete SDPs both ways', async () => {
    const page = await suite.openPage('browser-offers-full');
    try { await parkAndCheck(page, { type: 'park', trickle: false }, 'park-browser-offers-no-trickle'); } finally { await page.close(); }
  });

  it('server offers, no trickle: complete SDPs both ways', async () => {
    const page = await suite.openPage('server-offers-full');
    try { await parkAndCheck(page, { type: 'park', offerer: 'server', trickle: false }, 'park-server-offers-no-trickle'); } finally { await page.close(); }
  });
});
