// Media through the server between real Chromium pages: echo (both SDP roles), a bridge
// between two pages, switching types on a live call (park → echo → bridge → park → echo) with
// no renegotiation, and mute_video on a bridged session.
//
// What "the page decodes video" means here: getStats' inbound-rtp video framesDecoded grows
// and frameWidth/frameHeight are > 0. To tell whose picture a page decodes, the two fake
// cameras are given different shapes: page A sends 4:3 (320×240), page B 16:9 (320×180). The
// shape is checked by aspect ratio (not exact size), so it survives Chromium scaling its
// encoder down under load. Audio: inbound-rtp audio packetsReceived grows (the fake
// microphone's beeps are Opus packets; nothing checks what they sound like).
//
// Switch times are measured inside the page (switchAndWatch): from just before the set_type
// request is sent until getStats first shows a newly decoded frame of the expected shape,
// polled every 20 ms (Chromium may cache getStats results for a few tens of ms). They are
// reported as test diagnostics and asserted only against a generous bound (RESUME_BOUND_MS).
import { after, before, describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { startBrowserSuite, eventually, sleep, type BrowserSuite, type TestPage } from './harness.js';
import type { FrameWatch, NegotiationRecord, PeerStats, StartOptions, SwitchResult } from './page/api.js';

/** Page A's camera: 4:3; page B's: 16:9. Both fit in one 320×240 capture, whichever opens first. */
const CAMERA_A = { width: { exact: 320 }, height: { exact: 240 } };
const CAMERA_B = { width: { exact: 320 }, height: { exact: 180 } };
const IS_4_3: [number, number] = [1.2, 1.45];
const IS_16_9: [number, number] = [1.6, 1.95];
/** Frames must resume within this after a switch (the target is 1 s; this bound only catches breakage). */
const RESUME_BOUND_MS = 5000;

let suite: BrowserSuite;
before(async () => { suite = await startBrowserSuite(); });
after(async () => { await suite?.close(); });

type Video = PeerStats['inbound']['video'];
const ratio = (v: { frameWidth: number; frameHeight: number }) => (v.frameHeight > 0 ? v.frameWidth / v.frameHeight : 0);
const shaped = (v: { frameWidth: number; frameHeight: number }, aspect: [number, number]) => ratio(v) >= aspect[0] && ratio(v) <= aspect[1];
const size = (v: { frameWidth: number; frameHeight: number }) => `${v.frameWidth}x${v.frameHeight}`;

/** Waits until `page` has decoded `frames` more video frames of the given shape; returns the last stats. */
async function decodes(page: TestPage, id: string, aspect: [number, number], what: string, frames = 15, ms = 8000): Promise<Video> {
  const start = (await page.stats(id)).inbound.video.framesDecoded;
  let last: Video | undefined;
  try {
    return await eventually(async () => {
      last = (await page.stats(id)).inbound.video;
      return last.framesDecoded >= start + frames && last.frameWidth > 0 && shaped(last, aspect) ? last : undefined;
    }, ms, what);
  } catch (err) {
    throw new Error(`${(err as Error).message} (framesDecoded ${start} → ${last?.framesDecoded}, size ${last && size(last)})`);
  }
}

/** Waits until `page` has received `packets` more audio packets. */
async function hearsAudio(page: TestPage, id: string, what: string, packets = 25, ms = 5000): Promise<void> {
  const start = (await page.stats(id)).inbound.audio.packets;
  await eventually(async () => (await page.stats(id)).inbound.audio.packets >= start + packets, ms, what);
}

/**
 * Frames decoded over `windowMs`, polled until that count is at most 1 (the decoder may still
 * finish a frame in flight) or `ms` passes; returns the last count.
 */
async function stopsDecoding(page: TestPage, id: string, what: string, windowMs = 800, ms = 5000): Promise<number> {
  const end = Date.now() + ms;
  for (;;) {
    const a = (await page.stats(id)).inbound.video.framesDecoded;
    await sleep(windowMs);
    const b = (await page.stats(id)).inbound.video.framesDecoded;
    if (b - a <= 1) return b - a;
    if (Date.now() > end) assert.fail(`${what}: still decoding (${b - a} frames in ${windowMs} ms)`);
  }
}

/** The parts of the negotiation record that must not change once the call is up. */
function negotiationKey(n: NegotiationRecord) {
  return {
    negotiationNeeded: n.negotiationNeeded, setLocalDescription: n.setLocalDescription, setRemoteDescription: n.setRemoteDescription,
    signalingStates: n.signalingStates.join(' → '), localSdp: n.localSdp, remoteSdp: n.remoteSdp,
  };
}

async function assertNoRenegotiation(page: TestPage, id: string, baseline: NegotiationRecord, when: string): Promise<void> {
  const st = await page.state(id);
  assert.equal(st.signalingState, 'stable', `${page.label} signalingState ${when}`);
  assert.deepEqual(negotiationKey(st.negotiation), negotiationKey(baseline), `${page.label}: no renegotiation ${when}`);
}

/** A watch from another page, timed from `t0` (Node's Date.now() just before the request). */
function sinceNode(r: FrameWatch, t0: number): FrameWatch {
  return r.resumeAtEpochMs === undefined ? r : { ...r, resumeMs: r.resumeAtEpochMs - t0 };
}

function report(t: TestContext, what: string, r: SwitchResult | FrameWatch): void {
  const reply = 'replyMs' in r ? `reply ${r.replyMs.toFixed(0)} ms, ` : '';
  const line = r.resumeMs === undefined
    ? `${what}: NO new frames within the bound (${reply}${r.polls} polls, size ${size(r)})`
    : `${what}: frames resumed after ${r.resumeMs.toFixed(0)} ms (${reply}frames ${r.framesBefore} → ${r.framesAtResume}, ${size(r)}, ${r.polls} polls)`;
  t.diagnostic(line);
  console.log(`[resume] ${line}`);
}

async function openConnected(label: string): Promise<TestPage> {
  const page = await suite.openPage(label);
  // One user for both pages: a session can bridge only with a session its user may see.
  await page.connect('alice');
  return page;
}

async function start(page: TestPage, opts: StartOptions): Promise<string> {
  const id = await page.startSession(opts);
  await page.waitConnected(id);
  return id;
}

describe('echo from Chromium', { timeout: 30000 }, () => {
  for (const offerer of ['browser', 'server'] as const) {
    it(`${offerer} offers: the page decodes its own video, hears its audio, gets its data back`, async () => {
      const page = await openConnected(`echo-${offerer}`);
      try {
        const id = await start(page, { type: 'echo', offerer, data: offerer === 'browser', video: CAMERA_A });
        const v = await decodes(page, id, IS_4_3, 'echoed video decoded');
        assert.ok(v.frameWidth > 0 && v.frameHeight > 0, `decoded size ${size(v)}`);
        await hearsAudio(page, id, 'echoed audio received');

        await eventually(async () => (await page.state(id)).dataChannelState === 'open', 5000, 'data channel open');
        await page.sendData(`hello echo ${offerer}`);
        await eventually(async () => (await page.state(id)).messages.includes(`hello echo ${offerer}`), 5000, 'data message echoed');

        // The server's counters agree: it sent back what it received.
        const { stats } = await suite.admin.getStats(id);
        assert.ok(stats.outbound.video.packets > 20 && stats.outbound.audio.packets > 20, `server sent media: ${JSON.stringify(stats.outbound)}`);
        assert.ok(stats.outbound.data.packets >= 1, 'server sent the data message back');

        const b = await page.stats(id);
        note(`echo (${offerer} offers): decoded ${b.inbound.video.framesDecoded} frames at ${size(b.inbound.video)}, ${b.inbound.audio.packets} audio packets`);
        await page.screenshot(`echo-${offerer}-offers`);
        await page.closeSession(id);
      } finally { await page.close(); }
    });
  }
});

describe('bridge between two Chromium pages', { timeout: 30000 }, () => {
  it('A parks, B bridges to A (master A): each decodes the other\'s video and hears the other\'s audio', async () => {
    const a = await openConnected('bridge-A');
    const b = await openConnected('bridge-B');
    try {
      const ida = await start(a, { type: 'park', data: true, video: CAMERA_A });
      const idb = await start(b, { type: 'bridge', peer_id: ida, master_id: ida, offerer: 'server', video: CAMERA_B });

      // Whose picture: A sends 4:3 and must decode 16:9 (B's); B the other way round.
      const va = await decodes(a, ida, IS_16_9, 'A decodes B\'s 16:9 video');
      const vb = await decodes(b, idb, IS_4_3, 'B decodes A\'s 4:3 video');
      note(`bridge: A decodes ${size(va)} (${va.framesDecoded} frames), B decodes ${size(vb)} (${vb.framesDecoded} frames)`);
      await hearsAudio(a, ida, 'A hears B');
      await hearsAudio(b, idb, 'B hears A');

      // Both sides became a bridge naming the other; A is B's master.
      const infoA = await suite.admin.getInfo(ida);
      const infoB = await suite.admin.getInfo(idb);
      assert.equal(infoA.type, 'bridge');
      assert.deepEqual(infoA.type_ext, { peer_id: idb });
      assert.deepEqual(infoB.type_ext, { peer_id: ida });
      assert.equal(infoB.master_id, ida);
      assert.equal(infoA.slave_id, idb);
      await eventually(async () => (await a.events(ida)).some((e) => e.type === 'type' && e.body?.type === 'bridge' && e.body.peer_id === idb), 3000, 'A told it is bridged to B');

      // Data across the bridge: A's channel (browser-made) to B's (server-made).
      await eventually(async () => (await a.state(ida)).dataChannelState === 'open' && (await b.state(idb)).dataChannelState === 'open', 5000, 'both data channels open');
      await a.sendData('from A');
      await eventually(async () => (await b.state(idb)).messages.includes('from A'), 5000, 'A\'s message reaches B');

      await a.screenshot('bridge-A');
      await b.screenshot('bridge-B');

      // The master goes: B stops with it (stop_after_peer defaults to true).
      await a.closeSession(ida);
      const destroyed = await eventually(async () => (await b.events(idb)).find((e) => e.type === 'destroyed'), 5000, 'B destroyed with A');
      assert.ok([300020, 300021].includes(destroyed.body?.code as number), `B stopped by its peer: ${JSON.stringify(destroyed.body)}`);
    } finally {
      await a.close();
      await b.close();
    }
  });
});

describe('set_type on a live call from Chromium', { timeout: 30000 }, () => {
  it('park → echo → bridge → park → echo: frames resume after each switch, stop in park, no renegotiation', async (t) => {
    const a = await openConnected('switch-A');
    const b = await openConnected('switch-B');
    try {
      const ida = await start(a, { type: 'park', video: CAMERA_A });
      // B survives A leaving the bridge (it parks instead of stopping).
      const idb = await start(b, { type: 'park', offerer: 'server', stop_after_peer: false, video: CAMERA_B });
      // Both are sending (the server receives their video) and, parked, decode nothing.
      for (const id of [ida, idb]) {
        await eventually(async () => (await suite.admin.getStats(id)).stats.inbound.video.packets > 20, 8000, `server receives ${id}`);
      }
      assert.equal((await a.stats(ida)).inbound.video.framesDecoded, 0, 'A parked: nothing decoded');
      assert.equal((await b.stats(idb)).inbound.video.framesDecoded, 0, 'B parked: nothing decoded');
      const negA = (await a.state(ida)).negotiation;
      const negB = (await b.state(idb)).negotiation;
      assert.equal((await a.state(ida)).signalingState, 'stable');
      const resumes: Record<string, number> = {};
      const check = (what: string, r: SwitchResult | FrameWatch) => {
        report(t, what, r);
        assert.ok(r.resumeMs !== undefined, `${what}: decoded frames of the expected shape resume (got ${size(r)})`);
        assert.ok(r.resumeMs < RESUME_BOUND_MS + 1000);
        resumes[what] = Math.round(r.resumeMs);
      };

      // park → echo: A decodes its own 4:3 picture.
      const toEcho = await a.switchAndWatch(ida, 'set_type', { type: 'echo' }, { aspect: IS_4_3, timeoutMs: RESUME_BOUND_MS });
      check('A park → echo', toEcho);
      assert.deepEqual(toEcho.reply, {});
      await decodes(a, ida, IS_4_3, 'A keeps decoding its echo', 10);
      await assertNoRenegotiation(a, ida, negA, 'after park → echo');

      // echo → bridge with B: A's decoded picture turns 16:9 (B's camera); B decodes A's 4:3.
      // B's watch runs in B's page from before A's request, counting from B's 0 frames; its time
      // is taken on the wall clock against Node's just before A's request.
      const watchB = b.watchFrames(idb, { aspect: IS_4_3, timeoutMs: RESUME_BOUND_MS + 1000, baselineFrames: 0 });
      const tBridge = Date.now();
      const toBridge = await a.switchAndWatch(ida, 'set_type', { type: 'bridge', peer_id: idb }, { aspect: IS_16_9, timeoutMs: RESUME_BOUND_MS });
      check('A echo → bridge (B\'s 16:9 picture)', toBridge);
      check('B park → bridged by A (A\'s 4:3 picture)', sinceNode(await watchB, tBridge));
      assert.deepEqual(toBridge.reply, { peer_id: idb });
      await decodes(a, ida, IS_16_9, 'A keeps decoding B', 10);
      await decodes(b, idb, IS_4_3, 'B keeps decoding A', 10);
      await hearsAudio(a, ida, 'A hears B');
      await a.screenshot('switch-A-bridged');
      await assertNoRenegotiation(a, ida, negA, 'after echo → bridge');
      await assertNoRenegotiation(b, idb, negB, 'after being bridged');

      // bridge → park: A stops decoding; B (stop_after_peer:false) is parked too and stops.
      assert.deepEqual(await a.command('set_type', { session_id: ida, type: 'park' }), {});
      const stillA = await stopsDecoding(a, ida, 'A parked');
      const stillB = await stopsDecoding(b, idb, 'B parked when A left the bridge');
      t.diagnostic(`parked: A decoded ${stillA}, B ${stillB} frame(s) in an 800 ms window`);
      assert.equal((await suite.admin.getInfo(idb)).type, 'park');
      const lastBridged = (await a.stats(ida)).inbound.video;
      assert.ok(shaped(lastBridged, IS_16_9), `A's last decoded picture was B's (${size(lastBridged)})`);
      await assertNoRenegotiation(a, ida, negA, 'after bridge → park');

      // park → echo: A decodes its own 4:3 picture again.
      const backToEcho = await a.switchAndWatch(ida, 'set_type', { type: 'echo' }, { aspect: IS_4_3, timeoutMs: RESUME_BOUND_MS });
      check('A park → echo (again)', backToEcho);
      await decodes(a, ida, IS_4_3, 'A keeps decoding its echo', 10);
      await a.screenshot('switch-A-echo-again');

      // Nothing renegotiated on either page, and the server sent one SDP each.
      await assertNoRenegotiation(a, ida, negA, 'at the end');
      await assertNoRenegotiation(b, idb, negB, 'at the end');
      const evA = await a.events(ida);
      assert.equal(evA.filter((e) => e.type === 'answer' || e.type === 'offer').length, 1, 'one SDP event for A');
      assert.deepEqual(evA.filter((e) => e.type === 'type').map((e) => e.body?.type), ['park', 'echo', 'bridge', 'park', 'echo']);
      const st = await a.stats(ida);
      assert.equal(st.connectionState, 'connected');
      note(`switch resume times (ms): ${JSON.stringify(resumes)}`);
    } finally {
      await a.close();
      await b.close();
    }
  });
});

describe('update_media on a bridge from Chromium', { timeout: 30000 }, () => {
  it('mute_video on A stops the video B decodes, audio keeps flowing; unmute brings it back', async (t) => {
    const a = await openConnected('mute-A');
    const b = await openConnected('mute-B');
    try {
      const ida = await start(a, { type: 'park', video: CAMERA_A });
      const idb = await start(b, { type: 'bridge', peer_id: ida, master_id: ida, video: CAMERA_B });
      await decodes(b, idb, IS_4_3, 'B decodes A');
      await decodes(a, ida, IS_16_9, 'A decodes B');

      const tMute = Date.now();
      assert.deepEqual(await a.command('update_media', { session_id: ida, mute_video: true }), {});
      const still = await stopsDecoding(b, idb, 'B with A\'s video muted');
      t.diagnostic(`muted: B stopped decoding within ${Date.now() - tMute} ms (poll windows of 800 ms; ${still} frame(s) in the last)`);
      // The cut is in the server: A's browser still sends video, the server no longer forwards it to B.
      const s1 = (await suite.admin.getStats(idb)).stats;
      const pa1 = (await a.stats(ida)).outbound.video.packets;
      await sleep(1000);
      const s2 = (await suite.admin.getStats(idb)).stats;
      const pa2 = (await a.stats(ida)).outbound.video.packets;
      assert.ok(pa2 - pa1 > 10, `A's browser keeps sending video (${pa1} → ${pa2})`);
      assert.ok(s2.outbound.video.packets - s1.outbound.video.packets <= 2, `server sends B no video (${s1.outbound.video.packets} → ${s2.outbound.video.packets})`);
      assert.ok(s2.outbound.audio.packets - s1.outbound.audio.packets >= 25, 'server keeps sending B audio');
      await hearsAudio(b, idb, 'B still hears A while A\'s video is muted');
      await decodes(a, ida, IS_16_9, 'A still decodes B (the mute is A\'s uplink only)', 10);
      assert.equal((await suite.admin.getInfo(ida)).mute_video, true);
      await b.screenshot('mute-B-muted');

      const baselineFrames = (await b.stats(idb)).inbound.video.framesDecoded;
      const watchB = b.watchFrames(idb, { aspect: IS_4_3, timeoutMs: RESUME_BOUND_MS + 1000, baselineFrames });
      const tUnmute = Date.now();
      assert.deepEqual(await a.command('update_media', { session_id: ida, mute_video: false }), {});
      const r = sinceNode(await watchB, tUnmute);
      report(t, 'B after A\'s unmute', r);
      assert.ok(r.resumeMs !== undefined, 'B decodes A\'s video again after unmute');
      await decodes(b, idb, IS_4_3, 'B keeps decoding A after unmute', 10);
      assert.equal((await suite.admin.getInfo(ida)).mute_video, false);
      await b.screenshot('mute-B-unmuted');
    } finally {
      await a.close();
      await b.close();
    }
  });
});

function note(line: string): void { console.log(`[media] ${line}`); }
