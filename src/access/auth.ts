// Login checks for the three auth modes (docs/API.md §3): open (loopback only),
// static users with scrypt password hashes, and signed JWTs (HMAC secret or public key).
import { randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { createPublicKey, type KeyObject } from 'node:crypto';
import { jwtVerify } from 'jose';
import type { Config } from '../config.js';
import { ApiError } from '../protocol/errors.js';
import { userNameProblem } from '../util/principals.js';
import { LoginGuard, Serializer } from './login-guard.js';

export interface Identity { user: string; admin: boolean }
export interface Credentials { user?: string; password?: string; token?: string }

function scrypt(password: string, salt: Buffer, keylen: number, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => scryptCb(password, salt, keylen, opts, (err, key) => (err ? reject(err) : resolve(key))));
}

const SCRYPT = { N: 16384, r: 8, p: 1 };

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scrypt(password, salt, 32, SCRYPT);
  return `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

export async function verifyPassword(password: string, hash: string): Promise<boolean> {
  const [, n, r, p, salt, expected] = hash.split('$');
  const want = Buffer.from(expected ?? '', 'base64');
  if (want.length === 0) return false;
  const got = await scrypt(password, Buffer.from(salt ?? '', 'base64'), want.length, { N: Number(n), r: Number(r), p: Number(p), maxmem: 256 * 1024 * 1024 });
  return timingSafeEqual(got, want);
}

/** Password checks waiting their turn; past this, logins are refused at once (`too_many_logins`). */
const MAX_WAITING_CHECKS = 64;

export class Authenticator {
  private readonly jwtKey?: Uint8Array | KeyObject;
  /** One scrypt at a time: it uses libuv's thread pool, which file I/O needs too. */
  private readonly hashing = new Serializer(1, MAX_WAITING_CHECKS);
  private readonly guard: LoginGuard;

  constructor(private readonly cfg: Config['auth'], limits: { perAddress: number; perUser: number } = { perAddress: Infinity, perUser: Infinity }) {
    if (cfg.mode === 'jwt') {
      this.jwtKey = cfg.jwt_public_key ? createPublicKey(cfg.jwt_public_key) : new TextEncoder().encode(cfg.jwt_secret);
    }
    this.guard = new LoginGuard(limits);
  }

  /**
   * A login from `address`: refused at once when the address or user name failed too often in
   * the last minute; failures and successes are counted.
   */
  async loginFrom(address: string, c: Credentials): Promise<Identity> {
    const end = this.guard.begin(address, c.user);
    try {
      const identity = await this.login(c);
      end('ok');
      return identity;
    } catch (err) {
      end(err instanceof ApiError && err.term === 'unauthorized' ? 'failed' : 'other');
      throw err;
    }
  }

  async login(c: Credentials): Promise<Identity> {
    switch (this.cfg.mode) {
      case 'open': {
        if (!c.user) throw new ApiError('missing_field', 'user');
        const problem = userNameProblem(c.user);
        if (problem) throw new ApiError('invalid_value', `user: ${problem}`);
        return { user: c.user, admin: this.cfg.admins.includes(c.user) };
      }
      case 'static': {
        if (!c.user) throw new ApiError('missing_field', 'user');
        if (c.password === undefined) throw new ApiError('missing_field', 'password');
        const entry = this.cfg.users.find((u) => u.user === c.user);
        // Unknown users cost the same hash as known ones, so timing does not tell them apart.
        const ok = await this.hashing.run(() => verifyPassword(c.password!, entry?.password_hash ?? DUMMY_HASH));
        if (!entry || !ok) throw new ApiError('unauthorized');
        return { user: entry.user, admin: entry.admin };
      }
      case 'jwt': {
        if (!c.token) throw new ApiError('missing_field', 'token');
        let payload;
        try {
          ({ payload } = await jwtVerify(c.token, this.jwtKey!, {
            ...(this.cfg.jwt_issuer ? { issuer: this.cfg.jwt_issuer } : {}),
            ...(this.cfg.jwt_audience ? { audience: this.cfg.jwt_audience } : {}),
          }));
        } catch {
          throw new ApiError('unauthorized');
        }
        const user = typeof payload.sub === 'string' ? payload.sub : undefined;
        if (!user || userNameProblem(user)) throw new ApiError('unauthorized');
        if (c.user !== undefined && c.user !== user) throw new ApiError('unauthorized');
        const roles = Array.isArray(payload.roles) ? payload.roles : [];
        return { user, admin: payload.admin === true || roles.includes('admin') };
      }
    }
  }
}

const DUMMY_HASH = 'scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';
