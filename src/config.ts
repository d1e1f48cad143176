// Server configuration: defaults, then a JSON config file, then NKMEDIA_* environment
// variables, then command-line flags (each overriding the one before). Validated as a whole.
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { z } from 'zod';
import { userNameProblem } from './util/principals.js';

const userSchema = z.object({
  user: z.string().min(1).max(128).refine((u) => userNameProblem(u) === undefined, 'control characters are not allowed in user names'),
  /** `scrypt$<N>$<r>$<p>$<salt b64>$<hash b64>`, made by `nkmedia hash-password`. */
  password_hash: z.string().regex(/^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/, 'not a scrypt hash from `nkmedia hash-password`'),
  admin: z.boolean().default(false),
});

/** A TURN server's URL as browsers take it (turn:host:port?transport=udp|tcp, turns:...). */
const turnUrl = z.string().max(512).regex(/^turns?:[^\s?]+(\?transport=(udp|tcp))?$/, 'a turn: or turns: URL (with ?transport=udp or tcp at most)');

const iceServerSchema = z.object({
  urls: z.string().regex(/^(stun|turn|turns):/, 'must start with stun:, turn: or turns:'),
  username: z.string().optional(),
  credential: z.string().optional(),
});

export const configSchema = z.object({
  host: z.string().default('127.0.0.1'),
  port: z.number().int().min(0).max(65535).default(9010),
  tls: z.object({ cert: z.string(), key: z.string() }).optional(),
  log_level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  auth: z.object({
    mode: z.enum(['open', 'static', 'jwt']).default('open'),
    /** Users that are admins in `open` mode. */
    admins: z.array(z.string()).default(['admin']),
    users: z.array(userSchema).default([]),
    users_file: z.string().optional(),
    jwt_secret: z.string().min(16, 'use at least 16 characters').optional(),
    jwt_public_key: z.string().optional(),
    jwt_issuer: z.string().optional(),
    jwt_audience: z.string().optional(),
  }).prefault({}),
  ice: z.object({
    /** UDP ports for ICE, inclusive; unset = any free port. */
    port_min: z.number().int().min(1024).max(65535).optional(),
    port_max: z.number().int().min(1024).max(65535).optional(),
    /** Addresses announced in host candidates in place of the interfaces' (1:1 NAT, cloud). */
    announced_addresses: z.array(z.string().refine((a) => isIP(a) !== 0, 'not an IP address')).default([]),
    /** Offer 127.0.0.1 host candidates (needed for same-machine clients and the tests). */
    include_loopback: z.boolean().default(true),
    /** Gather on the machine's non-loopback IPv4 interfaces (off = loopback only). */
    use_interfaces: z.boolean().default(true),
    stun_servers: z.array(z.string().regex(/^stun:/)).default([]),
    turn_servers: z.array(iceServerSchema).default([]),
    /** How long to wait for STUN/TURN answers while gathering. */
    gather_timeout_ms: z.number().int().min(100).max(30000).default(2000),
    /**
     * TURN servers for clients, with the secret they share with us (coturn `use-auth-secret`,
     * `static-auth-secret`): each logged-in client gets short-lived credentials for them.
     */
    client_turn: z.array(z.object({
      urls: z.union([turnUrl, z.array(turnUrl).min(1)]),
      secret: z.string().min(16, 'use at least 16 characters'),
    })).default([]),
    /** How long the clients' TURN credentials last. */
    client_turn_ttl_seconds: z.number().int().min(60).max(7 * 86400).default(86400),
  }).prefault({}),
  /** Plain RTP endpoints (sdp_type "rtp": SIP phones, gateways). */
  rtp: z.object({
    /** Address the RTP sockets bind to; default 0.0.0.0, or 127.0.0.1 when ice.use_interfaces is off. */
    bind_address: z.string().refine((a) => isIP(a) === 4, 'not an IPv4 address').optional(),
    /** Address written in our SDP; default ice.announced_addresses[0], else the first non-loopback IPv4 (127.0.0.1 when none or interfaces are off). */
    announce_address: z.string().refine((a) => isIP(a) === 4, 'not an IPv4 address').optional(),
    /** UDP ports for RTP/RTCP pairs, inclusive; unset = the ICE range, else any free ports. */
    port_min: z.number().int().min(1024).max(65535).optional(),
    port_max: z.number().int().min(1024).max(65535).optional(),
    /** Audio codecs we offer and accept, in order of preference. */
    audio_codecs: z.array(z.enum(['opus', 'G722', 'PCMU', 'PCMA'])).min(1).default(['opus', 'G722', 'PCMU', 'PCMA']),
    /** Video codecs we offer and accept, in order of preference ([] = audio only). */
    video_codecs: z.array(z.enum(['VP8', 'H264'])).default(['VP8', 'H264']),
    /** Symmetric RTP (send where the remote's packets come from): auto = when they come from another IP than its SDP says. */
    latching: z.enum(['auto', 'always', 'off']).default('auto'),
  }).prefault({}),
  /** SIP signalling (docs/SIP.md). Off unless a UDP or TCP port is set. */
  sip: z.object({
    /** Address SIP listens on (UDP and TCP). */
    host: z.string().refine((a) => isIP(a) === 4, 'not an IPv4 address').default('127.0.0.1'),
    /** Listen for SIP over UDP on this port (0: any free port). */
    udp_port: z.number().int().min(0).max(65535).optional(),
    /** Listen for SIP over TCP on this port (0: any free port). */
    tcp_port: z.number().int().min(0).max(65535).optional(),
    /** Host written in Via/Contact (default: the listening host, or the first external IPv4 for 0.0.0.0). */
    public_host: z.string().optional(),
    /** An incoming INVITE to this user gets an echo session. */
    echo_user: z.string().min(1).default('echo'),
    /** An incoming INVITE to this user gets a parked session. */
    park_user: z.string().min(1).default('park'),
    /** Incoming INVITEs to any other user become calls to that user's API connections. */
    calls_to_users: z.boolean().default(true),
    /** Our user part in From of outgoing INVITEs when the caller has none. */
    from_user: z.string().min(1).default('nkmedia'),
    /** Answers to 401/407 challenges to our requests (realm omitted: any realm). */
    credentials: z.array(z.object({ realm: z.string().optional(), username: z.string().min(1), password: z.string() })).default([]),
    /** Registrations to keep (a trunk or a registrar that routes calls to us). */
    register: z.array(z.object({
      registrar: z.string().regex(/^sips?:/, 'a sip: URI'),
      aor: z.string().regex(/^sips?:/, 'a sip: URI'),
      username: z.string().min(1),
      password: z.string(),
      expires: z.number().int().min(60).max(86400).optional(),
    })).default([]),
    /** RFC 3261 T1 in ms (every SIP timer scales with it). */
    t1_ms: z.number().int().min(10).max(5000).default(500),
    /** Incoming dialogs (INVITEs being answered or answered) at once; more get 503 + Retry-After. */
    max_dialogs: z.number().int().min(1).max(1_000_000).default(2000),
    /** Incoming dialogs at once from one source address. */
    max_dialogs_per_address: z.number().int().min(1).max(1_000_000).default(100),
  }).prefault({}),
  limits: z.object({
    max_frame_bytes: z.number().int().min(1024).max(64 * 1024 * 1024).default(1024 * 1024),
    max_in_flight: z.number().int().min(1).max(100000).default(64),
    api_idle_timeout: z.number().int().min(5).max(86400).default(180),
    ping_interval: z.number().int().min(1).max(3600).default(30),
    max_sessions_per_connection: z.number().int().min(1).max(100000).default(1000),
    /** Seconds a connection may stay open without logging in. */
    login_timeout: z.number().int().min(1).max(3600).default(10),
    /** API connections at once, all users ('auto': a quarter of the descriptor limit, at most 10000). */
    max_connections: z.union([z.literal('auto'), z.number().int().min(1).max(1_000_000)]).default('auto'),
    /** API connections at once from one IP address. */
    max_connections_per_address: z.number().int().min(1).max(1_000_000).default(200),
    /** API connections at once logged in as one user. */
    max_connections_per_user: z.number().int().min(1).max(1_000_000).default(50),
    /** Media sessions at once, all users ('auto': derived from the descriptor limit). */
    max_sessions: z.union([z.literal('auto'), z.number().int().min(1).max(1_000_000)]).default('auto'),
    /** Media sessions at once charged to one user (their own, and the legs of calls they place). */
    max_sessions_per_user: z.number().int().min(1).max(1_000_000).default(2000),
    /** With a configured port range: the share of it one user may hold (a media worker's only client holds it all). */
    port_share_per_user: z.number().gt(0).max(1).default(0.5),
    /** Event subscriptions one connection may hold (each session it creates gives it one). */
    max_subscriptions_per_connection: z.number().int().min(1).max(1_000_000).default(2000),
    /** Bytes of replies and events waiting to be sent to one client before it is disconnected. */
    max_buffered_bytes: z.number().int().min(64 * 1024).max(1024 * 1024 * 1024).default(8 * 1024 * 1024),
    /** Failed logins one IP address may make per minute before its logins are refused for a while. */
    login_failures_per_address: z.number().int().min(1).max(100000).default(20),
    /** Failed logins for one user name per minute, from anywhere, before logins to it are slowed. */
    login_failures_per_user: z.number().int().min(1).max(100000).default(10),
  }).prefault({}),
  /** HTTP and WebSocket requests from browsers. */
  http: z.object({
    /**
     * Page origins (`https://app.example.com`) whose WebSocket upgrades are accepted. Empty: in
     * open mode only pages of this server itself; in static/jwt mode any origin (a token or a
     * password is needed anyway).
     */
    allowed_origins: z.array(z.string().regex(/^https?:\/\/[^/\s]+$/, 'an origin: scheme://host[:port], no path')).default([]),
  }).prefault({}),
  /** The Kurento protocol door (`/kurento` on the API port; `nkmedia media-server`). docs/KURENTO.md */
  kurento: z.object({
    /** Seconds a Kurento client session outlives its WebSocket, waiting for a `connect` back; then its objects are released. */
    session_grace_seconds: z.number().int().min(1).max(86400).default(60),
    /** Folders Kurento clients may record to and play from by file:// URI (default: recordings_dir and play_dirs). */
    file_dirs: z.array(z.string()).default([]),
    /** Pipelines and elements one user may hold at once (endpoints also count against the session quota). */
    max_objects_per_user: z.number().int().min(1).max(1_000_000).default(10_000),
    /** The user Kurento clients act as in open mode (objects, quota). */
    open_user: z.string().min(1).max(128).default('kurento'),
  }).prefault({}),
  /** Where media moves (README "Workers and media nodes"). */
  media: z.object({
    /**
     * Media worker processes ('auto': one per core, none on a one-core machine; 0: media in this
     * process). With workers, this process keeps the API, sessions, rooms, calls and SIP
     * signalling and moves no media.
     */
    workers: z.union([z.literal('auto'), z.number().int().min(0).max(256)]).default('auto'),
    /** Media servers elsewhere: `nkmedia media-server` or Kurento Media Server 7, by Kurento URL. */
    nodes: z.array(z.object({
      id: z.string().min(1).max(64).regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'letters, digits and . _ -'),
      url: z.string().regex(/^wss?:\/\/\S+$/, 'a ws:// or wss:// URL'),
      /** Sent as access_token: a JWT, or user:password (our server's static users). */
      token: z.string().optional(),
    })).default([]),
    /** Each request to a node fails after this long (ms); the node is dropped when pings go unanswered as long. */
    node_request_timeout_ms: z.number().int().min(100).max(600_000).default(10_000),
  }).prefault({}),
  rooms: z.object({
    /** Listeners of one room on one media node before further listeners go to another node (one pipe per node). */
    max_listeners_per_node: z.number().int().min(1).max(100_000).default(200),
  }).prefault({}),
  recordings_dir: z.string().default('./recordings'),
  /** Folders whose files `play` may open (besides the user's own recordings). */
  play_dirs: z.array(z.string()).default(['./media']),
  /** Whether `play` may fetch http(s) URIs. */
  play_allow_http: z.boolean().default(true),
  /**
   * Addresses or networks (CIDR) that `play` may fetch from although they are loopback,
   * private, link-local or otherwise not public (e.g. ["10.1.2.0/24"] for an internal media
   * store). Public addresses are always allowed.
   */
  play_http_allow: z.array(z.string().refine(isAddressOrCidr, 'an IP address or a CIDR network (10.0.0.0/8)')).default([]),
}).superRefine((c, ctx) => {
  if ((c.ice.port_min === undefined) !== (c.ice.port_max === undefined)) ctx.addIssue({ code: 'custom', path: ['ice', 'port_min'], message: 'port_min and port_max go together' });
  if (c.ice.port_min !== undefined && c.ice.port_max !== undefined && c.ice.port_min > c.ice.port_max) ctx.addIssue({ code: 'custom', path: ['ice', 'port_min'], message: 'port_min > port_max' });
  if ((c.rtp.port_min === undefined) !== (c.rtp.port_max === undefined)) ctx.addIssue({ code: 'custom', path: ['rtp', 'port_min'], message: 'port_min and port_max go together' });
  if (c.rtp.port_min !== undefined && c.rtp.port_max !== undefined && c.rtp.port_max - c.rtp.port_min < 1) ctx.addIssue({ code: 'custom', path: ['rtp', 'port_min'], message: 'the RTP range needs at least two ports' });
  const ids = c.media.nodes.map((n) => n.id);
  if (new Set(ids).size !== ids.length) ctx.addIssue({ code: 'custom', path: ['media', 'nodes'], message: 'node ids must be unique' });
  if (ids.some((id) => /^worker-\d+$/.test(id))) ctx.addIssue({ code: 'custom', path: ['media', 'nodes'], message: 'node ids worker-N are the workers\' own' });
  if (c.auth.mode === 'jwt' && !c.auth.jwt_secret && !c.auth.jwt_public_key) ctx.addIssue({ code: 'custom', path: ['auth', 'jwt_secret'], message: 'jwt mode needs jwt_secret or jwt_public_key' });
});

