/**
 * A caller waiting while the primary's pool searches its host list for a primary (none is reachable
 * yet: a promotion under way, or a list of standbys): the wait keeps the process alive, honours the
 * caller's signal, is not cut short by the circuit breaker, and health follows the search by itself.
 * A primary and a streaming standby; the tests that promote the standby come last.
 */
import { execFile } from 'node:child_process';
import diagnosticsChannel from 'node:diagnostics_channel';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Database, type DatabaseOptions } from '../../src/index.js';
import { CHANNEL_NAMES } from '../../src/tracing-channels.js';
import { startPostgres, startStandby, type PostgresServer } from '../support/postgres-server.js';
import { ensureBuiltDist, ROOT } from '../support/test-database.js';
import { sleep } from './reliability/support.js';

let primary: PostgresServer;
let standby: PostgresServer;
const databases: Database[] = [];

/** A URL of the given servers (a host list when several), plaintext, with extra query parameters. */
function urlOf(servers: readonly PostgresServer[], query = ''): string {
  const hosts = servers.map((server) => `127.0.0.1:${server.port}`).join(',');
  return `postgres://postgres:${encodeURIComponent(primary.password)}@${hosts}/postgres?sslmode=disable${query}`;
}

function open(servers: readonly PostgresServer[], options: DatabaseOptions & { query?: string } = {}): Database {
  const { query, ...rest } = options;
  const db = new Database({ connectionString: urlOf(servers, query), logLevel: 'silent', min: 0, max: 4, ...rest });
  databases.push(db);
  return db;
}

/** The code a call rejected with, or 'resolved'. */
function codeOf(call: Promise<unknown>): Promise<string> {
  return call.then(
    () => 'resolved',
    (error: unknown) => String((error as { code?: unknown }).code),
  );
}

/** Runs a node script to its end; resolves with its exit code and output whatever the code. */
function runScript(script: string, env: Record<string, string>): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [script],
      { cwd: ROOT, env: { ...process.env, ...env }, timeout: 20_000 },
      (error, stdout, stderr) => {
        const exitCode = error ? ((error as { code?: unknown }).code as number) : 0;
        resolve({ exitCode, stdout, stderr });
      },
    );
  });
}

beforeAll(async () => {
  await ensureBuiltDist();
  primary = await startPostgres({ replication: true });
  standby = await startStandby(primary);
}, 180_000);

afterAll(async () => {
  await Promise.all(databases.map((db) => db.shutdown({ timeoutMillis: 1000 })));
  await standby?.destroy();
  await primary?.destroy();
});

