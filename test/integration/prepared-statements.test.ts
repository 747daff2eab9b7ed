import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/index.js';
import { adminQuery, openDatabase, uniqueName } from '../support/test-database.js';

const table = uniqueName('prepared_items');
const opened: Database[] = [];

/** A one-connection Database, so consecutive calls share a session and its prepared statements. */
async function openOne(options: Parameters<typeof openDatabase>[0] = {}): Promise<Database> {
  const db = openDatabase({ min: 1, max: 1, ...options });
  opened.push(db);
  await db.ready();
  return db;
}

/** The prepared statements of the session behind a one-connection Database. */
async function preparedOn(db: Database): Promise<{ name: string; statement: string }[]> {
  return db.withDb(
    true,
    async (client) =>
      (
        await client.query<{ name: string; statement: string }>(
          'SELECT name, statement FROM pg_prepared_statements ORDER BY name',
        )
      ).rows,
  );
}

beforeAll(async () => {
  await adminQuery(`CREATE TABLE ${table} (id int PRIMARY KEY, note text NOT NULL)`);
  await adminQuery(`INSERT INTO ${table} VALUES (1, 'one'), (2, 'two')`);
});
afterEach(async () => {
  for (const db of opened.splice(0)) await db.shutdown();
});
afterAll(async () => {
  await adminQuery(`DROP TABLE IF EXISTS ${table}`);
});

