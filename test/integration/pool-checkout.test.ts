import { afterEach, describe, expect, it } from 'vitest';
import { PoolTimeoutError, type Database } from '../../src/index.js';
import { getTestDatabaseUrl } from '../support/database-url.js';
import { adminQuery, eventually, holdConnection, openDatabase, sleep, uniqueName, within } from '../support/test-database.js';

let db: Database | undefined;
afterEach(async () => {
  await db?.shutdown({ timeoutMillis: 2000 });
  db = undefined;
});

async function backendPids(app: string): Promise<number[]> {
  const rows = await adminQuery<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE application_name = $1 ORDER BY pid', [
    app,
  ]);
  return rows.map((row) => row.pid);
}

describe('acquire deadline', () => {
  it('rejects with PoolTimeoutError at the acquire deadline, carrying a pool snapshot, when every connection is busy', async () => {
    db = openDatabase({ min: 1, max: 1, connectionTimeoutMillis: 400 });
    await db.ready();
    const holder = holdConnection(db);
    await holder.held;
    const startedAt = performance.now();
    const error = await db.executeQuery('SELECT 1').then(
      () => undefined,
      (e: unknown) => e,
    );
    const waitedMillis = performance.now() - startedAt;
    holder.release();
    await holder.done;
    expect(error).toBeInstanceOf(PoolTimeoutError);
    const timeout = error as PoolTimeoutError;
    expect(timeout.code).toBe('POOL_TIMEOUT');
    // The snapshot is taken at the deadline, while the timed-out caller itself still waits.
    expect(timeout.stats).toEqual({ total: 1, active: 1, idle: 0, waiting: 1, max: 1 });
    expect(Object.isFrozen(timeout.stats)).toBe(true);
    expect(timeout.message).toContain('pool: total=1, active=1, idle=0, waiting=1, max=1');
    expect(waitedMillis).toBeGreaterThanOrEqual(380);
    expect(waitedMillis).toBeLessThan(400 + 1500);
    expect(db.getStats()).toMatchObject({ acquireTimeouts: 1, poolExhaustedCount: 1, waitingRequests: 0 });
  });

  it('rejects at once with POOL_QUEUE_FULL when maxWaiting callers already wait, and serves the queued caller later', async () => {
    db = openDatabase({ min: 1, max: 1, maxWaiting: 1, connectionTimeoutMillis: 5000 });
    await db.ready();
    const holder = holdConnection(db);
    await holder.held;
    const queued = db.executeQuery<{ n: number }>('SELECT 1 AS n');
    expect(await within(50, queued)).toBe('pending');
    expect(db.getStats().waitingRequests).toBe(1);
    const refused = await within(1000, db.executeQuery('SELECT 2'));
    // Refused while the holder still holds and the queued caller still waits: no waiting involved.
    expect(refused).toMatchObject({ error: expect.any(PoolTimeoutError) });
    const error = (refused as { error: PoolTimeoutError }).error;
    expect(error.code).toBe('POOL_QUEUE_FULL');
    expect(error.stats).toEqual({ total: 1, active: 1, idle: 0, waiting: 1, max: 1 });
    expect(await within(0, queued)).toBe('pending');
    holder.release();
    await holder.done;
    expect(await queued).toEqual([{ n: 1 }]);
    expect(db.getStats()).toMatchObject({ acquireTimeouts: 0, poolExhaustedCount: 1, errors: 1 });
  });

  it('hands a released connection to the callers in the order they started waiting', async () => {
    db = openDatabase({ min: 1, max: 1 });
    await db.ready();
    const holder = holdConnection(db);
    await holder.held;
    const order: number[] = [];
    const waiters = [1, 2, 3].map((n) => db!.executeQuery('SELECT $1::int AS n', [n]).then(() => order.push(n)));
    await eventually(() => (db!.getStats().waitingRequests === 3 ? true : undefined), 2000, 'three waiters');
    holder.release();
    await Promise.all([holder.done, ...waiters]);
    expect(order).toEqual([1, 2, 3]);
  });
});

