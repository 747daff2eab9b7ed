import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { Readable, Writable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import Cursor from 'pg-cursor';
import QueryStream from 'pg-query-stream';
import { from as copyFromStdin } from 'pg-copy-streams';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DatabaseQueryError, DatabaseTransactionError, type Database } from '../../src/index.js';
import { adminQuery, eventually, openDatabase, uniqueName } from '../support/test-database.js';
import { failOnCrashes } from '../support/crash-watch.js';

failOnCrashes();

let db: Database | undefined;
const table = uniqueName('copy_faults');
const dir = mkdtempSync(join(tmpdir(), 'copy-faults-'));

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

let applicationName = '';
function openSingle(options: Parameters<typeof openDatabase>[0] = {}): Database {
  applicationName = uniqueName('copy_faults');
  return openDatabase({ min: 0, max: 1, applicationName, ...options });
}

/** Lines of COPY text; after `pauseAfter` lines it waits for `resume` (so a fault can land mid-COPY). */
async function* pausingLines(pauseAfter: number, resume: Promise<void>): AsyncGenerator<string> {
  for (let id = 1; id <= pauseAfter; id++) yield `${id}\tline ${id}\n`;
  await resume;
  yield `${pauseAfter + 1}\tlast\n`;
}

function timingCounts(database: Database): { queriesExecuted: number; queryTimeCount: number } {
  const stats = database.getStats();
  return { queriesExecuted: stats.queriesExecuted, queryTimeCount: stats.queryTime.count };
}

const sink = () => new Writable({ write: (_chunk, _encoding, done) => done() });

