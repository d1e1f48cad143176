// Property-based checks (fast-check) of the code that reads client input first: the SDP checks
// and rewrites of src/protocol/sdp.ts and the frame parser of src/protocol/frames.ts. Whatever
// the input, they answer or throw the API's own errors, never anything else.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ApiError } from '../src/protocol/errors.js';
import { checkCandidate, checkWebRtcSdp, insertCandidates, parseSdp, type CandidateInit } from '../src/protocol/sdp.js';
import { FrameError, MAX_DATA_DEPTH, parseFrame } from '../src/protocol/frames.js';

const RUNS = { numRuns: 300 };

/** Runs `f`; any exception must be an ApiError of one of these terms. */
function onlyApiErrors<T>(f: () => T, terms: readonly string[]): T | ApiError {
  try {
    return f();
  } catch (err) {
    assert.ok(err instanceof ApiError, `threw ${String(err)} (${(err as Error)?.constructor?.name}), not an ApiError`);
    assert.ok(terms.includes(err.term), `unexpected term ${err.term}`);
    assert.ok(err.message.length > 0);
    return err;
  }
}

// ---- generators ---------------------------------------------------------------------------------

const hex = fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 32, maxLength: 32 })
  .map((bytes) => bytes.map((b) => b.toString(16).padStart(2, '0').toUpperCase()).join(':'));
const fingerprint = hex.map((h) => `a=fingerprint:sha-256 ${h}`);
const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((p) => p.join('.'));

/** Candidates the API accepts (checkCandidate says "ok"). */
const validCandidate = fc.record({
  foundation: fc.stringMatching(/^[A-Za-z0-9+/]{1,32}$/),
  component: fc.integer({ min: 1, max: 2 }),
  transport: fc.constantFrom('udp', 'tcp', 'UDP'),
  priority: fc.nat(),
  address: fc.oneof(ipv4, fc.constant('::1'), fc.stringMatching(/^[a-f0-9-]{8,36}$/).map((s) => `${s}.local`)),
  port: fc.integer({ min: 1, max: 65535 }),
  type: fc.constantFrom('host', 'srflx', 'prflx', 'relay'),
  extra: fc.constantFrom('', ' generation 0', ' raddr 0.0.0.0 rport 0', ' tcptype active ufrag abcd'),
  prefix: fc.constantFrom('', 'a='),
}).map((c) => `${c.prefix}candidate:${c.foundation} ${c.component} ${c.transport} ${c.priority} ${c.address} ${c.port} typ ${c.type}${c.extra}`);

/** Lines an SDP may (or may not) contain, right or wrong. */
const sdpLine = fc.oneof(
  fc.constantFrom('v=0', 'o=- 1 1 IN IP4 127.0.0.1', 's=-', 't=0 0', 'c=IN IP4 0.0.0.0', 'a=mid:0', 'a=mid:1',
    'a=ice-ufrag:abcd', 'a=ice-pwd:0123456789abcdef01234567', 'a=setup:actpass', 'a=end-of-candidates',
    'a=rtpmap:96 opus/48000/2', 'a=group:BUNDLE 0 1', 'a=fingerprint:', 'a=fingerprint:sha-256 zz', 'm=', ''),
  fingerprint,
  validCandidate.map((c) => `a=${c.replace(/^a=/, '')}`),
  fc.record({
    media: fc.constantFrom('audio', 'video', 'application', 'text', 'AUDIO', ''),
    port: fc.oneof(fc.constant(9), fc.constant(0), fc.integer({ min: 0, max: 99999 })),
    proto: fc.constantFrom('UDP/TLS/RTP/SAVPF', 'UDP/DTLS/SCTP', 'RTP/AVP', 'RTP/SAVPF', 'x'),
    fmt: fc.constantFrom(' 96', ' 0 8', ' webrtc-datachannel', ''),
  }).map((m) => `m=${m.media} ${m.port} ${m.proto}${m.fmt}`),
  fc.tuple(fc.constantFrom('a', 'b', 'c', 'm', 'o', 'v', 'z', 'A', '1'), fc.string({ maxLength: 40 })).map(([k, v]) => `${k}=${v}`),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
);

interface SectionModel { media: string; mid?: string; existing: string[]; ended: boolean; extra: string[] }

