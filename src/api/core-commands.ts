// `class:"core"` commands: login and event subscriptions (docs/API.md §3, §4).
import { z } from 'zod';
import { ApiError } from '../protocol/errors.js';
import { parseData } from '../protocol/validate.js';
import type { Handler } from './context.js';
import { clientTurnCredentials } from '../access/turn-credentials.js';

const name = z.string().min(1).max(128);

const subscriptionSchema = z.object({
  class: name,
  subclass: name.optional(),
  type: name.optional(),
  obj_id: name.optional(),
  body: z.record(z.string(), z.unknown()).optional(),
  service: z.string().max(128).optional(),
});

export const loginSchema = z.object({
  user: z.string().min(1).max(128).optional(),
  password: z.string().max(1024).optional(),
  // The original's own client sent `pass`; accepted as the same field.
  pass: z.string().max(1024).optional(),
  token: z.string().max(16384).optional(),
  session_id: z.string().max(128).optional(),
  meta: z.record(z.string(), z.unknown()).optional(),
});

const subscribe: Handler = async (ctx, data) => {
  const { value } = parseData(subscriptionSchema, data);
  const key = { class: value.class, subclass: value.subclass ?? '*', type: value.type ?? '*', obj_id: value.obj_id ?? '*' };
  const { bus, config } = ctx.services;
  const limit = config.limits.max_subscriptions_per_connection;
  if (bus.countOf(ctx.conn) >= limit) throw new ApiError('too_many_subscriptions', `this connection holds ${bus.countOf(ctx.conn)} subscriptions (limit ${limit}, counting the one each session gives its creator)`);
  bus.subscribe(ctx.conn, key, value.body);
  return {};
};

const unsubscribe: Handler = async (ctx, data) => {
  const { value } = parseData(subscriptionSchema, data);
  const key = { class: value.class, subclass: value.subclass ?? '*', type: value.type ?? '*', obj_id: value.obj_id ?? '*' };
  if (!ctx.services.bus.unsubscribe(ctx.conn, key)) throw new ApiError('invalid_parameters', 'no such subscription');
  return {};
};

const getSubscriptions: Handler = async (ctx) => ctx.services.bus.subscriptions(ctx.conn);

/** Fresh TURN credentials for the caller (those of the login reply expire). */
const getIceServers: Handler = async (ctx) => clientTurnCredentials(ctx.services.config.ice, ctx.caller.user) ?? { ice_servers: [] };

export const coreCommands: Record<string, Record<string, Handler>> = {
  event: { subscribe, unsubscribe, get_subscriptions: getSubscriptions },
  user: { get_ice_servers: getIceServers },
};
