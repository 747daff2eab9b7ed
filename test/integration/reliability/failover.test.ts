/**
 * Scenario 10 (issue 14): the primary moves. A primary and a streaming standby with synchronous
 * replication (`synchronous_standby_names='*'`):
 *
 * - a DNS name that moves, modelled by a loopback proxy whose target is switched: the address points
 *   at the standby (the pool, with the default target_session_attrs, holds connections there) and then
 *   flips to the primary. No write fails later than 1 s after the flip; no pooled connection stays on
 *   the standby.
 * - a Patroni-style host list `primary,standby` with read-write: the primary is stopped under write
 *   load and the standby promoted with `pg_promote()`. Nothing acknowledged is lost; writes succeed
 *   again within 1 s of the promotion finishing; health says `degraded` while the primary is being
 *   found and names the new primary afterwards. The old primary then comes back as a standby of the
 *   new one and gets no writes; a reader with readTargetSessionAttrs prefer-standby reads from it.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Database, DbError, type DatabaseOptions } from '../../../src/index.js';
import { startFaultProxy, type FaultProxy } from '../../support/fault-proxy.js';
import { restartAsStandby, startPostgres, startStandby, type PostgresServer } from '../../support/postgres-server.js';
import { adminQuery, eventually, guardProcess, isOutcomeUnknown, printFigures, sleep, uniqueName } from './support.js';

const WORKERS = 6;
/** The figure the pool promises: writes work again this soon after the primary is reachable again. */
const RESUME_BOUND_MILLIS = 1000;

let primary: PostgresServer;
let standby: PostgresServer;
let proxy: FaultProxy | undefined;
const databases: Database[] = [];
const guard = guardProcess();

beforeAll(async () => {
  primary = await startPostgres({ replication: true, conf: { synchronous_standby_names: '*' } });
  // The standby must not wait for a synchronous standby of its own once it is promoted.
  standby = await startStandby(primary, { conf: { synchronous_standby_names: '' } });
  await primary.query('CREATE TABLE failover_writes (key text PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())');
  await eventually(async () =>
    (await adminQuery<{ ok: boolean }>(standby.url, "SELECT to_regclass('failover_writes') IS NOT NULL AS ok"))[0]!.ok
      ? true
      : undefined,
  );
}, 180_000);

afterAll(async () => {
  await Promise.all(databases.map((db) => db.shutdown({ timeoutMillis: 1000 })));
  await proxy?.close();
  await standby?.destroy();
  await primary?.destroy();
  guard.dispose();
});

function open(options: DatabaseOptions): Database {
  const db = new Database({
    user: primary.user,
    password: primary.password,
    database: primary.database,
    sslMode: 'disable',
    logLevel: 'silent',
    min: 2,
    max: WORKERS,
    connectionTimeoutMillis: 3000,
    validationTimeoutMillis: 500,
    ...options,
  });
  databases.push(db);
  return db;
}

interface Write {
  key: string;
  startedAt: number;
  endedAt: number;
  outcome: 'committed' | 'rejected' | 'unknown';
  code?: string;
}

/** WORKERS loops of single-row insert transactions until `stop()`; every write is recorded. */
function writeLoad(db: Database, prefix: string, timeoutMillis: number) {
  const writes: Write[] = [];
  let isRunning = true;
  const loop = async (worker: number) => {
    for (let i = 0; isRunning; i++) {
      const key = `${prefix}-${worker}-${i}`;
      const startedAt = performance.now();
      try {
        await db.withDb({ readOnly: false, timeoutMillis }, (client) =>
          client.query('INSERT INTO failover_writes (key) VALUES ($1)', [key]),
        );
        writes.push({ key, startedAt, endedAt: performance.now(), outcome: 'committed' });
      } catch (error) {
        const outcome = isOutcomeUnknown(error) ? 'unknown' : 'rejected';
        writes.push({ key, startedAt, endedAt: performance.now(), outcome, code: (error as DbError).code });
        // A failed write is retried by the caller's loop at once; keep the failure count meaningful.
        await sleep(10);
      }
    }
  };
  const running = Promise.all(Array.from({ length: WORKERS }, (_, worker) => loop(worker)));
  return {
    writes,
    async stop() {
      isRunning = false;
      await running;
    },
  };
}

