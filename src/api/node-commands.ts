// `class:"media", subclass:"node"` commands: where media runs (docs/API.md §14). Admins only: the
// list names processes and addresses.
import { ApiError } from '../protocol/errors.js';
import type { Handler } from './context.js';

const getList: Handler = async (ctx) => {
  if (!ctx.caller.admin) throw new ApiError('unauthorized', 'the node list is for admins');
  const { nodes, engine } = ctx.services;
  if (nodes) return nodes.list();
  // Media in this process: one node, this one.
  const c = await engine.counters();
  return [{ node_id: 'local', kind: 'local', state: 'up', pid: process.pid, sessions: c.endpoints, elements: c.elements }];
};

export const nodeCommands: Record<string, Handler> = { get_list: getList };
