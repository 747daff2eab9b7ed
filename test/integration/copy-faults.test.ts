import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import Cursor from 'pg-cursor';
import { from as copyFromStdin } from 'pg-copy-streams';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DatabaseQueryError, type Database } from '../../src/index.js';
import { adminQuery, openDatabase, uniqueName } from '../support/test-database.js';

let db: Database | undefined;
const table = uniqueName('copy_faults');
const dir = mkdtempSync(join(tmpdir(), 'copy-faults-'));
const crashes: unknown[] = [];
const onCrash = (error: unknown) => crashes.push(error);

beforeAll(async () => {
  await adminQuery(`CREATE TABLE ${table} (id int PRIMARY KEY, name text NOT NULL)`);
});
afterAll(async () => {
  await adminQuery(`DROP TABLE IF EXISTS ${table}`);
  rmSync(dir, { recursive: true, force: true });
});
beforeEach(async () => {
  crashes.length = 0;
  process.on('uncaughtException', onCrash);
  process.on('unhandledRejection', onCrash);
  await adminQuery(`TRUNCATE ${table}`);
});
afterEach(async () => {
  await db?.shutdown({ timeoutMillis: 2000 });
  db = undefined;
  process.off('uncaughtException', onCrash);
  process.off('unhandledRejection', onCrash);
  expect(crashes).toEqual([]);
});

function openSingle(options: Parameters<typeof openDatabase>[0] = {}): Database {
  return openDatabase({ min: 0, max: 1, applicationName: uniqueName('copy_faults'), ...options });
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

  it("fails a caller's own pg-cursor given a COPY TO STDOUT with QUERY_FAILED, without crashing", async () => {
    db = openSingle();
    const error = await db
      .withDb(true, async (client) => {
        const cursor = client.query(new Cursor('COPY (SELECT 1) TO STDOUT'));
        await cursor.read(10);
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DatabaseQueryError);
    expect((error as Error).message).toMatch(/\(CopyData\)/);
    expect(await db.executeQuery<{ one: number }>('SELECT 1 AS one')).toEqual([{ one: 1 }]);
  });

  it('fails db.stream given a COPY TO STDOUT with QUERY_FAILED, without crashing', async () => {
    db = openSingle();
    const error = await (async () => {
      for await (const _row of db!.stream('COPY (SELECT 1) TO STDOUT')) void _row;
    })().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DatabaseQueryError);
    expect((error as Error).message).toMatch(/\(CopyData\)/);
    expect(await db.executeQuery<{ one: number }>('SELECT 1 AS one')).toEqual([{ one: 1 }]);
  });
});
