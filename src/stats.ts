/**
 * Counters and duration recorders. Counters are exact and monotonic; durations keep a fixed
 * reservoir of the latest samples for percentiles and cumulative buckets for Prometheus histograms.
 */

/** Bucket upper bounds in milliseconds for duration histograms. */
export const DURATION_BUCKETS_MILLIS = Object.freeze([
  0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000,
]);
const RESERVOIR_SIZE = 1024;

/** A duration distribution: count, sum, percentiles of the latest 1024 samples, cumulative buckets. */
export interface DurationStats {
  readonly count: number;
  readonly sumMillis: number;
  readonly p50Millis: number;
  readonly p95Millis: number;
  readonly p99Millis: number;
  readonly maxMillis: number;
  /** Cumulative: how many samples were `<= leMillis`; the last bucket is `Infinity` (= count). */
  readonly buckets: readonly { readonly leMillis: number; readonly count: number }[];
}

/** Records durations in O(1); `snapshot()` sorts the reservoir. */
export class DurationRecorder {
  #samples = new Float64Array(RESERVOIR_SIZE);
  #next = 0;
  #filled = 0;
  #count = 0;
  #sum = 0;
  #max = 0;
  #buckets = new Float64Array(DURATION_BUCKETS_MILLIS.length + 1);

  record(millis: number): void {
    this.#samples[this.#next] = millis;
    this.#next = (this.#next + 1) % RESERVOIR_SIZE;
    if (this.#filled < RESERVOIR_SIZE) this.#filled++;
    this.#count++;
    this.#sum += millis;
    if (millis > this.#max) this.#max = millis;
    let i = 0;
    while (i < DURATION_BUCKETS_MILLIS.length && millis > DURATION_BUCKETS_MILLIS[i]!) i++;
    this.#buckets[i]!++;
  }

  snapshot(): DurationStats {
    const sorted = this.#samples.slice(0, this.#filled).sort();
    const at = (q: number) =>
      sorted.length === 0 ? 0 : round(sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!);
    let running = 0;
    const buckets = [...DURATION_BUCKETS_MILLIS, Infinity].map((leMillis, i) => {
      running += this.#buckets[i]!;
      return Object.freeze({ leMillis, count: running });
    });
    return Object.freeze({
      count: this.#count,
      sumMillis: round(this.#sum),
      p50Millis: at(0.5),
      p95Millis: at(0.95),
      p99Millis: at(0.99),
      maxMillis: round(this.#max),
      buckets: Object.freeze(buckets),
    });
  }
}

function round(millis: number): number {
  return Math.round(millis * 1000) / 1000;
}

/** Monotonic counters kept by each node's pool. */
export interface NodeCounters {
  /** Connections opened since start. */
  totalConnections: number;
  /** Connection attempts that failed. */
  connectionErrors: number;
  /** Connections closed for any reason (idle, retired, evicted, broken, shutdown). */
  connectionsClosed: number;
  /** Checkout validations that failed (the connection was evicted). */
  validationFailures: number;
  /** Acquires that passed their deadline. */
  acquireTimeouts: number;
  /** Acquires that failed for want of a connection: deadline passed or queue full. */
  poolExhaustedCount: number;
  /** Connections held past `leakDetectionThresholdMillis`. */
  leaksDetected: number;
  /** Acquires refused at once because the circuit breaker was open. */
  circuitRejections: number;
  /** Connections whose session a caller changed (SET, LISTEN, ...), reset on release in one round trip. */
  sessionResets: number;
  /** Connections closed on release because their session could not be reset (SET ROLE, PREPARE, a failed reset). */
  sessionDiscards: number;
  /** Times the pool took up a new primary after losing the one it had (host lists, a moved DNS name). */
  primaryChanges: number;
  /** New connections closed at once: the server's role did not satisfy target_session_attrs. */
  roleMismatches: number;
  /** Pooled connections evicted because their server stopped being the primary (SQLSTATE 25006, in_hot_standby). */
  notPrimaryEvictions: number;
}

export function newNodeCounters(): NodeCounters {
  return {
    totalConnections: 0,
    connectionErrors: 0,
    connectionsClosed: 0,
    validationFailures: 0,
    acquireTimeouts: 0,
    poolExhaustedCount: 0,
    leaksDetected: 0,
    circuitRejections: 0,
    sessionResets: 0,
    sessionDiscards: 0,
    primaryChanges: 0,
    roleMismatches: 0,
    notPrimaryEvictions: 0,
  };
}

/** One node's gauges and counters as `getStats().nodes[i]` shows them. */
export interface NodeStats extends Readonly<NodeCounters> {
  readonly name: string;
  readonly role: 'primary' | 'replica';
  /** up, banned (failing, gets no reads), lagging (replica behind `replicaMaxLagMillis`), closed. */
  readonly status: 'up' | 'banned' | 'lagging' | 'primary' | 'closed';
  /** Replay lag of a replica in ms, `null` for the primary or when unknown. */
  readonly lagMillis: number | null;
  /** `pg_is_in_recovery()` from the background probe (replicas configured), null when unknown. */
  readonly isInRecovery: boolean | null;
  readonly circuit: 'closed' | 'open' | 'half-open';
  /** The server new connections go to (`host:port`); null while a host list is being searched for a suitable one. */
  readonly currentHost: string | null;
  readonly poolSize: number;
  readonly availableConnections: number;
  readonly activeConnections: number;
  readonly waitingRequests: number;
  readonly minConnections: number;
  readonly maxConnections: number;
}

/** Database-wide counters. */
export interface DatabaseCounters {
  queriesExecuted: number;
  transactionsExecuted: number;
  errors: number;
  transactionRetries: number;
  queriesCancelled: number;
}

/** `getStats()`: the seed's keys (summed over nodes), database-wide counters, durations, per node. */
export interface PoolStats extends Readonly<DatabaseCounters>, Readonly<NodeCounters> {
  readonly poolSize: number;
  readonly availableConnections: number;
  readonly activeConnections: number;
  readonly waitingRequests: number;
  readonly minConnections: number;
  readonly maxConnections: number;
  readonly acquireTime: DurationStats;
  readonly queryTime: DurationStats;
  readonly nodes: readonly NodeStats[];
  /** The notification listener of `db.listen`. */
  readonly listener: ListenerStats;
}

/** The notification listener (`db.listen`) as `getStats().listener` shows it. */
export interface ListenerStats {
  /** The dedicated connection is open (false before the first `listen()` and while reconnecting). */
  readonly connected: boolean;
  /** Channels listened to. */
  readonly channels: number;
  /** Reconnections after a lost connection, since start. */
  readonly reconnects: number;
  /** Notifications received on listened channels, since start. */
  readonly notificationsReceived: number;
}

const IDLE_LISTENER: ListenerStats = Object.freeze({ connected: false, channels: 0, reconnects: 0, notificationsReceived: 0 });

const SUMMED: readonly (keyof NodeStats & keyof PoolStats)[] = [
  'poolSize',
  'availableConnections',
  'activeConnections',
  'waitingRequests',
  'minConnections',
  'maxConnections',
  'totalConnections',
  'connectionErrors',
  'connectionsClosed',
  'validationFailures',
  'acquireTimeouts',
  'poolExhaustedCount',
  'leaksDetected',
  'circuitRejections',
  'sessionResets',
  'sessionDiscards',
  'primaryChanges',
  'roleMismatches',
  'notPrimaryEvictions',
];

/** Builds the frozen `getStats()` snapshot. */
export function buildStats(
  nodes: readonly NodeStats[],
  counters: DatabaseCounters,
  acquireTime: DurationRecorder,
  queryTime: DurationRecorder,
  listener: ListenerStats = IDLE_LISTENER,
): PoolStats {
  const sums: Record<string, number> = {};
  for (const key of SUMMED) sums[key] = nodes.reduce((total, node) => total + (node[key] as number), 0);
  return Object.freeze({
    ...(sums as unknown as Pick<PoolStats, (typeof SUMMED)[number]>),
    ...counters,
    acquireTime: acquireTime.snapshot(),
    queryTime: queryTime.snapshot(),
    nodes: Object.freeze(nodes.map((node) => Object.freeze({ ...node }))),
    listener: Object.freeze({ ...listener }),
  });
}
