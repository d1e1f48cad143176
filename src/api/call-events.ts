// Calls in the NkMEDIA API's words: the call's own events (`ringing`, `accepted`, `hangup`),
// published to its followers (docs/API.md §10), and its `get_info` body. What concerns one party
// alone (its SDP, candidates, its leg's end) is rendered by that party (call-party.ts).
import type { Call, Leg } from '../core/calls/call.js';
import type { CallManager } from '../core/calls/manager.js';
import { displayUser } from '../util/principals.js';
import { wireReason } from '../protocol/errors.js';
import type { EventBus } from './event-bus.js';

/** Publishes every call's events from its creation on (call once per core, before any call). */
export function publishCallEvents(calls: CallManager, bus: EventBus): void {
  calls.events.on('call', (call) => follow(call, bus));
}

function follow(call: Call, bus: EventBus): void {
  // Its caller's and callees' users may see it (as may admins).
  const publish = (type: string, body: Record<string, unknown>): void => {
    const viewers = [...new Set(call.legs.map((l) => l.spec.user).filter((u) => u !== ''))];
    bus.publish({ class: 'media', subclass: 'call', type, obj_id: call.id, body, owner: call.callerUser, viewers });
  };
  call.events.on('ringing', (leg) => publish('ringing', calleeBody(leg)));
  call.events.on('accepted', (leg) => publish('accepted', calleeBody(leg)));
  call.events.on('hangup', (cause) => {
    publish('hangup', wireReason(cause));
    // Nobody follows an ended call.
    bus.removeForObject(call.id);
  });
}

function calleeBody(leg: Leg): Record<string, unknown> {
  return { callee: leg.callee ?? {}, ...(leg.spec.user ? { user_id: leg.spec.user } : { uri: leg.spec.target }) };
}

/** A call's `get_info` body. */
export function callInfo(call: Call): Record<string, unknown> {
  const o = call.opts;
  const info: Record<string, unknown> = {
    call_id: call.id,
    state: call.state,
    user_id: displayUser(call.callerUser),
    user_session: call.party.id,
    session_id: call.callerSessionId,
    callee: o.callee,
    caller: o.callerInfo,
    ring_time: o.ringTime,
    start_time: Math.floor(call.startTime / 1000),
    legs: call.legs.map(legInfo),
  };
  if (o.calleeType !== undefined) info.type = o.calleeType;
  if (o.meta !== undefined) info.call_meta = o.meta;
  if (call.answeredLeg && call.state === 'answered') info.answered_by = call.answeredLeg.id;
  if (call.answerTime !== undefined) info.answer_time = Math.floor(call.answerTime / 1000);
  return info;
}

function legInfo(l: Leg): Record<string, unknown> {
  return {
    session_id: l.id,
    type: l.spec.kind,
    callee: l.spec.target,
    state: l.state,
    ...(l.spec.user ? { user_id: l.spec.user } : {}),
    ...(l.spec.conn ? { user_session: l.spec.conn.id } : {}),
    ...(l.callee ? { callee_info: l.callee } : {}),
    ...(l.endCause ? { reason: wireReason(l.endCause) } : {}),
  };
}
