// `class:"media", subclass:"call"` commands (docs/API.md §10).
import type { z } from 'zod';
import { ApiError } from '../protocol/errors.js';
import { checkCandidate } from '../protocol/sdp.js';
import {
  callAcceptedSchema, callCandidateSchema, callCreateSchema, callHangupSchema, callIdOnly, callRingingSchema,
} from '../protocol/call-schemas.js';
import type { Call, Leg } from '../core/calls/call.js';
import { parseCommand } from './parse.js';
import { callInfo } from './call-events.js';
import type { CommandContext, Handler } from './context.js';

const parse = <S extends z.ZodObject>(ctx: CommandContext, cmd: string, schema: S, data: unknown) => parseCommand(ctx, 'call', cmd, schema, data);

const create: Handler = async (ctx, data) => {
  const req = parse(ctx, 'create', callCreateSchema, data);
  const { calls } = ctx.services;
  if (req.wait_reply) ctx.conn.sendAck(ctx.tid);
  const party = ctx.conn.callParty;
  return calls.create(req, party, ctx.caller, { onCall: (call) => party.setEventsBody(call, req.events_body) });
};

/** The call (visible to the caller of the command) and the leg its connection was rung on. */
function calleeLeg(ctx: CommandContext, callId: string): { call: Call; leg: Leg } {
  const call = ctx.services.calls.get(callId, ctx.caller);
  return { call, leg: ctx.services.calls.legFor(call, ctx.conn.id) };
}

/** The caller's side (the connection that placed it) or a callee's leg; anyone else is not a party. */
function party(ctx: CommandContext, call: Call): Leg | undefined {
  if (call.party.id === ctx.conn.id) return undefined;
  return ctx.services.calls.legFor(call, ctx.conn.id);
}

const ringing: Handler = async (ctx, data) => {
  const req = parse(ctx, 'ringing', callRingingSchema, data);
  const { call, leg } = calleeLeg(ctx, req.call_id);
  call.ringing(leg, req.callee);
  return {};
};

const accepted: Handler = async (ctx, data) => {
  const req = parse(ctx, 'accepted', callAcceptedSchema, data);
  const { call, leg } = calleeLeg(ctx, req.call_id);
  await call.accept(leg, req.answer, req.callee);
  // Its `subscribe` and `events_body` may change how the callee follows the call.
  ctx.conn.callParty.setEventsBody(call, req.events_body);
  if (req.subscribe === false) call.follow(leg, false);
  else if (req.subscribe === true || req.events_body !== undefined) call.follow(leg, true);
  return {};
};

const rejected: Handler = async (ctx, data) => {
  const { call_id } = parse(ctx, 'rejected', callIdOnly, data);
  const { call, leg } = calleeLeg(ctx, call_id);
  call.reject(leg, 'rejected');
  return {};
};

const hangup: Handler = async (ctx, data) => {
  const { call_id, reason } = parse(ctx, 'hangup', callHangupSchema, data);
  const call = ctx.services.calls.get(call_id, ctx.caller);
  // The caller's user (on any connection) and admins may end it; a callee acts on its own leg.
  const mine = call.party.id === ctx.conn.id || ctx.caller.admin || ctx.caller.user === call.callerUser;
  const leg = call.legOf(ctx.conn.id);
  if (leg) await call.hangup(leg, reason);
  else if (mine) await call.hangup(undefined, reason);
  else throw new ApiError('not_invited');
  return {};
};

const setCandidate: Handler = async (ctx, data) => {
  const { call_id, ...c } = parse(ctx, 'set_candidate', callCandidateSchema, data);
  const call = ctx.services.calls.get(call_id, ctx.caller);
  const leg = party(ctx, call);
  if (checkCandidate(c.candidate) === 'end') await call.candidate(leg, 'end');
  else await call.candidate(leg, { candidate: c.candidate.trim(), sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex });
  return {};
};

const setCandidateEnd: Handler = async (ctx, data) => {
  const { call_id } = parse(ctx, 'set_candidate_end', callIdOnly, data);
  const call = ctx.services.calls.get(call_id, ctx.caller);
  await call.candidate(party(ctx, call), 'end');
  return {};
};

const getInfo: Handler = async (ctx, data) => {
  const { call_id } = parse(ctx, 'get_info', callIdOnly, data);
  return callInfo(ctx.services.calls.get(call_id, ctx.caller));
};

const getList: Handler = async (ctx) => ctx.services.calls.list(ctx.caller).map((c) => ({ call_id: c.id, user_id: c.callerUser, state: c.state }));

export const callCommands: Record<string, Handler> = {
  create,
  ringing,
  accepted,
  rejected,
  hangup,
  set_candidate: setCandidate,
  set_candidate_end: setCandidateEnd,
  get_info: getInfo,
  get_list: getList,
  // Older names, as for sessions and rooms.
  info: getInfo,
  list: getList,
};
