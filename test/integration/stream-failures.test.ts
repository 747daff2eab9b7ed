/**
 * db.stream and client.stream when things go wrong: a lost connection, text a cursor cannot run,
 * cancellation while the consumer holds a batch, errors swallowed inside withDb, and how each is
 * counted and traced. Faults are real (pg_terminate_backend, timeouts, aborts).
 */
import diagnosticsChannel from 'node:diagnostics_channel';
import Cursor from 'pg-cursor';
import { afterEach, describe, expect, it } from 'vitest';
import {
  DatabaseConnectionError,
  DatabaseQueryError,
  DatabaseTransactionError,
  type Database,
  type PoolTimeoutError,
} from '../../src/index.js';
import { adminQuery, holdConnection, openDatabase, sleep, uniqueName } from '../support/test-database.js';
import { failOnCrashes } from '../support/crash-watch.js';

failOnCrashes();

let db: Database | undefined;

afterEach(async () => {
  await db?.shutdown({ timeoutMillis: 2000 });
  db = undefined;
});

/** One connection with an application_name of its own, so the test can find (and kill) its backend. */
function openSingle(options: Parameters<typeof openDatabase>[0] = {}): { database: Database; name: string } {
  const name = uniqueName('stream_faults');
  return { database: openDatabase({ min: 0, max: 1, applicationName: name, ...options }), name };
}

/** Reads `iterator` to its end; returns how many rows came and the error it ended with, if any. */
async function drain(iterator: AsyncIterator<unknown>, count = 0): Promise<{ count: number; error?: unknown }> {
  try {
    while (!(await iterator.next()).done) count++;
    return { count };
  } catch (error) {
    return { count, error };
  }
}

// First in the file: pg prints its DeprecationWarning once per process, so this must run before anything else could trigger it.
describe('a failed client.stream inside withDb', () => {
  it('rejects with TRANSACTION_ROLLED_BACK when the callback catches the failed stream and returns at once, keeping the connection, and never queues ROLLBACK behind another statement', async () => {
    const { database } = openSingle();
    db = database;
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(warning.message);
    process.on('warning', onWarning);
    try {
      let caught: unknown;
      const swallowed = await db
        .withDb(true, async (client) => {
          try {
            for await (const _row of client.stream('SELECT 1 / (g - 50) FROM generate_series(1, 100) AS g', [], {
              batchSize: 10,
            }))
              void _row;
          } catch (error) {
            caught = error;
          }
        })
        .catch((e: unknown) => e);
      expect((caught as DatabaseQueryError).sqlState).toBe('22012');
      expect(swallowed).toBeInstanceOf(DatabaseTransactionError);
      expect((swallowed as DatabaseTransactionError).code).toBe('TRANSACTION_ROLLED_BACK');
      const thrown = await db
        .withDb(true, async (client) => {
          for await (const _row of client.stream('SELECT 1 / (g - 50) FROM generate_series(1, 100) AS g', [], { batchSize: 10 }))
            void _row;
        })
        .catch((e: unknown) => e);
      expect((thrown as DatabaseQueryError).sqlState).toBe('22012');
      await sleep(50);
      expect(warnings.filter((message) => /already executing a query/.test(message))).toEqual([]);
      expect(db.getStats()).toMatchObject({ errors: 2, totalConnections: 1, connectionsClosed: 0, activeConnections: 0 });
      expect(await db.executeQuery('SELECT 1 AS one')).toEqual([{ one: 1 }]);
    } finally {
      process.off('warning', onWarning);
    }
  });
});

