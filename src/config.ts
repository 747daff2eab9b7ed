import { parse as parseConnectionString } from 'pg-connection-string';
import type { Logger } from 'pino';
import { LOG_LEVELS, SETTINGS, type LogLevel, type SettingSpec } from './config-table.js';
import { ConfigError } from './errors.js';
import {
  resolveLoginSource,
  type CredentialsProvider,
  type LoginSource,
  type PasswordProvider,
} from './credentials/login-source.js';
import { resolveSsl, type SslInputs, type SslMode, type SslSettings, type SslSource } from './ssl/ssl-settings.js';
import {
  formatHost,
  LOAD_BALANCE_HOSTS,
  parseHostSpec,
  splitUrlHostList,
  zipHostsAndPorts,
  type HostAddress,
  type LoadBalanceHosts,
} from './replicas/host-list.js';
import { TARGET_SESSION_ATTRS, type TargetSessionAttrs } from './replicas/session-attrs.js';

/** A replica given as an object instead of a URL. Missing fields fall back to the primary's. */
export interface ReplicaOptions {
  connectionString?: string;
  host?: string;
  port?: number;
  user?: string;
  password?: string;
  database?: string;
  /** Name in stats, health and logs; defaults to `host:port`. */
  name?: string;
  min?: number;
  max?: number;
}

/**
 * Options for `new Database(options)` and `loadConfig(env, options)`. Every field is optional and wins
 * over DATABASE_URL, the DB_* variables and the defaults (docs/configuration.md).
 */
