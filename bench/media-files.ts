// CPU of playing and recording media files in the local engine: one playing session
// (pass-through and transcoded through ffmpeg) and one recording session, and how many of each
// one core would sustain (extrapolated from the CPU share; pacing and I/O are not the limit).
//
//   node --import tsx bench/media-files.ts [seconds per scenario, default 10]
//
// Elements are driven in this process. "node" is this process's CPU (process.cpuUsage), "ffmpeg"
// the transcoder child's (/proc). The recorder's cost is measured as (player → recorder) minus
// (player → nothing), so the player feeding it is not counted twice.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { RTCPeerConnection } from 'werift';
import { LocalEngine } from '../src/engine/local/engine.js';
import { Element, type CodecInfo, type MediaUnit } from '../src/engine/local/graph/element.js';
import { PlayerEndpoint, runningTranscoders } from '../src/engine/local/files/player.js';
import { RecorderEndpoint } from '../src/engine/local/files/recorder.js';
import { PEER_CONFIG, splitCandidates } from '../test/helpers/peer.js';
import { cpuOf, fmt } from './lib.js';

const run = promisify(execFile);
const seconds = Number(process.argv[2] ?? 10);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A sink that takes VP8/Opus and drops what it gets (counts it). */
class NullSink extends Element {
  packets = 0;
  bytes = 0;
  sendCodec(kind: 'audio' | 'video'): CodecInfo {
    return kind === 'audio' ? { mimeType: 'audio/opus', clockRate: 48000 } : { mimeType: 'video/vp8', clockRate: 90000 };
  }
  accept(unit: MediaUnit): void {
    if (unit.kind === 'data') return;
    this.packets++;
    this.bytes += unit.rtp.payload.length;
  }
}

function link(source: Element, sink: Element): void {
  for (const k of ['audio', 'video'] as const) { sink.sources.set(k, source); source.sinks[k].add(sink); }
}

const cpuOfOr0 = (pid: number) => { try { return cpuOf(pid); } catch { return 0; } };

/** CPU time (µs) of this process's reaped children (cutime + cstime in /proc/self/stat). */
function childrenCpu(): number {
  const f = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[13]) + Number(f[14])) * 10_000;
}

interface Row { scenario: string; nodePct: number; ffmpegPct: number; kbps: number }

