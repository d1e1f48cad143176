// baresip (Debian's SIP softphone) as a real SIP peer: its own config folder, SIP on
// 127.0.0.1, G.711 only, a tone WAV as its microphone (aufile) and what it hears dumped to a
// WAV (sndfile), auto-answer. Commands run at start (`-e`), and it quits after `seconds`.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freeUdpPort } from './rtp-peer.js';

export const haveBaresip = spawnSync('baresip', ['-h']).error === undefined;
const ffmpeg = process.env.NKMEDIA_FFMPEG ?? 'ffmpeg';

export interface BaresipOptions {
  /** SIP port baresip listens on (127.0.0.1). */
  sipPort: number;
  /** Frequency of the tone it sends. */
  toneHz: number;
  /** Commands run at start, e.g. '/dial sip:echo@127.0.0.1:5060'. */
  commands?: string[];
  /** Quit (hanging up) after this many seconds. */
  seconds: number;
  user?: string;
}

export class Baresip {
  private readonly proc: ChildProcess;
  private out = '';
  readonly exited: Promise<number | null>;
  /** Resolves once baresip says it is ready (its SIP socket is bound); rejects if it exits first. */
  readonly ready: Promise<void>;

  readonly sipPort: number;

  private constructor(readonly dir: string, o: BaresipOptions) {
    this.sipPort = o.sipPort;
    const args = ['-f', dir, '-t', String(o.seconds)];
    for (const c of o.commands ?? []) args.push('-e', c);
    this.proc = spawn('baresip', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let isReady: () => void = () => undefined;
    this.ready = new Promise<void>((resolve) => { isReady = resolve; });
    const take = (d: Buffer) => {
      this.out += String(d);
      if (this.out.includes('baresip is ready')) isReady();
    };
    this.proc.stdout!.on('data', take);
    this.proc.stderr!.on('data', take);
    const killer = setTimeout(() => this.proc.kill('SIGKILL'), (o.seconds + 15) * 1000);
    this.exited = new Promise((resolve) => this.proc.on('close', (code) => { clearTimeout(killer); resolve(code); }));
    this.ready = Promise.race([this.ready, this.exited.then((code) => {
      if (!this.out.includes('baresip is ready')) throw new Error(`baresip exited (${code}) before it was ready: ${this.out.slice(-1000)}`);
    })]);
  }

  /**
   * Starts baresip on a free loopback port and waits until it is ready. A port found free can be
   * taken by another process before baresip binds it (tests run in parallel and media sockets
   * take ephemeral ports): then baresip exits with EADDRINUSE and we try another port.
   */
  static async launch(o: Omit<BaresipOptions, 'sipPort'>): Promise<Baresip> {
    for (let attempt = 1; ; attempt++) {
      const p = Baresip.start({ ...o, sipPort: await freeUdpPort() });
      try {
        await p.ready;
        return p;
      } catch (err) {
        p.cleanup();
        if (attempt >= 5 || !p.output.includes('Address already in use')) throw err;
      }
    }
  }

  static start(o: BaresipOptions): Baresip {
    const dir = mkdtempSync(join(tmpdir(), 'nkm-baresip-'));
    mkdirSync(join(dir, 'snd'));
    const tone = join(dir, 'tone.wav');
    const gen = spawnSync(ffmpeg, ['-hide_banner', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i', `sine=frequency=${o.toneHz}:duration=${o.seconds + 5}:sample_rate=8000`,
      '-af', 'volume=0.5', '-ac', '1', '-c:a', 'pcm_s16le', tone]);
    if (gen.status !== 0) throw new Error(`ffmpeg could not make the tone: ${gen.stderr}`);
    writeFileSync(join(dir, 'config'), [
      'poll_method epoll',
      `sip_listen 127.0.0.1:${o.sipPort}`,
      `audio_player aufile,${join(dir, 'player.wav')}`,
      `audio_source aufile,${tone}`,
      `audio_alert aufile,${join(dir, 'alert.wav')}`,
      'ausrc_srate 8000',
      'auplay_srate 8000',
      'module_path /usr/lib/baresip/modules',
      'module g711.so',
      'module aufile.so',
      'module sndfile.so',
      'module menu.so',
      'module account.so',
      `snd_path ${join(dir, 'snd')}`,
      '',
    ].join('\n'));
    writeFileSync(join(dir, 'accounts'), `<sip:${o.user ?? 'bob'}@127.0.0.1:${o.sipPort}>;auth_pass=none;regint=0;answermode=auto\n`);
    writeFileSync(join(dir, 'contacts'), '');
    return new Baresip(dir, o);
  }

  get output(): string { return this.out; }

  /** What baresip heard (decoded), 8 kHz mono; empty when it heard nothing. */
  heard(): Int16Array {
    const f = readdirSync(join(this.dir, 'snd')).find((n) => n.endsWith('-dec.wav'));
    if (!f) return new Int16Array(0);
    const b = readFileSync(join(this.dir, 'snd', f));
    const i = b.indexOf('data');
    const data = b.subarray(i + 8);
    return new Int16Array(data.buffer.slice(data.byteOffset, data.byteOffset + (data.length & ~1)));
  }

  kill(): void { this.proc.kill('SIGTERM'); }

  cleanup(): void {
    this.proc.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }
}
