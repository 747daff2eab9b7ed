/**
 * Scenario 1: the server is restarted (fast and immediate shutdown) under a write load of concurrent
 * `withDb` inserts with unique keys. Afterwards every insert that resolved is in the table, none that
 * rejected is half-applied, the process never crashed, and the pool serves again within a bound once
 * the server is back (the circuit breaker's half-open probe closes it). Also: idle connections from
 * before the restart are dropped, never handed to a caller.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Database, DbError } from '../../../src/index.js';
import { startPostgres, type PostgresServer, type StopMode } from '../../support/postgres-server.js';
import { eventually, guardProcess, isOutcomeUnknown, printFigures, sleep, urlVia } from './support.js';

const WORKERS = 8;
const RESET_MILLIS = 500;
/** Promised bound from "the server accepts connections again" to "the pool commits again". */
const RECOVERY_BOUND_MILLIS = RESET_MILLIS + 2500;
/**
 * The target at the default settings (issue 12, item 4; docs/reliability.md): first success after the
 * server is back. Printed beside the measured figure by `npm run reliability`; speed is not asserted.
 */
const DEFAULT_RECOVERY_TARGET_MILLIS = 250;
/**
 * What is asserted: the circuit was closed by a background trial, not by the default 5 s reset. Without
 * trials the first success came 3.5 s (1.5 s outage) to 4.9 s (0.1 s outage) after the server was back.
 */
const CLOSED_BY_TRIAL_BOUND_MILLIS = 1500;

let server: PostgresServer;
const guard = guardProcess();

beforeAll(async () => {
  server = await startPostgres();
  await server.query('CREATE TABLE writes (key text PRIMARY KEY)');
  await server.query('CREATE TABLE write_details (key text PRIMARY KEY, note text NOT NULL)');
});
afterAll(async () => {
  await server?.destroy();
  guard.dispose();
});

function open(): Database {
  return new Database({
    connectionString: urlVia(server.url),
    logLevel: 'silent',
    min: 2,
    max: WORKERS,
    connectionTimeoutMillis: 1000,
    validationTimeoutMillis: 500,
    circuitBreakerThreshold: 3,
    circuitBreakerResetMillis: RESET_MILLIS,
  });
}

interface Write {
  key: string;
  startedAt: number;
  endedAt: number;
  outcome: 'committed' | 'rejected' | 'unknown';
  code?: string;
}

/** Runs WORKERS loops of two-statement inserts until `stop()`; every write is recorded. */
function writeLoad(db: Database, prefix: string) {
  const writes: Write[] = [];
  let isRunning = true;
  const loop = async (worker: number) => {
    for (let i = 0; isRunning; i++) {
      const key = `${prefix}-${worker}-${i}`;
      const startedAt = performance.now();
      try {
        await db.withDb(false, async (client) => {
          await client.query('INSERT INTO writes (key) VALUES ($1)', [key]);
          await client.query('INSERT INTO write_details (key, note) VALUES ($1, $2)', [key, 'second half']);
        });
        writes.push({ key, startedAt, endedAt: performance.now(), outcome: 'committed' });
      } catch (error) {
        writes.push({
          key,
          startedAt,
          endedAt: performance.now(),
          outcome: isOutcomeUnknown(error) ? 'unknown' : 'rejected',
          code: error instanceof DbError ? error.code : String(error),
        });
        await sleep(10); // a failing loop must not spin
      }
    }
  };
  const done = Promise.all(Array.from({ length: WORKERS }, (_, worker) => loop(worker)));
  return { writes, stop: () => ((isRunning = false), done) };
}

async function keysIn(table: 'writes' | 'write_details', prefix: string): Promise<Set<string>> {
  const { rows } = await server.query<{ key: string }>(`SELECT key FROM ${table} WHERE key LIKE $1`, [`${prefix}-%`]);
  return new Set(rows.map((row) => row.key));
}