/** A valid WebRTC SDP (session-level ICE and fingerprint) with 1..6 sections. */
const validSdp = fc.record({
  fp: fingerprint,
  e: fc.constantFrom('\r\n', '\n'),
  sections: fc.array(fc.record({
    media: fc.constantFrom('audio', 'video', 'application'),
    hasMid: fc.boolean(),
    existing: fc.array(validCandidate.map((c) => `a=${c.replace(/^a=/, '')}`), { maxLength: 2 }),
    ended: fc.boolean(),
    extra: fc.array(fc.constantFrom('a=sendrecv', 'a=rtcp-mux', 'a=rtpmap:96 opus/48000/2', 'a=setup:actpass'), { maxLength: 3 }),
  }), { minLength: 1, maxLength: 6 }),
}).map(({ fp, e, sections }) => {
  const model: SectionModel[] = sections.map((s, i) => ({ media: s.media, mid: s.hasMid ? `m${i}` : undefined, existing: s.existing, ended: s.ended, extra: s.extra }));
  const lines = ['v=0', 'o=- 1 1 IN IP4 127.0.0.1', 's=-', 't=0 0', 'a=ice-ufrag:abcd', 'a=ice-pwd:0123456789abcdef01234567', fp];
  for (const s of model) {
    lines.push(`m=${s.media} 9 ${s.media === 'application' ? 'UDP/DTLS/SCTP webrtc-datachannel' : 'UDP/TLS/RTP/SAVPF 96'}`, 'c=IN IP4 0.0.0.0');
    if (s.mid !== undefined) lines.push(`a=mid:${s.mid}`);
    lines.push(...s.extra, ...s.existing);
    if (s.ended) lines.push('a=end-of-candidates');
  }
  return { sdp: lines.join(e) + e, e, model };
});

const isCandidateLine = (l: string) => l.startsWith('a=candidate:') || l === 'a=end-of-candidates';

const eol = fc.oneof({ arbitrary: fc.constant('\r\n'), weight: 6 }, { arbitrary: fc.constantFrom('\n', '\r', ''), weight: 1 });

/** Text that looks more or less like an SDP, usually starting right. */
const sdpLike = fc.tuple(fc.integer({ min: 0, max: 9 }), fc.array(sdpLine, { maxLength: 40 }), eol)
  .map(([header, lines, e]) => (header > 1 ? ['v=0', 'o=- 1 1 IN IP4 127.0.0.1', ...lines] : lines).join(e));

/** A valid SDP with a few lines deleted, replaced or inserted: often still valid, often not. */
const mutatedSdp = fc.tuple(validSdp, fc.array(fc.record({ op: fc.constantFrom('delete', 'replace', 'insert'), at: fc.nat(), line: sdpLine }), { maxLength: 4 }))
  .map(([{ sdp, e }, ops]) => {
    const lines = sdp.split(e);
    for (const { op, at, line } of ops) {
      const i = at % lines.length;
      if (op === 'delete') lines.splice(i, 1);
      else if (op === 'replace') lines[i] = line;
      else lines.splice(i, 0, line);
    }
    return lines.join(e);
  });

const anyText = fc.oneof(
  { arbitrary: fc.string({ maxLength: 400 }), weight: 1 },
  { arbitrary: fc.string({ unit: 'binary', maxLength: 400 }), weight: 1 },
  { arbitrary: fc.string({ unit: 'grapheme', maxLength: 200 }), weight: 1 },
  { arbitrary: sdpLike, weight: 3 },
  { arbitrary: mutatedSdp, weight: 4 },
);

// ---- SDP ------------------------------------------------------------------------------------------

