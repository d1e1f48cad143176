// `class:"media", subclass:"room"` commands (docs/API.md §6).
import { roomCreateSchema, roomIdOnly } from '../protocol/room-schemas.js';
import { parseCommand } from './parse.js';
import { roomInfo } from './room-events.js';
import type { CommandContext, Handler } from './context.js';
import type { z } from 'zod';
import { displayUser } from '../util/principals.js';

const parse = <S extends z.ZodObject>(ctx: CommandContext, cmd: string, schema: S, data: unknown) => parseCommand(ctx, 'room', cmd, schema, data);

const create: Handler = async (ctx, data) => {
  const req = parse(ctx, 'create', roomCreateSchema, data);
  return { room_id: ctx.services.rooms.create(req, ctx.caller.user).id };
};

const destroy: Handler = async (ctx, data) => {
  const { room_id } = parse(ctx, 'destroy', roomIdOnly, data);
  await ctx.services.rooms.destroy(room_id, ctx.caller);
  return {};
};

const getInfo: Handler = async (ctx, data) => {
  const { room_id } = parse(ctx, 'get_info', roomIdOnly, data);
  return roomInfo(ctx.services.rooms.get(room_id));
};

const getList: Handler = async (ctx) => {
  const mine = (roomId: string) => ctx.services.sessions.list(ctx.caller).some((s) => s.room?.id === roomId);
  // The original labelled the backend as `class` here; this is the room class (docs/API.md §6).
  return ctx.services.rooms.list(ctx.caller, (r) => mine(r.id)).map((r) => ({ room_id: r.id, class: r.class, owner: displayUser(r.owner) }));
};

export const roomCommands: Record<string, Handler> = { create, destroy, get_info: getInfo, get_list: getList, info: getInfo, list: getList };
