// Calls between two Chromium pages through the call API (media/call): page A calls user bob,
// logged in on page B; B gets the invite, rings, accepts; each page then decodes the other's
// video (framesDecoded grows, with the other camera's shape) and hears its audio; B hangs up and
// every session of the call is gone.
//
// Whose picture a page decodes is told by shape, as in media.test.ts: A's camera is 4:3
// (320×240), B's 16:9 (320×180); a bridge has no echo, so A decoding 16:9 frames is B's video.
import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { startBrowserSuite, eventually, type BrowserSuite, type TestPage } from './harness.js';

const CAMERA_A = { width: { exact: 320 }, height: { exact: 240 } };
const CAMERA_B = { width: { exact: 320 }, height: { exact: 180 } };
const IS_4_3: [number, number] = [1.2, 1.45];
const IS_16_9: [number, number] = [1.6, 1.95];

let suite: BrowserSuite;
before(async () => { suite = await startBrowserSuite(); });
after(async () => { await suite?.close(); });

const ratio = (v: { frameWidth: number; frameHeight: number }) => (v.frameHeight > 0 ? v.frameWidth / v.frameHeight : 0);

/** Waits until `page` has decoded `frames` more video frames of the given shape. */
async function decodes(page: TestPage, id: string, aspect: [number, number], what: string, frames = 15): Promise<void> {
  const start = (await page.stats(id)).inbound.video.framesDecoded;
  let last = { framesDecoded: start, frameWidth: 0, frameHeight: 0 };
  try {
    await eventually(async () => {
      last = (await page.stats(id)).inbound.video;
      return last.framesDecoded >= start + frames && ratio(last) >= aspect[0] && ratio(last) <= aspect[1];
    }, 10000, what);
  } catch (err) {
    throw new Error(`${(err as Error).message} (framesDecoded ${start} → ${last.framesDecoded}, size ${last.frameWidth}x${last.frameHeight})`);
  }
}

async function hearsAudio(page: TestPage, id: string, what: string): Promise<void> {
  const start = (await page.stats(id)).inbound.audio.packets;
  await eventually(async () => (await page.stats(id)).inbound.audio.packets >= start + 25, 5000, what);
}

it('two pages call each other through the call API and decode each other\'s video', async () => {
  const a = await suite.openPage('caller');
  const b = await suite.openPage('callee');
  await a.connect('alice');
  await b.connect('bob');
  await b.call('listenForCalls');

  const { callId, sessionId } = await a.call('startCall', { callee: 'bob', caller: { name: 'Alice' }, video: CAMERA_A });
  const invite = await eventually(async () => (await b.call('invites')).find((i) => i.call_id === callId), 5000, 'invite on page B');
  assert.equal(invite.user_id, 'alice');
  await b.call('callCommand', 'ringing', { call_id: callId });
  const legId = await b.call('acceptCall', callId, { video: CAMERA_B });

  await Promise.all([a.waitConnected(sessionId), b.waitConnected(legId)]);
  await decodes(a, sessionId, IS_16_9, 'caller decodes the callee\'s (16:9) video');
  await decodes(b, legId, IS_4_3, 'callee decodes the caller\'s (4:3) video');
  await hearsAudio(a, sessionId, 'caller hears the callee');
  await hearsAudio(b, legId, 'callee hears the caller');
  // No renegotiation after the SDPs were exchanged: one offer/answer on each side.
  const na = (await a.state(sessionId)).negotiation;
  assert.equal(na.setRemoteDescription, 1);
  const info = await a.call('callCommand', 'get_info', { call_id: callId });
  assert.equal(info.state, 'answered');
  assert.equal(info.answered_by, legId);
  await a.screenshot('calls-caller');
  await b.screenshot('calls-callee');

  await b.call('callCommand', 'hangup', { call_id: callId, reason: 'done' });
  const hangup = await eventually(async () => (await a.events(sessionId)).find((e) => e.type === 'hangup' && e.obj_id === callId), 5000, 'caller hears hangup');
  assert.equal(hangup.body?.reason, 'API hangup: done');
  await eventually(() => suite.server.services.sessions.size === 0 && suite.server.services.calls.size === 0, 5000, 'every session of the call gone');
});