export interface DatabaseOptions {
  /** A postgres:// URL; replaces DATABASE_URL when given. May carry a libpq host list (`h1:5432,h2:5432`). */
  connectionString?: string;
  /** Server host name, IP address or Unix socket directory. @default 'localhost' (DB_HOST) */
  host?: string;
  /** Server port. @default 5432 (DB_PORT) */
  port?: number;
  /**
   * The primary's candidate servers, tried in order (libpq's host list); wins over `host`/`port`, the
   * URL and `DB_HOST`/`DB_PORT`. A missing `port` is the resolved `port` (default 5432).
   */
  hosts?: ReadonlyArray<{ host: string; port?: number }>;
  /** Which server of the list the primary pool uses, with libpq's meanings. @default 'read-write' with several hosts, else 'any' (DB_TARGET_SESSION_ATTRS) */
  targetSessionAttrs?: TargetSessionAttrs;
  /** `random` shuffles the host list for each search, as libpq 16. @default 'disable' (DB_LOAD_BALANCE_HOSTS) */
  loadBalanceHosts?: LoadBalanceHosts;
  /**
   * Where read-only work may go besides the primary and `replicas`: `prefer-standby` makes every host of
   * the host list a read replica while it is a standby (the router's probe finds which), so reads follow
   * the standbys through a failover. A warning, and no effect, without a host list.
   * @default 'any' (DB_READ_TARGET_SESSION_ATTRS)
   */
  readTargetSessionAttrs?: ReadTargetSessionAttrs;
  /** User name. @default 'postgres' (DB_USER) */
  user?: string;
  /**
   * The password, or a function returning it (or a promise of it), called when a new connection needs a login (for tokens such
   * as RDS IAM's; see `credentialsCacheMillis`). Never logged.
   * @default unset (DB_PASSWORD)
   */
  password?: string | PasswordProvider;
  /** A function returning `{ user, password, expiresAt? }` for providers that rotate both (Vault); excludes `password`. */
  credentials?: CredentialsProvider;
  /** A file holding the password, read again for every new connection. @default unset (DB_PASSWORD_FILE) */
  passwordFile?: string;
  /** Deadline of one provider call or password-file read, ms. @default 5000 (DB_CREDENTIALS_TIMEOUT) */
  credentialsTimeoutMillis?: number;
  /** How long a provider's login is reused, ms; 0 = never. @default 300000 (DB_CREDENTIALS_CACHE) */
  credentialsCacheMillis?: number;
  /** Database name. @default 'postgres' (DB_NAME) */
  database?: string;
  /**
   * TLS mode with libpq's meanings: disable, allow, prefer, require, verify-ca or verify-full (docs/security.md).
   * @default 'prefer' (DB_SSLMODE)
   */
  sslMode?: SslMode;
  /** Root certificate file, or `system` for the system trust store. @default unset (DB_SSLROOTCERT) */
  sslRootCert?: string;
  /** Client certificate file. @default unset (DB_SSLCERT) */
  sslCert?: string;
  /** Client private key file. @default unset (DB_SSLKEY) */
  sslKey?: string;
  /** Connections kept open (opened by `ready()`, refilled after losses). @default 2 (DB_POOL_MIN) */
  min?: number;
  /** Most connections open at once. @default 10 (DB_POOL_MAX) */
  max?: number;
  /** Deadline to open a connection and deadline to acquire one, ms (DB_TIMEOUT is in seconds). @default 30000 (DB_TIMEOUT) */
  connectionTimeoutMillis?: number;
  /**
   * Server `statement_timeout`, ms; 0 = not set by us (the server's own setting applies).
   * @default 30000 (DB_STATEMENT_TIMEOUT)
   */
  statementTimeoutMillis?: number;
  /**
   * Server `idle_in_transaction_session_timeout`, ms; 0 = not set by us (the server's own setting applies).
   * @default 60000 (DB_IDLE_TIMEOUT)
   */
  idleInTransactionTimeoutMillis?: number;
  /** Server `lock_timeout`, ms; 0 = not set by us (the server's own setting applies). @default 0 (DB_LOCK_TIMEOUT) */
  lockTimeoutMillis?: number;
  /** An unused connection above `min` is closed after this long, ms; 0 = never. @default 10000 (DB_POOL_IDLE_TIMEOUT) */
  idleTimeoutMillis?: number;
  /** A connection is retired after this long (minus up to 10% jitter), ms; 0 = never. @default 1800000 (DB_POOL_MAX_LIFETIME) */
  maxLifetimeMillis?: number;
  /** Most callers queued for a connection; past it an acquire fails at once. 0 = no cap. @default 0 (DB_POOL_MAX_WAITING) */
  maxWaiting?: number;
  /** A connection idle longer than this is validated on checkout, ms; 0 = always. @default 1000 (DB_VALIDATION_INTERVAL) */
  validationIntervalMillis?: number;
  /** How long one validation may take before the connection is evicted, ms. @default 1000 (DB_VALIDATION_TIMEOUT) */
  validationTimeoutMillis?: number;
  /** Warn, with the acquiring stack, when a connection is held longer, ms; 0 = off. @default 0 (DB_LEAK_DETECTION_THRESHOLD) */
  leakDetectionThresholdMillis?: number;
  /** Server `application_name`. @default 'codecheck-api' (DB_APPLICATION_NAME) */
  applicationName?: string;
  /** Read replicas: URLs or replica objects (docs/operations.md). @default unset (DB_REPLICA_URLS) */
  replicas?: ReadonlyArray<string | ReplicaOptions>;
  /** A replica lagging more than this gets no reads, ms. @default 10000 (DB_REPLICA_MAX_LAG) */
  replicaMaxLagMillis?: number;
  /**
   * A replica that fails to connect or answer gets no reads for at least this long, then needs a successful probe, ms.
   * @default 10000 (DB_REPLICA_BAN_TIME)
   */
  replicaBanMillis?: number;
  /**
   * How often each node's role, replay position and lag are checked in the background, ms.
   * @default 1000 (DB_REPLICA_CHECK_INTERVAL)
   */
  replicaCheckIntervalMillis?: number;
  /**
   * How long a read with a write token waits for a replica to replay that write before it goes to the primary, ms.
   * @default 500 (DB_REPLICA_WAIT)
   */
  replicaWaitMillis?: number;
  /** URL for the notification listener's connection (`db.listen`); the primary when unset. @default unset (DB_LISTEN_URL) */
  listenUrl?: string;
  /** Keepalive ping interval of the listener connection, ms. @default 10000 (DB_LISTEN_KEEPALIVE) */
  listenKeepaliveMillis?: number;
  /** `true` behind PgBouncer transaction pooling (docs/operations.md). @default false (DB_PGBOUNCER) */
  pgbouncer?: boolean;
  /**
   * Behind PgBouncer, let `name` in a query config through (PgBouncer 1.21+ with `max_prepared_statements`).
   * @default false (DB_PGBOUNCER_PREPARED_STATEMENTS)
   */
  pgbouncerPreparedStatements?: boolean;
  /**
   * Automatic prepared statements: most statement texts prepared per connection; 0 = off.
   * @default 100 (DB_MAX_PREPARED_STATEMENTS)
   */
  maxPreparedStatements?: number;
  /**
   * Consecutive connect failures that open the circuit (acquires then fail fast); 0 = off.
   * @default 5 (DB_CIRCUIT_BREAKER_THRESHOLD)
   */
  circuitBreakerThreshold?: number;
  /**
   * How long an open circuit refuses callers' connects before one is let through (half-open), ms; background trial connects
   * close it sooner (after 25, 50, then every 100 ms) and space out towards this value after 30 s open.
   * @default 5000 (DB_CIRCUIT_BREAKER_RESET)
   */
  circuitBreakerResetMillis?: number;
  /** pino level of the library's own logger: fatal, error, warn, info, debug, trace or silent. @default 'info' (DB_LOG_LEVEL) */
  logLevel?: LogLevel;
  /** A pino logger (or child) to log through; without one the library makes its own at `logLevel`. */
  logger?: Logger;
}