export type Config = z.output<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;

export class ConfigError extends Error {}

export function parseConfig(input: unknown): Config {
  const r = configSchema.safeParse(input);
  if (!r.success) {
    const msg = r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw new ConfigError(`invalid configuration: ${msg}`);
  }
  const cfg = r.data;
  if (cfg.auth.users_file) cfg.auth.users = [...cfg.auth.users, ...readUsersFile(cfg.auth.users_file)];
  return cfg;
}

function readUsersFile(path: string): z.output<typeof userSchema>[] {
  let raw: unknown;
  try { raw = JSON.parse(readFileSync(path, 'utf8')); } catch (err) { throw new ConfigError(`cannot read users file ${path}: ${(err as Error).message}`); }
  const r = z.array(userSchema).safeParse(raw);
  if (!r.success) throw new ConfigError(`users file ${path}: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return r.data;
}

/** An IPv4/IPv6 address, or one with a /prefix (a CIDR network). */
export function isAddressOrCidr(s: string): boolean {
  const [addr, bits, ...rest] = s.split('/');
  if (rest.length > 0 || !addr) return false;
  const family = isIP(addr);
  if (family === 0) return false;
  if (bits === undefined) return true;
  if (!/^\d{1,3}$/.test(bits)) return false;
  return Number(bits) <= (family === 4 ? 32 : 128);
}

/** Merges plain objects deeply (later wins); arrays and scalars replace. */
export function mergeConfig(...layers: Record<string, unknown>[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const layer of layers) {
    for (const [k, v] of Object.entries(layer)) {
      if (v === undefined) continue;
      const prev = out[k];
      out[k] = isPlain(v) && isPlain(prev) ? mergeConfig(prev, v) : v;
    }
  }
  return out;
}

function isPlain(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** NKMEDIA_* variables as a config layer. */
export function envLayer(env: NodeJS.ProcessEnv): Record<string, unknown> {
  const num = (v?: string) => (v === undefined || v === '' ? undefined : Number(v));
  const list = (v?: string) => (v === undefined || v === '' ? undefined : v.split(',').map((s) => s.trim()).filter(Boolean));
  const bool = (v?: string) => (v === undefined || v === '' ? undefined : v === '1' || v === 'true');
  return {
    host: env.NKMEDIA_HOST,
    port: num(env.NKMEDIA_PORT),
    log_level: env.NKMEDIA_LOG_LEVEL,
    recordings_dir: env.NKMEDIA_RECORDINGS_DIR,
    tls: env.NKMEDIA_TLS_CERT || env.NKMEDIA_TLS_KEY ? { cert: env.NKMEDIA_TLS_CERT, key: env.NKMEDIA_TLS_KEY } : undefined,
    auth: {
      mode: env.NKMEDIA_AUTH,
      users_file: env.NKMEDIA_USERS_FILE,
      jwt_secret: env.NKMEDIA_JWT_SECRET,
      jwt_public_key: env.NKMEDIA_JWT_PUBLIC_KEY,
      admins: list(env.NKMEDIA_ADMINS),
    },
    sip: {
      host: env.NKMEDIA_SIP_HOST,
      udp_port: num(env.NKMEDIA_SIP_UDP_PORT),
      tcp_port: num(env.NKMEDIA_SIP_TCP_PORT),
      public_host: env.NKMEDIA_SIP_PUBLIC_HOST,
    },
    rtp: {
      bind_address: env.NKMEDIA_RTP_BIND_ADDRESS,
      announce_address: env.NKMEDIA_RTP_ANNOUNCE_ADDRESS,
      port_min: num(env.NKMEDIA_RTP_PORT_MIN),
      port_max: num(env.NKMEDIA_RTP_PORT_MAX),
    },
    media: {
      workers: env.NKMEDIA_WORKERS === 'auto' ? 'auto' : num(env.NKMEDIA_WORKERS),
    },
    ice: {
      port_min: num(env.NKMEDIA_ICE_PORT_MIN),
      port_max: num(env.NKMEDIA_ICE_PORT_MAX),
      announced_addresses: list(env.NKMEDIA_ICE_ANNOUNCED_ADDRESSES),
      stun_servers: list(env.NKMEDIA_STUN_SERVERS),
      include_loopback: bool(env.NKMEDIA_ICE_LOOPBACK),
      use_interfaces: bool(env.NKMEDIA_ICE_USE_INTERFACES),
    },
  };
}

export function fileLayer(path: string): Record<string, unknown> {
  try {
    const v: unknown = JSON.parse(readFileSync(path, 'utf8'));
    if (!isPlain(v)) throw new Error('not a JSON object');
    return v;
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as Error).message}`);
  }
}

/** Folders Kurento clients may name in file:// URIs: as configured, else the recordings and media folders. */
export function kurentoFileDirs(c: Config): string[] {
  return c.kurento.file_dirs.length > 0 ? [...c.kurento.file_dirs] : [c.recordings_dir, ...c.play_dirs];
}