describe('waiting for a primary', () => {
  test('a one-shot script whose call waits for a primary stays alive until the call rejects with NO_SUITABLE_HOST', async () => {
    const { exitCode, stdout, stderr } = await runScript(join(ROOT, 'test', 'fixtures', 'wait-for-primary.mjs'), {
      FIXTURE_DATABASE_URL: urlOf([standby], '&target_session_attrs=primary'),
    });
    expect({ exitCode, stdout: stdout.trim(), stderr: stderr.trim() }).toEqual({
      exitCode: 0,
      stdout: JSON.stringify({ rejected: 'NO_SUITABLE_HOST', name: 'DatabaseConnectionError' }),
      stderr: '',
    });
  });

  test('an AbortSignal that fires while its call waits for a primary ends the wait with QUERY_CANCELLED, and no acquire timeout is counted', async () => {
    const db = open([standby], { query: '&target_session_attrs=primary', connectionTimeoutMillis: 5000 });
    const controller = new AbortController();
    const signal = controller.signal;
    const calls = [
      codeOf(db.withDb({ readOnly: false, signal }, (client) => client.query('SELECT 1'))),
      codeOf(db.executeQuery('SELECT 1', [], { signal })),
      codeOf(db.executeQuery('SELECT 1', [], { readOnly: false, signal })),
    ];
    // Long enough for each call's search to have passed the standby over and paused several times.
    await sleep(400);
    controller.abort();
    expect(await Promise.all(calls)).toEqual(['QUERY_CANCELLED', 'QUERY_CANCELLED', 'QUERY_CANCELLED']);
    const stats = (of: Database) => {
      const { errors, queriesCancelled, acquireTimeouts, poolExhaustedCount } = of.getStats();
      return { errors, queriesCancelled, acquireTimeouts, poolExhaustedCount };
    };
    expect(stats(db)).toEqual({ errors: 3, queriesCancelled: 3, acquireTimeouts: 0, poolExhaustedCount: 0 });
    // A call whose acquire deadline ends the search gets NO_SUITABLE_HOST, and that is no acquire timeout.
    const short = open([standby], { query: '&target_session_attrs=primary', connectionTimeoutMillis: 600 });
    expect(await codeOf(short.executeQuery('SELECT 1'))).toBe('NO_SUITABLE_HOST');
    expect(stats(short)).toEqual({ errors: 1, queriesCancelled: 0, acquireTimeouts: 0, poolExhaustedCount: 0 });
  }, 30_000);

  test('a one-host pool pointed at a standby (target any) keeps serving reads while a write is refused there, and after it', async () => {
    const db = open([standby], { min: 2, connectionTimeoutMillis: 4000 });
    await db.ready({ timeoutMillis: 10_000 });
    let isReading = true;
    const readErrors: string[] = [];
    let reads = 0;
    const reader = async () => {
      while (isReading) {
        await db.executeQuery('SELECT pg_sleep(0.01)').then(
          () => reads++,
          (error: unknown) => readErrors.push(String((error as { code?: unknown }).code)),
        );
      }
    };
    const readers = [reader(), reader(), reader()];
    const write = await codeOf(db.withDb(false, (client) => client.query('SELECT 1')));
    isReading = false;
    await Promise.all(readers);
    // The server refused BEGIN READ WRITE; reads went on all the while.
    expect({ write, readErrors }).toEqual({ write: 'TRANSACTION_FAILED', readErrors: [] });
    expect(reads).toBeGreaterThan(0);
    // A read on a new connection afterwards is served by the standby at once (not searched for a primary).
    const after = open([standby], { min: 0, connectionTimeoutMillis: 4000 });
    expect(await codeOf(after.withDb(false, (client) => client.query('SELECT 1')))).toBe('TRANSACTION_FAILED');
    expect(await after.executeQuery('SELECT pg_is_in_recovery() AS standby', [], { timeoutMillis: 1000 })).toEqual([
      { standby: true },
    ]);
  }, 30_000);

  test('a write refused by a one-host pool pointed at a standby is tried once more on a new connection, then fails', async () => {
    const db = open([standby], { min: 2, max: 2, connectionTimeoutMillis: 4000 });
    await db.ready({ timeoutMillis: 10_000 });
    // Each attempt of a call is one acquire.
    let acquires = 0;
    const channel = diagnosticsChannel.tracingChannel(CHANNEL_NAMES.acquire);
    const handlers = {
      start: () => void acquires++,
      end: () => undefined,
      asyncStart: () => undefined,
      asyncEnd: () => undefined,
      error: () => undefined,
    };
    channel.subscribe(handlers);
    try {
      expect(await codeOf(db.withDb(false, (client) => client.query('SELECT 1')))).toBe('TRANSACTION_FAILED');
      expect(acquires).toBe(2);
      const refused = await db
        .executeQuery('CREATE TABLE refused_on_standby (id int)', [], { readOnly: false })
        .catch((error: unknown) => error);
      expect(refused).toMatchObject({ code: 'QUERY_FAILED', sqlState: '25006' });
      // Before: up to 20 attempts per call, each letting the standby's connections go and opening new ones.
      expect(acquires).toBe(4);
    } finally {
      channel.unsubscribe(handlers);
    }
    expect(await db.executeQuery('SELECT pg_is_in_recovery() AS standby')).toEqual([{ standby: true }]);
  }, 30_000);

  // The tests below stop the primary and promote the standby, one after the other: they share that
  // failover (the first sees it under way, the second ends it, the third sees it ended).
  describe('a failover of a host list primary,standby', () => {
    let writer: Database;
    let watcher: Database;
    const circuitOf = (db: Database) => db.getStats().nodes[0]!.circuit;

    test('with the primary stopped and no traffic, healthCheck of a pool with min 0 says degraded while the primary is being found', async () => {
      writer = open([primary, standby], { max: 6, connectionTimeoutMillis: 10_000 });
      // Only health checks run on this one: nothing else would make it search.
      watcher = open([primary, standby], { connectionTimeoutMillis: 10_000 });
      await writer.ready({ timeoutMillis: 10_000 });
      await watcher.ready({ timeoutMillis: 10_000 });
      expect((await watcher.healthCheck({ timeoutMillis: 2000 })).primaryHost).toBe(`127.0.0.1:${primary.port}`);
      await primary.stop('immediate');
      const report = await watcher.healthCheck({ timeoutMillis: 2000 });
      expect({ status: report.status, primaryHost: report.primaryHost }).toEqual({ status: 'degraded', primaryHost: null });
      expect(report.error).toContain(`127.0.0.1:${standby.port} is a standby (in hot standby)`);
    });

    test('callers writing while no host is the primary wait for the promotion instead of failing with CIRCUIT_OPEN', async () => {
      // Six writers, each search round sends six connects to the stopped host: far more consecutive
      // refusals than the breaker's threshold (5).
      const writes = Array.from({ length: 6 }, (_, i) =>
        codeOf(writer.withDb(false, (client) => client.query('SELECT $1::int AS i', [i]))),
      );
      await sleep(1000);
      expect(circuitOf(writer)).toBe('closed');
      await standby.query('SELECT pg_promote()');
      expect(await Promise.all(writes)).toEqual(Array.from({ length: 6 }, () => 'resolved'));
      expect(writer.getStats().circuitRejections).toBe(0);
      expect(await codeOf(writer.executeQuery('SELECT 1', [], { readOnly: false }))).toBe('resolved');
    });

    test('after the promotion, healthCheck alone (min 0, no traffic) finds the new primary: healthy, primaryHost names it', async () => {
      const report = await watcher.healthCheck({ timeoutMillis: 2000 });
      expect({ status: report.status, primaryHost: report.primaryHost, isReplica: report.isReplica }).toEqual({
        status: 'healthy',
        primaryHost: `127.0.0.1:${standby.port}`,
        isReplica: false,
      });
      expect(watcher.getStats().primaryChanges).toBe(1);
    });
  });
});
