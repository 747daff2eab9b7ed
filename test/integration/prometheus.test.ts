/**
 * `@codecheck/db/prometheus` through the plugin's /metrics: the text is parsed back and every number
 * is checked against `getStats()` taken right after the scrape (nothing runs in between).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { codecheckDb } from '../../src/integrations/fastify.js';
import { Database, PoolTimeoutError, type NodeStats, type PoolStats } from '../../src/index.js';
import { registerDatabaseMetrics } from '../../src/integrations/prometheus.js';
import { getTestDatabaseUrl } from '../support/database-url.js';
import { ROOT, uniqueName } from '../support/test-database.js';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}
interface Scrape {
  types: Map<string, string>;
  samples: Sample[];
}

/** Parses the Prometheus text exposition format (0.0.4): TYPE lines and samples with labels. */
function parseExposition(text: string): Scrape {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '' || line.startsWith('# HELP ')) continue;
    const type = /^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (type) {
      types.set(type[1]!, type[2]!);
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!sample) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const match of (sample[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/g)) {
      labels[match[1]!] = match[2]!.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
    }
    const raw = sample[3]!;
    samples.push({ name: sample[1]!, labels, value: raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw) });
  }
  return { types, samples };
}

function find(scrape: Scrape, name: string, labels: Record<string, string> = {}): Sample[] {
  return scrape.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}

function one(scrape: Scrape, name: string, labels: Record<string, string> = {}): number {
  const found = find(scrape, name, labels);
  if (found.length !== 1) throw new Error(`${name} ${JSON.stringify(labels)}: ${found.length} samples`);
  return found[0]!.value;
}

const NODE_GAUGES: Record<string, keyof NodeStats> = {
  codecheck_db_pool_connections_open: 'poolSize',
  codecheck_db_pool_connections_active: 'activeConnections',
  codecheck_db_pool_connections_idle: 'availableConnections',
  codecheck_db_pool_waiting_requests: 'waitingRequests',
  codecheck_db_pool_min_connections: 'minConnections',
  codecheck_db_pool_max_connections: 'maxConnections',
};
const NODE_COUNTERS: Record<string, keyof NodeStats> = {
  codecheck_db_connections_created_total: 'totalConnections',
  codecheck_db_connection_errors_total: 'connectionErrors',
  codecheck_db_connections_closed_total: 'connectionsClosed',
  codecheck_db_validation_failures_total: 'validationFailures',
  codecheck_db_acquire_timeouts_total: 'acquireTimeouts',
  codecheck_db_pool_exhausted_total: 'poolExhaustedCount',
  codecheck_db_leaks_detected_total: 'leaksDetected',
  codecheck_db_circuit_rejections_total: 'circuitRejections',
  codecheck_db_primary_changes_total: 'primaryChanges',
  codecheck_db_role_mismatches_total: 'roleMismatches',
  codecheck_db_not_primary_evictions_total: 'notPrimaryEvictions',
};
const DATABASE_COUNTERS: Record<string, keyof PoolStats> = {
  codecheck_db_queries_total: 'queriesExecuted',
  codecheck_db_transactions_total: 'transactionsExecuted',
  codecheck_db_errors_total: 'errors',
  codecheck_db_transaction_retries_total: 'transactionRetries',
  codecheck_db_queries_cancelled_total: 'queriesCancelled',
};

let app: FastifyInstance;
let db: Database;

beforeAll(async () => {
  app = Fastify();
  await app.register(codecheckDb, {
    databaseOptions: {
      connectionString: getTestDatabaseUrl(),
      sslMode: 'disable',
      logLevel: 'silent',
      min: 1,
      max: 2,
      connectionTimeoutMillis: 400,
      applicationName: uniqueName('prom'),
    },
    metrics: true,
  });
  await app.ready();
  db = app.db;
  // Work that moves every kind of number: reads, a write transaction, a failing statement, a pool timeout.
  for (let i = 0; i < 5; i++) await db.executeQuery('SELECT $1::int AS i', [i]);
  await db.withDb(false, async (client) => {
    await client.query('SELECT 1');
    await client.query('SELECT 2');
  });
  await expect(db.executeQuery('SELECT * FROM no_such_table_for_prometheus')).rejects.toThrow();
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  const holders = [db.withDb(true, () => held), db.withDb(true, () => held)];
  await expect(db.executeQuery('SELECT 1')).rejects.toBeInstanceOf(PoolTimeoutError);
  release();
  await Promise.all(holders);
});