/** Where one server lives and how to log in. `password` is not enumerable. */
export interface ConnectionTarget {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string | undefined;
  /** Where logins come from when the password is not a fixed string (a function, `credentials`, a file). */
  readonly loginSource: LoginSource | undefined;
  readonly database: string;
  readonly min: number;
  readonly max: number;
  /**
   * A host of the primary's list serving reads while it is a standby (`readTargetSessionAttrs:
   * 'prefer-standby'`): while it is the primary it gets no reads as a replica, and that is no fault.
   */
  readonly isListHost?: boolean;
}

/** Values of `readTargetSessionAttrs`. */
export const READ_TARGET_SESSION_ATTRS = ['any', 'prefer-standby'] as const;
export type ReadTargetSessionAttrs = (typeof READ_TARGET_SESSION_ATTRS)[number];

/** The resolved, validated, frozen configuration. */
export interface ResolvedConfig extends ConnectionTarget {
  /** The primary's candidate servers in the order given; `host`/`port` are the first one's. */
  readonly hosts: readonly HostAddress[];
  readonly targetSessionAttrs: TargetSessionAttrs;
  readonly loadBalanceHosts: LoadBalanceHosts;
  readonly readTargetSessionAttrs: ReadTargetSessionAttrs;
  readonly ssl: SslSettings;
  readonly applicationName: string;
  readonly connectionTimeoutMillis: number;
  /** The password file (`DB_PASSWORD_FILE`), read for every new connection; its contents are never kept here. */
  readonly passwordFile: string | undefined;
  readonly credentialsTimeoutMillis: number;
  readonly credentialsCacheMillis: number;
  readonly statementTimeoutMillis: number;
  readonly idleInTransactionTimeoutMillis: number;
  readonly lockTimeoutMillis: number;
  readonly idleTimeoutMillis: number;
  readonly maxLifetimeMillis: number;
  readonly maxWaiting: number;
  readonly validationIntervalMillis: number;
  readonly validationTimeoutMillis: number;
  readonly leakDetectionThresholdMillis: number;
  readonly replicas: readonly ConnectionTarget[];
  readonly replicaMaxLagMillis: number;
  readonly replicaBanMillis: number;
  readonly replicaCheckIntervalMillis: number;
  readonly replicaWaitMillis: number;
  /** Where `db.listen` connects (DB_LISTEN_URL); undefined means the primary. */
  readonly listen: ConnectionTarget | undefined;
  readonly listenKeepaliveMillis: number;
  readonly pgbouncer: boolean;
  readonly pgbouncerPreparedStatements: boolean;
  readonly maxPreparedStatements: number;
  readonly circuitBreakerThreshold: number;
  readonly circuitBreakerResetMillis: number;
  readonly logLevel: LogLevel;
  /** One sentence per setting that had no effect (e.g. a DB_* variable overridden by DATABASE_URL). */
  readonly warnings: readonly string[];
}

type Env = Record<string, string | undefined>;
type RawValue = { value: unknown; name: string; fromText: boolean };

const URL_PARAMS: Record<string, string> = {
  sslmode: 'sslMode',
  sslrootcert: 'sslRootCert',
  sslcert: 'sslCert',
  sslkey: 'sslKey',
  application_name: 'applicationName',
  target_session_attrs: 'targetSessionAttrs',
  load_balance_hosts: 'loadBalanceHosts',
};
/** Set by {@link parseUrl} when the URL's authority holds a host list: its hostspec, `h1:p1,h2:p2`. */
const HOST_SPEC_FIELD = 'hostSpec';
const PASSWORD_TEXT = '<redacted>';
/** Query parameters pg-connection-string itself reads into host, port, user and password (as libpq does). */
const URL_FIELD_PARAMS = new Set(['host', 'port', 'user', 'password']);

/**
 * A copy of `source` whose `password` is non-enumerable and rendered as `<redacted>` in JSON and
 * util.inspect. A copy, not the object itself: redefining an existing property would put the object
 * in slow (dictionary) mode, and the pool reads its settings on every checkout.
 */
function hidePassword<T extends { password?: string | undefined }>(source: T): T {
  const { password, ...rest } = source;
  const target = rest as T;
  Object.defineProperty(target, 'password', { value: password, enumerable: false });
  const redacted = () => (password === undefined ? { ...target } : { ...target, password: PASSWORD_TEXT });
  Object.defineProperty(target, 'toJSON', { value: redacted, enumerable: false });
  Object.defineProperty(target, Symbol.for('nodejs.util.inspect.custom'), { value: redacted, enumerable: false });
  return target;
}

