// HTTP Digest client for SIP (RFC 2617, RFC 7616 algorithms, RFC 3261 §22, RFC 8760).
// Supports MD5, MD5-sess, SHA-256 and SHA-256-sess, qop=auth (or no qop, RFC 2069 style).
// qop=auth-int alone is refused: we never need integrity of bodies we do not re-sign.

import { createHash, randomBytes } from 'node:crypto';
import { HeaderError, parseAuthParams } from './message.js';

export interface DigestChallenge {
  realm: string;
  nonce: string;
  opaque?: string;
  algorithm: string;        // as offered, upper-cased ('MD5' when absent)
  qop?: string[];           // offered qop options
  stale: boolean;
}

const SUPPORTED = ['SHA-256', 'SHA-256-SESS', 'MD5', 'MD5-SESS'];

/** Parses one WWW-Authenticate / Proxy-Authenticate value; undefined if not a usable Digest. */
export function parseChallenge(value: string): DigestChallenge | undefined {
  let parsed;
  try {
    parsed = parseAuthParams(value);
  } catch (e) {
    if (e instanceof HeaderError) return undefined;
    throw e;
  }
  const { scheme, params } = parsed;
  if (scheme.toLowerCase() !== 'digest') return undefined;
  const realm = params.get('realm');
  const nonce = params.get('nonce');
  if (realm === undefined || nonce === undefined) return undefined;
  const algorithm = (params.get('algorithm') ?? 'MD5').toUpperCase();
  if (!SUPPORTED.includes(algorithm)) return undefined;
  const c: DigestChallenge = { realm, nonce, algorithm, stale: params.get('stale')?.toLowerCase() === 'true' };
  const opaque = params.get('opaque');
  if (opaque !== undefined) c.opaque = opaque;
  const qop = params.get('qop');
  if (qop !== undefined) {
    c.qop = qop.split(',').map((q) => q.trim().toLowerCase()).filter((q) => q !== '');
    if (!c.qop.includes('auth')) return undefined;
  }
  return c;
}

/** Picks the strongest supported challenge among several (RFC 7616 §3.7: client chooses). */
export function pickChallenge(values: string[]): DigestChallenge | undefined {
  const cs = values.map(parseChallenge).filter((c): c is DigestChallenge => c !== undefined);
  cs.sort((a, b) => SUPPORTED.indexOf(a.algorithm) - SUPPORTED.indexOf(b.algorithm));
  return cs[0];
}

function hash(algorithm: string, s: string): string {
  return createHash(algorithm.startsWith('SHA-256') ? 'sha256' : 'md5').update(s, 'utf8').digest('hex');
}

export interface DigestInput {
  challenge: DigestChallenge;
  username: string;
  password: string;
  method: string;
  uri: string;
  /** Defaults to 1; callers reusing a nonce count upward. */
  nc?: number;
  /** Fixed cnonce for tests; random otherwise. */
  cnonce?: string;
}

/** Computes the `response` value (request-digest). */
export function digestResponse(i: DigestInput & { nc: number; cnonce: string }): string {
  const { challenge: c } = i;
  let ha1 = hash(c.algorithm, `${i.username}:${c.realm}:${i.password}`);
  if (c.algorithm.endsWith('-SESS')) ha1 = hash(c.algorithm, `${ha1}:${c.nonce}:${i.cnonce}`);
  const ha2 = hash(c.algorithm, `${i.method}:${i.uri}`);
  if (c.qop) {
    const nc = ncString(i.nc);
    return hash(c.algorithm, `${ha1}:${c.nonce}:${nc}:${i.cnonce}:auth:${ha2}`);
  }
  return hash(c.algorithm, `${ha1}:${c.nonce}:${ha2}`);
}

function ncString(n: number): string {
  return n.toString(16).padStart(8, '0');
}

function q(s: string): string {
  return `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/** The Authorization / Proxy-Authorization header value answering a challenge. */
export function authorization(i: DigestInput): string {
  const nc = i.nc ?? 1;
  const cnonce = i.cnonce ?? randomBytes(12).toString('hex');
  const c = i.challenge;
  const response = digestResponse({ ...i, nc, cnonce });
  const parts = [
    `username=${q(i.username)}`, `realm=${q(c.realm)}`, `nonce=${q(c.nonce)}`, `uri=${q(i.uri)}`,
    `response=${q(response)}`, `algorithm=${c.algorithm === 'MD5-SESS' ? 'MD5-sess' : c.algorithm === 'SHA-256-SESS' ? 'SHA-256-sess' : c.algorithm}`,
  ];
  if (c.opaque !== undefined) parts.push(`opaque=${q(c.opaque)}`);
  if (c.qop) parts.push('qop=auth', `nc=${ncString(nc)}`, `cnonce=${q(cnonce)}`);
  return `Digest ${parts.join(', ')}`;
}
