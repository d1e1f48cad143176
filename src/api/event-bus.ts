// The event bus: subscriptions keyed as the original (docs/API.md §4), with two deliberate
// fixes: a subscriber gets each event once even when several of its subscriptions match, and
// a non-admin subscriber only gets events about objects its user may see.

export interface BusEvent {
  class: string;
  subclass?: string;
  type?: string;
  obj_id?: string;
  body?: Record<string, unknown>;
  /** The user owning the object; events with an owner reach only that user and admins. */
  owner?: string;
  /** Other users the object is shared with (a call's callees), who may see it too. */
  viewers?: readonly string[];
}

/** The wire shape of an event's data (no owner). */
export interface EventData {
  class: string;
  subclass?: string;
  type?: string;
  obj_id?: string;
  body?: Record<string, unknown>;
}

export interface Subscriber {
  readonly id: string;
  readonly user: string;
  readonly admin: boolean;
  deliver(event: EventData): void;
}

export interface SubscriptionKey { class: string; subclass: string; type: string; obj_id: string }
export interface Subscription extends SubscriptionKey { body?: Record<string, unknown> }

const ANY = '*';

interface Entry { sub: Subscriber; body?: Record<string, unknown> }

export class EventBus {
  /** class → "subclass/type" → obj_id → subscriber id → entry */
  private readonly index = new Map<string, Map<string, Map<string, Map<string, Entry>>>>();
  private readonly bySubscriber = new Map<string, { sub: Subscriber; subs: Map<string, Subscription> }>();
  /** obj_id → subscriber id → keys of its subscriptions naming that object (for removeForObject). */
  private readonly byObject = new Map<string, Map<string, Set<string>>>();

  private static keyOf(k: SubscriptionKey): string { return `${k.class}\u0000${k.subclass}\u0000${k.type}\u0000${k.obj_id}`; }

  subscribe(sub: Subscriber, key: SubscriptionKey, body?: Record<string, unknown>): void {
    const byClass = getOrInit(this.index, key.class, () => new Map());
    const byType = getOrInit(byClass, `${key.subclass}/${key.type}`, () => new Map());
    const byObj = getOrInit(byType, key.obj_id, () => new Map());
    byObj.set(sub.id, { sub, body });
    const mine = getOrInit(this.bySubscriber, sub.id, () => ({ sub, subs: new Map<string, Subscription>() }));
    const k = EventBus.keyOf(key);
    mine.subs.set(k, { ...key, ...(body ? { body } : {}) });
    if (key.obj_id !== ANY) getOrInit(getOrInit(this.byObject, key.obj_id, () => new Map()), sub.id, () => new Set()).add(k);
  }

  /** How many subscriptions a subscriber holds. */
  countOf(sub: Subscriber): number { return this.bySubscriber.get(sub.id)?.subs.size ?? 0; }

  /** Removes a subscription matching exactly; returns whether one existed. */
  unsubscribe(sub: Subscriber, key: SubscriptionKey): boolean {
    const mine = this.bySubscriber.get(sub.id);
    const k = EventBus.keyOf(key);
    if (!mine?.subs.delete(k)) return false;
    if (mine.subs.size === 0) this.bySubscriber.delete(sub.id);
    const objSubs = this.byObject.get(key.obj_id);
    const keys = objSubs?.get(sub.id);
    keys?.delete(k);
    if (keys && keys.size === 0) objSubs!.delete(sub.id);
    if (objSubs && objSubs.size === 0) this.byObject.delete(key.obj_id);
    const byClass = this.index.get(key.class);
    const byType = byClass?.get(`${key.subclass}/${key.type}`);
    const byObj = byType?.get(key.obj_id);
    byObj?.delete(sub.id);
    if (byObj && byObj.size === 0) byType!.delete(key.obj_id);
    if (byType && byType.size === 0) byClass!.delete(`${key.subclass}/${key.type}`);
    if (byClass && byClass.size === 0) this.index.delete(key.class);
    return true;
  }

  subscriptions(sub: Subscriber): Subscription[] {
    return [...(this.bySubscriber.get(sub.id)?.subs.values() ?? [])];
  }

  removeAll(sub: Subscriber): void {
    for (const s of this.subscriptions(sub)) this.unsubscribe(sub, s);
  }

  /** Subscriptions whose obj_id is exactly this id (e.g. to drop them when the object ends). */
  removeForObject(objId: string): void {
    // Indexed: a session's end costs its own subscriptions, not a scan of everyone's.
    const objSubs = this.byObject.get(objId);
    if (!objSubs) return;
    for (const [subId, keys] of [...objSubs]) {
      const mine = this.bySubscriber.get(subId);
      if (!mine) continue;
      for (const k of [...keys]) {
        const s = mine.subs.get(k);
        if (s) this.unsubscribe(mine.sub, s);
      }
    }
  }

  get subscriptionCount(): number {
    let n = 0;
    for (const m of this.bySubscriber.values()) n += m.subs.size;
    return n;
  }

  publish(event: BusEvent, direct?: { to: Subscriber; body?: Record<string, unknown> }): void {
    const matched = new Map<string, Entry>();
    const byClass = this.index.get(event.class);
    if (byClass) {
      const sub = event.subclass ?? ANY;
      const type = event.type ?? ANY;
      // Most specific first: its body wins when one subscriber has several matches.
      for (const typeKey of [`${sub}/${type}`, `${sub}/${ANY}`, `${ANY}/${ANY}`]) {
        const byObj = byClass.get(typeKey);
        if (!byObj) continue;
        for (const obj of event.obj_id !== undefined ? [event.obj_id, ANY] : [ANY]) {
          const entries = byObj.get(obj);
          if (!entries) continue;
          for (const [id, entry] of entries) if (!matched.has(id)) matched.set(id, entry);
        }
      }
    }
    if (direct && !matched.has(direct.to.id)) matched.set(direct.to.id, { sub: direct.to, body: direct.body });
    for (const { sub, body } of matched.values()) {
      if (event.owner !== undefined && !sub.admin && sub.user !== event.owner && sub !== direct?.to && !event.viewers?.includes(sub.user)) continue;
      sub.deliver(toWire(event, body));
    }
  }
}

function toWire(event: BusEvent, extraBody?: Record<string, unknown>): EventData {
  const out: EventData = { class: event.class };
  if (event.subclass !== undefined && event.subclass !== ANY) out.subclass = event.subclass;
  if (event.type !== undefined && event.type !== ANY) out.type = event.type;
  if (event.obj_id !== undefined && event.obj_id !== ANY) out.obj_id = event.obj_id;
  // The event's own keys win over the subscription body (as the original).
  const body = extraBody ? { ...extraBody, ...(event.body ?? {}) } : event.body;
  if (body && Object.keys(body).length > 0) out.body = body;
  return out;
}

function getOrInit<K, V>(map: Map<K, V>, key: K, init: () => V): V {
  let v = map.get(key);
  if (v === undefined) { v = init(); map.set(key, v); }
  return v;
}
