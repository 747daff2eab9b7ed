import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { DbError, PoolClosedError, type Database } from '../../src/index.js';
import { getTestDatabaseUrl } from '../support/database-url.js';
import { adminQuery, ensureBuiltDist, eventually, openDatabase, ROOT, uniqueName, within } from '../support/test-database.js';

const run = promisify(execFile);
let db: Database | undefined;
afterEach(async () => {
  await db?.shutdown({ timeoutMillis: 1000 });
  db = undefined;
});

/** Starts a withDb that holds its connection until `release()`; `held` resolves once it does. */
function holdConnection(database: Database): { held: Promise<void>; release(): void; done: Promise<string> } {
  let release!: () => void;
  let markHeld!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const held = new Promise<void>((resolve) => (markHeld = resolve));
  const done = database.withDb(false, async (client) => {
    markHeld();
    await gate;
    await client.query('SELECT 1');
    return 'finished';
  });
  return { held, release, done };
}

async function activeWith(marker: string): Promise<number> {
  const rows = await adminQuery<{ n: number }>(
    'SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE $1 AND pid <> pg_backend_pid()',
    [`%${marker}%`],
  );
  return rows[0]!.n;
}

describe('shutdown', () => {
  it('lets in-flight work finish and rejects new work at once with PoolClosedError', async () => {
    db = openDatabase({ min: 1, max: 2 });
    await db.ready();
    const inFlight = holdConnection(db);
    await inFlight.held;
    const closing = db.shutdown({ timeoutMillis: 5000 });
    const attempts: Promise<unknown>[] = [
      db.executeQuery('SELECT 1'),
      db.withDb(true, async () => 1),
      db.executeTransaction([{ text: 'SELECT 1' }]),
      db.ready({ timeoutMillis: 1000 }),
    ];
    for (const attempt of attempts) {
      const outcome = await within(200, attempt);
      expect(outcome).toMatchObject({ error: expect.any(PoolClosedError) });
      expect((outcome as { error: PoolClosedError }).error.code).toBe('POOL_CLOSED');
    }
    // Rejected while the in-flight call still held its connection and shutdown still waited for it.
    expect(await within(0, inFlight.done)).toBe('pending');
    expect(await within(0, closing)).toBe('pending');
    inFlight.release();
    expect(await inFlight.done).toBe('finished');
    await closing;
    expect(db.getStats()).toMatchObject({ poolSize: 0, activeConnections: 0, transactionsExecuted: 1 });
  });

  it('rejects callers waiting for a connection at once with PoolClosedError', async () => {
    db = openDatabase({ min: 1, max: 1, connectionTimeoutMillis: 10_000 });
    await db.ready();
    const holder = holdConnection(db);
    await holder.held;
    const waiting = db.executeQuery('SELECT 1');
    expect(await within(50, waiting)).toBe('pending');
    const closing = db.shutdown({ timeoutMillis: 5000 });
    expect(await within(500, waiting)).toMatchObject({ error: expect.any(PoolClosedError) });
    expect(await within(0, holder.done)).toBe('pending');
    holder.release();
    expect(await holder.done).toBe('finished');
    await closing;
  });

  it('is idempotent: every call resolves, during and after the shutdown', async () => {
    db = openDatabase({ min: 2, max: 2 });
    await db.ready();
    const first = db.shutdown();
    const second = db.shutdown();
    await expect(Promise.all([first, second])).resolves.toEqual([undefined, undefined]);
    await expect(db.shutdown()).resolves.toBeUndefined();
    // Final when shutdown resolves: both connections counted as closed.
    expect(db.getStats()).toMatchObject({ poolSize: 0, activeConnections: 0, connectionsClosed: 2 });
  });

  it('cancels statements still running at the deadline and closes their connections', async () => {
    db = openDatabase({ min: 1, max: 2 });
    await db.ready();
    const marker = uniqueName('straggler');
    const straggler = db.executeQuery(`SELECT pg_sleep(30) AS "${marker}"`).then(
      () => undefined,
      (error: unknown) => error,
    );
    await eventually(async () => ((await activeWith(marker)) === 1 ? true : undefined), 5000, 'the straggler is running');
    const startedAt = performance.now();
    await db.shutdown({ timeoutMillis: 300 });
    const tookMillis = performance.now() - startedAt;
    expect(tookMillis).toBeGreaterThanOrEqual(280);
    expect(tookMillis).toBeLessThan(300 + 3000);
    expect(await within(1000, straggler)).toMatchObject({ value: expect.any(DbError) });
    await eventually(
      async () => ((await activeWith(marker)) === 0 ? true : undefined),
      5000,
      'pg_sleep gone from pg_stat_activity',
    );
    expect(db.getStats()).toMatchObject({ poolSize: 0, activeConnections: 0 });
  });

  it('leaves no handle open: a process that used the pool exits by itself after shutdown', async () => {
    await ensureBuiltDist();
    const startedAt = performance.now();
    const { stdout } = await run(process.execPath, [join(ROOT, 'test', 'fixtures', 'exit-after-shutdown.mjs')], {
      cwd: ROOT,
      env: { ...process.env, FIXTURE_DATABASE_URL: getTestDatabaseUrl() },
      timeout: 15_000, // killed (and failed) if something keeps it alive
    });
    expect(JSON.parse(stdout)).toEqual({ answer: 42, health: 'healthy' });
    expect(performance.now() - startedAt).toBeLessThan(15_000);
  });
});
