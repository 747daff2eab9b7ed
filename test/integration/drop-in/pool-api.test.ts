import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, Database, Pool, PoolClosedError } from '../../../src/index.js';
import pgModule from '../../../src/pg-compat/pg-module.js';
import { getTestDatabaseUrl } from '../../support/database-url.js';
import { openDatabase, uniqueName } from '../../support/test-database.js';

const opened: { end(): Promise<void> | void }[] = [];
afterEach(async () => {
  for (const pool of opened.splice(0)) await Promise.resolve(pool.end()).catch(() => undefined);
});

function openPool(config: ConstructorParameters<typeof Pool>[0] = {}): Pool {
  const pool = new Pool({ connectionString: getTestDatabaseUrl(), sslMode: 'disable', logLevel: 'silent', ...config });
  opened.push(pool);
  return pool;
}

describe('Pool is a pg.Pool', () => {
  it('is an instance of pg.Pool named Pool, and db.pool is the same view on every access', () => {
    const pool = openPool();
    expect(pool).toBeInstanceOf(pg.Pool);
    expect(pool.constructor.name).toBe('Pool');
    const db = openDatabase();
    opened.push({ end: () => db.shutdown() });
    expect(db.pool).toBeInstanceOf(pg.Pool);
    expect(db.pool).toBe(db.pool);
  });

  it('runs pool.query with promises and callbacks, read-write and autocommit', async () => {
    const pool = openPool();
    const table = uniqueName('t');
    await pool.query(`CREATE TABLE ${table} (id int)`);
    await pool.query(`INSERT INTO ${table} VALUES ($1)`, [1]);
    const rows = await new Promise<unknown[]>((resolve, reject) =>
      pool.query(`SELECT id FROM ${table}`, (error: Error | undefined, result: pg.QueryResult) =>
        error ? reject(error) : resolve(result.rows),
      ),
    );
    expect(rows).toEqual([{ id: 1 }]);
    const arrays = await pool.query({ text: `SELECT id, 'x' AS s FROM ${table}`, rowMode: 'array' });
    expect(arrays.rows).toEqual([[1, 'x']]);
    await pool.query(`DROP TABLE ${table}`);
    expect(pool.getStats().queriesExecuted).toBe(5);
  });

  it('hands out clients with connect() and connect(callback) whose release ends the checkout once', async () => {
    const pool = openPool({ max: 2 });
    const client = await pool.connect();
    expect(client).toBeInstanceOf(pg.Client);
    expect(pool.totalCount).toBe(1);
    expect(pool.idleCount).toBe(0);
    expect((await client.query('SELECT 1 AS n')).rows).toEqual([{ n: 1 }]);
    client.release();
    expect(pool.idleCount).toBe(1);
    expect(() => client.release()).toThrow('Release called on client which has already been released to the pool.');
    const again = await new Promise<pg.PoolClient>((resolve, reject) =>
      pool.connect((error, c) => (error ? reject(error) : resolve(c!))),
    );
    expect(again).toBe(client);
    again.release();
  });

  it('keeps server errors in pg shape: a pg.DatabaseError with the SQLSTATE in code', async () => {
    const pool = openPool();
    const error = await pool.query('SELECT 1/0').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(pg.DatabaseError);
    expect((error as pg.DatabaseError).code).toBe('22012');
  });

  it("takes pg's password function, called for a new connection's login", async () => {
    const url = new URL(getTestDatabaseUrl());
    const secret = decodeURIComponent(url.password);
    url.password = '';
    let calls = 0;
    const pool = openPool({
      connectionString: url.toString(),
      password: async () => {
        calls++;
        return secret;
      },
    });
    expect((await pool.query('SELECT 1 AS n')).rows).toEqual([{ n: 1 }]);
    expect(calls).toBe(1);
  });

  it('rejects unknown and refused keys by name in one ConfigError', () => {
    const attempt = () =>
      new Pool({ connectionString: getTestDatabaseUrl(), Client: class extends pg.Client {}, maxUzes: 3 } as never);
    expect(attempt).toThrow(ConfigError);
    expect(attempt).toThrow(/Client is not supported/);
    expect(attempt).toThrow(/"maxUzes" is not an option/);
  });

  it('ends gracefully; later calls reject with PoolClosedError, a second end() fails', async () => {
    const pool = openPool();
    await pool.query('SELECT 1');
    await pool.end();
    expect(pool.ending).toBe(true);
    expect(pool.ended).toBe(true);
    await expect(pool.query('SELECT 1')).rejects.toBeInstanceOf(PoolClosedError);
    await expect(pool.connect()).rejects.toBeInstanceOf(PoolClosedError);
    await expect(pool.end()).rejects.toThrow('Called end on pool more than once');
  });

  it('offers pg from @codecheck/db/pg with the library Pool in it', () => {
    expect(pgModule.Pool).toBe(Pool);
    expect(pgModule.types).toBe(pg.types);
    expect(pgModule.escapeIdentifier('a"b')).toBe('"a""b"');
    const db = new Database({ connectionString: getTestDatabaseUrl(), logLevel: 'silent' });
    opened.push({ end: () => db.shutdown() });
    expect(db.pool).toBeInstanceOf(pgModule.Pool);
  });
});
