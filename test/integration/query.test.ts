import { inspect } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DatabaseQueryError, type Database } from '../../src/index.js';
import { adminQuery, openDatabase, uniqueName } from '../support/test-database.js';

const table = uniqueName('query_items');
let db: Database;

async function backendPid(): Promise<number> {
  return (await db.executeQuery<{ pid: number }>('SELECT pg_backend_pid() AS pid'))[0]!.pid;
}

beforeAll(async () => {
  await adminQuery(`CREATE TABLE ${table} (id int PRIMARY KEY, note text NOT NULL)`);
  // One connection, so consecutive calls share a session; a short statement timeout for the 57014 case.
  db = openDatabase({ min: 1, max: 1, statementTimeoutMillis: 300 });
  await db.ready();
});
afterAll(async () => {
  await db?.shutdown();
  await adminQuery(`DROP TABLE IF EXISTS ${table}`);
});

describe('executeQuery', () => {
  it('returns the rows as plain objects keyed by column name', async () => {
    const rows = await db.executeQuery<{ n: number; word: string }>(
      "SELECT 1 AS n, 'one' AS word UNION ALL SELECT 2, 'two' ORDER BY n",
    );
    expect(rows).toEqual([
      { n: 1, word: 'one' },
      { n: 2, word: 'two' },
    ]);
    expect(Object.getPrototypeOf(rows[0])).toBe(Object.prototype);
  });

  it('binds parameters as values, never as SQL', async () => {
    const hostile = "x'); DROP TABLE pg_class; --";
    expect(await db.executeQuery('SELECT $1::text AS value, $2::int + 1 AS next', [hostile, 41])).toEqual([
      { value: hostile, next: 42 },
    ]);
  });

  it('is read-only by default: a write fails with SQLSTATE 25006 and writes nothing', async () => {
    const outcome = db.executeQuery(`INSERT INTO ${table} VALUES (1, 'x')`);
    await expect(outcome).rejects.toBeInstanceOf(DatabaseQueryError);
    await expect(outcome).rejects.toMatchObject({ sqlState: '25006', code: 'QUERY_FAILED' });
    expect(await adminQuery(`SELECT id FROM ${table}`)).toEqual([]);
  });

  it('writes with { readOnly: false }, and the next default call on the same session is read-only again', async () => {
    const pid = await backendPid();
    expect(await db.executeQuery(`INSERT INTO ${table} VALUES ($1, $2) RETURNING id`, [10, 'ten'], { readOnly: false })).toEqual([
      { id: 10 },
    ]);
    expect(await adminQuery(`SELECT id FROM ${table} WHERE id = 10`)).toEqual([{ id: 10 }]);
    await expect(db.executeQuery(`INSERT INTO ${table} VALUES (11, 'eleven')`)).rejects.toMatchObject({ sqlState: '25006' });
    expect(await backendPid()).toBe(pid);
  });

  it('cancels a statement past statementTimeoutMillis with SQLSTATE 57014 and keeps the connection usable', async () => {
    const pid = await backendPid();
    const closedBefore = db.getStats().connectionsClosed;
    const outcome = db.executeQuery('SELECT pg_sleep(5)');
    await expect(outcome).rejects.toBeInstanceOf(DatabaseQueryError);
    await expect(outcome).rejects.toMatchObject({ sqlState: '57014' });
    expect(await db.executeQuery('SELECT 2 AS two')).toEqual([{ two: 2 }]);
    expect(await backendPid()).toBe(pid);
    expect(db.getStats().connectionsClosed).toBe(closedBefore);
  });

  it('reports a constraint violation with sqlState, constraint and table, keeping bound values out of the message', async () => {
    await adminQuery(`INSERT INTO ${table} VALUES (20, 'original')`);
    const marker = 'bound-value-7f3a';
    const error = await db.executeQuery(`INSERT INTO ${table} VALUES ($1, $2)`, [20, marker], { readOnly: false }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(DatabaseQueryError);
    expect(error).toMatchObject({ code: 'QUERY_FAILED', sqlState: '23505', constraint: `${table}_pkey`, table });
    const queryError = error as DatabaseQueryError;
    expect(queryError.detail).toBe('Key (id)=(20) already exists.');
    expect(Object.keys(queryError)).not.toContain('detail');
    expect(JSON.stringify(queryError)).not.toContain('(20)');
    expect(queryError.message).not.toContain(marker);
    expect(inspect(queryError)).not.toContain(marker);
  });

  it('rejects SQL text that is not a string, and params that are not an array, with a TypeError', async () => {
    await expect(db.executeQuery('  ')).rejects.toThrow(TypeError);
    await expect(db.executeQuery('SELECT $1', 'x' as unknown as unknown[])).rejects.toThrow(TypeError);
  });
});