/** How many of `keys` the server has. */
async function countPresent(server: PostgresServer, keys: string[]): Promise<number> {
  const rows = await adminQuery<{ n: string }>(server.url, 'SELECT count(*) AS n FROM failover_writes WHERE key = ANY($1)', [
    keys,
  ]);
  return Number(rows[0]!.n);
}

/** Client sessions of `applicationName` on `server`. */
async function sessionsOn(server: PostgresServer, applicationName: string): Promise<number> {
  const rows = await adminQuery<{ n: string }>(
    server.url,
    "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1 AND backend_type = 'client backend'",
    [applicationName],
  );
  return Number(rows[0]!.n);
}

describe('failover', () => {
  test('an address flipped from a standby to the primary: no write fails 1 s after the flip, no connection stays on the standby', async () => {
    // The name points at the standby (a demoted writer, or DNS not yet moved), and the pool holds
    // connections there: with the default target_session_attrs (any) it takes what answers.
    proxy = await startFaultProxy({ targetHost: standby.host, targetPort: standby.port });
    const applicationName = uniqueName('flip');
    const db = open({ host: proxy.host, port: proxy.port, applicationName });
    await db.ready({ timeoutMillis: 10_000 });
    expect(await db.executeQuery('SELECT 1 AS one')).toEqual([{ one: 1 }]);
    const heldOnStandby = await sessionsOn(standby, applicationName);
    const load = writeLoad(db, 'flip', 1000);
    await sleep(1000);
    const flippedAt = performance.now();
    proxy.retarget({ host: primary.host, port: primary.port });
    await sleep(1500);
    await load.stop();
    const stats = db.getStats();
    const onStandby = await sessionsOn(standby, applicationName);

    const after = load.writes.filter((w) => w.startedAt >= flippedAt);
    const failedLate = load.writes.filter((w) => w.outcome !== 'committed' && w.endedAt > flippedAt + RESUME_BOUND_MILLIS);
    const failedAfterFlip = load.writes.filter((w) => w.outcome !== 'committed' && w.endedAt > flippedAt);
    const lastFailureAfterFlip =
      failedAfterFlip.length === 0 ? 0 : Math.max(...failedAfterFlip.map((w) => w.endedAt - flippedAt));
    const firstCommitAfterFlip = load.writes
      .filter((w) => w.outcome === 'committed' && w.endedAt > flippedAt)
      .reduce((min, w) => Math.min(min, w.endedAt - flippedAt), Infinity);
    printFigures('failover-flip', {
      writes: load.writes.length,
      sessionsHeldOnStandbyBefore: heldOnStandby,
      failedWhileOnStandby: load.writes.filter((w) => w.outcome !== 'committed' && w.endedAt <= flippedAt).length,
      failedAfterFlip: failedAfterFlip.length,
      lastFailureAfterFlipMillis: Math.round(lastFailureAfterFlip),
      firstCommitAfterFlipMillis: Math.round(firstCommitAfterFlip),
      committedAfterFlip: after.filter((w) => w.outcome === 'committed').length,
      sessionsLeftOnStandby: onStandby,
      notPrimaryEvictions: stats.notPrimaryEvictions,
      roleMismatches: stats.roleMismatches,
      primaryChanges: stats.primaryChanges,
    });
    expect(failedLate.map((w) => w.code)).toEqual([]);
    expect(after.filter((w) => w.outcome === 'committed').length).toBeGreaterThan(0);
    expect(heldOnStandby).toBeGreaterThanOrEqual(1);
    expect(onStandby).toBe(0);
    expect(stats.nodes[0]!.currentHost).toBe(`127.0.0.1:${proxy.port}`);
    // The pool never had a primary before the flip: the first one found is not a change.
    expect(stats.primaryChanges).toBe(0);
    expect(guard.crashes).toEqual([]);
    await db.shutdown({ timeoutMillis: 1000 });
    await proxy.close();
    proxy = undefined;
  });

  test('a standby promoted under write load: no acknowledged commit lost, writes back within 1 s, the old primary gets no writes', async () => {
    const applicationName = uniqueName('promote');
    const db = open({
      hosts: [
        { host: primary.host, port: primary.port },
        { host: standby.host, port: standby.port },
      ],
      applicationName,
    });
    expect(db.config.targetSessionAttrs).toBe('read-write');
    await db.ready({ timeoutMillis: 10_000 });
    // A second Database reads from the standbys of the same list (readTargetSessionAttrs prefer-standby):
    // its reads must follow the roles, to the old primary once it is back as a standby.
    const reader = open({
      hosts: [
        { host: primary.host, port: primary.port },
        { host: standby.host, port: standby.port },
      ],
      applicationName: uniqueName('promote-reader'),
      readTargetSessionAttrs: 'prefer-standby',
      replicaBanMillis: 200,
      min: 0,
    });
    const readPort = async () => (await reader.executeQuery<{ port: number }>('SELECT inet_server_port() AS port'))[0]!.port;
    expect(await eventually(async () => ((await readPort()) === standby.port ? true : undefined))).toBe(true);
    const load = writeLoad(db, 'promote', 3000);
    await sleep(500);
    await primary.stop('fast');
    const stoppedAt = performance.now();
    // The pool is looking for a primary now (the old one is gone, the standby is not promoted yet); the
    // health check says so once the pool has noticed (a probe that reached the stopped host first says unhealthy).
    const during = await eventually(async () => {
      const report = await db.healthCheck({ timeoutMillis: 500 });
      return report.status === 'degraded' ? report : undefined;
    }, 3000);
    await standby.query('SELECT pg_promote(true, 60)');
    const promotedAt = performance.now();
    await sleep(1500);
    const after = await db.healthCheck({ timeoutMillis: 2000 });

    // The old primary comes back as a standby of the new one: it must get none of the writes.
    await restartAsStandby(primary, standby);
    const rejoinedAt = performance.now();
    await sleep(1000);
    await load.stop();
    const stats = db.getStats();
    const onOldPrimary = await sessionsOn(primary, applicationName);
    // The roles swapped: the reader's reads now go to the old primary, a standby of the new one.
    const readerFollowed = await eventually(async () => ((await readPort()) === primary.port ? true : undefined), 10_000);
    const readerStatuses = reader.getStats().nodes.map((node) => [node.name, node.status]);

    const committed = load.writes.filter((w) => w.outcome === 'committed').map((w) => w.key);
    const present = await countPresent(standby, committed);
    const failedLate = load.writes.filter((w) => w.outcome !== 'committed' && w.endedAt > promotedAt + RESUME_BOUND_MILLIS);
    const firstCommitAfterStop = load.writes
      .filter((w) => w.outcome === 'committed' && w.startedAt >= stoppedAt)
      .reduce((min, w) => Math.min(min, w.endedAt), Infinity);
    const failedAfterRejoin = load.writes.filter((w) => w.outcome !== 'committed' && w.endedAt > rejoinedAt);
    printFigures('failover-promote', {
      writes: load.writes.length,
      committed: committed.length,
      acknowledgedLost: committed.length - present,
      outcomeUnknown: load.writes.filter((w) => w.outcome === 'unknown').length,
      rejected: load.writes.filter((w) => w.outcome === 'rejected').length,
      promotionMillis: Math.round(promotedAt - stoppedAt),
      writesBackAfterPromotionMillis: Math.max(0, Math.round(firstCommitAfterStop - promotedAt)),
      failedLaterThan1sAfterPromotion: failedLate.length,
      healthDuring: during.status,
      healthAfter: after.status,
      failedAfterOldPrimaryRejoined: failedAfterRejoin.length,
      sessionsOnOldPrimary: onOldPrimary,
      primaryChanges: stats.primaryChanges,
      roleMismatches: stats.roleMismatches,
    });
    expect(committed.length - present).toBe(0);
    expect(firstCommitAfterStop - promotedAt).toBeLessThanOrEqual(RESUME_BOUND_MILLIS);
    expect(failedLate.map((w) => w.code)).toEqual([]);
    expect(during).toMatchObject({ status: 'degraded', primaryHost: null });
    expect(during.error).toContain('the primary is being found');
    expect(after).toMatchObject({ status: 'healthy', isReplica: false, primaryHost: `127.0.0.1:${standby.port}` });
    expect(failedAfterRejoin).toEqual([]);
    expect(onOldPrimary).toBe(0);
    expect(stats.primaryChanges).toBe(1);
    expect(readerFollowed).toBe(true);
    expect(readerStatuses).toEqual([
      ['primary', 'up'],
      [`127.0.0.1:${primary.port}`, 'up'],
      [`127.0.0.1:${standby.port}`, 'primary'],
    ]);
    expect(guard.crashes).toEqual([]);
  });
});
