// SDP checks and the small rewrites the session layer needs (candidate stripping and
// insertion). SDPs come from clients, so they are checked here before any engine sees them.
import { ApiError } from './errors.js';

/** A trickled candidate as the API carries it. */
export interface CandidateInit { candidate: string; sdpMid?: string; sdpMLineIndex: number }

export interface SdpSection { media: string; port: number; proto: string; mid?: string; lines: string[] }
export interface ParsedSdp { session: string[]; sections: SdpSection[] }

const LINE = /^[a-z]=[\x20-\x7e\t]*$/;
const WEBRTC_PROTOS = new Set(['UDP/TLS/RTP/SAVPF', 'UDP/TLS/RTP/SAVP', 'RTP/SAVPF', 'UDP/DTLS/SCTP', 'DTLS/SCTP']);
const MEDIA = new Set(['audio', 'video', 'application']);
const FINGERPRINT = /^a=fingerprint:[A-Za-z0-9-]{1,16} [0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){15,63}$/;

export function parseSdp(sdp: string): ParsedSdp {
  const lines = sdp.split(/\r?\n/);
  while (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  if (lines[0] !== 'v=0') throw new ApiError('invalid_sdp', 'must start with v=0');
  const session: string[] = [];
  const sections: SdpSection[] = [];
  for (const [i, line] of lines.entries()) {
    if (!LINE.test(line)) throw new ApiError('invalid_sdp', `line ${i + 1} is not a printable "x=value" line`);
    if (line.startsWith('m=')) {
      const m = /^m=(\S+) (\d+)(?:\/\d+)? (\S+)(?: .*)?$/.exec(line);
      if (!m) throw new ApiError('invalid_sdp', `line ${i + 1}: malformed m= line`);
      const port = Number(m[2]);
      if (port > 65535) throw new ApiError('invalid_sdp', `line ${i + 1}: bad port`);
      sections.push({ media: m[1]!, port, proto: m[3]!, lines: [line] });
    } else if (sections.length > 0) {
      const sec = sections[sections.length - 1]!;
      sec.lines.push(line);
      if (line.startsWith('a=mid:')) sec.mid = line.slice(6);
    } else {
      session.push(line);
    }
  }
  if (!session.some((l) => l.startsWith('o='))) throw new ApiError('invalid_sdp', 'no o= line');
  if (sections.length === 0) throw new ApiError('invalid_sdp', 'no media sections');
  if (sections.length > 64) throw new ApiError('invalid_sdp', 'too many media sections (max 64)');
  return { session, sections };
}

/** Checks a WebRTC SDP: known media, DTLS protocols, ICE credentials and a fingerprint. */
export function checkWebRtcSdp(sdp: string): ParsedSdp {
  const parsed = parseSdp(sdp);
  const sessionHas = (prefix: string) => parsed.session.some((l) => l.startsWith(prefix));
  let active = 0;
  for (const [i, sec] of parsed.sections.entries()) {
    if (!MEDIA.has(sec.media)) throw new ApiError('invalid_sdp', `m-line ${i}: unsupported media "${sec.media}"`);
    if (sec.port === 0) continue; // rejected/disabled section
    if (!WEBRTC_PROTOS.has(sec.proto)) throw new ApiError('invalid_sdp', `m-line ${i}: protocol "${sec.proto}" is not WebRTC (use sdp_type "rtp" for plain RTP)`);
    const has = (prefix: string) => sec.lines.some((l) => l.startsWith(prefix)) || sessionHas(prefix);
    if (!has('a=ice-ufrag:') || !has('a=ice-pwd:')) throw new ApiError('invalid_sdp', `m-line ${i}: missing ICE credentials`);
    if (!has('a=fingerprint:')) throw new ApiError('invalid_sdp', `m-line ${i}: missing DTLS fingerprint`);
    const fingerprints = [...sec.lines, ...parsed.session].filter((l) => l.startsWith('a=fingerprint:'));
    if (!fingerprints.every((l) => FINGERPRINT.test(l))) throw new ApiError('invalid_sdp', `m-line ${i}: malformed DTLS fingerprint (expected "a=fingerprint:<hash> XX:XX:...")`);
    active++;
  }
  if (active === 0) throw new ApiError('invalid_sdp', 'no active media sections');
  return parsed;
}

const RTP_PROTOS = new Set(['RTP/AVP', 'RTP/AVPF']);

/**
 * Checks a plain RTP SDP (sdp_type "rtp"): an o= line, at least one audio or video section on
 * RTP/AVP with a port, and a c= address for it. Codecs are the engine's to judge.
 */
export function checkRtpSdp(sdp: string): ParsedSdp {
  const parsed = parseSdp(sdp);
  const sessionConn = parsed.session.some((l) => l.startsWith('c='));
  let active = 0;
  for (const [i, sec] of parsed.sections.entries()) {
    if (sec.port === 0 || (sec.media !== 'audio' && sec.media !== 'video')) continue;
    if (!RTP_PROTOS.has(sec.proto)) throw new ApiError('invalid_sdp', `m-line ${i}: protocol "${sec.proto}" is not plain RTP (use sdp_type "webrtc" for WebRTC)`);
    if (!sessionConn && !sec.lines.some((l) => l.startsWith('c='))) throw new ApiError('invalid_sdp', `m-line ${i}: no connection address (c=)`);
    active++;
  }
  if (active === 0) throw new ApiError('invalid_sdp', 'no active RTP/AVP audio or video section');
  return parsed;
}

/** Checks an SDP of either kind. */
export function checkSdp(sdp: string, type: 'webrtc' | 'rtp'): ParsedSdp {
  return type === 'rtp' ? checkRtpSdp(sdp) : checkWebRtcSdp(sdp);
}

/** Our SDPs go out without candidates (candidates travel as events: trickle ICE). */
export function stripCandidates(sdp: string): string {
  const eol = sdp.includes('\r\n') ? '\r\n' : '\n';
  return sdp.split(/\r?\n/).filter((l) => !l.startsWith('a=candidate:') && l !== 'a=end-of-candidates').join(eol);
}

export function countCandidates(sdp: string): number {
  return sdp.split(/\r?\n/).filter((l) => l.startsWith('a=candidate:')).length;
}

/**
 * Puts buffered candidates into the SDP (each in the section named by sdpMid, else by index)
 * and marks every section's candidates complete.
 */
export function insertCandidates(sdp: string, candidates: readonly CandidateInit[]): string {
  const parsed = parseSdp(sdp);
  const eol = sdp.includes('\r\n') ? '\r\n' : '\n';
  const perSection: string[][] = parsed.sections.map(() => []);
  for (const c of candidates) {
    let idx = c.sdpMid ? parsed.sections.findIndex((s) => s.mid === c.sdpMid) : -1;
    if (idx < 0) idx = c.sdpMLineIndex;
    if (idx < 0 || idx >= parsed.sections.length) continue;
    perSection[idx]!.push(`a=${c.candidate.replace(/^a=/, '')}`);
  }
  const out = [...parsed.session];
  parsed.sections.forEach((sec, i) => {
    const kept = sec.lines.filter((l) => !l.startsWith('a=candidate:') && l !== 'a=end-of-candidates');
    const existing = sec.lines.filter((l) => l.startsWith('a=candidate:'));
    out.push(...kept, ...existing, ...perSection[i]!, 'a=end-of-candidates');
  });
  return out.join(eol) + eol;
}

const CANDIDATE = /^(?:a=)?candidate:(\S{1,32}) (\d{1,3}) (udp|tcp|UDP|TCP) (\d{1,10}) ([0-9A-Fa-f.:]{2,45}|[A-Za-z0-9.-]{1,253}\.local) (\d{1,5}) typ (host|srflx|prflx|relay)(?: [\x21-\x7e]+ [\x21-\x7e]+)*$/;

/** Validates a trickled candidate's text. An empty text means "end of candidates". */
export function checkCandidate(text: string): 'end' | 'ok' {
  if (text === '') return 'end';
  const m = CANDIDATE.exec(text.trim());
  if (!m) throw new ApiError('invalid_value', 'candidate: not an ICE candidate line');
  const port = Number(m[6]);
  if (port < 1 || port > 65535) throw new ApiError('invalid_value', 'candidate: bad port');
  return 'ok';
}
