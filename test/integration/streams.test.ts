import { createReadStream, createWriteStream, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import Cursor from 'pg-cursor';
import QueryStream from 'pg-query-stream';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DatabaseQueryError, DatabaseTransactionError, type Database } from '../../src/index.js';
import { adminQuery, eventually, openDatabase, uniqueName } from '../support/test-database.js';
import { failOnCrashes } from '../support/crash-watch.js';

failOnCrashes();

let db: Database | undefined;
const table = uniqueName('copy_items');
const dir = mkdtempSync(join(tmpdir(), 'streams-'));

beforeAll(async () => {
  await adminQuery(`CREATE TABLE ${table} (id int PRIMARY KEY, name text NOT NULL)`);
});
afterAll(async () => {
  await adminQuery(`DROP TABLE IF EXISTS ${table}`);
  rmSync(dir, { recursive: true, force: true });
});
beforeEach(async () => {
  await adminQuery(`TRUNCATE ${table}`);
});
afterEach(async () => {
  await db?.shutdown({ timeoutMillis: 2000 });
  db = undefined;
});

/** One connection, so the next call sees the session the stream used. */
function openSingle(options: Parameters<typeof openDatabase>[0] = {}): Database {
  return openDatabase({ min: 0, max: 1, applicationName: uniqueName('streams'), ...options });
}

async function openCursors(database: Database): Promise<number> {
  const rows = await database.executeQuery<{ n: number }>('SELECT count(*)::int AS n FROM pg_cursors');
  return rows[0]!.n;
}

/** `count` lines of COPY text: `id<TAB>name`. */
function* copyLines(count: number, failAt = Infinity): Generator<string> {
  for (let id = 1; id <= count; id++) {
    if (id === failAt) throw new Error('the source failed halfway');
    yield `${id}\titem ${id}\n`;
  }
}

