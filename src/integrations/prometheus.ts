/**
 * `@codecheck/db/prometheus`: Prometheus metrics for a {@link Database}, read from `getStats()` at
 * scrape time (nothing is counted twice and nothing runs between scrapes). prom-client is an optional
 * peer dependency; the core never imports this file.
 *
 * Names follow the Prometheus conventions: base units (`_seconds`), counters end in `_total`, pool
 * metrics carry a `pool` (node name) and `role` (`primary`/`replica`) label. docs/operations.md lists
 * every metric.
 */
import { register as globalRegister, type Metric, type Registry } from 'prom-client';
import type { DurationStats, NodeStats, PoolStats } from '../stats.js';

/** What the collector reads: a `Database`, or anything with its `getStats()`. */
export interface StatsSource {
  getStats(): PoolStats;
}

/** Options of {@link registerDatabaseMetrics}. */
export interface DatabaseMetricsOptions {
  /** The registry to add the metrics to. @default prom-client's global `register` */
  register?: Registry;
  /** Prefix of every metric name. @default 'codecheck_db_' */
  prefix?: string;
  /**
   * Constant labels on every series, e.g. `{ database: 'orders' }`. Needed to register a second
   * Database in the same registry (their series must differ).
   */
  labels?: Readonly<Record<string, string>>;
}

/** A registration; `unregister()` removes this Database's series (and the metrics once none is left). */
export interface DatabaseMetrics {
  unregister(): void;
}

type Labels = Record<string, string>;
interface Sample {
  metricName?: string;
  labels: Labels;
  value: number;
}
type MetricType = 'counter' | 'gauge' | 'histogram';

/** One registered Database with its constant labels and a per-scrape snapshot cache. */
class Source {
  readonly labels: Labels;
  #db: StatsSource;
  #snapshot: PoolStats | undefined;

  constructor(db: StatsSource, labels: Labels) {
    this.#db = db;
    this.labels = labels;
  }

