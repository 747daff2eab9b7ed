import { afterAll, beforeAll, expect, it } from 'vitest';
import { PoolTimeoutError, type Database, type PoolStats } from '../../src/index.js';
import { adminQuery, holdConnection, openDatabase, uniqueName, within } from '../support/test-database.js';

const table = uniqueName('stats_items');
let db: Database;

beforeAll(async () => {
  await adminQuery(`CREATE TABLE ${table} (id int PRIMARY KEY)`);
  // One connection (so exhaustion is easy to cause) validated on every checkout (validation must not count).
  db = openDatabase({ min: 1, max: 1, maxWaiting: 1, connectionTimeoutMillis: 600, validationIntervalMillis: 0 });
  await db.ready();
});
afterAll(async () => {
  await db?.shutdown();
  await adminQuery(`DROP TABLE IF EXISTS ${table}`);
});

interface Counts {
  queriesExecuted: number;
  transactionsExecuted: number;
  errors: number;
  poolExhaustedCount: number;
  acquireTimeouts: number;
}

function counts(stats: PoolStats = db.getStats()): Counts {
  const { queriesExecuted, transactionsExecuted, errors, poolExhaustedCount, acquireTimeouts } = stats;
  return { queriesExecuted, transactionsExecuted, errors, poolExhaustedCount, acquireTimeouts };
}

const fails = (promise: Promise<unknown>) =>
  promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    () => undefined,
  );

it('counts exactly the caller statements, committed transactions, rejected calls and exhausted acquires of a known sequence', async () => {
  const expected: Counts = { queriesExecuted: 0, transactionsExecuted: 0, errors: 0, poolExhaustedCount: 0, acquireTimeouts: 0 };
  const step = (change: Partial<Counts>) => {
    for (const [key, delta] of Object.entries(change)) expected[key as keyof Counts] += delta;
    expect(counts()).toEqual(expected);
  };
  step({}); // ready(): its probe and min connections are not caller work

  await db.executeQuery('SELECT 1');
  step({ queriesExecuted: 1 });

  await fails(db.executeQuery('SELEC broken'));
  step({ queriesExecuted: 1, errors: 1 }); // a statement the server rejected still counts as executed

  await db.executeQuery('SELECT 2', [], { readOnly: false }); // flips the session with SET: not counted
  await db.executeQuery('SELECT 3'); // flips it back: not counted
  step({ queriesExecuted: 2 });

  await db.withDb(false, async (client) => {
    await client.query(`INSERT INTO ${table} VALUES (1)`);
    await client.query(`SELECT * FROM ${table}`);
  });
  step({ queriesExecuted: 2, transactionsExecuted: 1 }); // BEGIN and COMMIT are not counted

  await fails(
    db.withDb(false, async (client) => {
      await client.query(`INSERT INTO ${table} VALUES (2)`);
      throw new Error('rolled back');
    }),
  );
  step({ queriesExecuted: 1, errors: 1 }); // nor is ROLLBACK

  await db.withDb(true, async (client) => client.query('SELECT 4'));
  step({ queriesExecuted: 1, transactionsExecuted: 1 }); // a read-only transaction commits too

  await db.executeTransaction([
    { text: `INSERT INTO ${table} VALUES (3)` },
    { text: `INSERT INTO ${table} VALUES (4)` },
    { text: 'SELECT 5' },
  ]);
  step({ queriesExecuted: 3, transactionsExecuted: 1 });

  await fails(
    db.executeTransaction([
      { text: `INSERT INTO ${table} VALUES (5)` },
      { text: `INSERT INTO ${table} VALUES (5)` },
      { text: 'SELECT 6' },
    ]),
  );
  step({ queriesExecuted: 2, errors: 1 }); // the third operation was never sent

  await fails(
    db.withDb(false, async (client) => {
      await client.query(`INSERT INTO ${table} VALUES (6)`);
      await client.query(`INSERT INTO ${table} VALUES (6)`).catch(() => undefined);
    }),
  );
  step({ queriesExecuted: 2, errors: 1 }); // COMMIT answered with ROLLBACK: not a committed transaction

  await fails(
    db.withDb(false, async () => {
      throw new Error('before any statement');
    }),
  );
  step({ errors: 1 });

  await fails(db.executeQuery('SELECT $1', 'not an array' as unknown as unknown[]));
  step({ errors: 1 }); // rejected before it got a connection: an error, not a query

  await db.healthCheck({ timeoutMillis: 2000 });
  step({});

  // Exhaust the pool: hold its only connection.
  const holder = holdConnection(db);
  await holder.held;
  expect(db.getStats()).toMatchObject({ activeConnections: 1, availableConnections: 0, poolSize: 1, waitingRequests: 0 });

  await expect(db.executeQuery('SELECT 7')).rejects.toMatchObject({ code: 'POOL_TIMEOUT' });
  step({ errors: 1, poolExhaustedCount: 1, acquireTimeouts: 1 }); // never got a connection: not a query

  const waiter = db.executeQuery('SELECT 8');
  expect(await within(20, waiter)).toBe('pending');
  expect(db.getStats().waitingRequests).toBe(1);
  await expect(db.executeQuery('SELECT 9')).rejects.toBeInstanceOf(PoolTimeoutError); // queue full
  step({ errors: 1, poolExhaustedCount: 1 });
  holder.release();
  await holder.done;
  await waiter;
  step({ queriesExecuted: 1, transactionsExecuted: 1 });

  const stats = db.getStats();
  expect(stats).toMatchObject({
    poolSize: 1,
    availableConnections: 1,
    activeConnections: 0,
    waitingRequests: 0,
    minConnections: 1,
    maxConnections: 1,
    totalConnections: 1,
    connectionsClosed: 0,
    validationFailures: 0,
    connectionErrors: 0,
  });
  // Every caller statement is timed once; every successful acquire too (ready's probe + 13 calls).
  expect(stats.queryTime.count).toBe(stats.queriesExecuted);
  expect(stats.acquireTime.count).toBe(14);
});

