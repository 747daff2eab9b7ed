import type pg from 'pg';
import type { ExecuteQueryOptions, ExecuteTransactionOptions, Operation, WithDbOptions } from './call-options.js';
import { Database } from './database.js';
import { PoolClosedError } from './errors.js';
import type { HealthReport } from './health.js';
import type { QueryClient } from './query-client.js';
import { buildStats, DurationRecorder, type PoolStats } from './stats.js';

/**
 * The module-level helpers share one default {@link Database}, built from `process.env` on first
 * use. After `shutdownDatabase()` it stays closed: later calls reject with PoolClosedError.
 */
let defaultDatabase: Database | undefined;
let isShutDown = false;

/**
 * The default Database, created from `process.env` on first call.
 * @throws {ConfigError} when the environment's configuration is invalid.
 * @throws {PoolClosedError} after `shutdownDatabase()`.
 */
export function getDatabase(): Database {
  if (isShutDown) throw new PoolClosedError('The default database was shut down (shutdownDatabase() was called).');
  defaultDatabase ??= new Database();
  return defaultDatabase;
}

function later<T>(run: (db: Database) => Promise<T>): Promise<T> {
  try {
    return run(getDatabase());
  } catch (error) {
    return Promise.reject(error);
  }
}

/** `getDatabase().withDb(...)`. */
export function withDb<T>(readOnlyOrOptions: boolean | WithDbOptions, fn: (client: QueryClient) => Promise<T>): Promise<T> {
  return later((db) => db.withDb(readOnlyOrOptions, fn));
}

/** `getDatabase().executeQuery(...)`; read-only by default. */
export function executeQuery<R extends pg.QueryResultRow = Record<string, unknown>>(
  text: string,
  params?: readonly unknown[],
  options?: ExecuteQueryOptions,
): Promise<R[]> {
  return later((db) => db.executeQuery<R>(text, params, options));
}

/** `getDatabase().executeTransaction(...)`. */
export function executeTransaction<R extends pg.QueryResultRow = Record<string, unknown>>(
  operations: readonly Operation[],
  options?: ExecuteTransactionOptions,
): Promise<R[][]> {
  return later((db) => db.executeTransaction<R>(operations, options));
}

/** `getDatabase().getStats()`. */
export function getConnectionPoolStats(): PoolStats {
  return getDatabase().getStats();
}

/** `getDatabase().healthCheck()`; never rejects (a bad configuration or a shut-down database reports `unhealthy`). */
export async function databaseHealthCheck(options?: { timeoutMillis?: number }): Promise<HealthReport> {
  let db: Database;
  try {
    db = getDatabase();
  } catch (error) {
    const empty = { queriesExecuted: 0, transactionsExecuted: 0, errors: 0, transactionRetries: 0, queriesCancelled: 0 };
    return Object.freeze({
      status: 'unhealthy',
      databaseVersion: null,
      isReplica: null,
      databaseTime: null,
      latencyMillis: 0,
      tls: null,
      primaryHost: null,
      poolStats: buildStats([], empty, new DurationRecorder(), new DurationRecorder()),
      error: (error as Error).message.replace(/\s*\n\s*/g, ' '), // one line, as every health error (a ConfigError lists its problems on lines)
    });
  }
  return db.healthCheck(options);
}

/** Shuts the default Database down (if it was ever created); idempotent. */
export async function shutdownDatabase(options?: { timeoutMillis?: number }): Promise<void> {
  isShutDown = true;
  await defaultDatabase?.shutdown(options);
}