/** Parses a postgres URL into option-named text fields; problems never quote the URL. */
function parseUrl(text: string, name: string, problems: string[], warnings: string[]): Record<string, string> {
  const fields: Record<string, string> = {};
  // A libpq host list in the authority is not a WHATWG URL: parse the URL with its first host, keep the list.
  const split = splitUrlHostList(text);
  text = split.url;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    // WHATWG URL refuses a port above 65535: say so, as for any other port out of range.
    const port = portOf(text);
    if (port !== undefined && Number(port) > 65535) {
      problems.push(`${name} port is ${JSON.stringify(port.slice(0, 20))}, out of range; expected 1–65535.`);
      return fields;
    }
    problems.push(`${name} is not a valid URL; expected postgres://user:password@host:port/database.`);
    return fields;
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    problems.push(
      `${name} must start with postgres:// or postgresql:// (found the scheme ${JSON.stringify(url.protocol.slice(0, 20))}).`,
    );
    return fields;
  }
  // pg-connection-string would read certificate files and print its own sslmode warnings; TLS
  // parameters are ours to resolve (src/ssl/ssl-settings.ts), so it only sees the login fields.
  const loginOnly = new URL(text);
  for (const param of [...loginOnly.searchParams.keys()])
    if (param !== 'host' && param !== 'port' && param !== 'user' && param !== 'password' && param !== 'dbname')
      loginOnly.searchParams.delete(param);
  // `?host=a,b&port=1,2` is a host list: ours to pair up, not pg-connection-string's.
  const queryHosts = url.searchParams.get('host');
  const queryPorts = url.searchParams.get('port');
  const isQueryList = queryHosts?.includes(',') === true || queryPorts?.includes(',') === true;
  if (isQueryList) {
    loginOnly.searchParams.delete('host');
    loginOnly.searchParams.delete('port');
  }
  let parsed: ReturnType<typeof parseConnectionString>;
  try {
    parsed = parseConnectionString(loginOnly.toString());
  } catch {
    problems.push(`${name} could not be parsed (check its percent-encoding).`);
    return fields;
  }
  for (const key of ['host', 'port', 'user', 'password', 'database'] as const) {
    const value = parsed[key];
    if (typeof value === 'string' && value !== '') fields[key] = value;
  }
  if (split.hostSpec !== undefined) {
    if (isQueryList) problems.push(`${name} has a host list both in its authority and in ?host=; use one of them.`);
    fields[HOST_SPEC_FIELD] = split.hostSpec;
    delete fields.host;
    delete fields.port;
  } else if (isQueryList) {
    if (queryHosts !== null) fields.host = queryHosts;
    else delete fields.host;
    if (queryPorts !== null) fields.port = queryPorts;
    else delete fields.port;
  } else if (split.hasEmptyHost && queryHosts === null) {
    // `user@/db` names no host: the placeholder is not one (DB_HOST or the default applies, as in libpq).
    delete fields.host;
  }
  for (const [param, value] of url.searchParams) {
    const option = URL_PARAMS[param];
    if (option) fields[option] = value;
    else if (param === 'ssl' && !url.searchParams.has('sslmode') && /^(true|1)$/i.test(value)) {
      // pg reads ssl=true as "verify everything"; keep that strength rather than weaken it silently.
      fields.sslMode = 'verify-full';
      warnings.push(`${name}: ssl=${value} is not a libpq parameter; it was read as sslmode=verify-full (use sslmode).`);
    } else if (param === 'ssl' && url.searchParams.has('sslmode'))
      warnings.push(`${name}: the parameter "ssl" is ignored because sslmode is present.`);
    else if (!URL_FIELD_PARAMS.has(param))
      warnings.push(`${name}: the parameter ${JSON.stringify(param.slice(0, 40))} is not supported and was ignored.`);
  }
  return fields;
}

/**
 * The port digits of a URL's authority (after the last `@`, so never a part of the password), without
 * parsing the rest; undefined when there is none.
 */
function portOf(text: string): string | undefined {
  const authority = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)/i.exec(text)?.[1];
  const hostPort = authority?.slice(authority.lastIndexOf('@') + 1);
  return hostPort === undefined ? undefined : /:(\d+)$/.exec(hostPort)?.[1];
}

/** Connection fields that mean nothing when empty (an empty password may be a real one). */
const NON_EMPTY = new Set(['host', 'user', 'database', 'applicationName']);