describe('hand-over to a waiting caller', () => {
  it('gives a released connection to the waiting caller as it is, and resets a session the holder changed before handing it on', async () => {
    db = openDatabase({ min: 1, max: 1 });
    await db.ready();
    const pid = (await db.executeQuery<{ pid: number }>('SELECT pg_backend_pid() AS pid'))[0]!.pid;
    let holdGate!: () => void;
    const gate = new Promise<void>((resolve) => (holdGate = resolve));
    let markHeld!: () => void;
    const held = new Promise<void>((resolve) => (markHeld = resolve));
    const holder = db.executeQuery("SELECT set_config('application_name', 'changed_by_holder', false)").then(async () => {
      markHeld();
      await gate;
    });
    await held;
    // The holder's statement changed the session; the next caller waits for the one connection.
    const clean = db.withDb(true, async () => undefined);
    const waiters = [1, 2].map(() =>
      db!.executeQuery<{ pid: number; app: string }>(
        "SELECT pg_backend_pid() AS pid, current_setting('application_name') AS app",
      ),
    );
    holdGate();
    await Promise.all([holder, clean]);
    const rows = (await Promise.all(waiters)).map((r) => r[0]!);
    expect(rows.map((row) => row.pid)).toEqual([pid, pid]);
    expect(rows.map((row) => row.app)).not.toContain('changed_by_holder');
    expect(db.getStats()).toMatchObject({ sessionResets: 1, totalConnections: 1, errors: 0 });
  });
});

describe('validation on checkout', () => {
  it('never hands out idle connections killed with pg_terminate_backend, and refills to min', async () => {
    const app = uniqueName('validate_kill');
    db = openDatabase({ min: 2, max: 2, applicationName: app, validationIntervalMillis: 50 });
    await db.ready();
    const killed = await backendPids(app);
    expect(killed).toHaveLength(2);
    await adminQuery('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid', [killed]);
    await sleep(200); // past the validation interval
    const rows = await Promise.all(
      [1, 2, 3, 4].map((n) => db!.executeQuery<{ pid: number }>('SELECT pg_backend_pid() AS pid, $1::int AS n', [n])),
    );
    for (const [row] of rows) expect(killed).not.toContain(row!.pid);
    const stats = db.getStats();
    expect(stats.errors).toBe(0);
    // Each killed connection is closed exactly once, whether pg-pool saw its error event first or validation did.
    expect(stats.connectionsClosed).toBe(2);
    expect(stats.validationFailures).toBeLessThanOrEqual(2);
    await eventually(() => (db!.getStats().poolSize === 2 ? true : undefined), 5000, 'pool back to min');
    expect((await backendPids(app)).filter((pid) => killed.includes(pid))).toEqual([]);
  });

  it('evicts an idle connection whose backend hangs, within validationTimeoutMillis, and serves the caller on a new one', async (context) => {
    const { hostname } = new URL(getTestDatabaseUrl());
    if (!['127.0.0.1', 'localhost', '::1', '[::1]'].includes(hostname)) {
      console.warn(
        `skipped: SIGSTOP needs the test server's backends on this machine, but TEST_DATABASE_URL points at ${hostname}`,
      );
      context.skip();
    }
    const app = uniqueName('validate_hang');
    db = openDatabase({
      min: 1,
      max: 1,
      applicationName: app,
      validationIntervalMillis: 50,
      validationTimeoutMillis: 200,
      connectionTimeoutMillis: 3000,
    });
    await db.ready();
    const [hung] = await backendPids(app);
    process.kill(hung!, 'SIGSTOP'); // the backend stops answering; its socket stays open
    try {
      await sleep(100);
      const startedAt = performance.now();
      const [row] = await db.executeQuery<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      expect(performance.now() - startedAt).toBeLessThan(3000);
      expect(row!.pid).not.toBe(hung);
      expect(db.getStats()).toMatchObject({ validationFailures: 1, connectionsClosed: 1, errors: 0 });
    } finally {
      process.kill(hung!, 'SIGCONT');
    }
  });
});