describe('a lost connection', () => {
  it('rejects the next step of db.stream with CONNECTION_LOST when the backend is terminated while the loop body is busy, never ending the rows early', async () => {
    const { database, name } = openSingle();
    db = database;
    const iterator = db
      .stream<{ g: number }>('SELECT g FROM generate_series(1, 200000) AS g', [], { batchSize: 100 })
      [Symbol.asyncIterator]();
    let count = 0;
    while (count < 50) {
      expect((await iterator.next()).done).toBe(false);
      count++;
    }
    // The loop body is busy (the next batch is already fetched) when the backend goes.
    await adminQuery('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [name]);
    await sleep(200);
    const end = await drain(iterator, count);
    expect(end.error).toBeInstanceOf(DatabaseConnectionError);
    expect((end.error as DatabaseConnectionError).code).toBe('CONNECTION_LOST');
    expect(end.count).toBeLessThan(200000);
    expect(db.getStats()).toMatchObject({ activeConnections: 0, errors: 1, transactionsExecuted: 0 });
  });

  it('rejects client.stream inside withDb with CONNECTION_LOST when the backend is terminated while the loop body is busy', async () => {
    const { database, name } = openSingle();
    db = database;
    let count = 0;
    const error = await db
      .withDb(true, async (client) => {
        for await (const _row of client.stream('SELECT g FROM generate_series(1, 200000) AS g', [], { batchSize: 100 })) {
          if (++count === 50) {
            await adminQuery('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [name]);
            await sleep(200);
          }
        }
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DatabaseConnectionError);
    expect((error as DatabaseConnectionError).code).toBe('CONNECTION_LOST');
    expect(count).toBeLessThan(200000);
    expect(db.getStats()).toMatchObject({ activeConnections: 0, errors: 1, transactionsExecuted: 0 });
  });
});

describe('text a cursor cannot run', () => {
  it('refuses a COPY given to db.stream, client.stream or a pg-cursor in client.query with a TypeError before sending, and nothing crashes', async () => {
    const { database } = openSingle();
    db = database;
    for (const text of ['COPY (SELECT 1) TO STDOUT', '/* export */ copy (select 1) to stdout', '-- load\n  COPY t FROM STDIN']) {
      const error = await drain(db.stream(text)[Symbol.asyncIterator]()).then((end) => end.error);
      expect(error).toBeInstanceOf(TypeError);
      expect((error as TypeError).message).toMatch(/cannot run a COPY statement .*use copyTo/);
    }
    const inside = await db
      .withDb(true, async (client) => {
        for await (const _row of client.stream('COPY (SELECT 1) TO STDOUT')) void _row;
      })
      .catch((e: unknown) => e);
    expect(inside).toBeInstanceOf(TypeError);
    const own = await db
      .withDb(true, async (client) => {
        client.query(new Cursor('COPY (SELECT 1) TO STDOUT'));
      })
      .catch((e: unknown) => e);
    expect(own).toBeInstanceOf(TypeError);
    expect((own as TypeError).message).toMatch(/cannot run COPY/);
    // Nothing reached the server: the three db.stream calls took no connection.
    expect(db.getStats()).toMatchObject({ queriesExecuted: 0, errors: 5, totalConnections: 1, connectionsClosed: 0 });
    expect(await db.executeQuery('SELECT 1 AS one')).toEqual([{ one: 1 }]);
  });

  it('rejects a stream of several statements with the server error 42601, and the connection is reused', async () => {
    const { database } = openSingle();
    db = database;
    const end = await drain(db.stream('SELECT 1; SELECT 2')[Symbol.asyncIterator]());
    expect(end.error).toBeInstanceOf(DatabaseQueryError);
    expect((end.error as DatabaseQueryError).sqlState).toBe('42601');
    expect(await db.executeQuery('SELECT 1 AS one')).toEqual([{ one: 1 }]);
    expect(db.getStats()).toMatchObject({ errors: 1, totalConnections: 1, connectionsClosed: 0 });
  });
});

describe('counting', () => {
  it("ends the codecheck-db:query message of a db.stream cut by timeoutMillis with errorCode 'QUERY_CANCELLED'", async () => {
    const { database } = openSingle();
    db = database;
    const ended: { text: string; errorCode?: string; sqlState?: string }[] = [];
    const channel = diagnosticsChannel.tracingChannel('codecheck-db:query');
    const handlers = {
      start: () => undefined,
      end: () => undefined,
      asyncStart: () => undefined,
      asyncEnd: (message: unknown) => void ended.push(message as (typeof ended)[number]),
      error: () => undefined,
    };
    channel.subscribe(handlers);
    try {
      const end = await drain(db.stream('SELECT pg_sleep(5) AS slept', [], { timeoutMillis: 200 })[Symbol.asyncIterator]());
      expect((end.error as DatabaseQueryError).code).toBe('QUERY_CANCELLED');
      await sleep(50);
    } finally {
      channel.unsubscribe(handlers);
    }
    const stream = ended.find((message) => message.text === 'SELECT pg_sleep(5) AS slept');
    expect(stream).toMatchObject({ errorCode: 'QUERY_CANCELLED', sqlState: '57014' });
  });

  it('counts a timeoutMillis that passes while db.stream waits for a connection as executeQuery does: one pool timeout, no cancellation', async () => {
    const { database } = openSingle({ connectionTimeoutMillis: 300 });
    db = database;
    const holder = holdConnection(db);
    await holder.held;
    const before = db.getStats();
    const queryError = await db.executeQuery('SELECT 1', [], { timeoutMillis: 100 }).catch((e: unknown) => e);
    const streamError = await drain(db.stream('SELECT 1', [], { timeoutMillis: 100 })[Symbol.asyncIterator]()).then(
      (end) => end.error,
    );
    holder.release();
    await holder.done;
    expect((queryError as PoolTimeoutError).code).toBe('POOL_TIMEOUT');
    expect((streamError as PoolTimeoutError).code).toBe('POOL_TIMEOUT');
    const after = db.getStats();
    expect({
      errors: after.errors - before.errors,
      poolExhaustedCount: after.poolExhaustedCount - before.poolExhaustedCount,
      acquireTimeouts: after.acquireTimeouts - before.acquireTimeouts,
      queriesCancelled: after.queriesCancelled - before.queriesCancelled,
    }).toEqual({ errors: 2, poolExhaustedCount: 2, acquireTimeouts: 2, queriesCancelled: 0 });
  });

  it('counts every TypeError of db.stream in errors: bad batchSize, options that are not an object, bad text, a second iteration', async () => {
    const { database } = openSingle();
    db = database;
    const refusals: (() => Promise<unknown>)[] = [
      () => db!.stream('SELECT 1', [], { batchSize: 0 })[Symbol.asyncIterator]().next(),
      () =>
        db!
          .stream('SELECT 1', [], 'x' as never)
          [Symbol.asyncIterator]()
          .next(),
      () =>
        db!
          .stream(42 as never)
          [Symbol.asyncIterator]()
          .next(),
      () => db!.stream('SELECT 1', [], { timeoutMillis: -1 })[Symbol.asyncIterator]().next(),
    ];
    for (const refuse of refusals) await expect(refuse()).rejects.toBeInstanceOf(TypeError);
    expect(db.getStats().errors).toBe(4);
    const once = db.stream('SELECT 1');
    for await (const _row of once) void _row;
    expect(() => once[Symbol.asyncIterator]()).toThrow(TypeError);
    expect(db.getStats()).toMatchObject({ errors: 5, queriesExecuted: 1 });
  });
});

describe('cancellation while the consumer holds a batch', () => {
  it('rejects the very next step with QUERY_CANCELLED after the signal aborts, handing out no more rows of the batch in hand', async () => {
    const { database } = openSingle();
    db = database;
    const controller = new AbortController();
    let afterAbort = 0;
    const error = await (async () => {
      for await (const row of db!.stream<{ g: number }>('SELECT g FROM generate_series(1, 100000) AS g', [], {
        batchSize: 100,
        signal: controller.signal,
      })) {
        if (controller.signal.aborted) afterAbort++;
        if (row.g === 10) controller.abort();
      }
    })().catch((e: unknown) => e);
    expect((error as DatabaseQueryError).code).toBe('QUERY_CANCELLED');
    expect(afterAbort).toBe(0);
    expect(db.getStats()).toMatchObject({ activeConnections: 0, errors: 1, queriesCancelled: 1 });
  });

  it('rejects the very next step with QUERY_CANCELLED once timeoutMillis passed while the loop body was busy', async () => {
    const { database } = openSingle();
    db = database;
    let rows = 0;
    const error = await (async () => {
      for await (const row of db!.stream<{ g: number }>('SELECT g FROM generate_series(1, 100000) AS g', [], {
        batchSize: 100,
        timeoutMillis: 200,
      })) {
        rows++;
        if (row.g === 10) await sleep(400);
      }
    })().catch((e: unknown) => e);
    expect((error as DatabaseQueryError).code).toBe('QUERY_CANCELLED');
    expect(rows).toBe(10);
  });

  it("ends a withDb whose client.stream loop outlives the call's timeoutMillis with QUERY_CANCELLED, not STREAM_IDLE_TIMEOUT", async () => {
    const { database } = openSingle({ idleInTransactionTimeoutMillis: 1000 });
    db = database;
    let rows = 0;
    const error = await db
      .withDb({ readOnly: true, timeoutMillis: 300 }, async (client) => {
        for await (const _row of client.stream('SELECT g FROM generate_series(1, 100000) AS g', [], { batchSize: 100 })) {
          rows++;
          await sleep(10);
        }
      })
      .catch((e: unknown) => e);
    expect((error as DatabaseQueryError).code).toBe('QUERY_CANCELLED');
    // 100 rows take at least 1000 ms of the loop's sleeps: the timeout ended the batch in hand.
    expect(rows).toBeLessThan(100);
    expect(db.getStats()).toMatchObject({ activeConnections: 0, errors: 1, queriesCancelled: 1 });
  });
});