function describeValue(raw: RawValue): string {
  const text = String(raw.value);
  return JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}...` : text);
}

/** Converts one raw value to the setting's kind, or pushes a problem and returns undefined. */
function convert(spec: SettingSpec, raw: RawValue, problems: string[]): unknown {
  const inSeconds = spec.kind === 'seconds' && raw.fromText;
  const range = inSeconds
    ? `${spec.min! / 1000}–${spec.max! / 1000} seconds`
    : `${spec.min}–${spec.max}${spec.option.endsWith('Millis') ? ' ms' : ''}`;
  switch (spec.kind) {
    case 'string': {
      if (typeof raw.value !== 'string') return void problems.push(`${raw.name} must be a string.`);
      if (raw.value.includes('\0')) return void problems.push(`${raw.name} must not contain a NUL character.`);
      if (raw.value.trim() === '' && NON_EMPTY.has(spec.option)) return void problems.push(`${raw.name} must not be empty.`);
      return raw.value;
    }
    case 'integer':
    case 'seconds': {
      const text = typeof raw.value === 'number' ? String(raw.value) : typeof raw.value === 'string' ? raw.value.trim() : '';
      const pattern = inSeconds ? /^\d+(\.\d+)?$/ : /^\d+$/;
      if (!pattern.test(text)) {
        const what = inSeconds ? 'a non-negative number of seconds' : 'a non-negative integer';
        return void problems.push(`${raw.name} is ${describeValue(raw)}, which is not ${what}; expected ${range}.`);
      }
      const value = inSeconds ? Math.round(Number(text) * 1000) : Number(text);
      if (value < spec.min! || value > spec.max!)
        return void problems.push(`${raw.name} is ${describeValue(raw)}, out of range; expected ${range}.`);
      return value;
    }
    case 'boolean': {
      if (typeof raw.value === 'boolean') return raw.value;
      const text = typeof raw.value === 'string' ? raw.value.trim().toLowerCase() : '';
      if (['true', '1', 'yes', 'on'].includes(text)) return true;
      if (['false', '0', 'no', 'off'].includes(text)) return false;
      return void problems.push(`${raw.name} is ${describeValue(raw)}; expected true or false.`);
    }
    case 'level': {
      const text = typeof raw.value === 'string' ? raw.value.trim().toLowerCase() : '';
      if ((LOG_LEVELS as readonly string[]).includes(text)) return text;
      return void problems.push(`${raw.name} is ${describeValue(raw)}; expected one of ${LOG_LEVELS.join(', ')}.`);
    }
    case 'list':
      return raw.value;
  }
}

/** The raw value of a setting by precedence: option > URL > DB_* > default. */
function pick(
  spec: SettingSpec,
  options: DatabaseOptions,
  urlFields: Record<string, string>,
  urlName: string,
  env: Env,
  warnings: string[],
): RawValue | undefined {
  const option = (options as Record<string, unknown>)[spec.option];
  const envText = spec.env ? env[spec.env] : undefined;
  const envValue = envText === undefined || envText.trim() === '' ? undefined : envText;
  const urlValue = urlFields[spec.option];
  if (urlValue !== undefined && envValue !== undefined && option === undefined) {
    warnings.push(`${spec.env} is ignored because ${urlName} sets the ${spec.option} too.`);
  }
  if (option !== undefined) return { value: option, name: `option ${spec.option}`, fromText: false };
  if (urlValue !== undefined) return { value: urlValue, name: `${urlName} ${spec.url ?? spec.option}`, fromText: true };
  if (envValue !== undefined) return { value: envValue, name: spec.env!, fromText: true };
  return undefined;
}

/** TLS fields a replica URL may carry; they must agree with the primary's (one TLS policy for all nodes). */
const REPLICA_TLS_FIELDS = [
  ['sslMode', 'sslmode', 'mode'],
  ['sslRootCert', 'sslrootcert', 'rootCertPath'],
  ['sslCert', 'sslcert', 'certPath'],
  ['sslKey', 'sslkey', 'keyPath'],
] as const;

function resolveReplicas(
  list: unknown,
  name: string,
  primary: Record<string, unknown>,
  ssl: SslSettings,
  problems: string[],
  warnings: string[],
): ConnectionTarget[] {
  // A comma-separated string is DB_REPLICA_URLS' form; the option takes an array.
  if (typeof list === 'string' && !name.startsWith('DB_')) {
    problems.push(
      `${name} must be an array of URLs or replica objects (a comma-separated string is the form of DB_REPLICA_URLS).`,
    );
    return [];
  }
  const entries: unknown[] =
    typeof list === 'string'
      ? list
          .split(',')
          .map((s) => s.trim())
          .filter((s) => s !== '')
      : Array.isArray(list)
        ? list
        : [];
  if (list !== undefined && typeof list !== 'string' && !Array.isArray(list))
    problems.push(`${name} must be a list of URLs or replica objects.`);
  return entries.flatMap((entry, index) => {
    const label = `${name}[${index}]`;
    // DB_REPLICA_URLS is split at commas: a piece with no scheme is most often the rest of a host list
    // (postgres://u@r1,r2/db). The piece itself is not quoted (it may hold a password).
    if (typeof list === 'string' && typeof entry === 'string' && !entry.includes('://')) {
      problems.push(
        `${label} is not a URL: ${name} is a comma-separated list of postgres:// URLs, each naming one server; a replica URL cannot hold a host list (host1,host2), so list each replica on its own.`,
      );
      return [];
    }
    const given: ReplicaOptions = typeof entry === 'string' ? { connectionString: entry } : (entry as ReplicaOptions);
    if (given === null || typeof given !== 'object') {
      problems.push(`${label} must be a URL or an object.`);
      return [];
    }
    const fields: Record<string, unknown> = given.connectionString
      ? parseUrl(given.connectionString, label, problems, warnings)
      : {};
    // Replicas use the primary's TLS settings; a replica URL asking for something else must not be
    // silently connected with different (possibly weaker) security.
    for (const [field, param, setting] of REPLICA_TLS_FIELDS) {
      const value = fields[field];
      if (value !== undefined && value !== (ssl as unknown as Record<string, unknown>)[setting]) {
        problems.push(
          `${label}: ${param} differs from the primary's; replicas use the primary's TLS settings (DB_SSLMODE, DB_SSLROOTCERT, DB_SSLCERT, DB_SSLKEY), so remove it from the replica URL or set it there.`,
        );
      }
    }
    if (fields[HOST_SPEC_FIELD] !== undefined || String(fields.host ?? '').includes(','))
      problems.push(`${label} names several hosts; a replica URL names one server (list each replica on its own).`);
    for (const [field, param] of [
      ['targetSessionAttrs', 'target_session_attrs'],
      ['loadBalanceHosts', 'load_balance_hosts'],
    ] as const)
      if (fields[field] !== undefined) warnings.push(`${label}: ${param} is ignored; it applies to the primary's host list.`);
    if (fields.applicationName !== undefined)
      warnings.push(`${label}: application_name is ignored; replicas use the primary's (DB_APPLICATION_NAME).`);
    const out: Record<string, unknown> = {};
    for (const key of ['host', 'port', 'user', 'password', 'database', 'min', 'max'] as const) {
      const raw = given[key] ?? fields[key];
      if (raw === undefined) {
        out[key] = primary[key];
        continue;
      }
      const spec = SETTINGS.find((s) => s.option === key)!;
      out[key] = convert(spec, { value: raw, name: `${label} ${key}`, fromText: typeof raw === 'string' }, problems);
    }
    // A replica without a password of its own logs in as the primary does, provider included.
    out.loginSource = (given.password ?? fields.password) === undefined ? primary.loginSource : undefined;
    out.name = given.name ?? `${String(out.host)}:${String(out.port)}`;
    return [Object.freeze(hidePassword(out)) as unknown as ConnectionTarget];
  });
}