describe('db.stream', () => {
  it('streams 1,000,000 generated rows with flat memory (peak heap growth printed)', async () => {
    db = openSingle();
    const baseline = process.memoryUsage().heapUsed;
    let peak = 0;
    let count = 0;
    let sum = 0;
    for await (const row of db.stream<{ id: number; label: string }>(
      "SELECT g AS id, 'row number ' || g AS label FROM generate_series(1, 1000000) AS g",
      [],
      { batchSize: 1000 },
    )) {
      count++;
      sum += row.id;
      if (count % 10_000 === 0) peak = Math.max(peak, process.memoryUsage().heapUsed - baseline);
    }
    console.log(`[streams] 1M rows: peak heap growth ${(peak / 1048576).toFixed(1)} MiB`);
    expect(count).toBe(1_000_000);
    expect(sum).toBe(500_000_500_000);
    // Buffered, 1M such rows take well over 150 MiB of heap; a cursor holds two batches.
    expect(peak).toBeLessThan(64 * 1048576);
    expect(db.getStats()).toMatchObject({ activeConnections: 0, queriesExecuted: 1, transactionsExecuted: 1, errors: 0 });
  });

  it('releases the connection when the loop breaks after 10 rows, and the server has no open cursor', async () => {
    db = openSingle();
    const seen: number[] = [];
    for await (const row of db.stream<{ g: number }>('SELECT g FROM generate_series(1, 100000) AS g')) {
      seen.push(row.g);
      if (seen.length === 10) break;
    }
    expect(seen).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(db.getStats()).toMatchObject({ activeConnections: 0, connectionsClosed: 0 });
    expect(await openCursors(db)).toBe(0);
    expect(db.getStats().totalConnections).toBe(1);
  });

  it('rethrows an error thrown in the loop body, after releasing the connection', async () => {
    db = openSingle();
    const failure = new Error('consumer failed');
    const error = await (async () => {
      for await (const row of db!.stream<{ g: number }>('SELECT g FROM generate_series(1, 1000) AS g'))
        if (row.g === 150) throw failure;
    })().catch((e: unknown) => e);
    expect(error).toBe(failure);
    expect(db.getStats().activeConnections).toBe(0);
    expect(await openCursors(db)).toBe(0);
  });

  it('cancels a batch in flight on the server when its AbortSignal fires', async () => {
    db = openSingle();
    const controller = new AbortController();
    // The second batch (rows 101-200) sleeps on row 150: it is in flight when the consumer aborts.
    const rows = db.stream<{ g: number }>(
      'SELECT g, pg_sleep(CASE WHEN g = 150 THEN 30 ELSE 0 END) FROM generate_series(1, 1000) AS g',
      [],
      { signal: controller.signal },
    );
    const error = await (async () => {
      for await (const row of rows) if (row.g === 1) controller.abort();
    })().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DatabaseQueryError);
    expect((error as DatabaseQueryError).code).toBe('QUERY_CANCELLED');
    expect(db.getStats()).toMatchObject({ activeConnections: 0, queriesCancelled: 1, errors: 1 });
    const running = await adminQuery(
      "SELECT 1 FROM pg_stat_activity WHERE query LIKE '%pg_sleep(CASE WHEN g = 150%' AND state = 'active' AND pid <> pg_backend_pid()",
    );
    expect(running).toEqual([]);
  });

  it('releases the connection when timeoutMillis passes while the consumer is slow, then rejects the next step', async () => {
    db = openSingle();
    const iterator = db
      .stream<{ g: number }>('SELECT g FROM generate_series(1, 100000) AS g', [], { timeoutMillis: 2000 })
      [Symbol.asyncIterator]();
    expect((await iterator.next()).value).toEqual({ g: 1 });
    // The consumer does nothing; the timeout alone ends the transaction and frees the connection.
    await eventually(() => (db!.getStats().activeConnections === 0 ? true : undefined), 5000, 'connection released');
    const error = await (async () => {
      for (;;) if ((await iterator.next()).done) return undefined;
    })().catch((e: unknown) => e);
    expect((error as DatabaseQueryError).code).toBe('QUERY_CANCELLED');
    expect(await openCursors(db)).toBe(0);
  });

  it('rejects the waiting step with QUERY_CANCELLED when timeoutMillis passes while the first batch is in flight', async () => {
    db = openSingle();
    const error = await (async () => {
      for await (const _row of db!.stream(
        'SELECT g, pg_sleep(CASE WHEN g = 1 THEN 30 ELSE 0 END) FROM generate_series(1, 10) AS g',
        [],
        {
          timeoutMillis: 300,
        },
      ))
        void _row;
    })().catch((e: unknown) => e);
    expect((error as DatabaseQueryError).code).toBe('QUERY_CANCELLED');
    expect(db.getStats()).toMatchObject({ activeConnections: 0, errors: 1 });
  });

  it('applies statement_timeout to each batch, not to the whole stream', async () => {
    db = openSingle({ statementTimeoutMillis: 1000 });
    let count = 0;
    // Each batch of 20 rows takes ~100 ms on the server (5 ms per row): the whole stream takes longer than 1 s.
    for await (const _row of db.stream('SELECT g, pg_sleep(0.005) FROM generate_series(1, 300) AS g', [], { batchSize: 20 }))
      count++;
    expect(count).toBe(300);
    // The session's statement_timeout is back for the next caller on the same connection.
    expect(await db.executeQuery("SELECT current_setting('statement_timeout') AS t")).toEqual([{ t: '1s' }]);
  });

  it('cancels a batch that takes longer than statement_timeout, with a message that says so', async () => {
    db = openSingle({ statementTimeoutMillis: 300 });
    const error = await (async () => {
      for await (const _row of db!.stream(
        'SELECT g, pg_sleep(CASE WHEN g = 150 THEN 30 ELSE 0 END) FROM generate_series(1, 300) AS g',
      ))
        void _row;
    })().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DatabaseQueryError);
    expect((error as DatabaseQueryError).message).toMatch(/did not arrive within statement_timeout \(300 ms\)/);
    expect((error as DatabaseQueryError).sqlState).toBe('57014');
    expect(db.getStats().activeConnections).toBe(0);
  });

  it('closes a stream the consumer leaves unread past idle_in_transaction_session_timeout, with STREAM_IDLE_TIMEOUT', async () => {
    db = openSingle({ idleInTransactionTimeoutMillis: 200 });
    const iterator = db.stream('SELECT g FROM generate_series(1, 1000) AS g')[Symbol.asyncIterator]();
    await iterator.next();
    await eventually(() => (db!.getStats().activeConnections === 0 ? true : undefined), 5000, 'connection released');
    const error = await (async () => {
      for (;;) if ((await iterator.next()).done) return undefined;
    })().catch((e: unknown) => e);
    expect((error as DatabaseQueryError).code).toBe('STREAM_IDLE_TIMEOUT');
    expect((error as DatabaseQueryError).message).toMatch(/idleInTransactionTimeoutMillis \(DB_IDLE_TIMEOUT\)/);
    expect(db.getStats()).toMatchObject({ errors: 1, connectionsClosed: 0 });
  });

  it('pipes through toReadable() into a Writable', async () => {
    db = openSingle();
    const got: number[] = [];
    await pipeline(
      db.stream<{ g: number }>('SELECT g FROM generate_series(1, 250) AS g', [], { batchSize: 7 }).toReadable(),
      new Writable({
        objectMode: true,
        write(row: { g: number }, _encoding, done) {
          got.push(row.g);
          done();
        },
      }),
    );
    expect(got).toEqual(Array.from({ length: 250 }, (_, i) => i + 1));
    expect(db.getStats().activeConnections).toBe(0);
  });

  it('rejects the first step with the server error for a bad statement, counted once as an error', async () => {
    db = openSingle();
    const error = await (async () => {
      for await (const _row of db!.stream('SELECT * FROM no_such_table_for_streams')) void _row;
    })().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DatabaseQueryError);
    expect((error as DatabaseQueryError).sqlState).toBe('42P01');
    expect(db.getStats()).toMatchObject({ errors: 1, activeConnections: 0, connectionsClosed: 0 });
  });

  it('refuses a malformed batchSize and a second iteration with TypeError', async () => {
    db = openSingle();
    const bad = db.stream('SELECT 1', [], { batchSize: 0 });
    await expect(bad[Symbol.asyncIterator]().next()).rejects.toThrow(/batchSize/);
    const once = db.stream('SELECT 1');
    for await (const _row of once) void _row;
    expect(() => once[Symbol.asyncIterator]()).toThrow(TypeError);
  });
});