  /**
   * The stats for this scrape. prom-client asks every metric in one synchronous loop, so caching
   * until the next microtask gives all metrics of one scrape the same consistent snapshot.
   */
  stats(): PoolStats {
    if (this.#snapshot === undefined) {
      this.#snapshot = this.#db.getStats();
      queueMicrotask(() => (this.#snapshot = undefined));
    }
    return this.#snapshot;
  }
}

/** A metric in prom-client's registry whose values are read from the registered sources at scrape time. */
class StatsMetric {
  readonly name: string;
  readonly help: string;
  readonly type: MetricType;
  readonly aggregator = 'sum';
  readonly sources = new Set<Source>();
  #read: (stats: PoolStats, labels: Labels) => Sample[];

  constructor(name: string, help: string, type: MetricType, read: (stats: PoolStats, labels: Labels) => Sample[]) {
    this.name = name;
    this.help = help;
    this.type = type;
    this.#read = read;
  }

  /** Called by prom-client on every scrape. */
  get(): { name: string; help: string; type: MetricType; aggregator: string; values: Sample[] } {
    const values = [...this.sources].flatMap((source) => this.#read(source.stats(), source.labels));
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  /** `Registry.resetMetrics()` calls this; our values come from the Database, so there is nothing to reset. */
  reset(): void {}
}

type NodeNumber = { [K in keyof NodeStats]: NodeStats[K] extends number ? K : never }[keyof NodeStats];
type DatabaseNumber = 'queriesExecuted' | 'transactionsExecuted' | 'errors' | 'transactionRetries' | 'queriesCancelled';

/** Per-node gauges: [name, getStats() key, help]. */
const NODE_GAUGES: readonly (readonly [string, NodeNumber, string])[] = [
  ['pool_connections_open', 'poolSize', 'Open connections, idle and checked out.'],
  ['pool_connections_active', 'activeConnections', 'Connections checked out by callers.'],
  ['pool_connections_idle', 'availableConnections', 'Open connections not checked out.'],
  ['pool_waiting_requests', 'waitingRequests', 'Callers waiting for a connection.'],
  ['pool_min_connections', 'minConnections', 'Configured minimum pool size (min).'],
  ['pool_max_connections', 'maxConnections', 'Configured maximum pool size (max).'],
];

/** Per-node counters. */
const NODE_COUNTERS: readonly (readonly [string, NodeNumber, string])[] = [
  ['connections_created_total', 'totalConnections', 'Connections opened.'],
  ['connection_errors_total', 'connectionErrors', 'Connection attempts that failed.'],
  [
    'connections_closed_total',
    'connectionsClosed',
    'Connections closed for any reason (idle, retired, evicted, broken, shutdown).',
  ],
  ['validation_failures_total', 'validationFailures', 'Checkout validations that failed (the connection was evicted).'],
  ['acquire_timeouts_total', 'acquireTimeouts', 'Acquires that passed their deadline.'],
  [
    'pool_exhausted_total',
    'poolExhaustedCount',
    'Acquires that failed for want of a connection (deadline passed or queue full).',
  ],
  ['leaks_detected_total', 'leaksDetected', 'Connections held longer than leakDetectionThresholdMillis.'],
  ['circuit_rejections_total', 'circuitRejections', 'Acquires refused at once because the circuit breaker was open.'],
  ['session_resets_total', 'sessionResets', 'Connections whose session a caller changed, reset on release.'],
  ['session_discards_total', 'sessionDiscards', 'Connections closed on release because their session could not be reset.'],
  [
    'primary_changes_total',
    'primaryChanges',
    'Times the pool took up a new primary after losing the one it had (failovers followed).',
  ],
  [
    'role_mismatches_total',
    'roleMismatches',
    'New connections closed at once because the server role did not satisfy target_session_attrs.',
  ],
  [
    'not_primary_evictions_total',
    'notPrimaryEvictions',
    'Pooled connections evicted because their server stopped being the primary (SQLSTATE 25006, in_hot_standby).',
  ],
];

/** Database-wide counters. */
const DATABASE_COUNTERS: readonly (readonly [string, DatabaseNumber, string])[] = [
  ['queries_total', 'queriesExecuted', 'Statements sent by callers (accepted by the server or not).'],
  ['transactions_total', 'transactionsExecuted', 'Committed withDb and executeTransaction calls.'],
  ['errors_total', 'errors', 'Caller calls (executeQuery, executeTransaction, withDb) that rejected.'],
  ['transaction_retries_total', 'transactionRetries', 'Transactions re-run after a serialization failure or deadlock.'],
  ['queries_cancelled_total', 'queriesCancelled', 'Calls cancelled by their AbortSignal or timeoutMillis.'],
];

const NODE_STATUSES: readonly NodeStats['status'][] = ['up', 'banned', 'lagging', 'primary', 'closed'];
const CIRCUIT_STATES: readonly NodeStats['circuit'][] = ['closed', 'open', 'half-open'];
const RESERVED_LABELS = new Set(['pool', 'role', 'status', 'state', 'le']);

function nodeLabels(node: NodeStats, labels: Labels): Labels {
  return { ...labels, pool: node.name, role: node.role };
}

/** A Prometheus histogram from the stats' cumulative millisecond buckets, in seconds. */
function histogram(name: string, duration: DurationStats, labels: Labels): Sample[] {
  const buckets = duration.buckets.map((bucket): Sample => ({
    metricName: `${name}_bucket`,
    labels: { ...labels, le: bucket.leMillis === Infinity ? '+Inf' : String(bucket.leMillis / 1000) },
    value: bucket.count,
  }));
  return [
    ...buckets,
    { metricName: `${name}_sum`, labels, value: duration.sumMillis / 1000 },
    { metricName: `${name}_count`, labels, value: duration.count },
  ];
}

function buildMetrics(prefix: string): StatsMetric[] {
  return [
    ...NODE_GAUGES.map(
      ([suffix, key, help]) =>
        new StatsMetric(prefix + suffix, help, 'gauge', (stats, labels) =>
          stats.nodes.map((node) => ({ labels: nodeLabels(node, labels), value: node[key] })),
        ),
    ),
    ...NODE_COUNTERS.map(
      ([suffix, key, help]) =>
        new StatsMetric(prefix + suffix, help, 'counter', (stats, labels) =>
          stats.nodes.map((node) => ({ labels: nodeLabels(node, labels), value: node[key] })),
        ),
    ),
    ...DATABASE_COUNTERS.map(
      ([suffix, key, help]) =>
        new StatsMetric(prefix + suffix, help, 'counter', (stats, labels) => [{ labels, value: stats[key] }]),
    ),
    new StatsMetric(
      `${prefix}node_status`,
      'Node status: 1 for the current one of up, banned (failing, no reads), lagging (replica too far behind), closed.',
      'gauge',
      (stats, labels) =>
        stats.nodes.flatMap((node) =>
          NODE_STATUSES.map((status) => ({
            labels: { ...nodeLabels(node, labels), status },
            value: node.status === status ? 1 : 0,
          })),
        ),
    ),
    new StatsMetric(
      `${prefix}circuit_state`,
      'Circuit breaker state: 1 for the current one of closed, open, half-open.',
      'gauge',
      (stats, labels) =>
        stats.nodes.flatMap((node) =>
          CIRCUIT_STATES.map((state) => ({
            labels: { ...nodeLabels(node, labels), state },
            value: node.circuit === state ? 1 : 0,
          })),
        ),
    ),
    new StatsMetric(
      `${prefix}listener_connected`,
      'The notification listener (db.listen) has its connection open: 1, or 0 (not started, or reconnecting).',
      'gauge',
      (stats, labels) => [{ labels, value: stats.listener.connected ? 1 : 0 }],
    ),
    new StatsMetric(`${prefix}listener_channels`, 'Channels the notification listener listens to.', 'gauge', (stats, labels) => [
      { labels, value: stats.listener.channels },
    ]),
    new StatsMetric(
      `${prefix}listener_reconnects_total`,
      'Reconnections of the notification listener after a lost connection.',
      'counter',
      (stats, labels) => [{ labels, value: stats.listener.reconnects }],
    ),
    new StatsMetric(
      `${prefix}listener_notifications_total`,
      'Notifications received by the notification listener.',
      'counter',
      (stats, labels) => [{ labels, value: stats.listener.notificationsReceived }],
    ),
    new StatsMetric(`${prefix}replica_lag_seconds`, 'Replay lag of a replica (absent while unknown).', 'gauge', (stats, labels) =>
      stats.nodes
        .filter((node) => node.role === 'replica' && node.lagMillis !== null)
        .map((node) => ({ labels: nodeLabels(node, labels), value: node.lagMillis! / 1000 })),
    ),
    new StatsMetric(
      `${prefix}acquire_duration_seconds`,
      'Time callers waited for a connection (all nodes).',
      'histogram',
      (stats, labels) => histogram(`${prefix}acquire_duration_seconds`, stats.acquireTime, labels),
    ),
    new StatsMetric(
      `${prefix}query_duration_seconds`,
      'Time statements sent by callers took (all nodes).',
      'histogram',
      (stats, labels) => histogram(`${prefix}query_duration_seconds`, stats.queryTime, labels),
    ),
  ];
}

function checkOptions(prefix: string, labels: Labels): void {
  if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(prefix))
    throw new TypeError(`prefix ${JSON.stringify(prefix)} is not a valid Prometheus metric name prefix`);
  for (const [name, value] of Object.entries(labels)) {
    if (!/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(name) || name.startsWith('__'))
      throw new TypeError(`label name ${JSON.stringify(name)} is not a valid Prometheus label name`);
    if (RESERVED_LABELS.has(name))
      throw new TypeError(`label name ${JSON.stringify(name)} is used by the metrics themselves; choose another`);
    if (typeof value !== 'string') throw new TypeError(`label ${name} must have a string value`);
  }
}

/**
 * Adds the Database's metrics to a prom-client registry; values are read from `db.getStats()` on
 * each scrape, one snapshot per scrape. Registering another Database in the same registry (same
 * prefix) adds its series to the same metrics; give it different `labels`.
 *
 * @throws {TypeError} when the prefix or a label name is invalid, or a Database with the same labels
 * is already registered there.
 * @throws {Error} when another metric already uses one of the names (nothing is registered then).
 */
export function registerDatabaseMetrics(db: StatsSource, options: DatabaseMetricsOptions = {}): DatabaseMetrics {
  const register = options.register ?? globalRegister;
  const prefix = options.prefix ?? 'codecheck_db_';
  const labels: Labels = { ...options.labels };
  checkOptions(prefix, labels);
  const metrics = buildMetrics(prefix).map((fresh) => {
    const existing = register.getSingleMetric(fresh.name) as unknown;
    if (existing !== undefined && !(existing instanceof StatsMetric))
      throw new Error(`A metric with the name ${fresh.name} has already been registered.`);
    return existing instanceof StatsMetric ? existing : fresh;
  });
  const labelKey = JSON.stringify(Object.entries(labels).sort());
  for (const metric of metrics) {
    if ([...metric.sources].some((source) => JSON.stringify(Object.entries(source.labels).sort()) === labelKey)) {
      throw new TypeError(
        `A Database with the labels ${labelKey} is already registered in this registry; give each Database different labels`,
      );
    }
  }
  for (const metric of metrics) {
    if (metric.sources.size === 0) register.registerMetric(metric as unknown as Metric);
  }
  const source = new Source(db, labels);
  for (const metric of metrics) metric.sources.add(source);
  return {
    unregister() {
      for (const metric of metrics) {
        if (!metric.sources.delete(source)) continue;
        if (metric.sources.size === 0 && (register.getSingleMetric(metric.name) as unknown) === metric)
          register.removeSingleMetric(metric.name);
      }
    },
  };
}
