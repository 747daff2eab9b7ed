import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DbError, type Database } from '../../src/index.js';
import { startPostgres, type PostgresServer } from '../support/postgres-server.js';
import { eventually, openDatabase, sleep } from '../support/test-database.js';

let server: PostgresServer;
let db: Database | undefined;
/** Anything that reached the process as uncaught: the library must never let that happen. */
const crashes: unknown[] = [];
const onCrash = (error: unknown) => crashes.push(error);

beforeAll(async () => {
  server = await startPostgres();
  await server.query('CREATE TABLE restart_log (id bigserial PRIMARY KEY, worker int NOT NULL)');
  process.on('uncaughtException', onCrash);
  process.on('unhandledRejection', onCrash);
});
afterAll(async () => {
  process.off('uncaughtException', onCrash);
  process.off('unhandledRejection', onCrash);
  await server?.destroy();
});
beforeEach(() => {
  crashes.length = 0;
});
afterEach(async () => {
  await db?.shutdown({ timeoutMillis: 2000 });
  db = undefined;
  expect(crashes).toEqual([]);
});

function open(): Database {
  return openDatabase({
    connectionString: server.url,
    min: 2,
    max: 4,
    connectionTimeoutMillis: 2000,
    validationIntervalMillis: 100,
    circuitBreakerResetMillis: 200,
  });
}

/** Polls until at least `min` (2) connections are open again. */
const poolBackAtMin = () => eventually(() => (db!.getStats().poolSize >= 2 ? true : undefined), 15_000, 'pool refilled to min');

describe('a server restart', () => {
  it('while the pool is idle: no crash, the pool refills to min and the next call succeeds', async () => {
    db = open();
    await db.ready();
    const [{ pid: before }] = (await db.executeQuery<{ pid: number }>('SELECT pg_backend_pid() AS pid')) as [{ pid: number }];
    await server.restart('fast');
    await poolBackAtMin();
    expect(db.getStats().poolSize).toBe(2);
    const [{ pid: after }] = (await db.executeQuery<{ pid: number }>('SELECT pg_backend_pid() AS pid')) as [{ pid: number }];
    expect(after).not.toBe(before);
    await db.withDb(false, async (client) => client.query('INSERT INTO restart_log (worker) VALUES (0)'));
    const stats = db.getStats();
    expect(stats.errors).toBe(0);
    expect(stats.connectionsClosed).toBeGreaterThanOrEqual(2);
    expect(stats.activeConnections).toBe(0);
  });

  it('under load: no crash, every failure is a DbError counted in stats, and work resumes after recovery', async () => {
    db = open();
    await db.ready();
    const database = db;
    let isRunning = true;
    let rejected = 0;
    const foreign: unknown[] = [];
    const successesAfterRestart = [0, 0, 0, 0];
    let restarted = false;
    const worker = async (id: number) => {
      while (isRunning) {
        try {
          if (id % 2 === 0) await database.executeQuery('SELECT pg_sleep(0.01)');
          else await database.withDb(false, async (client) => client.query('INSERT INTO restart_log (worker) VALUES ($1)', [id]));
          if (restarted) successesAfterRestart[id]!++;
        } catch (error) {
          rejected++;
          if (!(error instanceof DbError)) foreign.push(error);
          await sleep(20);
        }
      }
    };
    const workers = [0, 1, 2, 3].map(worker);
    await sleep(200);
    await server.restart('immediate');
    restarted = true;
    await eventually(
      () => (successesAfterRestart.every((n) => n >= 3) ? true : undefined),
      15_000,
      'every worker succeeding again',
    );
    isRunning = false;
    await Promise.all(workers);
    expect(foreign).toEqual([]);
    expect(rejected).toBeGreaterThan(0); // the outage was felt...
    const stats = db.getStats();
    expect(stats.errors).toBe(rejected); // ...and every rejected call is counted exactly once
    expect(stats.activeConnections).toBe(0);
    await poolBackAtMin();
    expect(await db.executeQuery('SELECT 1 AS one')).toEqual([{ one: 1 }]);
  });
});
