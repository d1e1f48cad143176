// `nkmedia` command line: serve, hash-password, make-token.
import { parseArgs } from 'node:util';
import { SignJWT } from 'jose';
import { ConfigError, envLayer, fileLayer, mergeConfig } from './config.js';
import { hashPassword } from './access/auth.js';
import { StartupError } from './api/server.js';
import { startServer } from './main.js';
import { planeUnavailableReason } from './engine/local/accel/forwarding-plane.js';

const USAGE = `usage: nkmedia <command> [options]

commands:
  serve             start the server (default): the NkMEDIA API, and kurento-client
                    applications on ws://HOST:PORT/kurento
  media-server      run only the media engine behind the Kurento protocol, as a Kurento
                    Media Server would (default ws://127.0.0.1:8888/kurento); takes the
                    serve options below
  hash-password PW  print a password hash for a static user entry
  make-token        print a signed JWT (--user NAME --secret S [--admin] [--expires 1h])

serve options (each also settable in a JSON config file and as NKMEDIA_* variables):
  --config FILE           JSON configuration file (env NKMEDIA_CONFIG)
  --host ADDR             listen address (default 127.0.0.1)
  --port N                listen port (default 9010)
  --tls-cert FILE         certificate (PEM) for wss
  --tls-key FILE          private key (PEM) for wss
  --auth MODE             open | static | jwt (default open, loopback only)
  --users-file FILE       static users: [{"user","password_hash","admin"}]
  --jwt-secret S          HMAC secret for jwt auth
  --ice-ports MIN-MAX     UDP port range for media
  --announce IP[,IP]      addresses announced in host candidates (1:1 NAT)
  --stun URL[,URL]        STUN servers (none by default)
  --no-ice-loopback       do not offer 127.0.0.1 candidates
  --ice-loopback-only     offer only 127.0.0.1 candidates (no other interfaces)
  --log-level LEVEL       fatal|error|warn|info|debug|trace|silent
  --workers N|auto        media worker processes (default auto: one per core, none on one core;
                          0: media in this process)
`;

export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string' }, host: { type: 'string' }, port: { type: 'string' },
      'tls-cert': { type: 'string' }, 'tls-key': { type: 'string' }, auth: { type: 'string' },
      'users-file': { type: 'string' }, 'jwt-secret': { type: 'string' }, 'ice-ports': { type: 'string' },
      announce: { type: 'string' }, stun: { type: 'string' }, 'no-ice-loopback': { type: 'boolean' },
      'ice-loopback-only': { type: 'boolean' }, 'log-level': { type: 'string' }, workers: { type: 'string' },
      user: { type: 'string' }, secret: { type: 'string' }, admin: { type: 'boolean' }, expires: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const cmd = positionals[0] ?? 'serve';
  if (values.help) { process.stdout.write(USAGE); return 0; }

  if (cmd === 'hash-password') {
    const pw = positionals[1];
    if (!pw) { process.stderr.write('hash-password needs the password as an argument\n'); return 2; }
    process.stdout.write(`${await hashPassword(pw)}\n`);
    return 0;
  }
  if (cmd === 'make-token') {
    if (!values.user || !values.secret) { process.stderr.write('make-token needs --user and --secret\n'); return 2; }
    const token = await new SignJWT({ admin: values.admin ?? false })
      .setProtectedHeader({ alg: 'HS256' }).setSubject(values.user).setIssuedAt()
      .setExpirationTime(values.expires ?? '1h').sign(new TextEncoder().encode(values.secret));
    process.stdout.write(`${token}\n`);
    return 0;
  }
  if (cmd !== 'serve' && cmd !== 'media-server') { process.stderr.write(USAGE); return 2; }
  const mediaServer = cmd === 'media-server';

  const list = (v?: string) => v?.split(',').map((s) => s.trim()).filter(Boolean);
  const [portMin, portMax] = values['ice-ports']?.split('-').map(Number) ?? [];
  const flags: Record<string, unknown> = {
    host: values.host,
    port: values.port !== undefined ? Number(values.port) : undefined,
    log_level: values['log-level'],
    media: values.workers !== undefined ? { workers: values.workers === 'auto' ? 'auto' : Number(values.workers) } : undefined,
    tls: values['tls-cert'] || values['tls-key'] ? { cert: values['tls-cert'], key: values['tls-key'] } : undefined,
    auth: { mode: values.auth, users_file: values['users-file'], jwt_secret: values['jwt-secret'] },
    ice: {
      port_min: portMin, port_max: portMax,
      announced_addresses: list(values.announce), stun_servers: list(values.stun),
      include_loopback: values['no-ice-loopback'] ? false : undefined,
      use_interfaces: values['ice-loopback-only'] ? false : undefined,
    },
  };
  const configFile = values.config ?? process.env.NKMEDIA_CONFIG;
  try {
    // The media server listens where KMS does unless told otherwise.
    const defaults = mediaServer ? { port: 8888 } : {};
    const input = mergeConfig(defaults, configFile ? fileLayer(configFile) : {}, envLayer(process.env), flags);
    const server = await startServer(input, undefined, { mode: mediaServer ? 'media-server' : 'full' });
    const log = server.services.log;
    // The backstop: nothing a peer sends is meant to reach here (every socket has an error
    // listener, every engine callback is guarded), but should something slip through, one
    // failed operation is logged and everyone else's calls go on instead of the process exiting.
    process.on('uncaughtException', (err, origin) => log.error({ err, origin }, 'uncaught exception (server kept running)'));
    process.on('unhandledRejection', (reason) => log.error({ err: reason }, 'unhandled rejection (server kept running)'));
    let stopping = false;
    const stop = async (signal: string) => {
      if (stopping) {
        log.warn({ signal }, 'second signal: exiting now');
        process.exit(1);
      }
      stopping = true;
      log.info({ signal }, 'shutting down');
      await server.close();
      process.exit(0);
    };
    process.on('SIGINT', () => void stop('SIGINT'));
    process.on('SIGTERM', () => void stop('SIGTERM'));
    if (mediaServer) process.stdout.write(`nkmedia-ts media server (Kurento protocol) listening on ${server.url}kurento (auth: ${server.config.auth.mode})\n`);
    else process.stdout.write(`nkmedia-ts listening on ${server.url} (auth: ${server.config.auth.mode}); Kurento clients: ${server.url}kurento\n`);
    // Media between WebRTC endpoints is forwarded natively when the addon is built.
    const noPlane = planeUnavailableReason();
    if (noPlane) server.services.log.warn({ reason: noPlane }, 'native forwarding plane off: media is forwarded through JS (slower)');
    return -1; // keep running
  } catch (err) {
    if (err instanceof ConfigError || err instanceof StartupError) {
      process.stderr.write(`nkmedia: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
}