it('returns a frozen snapshot that later work does not change', async () => {
  const before = db.getStats();
  await db.executeQuery('SELECT 1');
  expect(Object.isFrozen(before)).toBe(true);
  expect(Object.isFrozen(before.nodes)).toBe(true);
  expect(db.getStats().queriesExecuted).toBe(before.queriesExecuted + 1);
  expect(() => {
    (before as { queriesExecuted: number }).queriesExecuted = 0;
  }).toThrow(TypeError);
});

it("reports the seed's keys, camelCased, and ordered acquire and query time percentiles", () => {
  const stats = db.getStats();
  for (const key of [
    'poolSize',
    'availableConnections',
    'activeConnections',
    'waitingRequests',
    'totalConnections',
    'queriesExecuted',
    'transactionsExecuted',
    'errors',
    'poolExhaustedCount',
    'minConnections',
    'maxConnections',
    'validationFailures',
    'connectionErrors',
    'connectionsClosed',
    'acquireTimeouts',
  ] as const) {
    expect(typeof stats[key], key).toBe('number');
  }
  for (const time of [stats.acquireTime, stats.queryTime]) {
    expect(time.count).toBeGreaterThan(0);
    expect(time.p50Millis).toBeGreaterThan(0);
    expect(time.p50Millis).toBeLessThanOrEqual(time.p95Millis);
    expect(time.p95Millis).toBeLessThanOrEqual(time.p99Millis);
    expect(time.p99Millis).toBeLessThanOrEqual(time.maxMillis);
  }
  expect(stats.nodes).toHaveLength(1);
  expect(stats.nodes[0]).toMatchObject({
    name: 'primary',
    role: 'primary',
    poolSize: stats.poolSize,
    totalConnections: stats.totalConnections,
  });
});
