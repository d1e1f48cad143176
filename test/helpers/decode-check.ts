// Whether a media file decodes: ffprobe reads and decodes every frame of every stream and reports
// what its demuxer and decoders found wrong. (Not `ffmpeg -f null`: its null muxer re-times
// frames to a constant frame rate and complains about a valid variable-rate recording, e.g.
// frames 1 ms apart from a source that caught up after a stall.)
import { spawnSync } from 'node:child_process';

/** What ffprobe says is wrong when decoding `file` ('' when nothing), and its exit status. */
export function decodeProblems(file: string): { status: number | null; stderr: string } {
  const r = spawnSync('ffprobe', ['-v', 'error', '-show_frames', '-of', 'compact', file], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024, stdio: ['ignore', 'ignore', 'pipe'] });
  return { status: r.status, stderr: (r.stderr ?? '').trim() };
}
