// The werift and Node internals the engine reaches into are all checked in one place
// (src/engine/local/accel/internals.ts): the check passes on the werift this project pins, and a
// missing internal makes it fail with a message naming it and werift's installed version.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createSocket } from 'node:dgram';
import {
  assertInternals, checkInternals, disposeProbe, findMissing, InternalsError, probe, udpHandle, weriftVersion, type Probe,
} from '../src/engine/local/accel/internals.js';

const pinned = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { dependencies: Record<string, string> }).dependencies.werift;

/** A copy of `o` (same prototype, same own fields) without `drop`. */
function without(o: unknown, drop: string): object {
  const copy = Object.assign(Object.create(Object.getPrototypeOf(o) as object) as object, o);
  delete (copy as Record<string, unknown>)[drop];
  return copy;
}

function withProbe(fn: (p: Probe) => void): void {
  const p = probe();
  try { fn(p); } finally { disposeProbe(p); }
}

describe('werift internals check', () => {
  it('reads the installed werift version from its package.json', () => {
    assert.equal(weriftVersion, pinned);
  });

  it('passes on the installed werift and Node, nothing missing', () => {
    const report = assertInternals();
    assert.deepEqual(report.missing, { required: [], plane: [], optional: [] });
    withProbe((p) => assert.doesNotThrow(() => checkInternals(p)));
  });

  it('fails naming the missing receiver field and werift\'s version', () => {
    withProbe((p) => {
      p.receiver = without(p.receiver, 'remoteStreams');
      assert.throws(() => checkInternals(p), (err: unknown) => {
        assert.ok(err instanceof InternalsError);
        assert.match(err.message, new RegExp(`werift ${weriftVersion.replaceAll('.', '\\.')} \\(the installed version\\)`));
        assert.match(err.message, /RTCRtpReceiver\.remoteStreams/);
        assert.deepEqual(err.missing, ['RTCRtpReceiver.remoteStreams']);
        return true;
      });
    });
  });

  it('fails when a patched prototype method or a replaced SRTP transform is gone', () => {
    withProbe((p) => {
      p.prototypes.iceConnection = {};
      p.srtp = without(p.srtp, 'decrypt');
      const { missing } = findMissing(p);
      assert.deepEqual(missing.required, ['Connection.prototype.ensureProtocol', 'Connection.prototype.addRemoteCandidate', 'SrtpSession.decrypt']);
      assert.throws(() => checkInternals(p), InternalsError);
    });
  });

  it('a werift object that cannot be built at all is reported, not thrown through', () => {
    withProbe((p) => {
      p.failures.push('new RTCPeerConnection(): boom');
      assert.throws(() => checkInternals(p), /cannot build new RTCPeerConnection\(\): boom/);
    });
  });

  it('Node\'s dgram handle missing only turns the forwarding plane off', () => {
    withProbe((p) => {
      p.udpSocket = {};
      const { missing } = findMissing(p);
      assert.deepEqual(missing.required, []);
      assert.equal(missing.plane.length, 1);
      assert.doesNotThrow(() => checkInternals(p));
    });
  });

  it('udpHandle gives a bound socket\'s descriptor, and nothing for an unbound one', async () => {
    const s = createSocket('udp4');
    assert.equal(udpHandle(s), undefined);
    await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve));
    const h = udpHandle(s);
    assert.ok(h && h.fd >= 0);
    s.close();
  });
});
