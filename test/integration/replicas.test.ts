import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Database, DatabaseConnectionError } from '../../src/index.js';
import { startPostgres, startStandby, type PostgresServer } from '../support/postgres-server.js';

let primary: PostgresServer;
let standby: PostgresServer;
const databases: Database[] = [];

/** A Database with the standby as its replica and short probe/ban times for tests. */
function open(options: ConstructorParameters<typeof Database>[0] = {}): Database {
  const db = new Database({
    connectionString: `${primary.url}?sslmode=disable`,
    replicas: [{ connectionString: `${standby.url}?sslmode=disable`, name: 'standby' }],
    min: 1,
    max: 4,
    connectionTimeoutMillis: 2000,
    validationTimeoutMillis: 500,
    replicaCheckIntervalMillis: 100,
    replicaBanMillis: 400,
    logLevel: 'silent',
    ...options,
  });
  databases.push(db);
  return db;
}

async function until(condition: () => boolean | Promise<boolean>, timeoutMillis = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMillis;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

const onReplica = async (db: Database, options = {}) =>
  (await db.executeQuery<{ r: boolean }>('SELECT pg_is_in_recovery() AS r', [], options))[0]!.r;

beforeAll(async () => {
  primary = await startPostgres({ replication: true });
  standby = await startStandby(primary);
  await primary.query('CREATE TABLE items (id int PRIMARY KEY, note text)');
  await until(async () => (await standby.query("SELECT to_regclass('items') IS NOT NULL AS ok")).rows[0]!.ok === true);
}, 120_000);

afterAll(async () => {
  await Promise.all(databases.map((db) => db.shutdown({ timeoutMillis: 1000 })));
  await standby?.destroy();
  await primary?.destroy();
});

describe('read replicas', () => {
  test('reads land on the replica and writes on the primary', async () => {
    const db = open();
    await db.ready({ timeoutMillis: 10_000 });
    await until(() => db.getStats().nodes[1]!.isInRecovery === true);
    expect(await onReplica(db)).toBe(true);
    expect(
      await db.withDb(true, async (c) => (await c.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')).rows[0]!.r),
    ).toBe(true);
    expect(
      await db.withDb(false, async (c) => (await c.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')).rows[0]!.r),
    ).toBe(false);
    expect(await onReplica(db, { readOnly: false })).toBe(false);
    expect(await onReplica(db, { target: 'primary' })).toBe(false);
    expect(await onReplica(db, { target: 'replica' })).toBe(true);
    const nodes = db.getStats().nodes;
    expect(nodes.map((n) => [n.name, n.role, n.status])).toEqual([
      ['primary', 'primary', 'up'],
      ['standby', 'replica', 'up'],
    ]);
    await expect(db.executeQuery('SELECT 1', [], { readOnly: false, target: 'replica' })).rejects.toThrow(TypeError);
  });

  test('db.stream and db.copyTo read from the replica; db.stream with readOnly: false runs on the primary', async () => {
    const db = open();
    await db.ready({ timeoutMillis: 10_000 });
    await until(() => db.getStats().nodes[1]!.isInRecovery === true && db.getStats().nodes[1]!.status === 'up');
    const seen: boolean[] = [];
    for await (const row of db.stream<{ r: boolean }>('SELECT pg_is_in_recovery() AS r FROM generate_series(1, 250)', [], {
      target: 'replica',
      batchSize: 100,
    }))
      seen.push(row.r);
    expect(seen).toHaveLength(250);
    expect(new Set(seen)).toEqual(new Set([true]));
    const written: string[] = [];
    const rows = await db.copyTo(
      'COPY (SELECT pg_is_in_recovery()) TO STDOUT',
      new Writable({ write: (chunk, _encoding, done) => (written.push(String(chunk)), done()) }),
      { target: 'replica' },
    );
    expect([rows, written.join('')]).toEqual([1, 't\n']);
    const onPrimary: boolean[] = [];
    for await (const row of db.stream<{ r: boolean }>('SELECT pg_is_in_recovery() AS r', [], { readOnly: false }))
      onPrimary.push(row.r);
    expect(onPrimary).toEqual([false]);
    expect(db.getStats().nodes.map((node) => node.activeConnections)).toEqual([0, 0]);
  });

  test('a stopped replica is banned, its reads go to the primary without failures, and a restart brings them back', async () => {
    const db = open();
    await db.ready({ timeoutMillis: 10_000 });
    await until(() => db.getStats().nodes[1]!.isInRecovery === true);
    const counts = { attempted: 0, failed: 0, replica: 0, primary: 0, failedAfterBan: 0 };
    let banned = false;
    let running = true;
    const loop = async () => {
      while (running) {
        counts.attempted++;
        try {
          if (await onReplica(db)) counts.replica++;
          else counts.primary++;
        } catch {
          counts.failed++;
          if (banned) counts.failedAfterBan++;
        }
      }
    };
    const readers = Array.from({ length: 4 }, loop);
    await new Promise((resolve) => setTimeout(resolve, 300));
    await standby.stop('immediate');
    await until(() => db.getStats().nodes[1]!.status === 'banned');
    banned = true;
    const health = await db.healthCheck({ timeoutMillis: 2000 });
    expect(health.status).toBe('degraded');
    expect(health.replicas?.[0]).toMatchObject({ name: 'standby', status: 'banned' });
    const primaryBefore = counts.primary;
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(counts.primary).toBeGreaterThan(primaryBefore);
    const failedWhileDown = counts.failed;
    await standby.start();
    await until(() => db.getStats().nodes[1]!.status === 'up');
    const replicaBefore = counts.replica;
    await until(() => counts.replica > replicaBefore + 20);
    running = false;
    await Promise.all(readers);
    console.log(
      `[replicas] failover: attempted=${counts.attempted} failed=${counts.failed} failedAfterBan=${counts.failedAfterBan} servedByReplica=${counts.replica} servedByPrimary=${counts.primary}`,
    );
    expect(counts.failedAfterBan).toBe(0);
    // Before the ban only the reads in flight on the dead replica may fail (4 readers, retried once each).
    expect(failedWhileDown).toBeLessThanOrEqual(4);
    expect((await db.healthCheck({ timeoutMillis: 2000 })).status).toBe('healthy');
  });

  test('a paused replay makes the replica lag past the limit, routes reads to the primary, and resuming brings them back', async () => {
    const db = open({ replicaMaxLagMillis: 300 });
    await db.ready({ timeoutMillis: 10_000 });
    await until(() => db.getStats().nodes[1]!.lagMillis === 0);
    let writing = true;
    let id = 1000;
    const writer = (async () => {
      while (writing) {
        await db.executeQuery('INSERT INTO items VALUES ($1, $2)', [id++, 'lag'], { readOnly: false });
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    await standby.query('SELECT pg_wal_replay_pause()');
    await until(() => db.getStats().nodes[1]!.status === 'lagging');
    expect(db.getStats().nodes[1]!.lagMillis).toBeGreaterThan(300);
    expect(await onReplica(db)).toBe(false);
    await standby.query('SELECT pg_wal_replay_resume()');
    await until(() => db.getStats().nodes[1]!.status === 'up');
    expect(await onReplica(db)).toBe(true);
    writing = false;
    await writer;
  });

  test('a read with a write token sees that write even while the replica replay is paused', async () => {
    const db = open({ replicaMaxLagMillis: 600_000, replicaWaitMillis: 200 });
    await db.ready({ timeoutMillis: 10_000 });
    await until(() => db.getStats().nodes[1]!.lagMillis === 0);
    await db.executeQuery('INSERT INTO items VALUES (1, $1)', ['before pause'], { readOnly: false });
    // Keep WAL arriving so the pause takes effect, then write the row the token must cover.
    await standby.query('SELECT pg_wal_replay_pause()');
    await until(async () => {
      await primary.query('SELECT pg_switch_wal()');
      return (await standby.query<{ s: string }>('SELECT pg_get_wal_replay_pause_state() AS s')).rows[0]!.s === 'paused';
    });
    await db.executeQuery('INSERT INTO items VALUES (2, $1)', ['after pause'], { readOnly: false });
    const token = await db.getWriteToken();
    expect(token).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    const stale = await db.executeQuery('SELECT id FROM items WHERE id = 2', [], { target: 'replica' });
    expect(stale).toEqual([]);
    const fresh = await db.executeQuery('SELECT id FROM items WHERE id = 2', [], { afterWrite: token });
    expect(fresh).toEqual([{ id: 2 }]);
    await expect(db.executeQuery('SELECT 1', [], { afterWrite: token, target: 'replica' })).rejects.toBeInstanceOf(
      DatabaseConnectionError,
    );
    await expect(db.executeQuery('SELECT 1', [], { afterWrite: 'not-a-token' })).rejects.toThrow(TypeError);
    await standby.query('SELECT pg_wal_replay_resume()');
    await until(
      async () =>
        (await db.executeQuery('SELECT id FROM items WHERE id = 2', [], { afterWrite: token, target: 'replica' })).length === 1,
    );
  });

  test('a replica URL that points at a primary is reported and gets no reads', async () => {
    const db = new Database({
      connectionString: `${primary.url}?sslmode=disable`,
      replicas: [{ connectionString: `${primary.url}?sslmode=disable`, name: 'not-a-replica' }],
      min: 1,
      max: 2,
      replicaCheckIntervalMillis: 100,
      logLevel: 'silent',
    });
    databases.push(db);
    await until(() => db.getStats().nodes[1]!.isInRecovery === false);
    expect(db.getStats().nodes[1]!.status).toBe('banned');
    const health = await db.healthCheck({ timeoutMillis: 2000 });
    expect(health.status).toBe('degraded');
    expect(health.replicas?.[0]).toMatchObject({ name: 'not-a-replica', isInRecovery: false, status: 'banned' });
    await expect(db.executeQuery('SELECT 1', [], { target: 'replica' })).rejects.toBeInstanceOf(DatabaseConnectionError);
  });
});
