// `class:"media", subclass:"session"` commands (docs/API.md §5).
import type { z } from 'zod';
import { ApiError } from '../protocol/errors.js';
import { checkCandidate } from '../protocol/sdp.js';
import {
  candidateSchema, createSchema, playerActionSchema, recorderActionSchema, roomActionSchema,
  sessionIdOnly, setAnswerSchema, setTypeSchema, updateMediaSchema,
} from '../protocol/session-schemas.js';
import { parseCommand } from './parse.js';
import { sessionInfo, sessionStatus, setCreator } from './session-events.js';
import { displayUser } from '../util/principals.js';
import type { CommandContext, Handler } from './context.js';

const parse = <S extends z.ZodObject>(ctx: CommandContext, cmd: string, schema: S, data: unknown) => parseCommand(ctx, 'session', cmd, schema, data);

const create: Handler = async (ctx, data) => {
  const req = parse(ctx, 'create', createSchema, data);
  const { sessions, bus } = ctx.services;
  const id = req.session_id ?? sessions.newId();
  sessions.checkCreate(req, ctx.caller, id);
  // Subscribed before the session exists, so the creator misses none of its events.
  const key = { class: 'media', subclass: 'session', type: '*', obj_id: id };
  if (req.subscribe !== false) bus.subscribe(ctx.conn, key, req.events_body);
  if (req.wait_reply) ctx.conn.sendAck(ctx.tid);
  try {
    return await sessions.create(req, ctx.caller, id, { user: ctx.caller.user, connId: ctx.conn.id }, { onSession: (s) => setCreator(s, ctx.conn) });
  } catch (err) {
    // A session that started has sent `destroyed` by now (SessionManager.create waits for it)
    // and its stop dropped this subscription; one that never started leaves it to us.
    if (!sessions.lookup(id)) bus.unsubscribe(ctx.conn, key);
    throw err;
  }
};

const destroy: Handler = async (ctx, data) => {
  const { session_id } = parse(ctx, 'destroy', sessionIdOnly, data);
  // As the original: destroying what does not exist (or is not yours) is not an error.
  const s = ctx.services.sessions.lookup(session_id);
  if (s && s.visibleTo(ctx.caller)) await s.stop('user_stop');
  return {};
};

const setAnswer: Handler = async (ctx, data) => {
  const { session_id, answer } = parse(ctx, 'set_answer', setAnswerSchema, data);
  await ctx.services.sessions.getFor(session_id, ctx.caller).setAnswer(answer);
  return {};
};

function getSdp(which: 'offer' | 'answer'): Handler {
  return async (ctx, data) => {
    const { session_id } = parse(ctx, `get_${which}`, sessionIdOnly, data);
    const s = ctx.services.sessions.getFor(session_id, ctx.caller);
    ctx.conn.sendAck(ctx.tid);
    return { [which]: await s.waitSdp(which) };
  };
}

const updateMedia: Handler = async (ctx, data) => {
  const { session_id, ...update } = parse(ctx, 'update_media', updateMediaSchema, data);
  await ctx.services.sessions.getFor(session_id, ctx.caller).updateMedia(update);
  return {};
};

const setType: Handler = async (ctx, data) => {
  const req = parse(ctx, 'set_type', setTypeSchema, data);
  const s = ctx.services.sessions.getFor(req.session_id, ctx.caller);
  if (req.type === 'bridge' && req.peer_id === s.id) throw new ApiError('invalid_value', 'peer_id: a session cannot bridge with itself');
  // A session may bridge with its own master or slave whoever owns it (a call links its
  // parties so: the answering side can go to echo and back to the caller).
  const linked = req.type === 'bridge' && req.peer_id !== undefined && (s.masterId === req.peer_id || s.slaveIds.has(req.peer_id));
  return s.setType(ctx.services.sessions.resolveType(req, linked ? { ...ctx.caller, admin: true } : ctx.caller));
};

const recorderAction: Handler = async (ctx, data) => {
  const req = parse(ctx, 'recorder_action', recorderActionSchema, data);
  return ctx.services.sessions.getFor(req.session_id, ctx.caller).recorderAction(req.action ?? 'get_actions', req.uri);
};

const playerAction: Handler = async (ctx, data) => {
  const req = parse(ctx, 'player_action', playerActionSchema, data);
  const s = ctx.services.sessions.getFor(req.session_id, ctx.caller);
  // `start` is set_type play (docs/API.md §5.7), with the current URI when none is given.
  const start = () => {
    const uri = req.uri ?? (s.typeState.type === 'play' ? s.typeState.uri : undefined);
    return s.setType(ctx.services.sessions.resolveType({ type: 'play', uri, loops: req.loops }, ctx.caller));
  };
  return s.playerAction(req.action ?? 'get_actions', req, start);
};

const notYet = (cmd: string, schema: z.ZodObject, what: string): Handler => async (ctx, data) => {
  const req = parse(ctx, cmd, schema, data) as { session_id: string };
  ctx.services.sessions.getFor(req.session_id, ctx.caller);
  throw new ApiError('not_implemented', what);
};

const setCandidate: Handler = async (ctx, data) => {
  const { session_id, ...c } = parse(ctx, 'set_candidate', candidateSchema, data);
  const s = ctx.services.sessions.getFor(session_id, ctx.caller);
  if (checkCandidate(c.candidate) === 'end') s.clientCandidatesEnd();
  else await s.addClientCandidate({ candidate: c.candidate.trim(), sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex });
  return {};
};

const setCandidateEnd: Handler = async (ctx, data) => {
  const { session_id } = parse(ctx, 'set_candidate_end', sessionIdOnly, data);
  ctx.services.sessions.getFor(session_id, ctx.caller).clientCandidatesEnd();
  return {};
};

const getInfo: Handler = async (ctx, data) => {
  const { session_id } = parse(ctx, 'get_info', sessionIdOnly, data);
  return sessionInfo(ctx.services.sessions.getFor(session_id, ctx.caller));
};

const getStatus: Handler = async (ctx, data) => {
  const { session_id } = parse(ctx, 'get_status', sessionIdOnly, data);
  return sessionStatus(ctx.services.sessions.getFor(session_id, ctx.caller));
};

const getStats: Handler = async (ctx, data) => {
  const { session_id } = parse(ctx, 'get_stats', sessionIdOnly, data);
  return { stats: await ctx.services.sessions.getFor(session_id, ctx.caller).stats() };
};

const getList: Handler = async (ctx) => ctx.services.sessions.list(ctx.caller).map((s) => ({ session_id: s.id, type: s.type, user_id: displayUser(s.owner.user) }));

export const sessionCommands: Record<string, Handler> = {
  create,
  destroy,
  set_answer: setAnswer,
  get_offer: getSdp('offer'),
  get_answer: getSdp('answer'),
  update_media: updateMedia,
  set_type: setType,
  recorder_action: recorderAction,
  player_action: playerAction,
  // MCU layouts belong to other backends; the Kurento backend never had them.
  room_action: notYet('room_action', roomActionSchema, 'room_action'),
  // Retired (Sept 2016) names the original still passed to the backend, which lacked them.
  pause_record: notYet('pause_record', sessionIdOnly, 'pause_record (retired: use recorder_action)'),
  resume_record: notYet('resume_record', sessionIdOnly, 'resume_record (retired: use recorder_action)'),
  set_candidate: setCandidate,
  set_candidate_end: setCandidateEnd,
  get_info: getInfo,
  get_list: getList,
  get_status: getStatus,
  get_stats: getStats,
  // Older names of the same commands (the seed's park sample uses `start`).
  start: create,
  stop: destroy,
  info: getInfo,
  list: getList,
};
