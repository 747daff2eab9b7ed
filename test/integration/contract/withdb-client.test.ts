/**
 * The withDb client under what users and ORMs send it: client-side parameter failures, callback
 * errors that look like server errors, transaction control of their own, and cursors or COPY streams
 * left open when the callback returns (issue 12, items 9, 10, 15a, 15b).
 */
import Cursor from 'pg-cursor';
import { from as copyFrom } from 'pg-copy-streams';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { DatabaseQueryError, DatabaseTransactionError, type Database } from '../../../src/index.js';
import { adminQuery, openDatabase, uniqueName, within } from '../../support/test-database.js';

const table = uniqueName('withdb_client');
let db: Database;

async function ids(): Promise<number[]> {
  return (await adminQuery<{ id: number }>(`SELECT id FROM ${table} ORDER BY id`)).map((row) => row.id);
}
async function backendPid(): Promise<number> {
  return (await db.executeQuery<{ pid: number }>('SELECT pg_backend_pid() AS pid'))[0]!.pid;
}
const insert = (id: number) => `INSERT INTO ${table} VALUES (${id})`;

beforeAll(async () => {
  await adminQuery(`CREATE TABLE ${table} (id int PRIMARY KEY)`);
});
afterAll(async () => {
  await adminQuery(`DROP TABLE IF EXISTS ${table}`);
});
// One connection: whether the next caller gets the same backend shows whether it was kept.
beforeEach(async () => {
  db = openDatabase({ min: 1, max: 1 });
  await db.ready();
  await adminQuery(`TRUNCATE ${table}`);
});
afterEach(async () => {
  await db.shutdown({ timeoutMillis: 2000 });
});

describe('client-side parameter failures (item 9)', () => {
  test('a circular object or a throwing toPostgres rejects with the original error, unsent, on a kept connection', async () => {
    const pid = await backendPid();
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    const thrown = new Error('toPostgres refused');
    const refusing = {
      toPostgres() {
        throw thrown;
      },
    };
    const before = db.getStats();
    const first = await db.executeQuery('SELECT $1::jsonb AS v', [circular]).catch((e: unknown) => e);
    expect(first).toBeInstanceOf(TypeError);
    expect((first as Error).message).toMatch(/circular/i);
    expect(await db.executeQuery('SELECT $1::text AS v', [refusing]).catch((e: unknown) => e)).toBe(thrown);
    // The same text twice more: the automatic prepared statement path (named) fails the same way.
    for (let i = 0; i < 2; i++)
      expect(await db.executeQuery('SELECT $1::text AS v', [refusing]).catch((e: unknown) => e)).toBe(thrown);
    expect(await db.executeQuery('SELECT $1::text AS v', ['fine'])).toEqual([{ v: 'fine' }]);
    expect(await backendPid()).toBe(pid);
    const after = db.getStats();
    expect([after.errors - before.errors, after.queriesExecuted - before.queriesExecuted, after.connectionsClosed]).toEqual([
      4, 2, 0,
    ]);
  });

  test('inside withDb the caller may catch it and the transaction goes on to commit', async () => {
    const thrown = new Error('toPostgres refused');
    const outcome = await db.withDb(false, async (client) => {
      const caught = await client
        .query('SELECT $1::text', [
          {
            toPostgres() {
              throw thrown;
            },
          },
        ])
        .catch((e: unknown) => e);
      await client.query(insert(2));
      return caught;
    });
    expect(outcome).toBe(thrown);
    expect(await ids()).toEqual([2]);
  });

  test('after a caught failure on a prepared statement, the call timeout still cancels the statement running at its deadline, on a kept connection', async () => {
    // pg calls back twice for a value it cannot serialize (the error, then the ReadyForQuery of its
    // Sync): counted twice, the lease thought no statement was in flight and the timeout's cancel was
    // not sent; the connection was closed a second later instead.
    const pid = await backendPid();
    const closedBefore = db.getStats().connectionsClosed;
    const refusing = {
      toPostgres() {
        throw new Error('toPostgres refused');
      },
    };
    const outcome = await db
      .withDb({ readOnly: true, timeoutMillis: 300 }, async (client) => {
        // Twice, so the text is a prepared statement on this connection; then the refused value on it.
        for (let i = 0; i < 2; i++) await client.query('SELECT $1::text AS v', ['ok']);
        await client.query('SELECT $1::text AS v', [refusing]).catch(() => undefined);
        await client.query('SELECT 1');
        await client.query('SELECT pg_sleep(5)');
        return 'finished';
      })
      .catch((error: unknown) => error);
    expect(outcome).toBeInstanceOf(DatabaseQueryError);
    expect((outcome as DatabaseQueryError).code).toBe('QUERY_CANCELLED');
    expect(db.getStats().connectionsClosed).toBe(closedBefore);
    expect(await backendPid()).toBe(pid);
  });
});

