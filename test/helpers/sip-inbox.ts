// What the raw SIP test peers share: messages the UA sent them, queued until a test asks for
// one, or handed straight to a test already waiting for it.
import type { SipMessage } from '../../src/sip/message.js';

export class SipInbox {
  /** Received messages nobody has asked for yet. */
  readonly inbox: SipMessage[] = [];
  private waiters: { pred: (m: SipMessage) => boolean; resolve: (m: SipMessage) => void }[] = [];

  /** Delivers one received message: to the first waiter it matches, else to the inbox. */
  protected got(m: SipMessage): void {
    const w = this.waiters.find((x) => x.pred(m));
    if (w) {
      this.waiters = this.waiters.filter((x) => x !== w);
      w.resolve(m);
    } else {
      this.inbox.push(m);
    }
  }

  /** The first message matching `pred` (already queued or still to come); `failure` after `ms`. */
  protected waitFor(pred: (m: SipMessage) => boolean, ms: number, failure: string): Promise<SipMessage> {
    const i = this.inbox.findIndex(pred);
    if (i >= 0) return Promise.resolve(this.inbox.splice(i, 1)[0]!);
    return new Promise((resolve, reject) => {
      const w = { pred, resolve: (m: SipMessage) => { clearTimeout(t); resolve(m); } };
      const t = setTimeout(() => { this.waiters = this.waiters.filter((x) => x !== w); reject(new Error(failure)); }, ms);
      this.waiters.push(w);
    });
  }
}
