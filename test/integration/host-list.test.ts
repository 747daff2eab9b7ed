import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Database, DatabaseConnectionError, type DatabaseOptions } from '../../src/index.js';
import { isSkipped, pgBouncerUnavailableReason, startPgBouncer, type PgBouncer } from '../support/pgbouncer.js';
import { findFreePort, startPostgres, startStandby, type PostgresServer } from '../support/postgres-server.js';

const noPgBouncer = pgBouncerUnavailableReason();
if (noPgBouncer) console.warn(`test/integration/host-list.test.ts: the PgBouncer host-list test is skipped: ${noPgBouncer}`);

let primary: PostgresServer;
let standby: PostgresServer;
const databases: Database[] = [];

/** A Database over a host list of the given servers (by port), plaintext, short deadlines. */
function open(ports: readonly number[], options: DatabaseOptions = {}): Database {
  const list = ports.map((port) => `127.0.0.1:${port}`).join(',');
  const db = new Database({
    connectionString: `postgres://postgres:${encodeURIComponent(primary.password)}@${list}/postgres?sslmode=disable`,
    min: 1,
    max: 3,
    connectionTimeoutMillis: 2000,
    logLevel: 'silent',
    ...options,
  });
  databases.push(db);
  return db;
}

/** The port of the server a statement of this Database reached. */
async function reachedPort(db: Database, readOnly = true): Promise<number> {
  const rows = await db.executeQuery<{ port: number }>('SELECT inet_server_port() AS port', [], { readOnly });
  return rows[0]!.port;
}

beforeAll(async () => {
  primary = await startPostgres({ replication: true });
  standby = await startStandby(primary);
}, 120_000);

afterAll(async () => {
  await Promise.all(databases.map((db) => db.shutdown({ timeoutMillis: 1000 })));
  await standby?.destroy();
  await primary?.destroy();
});

