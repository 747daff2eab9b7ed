import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ConfigError,
  Database,
  databaseHealthCheck,
  executeQuery,
  executeTransaction,
  getConnectionPoolStats,
  getDatabase,
  PoolClosedError,
  shutdownDatabase,
  withDb,
} from '../../src/index.js';
import { getTestDatabaseUrl } from '../support/database-url.js';
import { adminQuery, uniqueName } from '../support/test-database.js';

// The default Database is per process; vitest runs each test file in its own worker, so this file owns it.
const table = uniqueName('module_items');
const ENV_KEYS = ['DATABASE_URL', 'DB_LOG_LEVEL', 'DB_POOL_MIN', 'DB_POOL_MAX', 'DB_TIMEOUT'] as const;
const saved = Object.fromEntries(ENV_KEYS.map((key) => [key, process.env[key]]));

beforeAll(async () => {
  await adminQuery(`CREATE TABLE ${table} (id int PRIMARY KEY)`);
});
afterAll(async () => {
  await shutdownDatabase();
  for (const key of ENV_KEYS) {
    if (saved[key] === undefined) delete process.env[key];
    else process.env[key] = saved[key];
  }
  await adminQuery(`DROP TABLE IF EXISTS ${table}`);
});

describe('module-level helpers', () => {
  it('reject with the ConfigError of a bad environment, without caching a broken default', async () => {
    process.env.DATABASE_URL = 'mysql://nowhere/db';
    await expect(executeQuery('SELECT 1')).rejects.toBeInstanceOf(ConfigError);
    expect(() => getDatabase()).toThrow(ConfigError);
    expect((await databaseHealthCheck()).status).toBe('unhealthy');
  });

  it('build one default Database from DATABASE_URL on first use and share it', async () => {
    const url = new URL(getTestDatabaseUrl());
    url.searchParams.set('sslmode', 'disable');
    Object.assign(process.env, {
      DATABASE_URL: url.toString(),
      DB_LOG_LEVEL: 'silent',
      DB_POOL_MIN: '1',
      DB_POOL_MAX: '3',
      DB_TIMEOUT: '2',
    });
    const db = getDatabase();
    expect(db).toBeInstanceOf(Database);
    expect(getDatabase()).toBe(db);
    expect(db.config).toMatchObject({
      host: url.hostname,
      port: Number(url.port),
      min: 1,
      max: 3,
      connectionTimeoutMillis: 2000,
    });
  });

  it('run executeQuery (read-only by default), withDb and executeTransaction on the default Database', async () => {
    expect(await executeQuery('SELECT $1::int + 1 AS n', [41])).toEqual([{ n: 42 }]);
    await expect(executeQuery(`INSERT INTO ${table} VALUES (1)`)).rejects.toMatchObject({ sqlState: '25006' });
    await withDb(false, async (client) => client.query(`INSERT INTO ${table} VALUES ($1)`, [1]));
    expect(await withDb(true, async (client) => (await client.query(`SELECT id FROM ${table}`)).rows)).toEqual([{ id: 1 }]);
    expect(
      await executeTransaction([
        { text: `INSERT INTO ${table} VALUES (2) RETURNING id` },
        { text: `SELECT count(*)::int AS n FROM ${table}` },
      ]),
    ).toEqual([[{ id: 2 }], [{ n: 2 }]]);
    expect(await executeQuery(`INSERT INTO ${table} VALUES (3) RETURNING id`, [], { readOnly: false })).toEqual([{ id: 3 }]);
  });

  it("report the default Database's stats and health", async () => {
    const stats = getConnectionPoolStats();
    expect(stats).toMatchObject({ queriesExecuted: 7, transactionsExecuted: 3, errors: 1, minConnections: 1, maxConnections: 3 });
    expect(stats).toEqual(getDatabase().getStats());
    const health = await databaseHealthCheck({ timeoutMillis: 2000 });
    expect(health).toMatchObject({ status: 'healthy', isReplica: false });
  });

  it('stay closed after shutdownDatabase: every helper rejects with PoolClosedError and health is unhealthy', async () => {
    const db = getDatabase();
    await shutdownDatabase();
    await shutdownDatabase(); // idempotent
    await expect(executeQuery('SELECT 1')).rejects.toBeInstanceOf(PoolClosedError);
    await expect(withDb(true, async () => 1)).rejects.toBeInstanceOf(PoolClosedError);
    await expect(executeTransaction([{ text: 'SELECT 1' }])).rejects.toBeInstanceOf(PoolClosedError);
    expect(() => getDatabase()).toThrow(PoolClosedError);
    expect(() => getConnectionPoolStats()).toThrow(PoolClosedError);
    expect((await databaseHealthCheck()).status).toBe('unhealthy');
    await expect(db.executeQuery('SELECT 1')).rejects.toBeInstanceOf(PoolClosedError);
  });
});
