import type pg from 'pg';
import {
  DatabaseConnectionError,
  DatabaseQueryError,
  DbError,
  isConnectionFailure,
  redactServerMessage,
  sqlStateOf,
} from './errors.js';
import type { Lease } from './pool/lease.js';
import { preparedStatementFailure, type StatementNames } from './prepared-statements.js';
import type { DatabaseCounters, DurationRecorder } from './stats.js';

/**
 * What `client` inside `withDb` offers: pg's `query` with pg's promise overloads (text and values; a
 * config object, with or without separate values, whose values win as in pg; `rowMode: 'array'`
 * giving rows as arrays), and nothing that could release it by hand. Callback forms are not offered
 * (promises only); a Submittable (cursor, query stream) is the streaming API's (docs/errors.md).
 */
export interface QueryClient {
  query<R extends unknown[] = unknown[]>(
    config: pg.QueryArrayConfig,
    values?: readonly unknown[],
  ): Promise<pg.QueryArrayResult<R>>;
  query<R extends pg.QueryResultRow = Record<string, unknown>>(
    textOrConfig: string | pg.QueryConfig,
    values?: readonly unknown[],
  ): Promise<pg.QueryResult<R>>;
}

/** Shared by every statement a caller sends: counters, timing and the cancellation state. */
export interface QueryContext {
  readonly queryTime: DurationRecorder;
  readonly counters: DatabaseCounters;
  /** Set once the caller's signal or timeout fired: later statements reject at once. */
  cancelled?: DatabaseQueryError;
  /** Behind PgBouncer (before 1.21), a named prepared statement would not survive the transaction. */
  readonly shouldRefuseNamedStatements?: boolean;
  /** Automatic prepared statements (`maxPreparedStatements`); absent when off. */
  readonly statements?: StatementNames;
}

/**
 * Sends one caller statement on a lease: counts it, times it, tracks it as in flight, and turns pg's
 * errors into ours. A connection failure marks the lease broken (it is destroyed on release).
 * A parameterized text is sent as a named prepared statement when `context.statements` gives it a
 * name (src/prepared-statements.ts); if the server's cached plan went stale (DDL) or the statement
 * is gone, the name is dropped and, outside a transaction (where nothing ran), the statement is sent
 * once more unnamed.
 */
export async function sendQuery<R extends pg.QueryResultRow>(
  lease: Lease,
  context: QueryContext,
  query: string | pg.QueryConfig,
  values?: readonly unknown[],
): Promise<pg.QueryResult<R>> {
  if (context.cancelled) throw context.cancelled;
  // The protocol counts parameters in 16 bits: pg would wrap the count and the server would answer
  // with a confusing protocol error.
  if (values !== undefined && values.length > 65_535)
    throw new TypeError(
      `A statement takes at most 65535 parameters (got ${values.length}); use an array parameter ($1::int[]) instead`,
    );
  const startedAt = performance.now();
  context.counters.queriesExecuted++;
  lease.inFlight++;
  // leaseQuery's bookkeeping for the statement watchdog, inline: one async layer less per statement.
  if (lease.pending++ === 0) lease.busySince = startedAt;
  try {
    if (typeof query !== 'string') return await lease.client.query<R>(query, values as unknown[]);
    const name = values !== undefined && values.length > 0 ? context.statements?.nameFor(query) : undefined;
    if (name === undefined) return await submit<R>(lease.client, { text: query, values: values as unknown[] | undefined });
    try {
      return await submit<R>(lease.client, { text: query, values: values as unknown[], name });
    } catch (error) {
      const failure = preparedStatementFailure(sqlStateOf(error), error instanceof Error ? error.message : '');
      if (!failure) throw error;
      context.statements!.forget(query);
      // pg still counts the name as prepared on this connection, which the server no longer has.
      if (failure === 'missing') lease.isBroken = true;
      // In a transaction the failed statement aborted it; outside one nothing ran, so send it again.
      if (lease.client.getTransactionStatus() !== 'I') throw error;
      return await submit<R>(lease.client, { text: query, values: values as unknown[] });
    }
  } catch (error) {
    throw toDbError(error, lease, context);
  } finally {
    lease.inFlight--;
    if (--lease.pending === 0) lease.busySince = 0;
    context.queryTime.record(performance.now() - startedAt);
  }
}

/**
 * pg's callback form, for a config object we built (never the caller's, which pg would modify):
 * one promise per statement instead of the two of pg's promise form.
 */
function submit<R extends pg.QueryResultRow>(client: pg.PoolClient, query: pg.QueryConfig): Promise<pg.QueryResult<R>> {
  return new Promise((resolve, reject) => {
    client.query<R>(query, (error: Error, result: pg.QueryResult<R>) => (error ? reject(error) : resolve(result)));
  });
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
    // pg's "not queryable" hides why; the error event that broke the connection (a FATAL such as the
    // idle-in-transaction timeout, 25P03) says it.
    const reason = lease.lostError ?? error;
    const reasonState = sqlStateOf(reason);
    const message = `${reason instanceof Error ? reason.message : String(reason)}${reasonState ? ` (SQLSTATE ${reasonState})` : ''}`;
    return new DatabaseConnectionError(`Connection to ${lease.node.name} lost: ${message}`, {
      cause: reason,
      code: 'CONNECTION_LOST',
    });
  }
  const message = redactServerMessage(error instanceof Error ? error.message : String(error), state);
  return new DatabaseQueryError(state ? `${message} (SQLSTATE ${state})` : message, error);
}

/**
 * Why a named statement is refused behind PgBouncer: pg prepares a name once per connection and later
 * sends only Bind, which fails ("prepared statement ... does not exist", 26000) whenever PgBouncer
 * gives the next transaction another server connection. Refused before anything is sent.
 */
function namedStatementError(name: string): DatabaseQueryError {
  const shown = JSON.stringify(name.length > 40 ? `${name.slice(0, 40)}...` : name);
  return new DatabaseQueryError(
    `The named prepared statement ${shown} was refused: behind PgBouncer transaction pooling (DB_PGBOUNCER=true) a prepared statement does not survive its transaction. Remove \`name\` from the query config, or set DB_PGBOUNCER_PREPARED_STATEMENTS=true (option pgbouncerPreparedStatements) if PgBouncer is 1.21 or later with max_prepared_statements above 0.`,
    undefined,
  );
}

/** A `QueryClient` bound to one lease until `close()`; afterwards every call rejects. */
export function createQueryClient(lease: Lease, context: QueryContext): { client: QueryClient; close(): void } {
  let isOpen = true;
  const pending = new Set<Promise<unknown>>();
  const client: QueryClient = {
    query(query: string | pg.QueryConfig, values?: readonly unknown[]) {
      if (!isOpen)
        return Promise.reject(
          new DatabaseQueryError(
            'This client was used after its withDb callback returned; use it only inside the callback',
            undefined,
          ),
        );
      const name = typeof query === 'object' && query !== null ? query.name : undefined;
      if (context.shouldRefuseNamedStatements && typeof name === 'string' && name !== '')
        return Promise.reject(namedStatementError(name));
      const tracked = sendQuery(lease, context, query, values).finally(() => pending.delete(tracked));
      pending.add(tracked);
      return tracked;
    },
  } as QueryClient;
  // A statement still running when the callback settles is cancelled and its connection destroyed by
  // us; its rejection must not become an unhandled rejection that crashes a caller who never awaited it.
  const close = () => {
    isOpen = false;
    for (const promise of pending) promise.catch(() => undefined);
    pending.clear();
  };
  return { client, close };
}
