import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { context, SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { PgInstrumentation } from '@opentelemetry/instrumentation-pg';
import {
  DataPointType,
  MeterProvider,
  MetricReader,
  type HistogramMetricData,
  type MetricData,
} from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/index.js';
import { instrument, type Instrumentation } from '../../src/integrations/otel.js';
import { getTestDatabaseUrl } from '../support/database-url.js';
import { holdConnection, openDatabase, ROOT } from '../support/test-database.js';

/** A reader the test collects from on demand. */
class TestReader extends MetricReader {
  protected override onShutdown(): Promise<void> {
    return Promise.resolve();
  }
  protected override onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
}

const url = new URL(getTestDatabaseUrl());
const database = url.pathname.slice(1) || 'postgres';
const poolName = `${url.hostname}:${url.port}/${database}`;
const serverAttributes = {
  'db.system.name': 'postgresql',
  'db.namespace': database,
  'server.address': url.hostname,
  'server.port': Number(url.port),
};

const exporter = new InMemorySpanExporter();
const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const contextManager = new AsyncLocalStorageContextManager();
let db: Database;
let instrumentation: Instrumentation | undefined;

beforeAll(() => {
  context.setGlobalContextManager(contextManager.enable());
});
afterAll(() => {
  context.disable();
});
afterEach(async () => {
  instrumentation?.uninstrument();
  instrumentation = undefined;
  await db?.shutdown({ timeoutMillis: 2000 });
  exporter.reset();
});

async function collect(reader: MetricReader): Promise<Map<string, MetricData>> {
  const { resourceMetrics } = await reader.collect();
  const found = new Map<string, MetricData>();
  for (const scope of resourceMetrics.scopeMetrics) for (const metric of scope.metrics) found.set(metric.descriptor.name, metric);
  return found;
}

/** The data points of a sum metric as `{ attributes: value }` entries. */
function points(metric: MetricData | undefined): { attributes: Record<string, unknown>; value: unknown }[] {
  expect(metric).toBeDefined();
  return metric!.dataPoints.map((point) => ({ attributes: point.attributes, value: point.value }));
}

function histogramCount(metric: MetricData | undefined): number {
  expect(metric?.dataPointType).toBe(DataPointType.HISTOGRAM);
  return (metric as HistogramMetricData).dataPoints.reduce((total, point) => total + point.value.count, 0);
}

describe('@codecheck/db/otel spans', () => {
  it('makes one CLIENT span per statement with the semantic conventions attributes, and an error status for a failed one', async () => {
    db = openDatabase({ min: 0, max: 1 });
    instrumentation = instrument(db, { tracerProvider, querySpans: 'auto' });
    await db.executeQuery('SELECT $1::int AS n', [7]);
    await db.executeQuery('SELECT 1/0').catch(() => undefined);
    const spans = exporter.getFinishedSpans();
    expect(spans.map((span) => span.name)).toEqual([`SELECT ${database}`, `SELECT ${database}`]);
    const [ok, failed] = spans;
    expect(ok!.kind).toBe(SpanKind.CLIENT);
    expect(ok!.instrumentationScope.name).toBe('@codecheck/db');
    expect(ok!.attributes).toEqual({
      ...serverAttributes,
      'db.query.text': 'SELECT $1::int AS n',
      'db.operation.name': 'SELECT',
      'db.response.returned_rows': 1,
    });
    expect(ok!.status.code).toBe(SpanStatusCode.UNSET);
    expect(failed!.attributes).toEqual({
      ...serverAttributes,
      'db.query.text': 'SELECT 1/0',
      'db.operation.name': 'SELECT',
      'db.response.status_code': '22012',
      'error.type': '22012',
    });
    expect(failed!.status).toEqual({ code: SpanStatusCode.ERROR, message: 'division by zero (SQLSTATE 22012)' });
  });

  it('makes a transaction span per withDb, active inside the callback, with its statements as children', async () => {
    db = openDatabase({ min: 0, max: 1 });
    instrumentation = instrument(db, { tracerProvider });
    const tracer = tracerProvider.getTracer('test');
    await db.withDb({ readOnly: true, isolationLevel: 'serializable' }, async (client) => {
      await client.query('SELECT 1');
      tracer.startSpan('work inside the callback').end();
      await client.query('SELECT 2');
    });
    const spans = exporter.getFinishedSpans();
    const transaction = spans.find((span) => span.name === `transaction ${database}`)!;
    expect(transaction.kind).toBe(SpanKind.INTERNAL);
    expect(transaction.attributes).toEqual({
      ...serverAttributes,
      'db.operation.name': 'transaction',
      'codecheck.db.read_only': true,
      'codecheck.db.isolation_level': 'serializable',
    });
    const children = spans.filter((span) => span !== transaction);
    expect(children.map((span) => span.name)).toEqual([`SELECT ${database}`, 'work inside the callback', `SELECT ${database}`]);
    for (const child of children) expect(child.parentSpanContext?.spanId).toBe(transaction.spanContext().spanId);
  });

  it('makes no span after uninstrument()', async () => {
    db = openDatabase({ min: 0, max: 1 });
    instrument(db, { tracerProvider }).uninstrument();
    await db.executeQuery('SELECT 1');
    expect(exporter.getFinishedSpans()).toEqual([]);
  });
});

describe('@codecheck/db/otel metrics', () => {
  it('reports all nine connection-pool metrics with exact values after a known sequence of work', async () => {
    const reader = new TestReader();
    const meterProvider = new MeterProvider({ readers: [reader] });
    db = openDatabase({ min: 1, max: 2 });
    instrumentation = instrument(db, { tracerProvider, meterProvider });
    await db.ready(); // 1 acquire (the startup probe), 1 connection
    await db.executeQuery('SELECT 1'); // 1 acquire
    await db.withDb(false, async (client) => void (await client.query('SELECT 1'))); // 1 acquire
    const first = holdConnection(db);
    const second = holdConnection(db);
    await Promise.all([first.held, second.held]); // 2 acquires, 1 more connection
    // While both are held: 2 used, 0 idle; an acquire that times out.
    const during = await collect(reader);
    await db.executeQuery('SELECT 1', [], { timeoutMillis: 100 }).catch(() => undefined);
    first.release();
    second.release();
    await Promise.all([first.done, second.done]);
    const after = await collect(reader);
    const attributes = { 'db.client.connection.pool.name': poolName };

    expect(points(during.get('db.client.connection.count'))).toEqual([
      { attributes: { ...attributes, 'db.client.connection.state': 'idle' }, value: 0 },
      { attributes: { ...attributes, 'db.client.connection.state': 'used' }, value: 2 },
    ]);
    expect(points(after.get('db.client.connection.count'))).toEqual([
      { attributes: { ...attributes, 'db.client.connection.state': 'idle' }, value: 2 },
      { attributes: { ...attributes, 'db.client.connection.state': 'used' }, value: 0 },
    ]);
    expect(points(after.get('db.client.connection.idle.max'))).toEqual([{ attributes, value: 2 }]);
    expect(points(after.get('db.client.connection.idle.min'))).toEqual([{ attributes, value: 1 }]);
    expect(points(after.get('db.client.connection.max'))).toEqual([{ attributes, value: 2 }]);
    expect(points(after.get('db.client.connection.pending_requests'))).toEqual([{ attributes, value: 0 }]);
    expect(points(after.get('db.client.connection.timeouts'))).toEqual([{ attributes, value: 1 }]);
    expect(db.getStats().acquireTimeouts).toBe(1);

    const stats = db.getStats();
    expect(histogramCount(after.get('db.client.connection.create_time'))).toBe(stats.totalConnections);
    expect(stats.totalConnections).toBe(2);
    // ready's probe, executeQuery, withDb, two holds, the timed-out one.
    expect(histogramCount(after.get('db.client.connection.wait_time'))).toBe(6);
    expect(stats.acquireTime.count).toBe(5); // the timed-out acquire records no acquire time
    expect(histogramCount(after.get('db.client.connection.use_time'))).toBe(5);
    for (const name of ['create_time', 'wait_time', 'use_time'])
      expect(after.get(`db.client.connection.${name}`)!.descriptor.unit, name).toBe('s');
    await meterProvider.shutdown();
  });
});

describe('with @opentelemetry/instrumentation-pg enabled too', () => {
  it('has exactly one span per statement (instrumentation-pg makes it), nested under the transaction span', async () => {
    const pgInstrumentation = new PgInstrumentation();
    const unregister = registerInstrumentations({ instrumentations: [pgInstrumentation], tracerProvider });
    try {
      // Load pg through require so its hook patches pg's Client, which this library's clients extend.
      createRequire(import.meta.url)('pg');
      db = openDatabase({ min: 0, max: 1 });
      await db.executeQuery('SELECT 1'); // connected, prepared before the count
      exporter.reset();
      instrumentation = instrument(db, { tracerProvider });
      await db.executeQuery('SELECT 42 AS answer');
      const statementSpans = exporter
        .getFinishedSpans()
        .filter((span) => [span.attributes['db.statement'], span.attributes['db.query.text']].includes('SELECT 42 AS answer'));
      expect(statementSpans).toHaveLength(1);
      expect(statementSpans[0]!.instrumentationScope.name).toBe('@opentelemetry/instrumentation-pg');

      // An automatic prepared statement (second and third use) keeps the span name of its text.
      exporter.reset();
      for (let i = 0; i < 3; i++) await db.executeQuery('SELECT $1::int AS answer', [i]);
      const prepared = exporter
        .getFinishedSpans()
        .filter((span) => span.instrumentationScope.name === '@opentelemetry/instrumentation-pg')
        .map((span) => span.name);
      expect(prepared).toEqual([0, 1, 2].map(() => `pg.query:SELECT ${database}`));

      exporter.reset();
      await db.withDb(true, async (client) => void (await client.query('SELECT 43 AS answer')));
      const spans = exporter.getFinishedSpans();
      const transaction = spans.find((span) => span.name === `transaction ${database}`)!;
      const inside = spans.filter((span) =>
        [span.attributes['db.statement'], span.attributes['db.query.text']].includes('SELECT 43 AS answer'),
      );
      expect(inside).toHaveLength(1);
      expect(inside[0]!.parentSpanContext?.spanId).toBe(transaction.spanContext().spanId);
    } finally {
      pgInstrumentation.disable();
      unregister();
    }
  });
});

describe('the optional peer', () => {
  it('is imported by src/integrations/otel.ts only, never by the core', () => {
    const files = readdirSync(join(ROOT, 'src'), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'));
    const importers = files.filter((file) =>
      /from ['"]@opentelemetry\/|import\(['"]@opentelemetry\//.test(readFileSync(join(ROOT, 'src', file), 'utf8')),
    );
    expect(importers).toEqual(['integrations/otel.ts']);
    expect(readFileSync(join(ROOT, 'src', 'index.ts'), 'utf8')).not.toMatch(/otel/);
  });
});
