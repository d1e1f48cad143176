// The Kurento protocol door (/kurento on the API port) with real Kurento applications and
// Chromium:
// - the hello-world tutorial as its users run it: examples/kurento-hello-world/server.js (a
//   kurento-client 7.3.0 application server) as a child process against the in-process server,
//   its page in Chromium pressing Start and Stop. The page's remote <video> decodes its own fake
//   camera after the round trip through a WebRtcEndpoint connected to itself; the NkMEDIA side
//   (media/kurento/get_list, and the demo console's "Kurento pipelines" table) shows the
//   pipeline while it lives, and it is released on Stop and when the page closes;
// - kurento-utils' WebRtcPeerSendrecv in a page, driven by a kurento-client flow in this file:
//   pipeline, WebRtcEndpoint connected to itself, processOffer, trickle ICE both ways,
//   gatherCandidates; the page decodes its own video, then the pipeline is released.
// Decoded video is read from getStats (inbound-rtp framesDecoded) on the page's own peer
// connection, polled with a deadline; no timing is asserted.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BrowserContext, Page } from 'playwright-core';
import { startBrowserSuite, eventually, type BrowserSuite } from './harness.js';
import { loadKurentoClient, kurentoCall, kurentoUtilsBundle } from '../test/helpers/kurento-client.js';
import { buildDemoIfStale } from '../scripts/build-demo.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const HELLO_WORLD_DIR = join(here, '..', 'examples', 'kurento-hello-world');

// kurento-client's objects are untyped.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type K = any;

interface PipelineRow {
  id: string;
  user: string;
  elements: { id: string; type: string; media_state: string; flowing_in: string[]; flowing_out: string[]; sources: Record<string, string> }[];
}

interface VideoIn { framesDecoded: number; width: number; height: number; state: string; localWidth: number; localHeight: number }

let suite: BrowserSuite;
/** The API's origin (http://127.0.0.1:<port>): the demo console is served there. */
let origin: string;
/** The Kurento endpoint kurento-client connects to. */
let kurentoUrl: string;
const contexts = new Set<BrowserContext>();

before(async () => {
  // The console page as it is in demo/ now (npm start and the test runners build it too).
  await buildDemoIfStale();
  suite = await startBrowserSuite();
  origin = suite.server.url.replace(/^ws/, 'http').replace(/\/$/, '');
  kurentoUrl = `${suite.server.url.replace(/\/$/, '')}/kurento`;
});
after(async () => {
  for (const c of contexts) await c.close().catch(() => undefined);
  await suite?.close();
});

const pipelines = () => suite.admin.request<PipelineRow[]>('media', 'kurento', 'get_list');

/** A browser context with camera and microphone allowed (the fake devices of CHROMIUM_ARGS). */
async function newContext(): Promise<BrowserContext> {
  const context = await suite.browser.newContext({ viewport: { width: 1000, height: 700 }, permissions: ['camera', 'microphone'] });
  contexts.add(context);
  context.on('close', () => contexts.delete(context));
  return context;
}

/** Console lines and errors of a page, for failure messages. */
function watchLog(page: Page, label: string): string[] {
  const logs: string[] = [];
  const note = (line: string) => {
    logs.push(line);
    if (logs.length > 200) logs.shift();
    if (process.env.NKMEDIA_TEST_LOG) console.error(`[${label}] ${line}`);
  };
  page.on('console', (m) => { if (m.type() !== 'debug') note(`console.${m.type()}: ${m.text()}`); });
  page.on('pageerror', (e) => note(`pageerror: ${e.message}`));
  return logs;
}

/**
 * Inbound video on a page's peer connection (the newest one the page made, unless `expr` names
 * one), with the size of the local camera track it sends.
 */
