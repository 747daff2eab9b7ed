/**
 * The library's guarantees on the drop-in Pool's paths (pool.query, pool.connect/release): acquire
 * deadline, validation, release hygiene, leak detection, shutdown, a server restart, stats.
 */
import diagnosticsChannel from 'node:diagnostics_channel';
import pg from 'pg';
import Cursor from 'pg-cursor';
import { describe, expect, it } from 'vitest';
import { Pool, PoolClosedError, PoolTimeoutError } from '../../../src/index.js';
import { CHANNEL_NAMES } from '../../../src/tracing-channels.js';
import { startPostgres } from '../../support/postgres-server.js';
import { adminQuery, captureLogs, eventually, uniqueName, within } from '../../support/test-database.js';
import { poolOpener } from '../../support/test-pools.js';

const openPool = poolOpener();

async function backendPid(client: pg.PoolClient): Promise<number> {
  return (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
}

describe('the drop-in Pool keeps the library guarantees', () => {
  it('rejects pool.query and connect with PoolTimeoutError at the acquire deadline, in pg-pool words', async () => {
    const pool = openPool({ max: 1, connectionTimeoutMillis: 300 });
    const holder = await pool.connect();
    const queried = await pool.query('SELECT 1').catch((e: unknown) => e);
    const connected = await new Promise<Error | undefined>((resolve) => pool.connect((error) => resolve(error)));
    holder.release();
    for (const error of [queried, connected]) {
      expect(error).toBeInstanceOf(PoolTimeoutError);
      expect((error as PoolTimeoutError).code).toBe('POOL_TIMEOUT');
      expect((error as Error).message).toMatch(/^timeout exceeded when trying to connect: /);
    }
    expect(pool.getStats()).toMatchObject({ acquireTimeouts: 2, errors: 2 });
  });

  it('never hands out a connection whose backend was terminated: checkout validation replaces it', async () => {
    const pool = openPool({ max: 1, validationIntervalMillis: 0 });
    const client = await pool.connect();
    const pid = await backendPid(client);
    client.release();
    await adminQuery('SELECT pg_terminate_backend($1)', [pid]);
    const again = await pool.connect();
    expect(await backendPid(again)).not.toBe(pid);
    again.release();
  });

  it('rolls back a client released inside a transaction', async () => {
    const pool = openPool({ max: 1 });
    const table = uniqueName('rollback_on_release');
    await pool.query(`CREATE TABLE ${table} (id int)`);
    const client = await pool.connect();
    await client.query('BEGIN');
    await client.query(`INSERT INTO ${table} VALUES (1)`);
    client.release();
    const next = await pool.connect();
    expect(next.getTransactionStatus?.() ?? 'I').toBe('I');
    expect((await next.query(`SELECT count(*)::int AS n FROM ${table}`)).rows).toEqual([{ n: 0 }]);
    next.release();
    await pool.query(`DROP TABLE ${table}`);
  });

  it('cancels and closes a connection released with an unread cursor; the next caller gets a fresh one', async () => {
    const pool = openPool({ max: 1 });
    const client = await pool.connect();
    const pid = await backendPid(client);
    const cursor = client.query(new Cursor('SELECT generate_series(1, 1000000) AS n'));
    const first = await new Promise<unknown[]>((resolve, reject) =>
      cursor.read(10, (error, rows) => (error ? reject(error) : resolve(rows))),
    );
    expect(first).toHaveLength(10);
    client.release();
    const next = await pool.connect();
    expect(await backendPid(next)).not.toBe(pid);
    next.release();
    expect(pool.getStats().connectionsClosed).toBe(1);
  });

  it('deallocates named statements a client prepared, so the next holder of the connection finds none', async () => {
    const pool = openPool({ max: 1 });
    const client = await pool.connect();
    const pid = await backendPid(client);
    await client.query({ name: 'drop_in_named', text: 'SELECT $1::int AS n', values: [1] });
    expect((await client.query({ name: 'drop_in_named', text: 'SELECT $1::int AS n', values: [2] })).rows).toEqual([{ n: 2 }]);
    client.release();
    const next = await pool.connect();
    expect(await backendPid(next)).toBe(pid);
    expect(pool.getStats().nodes[0]).toMatchObject({ sessionResets: 1, sessionDiscards: 0 });
    expect((await next.query('SELECT name FROM pg_prepared_statements')).rows).toEqual([]);
    expect((await next.query({ name: 'drop_in_named', text: 'SELECT $1::text AS t', values: ['x'] })).rows).toEqual([{ t: 'x' }]);
    next.release();
  });

  it('resets SET, LISTEN, temp tables and advisory locks on release, keeping the connection, and sends nothing on a clean release', async () => {
    const pool = openPool({ max: 1, statementTimeoutMillis: 30_000 });
    const client = await pool.connect();
    const pid = await backendPid(client);
    await client.query('SET statement_timeout = 1234');
    await client.query('LISTEN drop_in_channel');
    await client.query('CREATE TEMP TABLE drop_in_temp (id int)');
    await client.query('SELECT pg_advisory_lock(4242)');
    client.release();
    const next = await pool.connect();
    expect(await backendPid(next)).toBe(pid);
    expect(pool.getStats().nodes[0]).toMatchObject({ sessionResets: 1, sessionDiscards: 0 });
    const state = await next.query(
      `SELECT current_setting('statement_timeout') AS timeout,
              (SELECT count(*)::int FROM pg_listening_channels()) AS channels,
              (SELECT count(*)::int FROM pg_class WHERE relname = 'drop_in_temp' AND relpersistence = 't') AS temps,
              (SELECT count(*)::int FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS locks`,
    );
    expect(state.rows).toEqual([{ timeout: '30s', channels: 0, temps: 0, locks: 0 }]);
    // A clean release: nothing is sent (pg's query method on the connection is not called again).
    let sent = 0;
    const raw = next as unknown as { query: (...args: unknown[]) => unknown };
    const original = Object.getPrototypeOf(next).query as (...args: unknown[]) => unknown;
    raw.query = function (this: unknown, ...args: unknown[]) {
      sent++;
      return original.apply(this, args);
    };
    next.release();
    const third = await pool.connect();
    expect(sent).toBe(0);
    await third.query('SELECT 1');
    expect(sent).toBe(1);
    delete (third as unknown as { query?: unknown }).query;
    third.release();
  });

  it("keeps what a connect listener set up: a holder's LISTEN is undone around it, a holder's SET closes the connection", async () => {
    const pool = openPool({ max: 1 });
    pool.on('connect', (client) => {
      void client.query('SET search_path TO drop_in_schema, public');
    });
    const first = await pool.connect();
    const pid = await backendPid(first);
    await first.query('LISTEN drop_in_channel');
    first.release();
    const second = await pool.connect();
    expect(await backendPid(second)).toBe(pid);
    expect((await second.query('SHOW search_path')).rows).toEqual([{ search_path: 'drop_in_schema, public' }]);
    await second.query('SET work_mem = 1234');
    second.release();
    const third = await pool.connect();
    expect(await backendPid(third)).not.toBe(pid);
    expect(pool.getStats().nodes[0]).toMatchObject({ sessionResets: 1, sessionDiscards: 1 });
    expect((await third.query('SHOW search_path')).rows).toEqual([{ search_path: 'drop_in_schema, public' }]);
    expect((await third.query("SELECT current_setting('work_mem') <> '1234kB' AS reset")).rows).toEqual([{ reset: true }]);
    third.release();
  });

  it('publishes pool.query on codecheck-db:query with its text, parameter count and row count, never its values', async () => {
    const pool = openPool({ max: 1 });
    const channel = diagnosticsChannel.tracingChannel(CHANNEL_NAMES.query);
    const settled: Record<string, unknown>[] = [];
    const handlers = {
      start: () => undefined,
      end: () => undefined,
      asyncStart: (message: unknown) => void settled.push({ ...(message as Record<string, unknown>) }),
      asyncEnd: () => undefined,
      error: () => undefined,
    };
    channel.subscribe(handlers);
    try {
      await pool.query('SELECT $1::text AS t', ['drop-in-secret']);
    } finally {
      channel.unsubscribe(handlers);
    }
    expect(settled).toEqual([
      expect.objectContaining({ operation: 'query', text: 'SELECT $1::text AS t', parameterCount: 1, rowCount: 1 }),
    ]);
    expect(JSON.stringify(settled)).not.toContain('drop-in-secret');
  });

  it("never reuses a connection whose statement pg's query_timeout gave up on: it is cancelled and closed, the next caller gets a fresh one", async () => {
    const sleeping = async (pid: number) =>
      (
        await adminQuery<{ n: number }>(
          "SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1 AND query LIKE '%pg_sleep%' AND state = 'active'",
          [pid],
        )
      )[0]!.n;
    // A statement's own query_timeout through pool.query, then the Pool's through a checked-out client.
    for (const [config, send] of [
      [{}, (pool: Pool) => pool.query({ text: 'SELECT pg_sleep(30)', query_timeout: 300 } as pg.QueryConfig)],
      [
        { query_timeout: 300 },
        async (pool: Pool) => {
          const client = await pool.connect();
          try {
            return await client.query('SELECT pg_sleep(30)');
          } finally {
            client.release();
          }
        },
      ],
    ] as const) {
      const pool = openPool({ max: 1, ...config });
      const before = (await pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      await expect(send(pool)).rejects.toThrow('Query read timeout');
      const next = await within(5000, pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid'));
      expect(next).toMatchObject({ value: { rows: [{ pid: expect.any(Number) }] } });
      expect((next as { value: pg.QueryResult<{ pid: number }> }).value.rows[0]!.pid).not.toBe(before);
      // The release sent a cancel request: the backend stops sleeping (its connection is closed too).
      await eventually(async () => ((await sleeping(before)) === 0 ? true : undefined), 5000, 'the statement cancelled');
      expect(pool.getStats().queriesExecuted).toBe(3);
    }
  });

  it('closes a connection released after SET ROLE, which RESET ALL cannot undo', async () => {
    const pool = openPool({ max: 1 });
    const client = await pool.connect();
    const pid = await backendPid(client);
    await client.query('SET ROLE pg_read_all_data');
    client.release();
    const next = await pool.connect();
    expect(await backendPid(next)).not.toBe(pid);
    expect(pool.getStats().nodes[0]).toMatchObject({ sessionResets: 0, sessionDiscards: 1 });
    expect((await next.query('SELECT current_user = session_user AS same')).rows).toEqual([{ same: true }]);
    next.release();
  });

  it('warns with the acquiring stack when a checked-out client is held past the leak threshold', async () => {
    const logs = captureLogs('warn');
    const pool = openPool({ logger: logs.logger, leakDetectionThresholdMillis: 100 });
    const client = await pool.connect();
    const leak = await eventually(() => logs.records().find((r) => String(r.msg).includes('possible leak')));
    client.release();
    expect(String(leak.acquiredAt)).toContain('pool-guarantees.test.ts');
    expect(pool.getStats().leaksDetected).toBe(1);
  });

  it('end() lets a checked-out client finish, refuses new work at once, then closes everything', async () => {
    const pool = openPool({ max: 2 });
    const client = await pool.connect();
    const ending = pool.end();
    expect(pool.ending).toBe(true);
    await expect(pool.query('SELECT 1')).rejects.toBeInstanceOf(PoolClosedError);
    expect(await within(100, ending)).toBe('pending');
    expect((await client.query('SELECT 42 AS n')).rows).toEqual([{ n: 42 }]);
    client.release();
    await ending;
    expect(pool.ended).toBe(true);
    expect(pool.totalCount).toBe(0);
  });

  it('serves pool.query again after a server restart', async () => {
    const server = await startPostgres();
    try {
      const pool = openPool({ connectionString: server.url, max: 2, connectionTimeoutMillis: 5000 });
      expect((await pool.query('SELECT 1 AS n')).rows).toEqual([{ n: 1 }]);
      await server.restart('fast');
      const after = await eventually(
        () =>
          pool.query('SELECT 2 AS n').then(
            (r) => r.rows,
            () => undefined,
          ),
        10_000,
      );
      expect(after).toEqual([{ n: 2 }]);
      await pool.end();
    } finally {
      await server.destroy();
    }
  });

  it('counts the Pool traffic in the Database stats and the same numbers on db.pool', async () => {
    const pool = openPool({ max: 2 });
    await pool.query('SELECT 1');
    const client = await pool.connect();
    await client.query('SELECT 2');
    await client.query('SELECT 1/0').catch(() => undefined);
    client.release();
    await pool.query('SELECT syntax error').catch(() => undefined);
    const reader = await pool.connect();
    const cursor = reader.query(new Cursor('SELECT generate_series(1, 5) AS n'));
    await new Promise((resolve, reject) => cursor.read(10, (error, rows) => (error ? reject(error) : resolve(rows))));
    await cursor.close();
    reader.release();
    const stats = pool.getStats();
    expect(stats).toMatchObject({ queriesExecuted: 5, errors: 1, activeConnections: 0 });
    expect(stats.queryTime.count).toBe(5);
    expect(pool.totalCount).toBe(pool.getStats().poolSize);
  });
});
