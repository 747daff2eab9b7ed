/**
 * At the server's max_connections (issue 12, item 5): a refused new connection (53300) while the pool
 * holds live ones does not fail the caller, who waits for a pooled connection until its deadline, and
 * never opens the circuit breaker.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Database } from '../../src/index.js';
import { startPostgres, type PostgresServer } from '../support/postgres-server.js';

let server: PostgresServer;
const holders: pg.Client[] = [];

beforeAll(async () => {
  server = await startPostgres({ maxConnections: 10 });
  // Take all but 3 of the server's slots, so the pool can open 3 connections and no more.
  for (let i = 0; i < 7; i++) {
    const client = new pg.Client({ connectionString: server.url });
    client.on('error', () => undefined);
    await client.connect();
    holders.push(client);
  }
});
afterAll(async () => {
  await Promise.all(holders.map((client) => client.end().catch(() => undefined)));
  await server?.destroy();
});

describe('at max_connections', () => {
  test('12 callers on a pool of max 6 with 3 server slots all succeed within their deadline; the circuit stays closed', async () => {
    const db = new Database({
      connectionString: `${server.url}?sslmode=disable`,
      logLevel: 'silent',
      min: 0,
      max: 6,
      connectionTimeoutMillis: 3000,
    });
    try {
      const outcomes = await Promise.allSettled(
        Array.from({ length: 12 }, (_, i) =>
          db.withDb(
            true,
            async (client) => (await client.query<{ i: number }>('SELECT $1::int AS i, pg_sleep(0.1)', [i])).rows[0]!.i,
          ),
        ),
      );
      expect(outcomes.filter((o) => o.status === 'rejected').map((o) => String((o as PromiseRejectedResult).reason))).toEqual([]);
      const stats = db.getStats();
      expect(stats.nodes[0]!.circuit).toBe('closed');
      expect(stats.circuitRejections).toBe(0);
      expect(stats.connectionErrors).toBeGreaterThan(0);
      // Afterwards every read is served by the connections the pool holds.
      const reads = await Promise.allSettled(Array.from({ length: 10 }, () => db.executeQuery('SELECT 1 AS one')));
      expect(reads.filter((r) => r.status === 'rejected')).toEqual([]);
    } finally {
      await db.shutdown({ timeoutMillis: 1000 });
    }
  });
});
