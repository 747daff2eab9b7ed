/**
 * Scenario 2: `pg_terminate_backend` on every idle pooled connection. The next callers see no error
 * and none of them is served by a killed backend: pg-pool drops an idle client when its socket ends,
 * and a connection that dies between checks fails BEGIN or its read and is replaced once.
 */
import { afterAll, describe, expect, test } from 'vitest';
import { Database } from '../../../src/index.js';
import { getTestDatabaseUrl } from '../../support/database-url.js';
import { adminQuery, eventually, guardProcess, printFigures, uniqueName, urlVia } from './support.js';

const POOL_SIZE = 4;
const appName = uniqueName('rel_term');
const table = uniqueName('rel_term');
const guard = guardProcess();
const db = new Database({
  connectionString: urlVia(getTestDatabaseUrl()),
  applicationName: appName,
  logLevel: 'silent',
  min: POOL_SIZE,
  max: POOL_SIZE,
  connectionTimeoutMillis: 2000,
  validationIntervalMillis: 60_000,
});

afterAll(async () => {
  await db.executeQuery(`DROP TABLE IF EXISTS ${table}`, [], { readOnly: false }).catch(() => undefined);
  await db.shutdown({ timeoutMillis: 1000 });
  guard.dispose();
});

async function ourBackends(): Promise<number[]> {
  const rows = await adminQuery<{ pid: number }>(
    getTestDatabaseUrl(),
    'SELECT pid FROM pg_stat_activity WHERE application_name = $1',
    [appName],
  );
  return rows.map((row) => row.pid);
}

async function killAll(): Promise<number[]> {
  const pids = await ourBackends();
  // Two steps: in one WHERE clause the planner may call pg_terminate_backend before filtering.
  await adminQuery(getTestDatabaseUrl(), 'SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid', [pids]);
  return pids;
}

/** Twice as many callers as connections, reads and writes mixed; each reports the backend that served it. */
function nextCallers(round: number): Promise<number>[] {
  const reads = Array.from({ length: POOL_SIZE }, () =>
    db.executeQuery<{ pid: number }>('SELECT pg_backend_pid() AS pid').then((rows) => rows[0]!.pid),
  );
  const writes = Array.from({ length: POOL_SIZE }, (_, i) =>
    db.withDb(false, async (client) => {
      await client.query(`INSERT INTO ${table} (round, n) VALUES ($1, $2)`, [round, i]);
      return (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    }),
  );
  return [...reads, ...writes];
}

describe('scenario 2: pg_terminate_backend on every idle connection', () => {
  test('the next callers see no error and none is served by a killed backend', async () => {
    await db.ready({ timeoutMillis: 5000 });
    await db.executeQuery(`CREATE TABLE ${table} (round int, n int, PRIMARY KEY (round, n))`, [], { readOnly: false });
    const figures: Record<string, number> = {};
    // Round 1: the callers come once the server has closed the killed sessions.
    // Round 2: the callers come the moment pg_terminate_backend returns (the race is theirs to win or lose).
    for (const round of [1, 2]) {
      for (const c of guard.crashes) console.log('CRASH', round, (c as Error).stack);
      await eventually(async () => ((await ourBackends()).length === POOL_SIZE ? true : undefined));
      const before = db.getStats();
      const killed = await killAll();
      expect(killed).toHaveLength(POOL_SIZE);
      if (round === 1)
        await eventually(async () => ((await ourBackends()).some((pid) => killed.includes(pid)) ? undefined : true));
      const pids = await Promise.all(nextCallers(round));
      for (const pid of pids) expect(killed).not.toContain(pid);
      const after = db.getStats();
      expect(after.errors - before.errors).toBe(0);
      expect(after.transactionsExecuted - before.transactionsExecuted).toBe(POOL_SIZE);
      expect(after.connectionsClosed - before.connectionsClosed).toBeGreaterThanOrEqual(POOL_SIZE);
      figures[`round${round}Killed`] = killed.length;
      figures[`round${round}Callers`] = pids.length;
      figures[`round${round}Errors`] = after.errors - before.errors;
      figures[`round${round}ConnectionsClosed`] = after.connectionsClosed - before.connectionsClosed;
    }
    const rows = await db.executeQuery<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`);
    expect(rows[0]!.n).toBe(2 * POOL_SIZE);
    // The pool is back to min on its own.
    await eventually(async () => (db.getStats().poolSize === POOL_SIZE ? true : undefined));
    for (const c of guard.crashes) console.log('CRASH', (c as Error).stack);
    expect(guard.crashes).toEqual([]);
    printFigures('terminate-idle', { poolSize: POOL_SIZE, ...figures, validationFailures: db.getStats().validationFailures });
  });
});
