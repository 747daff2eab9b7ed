/**
 * Scenario 4: far more concurrent callers than `max`, each wanting to hold a connection. Callers who
 * get none reject with PoolTimeoutError at the acquire deadline (never much earlier or later); with
 * a queue cap, callers past it reject at once; the counters are exact.
 */
import { afterAll, describe, expect, test } from 'vitest';
import { Database, PoolTimeoutError } from '../../../src/index.js';
import { getTestDatabaseUrl } from '../../support/database-url.js';
import { eventually, guardProcess, printFigures, sleep, timed, urlVia } from './support.js';

const MAX = 3;
const DEADLINE_MILLIS = 600;
const SLACK_MILLIS = 250;
const guard = guardProcess();
const databases: Database[] = [];

function open(overrides: ConstructorParameters<typeof Database>[0] = {}): Database {
  const db = new Database({
    connectionString: urlVia(getTestDatabaseUrl()),
    logLevel: 'silent',
    min: 0,
    max: MAX,
    connectionTimeoutMillis: DEADLINE_MILLIS,
    ...overrides,
  });
  databases.push(db);
  return db;
}

afterAll(async () => {
  await Promise.all(databases.map((db) => db.shutdown({ timeoutMillis: 1000 })));
  guard.dispose();
});

/** `count` withDb calls that each hold their connection until `release` resolves. */
function holders(db: Database, count: number, release: Promise<void>) {
  return Array.from({ length: count }, () =>
    timed(
      db.withDb(true, async (client) => {
        await client.query('SELECT 1');
        await release;
      }),
    ),
  );
}

describe('scenario 4: exhaustion', () => {
  test('callers beyond max reject with PoolTimeoutError at the acquire deadline and the counters are exact', async () => {
    const db = open();
    const callers = 30;
    let letGo!: () => void;
    const release = new Promise<void>((resolve) => (letGo = resolve));
    const outcomes = holders(db, callers, release);
    // Holders keep their connections past the deadline of everyone queued behind them.
    const settled = await Promise.all([...outcomes.slice(MAX), sleep(DEADLINE_MILLIS + SLACK_MILLIS * 2).then(() => undefined)]);
    letGo();
    const held = await Promise.all(outcomes.slice(0, MAX));
    const waited = settled.slice(0, callers - MAX) as Awaited<(typeof outcomes)[number]>[];
    for (const h of held) expect(h.error).toBeUndefined();
    for (const w of waited) {
      expect(w.error).toBeInstanceOf(PoolTimeoutError);
      expect(w.error).toMatchObject({ code: 'POOL_TIMEOUT' });
    }
    const earliest = Math.min(...waited.map((w) => w.millis));
    const latest = Math.max(...waited.map((w) => w.millis));
    expect(earliest).toBeGreaterThanOrEqual(DEADLINE_MILLIS - 5);
    expect(latest).toBeLessThanOrEqual(DEADLINE_MILLIS + SLACK_MILLIS);
    const snapshot = (waited[0]!.error as PoolTimeoutError).stats;
    expect(snapshot).toMatchObject({ total: MAX, active: MAX, idle: 0, max: MAX });
    const stats = db.getStats();
    expect(stats).toMatchObject({
      acquireTimeouts: callers - MAX,
      poolExhaustedCount: callers - MAX,
      errors: callers - MAX,
      transactionsExecuted: MAX,
      queriesExecuted: MAX,
      totalConnections: MAX,
      activeConnections: 0,
      waitingRequests: 0,
    });
    printFigures('exhaustion-deadline', {
      max: MAX,
      callers,
      served: MAX,
      timedOut: waited.length,
      deadlineMillis: DEADLINE_MILLIS,
      earliestRejectMillis: earliest,
      latestRejectMillis: latest,
      acquireTimeouts: stats.acquireTimeouts,
      poolExhaustedCount: stats.poolExhaustedCount,
    });
  });

  test('callers past the queue cap reject with POOL_QUEUE_FULL at once while queued callers keep their place', async () => {
    const maxWaiting = 5;
    const db = open({ maxWaiting, connectionTimeoutMillis: 5000 });
    const callers = 30;
    let letGo!: () => void;
    const release = new Promise<void>((resolve) => (letGo = resolve));
    const outcomes = holders(db, callers, release);
    const overflow = await Promise.all(outcomes.slice(MAX + maxWaiting));
    for (const o of overflow) {
      expect(o.error).toBeInstanceOf(PoolTimeoutError);
      expect(o.error).toMatchObject({ code: 'POOL_QUEUE_FULL' });
    }
    const slowestReject = Math.max(...overflow.map((o) => o.millis));
    expect(slowestReject).toBeLessThan(100);
    expect(db.getStats().waitingRequests).toBe(maxWaiting);
    await eventually(async () => (db.getStats().activeConnections === MAX ? true : undefined));
    letGo();
    const served = await Promise.all(outcomes.slice(0, MAX + maxWaiting));
    for (const s of served) expect(s.error).toBeUndefined();
    const stats = db.getStats();
    expect(stats).toMatchObject({
      poolExhaustedCount: callers - MAX - maxWaiting,
      acquireTimeouts: 0,
      errors: callers - MAX - maxWaiting,
      transactionsExecuted: MAX + maxWaiting,
      queriesExecuted: MAX + maxWaiting,
      totalConnections: MAX,
      waitingRequests: 0,
    });
    expect(guard.crashes).toEqual([]);
    printFigures('exhaustion-queue-cap', {
      max: MAX,
      maxWaiting,
      callers,
      served: MAX + maxWaiting,
      rejectedAtOnce: overflow.length,
      slowestRejectMillis: slowestReject,
      poolExhaustedCount: stats.poolExhaustedCount,
    });
  });
});
