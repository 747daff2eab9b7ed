import type pg from 'pg';
import { DatabaseConnectionError, DatabaseQueryError, DbError, isConnectionFailure, sqlStateOf } from './errors.js';
import type { Lease } from './pool.js';
import type { DatabaseCounters, DurationRecorder } from './stats.js';

/** What `client` inside `withDb` offers: pg's `query`, and nothing that could release it by hand. */
export interface QueryClient {
  query<R extends pg.QueryResultRow = Record<string, unknown>>(text: string, values?: readonly unknown[]): Promise<pg.QueryResult<R>>;
  query<R extends pg.QueryResultRow = Record<string, unknown>>(config: pg.QueryConfig): Promise<pg.QueryResult<R>>;
}

/** Shared by every statement a caller sends: counters, timing and the cancellation state. */
export interface QueryContext {
  readonly queryTime: DurationRecorder;
  readonly counters: DatabaseCounters;
  /** Set once the caller's signal or timeout fired: later statements reject at once. */
  cancelled?: DatabaseQueryError;
}

/**
 * Sends one caller statement on a lease: counts it, times it, tracks it as in flight, and turns pg's
 * errors into ours. A connection failure marks the lease broken (it is destroyed on release).
 */
export async function sendQuery<R extends pg.QueryResultRow>(lease: Lease, context: QueryContext, query: string | pg.QueryConfig, values?: readonly unknown[]): Promise<pg.QueryResult<R>> {
  if (context.cancelled) throw context.cancelled;
  const startedAt = performance.now();
  context.counters.queriesExecuted++;
  lease.inFlight++;
  try {
    return await lease.client.query<R>(query as string, values as unknown[]);
  } catch (error) {
    throw toDbError(error, lease, context);
  } finally {
    lease.inFlight--;
    context.queryTime.record(performance.now() - startedAt);
  }
}

/** Maps a pg error to a DbError; bound values are never part of the message. */
export function toDbError(error: unknown, lease: Lease, context: QueryContext): DbError {
  if (error instanceof DbError) return error;
  const state = sqlStateOf(error);
  if (context.cancelled && (state === '57014' || !state)) {
    if (!state) lease.isBroken = true;
    return context.cancelled;
  }
  if (isConnectionFailure(error)) {
    lease.isBroken = true;
    const message = error instanceof Error ? error.message : String(error);
    return new DatabaseConnectionError(`Connection to ${lease.node.name} lost: ${message}`, { cause: error, code: 'CONNECTION_LOST' });
  }
  const message = error instanceof Error ? error.message : String(error);
  return new DatabaseQueryError(state ? `${message} (SQLSTATE ${state})` : message, error);
}

/** A `QueryClient` bound to one lease until `close()`; afterwards every call rejects. */
export function createQueryClient(lease: Lease, context: QueryContext): { client: QueryClient; close(): void } {
  let isOpen = true;
  const client: QueryClient = {
    query(query: string | pg.QueryConfig, values?: readonly unknown[]) {
      if (!isOpen) return Promise.reject(new DatabaseQueryError('This client was used after its withDb callback returned; use it only inside the callback', undefined));
      return sendQuery(lease, context, query, values);
    },
  } as QueryClient;
  return { client, close: () => { isOpen = false; } };
}