describe('sdp.ts on arbitrary input', () => {
  it('parseSdp and checkWebRtcSdp throw nothing but invalid_sdp', () => {
    fc.assert(fc.property(anyText, (text) => {
      const parsed = onlyApiErrors(() => parseSdp(text), ['invalid_sdp']);
      const checked = onlyApiErrors(() => checkWebRtcSdp(text), ['invalid_sdp']);
      if (!(parsed instanceof ApiError)) {
        assert.ok(parsed.sections.length >= 1 && parsed.sections.length <= 64);
        assert.ok(parsed.session.some((l) => l.startsWith('o=')));
        for (const s of parsed.sections) assert.ok(s.lines[0]!.startsWith('m=') && s.port <= 65535);
      }
      // What passes the WebRTC check also parses.
      if (!(checked instanceof ApiError)) assert.ok(!(parsed instanceof ApiError));
    }), RUNS);
  });

  it('checkCandidate throws nothing but invalid_value, and what it accepts is one line', () => {
    fc.assert(fc.property(fc.oneof(anyText, validCandidate, validCandidate.map((c) => `${c}\r\na=ice-pwd:x`), validCandidate.map((c) => ` ${c} `)), (text) => {
      const r = onlyApiErrors(() => checkCandidate(text), ['invalid_value']);
      if (r === 'end') assert.equal(text, '');
      if (r === 'ok') assert.doesNotMatch(text.trim(), /[\r\n]/, 'an accepted candidate cannot inject SDP lines');
    }), RUNS);
  });

  it('checkCandidate accepts well-formed candidates', () => {
    fc.assert(fc.property(validCandidate, (c) => { assert.equal(checkCandidate(c), 'ok'); }), RUNS);
  });

  it('insertCandidates throws nothing but invalid_sdp on arbitrary SDPs', () => {
    const cands = fc.array(fc.record({ candidate: validCandidate, sdpMid: fc.option(fc.string({ maxLength: 4 }), { nil: undefined }), sdpMLineIndex: fc.integer({ min: -3, max: 70 }) }), { maxLength: 5 });
    fc.assert(fc.property(anyText, cands, (text, cs) => {
      const out = onlyApiErrors(() => insertCandidates(text, cs), ['invalid_sdp']);
      if (typeof out === 'string') parseSdp(out);
    }), RUNS);
  });

  it('insertCandidates keeps every section and puts each candidate in its section', () => {
    const input = validSdp.chain((v) => fc.tuple(fc.constant(v), fc.array(fc.record({
      candidate: validCandidate,
      sdpMid: fc.option(fc.oneof(fc.constantFrom(...v.model.map((_, i) => `m${i}`)), fc.constant('nope'), fc.constant('')), { nil: undefined }),
      sdpMLineIndex: fc.integer({ min: -2, max: v.model.length + 2 }),
    }), { maxLength: 12 })));
    fc.assert(fc.property(input, ([{ sdp, e, model }, cands]) => {
      checkWebRtcSdp(sdp);
      const out = insertCandidates(sdp, cands);
      // Still a valid SDP with the same line ending, the same session part and the same sections.
      checkWebRtcSdp(out);
      assert.ok(out.endsWith(e));
      if (e === '\r\n') assert.doesNotMatch(out, /[^\r]\n/);
      const before = parseSdp(sdp);
      const after = parseSdp(out);
      assert.deepEqual(after.session, before.session);
      assert.equal(after.sections.length, model.length);
      // Where each candidate should go: the section named by sdpMid, else by index, else nowhere.
      const expected: string[][] = model.map(() => []);
      for (const c of cands) {
        let idx = c.sdpMid ? model.findIndex((s) => s.mid === c.sdpMid) : -1;
        if (idx < 0) idx = c.sdpMLineIndex;
        if (idx >= 0 && idx < model.length) expected[idx]!.push(`a=${c.candidate.replace(/^a=/, '')}`);
      }
      after.sections.forEach((sec, i) => {
        const orig = before.sections[i]!;
        assert.equal(sec.media, model[i]!.media);
        assert.equal(sec.mid, model[i]!.mid);
        assert.deepEqual(sec.lines.filter((l) => !isCandidateLine(l)), orig.lines.filter((l) => !isCandidateLine(l)), `section ${i} kept its own lines`);
        assert.deepEqual(sec.lines.filter((l) => l.startsWith('a=candidate:')), [...model[i]!.existing, ...expected[i]!], `section ${i} candidates`);
        assert.equal(sec.lines.at(-1), 'a=end-of-candidates');
        assert.equal(sec.lines.filter((l) => l === 'a=end-of-candidates').length, 1);
      });
    }), RUNS);
  });
});

// ---- frames ---------------------------------------------------------------------------------------

const NAME = /^[a-z_][a-z0-9_]{0,63}$/;

/** parseFrame's outcome: the parsed frame, or its FrameError (anything else fails the test). */
function parseOrFrameError(text: string): ReturnType<typeof parseFrame> | FrameError {
  try {
    return parseFrame(text);
  } catch (err) {
    assert.ok(err instanceof FrameError, `threw ${String(err)}, not a FrameError`);
    assert.ok(err.error instanceof ApiError);
    assert.ok(['syntax_error', 'missing_field', 'invalid_value'].includes(err.error.term), err.error.term);
    assert.ok(err.tid === null || typeof err.tid === 'string' || typeof err.tid === 'number');
    return err;
  }
}

const name = fc.oneof(fc.constantFrom('media', 'session', 'core', 'user', 'login', 'create', 'get_list', '__proto__', 'constructor'), fc.stringMatching(NAME));
/** Mostly a name, sometimes any JSON, sometimes absent. */
const field = (good: fc.Arbitrary<unknown>) => fc.oneof(
  { arbitrary: good, weight: 8 },
  { arbitrary: fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.string({ maxLength: 300 }), fc.double()), weight: 1 },
  { arbitrary: fc.constant(undefined), weight: 1 },
);
const rarely = (a: fc.Arbitrary<unknown>) => fc.oneof({ arbitrary: fc.constant(undefined), weight: 9 }, { arbitrary: a, weight: 1 });

