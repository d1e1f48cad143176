// Audio transcoding for interop between codecs (SIP phones on G.711/G.722, browsers on Opus).
export { AudioTranscoder, codecFromMime, rtpClockRate } from './transcoder.js';
export type { AudioCodecName, AudioTranscoderOptions, AudioTranscoderStats, TranscodedPacket } from './transcoder.js';
