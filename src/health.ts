import { MAX_TIMER_MILLIS } from './durations.js';
import { summarize } from './error-summary.js';
import { probeConnection, type ProbeOutcome } from './pool/probe-connection.js';
import type { Router } from './replicas/router.js';
import type { ListenerStats, PoolStats } from './stats.js';

/** Whether the health connection is encrypted, and with which TLS version (from pg_stat_ssl). */
export interface TlsReport {
  readonly encrypted: boolean;
  readonly protocol: string | null;
}

/** What `healthCheck()` resolves with. */
export interface HealthReport {
  /**
   * healthy; degraded (the primary answers but a replica is down, the primary is in recovery, the
   * notification listener is reconnecting, or an acquire timed out in the last 60 s); unhealthy (the
   * primary did not answer, or shutdown).
   */
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
  /**
   * The server the primary's pool connects to now (`host:port`, the one of the host list that satisfied
   * target_session_attrs last); null while it is being found (the status is then `degraded`, and
   * `error` says why each host was passed over).
   */
  readonly primaryHost: string | null;
  readonly poolStats: PoolStats;
  /** Why the status is not healthy (never a secret). */
  readonly error?: string;
  /** One entry per configured replica (absent without replicas). */
  readonly replicas?: readonly ReplicaHealth[];
  /** The notification listener of `db.listen` (absent while nothing is listened to). */
  readonly listener?: ListenerStats;
}

/** A replica as the health report shows it. */
export interface ReplicaHealth {
  readonly name: string;
  readonly status: 'up' | 'banned' | 'lagging' | 'primary' | 'closed';
  readonly lagMillis: number | null;
  readonly isInRecovery: boolean | null;
  /** Why it is banned (the last probe or connection error), if it is. */
  readonly error?: string;
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
 * The health probe of the primary. With a host list it takes part in the search for the primary
 * (`HostPlacement.probed`, src/pool/host-placement.ts): a host that refuses the connection or has the wrong role is passed
 * over and the host the search is at then is probed, within the same timeout, at most once per host
 * and one more; a suitable server is taken up. So health follows a failover with no traffic at all.
 */
async function probeSearching(router: Router, timeoutMillis: number): Promise<ProbeOutcome<HealthRow>> {
  const pool = router.primary.pool;
  const deadline = Date.now() + timeoutMillis;
  for (let probes = 1; ; probes++) {
    // A search that passed every host over starts again from the top (as the pool's does after its pause).
    if (pool.hosts.isExhausted) pool.hosts.restart();
    const choice = pool.placement.choose();
    const outcome = await probeConnection<HealthRow>(pool, 'health', Math.max(1, deadline - Date.now()), HEALTH_SQL);
    if (outcome === 'timeout') return outcome;
    const result =
      'error' in outcome ? ('refused' as const) : { isInHotStandby: outcome.rows[0]!.is_replica, isDefaultReadOnly: undefined };
    const reason = 'error' in outcome ? summarize(outcome.error).message : '';
    const hasMovedOn = pool.placement.probed(choice, result, reason);
    if (!hasMovedOn || probes > pool.hosts.hosts.length || Date.now() >= deadline) return outcome;
  }
}

/**
 * Checks the primary on a dedicated short-lived connection (so an exhausted pool cannot make a
 * healthy server look dead, and the report shows what a new connection gets, TLS included), within
 * `timeoutMillis` whatever the server does. Never rejects.
 */
export async function checkHealth(input: {
  isOpen: boolean;
  stats: () => PoolStats;
  router: Router;
  timeoutMillis: number;
}): Promise<HealthReport> {
  const startedAt = performance.now();
  const { router } = input;
  const replicas = router.replicas.map((node): ReplicaHealth => {
    const status = node.pool.state === 'open' ? router.status(node) : 'closed';
    return Object.freeze({
      name: node.pool.name,
      status,
      lagMillis: node.lagMillis,
      isInRecovery: node.isInRecovery,
      ...(status !== 'up' && node.lastError ? { error: node.lastError } : {}),
    });
  });
  const listener = input.stats().listener;
  const isListening = listener.channels > 0;
  let hosts = router.primary.pool.hosts.status();
  const report = (fields: Partial<HealthReport> & Pick<HealthReport, 'status'>): HealthReport =>
    Object.freeze({
      databaseVersion: null,
      isReplica: null,
      databaseTime: null,
      tls: null,
      primaryHost: hosts.currentHost,
      ...fields,
      latencyMillis: Math.round((performance.now() - startedAt) * 1000) / 1000,
      poolStats: input.stats(),
      ...(replicas.length > 0 ? { replicas: Object.freeze(replicas) } : {}),
      ...(isListening ? { listener } : {}),
    });
  if (!input.isOpen) return report({ status: 'unhealthy', error: 'The database pool is closed (shutdown() was called).' });
  // Never rejects, even for a bad argument: the report says what is wrong instead.
  if (typeof input.timeoutMillis !== 'number' || !(input.timeoutMillis > 0 && input.timeoutMillis <= MAX_TIMER_MILLIS)) {
    return report({
      status: 'unhealthy',
      error: `healthCheck timeoutMillis must be a number of milliseconds from 1 to ${MAX_TIMER_MILLIS}`,
    });
  }
  const outcome = await probeSearching(router, input.timeoutMillis);
  hosts = router.primary.pool.hosts.status();
  // A host was passed over and none satisfies target_session_attrs yet: a failover is being followed.
  // The pool is working on it (writes wait within their deadlines), so that is `degraded`, even when
  // the host the check reached first did not answer.
  const isFinding = hosts.isFinding && hosts.reason !== undefined;
  const finding = `the primary is being found: ${hosts.reason}`;
  if (outcome === 'timeout' || 'error' in outcome) {
    const error =
      outcome === 'timeout' ? `The server did not answer within ${input.timeoutMillis} ms` : summarize(outcome.error).message;
    return report(isFinding ? { status: 'degraded', error: `${finding}; ${error}` } : { status: 'unhealthy', error });
  }
  const row = outcome.rows[0]!;
  // The check reached a standby while the pool checks roles and has no primary yet: it is searching too.
  const isSearching = isFinding || (row.is_replica && router.primary.pool.hosts.needsRole && hosts.currentHost === null);
  const searching = isFinding ? finding : 'the primary is being found: the host the check reached is a standby';
  const recentTimeout = router.nodes.some((node) => Date.now() - node.pool.lastAcquireTimeoutAt < DEGRADED_WINDOW_MILLIS);
  // A host of the list that is the primary now is in its place ('primary'), not down.
  const downReplicas = replicas.filter((replica) => replica.status !== 'up' && replica.status !== 'primary');
  const problems = [
    ...(isSearching ? [searching] : []),
    ...(row.is_replica && !isSearching ? ['the configured primary is in recovery (a standby): writes are refused'] : []),
    ...(recentTimeout ? ['an acquire timed out in the last 60 seconds (pool exhausted)'] : []),
    ...downReplicas.map((replica) => `replica ${replica.name} is ${replica.status}`),
    ...(isListening && !listener.connected ? ['the notification listener lost its connection and is reconnecting'] : []),
  ];
  return report({
    status: problems.length > 0 ? 'degraded' : 'healthy',
    databaseVersion: row.version,
    isReplica: row.is_replica,
    databaseTime: row.database_time,
    tls: { encrypted: row.ssl === true, protocol: row.tls_version },
    ...(problems.length > 0 ? { error: problems.join('; ') } : {}),
  });
}
