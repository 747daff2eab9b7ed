import pg from 'pg';
import { readClientCertificate, readPrivateKey, readRootCertificates } from './certificate-files.js';
import { NegotiatedStream, type NegotiationEvents, type PlaintextFallback, type TlsDescription } from './negotiating-stream.js';
import { policyFor, type ServerVerification } from './encryption-policy.js';

export type { NegotiatedStream, PlaintextFallback, ServerVerification, TlsDescription };

/** The six libpq sslmodes, weakest first. */
export const SSL_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;
export type SslMode = (typeof SSL_MODES)[number];

/** One raw setting and where it came from (`DB_SSLMODE`, `DATABASE_URL sslmode`, `option sslMode`). */
export interface SslSource {
  readonly value: string;
  readonly name: string;
}

/** The raw TLS settings the config resolver found, already narrowed by precedence. */
export interface SslInputs {
  mode?: SslSource;
  rootCert?: SslSource;
  cert?: SslSource;
  key?: SslSource;
}

/**
 * Resolved TLS settings: the mode plus certificate contents read once at config time. The file
 * contents (`ca`, `cert`, `key`) are not enumerable, so they never reach JSON or logs.
 */
export interface SslSettings {
  readonly mode: SslMode;
  /** What a TLS connection checks about the server certificate (require + a root file: `ca`). */
  readonly serverVerification: ServerVerification;
  /** Path of the root certificate file, or `system`. */
  readonly rootCertPath?: string;
  readonly certPath?: string;
  readonly keyPath?: string;
  /** Root certificates (PEM); absent for `system`, whose store is Node's default one. */
  readonly ca?: string;
  /** Client certificate chain (PEM). */
  readonly cert?: string;
  /** Client private key (PEM). */
  readonly key?: string;
}

/** Hooks the connection layer calls so the pool can log per-connection TLS facts. */
export interface SslEvents {
  /**
   * Called when a `prefer` connection attempt goes on without TLS (the server answered 'N', the
   * handshake failed, or the server refused the TLS session). Called per attempt: the pool decides
   * how often to log. Must not throw.
   */
  onPlaintextFallback?: (event: PlaintextFallback) => void;
}

const SHOWN_VALUE_LENGTH = 40;

function show(value: string): string {
  return JSON.stringify(value.length > SHOWN_VALUE_LENGTH ? `${value.slice(0, SHOWN_VALUE_LENGTH)}...` : value);
}

/** Exact libpq spelling only: libpq rejects `Require` or `require ` too, and so do we (with a hint). */
function parseMode(source: SslSource, problems: string[]): SslMode | undefined {
  if ((SSL_MODES as readonly string[]).includes(source.value)) return source.value as SslMode;
  const near = SSL_MODES.find((mode) => mode === source.value.trim().toLowerCase());
  const hint = near
    ? ` (did you mean "${near}"? sslmode is case-sensitive and takes no spaces, as in libpq)`
    : source.value === 'no-verify'
      ? ' ("no-verify" is node-postgres\' own value; "require" is the libpq mode that encrypts without checking the certificate)'
      : '';
  problems.push(
    `${source.name} is ${show(source.value)}, which is not an sslmode${hint}; expected one of ${SSL_MODES.join(', ')}.`,
  );
  return undefined;
}

/**
 * Resolves sslmode and certificate files into {@link SslSettings}, with libpq's rules:
 * `sslrootcert=system` without an sslmode means verify-full, and with a weaker explicit sslmode is
 * refused; a root file makes `require` verify the chain (verify-ca). Certificate and key files are
 * read and parsed now, once.
 *
 * Problems are pushed to `problems`, one sentence each naming the variable or option; a file's
 * content is never quoted. Where libpq would look for ~/.postgresql/root.crt, we report a problem:
 * verify-ca and verify-full need an explicit root certificate (docs/security.md).
 *
 * @returns frozen settings (meaningful only when no problem was pushed).
 */
export function resolveSsl(inputs: SslInputs, problems: string[]): SslSettings {
  const explicitMode = inputs.mode ? parseMode(inputs.mode, problems) : undefined;
  let mode: SslMode = explicitMode ?? 'prefer';
  const root = inputs.rootCert;
  const isSystemRoot = root?.value === 'system';
  if (root && isSystemRoot) {
    if (inputs.mode === undefined) mode = 'verify-full';
    else if (explicitMode !== undefined && explicitMode !== 'verify-full') {
      problems.push(
        `${root.name} is "system" (the system trust store), which requires sslmode verify-full, but ${inputs.mode.name} is "${explicitMode}": any public CA could vouch for an impostor unless the host name is checked (libpq refuses this too).`,
      );
    }
  }
  if ((mode === 'verify-ca' || mode === 'verify-full') && !root) {
    problems.push(
      `${inputs.mode?.name ?? 'sslmode'} is "${mode}", which needs a root certificate to check the server against; set DB_SSLROOTCERT (or sslrootcert in the URL, or the sslRootCert option) to a CA file, or to "system" for the system trust store.`,
    );
  }
  const ca = root && !isSystemRoot ? readRootCertificates(root, problems) : undefined;
  const cert = inputs.cert ? readClientCertificate(inputs.cert, problems) : undefined;
  const key = inputs.key ? readPrivateKey(inputs.key, problems) : undefined;
  if (inputs.cert && !inputs.key) {
    problems.push(
      `${inputs.cert.name} names a client certificate but no private key is set; set DB_SSLKEY (or sslkey in the URL, or the sslKey option) too.`,
    );
  }
  if (inputs.key && !inputs.cert) {
    problems.push(
      `${inputs.key.name} names a private key but no client certificate is set; set DB_SSLCERT (or sslcert in the URL, or the sslCert option) too.`,
    );
  }
  if (cert && key && !cert.leaf.checkPrivateKey(key.key)) {
    problems.push(
      `${inputs.cert!.name} and ${inputs.key!.name} do not belong together: the certificate's public key does not match the private key.`,
    );
  }
  const serverVerification: ServerVerification =
    mode === 'verify-full' ? 'full' : mode === 'verify-ca' || (mode !== 'disable' && root && !isSystemRoot) ? 'ca' : 'none';
  const settings: Record<string, unknown> = { mode, serverVerification };
  if (root) settings.rootCertPath = root.value;
  if (inputs.cert) settings.certPath = inputs.cert.value;
  if (inputs.key) settings.keyPath = inputs.key.value;
  const hidden: Array<[string, string | undefined]> = [
    ['ca', ca],
    ['cert', cert?.pem],
    ['key', key?.pem],
  ];
  for (const [name, value] of hidden) {
    if (value !== undefined) Object.defineProperty(settings, name, { value, enumerable: false });
  }
  return Object.freeze(settings) as unknown as SslSettings;
}

