// Audio transcoding between elements whose codecs disagree (a SIP phone on PCMU and a browser
// on Opus): one AudioTranscoder per incoming stream, replaced when the stream or codec changes.
import { RtpHeader, RtpPacket } from 'werift';
import { randomInt } from 'node:crypto';
import type { CodecInfo, MediaUnit } from './element.js';
import { AudioTranscoder, codecFromMime } from '../audio/transcoder.js';

type RtpUnit = Extract<MediaUnit, { rtp: unknown }>;

export class AudioAdapter {
  private current?: { key: string; tx: AudioTranscoder; ssrc: number; seq: number };

  /** The transcoded units to send for `unit` (maybe none yet); undefined when not transcodable. */
  adapt(unit: RtpUnit, target: CodecInfo): MediaUnit[] | undefined {
    const from = codecFromMime(unit.codec.mimeType);
    const to = codecFromMime(target.mimeType);
    if (!from || !to) return undefined;
    const h = unit.rtp.header;
    const key = `${unit.origin}/${h.ssrc}/${from}>${to}`;
    if (this.current?.key !== key) {
      this.current?.tx.close();
      // A new SSRC per transcoder makes the sender's continuity logic treat it as a new source.
      this.current = { key, tx: new AudioTranscoder(from, to), ssrc: randomInt(1, 0xffffffff), seq: randomInt(0, 0xffff) };
    }
    const c = this.current;
    const origin = `${unit.origin}~${to}`;
    return c.tx.push(unit.rtp.payload, h.sequenceNumber, h.timestamp, h.marker).map((p) => {
      c.seq = (c.seq + 1) & 0xffff;
      const header = new RtpHeader({ ssrc: c.ssrc, sequenceNumber: c.seq, timestamp: p.timestamp, marker: p.marker, payloadType: 0 });
      return { kind: 'audio', rtp: new RtpPacket(header, p.payload), codec: target, origin };
    });
  }

  close(): void {
    this.current?.tx.close();
    this.current = undefined;
  }
}
