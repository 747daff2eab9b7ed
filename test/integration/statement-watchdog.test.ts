import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Database, DatabaseConnectionError } from '../../src/index.js';
import { getTestDatabaseUrl } from '../support/database-url.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { adminQuery, uniqueName } from '../support/test-database.js';

const databases: Database[] = [];
let proxy: FaultProxy;
let url: URL;

const table = uniqueName('watchdog_copy');

beforeAll(async () => {
  await adminQuery(`CREATE TABLE ${table} (id int, name text)`);
  url = new URL(getTestDatabaseUrl());
  proxy = await startFaultProxy({ targetHost: url.hostname, targetPort: Number(url.port) });
});

afterAll(async () => {
  await Promise.all(databases.map((db) => db.shutdown({ timeoutMillis: 500 })));
  await proxy?.close();
  await adminQuery(`DROP TABLE IF EXISTS ${table}`);
});

/** A destination that makes the link go silent (`how`) when the first chunk of COPY data arrives. */
function silencingDestination(how: () => void): Writable {
  let isFirst = true;
  return new Writable({
    write(_chunk, _encoding, done) {
      if (isFirst) how();
      isFirst = false;
      done();
    },
  });
}

/** COPY text lines; the link goes silent (`how`) after the first `silentAfter`. */
async function* silencingSource(count: number, silentAfter: number, how: () => void): AsyncGenerator<string> {
  for (let id = 1; id <= count; id++) {
    if (id === silentAfter + 1) {
      how();
      // Let the lines before the silence reach the server first.
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    yield `${id}\tline ${id} ${'x'.repeat(200)}\n`;
  }
}

function open(viaProxy: boolean): Database {
  const db = new Database({
    host: viaProxy ? proxy.host : url.hostname,
    port: viaProxy ? proxy.port : Number(url.port),
    user: decodeURIComponent(url.username),
    password: decodeURIComponent(url.password),
    database: url.pathname.slice(1) || 'postgres',
    sslMode: 'disable',
    min: 1,
    max: 2,
    connectionTimeoutMillis: 1000,
    statementTimeoutMillis: 300,
    validationTimeoutMillis: 200,
    validationIntervalMillis: 60_000,
    logLevel: 'silent',
  });
  databases.push(db);
  return db;
}

describe('statement watchdog', () => {
  test('a statement whose link black-holes mid-flight rejects with a connection error instead of waiting forever', async () => {
    const db = open(true);
    await db.ready({ timeoutMillis: 5000 });
    await db.executeQuery('SELECT 1');
    proxy.blackhole();
    const startedAt = Date.now();
    // readOnly: false, so the call is not retried on a second connection (which the black hole would
    // turn into a PoolTimeoutError at the acquire deadline).
    const outcome = await db.executeQuery('SELECT 1', [], { readOnly: false }).then(
      () => 'resolved',
      (error: unknown) => error,
    );
    const waitedMillis = Date.now() - startedAt;
    proxy.heal();
    expect(outcome).toBeInstanceOf(DatabaseConnectionError);
    expect((outcome as DatabaseConnectionError).code).toBe('CONNECTION_LOST');
    // statement_timeout (300) + grace (200) + a sweep period + the probe's own timeout, with slack.
    expect(waitedMillis).toBeLessThan(5000);
    expect(db.getStats().activeConnections).toBe(0);
    expect(await db.executeQuery<{ n: number }>('SELECT 1 AS n')).toEqual([{ n: 1 }]);
  });

  test('a link that goes silent while new connections still get through: the idle backend does not keep the caller waiting', async () => {
    const db = open(true);
    await db.ready({ timeoutMillis: 5000 });
    await db.executeQuery('SELECT 1');
    // The pooled connection's link goes silent (a lost NAT entry): the statement never reaches its
    // backend, which stays alive and idle; the watchdog's probe connection still gets through.
    proxy.silenceOpen();
    const outcome = await db.executeQuery('SELECT 1', [], { readOnly: false }).then(
      () => 'resolved',
      (error: unknown) => error,
    );
    proxy.heal();
    expect(outcome).toBeInstanceOf(DatabaseConnectionError);
    expect((outcome as DatabaseConnectionError).code).toBe('CONNECTION_LOST');
    expect(db.getStats().activeConnections).toBe(0);
    expect(await db.executeQuery<{ n: number }>('SELECT 1 AS n')).toEqual([{ n: 1 }]);
  });

  test('a link that goes silent inside withDb: the backend idle in transaction does not keep the caller waiting', async () => {
    const db = open(true);
    await db.ready({ timeoutMillis: 5000 });
    const outcome = await db
      .withDb(false, async (client) => {
        await client.query('SELECT 1');
        proxy.silenceOpen();
        await client.query('SELECT 2');
      })
      .then(
        () => 'resolved',
        (error: unknown) => error,
      );
    proxy.heal();
    expect(outcome).toBeInstanceOf(DatabaseConnectionError);
    expect((outcome as DatabaseConnectionError).code).toBe('CONNECTION_LOST');
    expect(db.getStats().activeConnections).toBe(0);
  });

  test('a long statement whose backend is alive is left to finish when the caller raised statement_timeout', async () => {
    const db = open(false);
    const rows = await db.withDb(true, async (client) => {
      await client.query("SET LOCAL statement_timeout = '5s'");
      return (await client.query<{ done: boolean }>('SELECT pg_sleep(1.5) IS NOT NULL AS done')).rows;
    });
    expect(rows).toEqual([{ done: true }]);
  });

  test.each([
    {
      name: 'db.copyTo over a link that black-holes mid-COPY rejects with CONNECTION_LOST instead of waiting for the server to give up',
      fault: () => proxy.blackhole(),
    },
    {
      name: 'db.copyTo over a link that goes silent while new connections get through rejects with CONNECTION_LOST',
      fault: () => proxy.silenceOpen(),
    },
  ])('$name', async ({ fault }) => {
    const db = open(true);
    await db.ready({ timeoutMillis: 5000 });
    const outcome = await db
      .copyTo('COPY (SELECT g FROM generate_series(1, 100000) AS g) TO STDOUT', silencingDestination(fault))
      .catch((error: unknown) => error);
    proxy.heal();
    expect(outcome).toBeInstanceOf(DatabaseConnectionError);
    expect((outcome as DatabaseConnectionError).code).toBe('CONNECTION_LOST');
    expect(db.getStats().activeConnections).toBe(0);
  });

  test.each([
    {
      name: 'db.copyFrom whose link goes silent after its last line rejects with CONNECTION_LOST, nothing committed',
      lines: 10,
      silentAt: 9,
    },
    {
      name: 'db.copyFrom whose link goes silent while data is still being written rejects with CONNECTION_LOST',
      lines: 20_000,
      silentAt: 100,
    },
  ])('$name', async ({ lines, silentAt }) => {
    const db = open(true);
    await db.ready({ timeoutMillis: 5000 });
    const outcome = await db
      .copyFrom(
        `COPY ${table} FROM STDIN`,
        silencingSource(lines, silentAt, () => proxy.silenceOpen()),
      )
      .catch((error: unknown) => error);
    proxy.heal();
    expect(outcome).toBeInstanceOf(DatabaseConnectionError);
    expect((outcome as DatabaseConnectionError).code).toBe('CONNECTION_LOST');
    expect(db.getStats().activeConnections).toBe(0);
    expect(await adminQuery(`SELECT count(*)::int AS n FROM ${table}`)).toEqual([{ n: 0 }]);
  });

  test('a COPY held up by its slow destination longer than statement_timeout is not abandoned', async () => {
    const db = open(false);
    let chunks = 0;
    const slow = new Writable({
      highWaterMark: 1,
      write(_chunk, _encoding, done) {
        chunks++;
        // The first chunk waits past statement_timeout + grace (500 ms): the server is not to blame.
        setTimeout(done, chunks === 1 ? 1200 : 0);
      },
    });
    expect(await db.copyTo("COPY (SELECT 'x') TO STDOUT", slow)).toBe(1);
  });
});