/** Objects shaped more or less like requests (any field may be missing or wrong). */
const requestLike = fc.record({
  class: field(name),
  subclass: field(name),
  cmd: field(name),
  tid: field(fc.oneof(fc.integer(), fc.string({ maxLength: 260 }), fc.double({ noNaN: true }))),
  data: field(fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 3 }))),
  result: rarely(fc.constantFrom('ok', 'error')),
  ack: rarely(fc.oneof(fc.integer(), fc.string({ maxLength: 10 }), fc.jsonValue({ maxDepth: 1 }))),
});

describe('parseFrame on arbitrary input', () => {
  it('arbitrary text: a parsed frame or a FrameError, nothing else', () => {
    fc.assert(fc.property(fc.oneof(fc.string({ maxLength: 300 }), fc.string({ unit: 'binary', maxLength: 300 }), fc.json()), (text) => {
      parseOrFrameError(text);
    }), RUNS);
  });

  it('arbitrary JSON values: non-objects are syntax errors', () => {
    fc.assert(fc.property(fc.jsonValue(), (v) => {
      const r = parseOrFrameError(JSON.stringify(v));
      if (typeof v !== 'object' || v === null || Array.isArray(v)) {
        assert.ok(r instanceof FrameError);
        assert.equal(r.error.term, 'syntax_error');
        assert.equal(r.tid, null);
      }
    }), RUNS);
  });

  it('request-like objects: parsed requests are well-formed and faithful; errors keep a valid tid', () => {
    fc.assert(fc.property(requestLike, (m) => {
      const text = JSON.stringify(m);
      const input = JSON.parse(text) as Record<string, unknown>;
      const r = parseOrFrameError(text);
      const validTid = (typeof input.tid === 'string' && input.tid.length <= 256) || (typeof input.tid === 'number' && Number.isFinite(input.tid));
      if (r instanceof FrameError) {
        if (r.tid !== null) assert.equal(r.tid, input.tid);
        // A request with a usable tid always gets its error back under that tid.
        if (validTid && !('result' in input) && !('ack' in input)) assert.equal(r.tid, input.tid);
        return;
      }
      if (r.kind === 'request') {
        assert.ok(!('result' in input && !('cmd' in input)) && !('ack' in input && !('cmd' in input)));
        assert.equal(r.request.class, input.class);
        assert.equal(r.request.cmd, input.cmd);
        assert.equal(r.request.subclass, input.subclass);
        assert.equal(r.request.tid, input.tid);
        assert.ok(NAME.test(r.request.class) && NAME.test(r.request.cmd));
        assert.ok(validTid);
        const data = r.request.data;
        assert.ok(typeof data === 'object' && data !== null && !Array.isArray(data));
        assert.deepEqual(data, input.data ?? {});
      } else if (r.kind === 'reply') {
        assert.ok('result' in input && !('cmd' in input));
        assert.equal(r.reply.tid, input.tid);
      } else {
        assert.ok('ack' in input && !('cmd' in input));
        assert.equal(r.tid, input.ack);
      }
    }), RUNS);
  });

  it(`data nested deeper than ${MAX_DATA_DEPTH} levels is invalid_value, shallower is fine`, () => {
    const nested = fc.integer({ min: 0, max: 200 }).chain((depth) => fc.tuple(fc.constant(depth), fc.array(fc.boolean(), { minLength: depth, maxLength: depth })));
    fc.assert(fc.property(nested, ([depth, arrays]) => {
      let v: unknown = 1;
      for (const asArray of arrays) v = asArray ? [v] : { k: v };
      const text = JSON.stringify({ class: 'media', subclass: 'session', cmd: 'create', tid: 7, data: { type: 'park', session_meta: v } });
      const r = parseOrFrameError(text);
      // data is level 1, so session_meta's containers take levels 2..depth+1.
      if (depth + 1 <= MAX_DATA_DEPTH) {
        assert.ok(!(r instanceof FrameError), `depth ${depth} refused`);
      } else {
        assert.ok(r instanceof FrameError, `depth ${depth} accepted`);
        assert.equal(r.error.term, 'invalid_value');
        assert.equal(r.error.message, `Invalid value: session_meta: nested more than ${MAX_DATA_DEPTH} levels deep`);
        assert.equal(r.tid, 7);
      }
    }), RUNS);
  });
});