/** Keys through which pg would apply its own TLS handling (pg-connection-string's sslmode mapping, `ssl`). */
const PG_TLS_KEYS = new Set(['ssl', 'sslmode', 'sslrootcert', 'sslcert', 'sslkey', 'sslnegotiation', 'uselibpqcompat']);

/** Removes pg's TLS parameters from a connection string's query, leaving everything else as written. */
function withoutTlsParameters(connectionString: string): string {
  const start = connectionString.indexOf('?');
  if (start === -1) return connectionString;
  const hash = connectionString.indexOf('#', start);
  const end = hash === -1 ? connectionString.length : hash;
  const kept = connectionString
    .slice(start + 1, end)
    .split('&')
    .filter((pair) => {
      const key = new URLSearchParams(pair).keys().next().value;
      return key === undefined || !PG_TLS_KEYS.has(key);
    });
  return `${connectionString.slice(0, start)}${kept.length > 0 ? `?${kept.join('&')}` : ''}${connectionString.slice(end)}`;
}

const streams = new WeakMap<pg.Client, NegotiatedStream>();
/** Clients made for sslmode=disable: pg's own socket, never encrypted. */
const plaintextClients = new WeakSet<pg.Client>();
const PLAINTEXT: TlsDescription = Object.freeze({
  isEncrypted: false,
  protocol: null,
  cipher: null,
  serverVerification: null,
  hasFallenBack: false,
});

/**
 * A pg.Client class that negotiates TLS exactly as `settings.mode` means in libpq, decided per
 * connection attempt. Pass it as the pool's `Client`; pg's cancel requests made through it
 * (`new Cls(config).cancel(...)`) negotiate the same way, so they go over TLS whenever a session would.
 *
 * Whatever TLS configuration the constructor's config carries is ignored: `ssl`, and `sslmode`,
 * `sslrootcert`, `sslcert`, `sslkey`, `sslnegotiation` in it or in its `connectionString` (and
 * PGSSLMODE in the environment); `settings` alone decides. Connection failures (TLS refused, a
 * certificate rejected) reject `connect()` with an Error whose message says which check failed.
 */
export function createClientClass(settings: SslSettings, events: SslEvents = {}): typeof pg.Client {
  const policy = policyFor(settings);
  const negotiationEvents: NegotiationEvents = { onPlaintextFallback: events.onPlaintextFallback };
  const isPlaintextOnly = policy.methods.length === 1 && policy.methods[0] === 'plaintext';
  return class NegotiatingClient extends pg.Client {
    constructor(config?: string | pg.ClientConfig) {
      const given: Record<string, unknown> = typeof config === 'string' ? { connectionString: config } : { ...config };
      // pg-pool hides `password` as a non-enumerable property, so the spread above drops it.
      if (typeof config === 'object' && config.password !== undefined) given.password = config.password;
      for (const key of PG_TLS_KEYS) delete given[key];
      if (typeof given.connectionString === 'string') given.connectionString = withoutTlsParameters(given.connectionString);
      // sslmode=disable negotiates nothing: pg's own socket, without a stream layer that costs every
      // message a few microseconds (docs/benchmarks.md).
      const stream = isPlaintextOnly ? undefined : new NegotiatedStream(policy, negotiationEvents);
      // ssl: false keeps pg out of TLS (and from reading PGSSLMODE); sslnegotiation overrides PGSSLNEGOTIATION.
      super({
        ...(given as pg.ClientConfig),
        ssl: false,
        sslnegotiation: 'postgres',
        ...(stream ? { stream: () => stream } : {}),
      });
      if (stream) streams.set(this, stream);
      else plaintextClients.add(this);
    }
  };
}

/**
 * Whether `client`'s connection is encrypted, as negotiated: protocol, cipher, what was verified,
 * and whether the sslmode's second choice is in use. `undefined` for a client that was not made by
 * {@link createClientClass}. The server's own view is `SELECT ssl, version FROM pg_stat_ssl WHERE
 * pid = pg_backend_pid()`.
 */
export function describeTls(client: pg.Client): TlsDescription | undefined {
  return streams.get(client)?.describe() ?? (plaintextClients.has(client) ? PLAINTEXT : undefined);
}

/**
 * Opens a raw connection negotiated as `settings` says (for a CancelRequest: wait for 'connect',
 * write the 16-byte packet, wait for 'close'). Errors arrive as an 'error' event.
 */
export function connectNegotiated(settings: SslSettings, target: { host: string; port: number }): NegotiatedStream {
  const stream = new NegotiatedStream(policyFor(settings));
  return target.host.startsWith('/')
    ? stream.connect(`${target.host}/.s.PGSQL.${target.port}`)
    : stream.connect(target.port, target.host);
}
