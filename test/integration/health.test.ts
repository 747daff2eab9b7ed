import { createServer } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Database, HealthReport } from '../../src/index.js';
import { getTestDatabaseUrl } from '../support/database-url.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { holdConnection, openDatabase } from '../support/test-database.js';

/** ISO 8601 with milliseconds and an explicit offset, e.g. 2025-01-31T12:00:00.123+00:00. */
const ISO_WITH_OFFSET = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d$/;

const databases: Database[] = [];
function track(db: Database): Database {
  databases.push(db);
  return db;
}
afterEach(async () => {
  await Promise.all(databases.splice(0).map((db) => db.shutdown({ timeoutMillis: 1000 })));
});

/** A loopback port with nothing listening on it. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Runs a health check and how long it took; fails the test if it rejects. */
async function timedHealth(db: Database, timeoutMillis: number): Promise<{ report: HealthReport; tookMillis: number }> {
  const startedAt = performance.now();
  const report = await db.healthCheck({ timeoutMillis });
  return { report, tookMillis: performance.now() - startedAt };
}

describe('healthCheck against a server that answers', () => {
  it('reports healthy with the server version, isReplica false, an ISO 8601 time with offset, latency, pool stats and TLS', async () => {
    const db = track(openDatabase({ min: 1, max: 2 }));
    await db.ready();
    await db.executeQuery('SELECT 1');
    const { report } = await timedHealth(db, 3000);
    expect(report).toMatchObject({ status: 'healthy', isReplica: false, tls: { encrypted: false, protocol: null } });
    expect(report.error).toBeUndefined();
    expect(report.databaseVersion).toMatch(/^PostgreSQL \d+/);
    expect(report.databaseTime).toMatch(ISO_WITH_OFFSET);
    expect(Math.abs(Date.parse(report.databaseTime!) - Date.now())).toBeLessThan(60_000);
    expect(report.latencyMillis).toBeGreaterThan(0);
    expect(report.poolStats).toMatchObject({ poolSize: 1, minConnections: 1, maxConnections: 2, queriesExecuted: 1 });
    expect(report.replicas).toBeUndefined();
    expect(Object.isFrozen(report)).toBe(true);
  });

  it('stays healthy while every pooled connection is busy, because it uses its own connection', async () => {
    const db = track(openDatabase({ min: 1, max: 1 }));
    await db.ready();
    const holder = holdConnection(db);
    await holder.held;
    const { report } = await timedHealth(db, 3000);
    holder.release();
    await holder.done;
    expect(report.status).toBe('healthy');
    expect(report.poolStats.activeConnections).toBe(1);
  });

  it('reports degraded, saying why, after an acquire timed out', async () => {
    const db = track(openDatabase({ min: 1, max: 1, connectionTimeoutMillis: 200 }));
    await db.ready();
    const holder = holdConnection(db);
    await holder.held;
    await expect(db.executeQuery('SELECT 1')).rejects.toMatchObject({ code: 'POOL_TIMEOUT' });
    holder.release();
    await holder.done;
    const { report } = await timedHealth(db, 3000);
    expect(report.status).toBe('degraded');
    expect(report.error).toMatch(/acquire timed out/);
    expect(report.databaseVersion).toMatch(/^PostgreSQL/);
  });

  it('reports unhealthy after shutdown without rejecting', async () => {
    const db = track(openDatabase({ min: 0 }));
    await db.shutdown();
    const { report } = await timedHealth(db, 1000);
    expect(report).toMatchObject({ status: 'unhealthy', databaseVersion: null, isReplica: null, databaseTime: null });
    expect(report.error).toMatch(/closed/);
  });
});

describe('healthCheck against a server that does not answer', () => {
  let proxy: FaultProxy;
  beforeAll(async () => {
    const { hostname, port } = new URL(getTestDatabaseUrl());
    proxy = await startFaultProxy({ targetHost: hostname, targetPort: Number(port) });
  });
  afterAll(async () => {
    await proxy?.close();
  });

  it('resolves unhealthy within its timeout when the server accepts TCP but never answers', async () => {
    const { password, username } = new URL(getTestDatabaseUrl());
    const db = track(
      openDatabase({
        connectionString: `postgres://${username}:${password}@${proxy.host}:${proxy.port}/postgres`,
        min: 1,
        max: 1,
      }),
    );
    await db.ready();
    proxy.blackhole();
    try {
      const { report, tookMillis } = await timedHealth(db, 500);
      expect(report.status).toBe('unhealthy');
      expect(report.error).toContain('500 ms');
      expect(report.databaseVersion).toBeNull();
      expect(tookMillis).toBeGreaterThanOrEqual(450);
      expect(tookMillis).toBeLessThan(500 + 1500);
    } finally {
      proxy.heal();
    }
  });

  it('resolves unhealthy with the connection error when nothing listens on the port', async () => {
    const db = track(openDatabase({ host: '127.0.0.1', port: await closedPort(), min: 0 }));
    const { report, tookMillis } = await timedHealth(db, 2000);
    expect(report.status).toBe('unhealthy');
    expect(report.error).toMatch(/ECONNREFUSED|connect/i);
    expect(tookMillis).toBeLessThan(2000 + 1500);
  });
});