afterAll(async () => {
  await app?.close();
});

async function scrape(): Promise<{ scrape: Scrape; stats: PoolStats; contentType: string }> {
  const response = await app.inject({ method: 'GET', url: '/metrics' });
  expect(response.statusCode).toBe(200);
  const stats = db.getStats();
  return { scrape: parseExposition(response.body), stats, contentType: String(response.headers['content-type']) };
}

describe('prometheus metrics', () => {
  test('/metrics serves the Prometheus text format with counters ending in _total and durations in _seconds histograms', async () => {
    const { scrape: s, contentType } = await scrape();
    expect(contentType).toBe('text/plain; version=0.0.4; charset=utf-8');
    for (const name of [...Object.keys(NODE_COUNTERS), ...Object.keys(DATABASE_COUNTERS)])
      expect(s.types.get(name)).toBe('counter');
    for (const name of Object.keys(NODE_GAUGES)) expect(s.types.get(name)).toBe('gauge');
    expect(s.types.get('codecheck_db_acquire_duration_seconds')).toBe('histogram');
    expect(s.types.get('codecheck_db_query_duration_seconds')).toBe('histogram');
    for (const [name, type] of s.types) {
      if (type === 'counter') expect(name).toMatch(/_total$/);
      if (type === 'histogram') expect(name).toMatch(/_seconds$/);
    }
  });

  test("every pool gauge and counter equals getStats().nodes, labelled with the node's pool name and role", async () => {
    const { scrape: s, stats } = await scrape();
    expect(stats.nodes).toHaveLength(1);
    for (const node of stats.nodes) {
      const labels = { pool: node.name, role: node.role };
      for (const [name, key] of Object.entries({ ...NODE_GAUGES, ...NODE_COUNTERS }))
        expect([name, one(s, name, labels)]).toEqual([name, node[key]]);
      expect(one(s, 'codecheck_db_node_status', { ...labels, status: node.status })).toBe(1);
      expect(find(s, 'codecheck_db_node_status', labels).reduce((sum, x) => sum + x.value, 0)).toBe(1);
      expect(one(s, 'codecheck_db_circuit_state', { ...labels, state: node.circuit })).toBe(1);
    }
    // The work in beforeAll moved these: the comparison is not between zeros.
    expect(stats.nodes[0]).toMatchObject({ acquireTimeouts: 1, poolExhaustedCount: 1, maxConnections: 2 });
  });

  test('every database-wide counter equals getStats() exactly', async () => {
    const { scrape: s, stats } = await scrape();
    for (const [name, key] of Object.entries(DATABASE_COUNTERS)) expect([name, one(s, name)]).toEqual([name, stats[key]]);
    // 5 reads + 2 in the transaction + 1 failing (the timed-out call never sent one); the write
    // transaction and the two read-only holders committed; the failing statement and the timeout rejected.
    expect(stats).toMatchObject({ queriesExecuted: 8, transactionsExecuted: 3, errors: 2 });
  });

  test('the listener gauges and counters equal getStats().listener', async () => {
    const { scrape: s, stats } = await scrape();
    expect(s.types.get('codecheck_db_listener_reconnects_total')).toBe('counter');
    expect(s.types.get('codecheck_db_listener_connected')).toBe('gauge');
    expect(one(s, 'codecheck_db_listener_connected')).toBe(stats.listener.connected ? 1 : 0);
    expect(one(s, 'codecheck_db_listener_channels')).toBe(stats.listener.channels);
    expect(one(s, 'codecheck_db_listener_reconnects_total')).toBe(stats.listener.reconnects);
    expect(one(s, 'codecheck_db_listener_notifications_total')).toBe(stats.listener.notificationsReceived);
  });

  test('the acquire and query histograms are the stats buckets in seconds, with _sum and _count', async () => {
    const { scrape: s, stats } = await scrape();
    for (const [name, duration] of [
      ['codecheck_db_acquire_duration_seconds', stats.acquireTime],
      ['codecheck_db_query_duration_seconds', stats.queryTime],
    ] as const) {
      const buckets = find(s, `${name}_bucket`);
      expect(buckets.map((b) => b.labels.le)).toEqual(
        duration.buckets.map((b) => (b.leMillis === Infinity ? '+Inf' : String(b.leMillis / 1000))),
      );
      expect(buckets.map((b) => b.value)).toEqual(duration.buckets.map((b) => b.count));
      expect(buckets.at(-1)!.value).toBe(duration.count);
      expect(one(s, `${name}_count`)).toBe(duration.count);
      expect(one(s, `${name}_sum`)).toBeCloseTo(duration.sumMillis / 1000, 9);
    }
    expect(one(s, 'codecheck_db_query_duration_seconds_count')).toBe(8);
    expect(find(s, 'codecheck_db_acquire_duration_seconds_bucket', { le: '0.0001' })).toHaveLength(1);
  });

  test('two Databases share one registry when their labels differ; the same labels twice are refused; unregister removes the series', async () => {
    const register = new Registry();
    const second = new Database({ connectionString: getTestDatabaseUrl(), sslMode: 'disable', logLevel: 'silent', min: 0 });
    try {
      const first = registerDatabaseMetrics(db, { register, labels: { database: 'main' } });
      const other = registerDatabaseMetrics(second, { register, labels: { database: 'reports' } });
      expect(() => registerDatabaseMetrics(second, { register, labels: { database: 'reports' } })).toThrow(TypeError);
      const both = parseExposition(await register.metrics());
      expect(one(both, 'codecheck_db_queries_total', { database: 'main' })).toBe(db.getStats().queriesExecuted);
      expect(one(both, 'codecheck_db_queries_total', { database: 'reports' })).toBe(0);
      expect(one(both, 'codecheck_db_pool_max_connections', { database: 'reports', pool: 'primary', role: 'primary' })).toBe(10);
      other.unregister();
      const left = parseExposition(await register.metrics());
      expect(find(left, 'codecheck_db_queries_total')).toEqual([expect.objectContaining({ labels: { database: 'main' } })]);
      first.unregister();
      expect(await register.metrics()).toBe('\n');
    } finally {
      await second.shutdown();
    }
  });

  test('refuses a name already taken by another metric, registering nothing', () => {
    const register = new Registry();
    register.registerMetric({
      name: 'codecheck_db_errors_total',
      help: 'x',
      type: 'counter',
      get: () => ({ name: 'codecheck_db_errors_total', help: 'x', type: 'counter', values: [], aggregator: 'sum' }),
      reset() {},
    } as never);
    expect(() => registerDatabaseMetrics(db, { register })).toThrow(/already been registered/);
    expect(register.getMetricsAsArray()).toHaveLength(1);
  });

  test('the core never imports prom-client or fastify (only src/integrations/ does)', () => {
    const files = readdirSync(join(ROOT, 'src'), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'));
    const importers = files.filter((file) =>
      /from ['"](prom-client|fastify)['"]|import\(['"](prom-client|fastify)['"]\)/.test(
        readFileSync(join(ROOT, 'src', file), 'utf8'),
      ),
    );
    expect(importers.sort()).toEqual(['integrations/fastify.ts', 'integrations/prometheus.ts']);
    expect(readFileSync(join(ROOT, 'src', 'index.ts'), 'utf8')).not.toMatch(/fastify|prometheus/);
  });
});
