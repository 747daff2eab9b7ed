/**
 * The one table of settings: option name, environment variable, kind, default, range and meaning.
 * docs/configuration.md is checked against this table by test/unit/config-docs.test.ts.
 */

export type SettingKind = 'string' | 'integer' | 'seconds' | 'boolean' | 'level' | 'list';

export interface SettingSpec {
  /** camelCase option name on `new Database({ ... })`. */
  readonly option: string;
  /** Environment variable, if any. */
  readonly env?: string;
  readonly kind: SettingKind;
  /** The default in option units (milliseconds for durations). `undefined` means "not set". */
  readonly default: string | number | boolean | undefined;
  /** Smallest accepted value for numbers (in option units). */
  readonly min?: number;
  /** Largest accepted value for numbers (in option units). */
  readonly max?: number;
  /** Name of the field inside DATABASE_URL that also sets it, if any. */
  readonly url?: string;
  readonly description: string;
}

const DAY_MILLIS = 86_400_000;

/** Every setting, in the order docs/configuration.md lists them. */
export const SETTINGS: readonly SettingSpec[] = Object.freeze([
  {
    option: 'host',
    env: 'DB_HOST',
    kind: 'string',
    default: 'localhost',
    url: 'host',
    description: 'Server host name, IP address or Unix socket directory.',
  },
  {
    option: 'port',
    env: 'DB_PORT',
    kind: 'integer',
    default: 5432,
    min: 1,
    max: 65535,
    url: 'port',
    description: 'Server port.',
  },
  {
    option: 'targetSessionAttrs',
    env: 'DB_TARGET_SESSION_ATTRS',
    kind: 'string',
    default: undefined,
    url: 'target_session_attrs',
    description:
      "any, read-write, read-only, primary, standby or prefer-standby, with libpq's meanings; default read-write with a host list, any otherwise.",
  },
  {
    option: 'loadBalanceHosts',
    env: 'DB_LOAD_BALANCE_HOSTS',
    kind: 'string',
    default: 'disable',
    url: 'load_balance_hosts',
    description: 'disable (try hosts in order) or random (shuffle them), as libpq 16.',
  },
  {
    option: 'readTargetSessionAttrs',
    env: 'DB_READ_TARGET_SESSION_ATTRS',
    kind: 'string',
    default: 'any',
    description:
      'any (read-only work goes to the primary and DB_REPLICA_URLS replicas) or prefer-standby (the standbys of the host list serve reads too, the primary when none is usable).',
  },
  { option: 'user', env: 'DB_USER', kind: 'string', default: 'postgres', url: 'user', description: 'User name.' },
  {
    option: 'password',
    env: 'DB_PASSWORD',
    kind: 'string',
    default: undefined,
    url: 'password',
    description: 'Password. Never logged; shown as `<redacted>`.',
  },
  {
    option: 'passwordFile',
    env: 'DB_PASSWORD_FILE',
    kind: 'string',
    default: undefined,
    description:
      'File holding the password (Docker and Kubernetes secrets), read again for every new connection, so a rotated file is used without a restart (docs/security.md).',
  },
  {
    option: 'credentialsTimeoutMillis',
    env: 'DB_CREDENTIALS_TIMEOUT',
    kind: 'integer',
    default: 5000,
    min: 1,
    max: DAY_MILLIS,
    description:
      'How long one call of the password or credentials provider (or one read of the password file) may take, ms; part of the connect deadline.',
  },
  {
    option: 'credentialsCacheMillis',
    env: 'DB_CREDENTIALS_CACHE',
    kind: 'integer',
    default: 300_000,
    min: 0,
    max: DAY_MILLIS,
    description:
      "How long a provider's login is reused for new connections, ms (refreshed in the background in its last fifth); 0 = call the provider for every connection. A password file is never cached.",
  },
  { option: 'database', env: 'DB_NAME', kind: 'string', default: 'postgres', url: 'database', description: 'Database name.' },
  {
    option: 'sslMode',
    env: 'DB_SSLMODE',
    kind: 'string',
    default: 'prefer',
    url: 'sslmode',
    description: "disable, allow, prefer, require, verify-ca or verify-full, with libpq's meanings (docs/security.md).",
  },
  {
    option: 'sslRootCert',
    env: 'DB_SSLROOTCERT',
    kind: 'string',
    default: undefined,
    url: 'sslrootcert',
    description: 'Root certificate file, or `system` for the system trust store.',
  },
  {
    option: 'sslCert',
    env: 'DB_SSLCERT',
    kind: 'string',
    default: undefined,
    url: 'sslcert',
    description: 'Client certificate file.',
  },
  {
    option: 'sslKey',
    env: 'DB_SSLKEY',
    kind: 'string',
    default: undefined,
    url: 'sslkey',
    description: 'Client private key file.',
  },
  {
    option: 'min',
    env: 'DB_POOL_MIN',
    kind: 'integer',
    default: 2,
    min: 0,
    max: 10_000,
    description: 'Connections kept open (opened by `ready()`, refilled after losses).',
  },
  {
    option: 'max',
    env: 'DB_POOL_MAX',
    kind: 'integer',
    default: 10,
    min: 1,
    max: 10_000,
    description: 'Most connections open at once.',
  },
  {
    option: 'connectionTimeoutMillis',
    env: 'DB_TIMEOUT',
    kind: 'seconds',
    default: 30_000,
    min: 1,
    max: DAY_MILLIS,
    description: 'Deadline to connect and to acquire a connection. The variable is in **seconds**; the option in ms.',
  },
  {
    option: 'statementTimeoutMillis',
    env: 'DB_STATEMENT_TIMEOUT',
    kind: 'integer',
    default: 30_000,
    min: 0,
    max: DAY_MILLIS,
    description: "Server `statement_timeout`, ms; 0 = not set by us (the server's own setting applies).",
  },
  {
    option: 'idleInTransactionTimeoutMillis',
    env: 'DB_IDLE_TIMEOUT',
    kind: 'integer',
    default: 60_000,
    min: 0,
    max: DAY_MILLIS,
    description: "Server `idle_in_transaction_session_timeout`, ms; 0 = not set by us (the server's own setting applies).",
  },
  {
    option: 'lockTimeoutMillis',
    env: 'DB_LOCK_TIMEOUT',
    kind: 'integer',
    default: 0,
    min: 0,
    max: DAY_MILLIS,
    description: "Server `lock_timeout`, ms; 0 = not set by us (the server's own setting applies).",
  },
  {
    option: 'idleTimeoutMillis',
    env: 'DB_POOL_IDLE_TIMEOUT',
    kind: 'integer',
    default: 10_000,
    min: 0,
    max: DAY_MILLIS,
    description: 'An unused connection above `min` is closed after this long, ms; 0 = never.',
  },
  {
    option: 'maxLifetimeMillis',
    env: 'DB_POOL_MAX_LIFETIME',
    kind: 'integer',
    default: 1_800_000,
    min: 0,
    max: 30 * DAY_MILLIS,
    description: 'A connection is retired after this long (minus up to 10% jitter), ms; 0 = never.',
  },
  {
    option: 'maxWaiting',
    env: 'DB_POOL_MAX_WAITING',
    kind: 'integer',
    default: 0,
    min: 0,
    max: 1_000_000,
    description: 'Most callers queued for a connection; past it an acquire fails at once. 0 = no cap.',
  },
  {
    option: 'validationIntervalMillis',
    env: 'DB_VALIDATION_INTERVAL',
    kind: 'integer',
    default: 1000,
    min: 0,
    max: DAY_MILLIS,
    description: 'A connection idle longer than this is validated on checkout, ms; 0 = always.',
  },
  {
    option: 'validationTimeoutMillis',
    env: 'DB_VALIDATION_TIMEOUT',
    kind: 'integer',
    default: 1000,
    min: 1,
    max: DAY_MILLIS,
    description: 'How long one validation may take before the connection is evicted, ms.',
  },
  {
    option: 'leakDetectionThresholdMillis',
    env: 'DB_LEAK_DETECTION_THRESHOLD',
    kind: 'integer',
    default: 0,
    min: 0,
    max: DAY_MILLIS,
    description: 'Warn, with the acquiring stack, when a connection is held longer, ms; 0 = off.',
  },
  {
    option: 'applicationName',
    env: 'DB_APPLICATION_NAME',
    kind: 'string',
    default: 'codecheck-api',
    url: 'application_name',
    description: 'Server `application_name`.',
  },
  {
    option: 'replicas',
    env: 'DB_REPLICA_URLS',
    kind: 'list',
    default: undefined,
    description: 'Comma-separated replica URLs (docs/operations.md).',
  },
  {
    option: 'replicaMaxLagMillis',
    env: 'DB_REPLICA_MAX_LAG',
    kind: 'integer',
    default: 10_000,
    min: 0,
    max: DAY_MILLIS,
    description: 'A replica lagging more than this gets no reads, ms.',
  },
  {
    option: 'replicaBanMillis',
    env: 'DB_REPLICA_BAN_TIME',
    kind: 'integer',
    default: 10_000,
    min: 1,
    max: DAY_MILLIS,
    description:
      'A replica that fails to connect or answer gets no reads for at least this long, then needs a successful probe, ms.',
  },
  {
    option: 'replicaCheckIntervalMillis',
    env: 'DB_REPLICA_CHECK_INTERVAL',
    kind: 'integer',
    default: 1000,
    min: 50,
    max: DAY_MILLIS,
    description: "How often each node's role, replay position and lag are checked in the background, ms.",
  },
  {
    option: 'replicaWaitMillis',
    env: 'DB_REPLICA_WAIT',
    kind: 'integer',
    default: 500,
    min: 0,
    max: DAY_MILLIS,
    description: 'How long a read with a write token waits for a replica to replay that write before it goes to the primary, ms.',
  },
  {
    option: 'listenUrl',
    env: 'DB_LISTEN_URL',
    kind: 'string',
    default: undefined,
    description:
      "URL of the server `db.listen` connects to (its dedicated connection); the primary's address when unset. Needed behind PgBouncer transaction pooling, where LISTEN does not work (docs/streaming.md).",
  },
  {
    option: 'listenKeepaliveMillis',
    env: 'DB_LISTEN_KEEPALIVE',
    kind: 'integer',
    default: 10_000,
    min: 100,
    max: DAY_MILLIS,
    description:
      'How often the notification listener pings its connection, ms; an unanswered ping (within the validation timeout) counts as a lost connection.',
  },
  {
    option: 'pgbouncer',
    env: 'DB_PGBOUNCER',
    kind: 'boolean',
    default: false,
    description: '`true` behind PgBouncer transaction pooling (docs/operations.md).',
  },
  {
    option: 'pgbouncerPreparedStatements',
    env: 'DB_PGBOUNCER_PREPARED_STATEMENTS',
    kind: 'boolean',
    default: false,
    description:
      'Behind PgBouncer, allow named prepared statements (`name` in a query config); only for PgBouncer 1.21+ with `max_prepared_statements` > 0.',
  },
  {
    option: 'maxPreparedStatements',
    env: 'DB_MAX_PREPARED_STATEMENTS',
    kind: 'integer',
    default: 100,
    min: 0,
    max: 10_000,
    description:
      'Automatic prepared statements: parameterized statement texts used twice are prepared once per connection, at most this many; 0 = off. Off behind PgBouncer unless `pgbouncerPreparedStatements`.',
  },
  {
    option: 'circuitBreakerThreshold',
    env: 'DB_CIRCUIT_BREAKER_THRESHOLD',
    kind: 'integer',
    default: 5,
    min: 0,
    max: 1_000_000,
    description: 'Consecutive connect failures that open the circuit (acquires then fail fast); 0 = off.',
  },
  {
    option: 'circuitBreakerResetMillis',
    env: 'DB_CIRCUIT_BREAKER_RESET',
    kind: 'integer',
    default: 5000,
    min: 1,
    max: DAY_MILLIS,
    description:
      "How long an open circuit refuses callers' connects before one is let through, ms; background trial connects (25, 50, then every 100 ms) close it sooner.",
  },
  {
    option: 'logLevel',
    env: 'DB_LOG_LEVEL',
    kind: 'level',
    default: 'info',
    description: "pino level of the library's own logger: fatal, error, warn, info, debug, trace or silent.",
  },
] satisfies SettingSpec[]);

/** pino levels accepted by `DB_LOG_LEVEL`. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
