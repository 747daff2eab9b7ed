import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { Pool, type Database } from '../../src/index.js';
import { getTestDatabaseUrl } from '../support/database-url.js';
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

describe('automatic prepared statements after ALTER COLUMN ... TYPE (parameter types fixed when prepared)', () => {
  it('run in executeQuery and pool.query as an unnamed statement would, and the text is prepared afresh', async () => {
    const shape = uniqueName('prepared_retyped');
    await adminQuery(`CREATE TABLE ${shape} (id int PRIMARY KEY, code int, doc int)`);
    try {
      await adminQuery(`INSERT INTO ${shape} VALUES (1, 7, 0)`);
      const db = await openOne();
      const select = `SELECT id FROM ${shape} WHERE code = $1`;
      const insert = `INSERT INTO ${shape} (id, doc) VALUES ($1, $2)`;
      for (let i = 0; i < 2; i++) {
        expect(await db.executeQuery(select, [7])).toEqual([{ id: 1 }]);
        expect((await db.pool.query(select, [7])).rows).toEqual([{ id: 1 }]);
        await db.executeQuery(insert, [10 + i, 1], { readOnly: false });
        await db.pool.query(insert, [20 + i, 1]);
      }
      await adminQuery(`ALTER TABLE ${shape} ALTER COLUMN code TYPE text, ALTER COLUMN doc TYPE jsonb USING to_jsonb(doc)`);
      await adminQuery(`ALTER TABLE ${shape} ALTER COLUMN id TYPE bigint`);
      const before = db.getStats();
      // Prepared as `code = $1::int` and `doc` from an int: no operator text = integer, no cast to jsonb.
      expect(await db.executeQuery(select, ['7'])).toEqual([{ id: '1' }]);
      expect((await db.pool.query(select, ['7'])).rows).toEqual([{ id: '1' }]);
      await db.executeQuery(insert, [3_000_000_000, '{"a":1}'], { readOnly: false });
      await db.pool.query(insert, [3_000_000_001, '{"a":2}']);
      expect(await db.executeQuery(`SELECT doc FROM ${shape} WHERE id > $1 ORDER BY id`, [2_999_999_999])).toEqual([
        { doc: { a: 1 } },
        { doc: { a: 2 } },
      ]);
      const after = db.getStats();
      expect([after.queriesExecuted - before.queriesExecuted, after.errors - before.errors]).toEqual([5, 0]);
      // Prepared afresh under new names, with the new types.
      const prepared = await preparedOn(db);
      expect(prepared.filter((row) => row.statement === select || row.statement === insert).length).toBeGreaterThanOrEqual(2);
      for (let i = 0; i < 3; i++) expect(await db.executeQuery(select, ['7'])).toEqual([{ id: '1' }]);
    } finally {
      await adminQuery(`DROP TABLE IF EXISTS ${shape}`);
    }
  });

  it("give a value the statement's type refuses the same error as unnamed, once, and keep the name", async () => {
    const db = await openOne();
    const text = `SELECT note FROM ${table} WHERE id = $1`;
    for (let i = 0; i < 2; i++) await db.executeQuery(text, [1]);
    const before = db.getStats();
    for (let i = 0; i < 2; i++) {
      await expect(db.executeQuery(text, ['not a number'])).rejects.toMatchObject({ sqlState: '22P02' });
      await expect(db.pool.query(text, ['not a number'])).rejects.toMatchObject({ code: '22P02' });
    }
    const after = db.getStats();
    expect([after.queriesExecuted - before.queriesExecuted, after.errors - before.errors]).toEqual([4, 4]);
    expect(await preparedOn(db)).toEqual([{ name: 'codecheck_s1', statement: text }]);
  });

  it('run a statement that fails in execution (division by zero) once, not again unnamed', async () => {
    const sequence = uniqueName('prepared_runs');
    await adminQuery(`CREATE SEQUENCE ${sequence}`);
    try {
      const db = await openOne();
      // nextval is not undone by the failure's rollback: it counts the executions.
      const text = `SELECT nextval('${sequence}') / $1::int AS q`;
      for (let i = 0; i < 2; i++) await db.executeQuery(text, [1], { readOnly: false });
      await expect(db.executeQuery(text, [0], { readOnly: false })).rejects.toMatchObject({ sqlState: '22012' });
      await expect(db.pool.query(text, [0])).rejects.toMatchObject({ code: '22012' });
      const rows = await db.executeQuery<{ value: string }>(`SELECT last_value::text AS value FROM ${sequence}`);
      expect(rows).toEqual([{ value: '4' }]);
    } finally {
      await adminQuery(`DROP SEQUENCE IF EXISTS ${sequence}`);
    }
  });

  it('inside withDb prepare a statement whose value its stale type refused afresh on that connection, under the same name', async () => {
    const shape = uniqueName('prepared_outgrown_tx');
    await adminQuery(`CREATE TABLE ${shape} (id int PRIMARY KEY)`);
    try {
      await adminQuery(`INSERT INTO ${shape} VALUES (1)`);
      const db = await openOne();
      const select = `SELECT id FROM ${shape} WHERE id = $1`;
      const inTransaction = (id: unknown) => db.withDb(true, async (client) => (await client.query(select, [id])).rows);
      for (let i = 0; i < 2; i++) expect(await inTransaction(1)).toEqual([{ id: 1 }]);
      await adminQuery(`ALTER TABLE ${shape} ALTER COLUMN id TYPE bigint`);
      await adminQuery(`INSERT INTO ${shape} VALUES (3000000000)`);
      // Prepared with $1 an integer: 3,000,000,000 does not fit (22003); the transaction fails once.
      await expect(inTransaction(3_000_000_000)).rejects.toMatchObject({ sqlState: '22003' });
      for (let i = 0; i < 3; i++) expect(await inTransaction(3_000_000_000)).toEqual([{ id: '3000000000' }]);
      // A value that is simply wrong: the same error each time, and the statement keeps its name.
      for (let i = 0; i < 2; i++) await expect(inTransaction('x')).rejects.toMatchObject({ sqlState: '22P02' });
      expect(await inTransaction(1)).toEqual([{ id: '1' }]);
      expect(await preparedOn(db)).toEqual([{ name: 'codecheck_s1', statement: select }]);
    } finally {
      await adminQuery(`DROP TABLE IF EXISTS ${shape}`);
    }
  });

  it('inside withDb fail the one transaction (its statement cannot be sent again), then prepare the text afresh', async () => {
    const shape = uniqueName('prepared_retyped_tx');
    await adminQuery(`CREATE TABLE ${shape} (id int PRIMARY KEY, code int)`);
    try {
      await adminQuery(`INSERT INTO ${shape} VALUES (1, 7)`);
      const db = await openOne();
      const select = `SELECT id FROM ${shape} WHERE code = $1`;
      const inTransaction = (code: unknown) => db.withDb(true, async (client) => (await client.query(select, [code])).rows);
      for (let i = 0; i < 2; i++) expect(await inTransaction(7)).toEqual([{ id: 1 }]);
      await adminQuery(`ALTER TABLE ${shape} ALTER COLUMN code TYPE text`);
      await expect(inTransaction('7')).rejects.toMatchObject({ sqlState: '42883' });
      for (let i = 0; i < 3; i++) expect(await inTransaction('7')).toEqual([{ id: 1 }]);
    } finally {
      await adminQuery(`DROP TABLE IF EXISTS ${shape}`);
    }
  });
});

