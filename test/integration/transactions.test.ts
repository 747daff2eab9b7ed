import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  DatabaseConnectionError,
  DatabaseQueryError,
  DatabaseTransactionError,
  DbError,
  type Database,
} from '../../src/index.js';
import { adminQuery, eventually, openDatabase, sleep, uniqueName } from '../support/test-database.js';

const table = uniqueName('tx_items');
const app = uniqueName('tx_app');
let db: Database;

interface Session {
  pid: number;
  isOutsideTransaction: boolean;
  hasNoTransactionId: boolean;
}

/** One statement on the pool's single connection: which backend, and whether a transaction was left open. */
async function session(): Promise<Session> {
  const rows = await db.executeQuery<Session>(
    `SELECT pg_backend_pid() AS pid, now() = statement_timestamp() AS "isOutsideTransaction",
       pg_current_xact_id_if_assigned() IS NULL AS "hasNoTransactionId"`,
  );
  return rows[0]!;
}

async function idleInTransactionCount(): Promise<number> {
  const rows = await adminQuery<{ n: number }>(
    "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND state LIKE 'idle in transaction%'",
    [app],
  );
  return rows[0]!.n;
}

async function ids(): Promise<number[]> {
  return (await adminQuery<{ id: number }>(`SELECT id FROM ${table} ORDER BY id`)).map((row) => row.id);
}

beforeAll(async () => {
  await adminQuery(`CREATE TABLE ${table} (id int PRIMARY KEY, note text)`);
});
afterAll(async () => {
  await adminQuery(`DROP TABLE IF EXISTS ${table}`);
});
// One connection: the next caller gets exactly the connection the previous caller released.
beforeEach(async () => {
  db = openDatabase({ min: 1, max: 1, applicationName: app });
  await db.ready();
  await adminQuery(`TRUNCATE ${table}`);
});
afterEach(async () => {
  await db.shutdown({ timeoutMillis: 2000 });
});

