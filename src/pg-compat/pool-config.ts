import pg from 'pg';
import type { DatabaseOptions } from '../config.js';
import { SETTINGS } from '../config-table.js';
import { ConfigError } from '../errors.js';
import { splitUrlSettings } from './url-settings.js';

/**
 * The options of `new Pool(config)`: node-postgres' `pg.PoolConfig` keys with pg's meaning, plus every
 * `DatabaseOptions` key (camelCase, as for `new Database()`). docs/drop-in.md lists what each pg key does here.
 */
export interface PoolConfig extends DatabaseOptions {
  /** Legacy pg name for `max`. */
  poolSize?: number;
  /** pg's seconds: a connection is retired after this long; 0 = never. */
  maxLifetimeSeconds?: number;
  /** ms; `false` or 0 = not set by us. */
  statement_timeout?: false | number;
  idle_in_transaction_session_timeout?: number;
  lock_timeout?: number;
  application_name?: string;
  fallback_application_name?: string;
  /** `true`, `{}` or `{ rejectUnauthorized: true }` = verify-full against the system trust store; `{ rejectUnauthorized: false }` = require; `false` = disable. */
  ssl?: boolean | { rejectUnauthorized?: boolean };
  keepAlive?: boolean;
  keepAliveInitialDelayMillis?: number;
  /** Custom type parsers, applied to every statement sent through the Pool and its clients. */
  types?: pg.CustomTypesConfig;
  /** Ask for binary results on every statement sent through the Pool and its clients. */
  binary?: boolean;
  /** pg's client-side read timeout, ms, applied to every statement sent through the Pool and its clients; `false` or 0 = none. */
  query_timeout?: false | number;
  /** A connection is closed after being checked out this many times. */
  maxUses?: number;
  /** pg's pipeline mode on checked-out clients. */
  pipeline?: boolean;
  /** Always true here: idle connections never hold the process open. */
  allowExitOnIdle?: boolean;
  /** pg-pool's debug log function, called with pg-pool's messages for checkouts and queries (the library itself logs through pino). */
  log?: (...messages: unknown[]) => void;
  /** The promise class `connect()`, `query()` and `end()` return (pg-pool's option). */
  Promise?: PromiseConstructorLike;
  /** Runs once for each new connection, before it is first handed out by this Pool; a rejection fails that checkout and closes the connection. */
  onConnect?: (client: pg.PoolClient) => unknown;
  /** pg-pool's older hook: called once for each new connection before it is first handed out; an error fails that checkout. */
  verify?: (client: pg.PoolClient, done: (error?: Error) => void) => void;
}

/** What the facade itself applies (per statement or per checkout), beside the Database's options. */
export interface FacadeSettings {
  readonly types: pg.CustomTypesConfig | undefined;
  readonly binary: boolean;
  readonly queryTimeoutMillis: number | undefined;
  readonly keepAlive: { readonly initialDelayMillis: number } | undefined;
  readonly maxUses: number;
  readonly pipeline: boolean;
  readonly onConnect: PoolConfig['onConnect'];
  readonly verify: PoolConfig['verify'];
  /** pg's `connectionTimeoutMillis: 0` (wait without a deadline) was asked for. */
  readonly isUnboundedWait: boolean;
  /** Sentences for settings that were accepted but have no effect, logged once at construction. */
  readonly warnings: readonly string[];
}

/**
 * pg.Pool keys that are the same in `DatabaseOptions` (same name, same meaning); migrate-scan's
 * pool-to-database rule reads it too.
 */
export const SHARED_KEYS: ReadonlySet<string> = new Set([
  'connectionString',
  'host',
  'port',
  'user',
  'password',
  'database',
  'max',
  'min',
  'idleTimeoutMillis',
  'connectionTimeoutMillis',
]);
const DATABASE_KEYS = new Set([...SETTINGS.map((s) => s.option), 'logger']);
/** pg keys this Pool refuses, each with the reason given in the ConfigError. */
const REFUSED: Record<string, (value: unknown) => string | undefined> = {
  Client: (v) =>
    v === pg.Client
      ? undefined
      : 'Client is not supported: the library makes its own pg clients (TLS as libpq negotiates it, session settings); use pg.Pool for a custom client class.',
  stream: () => 'stream is not supported: the library opens its own sockets (TLS as libpq negotiates it).',
  options: (v) =>
    v === ''
      ? undefined
      : 'options (server command-line options) is not supported: set session settings with the dedicated options (statement_timeout, lock_timeout, application_name ...).',
  client_encoding: (v) =>
    typeof v === 'string' && /^utf-?8$/i.test(v)
      ? undefined
      : 'client_encoding must be UTF8 (node-postgres decodes text as UTF-8).',
  enableChannelBinding: (v) =>
    v === false ? undefined : 'enableChannelBinding is not supported by this Pool (SCRAM without channel binding is used).',
  sslnegotiation: (v) =>
    v === 'postgres'
      ? undefined
      : "sslnegotiation 'direct' is not supported: TLS is negotiated as libpq does with sslnegotiation=postgres.",
  lookup: () => 'lookup (a custom DNS lookup) is not supported by this Pool.',
};

function isPositiveInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0;
}

/**
 * Splits `new Pool(config)` into the Database's options and what the facade applies itself. Every key
 * is honoured with pg's meaning or reported by name; every problem is reported at once.
 * @throws {ConfigError} `CONFIG_INVALID` naming each refused or malformed key (never a value of `password`).
 */
export function resolvePoolConfig(config: unknown): { options: DatabaseOptions; settings: FacadeSettings } {
  if (config !== undefined && config !== null && (typeof config !== 'object' || Array.isArray(config)))
    throw new ConfigError(['new Pool(config) takes an options object (pg.PoolConfig keys and Database options).']);
  const problems: string[] = [];
  const fromUrl = new Set<string>();
  let given = Object.entries((config ?? {}) as Record<string, unknown>).filter(([, value]) => value !== undefined);
  const url = given.find(([key, value]) => key === 'connectionString' && typeof value === 'string');
  if (url) {
    // pg's settings in the URL's query, as pg reads them: the URL's value wins over the key's.
    const split = splitUrlSettings(url[1] as string, problems);
    url[1] = split.connectionString;
    given = [...given.filter(([key]) => !split.entries.some(([fromUrl]) => fromUrl === key)), ...split.entries];
    for (const [key] of split.entries) fromUrl.add(key);
  }
  const has = (key: string) => given.some(([k]) => k === key);
  const warnings: string[] = [];
  const options: Record<string, unknown> = {};
  const settings = {
    types: undefined as pg.CustomTypesConfig | undefined,
    binary: false,
    queryTimeoutMillis: undefined as number | undefined,
    keepAlive: undefined as { initialDelayMillis: number } | undefined,
    maxUses: Infinity,
    pipeline: false,
    onConnect: undefined as PoolConfig['onConnect'],
    verify: undefined as PoolConfig['verify'],
    isUnboundedWait: false,
    warnings,
  };
  let keepAliveDelay = 0;
  const timeout = (key: string, option: string, value: unknown) => {
    if (value === false) options[option] = 0;
    else options[option] = value;
    if (has(option)) problems.push(`${key} and ${option} are the same setting; give one of them.`);
  };
  for (const [key, value] of given) {
    const refusal = REFUSED[key];
    if (refusal) {
      const reason = refusal(value);
      if (reason) problems.push(fromUrl.has(key) ? `connectionString parameter ${reason}` : reason);
      continue;
    }
    if (SHARED_KEYS.has(key)) {
      if (key === 'connectionTimeoutMillis' && value === 0) {
        // pg's 0 means no deadline. Every wait here has one: the longest the configuration allows.
        settings.isUnboundedWait = true;
        options[key] = SETTINGS.find((s) => s.option === 'connectionTimeoutMillis')!.max;
      } else if (key === 'idleTimeoutMillis' && value === null) {
        options[key] = 0;
      } else options[key] = value;
      continue;
    }
    switch (key) {
      case 'poolSize':
        if (!has('max')) options.max = value;
        break;
      case 'maxLifetimeSeconds':
        if (typeof value !== 'number' || !Number.isFinite(value) || value < 0)
          problems.push('maxLifetimeSeconds must be a non-negative number of seconds.');
        else options.maxLifetimeMillis = Math.round(value * 1000);
        if (has('maxLifetimeMillis'))
          problems.push('maxLifetimeSeconds and maxLifetimeMillis are the same setting; give one of them.');
        break;
      case 'statement_timeout':
        timeout(key, 'statementTimeoutMillis', value);
        break;
      case 'idle_in_transaction_session_timeout':
        timeout(key, 'idleInTransactionTimeoutMillis', value);
        break;
      case 'lock_timeout':
        timeout(key, 'lockTimeoutMillis', value);
        break;
      case 'application_name':
        timeout(key, 'applicationName', value);
        break;
      case 'fallback_application_name':
        if (!has('application_name') && !has('applicationName')) options.applicationName = value;
        break;
      case 'ssl':
        resolveSsl(value, has('sslMode'), options, problems);
        break;
      case 'keepAlive':
        if (typeof value !== 'boolean') problems.push('keepAlive must be true or false.');
        else if (value) settings.keepAlive = { initialDelayMillis: 0 };
        break;
      case 'keepAliveInitialDelayMillis':
        if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0)
          problems.push('keepAliveInitialDelayMillis must be a non-negative integer (ms).');
        else keepAliveDelay = value;
        break;
      case 'types':
        if (typeof (value as pg.CustomTypesConfig)?.getTypeParser !== 'function')
          problems.push('types must be an object with a getTypeParser function (pg.types or a TypeOverrides).');
        else settings.types = value as pg.CustomTypesConfig;
        break;
      case 'binary':
      case 'pipeline':
        if (typeof value !== 'boolean') problems.push(`${key} must be true or false.`);
        else settings[key] = value;
        break;
      case 'query_timeout':
        // pg's default is false: no read timeout, as 0.
        if (!isPositiveInteger(value) && value !== 0 && value !== false)
          problems.push('query_timeout must be a non-negative integer (ms), or false.');
        else settings.queryTimeoutMillis = value || undefined;
        break;
      case 'maxUses':
        if (!isPositiveInteger(value) && value !== Infinity) problems.push('maxUses must be a positive integer (or Infinity).');
        else settings.maxUses = value;
        break;
      case 'onConnect':
      case 'verify':
        if (typeof value !== 'function') problems.push(`${key} must be a function.`);
        else settings[key] = value as never;
        break;
      case 'allowExitOnIdle':
        if (value === false)
          warnings.push(
            'allowExitOnIdle: false has no effect: idle connections never hold the process open (end() closes them).',
          );
        break;
      case 'log':
      case 'Promise':
        break; // pg-pool's constructor keeps them; this Pool calls them as pg-pool does.
      default:
        if (DATABASE_KEYS.has(key)) options[key] = value;
        else
          problems.push(
            `${JSON.stringify(key.slice(0, 40))} is not an option of pg.Pool or of Database (docs/drop-in.md lists them).`,
          );
    }
  }
  if (settings.keepAlive) settings.keepAlive = { initialDelayMillis: keepAliveDelay };
  if (problems.length > 0) throw new ConfigError(problems);
  return { options: options as DatabaseOptions, settings };
}

