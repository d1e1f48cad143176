// RFC 3550 receiver statistics for one incoming stream (appendix A.1, A.3, A.8): extended
// highest sequence number, cumulative and interval loss, interarrival jitter. Feeds our RTCP
// receiver reports and get_stats on plain RTP endpoints.
import { RtcpReceiverInfo } from 'werift';

const MAX_DROPOUT = 3000;
const MAX_MISORDER = 100;

export class ReceiveStats {
  private baseSeq = 0;
  private maxSeq = 0;
  private cycles = 0;
  private received = 0;
  private expectedPrior = 0;
  private receivedPrior = 0;
  private transit?: number;
  /** Interarrival jitter in timestamp units. */
  jitter = 0;
  private started = false;
  /** Middle 32 bits of the NTP time of the last SR received, and when (ms). */
  private lastSr?: { mid: number; at: number };

  constructor(readonly ssrc: number, private readonly clockRate: number) {}

  /** One valid packet: its sequence number, RTP timestamp and arrival (ms). */
  update(seq: number, timestamp: number, arrivalMs: number): void {
    if (!this.started) {
      this.started = true;
      this.baseSeq = seq;
      this.maxSeq = seq;
    } else {
      const delta = (seq - this.maxSeq) & 0xffff;
      if (delta < MAX_DROPOUT) {
        if (seq < this.maxSeq) this.cycles += 0x10000;
        this.maxSeq = seq;
      } else if (delta <= 0x10000 - MAX_MISORDER) {
        // A big jump: the sender restarted; start over from here.
        this.baseSeq = seq;
        this.maxSeq = seq;
        this.cycles = 0;
        this.received = 0;
        this.expectedPrior = 0;
        this.receivedPrior = 0;
      }
    }
    this.received++;
    const arrival = (arrivalMs * this.clockRate) / 1000;
    const transit = arrival - timestamp;
    if (this.transit !== undefined) {
      let d = transit - this.transit;
      if (d < 0) d = -d;
      // Ignore absurd steps (a timestamp jump after a source switch): they are not jitter.
      if (d < this.clockRate * 10) this.jitter += (d - this.jitter) / 16;
    }
    this.transit = transit;
  }

  get expected(): number { return this.started ? this.cycles + this.maxSeq - this.baseSeq + 1 : 0; }
  get lost(): number { return Math.max(0, this.expected - this.received); }
  get packets(): number { return this.received; }

  srReceived(ntp: bigint, atMs: number): void {
    this.lastSr = { mid: Number((ntp >> 16n) & 0xffffffffn), at: atMs };
  }

  /** The report block for our next RR/SR (advances the interval counters). */
  report(nowMs: number): RtcpReceiverInfo {
    const expected = this.expected;
    const expectedInterval = expected - this.expectedPrior;
    const receivedInterval = this.received - this.receivedPrior;
    this.expectedPrior = expected;
    this.receivedPrior = this.received;
    const lostInterval = expectedInterval - receivedInterval;
    const fraction = expectedInterval <= 0 || lostInterval <= 0 ? 0 : Math.min(255, Math.floor((lostInterval << 8) / expectedInterval));
    return new RtcpReceiverInfo({
      ssrc: this.ssrc,
      fractionLost: fraction,
      packetsLost: Math.min(this.lost, 0x7fffff),
      highestSequence: (this.cycles + this.maxSeq) >>> 0,
      jitter: Math.floor(this.jitter) >>> 0,
      lsr: this.lastSr?.mid ?? 0,
      dlsr: this.lastSr ? Math.floor(((nowMs - this.lastSr.at) / 1000) * 65536) >>> 0 : 0,
    });
  }
}