describe('serialization failures (item 10)', () => {
  test("a callback's own error carrying code 40001 is rethrown unchanged after one attempt", async () => {
    const own = Object.assign(new Error('my own conflict'), { code: '40001' });
    let calls = 0;
    const error = await db
      .withDb({ readOnly: false, retries: 3 }, async () => {
        calls++;
        throw own;
      })
      .catch((e: unknown) => e);
    expect(error).toBe(own);
    expect([calls, db.getStats().transactionRetries]).toEqual([1, 0]);
  });

  test("a server's 40001 is retried even when an ORM wraps it (found on the cause chain)", async () => {
    let calls = 0;
    const value = await db.withDb({ readOnly: false, retries: 2 }, async (client) => {
      calls++;
      if (calls === 1) {
        const failure = await client
          .query("DO $$ BEGIN RAISE EXCEPTION 'forced conflict' USING ERRCODE = '40001'; END $$")
          .catch((e: unknown) => e);
        expect(failure).toBeInstanceOf(DatabaseQueryError);
        throw new Error('the ORM failed', { cause: failure });
      }
      return 'second attempt';
    });
    expect([value, calls, db.getStats().transactionRetries]).toEqual(['second attempt', 2, 1]);
  });
});

describe("a caller's own transaction control (item 15a)", () => {
  test('BEGIN ... COMMIT on the withDb client is nested as a savepoint: a later throw still undoes its rows', async () => {
    const error = await db
      .withDb(false, async (client) => {
        await client.query('begin'); // what Kysely and Drizzle send for transaction()
        await client.query(insert(1));
        await client.query('commit');
        throw new Error('after the inner commit');
      })
      .catch((e: unknown) => e);
    expect((error as Error).message).toBe('after the inner commit');
    expect(await ids()).toEqual([]);
  });

  test('ROLLBACK of the nested transaction undoes only its rows, and recovers from a failed statement in it', async () => {
    await db.withDb(false, async (client) => {
      await client.query(insert(1));
      await client.query('BEGIN');
      await client.query(insert(2));
      await client.query('SELECT * FROM no_such_table').catch(() => undefined);
      await client.query('ROLLBACK');
      await client.query('START TRANSACTION');
      await client.query(insert(3));
      await client.query('END');
    });
    expect(await ids()).toEqual([1, 3]);
  });

  test('what cannot be nested is a TypeError, sent to nobody, and the transaction goes on', async () => {
    const refused = [
      ['COMMIT', /COMMIT on the withDb client would end withDb's transaction early/],
      ['rollback;', /ROLLBACK on the withDb client would end withDb's transaction early/],
      ['BEGIN ISOLATION LEVEL SERIALIZABLE', /cannot be nested .* pass isolationLevel and readOnly to withDb/],
      ['START TRANSACTION READ ONLY', /cannot be nested/],
      ["PREPARE TRANSACTION 'x'", /two-phase commit/],
      ['/* c */ COMMIT AND CHAIN', /AND CHAIN cannot run inside withDb/],
    ] as const;
    const queriesBefore = db.getStats().queriesExecuted;
    await db.withDb(false, async (client) => {
      for (const [text, message] of refused) {
        const error = await client.query(text).catch((e: unknown) => e);
        expect([text, error instanceof TypeError, (error as Error).message]).toEqual([
          text,
          true,
          expect.stringMatching(message),
        ]);
      }
      await client.query(insert(4));
    });
    expect(db.getStats().queriesExecuted - queriesBefore).toBe(1);
    expect(await ids()).toEqual([4]);
  });

  test('a multi-statement text that ends the transaction is reported, and nothing after it runs', async () => {
    const error = await db
      .withDb(false, async (client) => {
        await client.query(`${insert(5)}; COMMIT`);
        await client.query(insert(6));
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DatabaseTransactionError);
    expect((error as Error).message).toMatch(/ended withDb's transaction/);
    expect(await ids()).toEqual([5]);
  });
});

describe('work still running when the callback returns (item 15b)', () => {
  test('a cursor left open ends the call at once with DatabaseTransactionError, commits nothing and closes the connection', async () => {
    const pid = await backendPid();
    const outcome = db.withDb(false, async (client) => {
      await client.query(insert(7));
      const cursor = (await client.query(new Cursor('SELECT generate_series(1, 1000) AS n') as never)) as unknown as Cursor;
      await cursor.read(10);
      return 'returned with the cursor open';
    });
    const settled = await within(5000, outcome);
    expect(settled).not.toBe('pending');
    expect((settled as { error: unknown }).error).toBeInstanceOf(DatabaseTransactionError);
    expect(await ids()).toEqual([]);
    expect(await backendPid()).not.toBe(pid);
  });

  test('a COPY stream left open neither hangs the call nor crashes the process when its connection closes', async () => {
    const outcome = db.withDb(false, async (client) => {
      const stream = (await client.query(copyFrom(`COPY ${table} FROM STDIN`) as never)) as unknown as NodeJS.WritableStream;
      stream.write('8\n');
      return 'returned with COPY open';
    });
    const settled = await within(5000, outcome);
    expect(settled).not.toBe('pending');
    expect((settled as { error: unknown }).error).toBeInstanceOf(DatabaseTransactionError);
    await db.shutdown({ timeoutMillis: 500 });
    expect(await ids()).toEqual([]);
  });
});