describe('automatic prepared statements', () => {
  it('prepare a statement with parameters on its second use, once per connection', async () => {
    const db = await openOne();
    const text = `SELECT note FROM ${table} WHERE id = $1`;
    expect(await db.executeQuery(text, [1])).toEqual([{ note: 'one' }]);
    expect(await preparedOn(db)).toEqual([]);
    expect(await db.executeQuery(text, [2])).toEqual([{ note: 'two' }]);
    expect(await db.executeQuery(text, [1])).toEqual([{ note: 'one' }]);
    expect(await preparedOn(db)).toEqual([{ name: 'codecheck_s1', statement: text }]);
  });

  it('leave statements without parameters to the simple protocol, so several statements in one text still run', async () => {
    const db = await openOne();
    for (let i = 0; i < 3; i++) expect(await db.executeQuery('SELECT 1 AS a; SELECT 2 AS b')).toEqual([{ b: 2 }]);
    expect(await preparedOn(db)).toEqual([]);
  });

  it('prepare statements sent inside withDb too', async () => {
    const db = await openOne();
    const text = `SELECT count(*)::int AS n FROM ${table} WHERE id >= $1`;
    for (let i = 0; i < 2; i++) await db.withDb(true, async (client) => client.query(text, [1]));
    expect((await preparedOn(db)).map((row) => row.statement)).toEqual([text]);
  });

  it('are off with maxPreparedStatements 0', async () => {
    const db = await openOne({ maxPreparedStatements: 0 });
    for (let i = 0; i < 3; i++) await db.executeQuery(`SELECT note FROM ${table} WHERE id = $1`, [1]);
    expect(await preparedOn(db)).toEqual([]);
  });

  it('name at most maxPreparedStatements texts; later texts run unnamed', async () => {
    const db = await openOne({ maxPreparedStatements: 2 });
    const texts = [1, 2, 3].map((n) => `SELECT $1::int + ${n} AS v`);
    for (const text of texts) for (let i = 0; i < 2; i++) await db.executeQuery(text, [1]);
    expect((await preparedOn(db)).map((row) => row.statement)).toEqual(texts.slice(0, 2));
    expect(await db.executeQuery(texts[2]!, [1])).toEqual([{ v: 4 }]);
  });

  it('recover in executeQuery when a table changes shape under a prepared SELECT * (SQLSTATE 0A000), counting one query per call', async () => {
    const shape = uniqueName('prepared_shape');
    await adminQuery(`CREATE TABLE ${shape} (id int)`);
    try {
      await adminQuery(`INSERT INTO ${shape} VALUES (1)`);
      const db = await openOne();
      const text = `SELECT * FROM ${shape} WHERE id = $1`;
      for (let i = 0; i < 2; i++) expect(await db.executeQuery(text, [1])).toEqual([{ id: 1 }]);
      await adminQuery(`ALTER TABLE ${shape} ADD COLUMN extra text DEFAULT 'x'`);
      const before = db.getStats();
      expect(await db.executeQuery(text, [1])).toEqual([{ id: 1, extra: 'x' }]);
      expect(await db.executeQuery(text, [1])).toEqual([{ id: 1, extra: 'x' }]);
      const after = db.getStats();
      expect(after.queriesExecuted - before.queriesExecuted).toBe(2);
      expect(after.errors - before.errors).toBe(0);
    } finally {
      await adminQuery(`DROP TABLE IF EXISTS ${shape}`);
    }
  });

  it("ask the server to describe a statement's result only when its connection parses it, and parse later rows with that description", async () => {
    const shape = uniqueName('prepared_described');
    await adminQuery(`CREATE TABLE ${shape} (id int PRIMARY KEY, label text, amount numeric, at timestamptz, flags int[])`);
    try {
      await adminQuery(
        `INSERT INTO ${shape} VALUES (1, 'a', 1.50, '2026-01-02T03:04:05Z', '{1,2}'), (2, NULL, NULL, NULL, NULL)`,
      );
      const db = await openOne();
      // The Describe messages pg writes on the one connection (pg's own connection object, observed).
      const held = await db.pool.connect();
      const connection = (held as unknown as { connection: { describe(message: unknown): void } }).connection;
      const describe = connection.describe.bind(connection);
      let describes = 0;
      connection.describe = (message) => {
        describes++;
        describe(message);
      };
      held.release();
      const text = `SELECT id, label, amount, at, flags FROM ${shape} WHERE id = $1`;
      const expected = { id: 1, label: 'a', amount: '1.50', at: new Date('2026-01-02T03:04:05Z'), flags: [1, 2] };
      const seen: number[] = [];
      for (let i = 0; i < 4; i++) {
        expect(await db.executeQuery(text, [1])).toEqual([expected]);
        seen.push(describes);
      }
      // First use unnamed (described); second prepares it (Parse and Describe); later uses only bind and execute.
      expect(seen).toEqual([1, 2, 2, 2]);
      expect(await db.executeQuery(text, [2])).toEqual([{ id: 2, label: null, amount: null, at: null, flags: null }]);
      const fields = await db.withDb(true, async (client) => (await client.query(text, [1])).fields);
      expect(describes).toBe(2);
      expect(fields.map((field) => [field.name, field.dataTypeID])).toEqual([
        ['id', 23],
        ['label', 25],
        ['amount', 1700],
        ['at', 1184],
        ['flags', 1007],
      ]);
      expect(await preparedOn(db)).toEqual([{ name: 'codecheck_s1', statement: text }]);
    } finally {
      await adminQuery(`DROP TABLE IF EXISTS ${shape}`);
    }
  });

  it('fail a described statement alone on a value pg cannot serialize: the original error, nothing sent, the connection kept', async () => {
    const db = await openOne();
    const text = `SELECT note FROM ${table} WHERE id = $1`;
    for (let i = 0; i < 2; i++) await db.executeQuery(text, [1]);
    const pid = (await db.executeQuery<{ pid: number }>('SELECT pg_backend_pid() AS pid'))[0]!.pid;
    const thrown = new Error('toPostgres refused');
    const refusing = {
      toPostgres() {
        throw thrown;
      },
    };
    const before = db.getStats();
    expect(await db.executeQuery(text, [refusing]).catch((error: unknown) => error)).toBe(thrown);
    for (let i = 0; i < 3; i++) expect(await db.executeQuery(text, [2])).toEqual([{ note: 'two' }]);
    const after = db.getStats();
    expect([after.queriesExecuted - before.queriesExecuted, after.errors - before.errors, after.connectionsClosed]).toEqual([
      3, 1, 0,
    ]);
    expect((await db.executeQuery<{ pid: number }>('SELECT pg_backend_pid() AS pid'))[0]!.pid).toBe(pid);
  });

  it('re-send a statement whose name a caller deallocated, and replace that connection', async () => {
    const db = await openOne();
    const text = `SELECT note FROM ${table} WHERE id = $1`;
    for (let i = 0; i < 2; i++) await db.executeQuery(text, [1]);
    const pid = (await db.executeQuery<{ pid: number }>('SELECT pg_backend_pid() AS pid'))[0]!.pid;
    await db.withDb(false, async (client) => client.query('DEALLOCATE ALL'));
    expect(await db.executeQuery(text, [2])).toEqual([{ note: 'two' }]);
    const next = (await db.executeQuery<{ pid: number }>('SELECT pg_backend_pid() AS pid'))[0]!.pid;
    expect(next).not.toBe(pid);
  });
});
