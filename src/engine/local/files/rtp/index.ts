// The RTP payload formats by codec (lower-case MIME type, as in CodecInfo).
import { Depacketizer } from './depacketizer.js';
import { h264Format } from './h264.js';
import { opusFormat } from './opus.js';
import { vp8Format } from './vp8.js';

export * from './depacketizer.js';
export * from './h264.js';
export * from './opus.js';
export * from './vp8.js';

/** A depacketizer for the codec, or undefined when we cannot depacketize it. */
export function depacketizerFor(mimeType: string): Depacketizer | undefined {
  switch (mimeType) {
    case 'video/vp8': return new Depacketizer(vp8Format, { requireKeyframe: true });
    case 'video/h264': return new Depacketizer(h264Format, { requireKeyframe: true });
    case 'audio/opus': return new Depacketizer(opusFormat, { requireKeyframe: false });
    default: return undefined;
  }
}