/**
 * With `readTargetSessionAttrs: 'prefer-standby'` and a host list: every host of the list as a read
 * replica (the primary's login, database and TLS; no connections kept open: `min` 0), so the router
 * sends reads to whichever hosts are standbys now.
 */
function listHostReplicas(resolved: Record<string, unknown>): ConnectionTarget[] {
  const hosts = resolved.hosts as readonly HostAddress[];
  if (resolved.readTargetSessionAttrs !== 'prefer-standby' || hosts.length < 2) return [];
  return hosts.map((address) =>
    Object.freeze(
      hidePassword({
        name: formatHost(address),
        host: address.host,
        port: address.port,
        user: resolved.user as string,
        password: resolved.password as string | undefined,
        loginSource: resolved.loginSource as LoginSource | undefined,
        database: resolved.database as string,
        min: 0,
        max: resolved.max as number,
        isListHost: true,
      }),
    ),
  );
}

const HOST_SPEC = SETTINGS.find((s) => s.option === 'host')!;
const PORT_SPEC = SETTINGS.find((s) => s.option === 'port')!;

/**
 * The primary's host list: the `hosts` option, else a list in the URL (`h1:p1,h2:p2` or
 * `?host=a,b&port=p1,p2`) or in `DB_HOST`/`DB_PORT`, else the one `host`/`port`.
 */
function resolveHosts(
  option: DatabaseOptions['hosts'],
  hostRaw: RawValue | undefined,
  portRaw: RawValue | undefined,
  isUrlHostSpec: boolean,
  problems: string[],
): HostAddress[] {
  const portText = typeof portRaw?.value === 'string' ? portRaw.value : undefined;
  const isPortList = portText?.includes(',') === true;
  const defaultPort = (): number => {
    if (!portRaw) return PORT_SPEC.default as number;
    if (isPortList) {
      problems.push(`${portRaw.name} lists several ports, but the host list gives each host its own port; set one port or none.`);
      return PORT_SPEC.default as number;
    }
    return (convert(PORT_SPEC, portRaw, problems) as number | undefined) ?? (PORT_SPEC.default as number);
  };
  if (option !== undefined) {
    if (!Array.isArray(option) || option.length === 0) {
      problems.push('option hosts must be a non-empty array of { host, port? } objects.');
      return [];
    }
    const port = defaultPort();
    return option.flatMap((entry: unknown, index) => {
      const label = `option hosts[${index}]`;
      const given = entry as { host?: unknown; port?: unknown } | null;
      if (given === null || typeof given !== 'object' || typeof given.host !== 'string' || given.host.trim() === '') {
        problems.push(`${label} must be an object with a non-empty host (and optionally a port).`);
        return [];
      }
      const converted =
        given.port === undefined
          ? port
          : (convert(PORT_SPEC, { value: given.port, name: `${label} port`, fromText: false }, problems) as number | undefined);
      return converted === undefined ? [] : [Object.freeze({ host: given.host.trim(), port: converted })];
    });
  }
  const hostText = typeof hostRaw?.value === 'string' ? hostRaw.value : undefined;
  if (isUrlHostSpec && hostRaw) return parseHostSpec(hostText ?? '', defaultPort(), hostRaw.name, problems);
  if (hostText?.includes(',') === true || isPortList) {
    return zipHostsAndPorts(
      hostText ?? (HOST_SPEC.default as string),
      portRaw === undefined ? undefined : String(portRaw.value),
      PORT_SPEC.default as number,
      { hosts: hostRaw?.name ?? 'DB_HOST', ports: portRaw?.name ?? 'DB_PORT' },
      problems,
    );
  }
  const host = hostRaw === undefined ? HOST_SPEC.default : convert(HOST_SPEC, hostRaw, problems);
  const port = portRaw === undefined ? PORT_SPEC.default : convert(PORT_SPEC, portRaw, problems);
  return typeof host === 'string' && typeof port === 'number' ? [Object.freeze({ host, port })] : [];
}

