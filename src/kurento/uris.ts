// File and http URIs given to PlayerEndpoint and RecorderEndpoint. They come from clients, so
// local files are confined to the folders configured for the Kurento door (by name first, then
// by real path, so a symlink cannot lead out); where an http URI may connect to is the engine
// player's check, made on the addresses it connects to.
import { realpathSync } from 'node:fs';
import { dirname, extname, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KMS, KurentoError, illegalParam } from './errors.js';
import { isInside, realPathOr } from '../util/paths.js';

export interface UriPolicy {
  /** Folders file:// URIs may name (recordings written, files played). */
  fileDirs: readonly string[];
  allowHttp: boolean;
}

function filePath(uri: string): string {
  if (!/^file:\/\//i.test(uri)) throw illegalParam(`uri '${uri.slice(0, 200)}': use file:// (or http(s):// to play)`);
  let path: string;
  try { path = fileURLToPath(uri); } catch { throw illegalParam('uri: not a valid file:// URI'); }
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(path)) throw illegalParam('uri: control characters are not allowed in a path');
  return resolve(path);
}

function checkInside(policy: UriPolicy, path: string, real: string): void {
  const outside = () => illegalParam(`uri: files are read and written only under ${policy.fileDirs.map((d) => resolve(d)).join(', ')} on this server`);
  if (!policy.fileDirs.some((d) => isInside(d, path))) throw outside();
  if (!policy.fileDirs.some((d) => isInside(realPathOr(d), real))) throw outside();
}

/** What a PlayerEndpoint may open: an http(s) URI, or an existing file's real path. */
export function playerUri(policy: UriPolicy, uri: string): string {
  if (/^https?:\/\//i.test(uri)) {
    if (!policy.allowHttp) throw illegalParam('uri: playing http(s) URIs is disabled on this server');
    return uri;
  }
  const path = filePath(uri);
  let real: string;
  try {
    real = realpathSync(path);
  } catch {
    checkInside(policy, path, path);
    throw new KurentoError(KMS.URI_PATH_FILE_NOT_FOUND, `file not found: ${uri.slice(0, 200)}`);
  }
  checkInside(policy, path, real);
  return real;
}

/** Where a RecorderEndpoint writes (its folder must exist and be allowed), and the container. */
export function recorderTarget(policy: UriPolicy, uri: string): string {
  if (/^https?:\/\//i.test(uri)) throw illegalParam('uri: recording to http(s) (HTTP PUT) is not provided; use file://');
  const path = filePath(uri);
  if (path.split(sep).some((part) => Buffer.byteLength(part) > 255)) throw illegalParam('uri: a file or folder name is longer than 255 bytes');
  const dir = realPathOr(dirname(path));
  checkInside(policy, path, `${dir}${sep}${path.slice(dirname(path).length + 1)}`);
  if (!extname(path)) throw illegalParam('uri: give the file an extension (.webm, .mkv or .mp4)');
  return path;
}
