/**
 * Contract checks found by using the library as a user would, with awkward arguments: each test names
 * the behaviour docs/errors.md and docs/stats.md promise, and asserts it exactly.
 */
import { afterAll, describe, expect, test } from 'vitest';
import {
  ConfigError,
  databaseHealthCheck,
  DatabaseQueryError,
  loadConfig,
  PoolTimeoutError,
  type Database,
} from '../../../src/index.js';
import { adminQuery, openDatabase, sleep, uniqueName } from '../../support/test-database.js';

const databases: Database[] = [];
function open(options: Parameters<typeof openDatabase>[0] = {}): Database {
  const db = openDatabase({ min: 0, max: 1, ...options });
  databases.push(db);
  return db;
}
afterAll(async () => {
  await Promise.all(databases.map((db) => db.shutdown({ timeoutMillis: 1000 })));
});

describe('bad arguments', () => {
  test('listen, notify and rotateCredentials reject options that are not an object with a TypeError, sending nothing', async () => {
    const db = open();
    await expect(db.listen('adversarial_channel', () => undefined, 'x' as never)).rejects.toThrow(
      new TypeError('listen options must be an object'),
    );
    await expect(db.notify('adversarial_channel', 'payload', 'x' as never)).rejects.toThrow(
      new TypeError('notify options must be an object'),
    );
    await expect(db.rotateCredentials('x' as never)).rejects.toThrow(
      new TypeError('rotateCredentials options must be an object'),
    );
    expect(db.getStats()).toMatchObject({ queriesExecuted: 0, totalConnections: 0 });
  });

  test('executeQuery with null options rejects with a TypeError and counts one error', async () => {
    const db = open();
    await expect(db.executeQuery('SELECT 1', [], null as never)).rejects.toThrow(
      new TypeError('executeQuery options must be an object'),
    );
    expect(db.getStats().errors).toBe(1);
    expect(db.getStats().queriesExecuted).toBe(0);
  });

  test('a params array that does not match the $n placeholders rejects with QUERY_FAILED 08P01, is sent once, and keeps its connection', async () => {
    const applicationName = uniqueName('qa_bind');
    const db = open({ applicationName });
    const before = (await db.executeQuery<{ pid: number }>('SELECT pg_backend_pid() AS pid'))[0]?.pid;
    const error = await db.executeQuery('SELECT $1::int AS a, $2::int AS b', [1]).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(DatabaseQueryError);
    expect(error).toMatchObject({ code: 'QUERY_FAILED', sqlState: '08P01' });
    const after = (await db.executeQuery<{ pid: number }>('SELECT pg_backend_pid() AS pid'))[0]?.pid;
    expect(typeof before).toBe('number');
    expect(after).toBe(before);
    await sleep(50);
    const stats = db.getStats();
    expect(stats.queriesExecuted).toBe(3);
    expect(stats.errors).toBe(1);
    expect(stats.connectionsClosed).toBe(0);
    expect(stats.totalConnections).toBe(1);
  });

  test('the same mismatch inside withDb rejects with QUERY_FAILED 08P01 and the transaction is rolled back on a kept connection', async () => {
    const db = open();
    const error = await db
      .withDb(true, async (client) => client.query('SELECT $1::int', [1, 2]))
      .catch((caught: unknown) => caught);
    expect(error).toMatchObject({ code: 'QUERY_FAILED', sqlState: '08P01' });
    expect(await db.executeQuery('SELECT 1 AS one')).toEqual([{ one: 1 }]);
    await sleep(50);
    expect(db.getStats().connectionsClosed).toBe(0);
  });
});

