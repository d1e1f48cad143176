// Where recordings are written and which files may be played. Both come from clients, so
// they are confined: recordings to the user's folder under the recordings folder, local files
// to play to the configured media folders and the user's own recordings.
import { createHash } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ApiError } from '../../protocol/errors.js';
import { isInside, realPathOr } from '../../util/paths.js';
import type { RecordingFormat } from '../../engine/types.js';

export interface MediaPaths {
  recordingsDir: string;
  playDirs: string[];
  allowHttp: boolean;
}

/** A user's recordings folder: readable name plus a hash, so no user name can escape it. */
export function userRecordingsDir(paths: MediaPaths, user: string): string {
  const safe = user.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 64);
  const hash = createHash('sha256').update(user).digest('hex').slice(0, 8);
  return join(resolve(paths.recordingsDir), `${safe}-${hash}`);
}

function localPath(uri: string): string {
  if (uri.startsWith('file:')) {
    try { return fileURLToPath(uri); } catch { throw new ApiError('invalid_uri'); }
  }
  return uri;
}

/** The file a recording goes to, and its format (from the extension; WEBM by default). */
export function recordingTarget(paths: MediaPaths, user: string, requested: string | undefined, defaultName: string): { path: string; format: RecordingFormat } {
  const dir = userRecordingsDir(paths, user);
  let name = requested === undefined ? defaultName : localPath(requested);
  // Checked here, so the file system never answers with its own (internal) error text.
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) throw new ApiError('invalid_value', 'uri: control characters are not allowed in a recording name');
  if (!/\.(webm|mkv|mp4)$/i.test(name)) name += '.webm';
  if (name.split(/[\\/]/).some((part) => Buffer.byteLength(part) > 255)) throw new ApiError('invalid_value', 'uri: a recording name (or folder) is longer than 255 bytes');
  const path = isAbsolute(name) ? resolve(name) : resolve(dir, name);
  if (!isInside(dir, path) || path === dir) {
    throw new ApiError('invalid_value', `uri: recordings are written under your recordings folder (${dir}); give a file name`);
  }
  return { path, format: /\.mp4$/i.test(path) ? 'mp4' : 'webm' };
}

/**
 * Checks a URI to play: http(s) (when allowed; where it may connect to is the engine's check,
 * made on the addresses it connects to) or a local file in an allowed folder. A local file is
 * returned by its real path: symlinks are resolved, and must not lead out of the folders.
 */
export function playableUri(paths: MediaPaths, user: string, uri: string): string {
  if (/^https?:\/\//i.test(uri)) {
    if (!paths.allowHttp) throw new ApiError('invalid_value', 'uri: playing http(s) URIs is disabled on this server');
    return uri;
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(uri) && !uri.startsWith('file:')) throw new ApiError('invalid_value', 'uri: use a file path, file:// or http(s)://');
  const dirs = [...paths.playDirs, userRecordingsDir(paths, user)];
  const outside = () => new ApiError('invalid_value', `uri: local files are played from the media folders (${paths.playDirs.map((d) => resolve(d)).join(', ')}) or your recordings`);
  const path = resolve(dirs[0] ?? '.', localPath(uri));
  // First by name (nothing is learnt about files elsewhere), then by what the name really is.
  if (!dirs.some((d) => isInside(d, path))) throw outside();
  let real: string;
  try {
    real = realpathSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ApiError('invalid_uri', code === 'ENOENT' || code === 'ENOTDIR' ? 'no such file' : 'cannot open the file');
  }
  if (!dirs.some((d) => isInside(realPathOr(d), real))) throw outside();
  return real;
}