describe('scenario 1: server restart under write load', () => {
  for (const mode of ['fast', 'immediate'] as StopMode[]) {
    test(`after ${mode === 'fast' ? 'a fast' : 'an immediate'} restart every resolved insert is stored, none is half-applied, and the pool commits again within ${RECOVERY_BOUND_MILLIS} ms`, async () => {
      const db = open();
      await db.ready({ timeoutMillis: 5000 });
      const prefix = `restart-${mode}`;
      const load = writeLoad(db, prefix);
      await sleep(300);
      await server.stop(mode);
      const downAt = performance.now();
      // Down long enough for the breaker to open and a half-open probe to fail before the server is back.
      await sleep(800);
      await server.start();
      const backAt = performance.now();
      const recovered = await eventually(
        async () => load.writes.find((w) => w.outcome === 'committed' && w.endedAt > backAt),
        RECOVERY_BOUND_MILLIS + 5000,
        10,
      );
      const recoveryMillis = Math.max(0, Math.round(recovered.endedAt - backAt));
      await sleep(500);
      await load.stop();
      const stats = db.getStats();
      await db.shutdown({ timeoutMillis: 1000 });

      const committed = load.writes.filter((w) => w.outcome === 'committed');
      const rejected = load.writes.filter((w) => w.outcome === 'rejected');
      const unknown = load.writes.filter((w) => w.outcome === 'unknown');
      const [heads, details] = await Promise.all([keysIn('writes', prefix), keysIn('write_details', prefix)]);
      const lost = committed.filter((w) => !heads.has(w.key) || !details.has(w.key)).length;
      const halfApplied = load.writes.filter((w) => heads.has(w.key) !== details.has(w.key)).length;
      const rejectedButStored = rejected.filter((w) => heads.has(w.key) || details.has(w.key)).length;
      const unknownCommitted = unknown.filter((w) => heads.has(w.key)).length;
      // Writes that began once the pool had recovered (plus a moment for refill) all committed.
      const lateFailures = load.writes.filter((w) => w.startedAt > recovered.endedAt + 200 && w.outcome !== 'committed');
      const codes: Record<string, number> = {};
      for (const w of [...rejected, ...unknown]) codes[w.code ?? 'none'] = (codes[w.code ?? 'none'] ?? 0) + 1;

      expect(lost).toBe(0);
      expect(halfApplied).toBe(0);
      expect(rejectedButStored).toBe(0);
      expect(heads.size).toBe(committed.length + unknownCommitted);
      expect(lateFailures.map((w) => `${w.code} at +${Math.round(w.startedAt - recovered.endedAt)} ms`)).toEqual([]);
      expect(recoveryMillis).toBeLessThanOrEqual(RECOVERY_BOUND_MILLIS);
      expect(
        stats.nodes[0]?.circuit,
        JSON.stringify({
          ...stats.nodes[0],
          tail: load.writes
            .filter((w) => w.endedAt > recovered.endedAt && w.outcome !== 'committed')
            .map((w) => `${w.code}@${Math.round(w.startedAt - recovered.endedAt)}`),
        }),
      ).toBe('closed');
      expect(guard.crashes).toEqual([]);
      printFigures(`restart-${mode}`, {
        attempted: load.writes.length,
        committed: committed.length,
        rejected: rejected.length,
        outcomeUnknown: unknown.length,
        unknownThatCommitted: unknownCommitted,
        lost,
        halfApplied,
        downMillis: Math.round(backAt - downAt),
        recoveryMillis,
        circuitRejections: stats.circuitRejections,
        connectionErrors: stats.connectionErrors,
        failuresByCode:
          Object.entries(codes)
            .map(([code, n]) => `${code}:${n}`)
            .join(',') || 'none',
      });
    });
  }

  for (const mode of ['fast', 'immediate'] as StopMode[]) {
    test(`idle connections from before ${mode === 'fast' ? 'a fast' : 'an immediate'} restart are dropped and never handed to a caller`, async () => {
      const db = new Database({
        connectionString: urlVia(server.url),
        applicationName: 'rel-idle',
        logLevel: 'silent',
        min: 4,
        max: 4,
        connectionTimeoutMillis: 2000,
        validationIntervalMillis: 60_000,
        circuitBreakerThreshold: 0,
      });
      await db.ready({ timeoutMillis: 5000 });
      const before = db.getStats();
      expect(before.poolSize).toBe(4);
      await server.restart(mode);
      const restartedAt = (await server.query<{ at: Date }>('SELECT pg_postmaster_start_time() AS at')).rows[0]!.at;
      // pg-pool drops an idle client when its socket ends; validation (off here: 60 s) covers silent
      // deaths. The callers come at once and write: a write is never re-sent on another connection, so
      // a dead connection handed to one of them would surface as its error.
      const served = await Promise.all(
        Array.from({ length: 8 }, () =>
          db
            .executeQuery<{ started: Date }>(
              'SELECT backend_start AS started FROM pg_stat_activity WHERE pid = pg_backend_pid()',
              [],
              { readOnly: false },
            )
            .then((rows) => rows[0]!.started),
        ),
      );
      for (const started of served) expect(started.getTime()).toBeGreaterThanOrEqual(restartedAt.getTime());
      expect(db.getStats().errors).toBe(0);
      await eventually(
        async () => (db.getStats().connectionsClosed - before.connectionsClosed === 4 ? true : undefined),
        3000,
      ).catch(() => undefined);
      const stats = db.getStats();
      expect(stats.connectionsClosed - before.connectionsClosed, JSON.stringify({ ...stats.nodes[0] })).toBe(4);
      expect(stats.validationFailures).toBe(0);
      await db.shutdown({ timeoutMillis: 1000 });
      expect(guard.crashes).toEqual([]);
      printFigures(`restart-idle-${mode}`, {
        idleBefore: before.poolSize,
        callers: served.length,
        callerErrors: stats.errors,
        servedByPreRestartBackend: 0,
        closedPreRestart: stats.connectionsClosed - before.connectionsClosed,
      });
    });
  }

  /** Resolves with `performance.now()` of the first new connection the server accepts (polled every 5 ms). */
  async function firstAccepted(): Promise<number> {
    for (;;) {
      const client = new pg.Client({ connectionString: urlVia(server.url), connectionTimeoutMillis: 1000 });
      client.on('error', () => undefined);
      try {
        await client.connect();
        return performance.now();
      } catch {
        await sleep(5);
      } finally {
        void client.end().catch(() => undefined);
      }
    }
  }

  for (const outageMillis of [100, 1500]) {
    test(`at the default settings, a background trial closes the circuit: after a ${outageMillis / 1000} s outage the first call succeeds long before the 5 s reset`, async () => {
      // Nothing but the URL: the circuit breaker, timeouts and validation at their defaults.
      const db = new Database({ connectionString: urlVia(server.url), logLevel: 'silent' });
      await db.ready({ timeoutMillis: 5000 });
      const prefix = `restart-defaults-${outageMillis}`;
      const load = writeLoad(db, prefix);
      await sleep(300);
      await server.stop('fast');
      const downAt = performance.now();
      await sleep(outageMillis);
      const accepted = firstAccepted();
      await server.start();
      const backAt = await accepted;
      const recovered = await eventually(
        async () => load.writes.find((w) => w.outcome === 'committed' && w.endedAt > backAt),
        10_000,
        5,
      );
      const recoveryMillis = Math.max(0, Math.round(recovered.endedAt - backAt));
      await load.stop();
      const stats = db.getStats();
      await db.shutdown({ timeoutMillis: 1000 });
      const failedAfterBack = load.writes.filter((w) => w.startedAt > backAt && w.outcome !== 'committed');
      const codes: Record<string, number> = {};
      for (const w of failedAfterBack) codes[w.code ?? 'none'] = (codes[w.code ?? 'none'] ?? 0) + 1;
      printFigures(`restart-defaults-${outageMillis}ms`, {
        downMillis: Math.round(backAt - downAt),
        recoveryMillis,
        targetMillis: DEFAULT_RECOVERY_TARGET_MILLIS,
        failedAfterBack: failedAfterBack.length,
        failedAfterBackByCode:
          Object.entries(codes)
            .map(([code, n]) => `${code}:${n}`)
            .join(',') || 'none',
        circuitRejections: stats.circuitRejections,
      });
      expect(recoveryMillis).toBeLessThan(CLOSED_BY_TRIAL_BOUND_MILLIS);
      expect(guard.crashes).toEqual([]);
    });
  }
});