/** Checks target_session_attrs and load_balance_hosts; the former defaults to read-write for a host list. */
function resolveRoleSettings(
  resolved: Record<string, unknown>,
  names: Readonly<Record<string, string>>,
  hostCount: number,
  problems: string[],
  warnings: string[],
): void {
  const reads = resolved.readTargetSessionAttrs;
  if (typeof reads === 'string' && !(READ_TARGET_SESSION_ATTRS as readonly string[]).includes(reads)) {
    problems.push(`${names.readTargetSessionAttrs} is ${JSON.stringify(reads.slice(0, 40))}; expected any or prefer-standby.`);
  } else if (reads === 'prefer-standby' && hostCount < 2) {
    warnings.push(
      'readTargetSessionAttrs prefer-standby has no effect without a host list (it reads from the standbys of the list).',
    );
  }
  const attrs = resolved.targetSessionAttrs;
  if (attrs === undefined) resolved.targetSessionAttrs = hostCount > 1 ? 'read-write' : 'any';
  else if (typeof attrs === 'string' && !(TARGET_SESSION_ATTRS as readonly string[]).includes(attrs)) {
    problems.push(
      `${names.targetSessionAttrs} is ${JSON.stringify(attrs.slice(0, 40))}; expected one of ${TARGET_SESSION_ATTRS.join(', ')} (target_session_attrs).`,
    );
  }
  const balance = resolved.loadBalanceHosts;
  if (typeof balance === 'string' && !(LOAD_BALANCE_HOSTS as readonly string[]).includes(balance)) {
    problems.push(
      `${names.loadBalanceHosts} is ${JSON.stringify(balance.slice(0, 40))}; expected disable or random (load_balance_hosts).`,
    );
  }
}

/**
 * Resolves and validates the configuration: explicit `options` > `DATABASE_URL` (or
 * `options.connectionString`) > `DB_*` variables > defaults. Empty variables count as unset.
 *
 * @param env - the environment to read, `process.env` by default.
 * @param options - explicit options; they win over everything in `env`.
 * @returns a frozen {@link ResolvedConfig}; its `password` is not enumerable and shows as `<redacted>`.
 * @throws {ConfigError} `CONFIG_INVALID`, listing every problem found at once; never quotes a password.
 */