/** Runs `body` for `seconds` after a 1 s warm-up; CPU of this process and of ffmpeg children. */
async function measure(scenario: string, sink: NullSink | undefined, body: () => Promise<() => Promise<void>>): Promise<Row> {
  const stop = await body();
  await sleep(1000);
  // ffmpeg: children reaped meanwhile count through our cutime/cstime; live ones through /proc.
  const ff0 = childrenCpu() + runningTranscoders().reduce((n, p) => n + cpuOfOr0(p), 0);
  const c0 = process.cpuUsage();
  const b0 = sink?.bytes ?? 0;
  const t0 = performance.now();
  await sleep(seconds * 1000);
  const wall = (performance.now() - t0) * 1000;
  const c = process.cpuUsage(c0);
  const ff = childrenCpu() + runningTranscoders().reduce((n, p) => n + cpuOfOr0(p), 0) - ff0;
  const kbps = sink ? ((sink.bytes - b0) * 8) / (wall / 1e6) / 1000 : 0;
  await stop();
  return { scenario, nodePct: ((c.user + c.system) / wall) * 100, ffmpegPct: (ff / wall) * 100, kbps };
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'nkmedia-bench-'));
  const webm = join(dir, 'clip.webm');
  const mp4 = join(dir, 'clip.mp4');
  const src = ['-v', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=30', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000', '-t', '12', '-g', '30', '-ac', '2'];
  await Promise.all([
    run('ffmpeg', [...src, '-c:v', 'libvpx', '-b:v', '800k', '-deadline', 'realtime', '-cpu-used', '8', '-c:a', 'libopus', webm]),
    run('ffmpeg', [...src, '-c:v', 'libx264', '-preset', 'veryfast', '-b:v', '800k', '-pix_fmt', 'yuv420p', '-c:a', 'aac', mp4]),
  ]);
  const rows: Row[] = [];
  let n = 0;
  const player = (file: string, sink: Element) => async () => {
    const p = new PlayerEndpoint(`bench-player-${n++}`, 'bench', () => undefined);
    link(p, sink);
    await p.start(file, 0);
    return async () => { await p.release(); };
  };

  const idle = await measure('idle (baseline)', undefined, async () => async () => undefined);
  rows.push(idle);
  const s1 = new NullSink('null-1', 'bench');
  rows.push(await measure('play WebM VP8/Opus, pass-through', s1, player(webm, s1)));
  const s2 = new NullSink('null-2', 'bench');
  rows.push(await measure('play MP4 H.264/AAC, transcoded to VP8/Opus', s2, player(mp4, s2)));

  // Player → recorder (and the same player → nothing, measured above) gives the recorder's share.
  const s3 = new NullSink('null-3', 'bench');
  const rec = await measure('play WebM → record WebM (player + recorder)', s3, async () => {
    const p = new PlayerEndpoint(`bench-player-${n++}`, 'bench', () => undefined);
    const r = new RecorderEndpoint('bench-rec', 'bench', () => undefined);
    link(p, r);
    p.sinks.audio.add(s3);
    p.sinks.video.add(s3);
    await r.start(join(dir, 'rec.webm'));
    await p.start(webm, 0);
    return async () => { await r.stop(); await p.release(); };
  });
  rows.push(rec);

  // End to end over WebRTC: the player into a WebRtcEndpoint and a werift client in this process
  // (SRTP out, and the client's SRTP in, both counted).
  const engine = new LocalEngine({ includeLoopback: true, useInterfaces: false, announcedAddresses: [], stunServers: [], turnServers: [], gatherTimeoutMs: 1000 });
  const pc = new RTCPeerConnection(PEER_CONFIG);
  pc.addTransceiver('audio', { direction: 'sendrecv' });
  pc.addTransceiver('video', { direction: 'sendrecv' });
  await pc.setLocalDescription(await pc.createOffer());
  const offer = splitCandidates(pc.localDescription!.sdp);
  const ep = await engine.createWebRtcEndpoint({ tag: 'bench' });
  engine.onEvent((ev) => { if (ev.type === 'ice_candidate' && ev.elementId === ep) void pc.addIceCandidate(ev.candidate).catch(() => undefined); });
  await pc.setRemoteDescription({ type: 'answer', sdp: await engine.processOffer(ep, offer.sdp) });
  await engine.gatherCandidates(ep);
  for (const c of offer.candidates) await engine.addIceCandidate(ep, c);
  while (pc.connectionState !== 'connected') await sleep(50);
  const epElement = (engine as unknown as { elements: Map<string, Element> }).elements.get(ep)!;
  rows.push(await measure('play WebM pass-through → WebRtcEndpoint → werift client', undefined, player(webm, epElement)));
  await pc.close();
  await engine.close();
  await rm(dir, { recursive: true, force: true });

  const base = idle.nodePct;
  const playPass = rows[1]!.nodePct - base;
  const playTx = rows[2]!.nodePct - base + rows[2]!.ffmpegPct;
  const record = rec.nodePct - rows[1]!.nodePct;
  console.log(`\nmedia files: ${seconds} s per scenario, 640x360 30 fps VP8 800 kbit/s + Opus; Node ${process.version}\n`);
  console.log('| scenario | node CPU % | ffmpeg CPU % | output kbit/s |');
  console.log('|---|---:|---:|---:|');
  for (const r of rows) console.log(`| ${r.scenario} | ${fmt(r.nodePct, 2)} | ${fmt(r.ffmpegPct, 1)} | ${r.kbps ? fmt(r.kbps, 0) : '-'} |`);
  console.log('\n| one session | CPU % of a core | sessions per core (extrapolated) |');
  console.log('|---|---:|---:|');
  const per = (pct: number) => (pct > 0 ? fmt(100 / pct, 0) : '-');
  console.log(`| playing, pass-through | ${fmt(playPass, 2)} | ${per(playPass)} |`);
  console.log(`| playing, transcoded (node + ffmpeg) | ${fmt(playTx, 1)} | ${per(playTx)} |`);
  console.log(`| recording (recorder only) | ${fmt(record, 2)} | ${per(record)} |`);
  console.log(`| playing over WebRTC incl. client | ${fmt(rows[4]!.nodePct - base, 2)} | ${per(rows[4]!.nodePct - base)} |`);
}

await main();
