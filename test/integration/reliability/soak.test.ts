/**
 * Scenario 9: a soak. A fixed number of mixed reads and writes at fixed concurrency while a killer
 * terminates a random backend of the pool every ~200 ms. Callers see only the errors a killed
 * connection may cause (the statement's connection was lost; a COMMIT's outcome is unknown), every
 * committed write is stored, none is half-applied, and the heap does not grow without bound.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Database, DbError } from '../../../src/index.js';
import { getTestDatabaseUrl } from '../../support/database-url.js';
import { adminQuery, guardProcess, isOutcomeUnknown, printFigures, sleep, uniqueName, urlVia } from './support.js';

const OPERATIONS = 20_000;
const CONCURRENCY = 16;
const KILL_EVERY_MILLIS = 200;
const HEAP_SAMPLES = 40;
const table = uniqueName('rel_soak');
const appName = uniqueName('rel_soak');
const guard = guardProcess();

beforeAll(async () => {
  await adminQuery(getTestDatabaseUrl(), `CREATE TABLE ${table} (key text PRIMARY KEY, part int NOT NULL)`);
  await adminQuery(getTestDatabaseUrl(), `CREATE TABLE ${table}_detail (key text PRIMARY KEY)`);
});
afterAll(async () => {
  await adminQuery(getTestDatabaseUrl(), `DROP TABLE IF EXISTS ${table}, ${table}_detail`).catch(() => undefined);
  guard.dispose();
});

/**
 * A full garbage collection when the runtime lets us ask for one (global.gc is not exposed under
 * vitest; V8's flag can still be set at run time), so heap samples compare live data, not garbage.
 */
function collector(): (() => void) | undefined {
  try {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as unknown;
    return typeof gc === 'function' ? (gc as () => void) : undefined;
  } catch {
    return undefined;
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

const MB = 1024 * 1024;

describe('scenario 9: soak with periodic connection kills', () => {
  test(`${OPERATIONS} mixed operations at concurrency ${CONCURRENCY} with a backend killed every ${KILL_EVERY_MILLIS} ms see only connection-loss errors, lose no write, and keep the heap bounded`, async () => {
    const db = new Database({
      connectionString: urlVia(getTestDatabaseUrl()),
      applicationName: appName,
      logLevel: 'silent',
      min: 4,
      max: 8,
      connectionTimeoutMillis: 5000,
      validationTimeoutMillis: 500,
    });
    await db.ready({ timeoutMillis: 5000 });
    const gc = collector();
    const heap: number[] = [];
    const sampleHeap = () => {
      gc?.();
      heap.push(process.memoryUsage().heapUsed);
    };
    sampleHeap();

    let kills = 0;
    let isKilling = true;
    const killer = (async () => {
      while (isKilling) {
        await sleep(KILL_EVERY_MILLIS * (0.5 + Math.random()));
        const rows = await adminQuery<{ pid: number }>(
          getTestDatabaseUrl(),
          'SELECT pid FROM pg_stat_activity WHERE application_name = $1',
          [appName],
        ).catch(() => []);
        const victim = rows[Math.floor(Math.random() * rows.length)];
        if (!victim || !isKilling) continue;
        await adminQuery(getTestDatabaseUrl(), 'SELECT pg_terminate_backend($1)', [victim.pid]).catch(() => undefined);
        kills++;
      }
    })();

    const committed: string[] = [];
    const unknown: string[] = [];
    const attemptedWrites: string[] = [];
    const errors: Record<string, number> = {};
    const unexpected: unknown[] = [];
    let reads = 0;
    let next = 0;
    const sampleEvery = Math.floor(OPERATIONS / HEAP_SAMPLES);
    const startedAt = performance.now();
    const worker = async () => {
      while (next < OPERATIONS) {
        const op = next++;
        if (op > 0 && op % sampleEvery === 0) sampleHeap();
        const key = `k${op}`;
        const kind = op % 10;
        try {
          if (kind < 6) {
            await db.executeQuery(`SELECT count(*)::int AS n FROM ${table} WHERE key = $1`, [
              `k${Math.floor(Math.random() * Math.max(1, op))}`,
            ]);
            reads++;
          } else if (kind < 9) {
            attemptedWrites.push(key);
            await db.withDb(false, async (client) => {
              await client.query(`INSERT INTO ${table} (key, part) VALUES ($1, 1)`, [key]);
              await client.query(`INSERT INTO ${table}_detail (key) VALUES ($1)`, [key]);
            });
            committed.push(key);
          } else {
            await db.withDb({ readOnly: true, timeoutMillis: 2000 }, async (client) =>
              client.query(`SELECT key FROM ${table} ORDER BY key DESC LIMIT 5`),
            );
            reads++;
          }
        } catch (error) {
          const code = error instanceof DbError ? error.code : 'NOT_A_DB_ERROR';
          errors[code] = (errors[code] ?? 0) + 1;
          if (isOutcomeUnknown(error)) unknown.push(key);
          // Allowed: the caller's connection was killed under its statement, or under its COMMIT.
          else if (code !== 'CONNECTION_LOST') unexpected.push(error);
        }
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    const runMillis = Math.round(performance.now() - startedAt);
    isKilling = false;
    await killer;
    await sleep(200);
    sampleHeap();
    const stats = db.getStats();
    await db.shutdown({ timeoutMillis: 2000 });

    const heads = new Set(
      (await adminQuery<{ key: string }>(getTestDatabaseUrl(), `SELECT key FROM ${table}`)).map((r) => r.key),
    );
    const details = new Set(
      (await adminQuery<{ key: string }>(getTestDatabaseUrl(), `SELECT key FROM ${table}_detail`)).map((r) => r.key),
    );
    const lost = committed.filter((key) => !heads.has(key) || !details.has(key)).length;
    const halfApplied = attemptedWrites.filter((key) => heads.has(key) !== details.has(key)).length;
    const quarter = Math.max(1, Math.floor(heap.length / 4));
    const firstQuartile = median(heap.slice(0, quarter)) / MB;
    const lastQuartile = median(heap.slice(-quarter)) / MB;
    const errorCount = Object.values(errors).reduce((a, b) => a + b, 0);

    expect(unexpected).toEqual([]);
    expect(lost).toBe(0);
    expect(halfApplied).toBe(0);
    expect(kills).toBeGreaterThan(0);
    // Generous: the pool's own state is bounded (reservoirs, maps keyed by live clients); growth
    // past this would mean something is kept per operation.
    expect(lastQuartile).toBeLessThan(firstQuartile * 1.5 + 16);
    expect(guard.crashes).toEqual([]);
    printFigures('soak', {
      operations: OPERATIONS,
      concurrency: CONCURRENCY,
      runMillis,
      reads,
      writesCommitted: committed.length,
      writesOutcomeUnknown: unknown.length,
      kills,
      callerErrors: errorCount,
      errorsByCode:
        Object.entries(errors)
          .map(([code, n]) => `${code}:${n}`)
          .join(',') || 'none',
      unexpectedErrors: unexpected.length,
      lost,
      halfApplied,
      connectionsOpened: stats.totalConnections,
      validationFailures: stats.validationFailures,
      heapFirstQuartileMB: firstQuartile.toFixed(1),
      heapLastQuartileMB: lastQuartile.toFixed(1),
      heapSamples: heap.length,
      heapSampledAfterGc: gc !== undefined,
    });
  }, 120_000);
});