describe('streams inside withDb', () => {
  it('client.stream reads rows on the transaction connection, beside other statements', async () => {
    db = openSingle();
    const result = await db.withDb(false, async (client) => {
      await client.query(`INSERT INTO ${table} (id, name) VALUES (1, 'a'), (2, 'b')`);
      const names: string[] = [];
      for await (const row of client.stream<{ name: string }>(`SELECT name FROM ${table} ORDER BY id`, [], { batchSize: 1 }))
        names.push(row.name);
      return names;
    });
    expect(result).toEqual(['a', 'b']);
    expect((await db.executeQuery(`SELECT count(*)::int AS n FROM ${table}`))[0]).toEqual({ n: 2 });
  });

  it('rolls back with STREAM_LEFT_OPEN when the callback returns with a stream unfinished, and keeps the connection', async () => {
    db = openSingle();
    const error = await db
      .withDb(false, async (client) => {
        await client.query(`INSERT INTO ${table} (id, name) VALUES (1, 'a')`);
        const iterator = client.stream('SELECT g FROM generate_series(1, 1000) AS g')[Symbol.asyncIterator]();
        await iterator.next();
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DatabaseTransactionError);
    expect((error as DatabaseTransactionError).code).toBe('STREAM_LEFT_OPEN');
    expect((await db.executeQuery(`SELECT count(*)::int AS n FROM ${table}`))[0]).toEqual({ n: 0 });
    expect(db.getStats()).toMatchObject({ totalConnections: 1, connectionsClosed: 0 });
  });

  it('runs a pg-cursor given to client.query as pg does, and commits after it is closed', async () => {
    db = openSingle();
    const rows = await db.withDb(false, async (client) => {
      const cursor = client.query(new Cursor('SELECT g FROM generate_series(1, 100) AS g'));
      const first = await cursor.read(10);
      await cursor.close();
      await client.query(`INSERT INTO ${table} (id, name) VALUES (1, 'after cursor')`);
      return first;
    });
    expect(rows).toHaveLength(10);
    expect((await db.executeQuery(`SELECT name FROM ${table}`))[0]).toEqual({ name: 'after cursor' });
  });

  it('never hangs on a pg-cursor left open: the transaction rolls back with STREAM_LEFT_OPEN and the next caller is served', async () => {
    db = openSingle();
    const error = await db
      .withDb(false, async (client) => {
        await client.query(`INSERT INTO ${table} (id, name) VALUES (1, 'x')`);
        const cursor = client.query(new Cursor('SELECT g FROM generate_series(1, 100) AS g'));
        await cursor.read(10);
      })
      .catch((e: unknown) => e);
    expect((error as DatabaseTransactionError).code).toBe('STREAM_LEFT_OPEN');
    expect((await db.executeQuery(`SELECT count(*)::int AS n FROM ${table}`))[0]).toEqual({ n: 0 });
    expect(db.getStats().activeConnections).toBe(0);
  });

  it('waits for a pg-query-stream piped to its end before committing', async () => {
    db = openSingle();
    let count = 0;
    await db.withDb(false, async (client) => {
      await pipeline(
        client.query(new QueryStream('SELECT g FROM generate_series(1, 5000) AS g', [], { batchSize: 500 })),
        new Writable({
          objectMode: true,
          write(_row, _encoding, done) {
            count++;
            done();
          },
        }),
      );
      await client.query(`INSERT INTO ${table} (id, name) VALUES (1, 'after stream')`);
    });
    expect(count).toBe(5000);
    expect((await db.executeQuery(`SELECT count(*)::int AS n FROM ${table}`))[0]).toEqual({ n: 1 });
    expect(db.getStats()).toMatchObject({ queriesExecuted: 3, connectionsClosed: 0 });
  });

  it('client.copyFrom and client.copyTo run in the transaction', async () => {
    db = openSingle();
    const text = await db.withDb(false, async (client) => {
      await pipeline(Readable.from(copyLines(3)), client.copyFrom(`COPY ${table} (id, name) FROM STDIN`));
      const chunks: Buffer[] = [];
      for await (const chunk of client.copyTo(`COPY (SELECT id, name FROM ${table} ORDER BY id) TO STDOUT`))
        chunks.push(chunk as Buffer);
      return Buffer.concat(chunks).toString();
    });
    expect(text).toBe('1\titem 1\n2\titem 2\n3\titem 3\n');
  });

  it('refuses a statement that is not COPY FROM STDIN / TO STDOUT with TypeError', async () => {
    db = openSingle();
    await expect(db.withDb(false, async (client) => client.copyFrom('SELECT 1'))).rejects.toThrow(/COPY \.\.\. FROM STDIN/);
    await expect(db.copyTo('SELECT 1', new Writable())).rejects.toThrow(/COPY \.\.\. TO STDOUT/);
  });
});

describe('db.copyFrom and db.copyTo', () => {
  it('copies 100,000 rows in and reports the count', async () => {
    db = openSingle();
    expect(await db.copyFrom(`COPY ${table} (id, name) FROM STDIN`, Readable.from(copyLines(100_000)))).toBe(100_000);
    expect((await db.executeQuery(`SELECT count(*)::int AS n, max(id) AS m FROM ${table}`))[0]).toEqual({
      n: 100_000,
      m: 100_000,
    });
    expect(db.getStats()).toMatchObject({ queriesExecuted: 2, transactionsExecuted: 1, activeConnections: 0 });
  });

  it('commits nothing when the source fails halfway (CopyFail), rejects with its error and keeps the connection healthy', async () => {
    db = openSingle();
    const error = await db
      .copyFrom(`COPY ${table} (id, name) FROM STDIN`, Readable.from(copyLines(100_000, 50_000)))
      .catch((e: unknown) => e);
    expect((error as Error).message).toBe('the source failed halfway');
    expect((await db.executeQuery(`SELECT count(*)::int AS n FROM ${table}`))[0]).toEqual({ n: 0 });
    expect(db.getStats()).toMatchObject({ totalConnections: 1, connectionsClosed: 0, errors: 1 });
  });

  it('rejects with the server error for bad data, nothing committed', async () => {
    db = openSingle();
    const error = await db
      .copyFrom(`COPY ${table} (id, name) FROM STDIN`, Readable.from(['1\ta\n', 'oops\tb\n']))
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DatabaseQueryError);
    expect((error as DatabaseQueryError).sqlState).toBe('22P02');
    expect((error as Error).message).not.toContain('oops');
    expect((await db.executeQuery(`SELECT count(*)::int AS n FROM ${table}`))[0]).toEqual({ n: 0 });
  });

  it('copies out to a file', async () => {
    db = openSingle();
    await db.copyFrom(`COPY ${table} (id, name) FROM STDIN`, Readable.from(copyLines(1000)));
    const file = join(dir, 'out.tsv');
    expect(await db.copyTo(`COPY (SELECT id, name FROM ${table} ORDER BY id) TO STDOUT`, createWriteStream(file))).toBe(1000);
    expect(readFileSync(file, 'utf8')).toBe([...copyLines(1000)].join(''));
    // And back in from the file.
    await adminQuery(`TRUNCATE ${table}`);
    expect(await db.copyFrom(`COPY ${table} (id, name) FROM STDIN`, createReadStream(file))).toBe(1000);
  });

  it('destroys the connection when the destination fails mid-COPY, and the next caller is served on a new one', async () => {
    db = openSingle();
    let written = 0;
    const failing = new Writable({
      write(_chunk, _encoding, done) {
        written++;
        done(written === 3 ? new Error('disk full') : undefined);
      },
    });
    const error = await db
      .copyTo('COPY (SELECT g, repeat($$x$$, 100) FROM generate_series(1, 200000) AS g) TO STDOUT', failing)
      .catch((e: unknown) => e);
    expect((error as Error).message).toBe('disk full');
    await eventually(() => (db!.getStats().connectionsClosed === 1 ? true : undefined));
    expect((await db.executeQuery<{ n: number }>('SELECT 1 AS n'))[0]).toEqual({ n: 1 });
    expect(db.getStats()).toMatchObject({ totalConnections: 2, activeConnections: 0 });
    // The destroyed connection's backend ends when it next writes to the closed socket: on a loaded
    // machine that can take a moment after the client side is gone.
    const copying = await eventually(
      async () => {
        const rows = await adminQuery(
          "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'COPY (SELECT g, repeat%' AND pid <> pg_backend_pid()",
        );
        return rows.length === 0 ? rows : undefined;
      },
      10_000,
      'no backend still running the COPY',
    );
    expect(copying).toEqual([]);
  });

  it('a destination that is not a Writable (a string, a Readable) or a source that is not iterable rejects with a TypeError before anything is sent, and nothing crashes', async () => {
    db = openSingle();
    const attempts: [Promise<number>, string][] = [
      [db.copyTo(`COPY ${table} TO STDOUT`, 'out.csv' as never), 'copyTo needs a destination that is a Writable stream'],
      [db.copyTo(`COPY ${table} TO STDOUT`, Readable.from([]) as never), 'copyTo needs a destination that is a Writable stream'],
      [
        db.copyTo(`COPY ${table} TO STDOUT`, new Writable({ write: (_c, _e, done) => done() }), 'x' as never),
        'copyTo options must be an object',
      ],
      [
        db.copyFrom(`COPY ${table} FROM STDIN`, 42 as never),
        'copyFrom needs a source: a Readable, an async iterable or an iterable of strings or Buffers',
      ],
      [
        db.copyFrom(`COPY ${table} FROM STDIN`, null as never),
        'copyFrom needs a source: a Readable, an async iterable or an iterable of strings or Buffers',
      ],
      [db.copyFrom(`COPY ${table} FROM STDIN`, ['1\ta\n'], 'x' as never), 'copyFrom options must be an object'],
    ];
    for (const [attempt, message] of attempts) await expect(attempt).rejects.toThrow(new TypeError(message));
    expect(db.getStats()).toMatchObject({ errors: 6, queriesExecuted: 0, totalConnections: 0 });
  });

  it('a connection lost mid-COPY rejects db.copyFrom and db.copyTo with CONNECTION_LOST, and a COPY the withDb callback holds without listening crashes nothing', async () => {
    const applicationName = uniqueName('copy_lost');
    db = openSingle({ applicationName });
    const terminate = () =>
      eventually(async () => {
        const rows = await adminQuery<{ ok: boolean }>(
          "SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = $1 AND state = 'active'",
          [applicationName],
        );
        return rows.length > 0 ? true : undefined;
      });
    const endless = new Readable({ read: () => undefined });
    endless.push(`1\tone\n`);
    const copyIn = db.copyFrom(`COPY ${table} (id, name) FROM STDIN`, endless).catch((e: unknown) => e);
    await terminate();
    expect(await copyIn).toMatchObject({ name: 'DatabaseConnectionError', code: 'CONNECTION_LOST' });

    const slow = new Writable({ highWaterMark: 1, write: (_chunk, _encoding, done) => setTimeout(done, 20) });
    const copyOut = db
      .copyTo('COPY (SELECT g, repeat($$x$$, 100) FROM generate_series(1, 1000000) AS g) TO STDOUT', slow)
      .catch((e: unknown) => e);
    await terminate();
    expect(await copyOut).toMatchObject({ name: 'DatabaseConnectionError', code: 'CONNECTION_LOST' });

    let held: Writable | undefined;
    const inside = db
      .withDb(false, async (client) => {
        held = client.copyFrom(`COPY ${table} (id, name) FROM STDIN`);
        held.write(`2\ttwo\n`);
        await terminate();
        // Queued behind the COPY: pg fails it once the COPY got its error (with no listener of ours).
        return client.query('SELECT 1').catch((e: unknown) => e);
      })
      .catch((e: unknown) => e);
    expect(await inside).toMatchObject({ name: 'DatabaseTransactionError' });
    expect(await adminQuery(`SELECT count(*)::int AS n FROM ${table}`)).toEqual([{ n: 0 }]);
  });

  it("a COPY stream whose connection is destroyed emits 'close': a withDb callback waiting for it ends with the call's QUERY_CANCELLED and frees the connection", async () => {
    db = openSingle();
    const result = await db
      .withDb({ readOnly: true, timeoutMillis: 300 }, async (client) => {
        const data = client.copyTo('COPY (SELECT g FROM generate_series(1, 5000000) AS g) TO STDOUT');
        await new Promise((resolve) => data.once('close', resolve));
        return 'closed';
      })
      .catch((e: unknown) => e);
    expect(result).toMatchObject({ name: 'DatabaseQueryError', code: 'QUERY_CANCELLED' });
    expect(await db.executeQuery('SELECT 1 AS one')).toEqual([{ one: 1 }]);
  });
});
