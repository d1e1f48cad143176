// ffmpeg as a real plain-RTP peer: its SDP as our offer (we answer), our offer answered for it
// (we offer), and a PCMU → Opus transcoded bridge decoded by ffmpeg. Audio is checked by
// decoding what ffmpeg received (a 1 kHz tone must come out), not by counting packets.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestServer, connectClient } from './helpers/server.js';
import { RtpPeer, mediaOf, rmsDb, toneShare } from './helpers/rtp-peer.js';
import type { Server } from '../src/main.js';
import type { NkMediaClient } from '../src/client/index.js';

const FFMPEG = process.env.NKMEDIA_FFMPEG ?? 'ffmpeg';
const haveFfmpeg = spawnSync(FFMPEG, ['-version']).status === 0;
const skip = haveFfmpeg ? false : 'ffmpeg is not installed';

function run(args: string[], killAfterMs: number): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(FFMPEG, ['-hide_banner', '-loglevel', 'error', '-nostdin', '-y', ...args]);
    let stderr = '';
    p.stderr.on('data', (d) => { stderr += String(d); });
    const t = setTimeout(() => p.kill('SIGKILL'), killAfterMs);
    p.on('close', (code) => { clearTimeout(t); resolve({ code, stderr }); });
  });
}

/** A free even port pair for an ffmpeg receiver (taken and given back). */
async function freePair(): Promise<number> {
  const p = await RtpPeer.open();
  const port = p.port;
  await p.close();
  return port;
}

/** 16-bit mono samples of a WAV file (skips the header by finding the data chunk). */
function wavSamples(path: string): Int16Array {
  const b = readFileSync(path);
  const i = b.indexOf('data');
  const data = b.subarray(i + 8);
  return new Int16Array(data.buffer.slice(data.byteOffset, data.byteOffset + (data.length & ~1)));
}

/** Sends a 1 kHz tone with ffmpeg in `codec` to `to` for `seconds`. */
function sendTone(to: { address: string; port: number }, codec: string[], seconds: number, payloadType?: number): Promise<{ code: number | null; stderr: string }> {
  return run(['-re', '-f', 'lavfi', '-i', `sine=frequency=1000:duration=${seconds}:sample_rate=48000`, '-ac', '1', ...codec,
    ...(payloadType !== undefined ? ['-payload_type', String(payloadType)] : []), '-f', 'rtp', `rtp://${to.address}:${to.port}`], (seconds + 10) * 1000);
}

/** Receives what the SDP describes with ffmpeg, decoded to a WAV file. */
function receive(sdpPath: string, wav: string, seconds: number, rate: number): Promise<{ code: number | null; stderr: string }> {
  return run(['-protocol_whitelist', 'file,udp,rtp', '-i', sdpPath, '-t', String(seconds), '-ar', String(rate), '-ac', '1', wav], (seconds + 12) * 1000);
}

function assertTone(wav: string, rate: number, what: string): void {
  const all = wavSamples(wav);
  // Skip the first half second (jitter-buffer fill, codec warm-up).
  const s = all.subarray(Math.min(all.length, rate / 2));
  assert.ok(s.length > rate / 2, `${what}: ${s.length} samples decoded`);
  const share = toneShare(s, rate, 1000);
  const level = rmsDb(s);
  assert.ok(share > 0.7, `${what}: 1 kHz carries ${(share * 100).toFixed(1)}% of the power`);
  assert.ok(level > -30, `${what}: level ${level.toFixed(1)} dBFS`);
}

/**
 * One ffmpeg receives what `sdpPath` describes while another sends a tone to `to` in `codec`;
 * what was received must be the tone.
 */
async function toneRoundTrip(sdpPath: string, to: { address: string; port: number }, codec: string[], rate: number, what: string): Promise<void> {
  const wav = sdpPath.replace(/\.sdp$/, '.wav');
  const rx = receive(sdpPath, wav, 2.5, rate);
  await new Promise((r) => setTimeout(r, 300));
  const tx = await sendTone(to, codec, 4);
  assert.equal(tx.code, 0, tx.stderr);
  const r = await rx;
  assert.equal(r.code, 0, r.stderr);
  assertTone(wav, rate, what);
}

