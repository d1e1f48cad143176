// Turns schema failures into the API's own errors: a field that is absent is
// `missing_field`, one that is present but wrong is `invalid_value`, both naming the field.
import { z } from 'zod';
import { ApiError } from './errors.js';

export interface Parsed<T> { value: T; unknownFields: string[] }

function fieldName(path: readonly PropertyKey[]): string {
  return path.map((p) => (typeof p === 'number' ? `[${p}]` : String(p))).join('.').replace(/\.\[/g, '[');
}

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let cur: unknown = input;
  for (const key of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[key as string];
  }
  return cur;
}

function describe(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'invalid_type': return `expected ${issue.expected === 'int' ? 'an integer' : issue.expected}`;
    case 'too_small': return `must be ${issue.inclusive === false ? '>' : '>='} ${String(issue.minimum)}${issue.origin === 'string' ? ' characters' : ''}`;
    case 'too_big': return `must be ${issue.inclusive === false ? '<' : '<='} ${String(issue.maximum)}${issue.origin === 'string' ? ' characters' : ''}`;
    case 'invalid_value': return `expected one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
    default: return issue.message;
  }
}

/** Validate `data` (a request's `data`) against an object schema. */
export function parseData<S extends z.ZodObject>(schema: S, data: unknown): Parsed<z.output<S>> {
  const input = data === undefined || data === null ? {} : data;
  if (typeof input !== 'object' || Array.isArray(input)) throw new ApiError('invalid_value', 'data: expected an object');
  const result = schema.safeParse(input);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const name = fieldName(issue.path) || 'data';
    // Whatever the schema's complaint (an enum says invalid_value), an absent field is missing.
    if (issue.path.length > 0 && valueAt(input, issue.path) === undefined) {
      throw new ApiError('missing_field', name);
    }
    throw new ApiError('invalid_value', `${name}: ${describe(issue)}`);
  }
  const known = new Set(Object.keys(schema.shape));
  const unknownFields = Object.keys(input).filter((k) => !known.has(k));
  return { value: result.data, unknownFields };
}
