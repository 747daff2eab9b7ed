import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { getTestDatabaseUrl } from '../support/database-url.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { startPostgres, startStandby, type PostgresServer } from '../support/postgres-server.js';

/** Polls `check` until it returns a value other than undefined, or fails after `timeoutMillis`. */
async function eventually<T>(check: () => Promise<T | undefined>, timeoutMillis = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMillis;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMillis} ms`);
    await sleep(50, undefined, { ref: false });
  }
}

/** Resolves with what `promise` settled to, or 'pending' if it has not settled within `ms`. */
async function within<T>(ms: number, promise: Promise<T>): Promise<{ value: T } | { error: unknown } | 'pending'> {
  const settled = promise.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
  return Promise.race([settled, sleep(ms, 'pending' as const, { ref: false })]);
}

function clientFor(target: { host: string; port: number }, server: PostgresServer): pg.Client {
  const client = new pg.Client({
    host: target.host,
    port: target.port,
    user: server.user,
    password: server.password,
    database: server.database,
    connectionTimeoutMillis: 5_000,
  });
  client.on('error', () => undefined);
  return client;
}

let server: PostgresServer;
const clients: pg.Client[] = [];

beforeAll(async () => {
  server = await startPostgres({ replication: true });
});
afterAll(async () => {
  await server?.destroy();
});
afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.end().catch(() => undefined)));
});

describe('startPostgres', () => {
  it('serves PostgreSQL 18 to the postgres superuser over SCRAM on a loopback port', async () => {
    const client = new pg.Client({ connectionString: server.url });
    clients.push(client);
    await client.connect();
    const { rows } = await client.query<{ user: string; version: number; superuser: boolean }>(
      "SELECT current_user AS user, current_setting('server_version_num')::int AS version, rolsuper AS superuser FROM pg_roles WHERE rolname = current_user",
    );
    expect(rows).toEqual([{ user: 'postgres', version: expect.any(Number), superuser: true }]);
    expect(rows[0]!.version).toBeGreaterThanOrEqual(180000);
    expect(server.host).toBe('127.0.0.1');
    expect(server.isRunning()).toBe(true);
  });

  it('rejects a wrong password with invalid_password (28P01)', async () => {
    const client = new pg.Client({
      host: server.host,
      port: server.port,
      user: 'postgres',
      password: 'wrong',
      database: 'postgres',
    });
    await expect(client.connect()).rejects.toMatchObject({ code: '28P01' });
  });

  it('keeps committed rows across a fast restart on the same port', async () => {
    await server.query('CREATE TABLE restart_fast (id int PRIMARY KEY)');
    await server.query('INSERT INTO restart_fast VALUES ($1)', [1]);
    const port = server.port;
    await server.stop('fast');
    expect(server.isRunning()).toBe(false);
    await server.start();
    expect(server.port).toBe(port);
    expect((await server.query('SELECT id FROM restart_fast')).rows).toEqual([{ id: 1 }]);
  });

  it('recovers committed rows after an immediate (crash-like) restart and drops open connections', async () => {
    await server.query('CREATE TABLE restart_immediate (id int PRIMARY KEY)');
    await server.query('INSERT INTO restart_immediate VALUES (42)');
    const client = clientFor(server, server);
    clients.push(client);
    await client.connect();
    await server.restart('immediate');
    await expect(client.query('SELECT 1')).rejects.toThrow();
    expect((await server.query('SELECT id FROM restart_immediate')).rows).toEqual([{ id: 42 }]);
  });

  it('applies extra settings and max_connections, and destroy removes its directory idempotently', async () => {
    const other = await startPostgres({ conf: { work_mem: '7MB' }, maxConnections: 20, password: 'other secret' });
    try {
      const { rows } = await other.query(
        "SELECT current_setting('work_mem') AS work_mem, current_setting('max_connections') AS max",
      );
      expect(rows).toEqual([{ work_mem: '7MB', max: '20' }]);
      expect(decodeURIComponent(new URL(other.url).password)).toBe('other secret');
    } finally {
      await other.destroy();
    }
    expect(other.isRunning()).toBe(false);
    expect(existsSync(other.dataDir)).toBe(false);
    await expect(other.destroy()).resolves.toBeUndefined();
  });
});

describe('startStandby', () => {
  it('streams a row written on the primary to a standby that is in recovery and read-only', async () => {
    const standby = await startStandby(server);
    try {
      expect(standby.role).toBe('standby');
      expect(standby.port).not.toBe(server.port);
      await server.query('CREATE TABLE replicated (note text)');
      await server.query('INSERT INTO replicated VALUES ($1)', ['hello standby']);
      const rows = await eventually(async () => {
        const result = await standby.query("SELECT note FROM replicated WHERE note = 'hello standby'").catch(() => undefined);
        return result?.rows.length ? result.rows : undefined;
      });
      expect(rows).toEqual([{ note: 'hello standby' }]);
      expect((await standby.query('SELECT pg_is_in_recovery() AS r')).rows).toEqual([{ r: true }]);
      await expect(standby.query('INSERT INTO replicated VALUES ($1)', ['nope'])).rejects.toMatchObject({ code: '25006' });
      const senders = await server.query("SELECT state FROM pg_stat_replication WHERE application_name = 'standby'");
      expect(senders.rows).toEqual([{ state: 'streaming' }]);
    } finally {
      await standby.destroy();
    }
  });
});

describe('startFaultProxy', () => {
  let proxy: FaultProxy;
  beforeAll(async () => {
    proxy = await startFaultProxy({ targetHost: server.host, targetPort: server.port });
  });
  afterEach(() => proxy.heal());
  afterAll(async () => {
    await proxy.close();
    expect(proxy.activeConnections).toBe(0);
  });

  async function connected(): Promise<pg.Client> {
    const client = clientFor(proxy, server);
    clients.push(client);
    await client.connect();
    return client;
  }

  it('passes queries through to the server by default', async () => {
    expect(proxy.mode).toBe('pass');
    const client = await connected();
    expect((await client.query('SELECT 41 + 1 AS answer')).rows).toEqual([{ answer: 42 }]);
    expect(proxy.activeConnections).toBe(1);
  });

  it('cut resets open connections and still accepts new ones', async () => {
    const client = await connected();
    const errored = new Promise<Error>((resolve) => client.once('error', resolve));
    proxy.cut();
    expect(await errored).toBeInstanceOf(Error);
    await expect(client.query('SELECT 1')).rejects.toThrow();
    const fresh = await connected();
    expect((await fresh.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
  });

  it('blackhole leaves a query unanswered, and heal closes that connection so a new client works', async () => {
    const client = await connected();
    proxy.blackhole();
    const pending = client.query('SELECT 1');
    expect(await within(300, pending)).toBe('pending');
    proxy.heal();
    expect(await within(2_000, pending)).toMatchObject({ error: expect.any(Error) });
    const fresh = await connected();
    expect((await fresh.query('SELECT 2 AS two')).rows).toEqual([{ two: 2 }]);
  });

  it('blackhole accepts new connections but never completes their handshake', async () => {
    proxy.blackhole();
    const client = clientFor(proxy, server);
    clients.push(client);
    expect(await within(300, client.connect())).toBe('pending');
    expect(proxy.activeConnections).toBeGreaterThanOrEqual(1);
  });

  it('stall holds a query until heal, which then delivers its answer on the same connection', async () => {
    const client = await connected();
    proxy.stall();
    const pending = client.query('SELECT 3 AS three');
    expect(await within(300, pending)).toBe('pending');
    proxy.heal();
    expect(await within(2_000, pending)).toMatchObject({ value: { rows: [{ three: 3 }] } });
  });

  it('setLatency delays each round trip by at least the latency in each direction', async () => {
    const client = await connected();
    proxy.setLatency(100);
    const started = performance.now();
    await client.query('SELECT 1');
    expect(performance.now() - started).toBeGreaterThanOrEqual(195);
    proxy.setLatency(0);
    const fast = performance.now();
    await client.query('SELECT 1');
    expect(performance.now() - fast).toBeLessThan(150);
  });
});

describe('getTestDatabaseUrl', () => {
  it('points at a server that answers', async () => {
    const client = new pg.Client({ connectionString: getTestDatabaseUrl() });
    clients.push(client);
    await client.connect();
    expect((await client.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
  });
});
