// Path confinement checks shared by everything that lets a client name a file.
import { realpathSync } from 'node:fs';
import { resolve, sep } from 'node:path';

/** Whether `path` (absolute, resolved) is `dir` or lies below it. */
export function isInside(dir: string, path: string): boolean {
  const d = resolve(dir);
  return path === d || path.startsWith(d + sep);
}

/** A path by its real path (as given, resolved, when it does not exist: nothing is inside it then). */
export function realPathOr(path: string): string {
  try { return realpathSync(path); } catch { return resolve(path); }
}