describe('withDb', () => {
  it('commits the writes of a callback that resolves, and resolves with its value', async () => {
    const value = await db.withDb(false, async (client) => {
      await client.query(`INSERT INTO ${table} VALUES ($1, $2)`, [1, 'one']);
      await client.query(`INSERT INTO ${table} VALUES ($1, $2)`, [2, 'two']);
      return 'done';
    });
    expect(value).toBe('done');
    expect(await ids()).toEqual([1, 2]);
    expect(db.getStats().transactionsExecuted).toBe(1);
  });

  it("rolls back when the callback throws and rejects with the callback's own error", async () => {
    const thrown = new Error('business rule failed');
    const outcome = db.withDb(false, async (client) => {
      await client.query(`INSERT INTO ${table} VALUES ($1, $2)`, [1, 'one']);
      throw thrown;
    });
    await expect(outcome).rejects.toBe(thrown);
    expect(await ids()).toEqual([]);
    expect(db.getStats().transactionsExecuted).toBe(0);
  });

  it('leaves no open transaction on the released connection after the callback throws', async () => {
    const before = await session();
    await expect(
      db.withDb(false, async (client) => {
        await client.query(`INSERT INTO ${table} VALUES (1, 'x')`);
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    const after = await session();
    expect(after).toEqual({ pid: before.pid, isOutsideTransaction: true, hasNoTransactionId: true });
    expect(await idleInTransactionCount()).toBe(0);
  });

  it('leaves no aborted transaction behind after a statement failed and the callback threw', async () => {
    const before = await session();
    const outcome = db.withDb(false, async (client) => {
      await client.query(`INSERT INTO ${table} VALUES (1, 'x')`);
      await client.query('SELECT * FROM no_such_table_anywhere');
    });
    await expect(outcome).rejects.toMatchObject({ name: 'DatabaseQueryError', sqlState: '42P01' });
    expect(await session()).toEqual({ pid: before.pid, isOutsideTransaction: true, hasNoTransactionId: true });
    expect(await idleInTransactionCount()).toBe(0);
    expect(await ids()).toEqual([]);
  });

  it('destroys the connection when the callback returns while a statement is still running, and commits nothing', async () => {
    const before = await session();
    const closedBefore = db.getStats().connectionsClosed;
    let forgotten: Promise<unknown> | undefined;
    const outcome = db.withDb(false, async (client) => {
      await client.query(`INSERT INTO ${table} VALUES (1, 'x')`);
      forgotten = client.query(`SELECT pg_sleep(5), '${app}-forgotten' AS marker`); // no await: the bug under test
      return 'returned early';
    });
    await expect(outcome).rejects.toBeInstanceOf(DatabaseTransactionError);
    await expect(outcome).rejects.toThrow(/returned while 1 statement\(s\)/);
    await expect(forgotten).rejects.toBeInstanceOf(DbError);
    const after = await session();
    expect(after.pid).not.toBe(before.pid);
    expect(after.isOutsideTransaction).toBe(true);
    expect(db.getStats().connectionsClosed).toBe(closedBefore + 1);
    expect(await ids()).toEqual([]);
    await eventually(
      async () => {
        const rows = await adminQuery(
          "SELECT pid FROM pg_stat_activity WHERE query LIKE '%' || $1 || '-forgotten%' AND pid <> pg_backend_pid()",
          [app],
        );
        return rows.length === 0 ? true : undefined;
      },
      5000,
      'the forgotten statement ended',
    );
  });

  it("cancels and closes the connection of a statement pg's query_timeout gave up on, commits nothing, and serves the next call at once", async () => {
    const before = await session();
    const queriesBefore = db.getStats().queriesExecuted;
    const outcome = db.withDb(false, async (client) => {
      await client.query(`INSERT INTO ${table} VALUES (1, 'x')`);
      await client.query({ text: `SELECT pg_sleep(30), '${app}-read-timeout' AS marker`, query_timeout: 300 } as never);
    });
    await expect(outcome).rejects.toThrow('Query read timeout');
    // pg stopped waiting; the server had not: the next caller must not queue behind the sleep.
    const next = await Promise.race([session(), sleep(5000).then(() => 'still waiting' as const)]);
    expect(next).not.toBe('still waiting');
    expect((next as Session).pid).not.toBe(before.pid);
    expect(await ids()).toEqual([]);
    // Both statements were sent (and the session query): counted, none refused before sending.
    expect(db.getStats().queriesExecuted).toBe(queriesBefore + 3);
    await eventually(
      async () => {
        const rows = await adminQuery(
          "SELECT pid FROM pg_stat_activity WHERE query LIKE '%' || $1 || '-read-timeout%' AND state = 'active' AND pid <> pg_backend_pid()",
          [app],
        );
        return rows.length === 0 ? true : undefined;
      },
      5000,
      'the timed-out statement cancelled',
    );
  });

  it('rejects with TRANSACTION_ROLLED_BACK when the callback swallowed a failed statement, committing nothing', async () => {
    const outcome = db.withDb(false, async (client) => {
      await client.query(`INSERT INTO ${table} VALUES (1, 'kept?')`);
      await client.query(`INSERT INTO ${table} VALUES (1, 'duplicate')`).catch(() => undefined);
      return 'swallowed';
    });
    const error = await outcome.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(DatabaseTransactionError);
    expect(error).toMatchObject({ code: 'TRANSACTION_ROLLED_BACK' });
    expect(await ids()).toEqual([]);
    expect(await session()).toMatchObject({ isOutsideTransaction: true, hasNoTransactionId: true });
  });

  it('runs withDb(true) READ ONLY: a write fails with SQLSTATE 25006', async () => {
    const outcome = db.withDb(true, async (client) => {
      await client.query(`INSERT INTO ${table} VALUES (1, 'x')`);
    });
    await expect(outcome).rejects.toBeInstanceOf(DatabaseQueryError);
    await expect(outcome).rejects.toMatchObject({ sqlState: '25006', code: 'QUERY_FAILED' });
    expect(await ids()).toEqual([]);
  });

  it('lets withDb(true) read and returns what the callback returns', async () => {
    await adminQuery(`INSERT INTO ${table} VALUES (7, 'seven')`);
    const rows = await db.withDb(
      true,
      async (client) => (await client.query<{ note: string }>(`SELECT note FROM ${table} WHERE id = $1`, [7])).rows,
    );
    expect(rows).toEqual([{ note: 'seven' }]);
  });

  it('runs withDb({ readOnly: false }) READ WRITE even on a session whose default is read-only', async () => {
    const rows = await db.withDb(
      { readOnly: false },
      async (client) => (await client.query("SELECT current_setting('transaction_read_only') AS ro")).rows,
    );
    expect(rows).toEqual([{ ro: 'off' }]);
  });

  it('begins the transaction at the isolation level asked for', async () => {
    for (const [given, shown] of [
      ['serializable', 'serializable'],
      ['REPEATABLE READ', 'repeatable read'],
      ['read committed', 'read committed'],
    ] as const) {
      const rows = await db.withDb(
        { isolationLevel: given },
        async (client) => (await client.query('SHOW transaction_isolation')).rows,
      );
      expect(rows).toEqual([{ transaction_isolation: shown }]);
    }
  });

  it('rejects an unknown isolation level with a TypeError before taking a connection', async () => {
    await expect(db.withDb({ isolationLevel: 'chaos' as 'serializable' }, async () => 1)).rejects.toThrow(TypeError);
    expect(db.getStats().acquireTime.count).toBe(1); // only ready()'s probe
  });

  it('rejects a client used after its callback returned', async () => {
    let leaked: { query(text: string): Promise<unknown> } | undefined;
    await db.withDb(true, async (client) => {
      leaked = client;
    });
    await expect(leaked!.query('SELECT 1')).rejects.toBeInstanceOf(DatabaseQueryError);
  });
});

describe('idle in transaction timeout', () => {
  it('fails the call with a clear error naming the timeout when the callback idles past it, and leaks no connection', async () => {
    await db.shutdown();
    db = openDatabase({ min: 1, max: 1, applicationName: app, idleInTransactionTimeoutMillis: 150 });
    await db.ready();
    const outcome = db.withDb(false, async (client) => {
      await client.query(`INSERT INTO ${table} VALUES (1, 'x')`);
      await sleep(600);
      await client.query(`INSERT INTO ${table} VALUES (2, 'y')`);
    });
    const error = await outcome.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(DatabaseConnectionError);
    expect((error as Error).message).toMatch(/idle-in-transaction timeout/);
    expect(await ids()).toEqual([]);
    const stats = db.getStats();
    expect(stats.activeConnections).toBe(0);
    expect(stats.connectionsClosed).toBe(1);
    expect(await db.executeQuery('SELECT 1 AS one')).toEqual([{ one: 1 }]);
    expect(await idleInTransactionCount()).toBe(0);
  });

  it('fails the COMMIT with DatabaseTransactionError when the callback idles past the timeout and returns', async () => {
    await db.shutdown();
    db = openDatabase({ min: 1, max: 1, applicationName: app, idleInTransactionTimeoutMillis: 150 });
    await db.ready();
    const outcome = db.withDb(false, async (client) => {
      await client.query(`INSERT INTO ${table} VALUES (1, 'x')`);
      await sleep(600);
    });
    const error = await outcome.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(DatabaseTransactionError);
    expect((error as Error).message).toMatch(/idle-in-transaction timeout/);
    expect(await ids()).toEqual([]);
    expect(db.getStats()).toMatchObject({ activeConnections: 0, connectionsClosed: 1, transactionsExecuted: 0 });
    expect(await db.executeQuery('SELECT 1 AS one')).toEqual([{ one: 1 }]);
  });
});

describe('executeTransaction', () => {
  it("runs every operation in one transaction and returns each operation's rows", async () => {
    const results = await db.executeTransaction([
      { text: `INSERT INTO ${table} VALUES ($1, $2) RETURNING id`, params: [1, 'a'] },
      { text: `INSERT INTO ${table} VALUES ($1, $2) RETURNING id`, params: [2, 'b'] },
      { text: `SELECT count(*)::int AS n FROM ${table}` },
      { text: 'SELECT txid_current() = txid_current() AS same' },
    ]);
    expect(results).toEqual([[{ id: 1 }], [{ id: 2 }], [{ n: 2 }], [{ same: true }]]);
    expect(await ids()).toEqual([1, 2]);
  });

  it("commits nothing when one operation fails, and rejects with that operation's error", async () => {
    const outcome = db.executeTransaction([
      { text: `INSERT INTO ${table} VALUES (1, 'a')` },
      { text: `INSERT INTO ${table} VALUES (1, 'again')` },
      { text: `INSERT INTO ${table} VALUES (3, 'c')` },
    ]);
    await expect(outcome).rejects.toMatchObject({ name: 'DatabaseQueryError', sqlState: '23505' });
    expect(await ids()).toEqual([]);
    expect(await session()).toMatchObject({ isOutsideTransaction: true, hasNoTransactionId: true });
  });

  it('runs read-only when asked: a write fails with SQLSTATE 25006', async () => {
    await expect(
      db.executeTransaction([{ text: `INSERT INTO ${table} VALUES (1, 'a')` }], { readOnly: true }),
    ).rejects.toMatchObject({ sqlState: '25006' });
  });
});
