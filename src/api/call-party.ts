// An API connection as a party of calls: what a call tells it becomes the NkMEDIA `invite`
// request and `class:"media", subclass:"call"` events (docs/API.md §10), each with the
// `events_body` the client gave for that call (at `create`, in its invite reply, or `accepted`).
import { inviteReplySchema } from '../protocol/call-schemas.js';
import { wireReason } from '../protocol/errors.js';
import { displayUser } from '../util/principals.js';
import type { CallConnection, CallRef, Invitation, InviteReply, PartyEvent } from '../core/calls/types.js';
import type { EventBus, EventData, Subscriber, SubscriptionKey } from './event-bus.js';

/** A client's reply to a request the server sent it. */
export interface ClientReply { result: 'ok' | 'error'; data?: unknown }

/** A connection that receives events and answers the server's requests. */
export interface RequestingSubscriber extends Subscriber {
  request(cls: string, subclass: string, cmd: string, data: unknown, opts?: { timeoutMs?: number; signal?: AbortSignal }): Promise<ClientReply>;
}

export const callKey = (id: string): SubscriptionKey => ({ class: 'media', subclass: 'call', type: '*', obj_id: id });

export class WireCallParty implements CallConnection {
  /** The `events_body` of each call this party is in (dropped with the call object). */
  private readonly bodies = new WeakMap<CallRef, Record<string, unknown>>();

  constructor(private readonly conn: RequestingSubscriber, private readonly bus: EventBus) {}

  get id(): string { return this.conn.id; }
  get user(): string { return this.conn.user; }

  /** What the client wants added to the events of `call` (its `events_body`). */
  setEventsBody(call: CallRef, body: Record<string, unknown> | undefined): void {
    if (body) this.bodies.set(call, body);
  }

  async invite(call: CallRef, inv: Invitation, opts: { timeoutMs: number; signal: AbortSignal }): Promise<InviteReply> {
    const reply = await this.conn.request('media', 'call', 'invite', {
      call_id: call.id,
      type: inv.kind,
      session_id: inv.sessionId,
      offer: inv.offer,
      caller: inv.caller,
      user_id: displayUser(inv.callerUser),
    }, opts);
    if (reply.result !== 'ok') return { willAnswer: false };
    // A reply's options are optional: a malformed one is an `ok` with the defaults.
    const parsed = inviteReplySchema.safeParse(reply.data ?? {});
    const o = parsed.success ? parsed.data : {};
    this.setEventsBody(call, o.events_body);
    return { willAnswer: true, follow: o.subscribe !== false };
  }

  follow(call: CallRef, on: boolean): void {
    if (on) this.bus.subscribe(this.conn, callKey(call.id), this.bodies.get(call));
    else this.bus.unsubscribe(this.conn, callKey(call.id));
  }

  notify(call: CallRef, ev: PartyEvent): void {
    const body: Record<string, unknown> = { ...(this.bodies.get(call) ?? {}) };
    let type: string;
    switch (ev.type) {
      case 'answer': type = 'answer'; body.answer = ev.answer; break;
      case 'candidate': type = 'candidate'; Object.assign(body, ev.candidate); break;
      case 'candidateEnd': type = 'candidate_end'; break;
      case 'legEnded': type = 'hangup'; Object.assign(body, wireReason(ev.cause)); break;
    }
    body.session_id = ev.sessionId;
    const e: EventData = { class: 'media', subclass: 'call', type, obj_id: call.id, body };
    this.conn.deliver(e);
  }
}
