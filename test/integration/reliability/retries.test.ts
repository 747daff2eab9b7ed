/**
 * Scenario 7: two SERIALIZABLE transactions forced into a write-skew conflict (each reads what the
 * other writes, both read before either writes). With `retries` both end committed; without, one
 * fails with DatabaseTransactionError SERIALIZATION_FAILURE after one attempt.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Database, DatabaseTransactionError, type QueryClient } from '../../../src/index.js';
import { getTestDatabaseUrl } from '../../support/database-url.js';
import { guardProcess, printFigures, uniqueName, urlVia } from './support.js';

const table = uniqueName('rel_retry');
const guard = guardProcess();
const db = new Database({
  connectionString: urlVia(getTestDatabaseUrl()),
  logLevel: 'silent',
  min: 0,
  max: 4,
  connectionTimeoutMillis: 2000,
});

beforeAll(async () => {
  await db.executeQuery(`CREATE TABLE ${table} (id serial PRIMARY KEY, class int NOT NULL, value int NOT NULL)`, [], {
    readOnly: false,
  });
});
afterAll(async () => {
  await db.executeQuery(`DROP TABLE IF EXISTS ${table}`, [], { readOnly: false }).catch(() => undefined);
  await db.shutdown({ timeoutMillis: 1000 });
  guard.dispose();
});

/** A two-party barrier: both first attempts have read before either writes. */
function barrier(): () => Promise<void> {
  let arrived = 0;
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return () => {
    arrived++;
    if (arrived === 2) open();
    return opened;
  };
}

/** Reads the sum of class `reads`, then inserts it into class `writes` (classic write skew). */
function skewed(reads: number, writes: number, meet: () => Promise<void>, attempts: number[]) {
  return async (client: QueryClient) => {
    attempts.push(1);
    const { rows } = await client.query<{ total: number }>(
      `SELECT coalesce(sum(value), 0)::int AS total FROM ${table} WHERE class = $1`,
      [reads],
    );
    if (attempts.length === 1) await meet();
    await client.query(`INSERT INTO ${table} (class, value) VALUES ($1, $2)`, [writes, rows[0]!.total + 1]);
  };
}

async function rowCount(): Promise<number> {
  const rows = await db.executeQuery<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`);
  return rows[0]!.n;
}

describe('scenario 7: retries on serialization failure', () => {
  test('two SERIALIZABLE transactions forced into a conflict both commit with retries', async () => {
    await db.executeQuery(`TRUNCATE ${table}`, [], { readOnly: false });
    const before = db.getStats();
    const meet = barrier();
    const a: number[] = [];
    const b: number[] = [];
    const options = { isolationLevel: 'serializable' as const, retries: 3 };
    const results = await Promise.allSettled([
      db.withDb(options, skewed(1, 2, meet, a)),
      db.withDb(options, skewed(2, 1, meet, b)),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled']);
    expect(await rowCount()).toBe(2);
    const after = db.getStats();
    // Exactly one of the two lost the first round and ran again.
    expect(a.length + b.length).toBe(3);
    expect(after.transactionRetries - before.transactionRetries).toBe(1);
    expect(after.transactionsExecuted - before.transactionsExecuted).toBe(2);
    expect(after.errors - before.errors).toBe(0);
    printFigures('retries-with', {
      transactions: 2,
      committed: 2,
      attempts: a.length + b.length,
      retries: after.transactionRetries - before.transactionRetries,
    });
  });

  test('without retries one of the two conflicting transactions fails with DatabaseTransactionError SERIALIZATION_FAILURE after one attempt', async () => {
    await db.executeQuery(`TRUNCATE ${table}`, [], { readOnly: false });
    const before = db.getStats();
    const meet = barrier();
    const options = { isolationLevel: 'serializable' as const };
    const results = await Promise.allSettled([
      db.withDb(options, skewed(1, 2, meet, [])),
      db.withDb(options, skewed(2, 1, meet, [])),
    ]);
    const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(failures).toHaveLength(1);
    const error = failures[0]!.reason as DatabaseTransactionError;
    expect(error).toBeInstanceOf(DatabaseTransactionError);
    expect(error).toMatchObject({ code: 'SERIALIZATION_FAILURE', attempts: 1, sqlState: '40001' });
    expect(await rowCount()).toBe(1);
    const after = db.getStats();
    expect(after.transactionRetries - before.transactionRetries).toBe(0);
    expect(after.errors - before.errors).toBe(1);
    expect(guard.crashes).toEqual([]);
    printFigures('retries-without', {
      transactions: 2,
      committed: 1,
      failed: 1,
      code: error.code,
      sqlState: error.sqlState ?? 'none',
      attempts: error.attempts,
    });
  });
});
