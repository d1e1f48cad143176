// Validates a command's data and reports the fields the server ignored to the caller.
import type { z } from 'zod';
import { parseData } from '../protocol/validate.js';
import type { CommandContext } from './context.js';

export function parseCommand<S extends z.ZodObject>(ctx: CommandContext, subclass: string, cmd: string, schema: S, data: unknown): z.output<S> {
  const { value, unknownFields } = parseData(schema, data);
  if (unknownFields.length > 0) ctx.conn.reportUnknownFields('media', subclass, cmd, unknownFields);
  return value;
}
