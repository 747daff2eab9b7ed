import { afterAll, beforeAll, expect, test } from 'vitest';
import { Database, DatabaseQueryError } from '../../src/index.js';
import { getTestDatabaseUrl } from '../support/database-url.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';

let proxy: FaultProxy;
let db: Database;

beforeAll(async () => {
  const url = new URL(getTestDatabaseUrl());
  proxy = await startFaultProxy({ targetHost: url.hostname, targetPort: Number(url.port) });
  db = new Database({
    host: proxy.host,
    port: proxy.port,
    user: decodeURIComponent(url.username),
    password: decodeURIComponent(url.password),
    database: url.pathname.slice(1) || 'postgres',
    sslMode: 'disable',
    min: 0,
    max: 2,
    connectionTimeoutMillis: 5000,
    logLevel: 'silent',
  });
});

afterAll(async () => {
  await db?.shutdown({ timeoutMillis: 200 });
  await proxy?.close();
});

test('an AbortSignal ends a wait for a new connection at once, long before the connect timeout, and the pool serves after the link heals', async () => {
  proxy.blackhole();
  const controller = new AbortController();
  const startedAt = Date.now();
  const call = db.executeQuery('SELECT 1', [], { signal: controller.signal }).then(
    () => 'resolved',
    (error: unknown) => error,
  );
  setTimeout(() => controller.abort(), 100);
  const outcome = await call;
  const waitedMillis = Date.now() - startedAt;
  expect(outcome).toBeInstanceOf(DatabaseQueryError);
  expect((outcome as DatabaseQueryError).code).toBe('QUERY_CANCELLED');
  // The connect timeout is 5000 ms: ending well before it shows the abort, not the timeout, ended the wait.
  expect(waitedMillis).toBeLessThan(2000);
  proxy.heal();
  expect(await db.executeQuery<{ n: number }>('SELECT 1 AS n')).toEqual([{ n: 1 }]);
});