describe('arguments of the wrong type (item 8)', () => {
  test("withDb('true', fn) and every other first argument that is neither a boolean nor a plain object is a TypeError, and nothing runs", async () => {
    const db = open();
    let ran = 0;
    const fn = async () => void ran++;
    for (const first of ['true', 'false', 1, 0, null, undefined, [], new Date(), () => true]) {
      await expect(db.withDb(first as never, fn), String(first)).rejects.toThrow(
        new TypeError('withDb needs readOnly (true or false) or an options object as its first argument'),
      );
    }
    expect(ran).toBe(0);
    expect(db.getStats()).toMatchObject({ errors: 9, queriesExecuted: 0, transactionsExecuted: 0 });
  });

  test('readOnly given as anything but a boolean is a TypeError for withDb, executeQuery and executeTransaction', async () => {
    const db = open();
    const refused = new TypeError('readOnly must be true or false');
    await expect(db.withDb({ readOnly: 'false' as never }, async () => undefined)).rejects.toThrow(refused);
    await expect(db.executeQuery('SELECT 1', [], { readOnly: 0 as never })).rejects.toThrow(refused);
    await expect(db.executeTransaction([{ text: 'SELECT 1' }], { readOnly: 'yes' as never })).rejects.toThrow(refused);
    expect(db.getStats()).toMatchObject({ errors: 3, queriesExecuted: 0 });
  });

  test('options that are not an object are a TypeError naming the method, for every method that takes them', async () => {
    const db = open();
    await expect(db.executeTransaction([{ text: 'SELECT 1' }], 'x' as never)).rejects.toThrow(
      new TypeError('executeTransaction options must be an object'),
    );
    await expect(db.executeQuery('SELECT 1', [], [] as never)).rejects.toThrow(
      new TypeError('executeQuery options must be an object'),
    );
    await expect(db.getWriteToken('x' as never)).rejects.toThrow(new TypeError('getWriteToken options must be an object'));
    await expect(db.ready(5 as never)).rejects.toThrow(new TypeError('ready options must be an object'));
    await expect(db.shutdown('now' as never)).rejects.toThrow(new TypeError('shutdown options must be an object'));
    expect(await db.executeQuery('SELECT 1 AS one')).toEqual([{ one: 1 }]);
  });
});

describe('durations beyond what a Node timer keeps (2^31−1 ms)', () => {
  const TOO_LONG = 2 ** 31;
  const message = (name: string, min = 1) =>
    `${name} must be a number of milliseconds from ${min} to 2147483647 (the longest delay a Node timer keeps)`;

  test('withDb, executeQuery and executeTransaction reject timeoutMillis 2^31 with a TypeError, sending nothing', async () => {
    const db = open();
    const calls = [
      () => db.withDb({ timeoutMillis: TOO_LONG }, async (client) => client.query('SELECT 1')),
      () => db.executeQuery('SELECT 1', [], { timeoutMillis: TOO_LONG }),
      () => db.executeTransaction([{ text: 'SELECT 1' }], { timeoutMillis: TOO_LONG }),
      () => db.executeQuery('SELECT 1', [], { timeoutMillis: Number.POSITIVE_INFINITY }),
    ];
    for (const run of calls) await expect(run()).rejects.toThrow(new TypeError(message('timeoutMillis')));
    expect(db.getStats()).toMatchObject({ errors: 4, queriesExecuted: 0, queriesCancelled: 0 });
    // The largest accepted value is a deadline far away, not one that fires at once.
    expect(await db.executeQuery('SELECT 1 AS one', [], { timeoutMillis: 2 ** 31 - 1 })).toEqual([{ one: 1 }]);
  });

  test('ready and shutdown reject a timeoutMillis of 2^31 with a TypeError; shutdown then still works', async () => {
    const db = open();
    await expect(db.ready({ timeoutMillis: TOO_LONG })).rejects.toThrow(new TypeError(message('ready timeoutMillis')));
    await expect(db.shutdown({ timeoutMillis: TOO_LONG })).rejects.toThrow(new TypeError(message('shutdown timeoutMillis', 0)));
    expect(await db.executeQuery('SELECT 1 AS one')).toEqual([{ one: 1 }]);
    await db.shutdown({ timeoutMillis: 1000 });
  });
});

