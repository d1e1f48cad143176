// Recordings survive a crash: a server in its own process records two sessions fed with real
// VP8/Opus (one into WebM, one into MP4), is killed with SIGKILL 5 s in, and both files must
// still decode (each stream) to at least 3 s with ffmpeg.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { NkMediaClient, type EventData } from '../src/client/index.js';
import { connectParked, relay } from './helpers/flows.js';
import type { TestPeer } from './helpers/peer.js';
import { eventually } from './helpers/server.js';

const run = promisify(execFile);
const root = fileURLToPath(new URL('..', import.meta.url));

let dir: string;
let clip: string;
let child: ChildProcess | undefined;
let output = '';

/**
 * `nkmedia serve` from the sources (through tsx, so this checkout's code is what runs) in a
 * process of its own, which the test can kill. Resolves with its API URL.
 */
async function spawnServer(config: string): Promise<string> {
  const script = "const { main } = await import('./src/cli.ts'); const code = await main(process.argv.slice(1)); if (code >= 0) process.exit(code);";
  const proc = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, 'serve', '--config', config, '--port', '0', '--ice-loopback-only'], {
    cwd: root, stdio: ['ignore', 'pipe', 'pipe'],
  });
  child = proc;
  proc.stdout!.on('data', (d: Buffer) => { output += d.toString(); });
  proc.stderr!.on('data', (d: Buffer) => { output += d.toString(); });
  return new Promise<string>((resolve, reject) => {
    const onData = () => {
      const m = /listening on (ws:\/\/\S+)/.exec(output);
      if (m) { proc.stdout!.off('data', onData); resolve(m[1]!); }
    };
    proc.stdout!.on('data', onData);
    proc.once('exit', (code, signal) => reject(new Error(`server exited (${code ?? signal}): ${output}`)));
  });
}

/** Decodes one stream of a file to its end; returns how far it got (s) and what ffmpeg said. */
async function decodedSeconds(file: string, stream: 'v' | 'a'): Promise<{ seconds: number; errors: string }> {
  const { stdout, stderr } = await run('ffmpeg', ['-v', 'error', '-nostats', '-i', file, '-map', `0:${stream}`, '-progress', 'pipe:1', '-f', 'null', '-']);
  const times = [...stdout.matchAll(/^out_time=(\d+):(\d+):([\d.]+)$/gm)];
  const last = times.at(-1);
  assert.ok(last, `ffmpeg reported no progress for ${file}`);
  return { seconds: Number(last[1]) * 3600 + Number(last[2]) * 60 + Number(last[3]), errors: stderr.trim() };
}

async function codecs(file: string): Promise<string[]> {
  const { stdout } = await run('ffprobe', ['-v', 'error', '-show_entries', 'stream=codec_name', '-of', 'csv=p=0', file]);
  return stdout.split('\n').map((s) => s.trim()).filter(Boolean).sort();
}


before(() => {
  dir = mkdtempSync(join(tmpdir(), 'nkm-crash-'));
  const media = join(dir, 'media');
  execFileSync('mkdir', ['-p', media]);
  clip = join(media, 'clip.webm');
  // 20 s of VP8 test pattern and Opus tone, a keyframe a second (as encoders send them).
  execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=25', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
    '-t', '20', '-c:v', 'libvpx', '-b:v', '300k', '-g', '25', '-deadline', 'realtime', '-cpu-used', '8', '-c:a', 'libopus', '-ac', '2', '-shortest', clip]);
  // Media in the server's process, or on workers when the run asks for them (npm run test:workers):
  // then the recording is a worker's, which goes when the server it belongs to is killed.
  const workers = Number(process.env.NKMEDIA_TEST_WORKERS ?? 0);
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ recordings_dir: join(dir, 'recordings'), play_dirs: [media], log_level: 'warn', media: { workers } }));
});

after(() => {
  if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

describe('recordings when the server is killed', () => {
  it('leaves a WebM and an MP4 that decode up to the last second or two', { timeout: 90_000 }, async (t) => {
    const url = await spawnServer(join(dir, 'config.json'));
    const alice = await NkMediaClient.connect(url);
    await alice.login('alice');
    const events: EventData[] = [];
    alice.onEvent((e) => events.push(e));
    const peers: TestPeer[] = [];
    try {
      // The test client relays what a play session sends it into two sessions: real VP8/Opus.
      const source = await connectParked(alice, { type: 'play', uri: clip, loops: 0 });
      peers.push(source.peer);
      await eventually(() => source.peer.received.video > 25 && source.peer.received.audio > 25, 10_000, 'media from the player');
      const files: Record<'webm' | 'mp4', string> = { webm: '', mp4: '' };
      for (const format of ['webm', 'mp4'] as const) {
        const { id, peer } = await connectParked(alice, { type: 'park' });
        peers.push(peer);
        relay(source.peer, peer);
        const start = await alice.session('recorder_action', { session_id: id, action: 'start', uri: `crash.${format}` });
        assert.equal(start.mediaProfile, format.toUpperCase());
        files[format] = fileURLToPath(start.uri);
        await eventually(() => events.some((e) => e.obj_id === id && e.type === 'recorder' && e.body?.state === 'recording'), 5000, `${format} recording`);
      }
      await new Promise((r) => setTimeout(r, 5000));

      const exited = new Promise<NodeJS.Signals | null>((r) => child!.once('exit', (_code, signal) => r(signal)));
      child!.kill('SIGKILL');
      assert.equal(await exited, 'SIGKILL');

      for (const format of ['webm', 'mp4'] as const) {
        const file = files[format];
        assert.deepEqual(await codecs(file), ['opus', 'vp8'], `${format}: both streams in the killed file`);
        for (const stream of ['v', 'a'] as const) {
          const { seconds, errors } = await decodedSeconds(file, stream);
          t.diagnostic(`${format} ${stream === 'v' ? 'video' : 'audio'}: ${seconds.toFixed(2)} s decoded`);
          assert.ok(seconds >= 3, `${format} ${stream === 'v' ? 'video' : 'audio'}: ${seconds} s decoded of about 5 s recorded (${errors || 'no errors'})`);
        }
      }
    } finally {
      for (const p of peers) await p.close().catch(() => undefined);
      await alice.close().catch(() => undefined);
    }
  });
});
