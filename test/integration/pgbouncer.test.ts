/**
 * DB_PGBOUNCER=true against a real PgBouncer 1.18 in transaction pooling mode, in front of a private
 * PostgreSQL server (so this file owns the role PgBouncer logs in as and can count its backends).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Database, DatabaseConnectionError, DatabaseQueryError, type DatabaseOptions } from '../../src/index.js';
import { isSkipped, pgBouncerUnavailableReason, startPgBouncer, type PgBouncer } from '../support/pgbouncer.js';
import { startPostgres, type PostgresServer } from '../support/postgres-server.js';

const APP_USER = 'bouncer_app';
const APP_PASSWORD = 'bouncer-app-secret';
const SERVER_POOL_SIZE = 5;
const unavailable = pgBouncerUnavailableReason();
if (unavailable) console.warn(`test/integration/pgbouncer.test.ts is skipped: ${unavailable}`);

let server: PostgresServer;
let bouncer: PgBouncer;
const databases: Database[] = [];

/** A Database that reaches the server only through PgBouncer, in PgBouncer mode. */
function open(options: DatabaseOptions = {}): Database {
  const db = new Database({
    connectionString: bouncer.url,
    pgbouncer: true,
    logLevel: 'silent',
    connectionTimeoutMillis: 5000,
    ...options,
  });
  databases.push(db);
  return db;
}

async function rejection(promise: Promise<unknown>): Promise<Error & { code?: string; sqlState?: string }> {
  try {
    await promise;
  } catch (error) {
    return error as Error & { code?: string; sqlState?: string };
  }
  throw new Error('expected a rejection');
}

/** A raw pg client through PgBouncer with the given startup settings. */
function rawClient(config: pg.ClientConfig = {}): pg.Client {
  const client = new pg.Client({
    host: bouncer.host,
    port: bouncer.port,
    user: APP_USER,
    password: APP_PASSWORD,
    database: 'postgres',
    connectionTimeoutMillis: 5000,
    ...config,
  });
  client.on('error', () => undefined);
  return client;
}