/** pg's `ssl` option in libpq's terms; file-based certificates stay with sslRootCert/sslCert/sslKey. */
function resolveSsl(value: unknown, hasSslMode: boolean, options: Record<string, unknown>, problems: string[]): void {
  if (hasSslMode) {
    problems.push('ssl and sslMode are the same setting; give one of them.');
    return;
  }
  if (value === false) {
    options.sslMode = 'disable';
    return;
  }
  if (value === true) value = {};
  if (typeof value !== 'object' || value === null) {
    problems.push('ssl must be true, false or an object such as { rejectUnauthorized: false }.');
    return;
  }
  const keys = Object.keys(value).filter((k) => (value as Record<string, unknown>)[k] !== undefined);
  const others = keys.filter((k) => k !== 'rejectUnauthorized');
  if (others.length > 0) {
    problems.push(
      `ssl.${others[0]} is not supported by this Pool: give certificate files with sslRootCert, sslCert and sslKey (DB_SSLROOTCERT, DB_SSLCERT, DB_SSLKEY) and the mode with sslMode (docs/security.md).`,
    );
    return;
  }
  // pg verifies the chain and the host name unless rejectUnauthorized is false: libpq's verify-full,
  // against Node's default trust store (sslrootcert=system); without verification, libpq's require.
  if ((value as { rejectUnauthorized?: unknown }).rejectUnauthorized === false) options.sslMode = 'require';
  else {
    options.sslMode = 'verify-full';
    if (options.sslRootCert === undefined) options.sslRootCert = 'system';
  }
}