function videoIn(page: Page, expr?: string): Promise<VideoIn> {
  return page.evaluate(async (e) => {
    const w = window as any;
    const pcs: RTCPeerConnection[] = w.__nkPeerConnections ?? [];
    const pc: RTCPeerConnection | undefined = e ? (0, eval)(e) : pcs[pcs.length - 1];
    const r: VideoIn = { framesDecoded: 0, width: 0, height: 0, state: pc?.connectionState ?? 'none', localWidth: 0, localHeight: 0 };
    if (!pc) return r;
    (await pc.getStats()).forEach((s: any) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') {
        r.framesDecoded += s.framesDecoded ?? 0;
        r.width = Math.max(r.width, s.frameWidth ?? 0);
        r.height = Math.max(r.height, s.frameHeight ?? 0);
      }
    });
    const track = pc.getSenders().map((x) => x.track).find((t) => t?.kind === 'video');
    const set = track?.getSettings();
    r.localWidth = set?.width ?? 0;
    r.localHeight = set?.height ?? 0;
    return r;
  }, expr);
}

/** Waits until the page has decoded more than `frames` video frames of its own camera's size. */
async function decodesOwnVideo(page: Page, what: string, logs: string[], expr?: string, frames = 30): Promise<VideoIn> {
  let last: VideoIn | undefined;
  try {
    return await eventually(async () => {
      last = await videoIn(page, expr);
      return last.framesDecoded > frames && last.width > 0 ? last : undefined;
    }, 20000, what);
  } catch (err) {
    throw new Error(`${(err as Error).message} (last ${JSON.stringify(last)}; page log: ${logs.slice(-15).join(' | ')})`);
  }
}

/** The one pipeline on the server: a WebRtcEndpoint connected to itself, receiving audio and video. */
async function loopbackPipeline(what: string): Promise<PipelineRow> {
  let last: PipelineRow[] = [];
  try {
    return await eventually(async () => {
      last = await pipelines();
      const p = last.length === 1 ? last[0]! : undefined;
      const ep = p?.elements.length === 1 ? p.elements[0]! : undefined;
      return ep?.flowing_in.includes('video') && ep.flowing_in.includes('audio') ? p : undefined;
    }, 10000, what);
  } catch (err) {
    throw new Error(`${(err as Error).message} (get_list: ${JSON.stringify(last)})`);
  }
}

function assertLoopback(p: PipelineRow, user: string): void {
  assert.equal(p.user, user);
  const [ep] = p.elements;
  assert.equal(ep?.type, 'WebRtcEndpoint');
  assert.equal(ep.media_state, 'CONNECTED');
  assert.deepEqual([...ep.flowing_out].sort(), ['audio', 'video'], 'it sends its media back out');
  assert.equal(ep.sources.audio, ep.id, 'its audio comes from itself');
  assert.equal(ep.sources.video, ep.id, 'its video comes from itself');
}

// ---- the hello-world application server ----------------------------------------------------------

interface HelloWorld { url: string; output: string[]; child: ChildProcess; stop(): Promise<void> }