describe('host lists', () => {
  test('with the standby listed first, writes find the primary (read-write is the default for a list)', async () => {
    const db = open([standby.port, primary.port]);
    await db.ready({ timeoutMillis: 10_000 });
    expect(db.config.targetSessionAttrs).toBe('read-write');
    expect(await reachedPort(db, false)).toBe(primary.port);
    await db.withDb(false, async (client) => {
      await client.query('CREATE TABLE IF NOT EXISTS host_list_writes (id int)');
      await client.query('INSERT INTO host_list_writes VALUES (1)');
    });
    const stats = db.getStats();
    expect(stats.nodes[0]!.currentHost).toBe(`127.0.0.1:${primary.port}`);
    // The standby was tried once, first, and its connection closed at once.
    expect(stats.roleMismatches).toBe(1);
    expect(stats.primaryChanges).toBe(0);
  });

  test.each([
    ['any', 'first host'],
    ['read-write', 'primary'],
    ['primary', 'primary'],
    ['read-only', 'standby'],
    ['standby', 'standby'],
    ['prefer-standby', 'standby'],
  ] as const)('target_session_attrs=%s reaches the %s whichever way the list is ordered', async (attrs, expected) => {
    for (const order of [
      [primary, standby],
      [standby, primary],
    ]) {
      const db = open(
        order.map((server) => server.port),
        { targetSessionAttrs: attrs, min: 0 },
      );
      const wanted = expected === 'first host' ? order[0]! : expected === 'primary' ? primary : standby;
      expect(await reachedPort(db), `${attrs} over ${order.map((s) => s.role).join(',')}`).toBe(wanted.port);
      await db.shutdown({ timeoutMillis: 1000 });
    }
  });

  test('prefer-standby takes the primary when no host is a standby', async () => {
    const db = open([primary.port, primary.port], { targetSessionAttrs: 'prefer-standby', min: 0 });
    expect(await reachedPort(db)).toBe(primary.port);
  });

  test('a host that refuses connections is passed over for the next one', async () => {
    const closedPort = await findFreePort();
    const db = open([closedPort, primary.port]);
    await db.ready({ timeoutMillis: 10_000 });
    expect(await reachedPort(db, false)).toBe(primary.port);
  });

  test('a standby-only list with read-write fails ready() in its timeout, saying no host accepted writes', async () => {
    const db = open([standby.port, standby.port]);
    const startedAt = Date.now();
    const error = await db.ready({ timeoutMillis: 1500 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(DatabaseConnectionError);
    expect((error as Error).message).toContain('no host accepted writes (target_session_attrs=read-write)');
    expect((error as Error).message).toContain(`127.0.0.1:${standby.port} is a standby`);
    expect(Date.now() - startedAt).toBeLessThan(1500 + 1000);
    // The same for a call: the acquire deadline ends the search with NO_SUITABLE_HOST.
    await expect(db.executeQuery('SELECT 1', [], { readOnly: false, timeoutMillis: 500 })).rejects.toMatchObject({
      code: 'NO_SUITABLE_HOST',
    });
  });

  test('readTargetSessionAttrs prefer-standby sends reads to the standby of the list and writes to the primary; health stays healthy', async () => {
    // A short ban, so a probe that a loaded machine answers late only delays the first round that counts.
    const db = open([primary.port, standby.port], { readTargetSessionAttrs: 'prefer-standby', replicaBanMillis: 200 });
    await db.ready({ timeoutMillis: 10_000 });
    // The router learns each host's role from its probe rounds (one per replicaCheckIntervalMillis).
    const statuses = () => db.getStats().nodes.map((node) => node.status);
    for (let round = 0; round < 200 && statuses().join() !== 'up,primary,up'; round++)
      await new Promise((resolve) => setTimeout(resolve, 50));
    expect(db.getStats().nodes.map((node) => [node.name, node.role, node.status])).toEqual([
      ['primary', 'primary', 'up'],
      [`127.0.0.1:${primary.port}`, 'replica', 'primary'],
      [`127.0.0.1:${standby.port}`, 'replica', 'up'],
    ]);
    expect(await reachedPort(db)).toBe(standby.port);
    expect(await reachedPort(db, false)).toBe(primary.port);
    const report = await db.healthCheck();
    expect(report.status).toBe('healthy');
    expect(report.replicas?.map((replica) => replica.status)).toEqual(['primary', 'up']);
  });

  test('with target any and the standby first, a write the standby refuses is retried on the primary and the standby connection let go', async () => {
    const db = open([standby.port, primary.port], { targetSessionAttrs: 'any', min: 1 });
    await db.ready({ timeoutMillis: 10_000 });
    expect(await reachedPort(db)).toBe(standby.port);
    // Refused with 25006 before it ran: marked not-primary, retried within the call's deadline.
    await expect(
      db.executeQuery('CREATE TABLE IF NOT EXISTS host_list_retried (id int)', [], { readOnly: false }),
    ).resolves.toEqual([]);
    expect(await reachedPort(db, false)).toBe(primary.port);
    expect(db.getStats()).toMatchObject({ notPrimaryEvictions: 1, nodes: [{ currentHost: `127.0.0.1:${primary.port}` }] });
  });

  test('db.listen with the standby listed first listens on the primary, where db.notify sends', async () => {
    const db = open([standby.port, primary.port]);
    await db.ready({ timeoutMillis: 10_000 });
    const received: string[] = [];
    const subscription = await db.listen('host_list_channel', (payload) => void received.push(payload));
    await db.notify('host_list_channel', 'hello');
    for (let round = 0; round < 200 && received.length === 0; round++) await new Promise((resolve) => setTimeout(resolve, 25));
    expect(received).toEqual(['hello']);
    await subscription.unlisten();
  });

  test('health names the host that is primary now', async () => {
    const db = open([standby.port, primary.port]);
    await db.ready({ timeoutMillis: 10_000 });
    const report = await db.healthCheck();
    expect(report).toMatchObject({ status: 'healthy', isReplica: false, primaryHost: `127.0.0.1:${primary.port}` });
  });
});

describe.skipIf(noPgBouncer !== undefined)('PgBouncer with a host list', () => {
  const bouncers: PgBouncer[] = [];
  afterAll(async () => {
    await Promise.all(bouncers.map((bouncer) => bouncer.stop()));
  });

  test('two PgBouncers in front of the standby and the primary: writes go through the one in front of the primary', async () => {
    for (const server of [standby, primary]) {
      const started = await startPgBouncer({
        targetHost: server.host,
        targetPort: server.port,
        user: server.user,
        password: server.password,
        poolMode: 'transaction',
      });
      if (isSkipped(started)) throw new Error(`PgBouncer could not start: ${started.skipped}`);
      bouncers.push(started);
    }
    const db = new Database({
      hosts: bouncers.map((bouncer) => ({ host: bouncer.host, port: bouncer.port })),
      user: primary.user,
      password: primary.password,
      database: primary.database,
      sslMode: 'disable',
      pgbouncer: true,
      min: 0,
      max: 2,
      connectionTimeoutMillis: 3000,
      logLevel: 'silent',
    });
    databases.push(db);
    // inet_server_port() is the server's port behind PgBouncer.
    expect(await reachedPort(db, false)).toBe(primary.port);
    expect(db.getStats()).toMatchObject({ roleMismatches: 1, nodes: [{ currentHost: `127.0.0.1:${bouncers[1]!.port}` }] });
    await db.shutdown({ timeoutMillis: 1000 });
  });
});
