// `class:"media", subclass:"kurento"` commands: the pipelines Kurento-protocol clients made on
// this server, listed and released from the NkMEDIA side (docs/API.md §7, the console).
import { z } from 'zod';
import { ApiError } from '../protocol/errors.js';
import { parseCommand } from './parse.js';
import type { CommandContext, Handler, PipelineDirectory } from './context.js';

const pipelineIdOnly = z.object({ pipeline_id: z.string().min(1).max(512) });

function directory(ctx: CommandContext): PipelineDirectory {
  const d = ctx.services.pipelines;
  if (!d) throw new ApiError('invalid_operation', 'the Kurento protocol is not served here');
  return d;
}

const getList: Handler = async (ctx) => directory(ctx).list(ctx.caller);

const destroy: Handler = async (ctx, data) => {
  const { pipeline_id } = parseCommand(ctx, 'kurento', 'destroy', pipelineIdOnly, data);
  if (!(await directory(ctx).release(ctx.caller, pipeline_id))) throw new ApiError('invalid_parameters', `no pipeline ${pipeline_id}`);
  return {};
};

export const kurentoCommands: Record<string, Handler> = { get_list: getList, destroy };
