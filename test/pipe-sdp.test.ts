// The offer a pipe between media nodes sends its source's node: only the video codec its sinks
// negotiated (and that codec's retransmission type), so that the answering node cannot pick
// another one the sinks would not decode.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parse } from 'sdp-transform';
import { onlyVideoCodec } from '../src/engine/pool/pipes.js';

const OFFER = [
  'v=0', 'o=- 1 1 IN IP4 127.0.0.1', 's=-', 't=0 0', 'a=group:BUNDLE 0 1',
  'm=audio 9 UDP/TLS/RTP/SAVPF 111', 'c=IN IP4 0.0.0.0', 'a=mid:0', 'a=rtpmap:111 opus/48000/2', 'a=sendrecv',
  'm=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99', 'c=IN IP4 0.0.0.0', 'a=mid:1',
  'a=rtpmap:96 VP8/90000', 'a=rtcp-fb:96 nack', 'a=rtcp-fb:96 nack pli',
  'a=rtpmap:97 rtx/90000', 'a=fmtp:97 apt=96',
  'a=rtpmap:98 H264/90000', 'a=fmtp:98 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f', 'a=rtcp-fb:98 nack',
  'a=rtpmap:99 rtx/90000', 'a=fmtp:99 apt=98',
  'a=sendrecv', '',
].join('\r\n');

const video = (sdp: string) => parse(sdp).media.find((m) => m.type === 'video')!;

describe('onlyVideoCodec', () => {
  it('keeps H264 and its rtx, drops VP8 and its rtx, leaves audio alone', () => {
    const out = onlyVideoCodec(OFFER, 'video/H264');
    const v = video(out);
    assert.equal(v.payloads, '98 99');
    assert.deepEqual(v.rtp.map((r) => `${r.payload} ${r.codec}`), ['98 H264', '99 rtx']);
    assert.deepEqual(v.fmtp.map((f) => f.payload).sort(), [98, 99]);
    assert.deepEqual((v.rtcpFb ?? []).map((f) => String(f.payload)), ['98']);
    assert.equal(String(parse(out).media[0]!.payloads), '111');
  });

  it('keeps VP8 (named as the engine names it) and its rtx', () => {
    assert.equal(video(onlyVideoCodec(OFFER, 'video/vp8')).payloads, '96 97');
  });

  it('leaves an offer without that codec as it was (the session reports the mismatch)', () => {
    assert.equal(onlyVideoCodec(OFFER, 'video/AV1'), OFFER);
  });
});
