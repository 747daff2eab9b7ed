/**
 * Scenario 3: a black-holed link (the proxy accepts and swallows, never answers). Every wait must
 * end at its deadline: acquires at the acquire deadline, statements at the caller's timeoutMillis
 * plus the cancel grace (the cancel request goes into the same hole, so the connection is destroyed),
 * health at its timeout; and everything recovers after the heal.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { Database, DatabaseConnectionError, DatabaseQueryError, PoolClosedError, PoolTimeoutError } from '../../../src/index.js';
import { getTestDatabaseUrl } from '../../support/database-url.js';
import { startFaultProxy, type FaultProxy } from '../../support/fault-proxy.js';
import { eventually, guardProcess, printFigures, sleep, timed, urlVia } from './support.js';

const CONNECT_MILLIS = 1000;
const STATEMENT_MILLIS = 500;
const GRACE_MILLIS = 250; // validationTimeoutMillis: cancel request timeout and cancel grace
const HEALTH_MILLIS = 500;
const SLACK_MILLIS = 300;

let proxy: FaultProxy;
const guard = guardProcess();
const databases: Database[] = [];

function open(overrides: ConstructorParameters<typeof Database>[0] = {}): Database {
  const db = new Database({
    connectionString: urlVia(getTestDatabaseUrl(), proxy),
    logLevel: 'silent',
    min: 3,
    max: 4,
    connectionTimeoutMillis: CONNECT_MILLIS,
    validationTimeoutMillis: GRACE_MILLIS,
    validationIntervalMillis: 60_000,
    circuitBreakerThreshold: 3,
    circuitBreakerResetMillis: 300,
    ...overrides,
  });
  databases.push(db);
  return db;
}

beforeAll(async () => {
  const target = new URL(getTestDatabaseUrl());
  proxy = await startFaultProxy({ targetHost: target.hostname, targetPort: Number(target.port) });
});
afterEach(() => proxy.heal());
afterAll(async () => {
  await Promise.all(databases.map((db) => db.shutdown({ timeoutMillis: 1000 })));
  await proxy.close();
  guard.dispose();
});

describe('scenario 3: black-holed link', () => {
  test('statements, acquires and health end at their deadlines while the link is black-holed, and the pool serves again after the heal', async () => {
    const db = open();
    await db.ready({ timeoutMillis: 5000 });
    await db.executeQuery('SELECT 1');
    proxy.blackhole();

    // Statements on the three connections that were fine a moment ago (a SELECT, a SET + SELECT, a
    // BEGIN): the caller's timeoutMillis is the deadline, plus the grace for the unanswered cancel.
    const statements = await Promise.all([
      timed(db.executeQuery('SELECT 1', [], { timeoutMillis: STATEMENT_MILLIS })),
      timed(db.executeQuery('SELECT 2', [], { timeoutMillis: STATEMENT_MILLIS, readOnly: false })),
      timed(db.withDb({ timeoutMillis: STATEMENT_MILLIS }, async (client) => client.query('SELECT 3'))),
    ]);
    for (const outcome of statements) {
      expect(outcome.error).toBeInstanceOf(DatabaseQueryError);
      expect(outcome.error).toMatchObject({ code: 'QUERY_CANCELLED' });
    }
    const statementOverrun = Math.max(...statements.map((s) => s.millis - STATEMENT_MILLIS));
    expect(statementOverrun).toBeLessThanOrEqual(GRACE_MILLIS + SLACK_MILLIS);

    // New connections cannot be made: acquires end at the acquire deadline (or fail fast once the breaker opens).
    const acquires = [];
    for (let i = 0; i < 4; i++) acquires.push(await timed(db.executeQuery('SELECT 1')));
    for (const outcome of acquires) expect(outcome.error).toBeInstanceOf(DatabaseConnectionError);
    const acquireOverrun = Math.max(...acquires.map((a) => a.millis - CONNECT_MILLIS));
    expect(acquireOverrun).toBeLessThanOrEqual(SLACK_MILLIS);
    // At the deadline: PoolTimeoutError, or the connect's own timeout (CONNECTION_FAILED) when it fires
    // first; at once: CIRCUIT_OPEN once the breaker has opened.
    const codes: Record<string, number> = {};
    for (const a of acquires) codes[(a.error as { code: string }).code] = (codes[(a.error as { code: string }).code] ?? 0) + 1;
    expect(
      Object.keys(codes).every((code) => ['POOL_TIMEOUT', 'CONNECTION_FAILED', 'CIRCUIT_OPEN'].includes(code)),
      JSON.stringify(codes),
    ).toBe(true);
    const fastFails = codes.CIRCUIT_OPEN ?? 0;

    const health = await timed(db.healthCheck({ timeoutMillis: HEALTH_MILLIS }));
    expect(health.value?.status).toBe('unhealthy');
    const healthOverrun = health.millis - HEALTH_MILLIS;
    expect(healthOverrun).toBeLessThanOrEqual(SLACK_MILLIS);

    proxy.heal();
    const healedAt = performance.now();
    await eventually(
      () =>
        db.executeQuery<{ one: number }>('SELECT 1 AS one', [], { timeoutMillis: 2000 }).then(
          (rows) => rows[0]?.one,
          () => undefined,
        ),
      10_000,
      20,
    );
    const recoveryMillis = Math.round(performance.now() - healedAt);
    expect((await db.healthCheck({ timeoutMillis: 2000 })).status).not.toBe('unhealthy');
    expect(recoveryMillis).toBeLessThan(5000);
    expect(guard.crashes).toEqual([]);
    const stats = db.getStats();
    printFigures('blackhole', {
      statementDeadlineMillis: STATEMENT_MILLIS,
      statementWorstOverrunMillis: statementOverrun,
      acquireDeadlineMillis: CONNECT_MILLIS,
      acquireWorstOverrunMillis: acquireOverrun,
      acquireErrors: Object.entries(codes)
        .map(([code, n]) => `${code}:${n}`)
        .join(','),
      circuitRejections: fastFails,
      healthMillis: health.millis,
      healthTimeoutMillis: HEALTH_MILLIS,
      recoveryMillis,
      connectionErrors: stats.connectionErrors,
    });
  });

  test('an idle connection whose link went silent fails validation on checkout and is never handed out', async () => {
    const db = open({ validationIntervalMillis: 50, circuitBreakerThreshold: 0 });
    await db.ready({ timeoutMillis: 5000 });
    await sleep(100);
    proxy.blackhole();
    const outcome = await timed(db.executeQuery('SELECT 1'));
    expect(outcome.error).toBeInstanceOf(PoolTimeoutError);
    expect(outcome.millis - CONNECT_MILLIS).toBeLessThanOrEqual(SLACK_MILLIS);
    // Both idle connections were checked, found dead, evicted: the caller never got one.
    expect(db.getStats().validationFailures).toBe(2);
    proxy.heal();
    await eventually(
      () =>
        db.executeQuery('SELECT 1', [], { timeoutMillis: 2000 }).then(
          () => true,
          () => undefined,
        ),
      10_000,
      20,
    );
    printFigures('blackhole-validation', {
      idleEvicted: db.getStats().validationFailures,
      acquireMillis: outcome.millis,
      acquireDeadlineMillis: CONNECT_MILLIS,
    });
  });

  test('shutdown with statements stuck in the black hole ends one cancel timeout after its deadline, however many there are', async () => {
    const db = open({ min: 4, max: 4 });
    await db.ready({ timeoutMillis: 5000 });
    proxy.blackhole();
    const stuck = Array.from({ length: 4 }, () => timed(db.executeQuery('SELECT 1')));
    await sleep(50);
    const deadlineMillis = 300;
    const shutdown = await timed(db.shutdown({ timeoutMillis: deadlineMillis }));
    for (const call of await Promise.all(stuck)) expect(call.error).toBeInstanceOf(DatabaseConnectionError);
    const overrun = shutdown.millis - deadlineMillis;
    expect(overrun, JSON.stringify(db.getStats().nodes[0])).toBeLessThanOrEqual(GRACE_MILLIS + SLACK_MILLIS);
    printFigures('blackhole-shutdown', {
      stuckStatements: 4,
      deadlineMillis,
      shutdownMillis: shutdown.millis,
      overrunMillis: overrun,
    });
  });

  // PoolClosedError, not DatabaseConnectionError: shutdown ended the connect, the server did not fail it.
  test('shutdown interrupts a connect stuck in the black hole: it resolves within 1000 ms with a 200 ms deadline and the caller waiting on that connect rejects with PoolClosedError', async () => {
    const db = open({ min: 0, max: 2, connectionTimeoutMillis: 5000 });
    proxy.blackhole();
    const caller = timed(db.executeQuery('SELECT 1'));
    await eventually(async () => (proxy.activeConnections > 0 ? true : undefined));
    await sleep(50);
    const shutdown = await timed(db.shutdown({ timeoutMillis: 200 }));
    const outcome = await caller;
    expect(outcome.error).toBeInstanceOf(PoolClosedError);
    expect(shutdown.millis).toBeLessThanOrEqual(1000);
    expect(outcome.millis).toBeLessThan(5000);
    expect(db.getStats().connectionErrors).toBe(0);
    printFigures('blackhole-shutdown-connect', {
      deadlineMillis: 200,
      connectionTimeoutMillis: 5000,
      shutdownMillis: shutdown.millis,
      callerMillis: outcome.millis,
    });
  });
});