describe('COPY statements that are not one COPY of the right direction', () => {
  it('refuses COPY FROM STDIN followed by a second statement before sending anything', async () => {
    db = openSingle();
    const error = await db.copyFrom(`COPY ${table} FROM STDIN; SELECT 1`, ['1\ta\n']).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TypeError);
    expect((error as Error).message).toMatch(/the text has 2 statements; send one COPY alone$/);
    expect(db.getStats()).toMatchObject({ queriesExecuted: 0, totalConnections: 0, errors: 1 });
  });

  it('refuses COPY TO STDOUT followed by a second statement before sending anything', async () => {
    db = openSingle();
    const error = await db.copyTo('COPY (SELECT 1) TO STDOUT; SELECT 2', sink()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TypeError);
    expect((error as Error).message).toMatch(/the text has 2 statements; send one COPY alone$/);
    expect(db.getStats()).toMatchObject({ queriesExecuted: 0, totalConnections: 0, errors: 1 });
  });

  it('refuses a second statement after client.copyFrom inside withDb, and the transaction rolls back', async () => {
    db = openSingle();
    const error = await db
      .withDb(false, async (client) => {
        await client.query(`INSERT INTO ${table} VALUES (1, 'kept?')`);
        await pipeline(Readable.from(['2\tb\n']), client.copyFrom(`COPY ${table} FROM STDIN; SELECT 1`));
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TypeError);
    expect((await db.executeQuery(`SELECT count(*)::int AS n FROM ${table}`))[0]).toEqual({ n: 0 });
  });

  it('refuses a server-side file COPY hidden behind a comment, and the server writes no file', async () => {
    db = openSingle();
    const file = join(dir, 'written-by-server.tsv');
    const to = await db.copyTo(`COPY ${table} TO '${file}' -- TO STDOUT`, sink()).catch((e: unknown) => e);
    expect(to).toBeInstanceOf(TypeError);
    expect((to as Error).message).toMatch(/COPY \.\.\. TO 'file' reads or writes a file on the server, which is refused$/);
    const from = await db.copyFrom(`COPY ${table} FROM '${file}' -- FROM STDIN`, ['1\ta\n']).catch((e: unknown) => e);
    expect(from).toBeInstanceOf(TypeError);
    expect(existsSync(file)).toBe(false);
    expect(db.getStats()).toMatchObject({ queriesExecuted: 0, errors: 2 });
  });

  it('accepts a COPY with a leading comment', async () => {
    db = openSingle();
    expect(await db.copyFrom(`/* load */ -- the items\nCOPY ${table} FROM STDIN`, ['1\ta\n', '2\tb\n'])).toBe(2);
    expect(await db.copyTo(`/* x */ COPY ${table} TO STDOUT`, sink())).toBe(2);
  });

  it("fails a caller's own pg-copy-streams object whose text holds a second statement with QUERY_FAILED and closes its connection", async () => {
    db = openSingle();
    const error = await db
      .withDb(false, async (client) => {
        const copy = client.query(copyFromStdin(`COPY ${table} FROM STDIN; SELECT 1`));
        await pipeline(Readable.from(['1\ta\n']), copy);
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DatabaseQueryError);
    expect((error as DatabaseQueryError).code).toBe('QUERY_FAILED');
    expect((error as Error).message).toMatch(
      /^The server's answer could not be read by this cursor, stream or COPY \(RowDescription\)/,
    );
    expect((await db.executeQuery(`SELECT count(*)::int AS n FROM ${table}`))[0]).toEqual({ n: 0 });
    expect(db.getStats()).toMatchObject({ connectionsClosed: 1, activeConnections: 0 });
  });

  it("fails a caller's own pg-copy-streams object that the server ran without COPY data (FROM PROGRAM) with QUERY_FAILED, without crashing", async () => {
    db = openSingle();
    const error = await db
      .withDb(false, async (client) => {
        const copy = client.query(copyFromStdin(`COPY ${table} FROM PROGRAM 'true'`));
        await pipeline(Readable.from(['1\ta\n']), copy);
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DatabaseQueryError);
    expect((error as Error).message).toMatch(/\(ReadyForQuery\)/);
    // Its connection was destroyed, never put back (closing is counted when the socket's end arrives).
    await eventually(() => (db!.getStats().connectionsClosed === 1 ? true : undefined));
    expect(db.getStats()).toMatchObject({ poolSize: 0, activeConnections: 0 });
  });

  it('guards a drop-in Pool client the same way: a pg-cursor given a COPY is refused, a COPY object the server answers otherwise fails, nothing crashes', async () => {
    db = openSingle();
    const client = await db.pool.connect();
    expect(() => client.query(new Cursor('COPY (SELECT 1) TO STDOUT'))).toThrow(TypeError);
    expect(() => client.query(new QueryStream('COPY (SELECT 1) TO STDOUT'))).toThrow(TypeError);
    const copy = client.query(copyFromStdin(`COPY ${table} FROM PROGRAM 'true'`));
    const error = await pipeline(Readable.from(['1\ta\n']), copy).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DatabaseQueryError);
    expect((error as Error).message).toMatch(/\(ReadyForQuery\)/);
    client.release();
    // That connection was closed; the pool serves the next caller on a new one.
    expect((await db.pool.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
  });

  // A COPY given to a cursor is refused before sending (test/integration/stream-failures.test.ts has the cases).
  it("refuses a caller's own pg-cursor given a COPY TO STDOUT with a TypeError, without crashing", async () => {
    db = openSingle();
    const error = await db
      .withDb(true, async (client) => {
        const cursor = client.query(new Cursor('COPY (SELECT 1) TO STDOUT'));
        await cursor.read(10);
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TypeError);
    expect(await db.executeQuery<{ one: number }>('SELECT 1 AS one')).toEqual([{ one: 1 }]);
  });

  it('refuses db.stream given a COPY TO STDOUT with a TypeError, without crashing', async () => {
    db = openSingle();
    const error = await (async () => {
      for await (const _row of db!.stream('COPY (SELECT 1) TO STDOUT')) void _row;
    })().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TypeError);
    expect(await db.executeQuery<{ one: number }>('SELECT 1 AS one')).toEqual([{ one: 1 }]);
  });
});

describe('queryTime counts every COPY and submittable once, whatever its outcome', () => {
  it('copyFrom and client.copyFrom into a missing table', async () => {
    db = openSingle();
    await db.copyFrom('COPY no_such_table_here FROM STDIN', ['1\ta\n']).catch(() => undefined);
    await db.copyTo('COPY no_such_table_here TO STDOUT', sink()).catch(() => undefined);
    await db
      .withDb(false, async (client) => pipeline(Readable.from(['1\ta\n']), client.copyFrom('COPY no_such_table_here FROM STDIN')))
      .catch(() => undefined);
    await eventually(() => (timingCounts(db!).queryTimeCount === 3 ? true : undefined), 2000).catch(() => undefined);
    expect(timingCounts(db)).toEqual({ queriesExecuted: 3, queryTimeCount: 3 });
  });

  it('copyFrom whose backend is terminated, cancelled by its signal, or cut by timeoutMillis', async () => {
    db = openSingle();
    let resume!: () => void;
    const killed = db
      .copyFrom(`COPY ${table} FROM STDIN`, pausingLines(5, new Promise((r) => (resume = r))))
      .catch((e: unknown) => (e as { code?: string }).code);
    await eventually(async () => {
      const rows = await adminQuery<{ n: number }>(
        "SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE application_name = $1 AND query LIKE 'COPY%'",
        [applicationName],
      );
      return rows[0]!.n > 0 ? true : undefined;
    });
    resume();
    expect(await killed).toBe('CONNECTION_LOST');
    const controller = new AbortController();
    const aborted = db.copyFrom(`COPY ${table} FROM STDIN`, pausingLines(5, new Promise(() => undefined)), {
      signal: controller.signal,
    });
    setTimeout(() => controller.abort(), 200);
    expect(await aborted.catch((e: unknown) => (e as { code?: string }).code)).toBe('QUERY_CANCELLED');
    const timedOut = db.copyFrom(`COPY ${table} FROM STDIN`, pausingLines(5, new Promise(() => undefined)), {
      timeoutMillis: 200,
    });
    expect(await timedOut.catch((e: unknown) => (e as { code?: string }).code)).toBe('QUERY_CANCELLED');
    await eventually(() => (timingCounts(db!).queryTimeCount === 3 ? true : undefined), 2000).catch(() => undefined);
    expect(timingCounts(db)).toEqual({ queriesExecuted: 3, queryTimeCount: 3 });
  });

  it('client.copyFrom left open, and pg-cursor / pg-query-stream objects given to client.query', async () => {
    db = openSingle();
    const leftOpen = await db
      .withDb(false, async (client) => {
        client.copyFrom(`COPY ${table} FROM STDIN`).write('1\ta\n');
      })
      .catch((e: unknown) => (e as { code?: string }).code);
    expect(leftOpen).toBe('STREAM_LEFT_OPEN');
    await db.withDb(true, async (client) => {
      const cursor = client.query(new Cursor('SELECT g FROM generate_series(1, 10) AS g'));
      await cursor.read(3);
      await cursor.close();
      const drained = client.query(new Cursor('SELECT 1 AS one'));
      await drained.read(10);
      await drained.read(10);
      const rows: unknown[] = [];
      for await (const row of client.query(new QueryStream('SELECT g FROM generate_series(1, 5) AS g'))) rows.push(row);
      expect(rows).toHaveLength(5);
    });
    await eventually(() => (timingCounts(db!).queryTimeCount === 4 ? true : undefined), 2000).catch(() => undefined);
    expect(timingCounts(db)).toEqual({ queriesExecuted: 4, queryTimeCount: 4 });
  });

  it('copyFrom cut by shutdown', async () => {
    db = openSingle();
    const cut = db
      .copyFrom(`COPY ${table} FROM STDIN`, pausingLines(5, new Promise(() => undefined)))
      .catch((e: unknown) => (e as { code?: string }).code);
    await eventually(() => (db!.getStats().queriesExecuted === 1 ? true : undefined));
    await db.shutdown({ timeoutMillis: 200 });
    expect(await cut).toBe('CONNECTION_LOST');
    expect(timingCounts(db)).toEqual({ queriesExecuted: 1, queryTimeCount: 1 });
  });
});

describe('a client.copyTo stream destroyed before its end', () => {
  it('fails the transaction with STREAM_LEFT_OPEN, nothing committed, without sending COMMIT on the destroyed connection', async () => {
    db = openSingle();
    const error = await db
      .withDb(false, async (client) => {
        await client.query(`INSERT INTO ${table} VALUES (1, 'not committed')`);
        const data = client.copyTo('COPY (SELECT g FROM generate_series(1, 200000) AS g) TO STDOUT');
        await once(data, 'data');
        data.destroy();
        await finished(data).catch(() => undefined);
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DatabaseTransactionError);
    expect((error as DatabaseTransactionError).code).toBe('STREAM_LEFT_OPEN');
    expect((error as Error).message).toContain('nothing was committed');
    expect((error as Error).message).not.toContain('unknown');
    expect(await adminQuery(`SELECT count(*)::int AS n FROM ${table}`)).toEqual([{ n: 0 }]);
    expect(db.getStats()).toMatchObject({ activeConnections: 0, connectionsClosed: 1, transactionsExecuted: 0 });
  });
});
