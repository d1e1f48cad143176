// A plain RTP peer for tests: a UDP socket pair (RTP on an even port, RTCP on the next), an
// SDP describing it, a paced sender and a log of what arrives. Stands in for a SIP phone.
import dgram from 'node:dgram';
import sdpTransform from 'sdp-transform';

export interface RtpRx { pt: number; seq: number; ts: number; ssrc: number; marker: boolean; payload: Buffer; from: string; at: number }
export interface CodecLine { pt: number; name: string; rate: number; channels?: number; fmtp?: string }

export class RtpPeer {
  readonly rx: RtpRx[] = [];
  readonly rtcpRx: { data: Buffer; from: string }[] = [];
  private timers = new Set<NodeJS.Timeout>();

  private constructor(readonly rtp: dgram.Socket, readonly rtcp: dgram.Socket, readonly host: string) {
    rtp.on('message', (m, r) => {
      if (m.length < 12) return;
      if (m[1]! >= 192 && m[1]! <= 223) { this.rtcpRx.push({ data: m, from: `${r.address}:${r.port}` }); return; }
      const cc = m[0]! & 0x0f;
      this.rx.push({
        pt: m[1]! & 0x7f, marker: (m[1]! & 0x80) !== 0, seq: m.readUInt16BE(2), ts: m.readUInt32BE(4), ssrc: m.readUInt32BE(8),
        payload: m.subarray(12 + cc * 4), from: `${r.address}:${r.port}`, at: performance.now(),
      });
    });
    rtcp.on('message', (m, r) => this.rtcpRx.push({ data: m, from: `${r.address}:${r.port}` }));
  }

  get port(): number { return this.rtp.address().port; }

  static async open(host = '127.0.0.1'): Promise<RtpPeer> {
    for (let i = 0; i < 50; i++) {
      const rtp = await bind(host, 0);
      const port = rtp.address().port;
      if (port % 2 === 1) { rtp.close(); continue; }
      try {
        const rtcp = await bind(host, port + 1);
        return new RtpPeer(rtp, rtcp, host);
      } catch {
        rtp.close();
      }
    }
    throw new Error('no RTP port pair');
  }

  /** An SDP for this peer (audio line, optional video line on the same port pair is not needed here). */
  sdp(codecs: CodecLine[], opts: { direction?: string; address?: string; kind?: 'audio' | 'video'; extra?: string[] } = {}): string {
    const addr = opts.address ?? this.host;
    const lines = ['v=0', `o=test 1 1 IN IP4 ${addr}`, 's=test', `c=IN IP4 ${addr}`, 't=0 0',
      `m=${opts.kind ?? 'audio'} ${this.port} RTP/AVP ${codecs.map((c) => c.pt).join(' ')}`];
    for (const c of codecs) {
      lines.push(`a=rtpmap:${c.pt} ${c.name}/${c.rate}${c.channels ? `/${c.channels}` : ''}`);
      if (c.fmtp) lines.push(`a=fmtp:${c.pt} ${c.fmtp}`);
    }
    lines.push(...(opts.extra ?? []), `a=${opts.direction ?? 'sendrecv'}`);
    return lines.join('\r\n') + '\r\n';
  }

  /** Sends `count` packets every `ptimeMs` (payload per index) to `to`; resolves when done. */
  send(to: { address: string; port: number }, o: { pt: number; count: number; ptimeMs?: number; samples: number; payload: (i: number) => Buffer; ssrc?: number; from?: dgram.Socket }): Promise<void> {
    const ssrc = o.ssrc ?? 0x1234abcd;
    const sock = o.from ?? this.rtp;
    let i = 0;
    return new Promise((resolve) => {
      const t = setInterval(() => {
        if (i >= o.count) { clearInterval(t); this.timers.delete(t); resolve(); return; }
        const payload = o.payload(i);
        const b = Buffer.alloc(12 + payload.length);
        b[0] = 0x80;
        b[1] = (i === 0 ? 0x80 : 0) | o.pt;
        b.writeUInt16BE((1000 + i) & 0xffff, 2);
        b.writeUInt32BE((5000 + i * o.samples) >>> 0, 4);
        b.writeUInt32BE(ssrc, 8);
        payload.copy(b, 12);
        sock.send(b, to.port, to.address);
        i++;
      }, o.ptimeMs ?? 20);
      this.timers.add(t);
    });
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    await Promise.all([this.rtp, this.rtcp].map((s) => new Promise<void>((r) => s.close(() => r()))));
  }
}

export function bind(host: string, port: number): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    s.once('error', (e) => { s.close(); reject(e); });
    s.bind(port, host, () => resolve(s));
  });
}

/** A UDP port free on `host` a moment ago (another process may take it before the caller binds it). */
export async function freeUdpPort(host = '127.0.0.1'): Promise<number> {
  const s = await bind(host, 0);
  const port = s.address().port;
  s.close();
  return port;
}

/** Where an RTP SDP wants media of a kind, and its payload types by codec name. */
export function mediaOf(sdp: string, kind: 'audio' | 'video' = 'audio'): { address: string; port: number; pts: Map<string, number>; direction: string } {
  const p = sdpTransform.parse(sdp);
  const m = p.media.find((x) => x.type === kind);
  if (!m) throw new Error(`no ${kind} in SDP`);
  const pts = new Map<string, number>();
  for (const r of m.rtp) pts.set(r.codec.toUpperCase(), r.payload);
  for (const pt of String(m.payloads ?? '').split(' ').map(Number)) {
    if (pt === 0) pts.set('PCMU', 0);
    if (pt === 8) pts.set('PCMA', 8);
    if (pt === 9) pts.set('G722', 9);
  }
  return { address: m.connection?.ip ?? p.connection!.ip, port: m.port, pts, direction: m.direction ?? 'sendrecv' };
}

/** Goertzel power of `freq` in 16-bit samples, relative to the total power (0..1). */
export function toneShare(samples: Int16Array, rate: number, freq: number): number {
  const k = 2 * Math.cos((2 * Math.PI * freq) / rate);
  let s1 = 0;
  let s2 = 0;
  let total = 0;
  for (const x of samples) {
    const s0 = x + k * s1 - s2;
    s2 = s1;
    s1 = s0;
    total += x * x;
  }
  const power = s1 * s1 + s2 * s2 - k * s1 * s2;
  return total === 0 ? 0 : (2 * power) / (samples.length * total);
}

/**
 * Like toneShare, over 20 ms windows (energy-weighted): a phone's jitter buffer may drop or
 * stretch frames, which breaks the tone's phase across a long window but not within one.
 */
export function toneShareWindowed(samples: Int16Array, rate: number, freq: number, windowMs = 20): number {
  const n = Math.round((rate * windowMs) / 1000);
  let power = 0;
  let total = 0;
  for (let i = 0; i + n <= samples.length; i += n) {
    const w = samples.subarray(i, i + n);
    let e = 0;
    for (const x of w) e += x * x;
    power += toneShare(w, rate, freq) * e;
    total += e;
  }
  return total === 0 ? 0 : power / total;
}

/** RMS level of 16-bit samples in dBFS. */
export function rmsDb(samples: Int16Array): number {
  let sum = 0;
  for (const x of samples) sum += x * x;
  return 10 * Math.log10(sum / Math.max(1, samples.length) / (32768 * 32768) + 1e-12);
}