describe('ffmpeg as a plain RTP peer', { skip }, () => {
  let server: Server;
  let client: NkMediaClient;
  let dir: string;
  before(async () => {
    server = await startTestServer();
    client = await connectClient(server);
    dir = mkdtempSync(join(tmpdir(), 'nkm-ffmpeg-rtp-'));
  });
  after(async () => {
    await client.close();
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("takes ffmpeg's own SDP as the offer and echoes its PCMU tone back to it", async () => {
    const port = await freePair();
    const sdpPath = join(dir, 'offer.sdp');
    // ffmpeg writes the SDP of a PCMU stream toward `port`: that is where its receiver listens.
    const gen = await run(['-f', 'lavfi', '-i', 'sine=duration=0.1', '-ar', '8000', '-ac', '1', '-c:a', 'pcm_mulaw', '-f', 'rtp', '-sdp_file', sdpPath, `rtp://127.0.0.1:${port}`], 10000);
    assert.equal(gen.code, 0, gen.stderr);
    const offer = readFileSync(sdpPath, 'utf8');
    const reply = await client.createSession({ type: 'echo', offer: { sdp: offer, sdp_type: 'rtp' }, wait_reply: true });
    const m = mediaOf(reply.answer!.sdp);
    assert.ok(m.pts.has('PCMU'));
    await toneRoundTrip(sdpPath, m, ['-ar', '8000', '-c:a', 'pcm_mulaw'], 8000, 'PCMU echo');
    await client.destroySession(reply.session_id);
  });

  it('offers; an answer choosing G.722 for ffmpeg; the G.722 tone comes back', async () => {
    const reply = await client.createSession({ type: 'echo', sdp_type: 'rtp', wait_reply: true } as never);
    const offer = mediaOf(reply.offer!.sdp);
    const port = await freePair();
    const answer = `v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=ffmpeg\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio ${port} RTP/AVP 9\r\na=rtpmap:9 G722/8000\r\nm=video 0 RTP/AVP 96\r\n`;
    await client.setAnswer(reply.session_id, { sdp: answer, sdp_type: 'rtp' });
    const sdpPath = join(dir, 'answer.sdp');
    writeFileSync(sdpPath, answer.replace(/m=video.*\r\n/, ''));
    await toneRoundTrip(sdpPath, offer, ['-ar', '16000', '-c:a', 'g722'], 16000, 'G.722 echo');
    await client.destroySession(reply.session_id);
  });

  it('transcodes a bridge: PCMU from one ffmpeg reaches another as Opus, and Opus comes back as PCMU', async () => {
    // Leg A: ffmpeg on PCMU (its SDP as our offer). Leg B: our offer, answered with Opus.
    const portA = await freePair();
    const sdpA = join(dir, 'a.sdp');
    const gen = await run(['-f', 'lavfi', '-i', 'sine=duration=0.1', '-ar', '8000', '-ac', '1', '-c:a', 'pcm_mulaw', '-f', 'rtp', '-sdp_file', sdpA, `rtp://127.0.0.1:${portA}`], 10000);
    assert.equal(gen.code, 0, gen.stderr);
    const a = await client.createSession({ type: 'park', offer: { sdp: readFileSync(sdpA, 'utf8'), sdp_type: 'rtp' }, wait_reply: true });
    const b = await client.createSession({ type: 'bridge', peer_id: a.session_id, sdp_type: 'rtp', wait_reply: true } as never);
    const offerB = mediaOf(b.offer!.sdp);
    const opusPt = offerB.pts.get('OPUS')!;
    const portB = await freePair();
    const answerB = `v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=ffmpeg\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio ${portB} RTP/AVP ${opusPt}\r\na=rtpmap:${opusPt} opus/48000/2\r\n`;
    await client.setAnswer(b.session_id, { sdp: answerB + 'm=video 0 RTP/AVP 96\r\n', sdp_type: 'rtp' });
    const sdpB = join(dir, 'b.sdp');
    writeFileSync(sdpB, answerB);
    const wavB = join(dir, 'b.wav');
    const wavA = join(dir, 'a.wav');
    const rxB = receive(sdpB, wavB, 2.5, 48000);
    const rxA = receive(sdpA, wavA, 2.5, 8000);
    await new Promise((r) => setTimeout(r, 300));
    const [txA, txB] = await Promise.all([
      sendTone(mediaOf(a.answer!.sdp), ['-ar', '8000', '-c:a', 'pcm_mulaw'], 4),
      sendTone(offerB, ['-ar', '48000', '-c:a', 'libopus', '-b:a', '32k'], 4, opusPt),
    ]);
    assert.equal(txA.code, 0, txA.stderr);
    assert.equal(txB.code, 0, txB.stderr);
    const [ra, rb] = await Promise.all([rxA, rxB]);
    assert.equal(rb.code, 0, rb.stderr);
    assert.equal(ra.code, 0, ra.stderr);
    assertTone(wavB, 48000, 'PCMU → Opus');
    assertTone(wavA, 8000, 'Opus → PCMU');
    await client.destroySession(a.session_id);
    await client.destroySession(b.session_id).catch(() => undefined);
  });
});