describe("automatic prepared statements in the drop-in Pool's pool.query", () => {
  it('prepare a text with values on its second use, and read its rows as pg does', async () => {
    const db = await openOne();
    const text = `SELECT id, note FROM ${table} WHERE id = $1`;
    const results = [];
    for (const id of [1, 2, 1]) results.push(await db.pool.query(text, [id]));
    expect(results.map((result) => result.rows)).toEqual([
      [{ id: 1, note: 'one' }],
      [{ id: 2, note: 'two' }],
      [{ id: 1, note: 'one' }],
    ]);
    expect(results.map((result) => [result.command, result.rowCount])).toEqual([
      ['SELECT', 1],
      ['SELECT', 1],
      ['SELECT', 1],
    ]);
    expect(results[2]!.fields.map((field) => [field.name, field.dataTypeID])).toEqual([
      ['id', 23],
      ['note', 25],
    ]);
    expect(await preparedOn(db)).toEqual([{ name: 'codecheck_s1', statement: text }]);
    // The callback form takes the same path and answers once.
    const answers: unknown[] = [];
    await new Promise<void>((resolve) =>
      db.pool.query(text, [2], (error: Error | undefined, result: { rows: unknown[] }) => {
        answers.push(error ?? result.rows);
        setTimeout(resolve, 20);
      }),
    );
    expect(answers).toEqual([[{ id: 2, note: 'two' }]]);
  });

  it("prepare a config of text, values, rowMode 'array' and types (as ORMs send them), with the rows pg would give", async () => {
    const db = await openOne();
    const text = `SELECT id, note FROM ${table} WHERE id = $1`;
    const types = { getTypeParser: (oid: number) => (value: string) => `${oid}:${value}` };
    for (let i = 0; i < 3; i++) {
      expect((await db.pool.query({ text, values: [1] })).rows).toEqual([{ id: 1, note: 'one' }]);
      // Values beside a config win, as in pg.
      expect((await db.pool.query({ text, values: [1], rowMode: 'array' }, [2])).rows).toEqual([[2, 'two']]);
      expect((await db.pool.query({ text, types }, [1])).rows).toEqual([{ id: '23:1', note: '25:one' }]);
    }
    expect(await preparedOn(db)).toEqual([{ name: 'codecheck_s1', statement: text }]);
  });

  it("send a config with the caller's own name or other keys, statements without values and a Pool with its own types as pg sends them", async () => {
    const db = await openOne();
    const text = `SELECT note FROM ${table} WHERE id = $1`;
    for (let i = 0; i < 3; i++) {
      await db.pool.query({ text, values: [1], name: 'mine' });
      await db.pool.query({ text, values: [1], binary: false } as pg.QueryConfig);
      await db.pool.query(`SELECT note FROM ${table} WHERE id = 1`);
    }
    // The caller's own name was deallocated when its pool.query released the connection (docs/drop-in.md).
    expect(await preparedOn(db)).toEqual([]);
    const typed = new Pool({
      connectionString: getTestDatabaseUrl(),
      sslMode: 'disable',
      logLevel: 'silent',
      max: 1,
      types: { getTypeParser: () => (value: string) => `<${value}>` },
    });
    try {
      for (let i = 0; i < 3; i++) expect((await typed.query(text, [1])).rows).toEqual([{ note: '<one>' }]);
      expect((await typed.query('SELECT count(*)::int AS n FROM pg_prepared_statements')).rows).toEqual([{ n: '<0>' }]);
    } finally {
      await typed.end();
    }
  });

  it('prepare pool.query the same way when the Pool has acquire and release listeners (a client facade per checkout)', async () => {
    const db = await openOne();
    const events: string[] = [];
    db.pool.on('acquire', () => events.push('acquire'));
    db.pool.on('release', () => events.push('release'));
    const text = `SELECT note FROM ${table} WHERE id = $1`;
    for (let i = 0; i < 3; i++) expect((await db.pool.query(text, [2])).rows).toEqual([{ note: 'two' }]);
    expect(events).toEqual(['acquire', 'release', 'acquire', 'release', 'acquire', 'release']);
    expect(await preparedOn(db)).toEqual([{ name: 'codecheck_s1', statement: text }]);
  });

  it('prepare on a connect() client only while it is idle outside a transaction', async () => {
    const db = await openOne();
    const outside = `SELECT note FROM ${table} WHERE id = $1`;
    const inside = `SELECT note FROM ${table} WHERE id = $1 + 0`;
    const queued = `SELECT note FROM ${table} WHERE id = $1 + 1`;
    const afterDeallocate = `SELECT note FROM ${table} WHERE id = $1 + 2`;
    const client = await db.pool.connect();
    try {
      for (let i = 0; i < 3; i++) expect((await client.query(outside, [1])).rows).toEqual([{ note: 'one' }]);
      await client.query('BEGIN');
      for (let i = 0; i < 3; i++) expect((await client.query(inside, [1])).rows).toEqual([{ note: 'one' }]);
      await client.query('COMMIT');
      // BEGIN not yet answered when the statement is given to pg: it will run inside that transaction.
      for (let i = 0; i < 3; i++) {
        const begun = client.query('BEGIN');
        expect((await client.query(queued, [1])).rows).toEqual([{ note: 'two' }]);
        await begun;
        await client.query('COMMIT');
      }
      const listed = (await client.query('SELECT statement FROM pg_prepared_statements')).rows.map((row) => row.statement);
      expect(listed).toEqual([outside]);
      await client.query('DEALLOCATE ALL');
      for (let i = 0; i < 3; i++) expect((await client.query(afterDeallocate, [0])).rows).toEqual([{ note: 'two' }]);
      expect((await client.query('SELECT count(*)::int AS n FROM pg_prepared_statements')).rows).toEqual([{ n: 0 }]);
    } finally {
      client.release();
    }
  });

  it('are off with maxPreparedStatements 0', async () => {
    const db = await openOne({ maxPreparedStatements: 0 });
    for (let i = 0; i < 3; i++) await db.pool.query(`SELECT note FROM ${table} WHERE id = $1`, [1]);
    expect(await preparedOn(db)).toEqual([]);
  });

  it('re-send, unnamed and unseen by the caller, a statement whose table changed shape or whose name was deallocated', async () => {
    const shape = uniqueName('pool_shape');
    await adminQuery(`CREATE TABLE ${shape} (id int)`);
    try {
      await adminQuery(`INSERT INTO ${shape} VALUES (1)`);
      const db = await openOne();
      const text = `SELECT * FROM ${shape} WHERE id = $1`;
      for (let i = 0; i < 2; i++) expect((await db.pool.query(text, [1])).rows).toEqual([{ id: 1 }]);
      await adminQuery(`ALTER TABLE ${shape} ADD COLUMN extra text DEFAULT 'x'`);
      const before = db.getStats();
      for (let i = 0; i < 3; i++) expect((await db.pool.query(text, [1])).rows).toEqual([{ id: 1, extra: 'x' }]);
      const pid = (await db.pool.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
      await db.pool.query('DEALLOCATE ALL');
      expect((await db.pool.query(text, [1])).rows).toEqual([{ id: 1, extra: 'x' }]);
      const after = db.getStats();
      expect([after.queriesExecuted - before.queriesExecuted, after.errors - before.errors]).toEqual([6, 0]);
      // DEALLOCATE ALL is a session change the tracker cannot reset: that connection was replaced.
      expect((await db.pool.query('SELECT pg_backend_pid() AS pid')).rows[0].pid).not.toBe(pid);
    } finally {
      await adminQuery(`DROP TABLE IF EXISTS ${shape}`);
    }
  });

  it("reject with pg's own errors, and keep the connection", async () => {
    const db = await openOne();
    const shape = uniqueName('pool_unique');
    await db.pool.query(`CREATE TABLE ${shape} (id int PRIMARY KEY)`);
    try {
      const text = `INSERT INTO ${shape} VALUES ($1)`;
      await db.pool.query(text, [1]);
      const pid = (await db.pool.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
      for (let i = 0; i < 3; i++) {
        const error = await db.pool.query(text, [1]).catch((caught: unknown) => caught);
        expect(error).toBeInstanceOf(pg.DatabaseError);
        expect(error).toMatchObject({ code: '23505', constraint: `${shape}_pkey` });
      }
      const circular: Record<string, unknown> = {};
      circular.self = circular;
      for (let i = 0; i < 2; i++) await expect(db.pool.query(text, [circular])).rejects.toThrow(TypeError);
      expect((await db.pool.query('SELECT pg_backend_pid() AS pid')).rows[0].pid).toBe(pid);
      // pg closes a statement whose values it could not serialize, so the text is prepared again, once.
      for (let i = 0; i < 2; i++) await db.pool.query(text, [2 + i]);
      expect(await preparedOn(db)).toEqual([{ name: expect.stringMatching(/^codecheck_s\d+$/), statement: text }]);
    } finally {
      await db.pool.query(`DROP TABLE IF EXISTS ${shape}`);
    }
  });
});