describe.skipIf(unavailable !== undefined)('PgBouncer transaction pooling (DB_PGBOUNCER=true)', () => {
  beforeAll(async () => {
    server = await startPostgres();
    await server.query(`CREATE ROLE ${APP_USER} LOGIN PASSWORD '${APP_PASSWORD}'`);
    await server.query('CREATE TABLE items (id serial PRIMARY KEY, label text NOT NULL)');
    await server.query(`GRANT ALL ON items TO ${APP_USER}; GRANT ALL ON SEQUENCE items_id_seq TO ${APP_USER}`);
    const started = await startPgBouncer({
      targetHost: server.host,
      targetPort: server.port,
      user: APP_USER,
      password: APP_PASSWORD,
      poolMode: 'transaction',
      defaultPoolSize: SERVER_POOL_SIZE,
      maxClientConn: 200,
    });
    if (isSkipped(started)) throw new Error(`PgBouncer could not start: ${started.skipped}`);
    bouncer = started;
  });

  afterAll(async () => {
    await Promise.all(databases.map((db) => db.shutdown({ timeoutMillis: 2000 })));
    await bouncer?.stop();
    await server?.destroy();
  });

  it('refuses raw pg with statement_timeout as a startup parameter, and accepts ours with the same settings', async () => {
    for (const config of [
      { statement_timeout: 1000 },
      { lock_timeout: 1000 },
      { idle_in_transaction_session_timeout: 1000 },
      { options: '-c default_transaction_read_only=on' },
    ]) {
      const client = rawClient(config);
      const error = await rejection(client.connect());
      expect(error.message).toBe(`unsupported startup parameter: ${Object.keys(config)[0]}`);
      await client.end().catch(() => undefined);
    }
    const settings = { statementTimeoutMillis: 1000, lockTimeoutMillis: 1000, idleInTransactionTimeoutMillis: 1000 };
    const plain = open({ ...settings, pgbouncer: false, min: 0 });
    const refused = await rejection(plain.executeQuery('SELECT 1'));
    expect(refused).toBeInstanceOf(DatabaseConnectionError);
    expect(refused.message).toContain('unsupported startup parameter');
    const db = open(settings);
    await db.ready({ timeoutMillis: 5000 });
    expect(await db.executeQuery('SELECT 1 AS one')).toEqual([{ one: 1 }]);
  });

  it('applies the configured timeouts to every transaction with SET LOCAL and leaves no session setting behind', async () => {
    const db = open({
      statementTimeoutMillis: 1500,
      idleInTransactionTimeoutMillis: 2500,
      lockTimeoutMillis: 700,
      applicationName: 'bouncer-test',
    });
    const sql = `SELECT current_setting('statement_timeout') AS statement, current_setting('idle_in_transaction_session_timeout') AS idle,
      current_setting('lock_timeout') AS lock, current_setting('application_name') AS app`;
    const expected = { statement: '1500ms', idle: '2500ms', lock: '700ms', app: 'bouncer-test' };
    expect(await db.executeQuery(sql)).toEqual([expected]);
    expect(await db.executeQuery(sql, [], { readOnly: false })).toEqual([expected]);
    expect(await db.withDb(true, async (client) => (await client.query(sql)).rows)).toEqual([expected]);
    expect(await db.executeTransaction([{ text: sql }])).toEqual([[expected]]);
    // Five raw clients, each holding a transaction, cover all five server connections: none kept anything.
    const clients = Array.from({ length: SERVER_POOL_SIZE }, () => rawClient());
    try {
      await Promise.all(clients.map((client) => client.connect()));
      await Promise.all(clients.map((client) => client.query('BEGIN')));
      const seen = await Promise.all(
        clients.map(
          async (client) =>
            (
              await client.query(`SELECT pg_backend_pid() AS pid, current_setting('statement_timeout') AS statement,
        current_setting('lock_timeout') AS lock, current_setting('default_transaction_read_only') AS read_only`)
            ).rows[0] as Record<string, unknown>,
        ),
      );
      expect(new Set(seen.map((row) => row.pid)).size).toBe(SERVER_POOL_SIZE);
      for (const row of seen) expect(row).toMatchObject({ statement: '0', lock: '0', read_only: 'off' });
    } finally {
      await Promise.all(clients.map((client) => client.end().catch(() => undefined)));
    }
  });

  it('enforces read-only executeQuery and withDb(true) on the server (25006) and commits read-write work', async () => {
    const db = open();
    const readOnlyWrite = await rejection(db.executeQuery("INSERT INTO items (label) VALUES ('ro')"));
    expect(readOnlyWrite).toBeInstanceOf(DatabaseQueryError);
    expect(readOnlyWrite.sqlState).toBe('25006');
    const withDbWrite = await rejection(db.withDb(true, (client) => client.query("INSERT INTO items (label) VALUES ('ro')")));
    expect(withDbWrite.sqlState).toBe('25006');
    const [row] = await db.executeQuery<{ id: number }>('INSERT INTO items (label) VALUES ($1) RETURNING id', ['rw'], {
      readOnly: false,
    });
    expect(await db.executeQuery('SELECT label FROM items WHERE id = $1', [row!.id])).toEqual([{ label: 'rw' }]);
    expect((await server.query("SELECT count(*)::int AS n FROM items WHERE label = 'ro'")).rows[0]).toEqual({ n: 0 });
    expect(db.getStats()).toMatchObject({ queriesExecuted: 4, transactionsExecuted: 0, errors: 2 });
  });

  it('commits withDb and executeTransaction all or nothing through PgBouncer', async () => {
    const db = open();
    const ids = await db.withDb(false, async (client) => {
      const a = await client.query<{ id: number }>("INSERT INTO items (label) VALUES ('tx-a') RETURNING id");
      const b = await client.query<{ id: number }>("INSERT INTO items (label) VALUES ('tx-b') RETURNING id");
      return [a.rows[0]!.id, b.rows[0]!.id];
    });
    expect((await server.query('SELECT count(*)::int AS n FROM items WHERE id = ANY($1)', [ids])).rows[0]).toEqual({ n: 2 });
    const failed = await rejection(
      db.executeTransaction([{ text: "INSERT INTO items (label) VALUES ('tx-lost')" }, { text: 'SELECT 1/0' }]),
    );
    expect(failed.sqlState).toBe('22012');
    await rejection(
      db.withDb(false, async (client) => {
        await client.query("INSERT INTO items (label) VALUES ('tx-lost')");
        throw new Error('fn failed');
      }),
    );
    expect((await server.query("SELECT count(*)::int AS n FROM items WHERE label = 'tx-lost'")).rows[0]).toEqual({ n: 0 });
    expect(db.getStats()).toMatchObject({ queriesExecuted: 5, transactionsExecuted: 1, errors: 2 });
  });

  it('fails a statement that outlives statement_timeout with 57014, and a lock wait past lock_timeout with 55P03', async () => {
    const db = open({ statementTimeoutMillis: 300, lockTimeoutMillis: 200 });
    for (const run of [
      () => db.executeQuery('SELECT pg_sleep(3)'),
      () => db.executeQuery('SELECT pg_sleep(3)', [], { readOnly: false }),
      () => db.withDb(false, (client) => client.query('SELECT pg_sleep(3)')),
    ])
      expect((await rejection(run())).sqlState).toBe('57014');
    const holder = new pg.Client({ connectionString: server.url });
    holder.on('error', () => undefined);
    await holder.connect();
    try {
      await holder.query('BEGIN; LOCK TABLE items IN ACCESS EXCLUSIVE MODE');
      expect(
        (await rejection(db.executeQuery("INSERT INTO items (label) VALUES ('locked')", [], { readOnly: false }))).sqlState,
      ).toBe('55P03');
    } finally {
      await holder.query('ROLLBACK');
      await holder.end();
    }
    expect(await db.executeQuery('SELECT 2 AS two')).toEqual([{ two: 2 }]);
  });

  it('ends a transaction left idle past idle_in_transaction_session_timeout (SET LOCAL)', async () => {
    const db = open({ idleInTransactionTimeoutMillis: 200 });
    const error = await rejection(
      db.withDb(false, async (client) => {
        await client.query('SELECT 1');
        await sleep(1000);
        return client.query('SELECT 2');
      }),
    );
    expect(error).toBeInstanceOf(DatabaseConnectionError);
    expect(error.message).toContain('25P03');
    expect(await db.executeQuery('SELECT 3 AS three')).toEqual([{ three: 3 }]);
  });

  it('cancels a running statement through PgBouncer when timeoutMillis passes', async () => {
    const db = open({ statementTimeoutMillis: 0 });
    const startedAt = Date.now();
    const error = await rejection(db.executeQuery('SELECT pg_sleep(10)', [], { timeoutMillis: 300 }));
    expect(error).toMatchObject({ code: 'QUERY_CANCELLED' });
    expect(Date.now() - startedAt).toBeLessThan(5000);
    const running = await server.query(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1 AND query LIKE 'SELECT pg_sleep(10)%' AND state = 'active'`,
      [APP_USER],
    );
    expect(running.rows[0]).toEqual({ n: 0 });
  });

  it('fails a statement that cannot run in a transaction block (VACUUM) with 25001', async () => {
    const db = open();
    expect((await rejection(db.executeQuery('VACUUM items', [], { readOnly: false }))).sqlState).toBe('25001');
  });

  it('refuses a named prepared statement in withDb unless pgbouncerPreparedStatements is set', async () => {
    const db = open();
    const refused = await rejection(
      db.withDb(true, (client) => client.query({ name: 'by_id', text: 'SELECT $1::int AS id', values: [1] })),
    );
    expect(refused).toBeInstanceOf(DatabaseQueryError);
    expect(refused.message).toContain('The named prepared statement "by_id" was refused');
    expect(refused.message).toContain('DB_PGBOUNCER_PREPARED_STATEMENTS');
    expect(db.getStats()).toMatchObject({ queriesExecuted: 0, errors: 1 });
    const optedIn = open({ pgbouncerPreparedStatements: true });
    const rows = await optedIn.withDb(
      true,
      async (client) => (await client.query({ name: 'by_id', text: 'SELECT $1::int AS id', values: [1] })).rows,
    );
    expect(rows).toEqual([{ id: 1 }]);
  });

  it("refuses the drop-in Pool's named statements (pool.query, a connect() client, a callback) before sending, as withDb does", async () => {
    const db = open({ max: 2 });
    const config = { name: 'np', text: 'SELECT $1::int AS id', values: [1] };
    const fromQuery = await rejection(db.pool.query(config));
    const client = await db.pool.connect();
    const fromClient = await rejection(client.query(config));
    const fromCallback = await new Promise<Error>((resolve) => client.query(config, (error: Error) => resolve(error)));
    client.release();
    for (const refused of [fromQuery, fromClient, fromCallback] as (Error & { code?: string })[]) {
      expect(refused).toBeInstanceOf(DatabaseQueryError);
      expect(refused.code).toBe('QUERY_FAILED');
      expect(refused.message).toContain('The named prepared statement "np" was refused');
    }
    expect(db.getStats()).toMatchObject({ queriesExecuted: 0, connectionsClosed: 0 });
    // The same statement unnamed runs.
    expect((await db.pool.query({ text: config.text, values: config.values })).rows).toEqual([{ id: 1 }]);
  });

  it("sends the drop-in Pool's statements unnamed, so a text used again runs on whichever server connection PgBouncer picks", async () => {
    const db = open({ max: 4 });
    // Concurrent rounds: PgBouncer spreads the Pool's transactions over its server connections.
    for (let round = 0; round < 4; round++) {
      const results = await Promise.all(
        Array.from({ length: 8 }, (_, i) => db.pool.query('SELECT $1::int AS id, pg_backend_pid() AS pid', [i])),
      );
      expect(results.map((result) => result.rows[0].id)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    }
    const client = await db.pool.connect();
    try {
      for (let i = 0; i < 3; i++) expect((await client.query('SELECT $1::int AS id', [i])).rows).toEqual([{ id: i }]);
    } finally {
      client.release();
    }
    // A named statement would find its name missing on another server connection (26000): sent again, its connection closed.
    expect(db.getStats()).toMatchObject({ queriesExecuted: 35, errors: 0, connectionsClosed: 0 });
  });

  it('reports health through PgBouncer: the server behind it, and its link to PgBouncer unencrypted', async () => {
    const db = open();
    const report = await db.healthCheck({ timeoutMillis: 3000 });
    const version = (await server.query<{ version: string }>('SELECT version()')).rows[0]!.version;
    // pg_stat_ssl describes the backend's own connection: PgBouncer's link to the server, plaintext here.
    expect(report).toMatchObject({
      status: 'healthy',
      databaseVersion: version,
      isReplica: false,
      tls: { encrypted: false, protocol: null },
    });
  });

  it('serves four Databases of max 10 under concurrent load with no error and never more than 5 server backends', async () => {
    const instances = Array.from({ length: 4 }, () => open({ max: 10, min: 2 }));
    await Promise.all(instances.map((db) => db.ready({ timeoutMillis: 5000 })));
    const sampler = new pg.Client({ connectionString: server.url });
    sampler.on('error', () => undefined);
    await sampler.connect();
    let isLoading = true;
    let maxBackends = 0;
    let maxActive = 0;
    let samples = 0;
    const sampling = (async () => {
      while (isLoading) {
        const { rows } = await sampler.query<{ total: number; active: number }>(
          `SELECT count(*)::int AS total, count(*) FILTER (WHERE state <> 'idle')::int AS active
          FROM pg_stat_activity WHERE backend_type = 'client backend' AND usename = $1`,
          [APP_USER],
        );
        maxBackends = Math.max(maxBackends, rows[0]!.total);
        maxActive = Math.max(maxActive, rows[0]!.active);
        samples++;
        await sleep(2);
      }
    })();
    const CALLERS = 20;
    const ROUNDS = 8;
    const work = (db: Database, caller: number) => async () => {
      for (let round = 0; round < ROUNDS; round++) {
        await db.executeQuery('SELECT pg_sleep(0.002), $1::int AS caller', [caller]);
        await db.executeQuery('INSERT INTO items (label) VALUES ($1)', ['load'], { readOnly: false });
        await db.withDb(false, async (client) => {
          await client.query('INSERT INTO items (label) VALUES ($1)', ['load']);
          await client.query('SELECT pg_sleep(0.002)');
        });
        await db.executeTransaction([
          { text: "INSERT INTO items (label) VALUES ('load')" },
          { text: 'SELECT count(*) FROM items' },
        ]);
      }
    };
    let results: PromiseSettledResult<void>[];
    try {
      results = await Promise.allSettled(
        instances.flatMap((db) => Array.from({ length: CALLERS }, (_, caller) => work(db, caller)())),
      );
    } finally {
      isLoading = false;
      await sampling;
      await sampler.end();
    }
    const pools = await bouncer.admin<{ database: string; sv_active: number; sv_idle: number; sv_used: number }>('SHOW POOLS');
    console.log(
      `PgBouncer load: ${instances.length} Databases x max 10 (${instances.length * 10} client connections) over default_pool_size ${SERVER_POOL_SIZE}: ` +
        `max server backends observed ${maxBackends} (max active ${maxActive}) in ${samples} samples of pg_stat_activity`,
    );
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    for (const db of instances) {
      expect(db.getStats()).toMatchObject({
        errors: 0,
        queriesExecuted: CALLERS * ROUNDS * 6,
        transactionsExecuted: CALLERS * ROUNDS * 2,
      });
    }
    expect((await server.query("SELECT count(*)::int AS n FROM items WHERE label = 'load'")).rows[0]).toEqual({
      n: instances.length * CALLERS * ROUNDS * 3,
    });
    expect(samples).toBeGreaterThan(10);
    expect(maxBackends).toBeGreaterThan(0);
    expect(maxBackends).toBeLessThanOrEqual(SERVER_POOL_SIZE);
    const pool = pools.find((p) => p.database === 'postgres')!;
    expect(pool.sv_active + pool.sv_idle + pool.sv_used).toBeLessThanOrEqual(SERVER_POOL_SIZE);
  });
});
