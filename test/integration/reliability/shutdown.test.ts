/**
 * Scenario 8: shutdown under load. Transactions in flight finish and commit; callers waiting for a
 * connection and new calls reject at once with PoolClosedError; a straggler still running at the
 * deadline has its statement cancelled and its transaction rolled back; nothing committed is lost;
 * no socket stays open on either side.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Database, PoolClosedError } from '../../../src/index.js';
import { getTestDatabaseUrl } from '../../support/database-url.js';
import { adminQuery, eventually, guardProcess, printFigures, sleep, timed, uniqueName, urlVia } from './support.js';

const MAX = 4;
const DEADLINE_MILLIS = 1200;
const GRACE_MILLIS = 300;
const table = uniqueName('rel_shutdown');
const appName = uniqueName('rel_shutdown');
const guard = guardProcess();

beforeAll(async () => {
  await adminQuery(getTestDatabaseUrl(), `CREATE TABLE ${table} (key text PRIMARY KEY)`);
});
afterAll(async () => {
  await adminQuery(getTestDatabaseUrl(), `DROP TABLE IF EXISTS ${table}`).catch(() => undefined);
  guard.dispose();
});

/** Open TCP sockets of this process (pg connections, cancel requests, proxies). */
function openSockets(): number {
  return process.getActiveResourcesInfo().filter((name) => name === 'TCPSocketWrap').length;
}

async function ourBackends(): Promise<number> {
  const rows = await adminQuery(getTestDatabaseUrl(), 'SELECT 1 FROM pg_stat_activity WHERE application_name = $1', [appName]);
  return rows.length;
}

async function storedKeys(): Promise<Set<string>> {
  const rows = await adminQuery<{ key: string }>(getTestDatabaseUrl(), `SELECT key FROM ${table}`);
  return new Set(rows.map((row) => row.key));
}

describe('scenario 8: shutdown under load', () => {
  test('in-flight transactions commit, waiting and new callers are rejected at once, a straggler is cancelled at the deadline, and nothing stays open', async () => {
    const socketsBefore = openSockets();
    const db = new Database({
      connectionString: urlVia(getTestDatabaseUrl()),
      applicationName: appName,
      logLevel: 'silent',
      min: 0,
      max: MAX,
      connectionTimeoutMillis: 5000,
      validationTimeoutMillis: GRACE_MILLIS,
    });
    // Committed before shutdown: must survive it.
    for (let i = 0; i < 5; i++)
      await db.withDb(
        false,
        async (client) => void (await client.query(`INSERT INTO ${table} (key) VALUES ($1)`, [`before-${i}`])),
      );

    // Three transactions that finish well within the deadline, one straggler that never would.
    const inFlight = Array.from({ length: MAX - 1 }, (_, i) =>
      timed(
        db.withDb(false, async (client) => {
          await client.query(`INSERT INTO ${table} (key) VALUES ($1)`, [`in-flight-${i}`]);
          await client.query('SELECT pg_sleep(0.4)');
        }),
      ),
    );
    const straggler = timed(
      db.withDb(false, async (client) => {
        await client.query(`INSERT INTO ${table} (key) VALUES ('straggler')`);
        await client.query('SELECT pg_sleep(30)');
      }),
    );
    await eventually(async () => (db.getStats().activeConnections === MAX ? true : undefined));
    // Callers queued behind them.
    const waiting = Array.from({ length: 3 }, () =>
      timed(db.executeQuery('SELECT 1')).then((outcome) => ({ ...outcome, settledAt: performance.now() })),
    );
    await eventually(async () => (db.getStats().waitingRequests === 3 ? true : undefined));

    const shutdownStartedAt = performance.now();
    const shutdown = timed(db.shutdown({ timeoutMillis: DEADLINE_MILLIS }));
    const newCalls = await Promise.all([
      timed(db.executeQuery('SELECT 1')),
      timed(db.withDb(false, async () => undefined)),
      timed(db.executeTransaction([{ text: 'SELECT 1' }])),
    ]);
    const waited = await Promise.all(waiting);
    for (const call of [...newCalls, ...waited]) expect(call.error).toBeInstanceOf(PoolClosedError);
    for (const call of newCalls) expect(call.millis).toBeLessThan(100);
    const waitedRejectMillis = Math.max(...waited.map((w) => Math.round(w.settledAt - shutdownStartedAt)));
    expect(waitedRejectMillis).toBeLessThan(100);

    const finished = await Promise.all(inFlight);
    for (const call of finished) expect(call.error).toBeUndefined();
    const late = await straggler;
    expect(late.error).toBeDefined();
    const done = await shutdown;
    expect(done.error).toBeUndefined();
    // Shutdown ends at the deadline plus the cancel of the straggler, not at pg_sleep(30).
    expect(done.millis).toBeGreaterThanOrEqual(DEADLINE_MILLIS - 5);
    expect(done.millis).toBeLessThanOrEqual(DEADLINE_MILLIS + 2 * GRACE_MILLIS + 300);
    await expect(db.shutdown()).resolves.toBeUndefined();

    const keys = await storedKeys();
    for (let i = 0; i < 5; i++) expect(keys.has(`before-${i}`)).toBe(true);
    for (let i = 0; i < MAX - 1; i++) expect(keys.has(`in-flight-${i}`)).toBe(true);
    expect(keys.has('straggler')).toBe(false);
    // No backend of ours on the server, no socket of ours in this process.
    await eventually(async () => ((await ourBackends()) === 0 ? true : undefined), 2000);
    await eventually(async () => (openSockets() <= socketsBefore ? true : undefined), 2000);
    await sleep(50);
    expect(openSockets()).toBeLessThanOrEqual(socketsBefore);
    const stats = db.getStats();
    expect(stats).toMatchObject({ poolSize: 0, activeConnections: 0, waitingRequests: 0, transactionsExecuted: 5 + MAX - 1 });
    expect(guard.crashes).toEqual([]);
    printFigures('shutdown', {
      inFlight: MAX - 1,
      inFlightCommitted: finished.length,
      waitingRejected: waited.length,
      newCallsRejected: newCalls.length,
      newCallRejectMillis: Math.max(...newCalls.map((c) => c.millis)),
      waitingRejectMillis: waitedRejectMillis,
      stragglersCancelled: 1,
      deadlineMillis: DEADLINE_MILLIS,
      shutdownMillis: done.millis,
      committedLost: 0,
      serverBackendsLeft: 0,
      socketsLeft: openSockets() - socketsBefore,
    });
  });
});