/** `node server.js --ws_uri ... --host 127.0.0.1 --port 0`, up once it says where it serves. */
async function startHelloWorld(wsUri: string): Promise<HelloWorld> {
  // 127.0.0.1: a page served over plain http gets the camera only from a loopback origin.
  const child = spawn(process.execPath, ['server.js', '--ws_uri', wsUri, '--host', '127.0.0.1', '--port', '0'], {
    cwd: HELLO_WORLD_DIR,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 3000);
    await gone;
    clearTimeout(t);
  };
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const onLine = (chunk: Buffer, stream: string) => {
        for (const line of String(chunk).split('\n').filter(Boolean)) {
          output.push(`${stream}: ${line}`);
          if (process.env.NKMEDIA_TEST_LOG) console.error(`[hello-world ${stream}] ${line}`);
          const m = /Kurento hello world on (http:\/\/\S+\/)/.exec(line);
          if (m) resolve(m[1]!);
        }
      };
      child.stdout!.on('data', (d: Buffer) => onLine(d, 'out'));
      child.stderr!.on('data', (d: Buffer) => onLine(d, 'err'));
      child.once('error', reject);
      child.once('exit', (code, sig) => reject(new Error(`server.js exited (${sig ?? code}): ${output.join(' | ')}`)));
      setTimeout(() => reject(new Error(`server.js did not start in 30 s: ${output.join(' | ')}`)), 30000).unref();
    });
    return { url, output, child, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Records every RTCPeerConnection the page sets a local description on (kurento-utils keeps its own to itself). */
const RECORD_PEER_CONNECTIONS = `(() => {
  const list = window.__nkPeerConnections = [];
  const proto = RTCPeerConnection.prototype;
  const set = proto.setLocalDescription;
  proto.setLocalDescription = function (...args) {
    if (!list.includes(this)) list.push(this);
    return set.apply(this, args);
  };
})();`;

describe('Kurento hello world (examples/kurento-hello-world, kurento-client 7.3.0) in Chromium', { timeout: 120000 }, () => {
  let hw: HelloWorld | undefined;
  after(async () => { await hw?.stop(); });

  it('Start: the remote video is the page\'s own camera; the pipeline shows on the NkMEDIA side; Stop and closing the page release it', async () => {
    hw = await startHelloWorld(kurentoUrl);

    // The demo console, logged in as admin, lists every user's pipelines.
    const conCtx = await newContext();
    const con = await conCtx.newPage();
    const conLog = watchLog(con, 'console');
    assert.equal((await con.goto(`${origin}/demo/console.html`))?.status(), 200);
    await con.fill('#user', 'admin');
    await con.click('#connect');
    await con.waitForFunction(() => document.getElementById('conn-status')?.textContent === 'connected as admin', undefined, { timeout: 10000 });
    const consoleRow = (id: string) => con.locator(`#pipelines tr[data-id="${id}"]`);

    const ctx = await newContext();
    await ctx.addInitScript(RECORD_PEER_CONNECTIONS);
    const page = await ctx.newPage();
    const logs = watchLog(page, 'hello-world');
    assert.equal((await page.goto(hw.url))?.status(), 200);
    await page.waitForFunction(() => typeof (window as any).helloWorld === 'object' && typeof (window as any).kurentoUtils === 'object', undefined, { timeout: 10000 });
    const state = () => page.evaluate(() => (window as any).helloWorld.state as string);
    assert.equal(await state(), 'idle');
    assert.deepEqual(await pipelines(), [], 'no pipeline before Start');

    // Start, as a user does: the button.
    await page.click('#start');
    await eventually(async () => { const s = await state(); if (s.startsWith('error')) throw new Error(s); return s === 'started'; }, 20000, 'the page to reach state "started"')
      .catch((err: Error) => { throw new Error(`${err.message} (page log: ${logs.slice(-15).join(' | ')}; server.js: ${hw!.output.slice(-10).join(' | ')})`); });
    const v = await decodesOwnVideo(page, 'the page to decode its own video back', logs);
    assert.equal(v.state, 'connected');
    assert.ok(v.localWidth > 0, 'the page sends its camera');
    assert.deepEqual([v.width, v.height], [v.localWidth, v.localHeight], 'the remote video is the camera\'s size');
    // The <video> element plays it.
    await eventually(() => page.evaluate(() => { const r = document.getElementById('remoteVideo') as HTMLVideoElement; return r.videoWidth > 0 && r.currentTime > 0.5; }), 10000, 'the remote <video> to play');

    // The NkMEDIA side: one pipeline, of the open-mode Kurento user, one endpoint looped to itself.
    const p1 = await loopbackPipeline('the pipeline with media flowing in');
    assertLoopback(p1, suite.server.config.kurento.open_user);
    // The console lists it: owner, elements, 1 of 1 receiving.
    await consoleRow(p1.id).waitFor({ timeout: 10000 });
    await eventually(async () => {
      const cells = await consoleRow(p1.id).locator('td').allInnerTexts();
      return cells[1] === p1.user && cells[2] === 'WebRtc' && cells[3] === '1/1 receiving';
    }, 10000, 'the console row: owner, WebRtc, 1/1 receiving');
    // The decoded frame count keeps growing.
    const more = await decodesOwnVideo(page, 'frames to keep coming', logs, undefined, v.framesDecoded + 30);
    assert.ok(more.framesDecoded > v.framesDecoded);

    // Stop: the pipeline is released, and the console row goes.
    await page.click('#stop');
    assert.equal(await state(), 'idle');
    await eventually(async () => (await pipelines()).length === 0, 10000, 'the pipeline to be released on Stop');
    await consoleRow(p1.id).waitFor({ state: 'detached', timeout: 10000 });

    // Start again on the same page: a new pipeline, decoding again.
    await page.click('#start');
    await eventually(async () => { const s = await state(); if (s.startsWith('error')) throw new Error(s); return s === 'started'; }, 20000, 'the page to start again');
    await decodesOwnVideo(page, 'the second start to decode its own video', logs);
    const p2 = await loopbackPipeline('the second pipeline');
    assertLoopback(p2, p1.user);
    assert.notEqual(p2.id, p1.id);
    await consoleRow(p2.id).waitFor({ timeout: 10000 });

    // Closing the page closes its socket to server.js, which releases the pipeline.
    await ctx.close();
    await eventually(async () => (await pipelines()).length === 0, 10000, 'the pipeline to be released when the page closes');
    await consoleRow(p2.id).waitFor({ state: 'detached', timeout: 10000 });

    assert.deepEqual(logs.filter((l) => l.startsWith('pageerror') || /hello world:/.test(l)), [], 'no page error');
    assert.deepEqual(await con.evaluate(() => [...(window as any).demo.errors]), [], `the console shows no error (${conLog.slice(-5).join(' | ')})`);
    assert.ok(!hw.output.some((l) => /release failed|Could not find media server|media server connection:/.test(l)), `server.js reported no error: ${hw.output.join(' | ')}`);
    await conCtx.close();
  });
});

describe('kurento-utils WebRtcPeerSendrecv with a kurento-client flow', { timeout: 60000 }, () => {
  it('pipeline, WebRtcEndpoint connected to itself, trickle ICE both ways: the page decodes its own video', async () => {
    const kurento = loadKurentoClient();
    const IceCandidate = kurento.getComplexType('IceCandidate');
    const tp = await suite.openPage('kurento-utils');
    const page = tp.page;
    // duplicates_timeout: kurento-jsonrpc keeps each answered request's id for that long (20 s by
    // default) on a timer it never unrefs, which would hold this test process open.
    const client: K = await kurento(kurentoUrl, { failAfter: 1, duplicates_timeout: 500 });
    let pipeline: K;
    try {
      pipeline = await kurentoCall(client, 'create', 'MediaPipeline');
      const ep: K = await kurentoCall(pipeline, 'create', 'WebRtcEndpoint');
      const flowing: string[] = [];
      ep.on('MediaFlowInStateChanged', (ev: K) => { if (ev.state === 'FLOWING') flowing.push(ev.mediaType); });

      // The page's candidates go to the endpoint as they come (some before processOffer).
      const fromPage: string[] = [];
      const addErrors: string[] = [];
      await page.exposeFunction('nkKurentoCandidate', (c: { candidate: string; sdpMid: string; sdpMLineIndex: number }) => {
        fromPage.push(c.candidate);
        kurentoCall(ep, 'addIceCandidate', IceCandidate(c)).catch((err: Error) => addErrors.push(err.message));
      });
      // The endpoint's candidates go to the page's kurento-utils peer.
      const toPage: string[] = [];
      const pageErrors: string[] = [];
      ep.on('IceCandidateFound', (ev: K) => {
        const c = { candidate: ev.candidate.candidate, sdpMid: ev.candidate.sdpMid, sdpMLineIndex: ev.candidate.sdpMLineIndex };
        toPage.push(c.candidate);
        page.evaluate((cand) => new Promise<string>((resolve) => {
          (window as any).kurentoPeer.addIceCandidate(cand, (err: unknown) => resolve(err ? String(err) : ''));
        }), c).then((err) => { if (err) pageErrors.push(err); }, (err: Error) => pageErrors.push(err.message));
      });

      await page.addScriptTag({ content: await kurentoUtilsBundle() });
      const offer = await page.evaluate(() => new Promise<string>((resolve, reject) => {
        const w = window as any;
        // (No named functions here, not even object properties: tsx wraps those in a __name()
        // call the page does not have.)
        const [localVideo, remoteVideo] = [true, false].map((muted) => {
          const v = document.createElement('video');
          v.autoplay = true; v.muted = muted; v.playsInline = true; v.width = 320; v.height = 240;
          document.body.append(v);
          return v;
        });
        w.kurentoRemoteVideo = remoteVideo;
        const options: Record<string, unknown> = { localVideo, remoteVideo, configuration: { iceServers: [] } };
        options.onicecandidate = (c: RTCIceCandidate) => w.nkKurentoCandidate(c.toJSON());
        const peer = w.kurentoUtils.WebRtcPeer.WebRtcPeerSendrecv(options, (error: unknown) => {
          if (error) { reject(new Error(String(error))); return; }
          peer.generateOffer((err: unknown, sdp: string) => (err ? reject(new Error(String(err))) : resolve(sdp)));
        });
        w.kurentoPeer = peer;
      }));
      assert.match(offer, /m=audio/);
      assert.match(offer, /m=video/);

      await kurentoCall(ep, 'connect', ep);
      const answer: string = await kurentoCall(ep, 'processOffer', offer);
      assert.match(answer, /m=video/);
      await page.evaluate((sdp) => new Promise<void>((resolve, reject) => {
        (window as any).kurentoPeer.processAnswer(sdp, (err: unknown) => (err ? reject(new Error(String(err))) : resolve()));
      }), answer);
      await kurentoCall(ep, 'gatherCandidates');

      const v = await decodesOwnVideo(page, 'the kurento-utils page to decode its own video', tp.logs, 'window.kurentoPeer.peerConnection');
      assert.equal(v.state, 'connected');
      assert.deepEqual([v.width, v.height], [v.localWidth, v.localHeight], 'the remote video is the camera\'s size');
      await eventually(() => page.evaluate(() => { const r = (window as any).kurentoRemoteVideo as HTMLVideoElement; return r.videoWidth > 0 && r.currentTime > 0.5; }), 10000, 'the remote <video> to play');

      // Candidates went both ways, on the namespace's address; nothing was refused.
      assert.ok(fromPage.length > 0, 'the page trickled candidates');
      assert.ok(toPage.length > 0, 'the endpoint trickled candidates');
      assert.ok(toPage.every((c) => !c.includes(' 127.0.0.1 ')), `no loopback candidates from the server: ${toPage.join(' | ')}`);
      assert.deepEqual(addErrors, [], 'addIceCandidate on the endpoint');
      assert.deepEqual(pageErrors, [], 'addIceCandidate in the page');
      await eventually(() => flowing.includes('VIDEO') && flowing.includes('AUDIO'), 5000, 'MediaFlowInStateChanged FLOWING for audio and video');

      // The NkMEDIA side sees the same pipeline.
      const p = await loopbackPipeline('the pipeline with media flowing in');
      assert.equal(p.id, pipeline.id);
      assert.equal(p.elements[0]?.id, ep.id);
      assertLoopback(p, suite.server.config.kurento.open_user);

      await kurentoCall(pipeline, 'release');
      pipeline = undefined;
      assert.deepEqual(await pipelines(), [], 'released');
      await page.evaluate(() => (window as any).kurentoPeer.dispose());
    } finally {
      if (pipeline) await kurentoCall(pipeline, 'release').catch(() => undefined);
      client.close();
      await tp.close();
    }
  });
});
