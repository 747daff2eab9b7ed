/**
 * Scenario 6: a `pg_sleep(30)` cancelled by an AbortSignal or by `timeoutMillis` is cancelled on the
 * server (PostgreSQL's CancelRequest), is gone from pg_stat_activity within a second, and its
 * connection serves the next caller.
 */
import { afterAll, describe, expect, test } from 'vitest';
import { Database, DatabaseQueryError } from '../../../src/index.js';
import { getTestDatabaseUrl } from '../../support/database-url.js';
import { adminQuery, eventually, guardProcess, printFigures, timed, uniqueName, urlVia } from './support.js';

const appName = uniqueName('rel_cancel');
const guard = guardProcess();
// One connection, so "the next caller" provably gets the connection whose statement was cancelled.
const db = new Database({
  connectionString: urlVia(getTestDatabaseUrl()),
  applicationName: appName,
  logLevel: 'silent',
  min: 1,
  max: 1,
  connectionTimeoutMillis: 2000,
  validationTimeoutMillis: 500,
});

afterAll(async () => {
  await db.shutdown({ timeoutMillis: 1000 });
  guard.dispose();
});

/** Milliseconds until no backend of ours runs `pg_sleep(30)` any more. */
async function sleeperGoneAfter(startedAt: number): Promise<number> {
  await eventually(
    async () => {
      const rows = await adminQuery(
        getTestDatabaseUrl(),
        "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND state = 'active' AND query LIKE '%pg_sleep(30)%'",
        [appName],
      );
      return rows.length === 0 ? true : undefined;
    },
    5000,
    20,
  );
  return Math.round(performance.now() - startedAt);
}

async function backendPid(): Promise<number> {
  const rows = await db.executeQuery<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  return rows[0]!.pid;
}

async function waitUntilSleeping(): Promise<void> {
  await eventually(
    async () => {
      const rows = await adminQuery(
        getTestDatabaseUrl(),
        "SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND state = 'active' AND query LIKE '%pg_sleep(30)%'",
        [appName],
      );
      return rows.length > 0 ? true : undefined;
    },
    5000,
    10,
  );
}

describe('scenario 6: cancellation', () => {
  test('a pg_sleep(30) aborted by its AbortSignal is gone from pg_stat_activity within a second and its connection serves the next caller', async () => {
    const pidBefore = await backendPid();
    const controller = new AbortController();
    const call = timed(db.executeQuery('SELECT pg_sleep(30)', [], { signal: controller.signal }));
    await waitUntilSleeping();
    const abortedAt = performance.now();
    controller.abort(new Error('client went away'));
    const outcome = await call;
    const callerMillis = Math.round(performance.now() - abortedAt);
    expect(outcome.error).toBeInstanceOf(DatabaseQueryError);
    expect(outcome.error).toMatchObject({ code: 'QUERY_CANCELLED' });
    const goneMillis = await sleeperGoneAfter(abortedAt);
    expect(goneMillis).toBeLessThan(1000);
    expect(await backendPid()).toBe(pidBefore);

    // The same inside withDb: the transaction is rolled back and the connection is reused.
    const inTransaction = new AbortController();
    const txCall = timed(db.withDb({ signal: inTransaction.signal }, async (client) => client.query('SELECT pg_sleep(30)')));
    await waitUntilSleeping();
    const txAbortedAt = performance.now();
    inTransaction.abort();
    expect((await txCall).error).toMatchObject({ code: 'QUERY_CANCELLED' });
    const txGoneMillis = await sleeperGoneAfter(txAbortedAt);
    expect(txGoneMillis).toBeLessThan(1000);
    const after = await db.withDb(
      false,
      async (client) =>
        (
          await client.query<{ pid: number; tx: string }>(
            "SELECT pg_backend_pid() AS pid, current_setting('transaction_read_only') AS tx",
          )
        ).rows[0],
    );
    expect(after?.pid).toBe(pidBefore);
    expect(db.getStats().connectionsClosed).toBe(0);
    printFigures('cancel-signal', {
      callerMillis,
      serverGoneMillis: goneMillis,
      withDbServerGoneMillis: txGoneMillis,
      connectionReused: after?.pid === pidBefore,
      connectionsClosed: db.getStats().connectionsClosed,
    });
  });

  test('a pg_sleep(30) past its timeoutMillis is gone from pg_stat_activity within a second and its connection serves the next caller', async () => {
    const pidBefore = await backendPid();
    const closedBefore = db.getStats().connectionsClosed;
    const cancelledBefore = db.getStats().queriesCancelled;
    const startedAt = performance.now();
    const outcome = await timed(db.executeQuery('SELECT pg_sleep(30)', [], { timeoutMillis: 300 }));
    expect(outcome.error).toMatchObject({ code: 'QUERY_CANCELLED' });
    expect(outcome.millis).toBeGreaterThanOrEqual(295);
    const goneMillis = (await sleeperGoneAfter(startedAt)) - 300;
    expect(goneMillis).toBeLessThan(1000);
    expect(await backendPid()).toBe(pidBefore);
    const stats = db.getStats();
    expect(stats.connectionsClosed).toBe(closedBefore);
    expect(stats.queriesCancelled).toBe(cancelledBefore + 1);
    expect(guard.crashes).toEqual([]);
    printFigures('cancel-timeout', {
      timeoutMillis: 300,
      callerMillis: outcome.millis,
      serverGoneAfterDeadlineMillis: goneMillis,
      connectionReused: true,
      connectionsClosed: stats.connectionsClosed - closedBefore,
    });
  });
});