export function loadConfig(env: Env = process.env, options: DatabaseOptions = {}): ResolvedConfig {
  const problems: string[] = [];
  const warnings: string[] = [];
  const urlSource =
    options.connectionString !== undefined
      ? { text: options.connectionString, name: 'option connectionString' }
      : env.DATABASE_URL !== undefined && env.DATABASE_URL.trim() !== ''
        ? { text: env.DATABASE_URL.trim(), name: 'DATABASE_URL' }
        : undefined;
  const urlFields = urlSource ? parseUrl(urlSource.text, urlSource.name, problems, warnings) : {};
  const hostSpec = urlFields[HOST_SPEC_FIELD];
  // The host list stands in for the URL's host, so DB_HOST still gets its "ignored" warning.
  if (hostSpec !== undefined) urlFields.host = hostSpec;
  const hostRaws: { host?: RawValue; port?: RawValue } = {};
  let hostProblemsAt: number | undefined;
  const resolved: Record<string, unknown> = {};
  /** Where each given setting came from (`option max`, `DB_POOL_MAX`, `DATABASE_URL port`), for problems found after the loop. */
  const sourceNames: Record<string, string> = {};
  // A password function is a login source, not a setting of the table.
  const settingOptions = typeof options.password === 'function' ? { ...options, password: undefined } : options;
  let passwordName: string | undefined;
  let passwordFileName: string | undefined;
  const sslInputs: SslInputs = {};
  const sslKeys: Record<string, keyof SslInputs> = { sslMode: 'mode', sslRootCert: 'rootCert', sslCert: 'cert', sslKey: 'key' };
  for (const spec of SETTINGS) {
    const raw = pick(spec, settingOptions, urlFields, urlSource?.name ?? 'DATABASE_URL', env, warnings);
    if (raw) sourceNames[spec.option] = raw.name;
    if (spec.option === 'password') passwordName = raw?.name;
    if (spec.option === 'passwordFile') passwordFileName = raw?.name;
    const sslKey = sslKeys[spec.option];
    if (sslKey) {
      if (raw && typeof raw.value === 'string') sslInputs[sslKey] = { value: raw.value, name: raw.name } satisfies SslSource;
      else if (raw) problems.push(`${raw.name} must be a string.`);
      continue;
    }
    if (spec.kind === 'list') {
      resolved[`${spec.option}Raw`] = raw;
      continue;
    }
    if (spec.option === 'host' || spec.option === 'port') {
      hostRaws[spec.option] = raw;
      // Their problems are reported here, in table order, once the host list is resolved below.
      hostProblemsAt ??= problems.length;
      continue;
    }
    resolved[spec.option] = raw === undefined ? spec.default : convert(spec, raw, problems);
  }
  const isUrlHostSpec = hostSpec !== undefined && hostRaws.host?.name === `${urlSource?.name} host`;
  const hostProblems: string[] = [];
  const hosts = resolveHosts(options.hosts, hostRaws.host, hostRaws.port, isUrlHostSpec, hostProblems);
  problems.splice(hostProblemsAt ?? problems.length, 0, ...hostProblems);
  resolved.hosts = Object.freeze(hosts);
  resolved.host = hosts[0]?.host;
  resolved.port = hosts[0]?.port;
  resolveRoleSettings(resolved, sourceNames, hosts.length, problems, warnings);
  const min = resolved.min as number | undefined;
  const max = resolved.max as number | undefined;
  if (min !== undefined && max !== undefined && min > max)
    problems.push(
      `The pool minimum (${min}, DB_POOL_MIN / option min) is larger than the maximum (${max}, DB_POOL_MAX / option max).`,
    );
  if ((resolved.validationTimeoutMillis as number) >= (resolved.connectionTimeoutMillis as number)) {
    warnings.push(
      'The validation timeout is not shorter than the connection timeout (DB_TIMEOUT): a hung validation can use up a whole acquire deadline.',
    );
  }
  if (resolved.pgbouncerPreparedStatements === true && resolved.pgbouncer !== true) {
    warnings.push(
      'DB_PGBOUNCER_PREPARED_STATEMENTS (option pgbouncerPreparedStatements) has no effect unless DB_PGBOUNCER (option pgbouncer) is true: without PgBouncer, named prepared statements are always allowed.',
    );
  }
  const logger = options.logger as { child?: unknown; warn?: unknown } | undefined;
  if (logger !== undefined && (typeof logger?.child !== 'function' || typeof logger.warn !== 'function'))
    problems.push('option logger must be a pino logger (or child logger).');
  const passwordFile = resolved.passwordFile as string | undefined;
  resolved.loginSource = resolveLoginSource(
    {
      password: options.password,
      credentials: options.credentials,
      passwordFile: passwordFile === undefined ? undefined : { path: passwordFile, name: passwordFileName! },
      fixedPasswordName: passwordName,
    },
    problems,
  );
  if (
    resolved.loginSource !== undefined &&
    (resolved.credentialsTimeoutMillis as number) > (resolved.connectionTimeoutMillis as number)
  ) {
    warnings.push(
      'The credentials timeout (DB_CREDENTIALS_TIMEOUT) is longer than the connection timeout (DB_TIMEOUT): a provider gets at most the connection timeout.',
    );
  }
  const ssl = resolveSsl(sslInputs, problems);
  const replicaRaw = resolved.replicasRaw as RawValue | undefined;
  delete resolved.replicasRaw;
  resolved.replicas = [
    ...(replicaRaw ? resolveReplicas(replicaRaw.value, replicaRaw.name, resolved, ssl, problems, warnings) : []),
    ...listHostReplicas(resolved),
  ];
  // The URL may carry a password: only the resolved target (password hidden) is kept.
  const listenUrl = resolved.listenUrl as string | undefined;
  delete resolved.listenUrl;
  resolved.listen = listenUrl
    ? resolveReplicas([listenUrl], 'DB_LISTEN_URL', resolved, ssl, problems, warnings).map((target) =>
        Object.freeze(hidePassword({ ...target, password: target.password, name: 'listener' })),
      )[0]
    : undefined;
  if (problems.length > 0) throw new ConfigError(problems);
  resolved.ssl = ssl;
  resolved.name = 'primary';
  resolved.warnings = Object.freeze(warnings);
  Object.freeze(resolved.replicas);
  return Object.freeze(hidePassword(resolved)) as unknown as ResolvedConfig;
}