describe('options given as text (docs/configuration.md)', () => {
  test("an option holding the text a variable accepts is read in the option's unit", () => {
    const config = loadConfig({}, { max: '20', pgbouncer: 'yes', connectionTimeoutMillis: '1500' } as never);
    expect([config.max, config.pgbouncer, config.connectionTimeoutMillis]).toEqual([20, true, 1500]);
  });

  test('a fractional text for a millisecond option and a number for a boolean option are both problems in one ConfigError', () => {
    let error: unknown;
    try {
      loadConfig({}, { connectionTimeoutMillis: '1.5', pgbouncer: 1, password: 'hunter2' } as never);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems).toEqual([
      'option connectionTimeoutMillis is "1.5", which is not a non-negative integer; expected 1–86400000 ms.',
      'option pgbouncer is "1"; expected true or false.',
    ]);
    expect(JSON.stringify(error) + (error as Error).message).not.toContain('hunter2');
  });
});

describe('several statements in one text', () => {
  test("executeQuery of several statements without params returns the last statement's rows", async () => {
    const db = open();
    expect(await db.executeQuery('SELECT 1 AS a; SELECT 2 AS b, 3 AS c')).toEqual([{ b: 2, c: 3 }]);
    expect(await db.executeQuery('SELECT 1 AS a; SELECT 2 AS b', [], { readOnly: false })).toEqual([{ b: 2 }]);
    expect(db.getStats().queriesExecuted).toBe(2);
  });

  test("executeTransaction returns the last statement's rows for an operation holding several statements", async () => {
    const db = open();
    expect(await db.executeTransaction([{ text: 'SELECT 1 AS a; SELECT 2 AS b' }, { text: 'SELECT 3 AS c' }])).toEqual([
      [{ b: 2 }],
      [{ c: 3 }],
    ]);
  });

  test('several statements with params reject with QUERY_FAILED 42601', async () => {
    const db = open();
    await expect(db.executeQuery('SELECT $1::int; SELECT 2', [1])).rejects.toMatchObject({
      code: 'QUERY_FAILED',
      sqlState: '42601',
    });
  });
});

describe('healthCheck never rejects', () => {
  test('healthCheck(null) resolves healthy', async () => {
    const db = open();
    const report = await db.healthCheck(null as never);
    expect(report.status).toBe('healthy');
  });

  test.each([[Number.NaN], [0], [-5], ['100'], [2 ** 31]])(
    'healthCheck({ timeoutMillis: %s }) resolves unhealthy with the reason',
    async (timeoutMillis) => {
      const db = open();
      const report = await db.healthCheck({ timeoutMillis: timeoutMillis as number });
      expect(report.status).toBe('unhealthy');
      expect(report.error).toBe('healthCheck timeoutMillis must be a number of milliseconds from 1 to 2147483647');
      expect(report.databaseVersion).toBeNull();
    },
  );

  test('databaseHealthCheck on an invalid environment reports the ConfigError on one line', async () => {
    const saved = process.env.DB_POOL_MAX;
    process.env.DB_POOL_MAX = '0';
    try {
      const report = await databaseHealthCheck();
      expect(report.status).toBe('unhealthy');
      expect(report.error).toBe(
        'Invalid database configuration (1 problem): - DB_POOL_MAX is "0", out of range; expected 1–10000.',
      );
    } finally {
      if (saved === undefined) delete process.env.DB_POOL_MAX;
      else process.env.DB_POOL_MAX = saved;
    }
  });
});

describe('PoolTimeoutError snapshot', () => {
  test('stats.active counts the connections checked out by callers, as getStats().activeConnections does', async () => {
    const db = open({ max: 1, connectionTimeoutMillis: 300 });
    let release!: () => void;
    const held = db.withDb(true, async () => new Promise<void>((resolve) => (release = resolve)));
    await sleep(100);
    const error = await db.executeQuery('SELECT 1').catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(PoolTimeoutError);
    const { stats } = error as PoolTimeoutError;
    expect({ total: stats.total, active: stats.active, idle: stats.idle, max: stats.max }).toEqual({
      total: 1,
      active: 1,
      idle: 0,
      max: 1,
    });
    expect(db.getStats().activeConnections).toBe(1);
    release();
    await held;
  });
});

// Keeps the shared server tidy if a test above failed midway.
afterAll(async () => {
  await adminQuery("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'qa_bind_%'").catch(
    () => undefined,
  );
});
