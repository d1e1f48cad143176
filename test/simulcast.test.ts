// Simulcast layer choice and keyframe-gated switching (pure logic; the browser suite sends
// real simulcast), and keyframe detection in VP8 and H264 payloads.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isKeyframe, LayerSelector, type LayeredPacket } from '../src/engine/local/graph/simulcast.js';

const pkt = (layer: string, rank: number, keyframe = false): LayeredPacket => ({ layer, rank, layerCount: 3, keyframe });

describe('LayerSelector', () => {
  it('waits for a keyframe of the wanted layer, then sends only that layer', () => {
    const sel = new LayerSelector();
    assert.deepEqual(sel.decide(pkt('h', 0)), { send: false, needKeyframe: true });
    assert.deepEqual(sel.decide(pkt('l', 2, true)), { send: false, needKeyframe: false });
    assert.deepEqual(sel.decide(pkt('h', 0, true)), { send: true, needKeyframe: false });
    assert.equal(sel.currentLayer, 'h');
    assert.equal(sel.decide(pkt('h', 0)).send, true);
    assert.equal(sel.decide(pkt('m', 1)).send, false);
  });

  it('switches layers only at the new layer\'s keyframe, the old one flowing until then', () => {
    const sel = new LayerSelector();
    sel.decide(pkt('h', 0, true));
    sel.choice = 'low';
    assert.deepEqual(sel.decide(pkt('l', 2)), { send: false, needKeyframe: true });
    assert.equal(sel.decide(pkt('h', 0)).send, true, 'no freeze while waiting');
    assert.equal(sel.decide(pkt('l', 2, true)).send, true);
    assert.equal(sel.currentLayer, 'l');
    assert.equal(sel.decide(pkt('h', 0)).send, false);
    sel.choice = 'm';
    assert.equal(sel.decide(pkt('m', 1, true)).send, true, 'a rid as choice');
    sel.choice = 'medium';
    assert.equal(sel.decide(pkt('m', 1)).send, true);
  });

  it('ranks: medium is the second layer, or the only one of two', () => {
    const sel = new LayerSelector();
    sel.choice = 'medium';
    assert.equal(sel.decide({ layer: 'b', rank: 1, layerCount: 2, keyframe: true }).send, true);
    const one = new LayerSelector();
    one.choice = 'low';
    assert.equal(one.decide({ layer: 'x', rank: 0, layerCount: 1, keyframe: true }).send, true);
  });
});

describe('isKeyframe', () => {
  it('VP8: start of partition 0 with the P bit clear, with and without extensions', () => {
    assert.equal(isKeyframe('video/vp8', Buffer.from([0x10, 0x00, 0x9d])), true);
    assert.equal(isKeyframe('video/vp8', Buffer.from([0x10, 0x01, 0x9d])), false, 'inter frame');
    assert.equal(isKeyframe('video/vp8', Buffer.from([0x00, 0x00])), false, 'not a partition start');
    // X set, I set with a 15-bit picture id, L set, T set: 4 descriptor bytes after the first.
    assert.equal(isKeyframe('video/vp8', Buffer.from([0x90, 0xe0, 0x81, 0x02, 0x03, 0x40, 0x01])), false);
    assert.equal(isKeyframe('video/vp8', Buffer.from([0x90, 0xe0, 0x81, 0x02, 0x03, 0x40, 0x9c])), true);
  });

  it('H264: IDR, SPS, FU-A start of an IDR, STAP-A with an SPS', () => {
    assert.equal(isKeyframe('video/h264', Buffer.from([0x65, 0x88])), true);
    assert.equal(isKeyframe('video/h264', Buffer.from([0x67, 0x42])), true);
    assert.equal(isKeyframe('video/h264', Buffer.from([0x41, 0x9a])), false);
    assert.equal(isKeyframe('video/h264', Buffer.from([0x7c, 0x85, 0x00])), true);
    assert.equal(isKeyframe('video/h264', Buffer.from([0x7c, 0x05, 0x00])), false, 'FU-A continuation');
    assert.equal(isKeyframe('video/h264', Buffer.from([0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce])), true);
    assert.equal(isKeyframe('video/h264', Buffer.from([0x78, 0x00, 0x02, 0x41, 0x42])), false);
  });
});
