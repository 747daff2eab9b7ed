import type { ResolvedConfig } from './config.js';
import { destroySocket } from './client-internals.js';
import { summarize, type NodePool } from './pool.js';
import { createClientClass } from './ssl.js';
import type { PoolStats } from './stats.js';

/** Whether the health connection is encrypted, and with which TLS version (from pg_stat_ssl). */
export interface TlsReport {
  readonly encrypted: boolean;
  readonly protocol: string | null;
}

/** What `healthCheck()` resolves with. */
export interface HealthReport {
  /** healthy; degraded (the primary answers but a replica is down or an acquire timed out in the last 60 s); unhealthy. */
  readonly status: 'healthy' | 'degraded' | 'unhealthy';
  /** `version()` of the server, or null when it did not answer. */
  readonly databaseVersion: string | null;
  /** `pg_is_in_recovery()`, or null when the server did not answer. */
  readonly isReplica: boolean | null;
  /** The server's `now()` as ISO 8601 with its offset, or null. */
  readonly databaseTime: string | null;
  /** Time the check took, ms. */
  readonly latencyMillis: number;
  readonly tls: TlsReport | null;
  readonly poolStats: PoolStats;
  /** Why the status is not healthy (never a secret). */
  readonly error?: string;
  readonly replicas?: readonly unknown[];
}

/** An acquire timeout this recent makes the report `degraded`. */
export const DEGRADED_WINDOW_MILLIS = 60_000;

const HEALTH_SQL = `SELECT version() AS version, pg_is_in_recovery() AS is_replica,
  to_char(now(), 'YYYY-MM-DD"T"HH24:MI:SS.MSTZH:TZM') AS database_time,
  (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()) AS ssl,
  (SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid()) AS tls_version`;

interface HealthRow {
  version: string;
  is_replica: boolean;
  database_time: string;
  ssl: boolean | null;
  tls_version: string | null;
}

/**
 * Checks the primary on a dedicated short-lived connection (so an exhausted pool cannot make a
 * healthy server look dead, and the report shows what a new connection gets, TLS included), within
 * `timeoutMillis` whatever the server does. Never rejects.
 */
export async function checkHealth(input: { config: ResolvedConfig; isOpen: boolean; stats: () => PoolStats; primary: NodePool; timeoutMillis: number }): Promise<HealthReport> {
  const startedAt = performance.now();
  const report = (fields: Partial<HealthReport> & Pick<HealthReport, 'status'>): HealthReport => Object.freeze({
    databaseVersion: null, isReplica: null, databaseTime: null, tls: null, ...fields,
    latencyMillis: Math.round((performance.now() - startedAt) * 1000) / 1000, poolStats: input.stats(),
  });
  if (!input.isOpen) return report({ status: 'unhealthy', error: 'The database pool is closed (shutdown() was called).' });
  const { config } = input;
  const Client = createClientClass(config.ssl);
  const client = new Client({ host: config.host, port: config.port, user: config.user, password: config.password, database: config.database, application_name: `${config.applicationName} health`, connectionTimeoutMillis: input.timeoutMillis });
  client.on('error', () => undefined);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), input.timeoutMillis);
    timer.unref();
  });
  const attempt = (async () => {
    await client.connect();
    return (await client.query<HealthRow>(HEALTH_SQL)).rows[0]!;
  })().catch((error: unknown) => ({ error }));
  try {
    const outcome = await Promise.race([attempt, timeout]);
    if (outcome === 'timeout') return report({ status: 'unhealthy', error: `The server did not answer within ${input.timeoutMillis} ms` });
    if ('error' in outcome) return report({ status: 'unhealthy', error: summarize(outcome.error).message });
    const recentTimeout = Date.now() - input.primary.lastAcquireTimeoutAt < DEGRADED_WINDOW_MILLIS;
    return report({
      status: recentTimeout ? 'degraded' : 'healthy',
      databaseVersion: outcome.version,
      isReplica: outcome.is_replica,
      databaseTime: outcome.database_time,
      tls: { encrypted: outcome.ssl === true, protocol: outcome.tls_version },
      ...(recentTimeout ? { error: 'An acquire timed out in the last 60 seconds (pool exhausted)' } : {}),
    });
  } finally {
    clearTimeout(timer);
    destroySocket(client);
    void client.end().catch(() => undefined);
  }
}
