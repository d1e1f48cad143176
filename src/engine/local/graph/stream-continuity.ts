// Outgoing stream numbering that survives a change of source: our SSRC stays, sequence numbers
// run on from the last one sent and timestamps from the last one plus the time that passed
// (like mediasoup's SeqManager / LiveKit's rtpmunger). Shared by every endpoint that sends RTP.

export interface Continuity {
  /** The source now feeding the stream (origin element and its SSRC). */
  keyOrigin?: string;
  keySsrc?: number;
  seqOffset: number;
  tsOffset: number;
  lastSeq?: number;
  lastTs: number;
  lastSentAt: number;
}

export const newContinuity = (): Continuity => ({ seqOffset: 0, tsOffset: 0, lastTs: 0, lastSentAt: 0 });

/** Our sequence number and timestamp for an incoming packet (`now` in ms, performance.now()). */
export function continueStream(
  c: Continuity, origin: string, ssrc: number, seqIn: number, tsIn: number, clockRate: number, now: number,
): { seq: number; ts: number } {
  if (c.keyOrigin !== origin || c.keySsrc !== ssrc) {
    if (c.lastSeq !== undefined) {
      const step = Math.max(1, Math.round(((now - c.lastSentAt) * clockRate) / 1000));
      c.seqOffset = (c.lastSeq + 1 - seqIn) & 0xffff;
      c.tsOffset = (c.lastTs + step - tsIn) >>> 0;
    }
    c.keyOrigin = origin;
    c.keySsrc = ssrc;
  }
  const seq = (seqIn + c.seqOffset) & 0xffff;
  const ts = (tsIn + c.tsOffset) >>> 0;
  // Only a packet ahead of the last one moves the stream on (late ones keep their numbers).
  if (c.lastSeq === undefined || ((seq - c.lastSeq) & 0xffff) < 0x8000) {
    c.lastSeq = seq;
    c.lastTs = ts;
    c.lastSentAt = now;
  }
  return { seq, ts };
}
