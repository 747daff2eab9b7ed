import pg from 'pg';
import { isQueryable, isReadTimeout } from './client-internals.js';
import {
  DatabaseConnectionError,
  DatabaseQueryError,
  DatabaseTransactionError,
  DbError,
  isConnectionFailure,
  redactBoundValues,
  redactServerMessage,
  sqlStateOf,
} from './errors.js';
import { classifyTransactionControl, savepointName } from './nested-transactions.js';
import { markBroken, statementAnswered, statementLeftRunning, statementSent, type Lease } from './pool/lease.js';
import { observeStatement } from './pool/session-state.js';
import { DescribedQuery, prepareAfresh, type DescribedStatement } from './described-statements.js';
import { isStaleAnalysis, mayBeStaleTypes, preparedStatementFailure, type StatementNames } from './prepared-statements.js';
import type { QueryContext } from './query-context.js';
import { copyFromOn, copyToOn, type CopyFromStream, type CopyToStream } from './streams/copy.js';
import { checkBatchSize, openCursor, type StreamHost } from './streams/cursor-reader.js';
import { isSubmittable, OpenStreams, type Submittable } from './streams/open-streams.js';
import { RowStream } from './streams/row-stream.js';
import { queryChannel, serverOf, traced, type QueryMessage } from './tracing-channels.js';

/**
 * What `client` inside `withDb` offers: pg's `query` with pg's promise overloads (text and values; a
 * config object, with or without separate values, whose values win as in pg; `rowMode: 'array'`
 * giving rows as arrays), cursors, COPY, and nothing that could release it by hand. Callback forms
 * are not offered (promises only). Every cursor, stream or COPY opened on it must be finished before
 * the callback returns (docs/streaming.md): the transaction waits for one whose data was all read or
 * written, and rolls back with `STREAM_LEFT_OPEN` for one left unfinished.
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
  /** A pg-cursor, pg-query-stream or pg-copy-streams object, run as pg runs it; returns it. */
  query<T extends Submittable>(submittable: T): T;
  /**
   * The rows of one statement read through a cursor, `batchSize` (default 100) per round trip, on
   * this transaction's connection: `for await (const row of client.stream(sql, params))`.
   * @throws {TypeError} for a malformed `batchSize`.
   */
  stream<R extends pg.QueryResultRow = Record<string, unknown>>(
    text: string,
    params?: readonly unknown[],
    options?: { batchSize?: number },
  ): RowStream<R>;
  /** `COPY ... FROM STDIN`: a Writable to feed (pg-copy-streams); see src/streams/copy.ts. */
  copyFrom(sql: string): CopyFromStream;
  /** `COPY ... TO STDOUT`: a Readable of the data (pg-copy-streams); see src/streams/copy.ts. */
  copyTo(sql: string): CopyToStream;
}

/**
 * Sends one caller statement on a lease: counts it, times it, tracks it as in flight, and turns pg's
 * errors into ours. A connection failure marks the lease broken (it is destroyed on release).
 * A parameterized text is sent as a named prepared statement when `context.statements` gives it a
 * name (src/prepared-statements.ts); if the server's cached plan went stale (DDL) or the statement
 * is gone, the name is dropped and, outside a transaction (where nothing ran), the statement is sent
 * once more unnamed.
 *
 * The hot path of every call: one promise, settled from pg's callback, and no copy of a query config
 * (pg clones a config object with property descriptors, but takes text and values as they are). A
 * failure goes on in {@link recover}. Traced on `codecheck-db:query` while someone subscribes
 * (src/tracing-channels.ts).
 */
export function sendQuery<R extends pg.QueryResultRow>(
  lease: Lease,
  context: QueryContext,
  query: string | pg.QueryConfig,
  values?: readonly unknown[],
): Promise<pg.QueryResult<R>> {
  // No subscriber (the common case): the statement's own promise, nothing built.
  if (!queryChannel.hasSubscribers) return send<R>(lease, context, query, values);
  const bound = typeof query === 'string' ? values : (values ?? query?.values);
  const message: QueryMessage = {
    operation: 'query',
    text: typeof query === 'string' ? query : String(query?.text),
    parameterCount: bound?.length ?? 0,
    transaction: context.transaction,
    ...serverOf(lease.client, lease.owner.server),
  };
  return traced(queryChannel, message, async () => {
    const result = await send<R>(lease, context, query, values);
    // A text of several statements gives one result per statement: the count is the last one's, as its rows are.
    const last: pg.QueryResult | undefined = Array.isArray(result) ? (result as pg.QueryResult[]).at(-1) : result;
    if (last) message.rowCount = last.rowCount ?? last.rows?.length ?? 0;
    return result;
  });
}

/** {@link sendQuery} without tracing. */
function send<R extends pg.QueryResultRow>(
  lease: Lease,
  context: QueryContext,
  query: string | pg.QueryConfig,
  values?: readonly unknown[],
): Promise<pg.QueryResult<R>> {
  if (context.cancelled) return Promise.reject(context.cancelled);
  // The protocol counts parameters in 16 bits: pg would wrap the count and the server would answer
  // with a confusing protocol error.
  if (values !== undefined && values.length > 65_535)
    return Promise.reject(
      new TypeError(
        `A statement takes at most 65535 parameters (got ${values.length}); use an array parameter ($1::int[]) instead`,
      ),
    );
  const startedAt = performance.now();
  context.counters.queriesExecuted++;
  statementSent(lease, true, startedAt);
  const name =
    typeof query === 'string' && values !== undefined && values.length > 0 ? context.statements?.nameFor(query) : undefined;
  return new Promise<pg.QueryResult<R>>((resolve) => {
    let isAnswered = false;
    let named: DescribedQuery | undefined;
    const answered = (error: Error | null | undefined, result: pg.QueryResult<R> | undefined) => {
      // pg calls back twice for a value it could not serialize: with the error, then at the
      // ReadyForQuery its Sync brings. Counted once, or the lease would think nothing is in flight.
      if (isAnswered) return;
      isAnswered = true;
      if (error) return resolve(recover<R>(lease, context, query, values, named, error, startedAt));
      statementAnswered(lease, true);
      context.queryTime.record(performance.now() - startedAt);
      resolve(observed(lease, typeof query === 'string' ? query : query.text, result!));
    };
    try {
      if (typeof query === 'string' && name !== undefined)
        lease.client.query((named = namedQuery(query, values!, name, answered)) as unknown as pg.Submittable);
      // pg also takes a config object in this three-argument form; @types/pg declares it for text only.
      else
        lease.client.query(query as string, values as unknown[], answered as (error: Error, result: pg.QueryResult<R>) => void);
    } catch (error) {
      answered(error as Error, undefined);
    }
  });
}

/**
 * A named statement built from text and values (no config object for pg to clone; the drop-in Pool
 * may give a config with `rowMode` and `types`), described by the server only when its connection
 * parses it (src/described-statements.ts).
 */
export function namedQuery<R extends pg.QueryResultRow>(
  text: DescribedStatement,
  values: readonly unknown[],
  name: string,
  callback: (error: Error | undefined, result: pg.QueryResult<R> | undefined) => void,
): DescribedQuery {
  return new DescribedQuery(text, values as unknown[], name, callback as (error: Error | undefined, result: unknown) => void);
}

/**
 * The rest of {@link sendQuery} after pg failed the statement: an automatic prepared statement may be
 * sent once more unnamed ({@link afterNamedFailure}); any other failure is mapped to a DbError.
 * Counts the answer and the time when done.
 */
async function recover<R extends pg.QueryResultRow>(
  lease: Lease,
  context: QueryContext,
  query: string | pg.QueryConfig,
  values: readonly unknown[] | undefined,
  named: DescribedQuery | undefined,
  failure: Error,
  startedAt: number,
): Promise<pg.QueryResult<R>> {
  // pg's query_timeout gave up on it, the server still runs it: the connection is not reused.
  if (isReadTimeout(failure)) statementLeftRunning(lease);
  try {
    const plan =
      named === undefined || typeof query !== 'string'
        ? 'fail'
        : afterNamedFailure(lease, context.statements!, query, failure, named);
    if (plan === 'fail') throw failure;
    const result = await submit<R>(lease.client, { text: query as string, values: values as unknown[] });
    // The unnamed statement ran where the prepared one failed: its parameter types went stale.
    if (plan === 'check') context.statements!.forget(query as string);
    return observed(lease, query as string, result);
  } catch (error) {
    const mapped = toDbError(error, lease, context, values ?? (typeof query === 'string' ? undefined : query.values));
    // Refused on our side before the server saw it: not a statement sent (docs/stats.md).
    if (mapped === error && !(error instanceof DbError) && !isReadTimeout(error)) context.counters.queriesExecuted--;
    throw mapped;
  } finally {
    statementAnswered(lease, true);
    context.queryTime.record(performance.now() - startedAt);
  }
}

/**
 * What to do after an automatic prepared statement failed: `fail` (the caller gets the failure),
 * `resend` (the name is dropped; send the statement once more unnamed) or `check` (send it once more
 * unnamed, and drop the name only if that runs).
 */
export type NamedFailurePlan = 'fail' | 'resend' | 'check';

/**
 * After an automatic prepared statement (`text` under a name from `statements`) failed. Outside a
 * transaction a failure means nothing ran, so the statement may go again unnamed: `resend` when the
 * server no longer has it (26000) or its plan must not change its result's columns (0A000), both of
 * which drop the name; `check` when the connection had prepared it before and it failed on what its
 * parameter types, fixed when it was prepared, may have become since (an `ALTER COLUMN ... TYPE`:
 * 42804/42846/42883/42725, or a value its type refuses: 22P02/22003/22007/22008), where an unnamed
 * statement is typed afresh. In a transaction the failure aborted it and reaches the caller; the text
 * is prepared afresh at its next use: by every connection (a new name) when only DDL can explain the
 * failure, by this connection (the same name, src/described-statements.ts) for a refused value, which
 * may simply be wrong. Shared by `executeQuery`/`withDb`
 * ({@link sendQuery}) and the drop-in Pool (src/pg-compat/facade-query.ts).
 */
export function afterNamedFailure(
  lease: Lease,
  statements: StatementNames,
  text: string,
  failure: Error,
  named: DescribedQuery,
): NamedFailurePlan {
  // A value pg could not serialize: pg 8.23 has sent Parse, then closes the statement, yet records
  // the name as prepared when ParseComplete arrives. The next use would Bind a statement the server
  // no longer has, so this text gets a fresh name instead.
  if (isClientSideError(failure, lease)) statements.forget(text);
  const state = sqlStateOf(failure);
  const kind = preparedStatementFailure(state, failure.message ?? '');
  const isOutsideTransaction = lease.client.getTransactionStatus() === 'I';
  if (kind) {
    statements.forget(text);
    // pg still counts the name as prepared on this connection, which the server no longer has.
    if (kind === 'missing') markBroken(lease);
    return isOutsideTransaction ? 'resend' : 'fail';
  }
  if (!named.wasParsed || !mayBeStaleTypes(state)) return 'fail';
  if (isOutsideTransaction) return 'check';
  // Only DDL explains a type-analysis failure: every connection prepares the text afresh. A value
  // its type refuses may be simply wrong: this connection alone prepares it afresh at its next use
  // (no name used up; one more Parse if the value was wrong).
  if (isStaleAnalysis(state)) statements.forget(text);
  else prepareAfresh(lease.client, named.name);
  return 'fail';
}

/** Notes what a caller statement changed in the session (src/pool/session-state.ts); returns its result. */
function observed<T>(lease: Lease, text: string | undefined, result: T): T {
  lease.sessionChanges = observeStatement(lease.sessionChanges, text, result as pg.QueryResult | pg.QueryResult[]);
  return result;
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

/**
 * Whether pg failed a statement on our side, before the server saw it, on a connection that is still
 * fine: a parameter it could not serialize (a circular object, a throwing `toPostgres`), values that
 * are not an array, a name reused for other text. pg then closes what it started and syncs, so the
 * session goes on. A server error is a `pg.DatabaseError`; a lost connection makes the client
 * unqueryable or carries a socket's `syscall`.
 */
function isClientSideError(error: unknown, lease: Lease): boolean {
  return (
    error instanceof Error &&
    !(error instanceof DbError) &&
    !(error instanceof pg.DatabaseError) &&
    !('syscall' in error) &&
    lease.lostError === undefined &&
    isQueryable(lease.client) &&
    !isConnectionFailure(new Error(error.message))
  );
}

/**
 * Maps a pg error to a DbError; bound values are never part of the message. An error pg raised on our
 * side before sending (see {@link isClientSideError}) is the caller's own and is returned unchanged.
 */
export function toDbError(error: unknown, lease: Lease, context: QueryContext, values?: readonly unknown[]): Error {
  if (error instanceof DbError) return error;
  if (!context.cancelled && isClientSideError(error, lease)) return error as Error;
  const state = sqlStateOf(error);
  if (context.cancelled && (state === '57014' || !state)) {
    if (!state) markBroken(lease);
    return context.cancelled;
  }
  if (isConnectionFailure(error)) {
    markBroken(lease);
    // pg's "not queryable" hides why; the error event that broke the connection (a FATAL such as the
    // idle-in-transaction timeout, 25P03) says it.
    const reason = lease.lostError ?? error;
    const reasonState = sqlStateOf(reason);
    const message = `${reason instanceof Error ? reason.message : String(reason)}${reasonState ? ` (SQLSTATE ${reasonState})` : ''}`;
    return new DatabaseConnectionError(`Connection to ${lease.owner.name} lost: ${message}`, {
      cause: reason,
      code: 'CONNECTION_LOST',
    });
  }
  const message = redactBoundValues(redactServerMessage(error instanceof Error ? error.message : String(error), state), values);
  return new DatabaseQueryError(state ? `${message} (SQLSTATE ${state})` : message, error);
}

/**
 * Why a named statement is refused behind PgBouncer: pg prepares a name once per connection and later
 * sends only Bind, which fails ("prepared statement ... does not exist", 26000) whenever PgBouncer
 * gives the next transaction another server connection. Refused before anything is sent.
 */
export function namedStatementError(name: string): DatabaseQueryError {
  const shown = JSON.stringify(name.length > 40 ? `${name.slice(0, 40)}...` : name);
  return new DatabaseQueryError(
    `The named prepared statement ${shown} was refused: behind PgBouncer transaction pooling (DB_PGBOUNCER=true) a prepared statement does not survive its transaction. Remove \`name\` from the query config, or set DB_PGBOUNCER_PREPARED_STATEMENTS=true (option pgbouncerPreparedStatements) if PgBouncer is 1.21 or later with max_prepared_statements above 0.`,
    undefined,
  );
}

/** What {@link createQueryClient} gives `runTransaction`. */
export interface BoundQueryClient {
  readonly client: QueryClient;
  /** Ends the client: later calls reject; statements and streams still running cannot crash anyone. */
  close(): void;
  /** Set when a caller statement left the session outside a transaction (withDb's transaction ended). */
  readonly endedTransaction: DatabaseTransactionError | undefined;
  /** At the end of the callback: waits for finished streams, closes the library's unfinished ones; how many were unfinished. */
  settle(): Promise<number>;
}

/** The connection, call state and open streams behind a QueryClient, for the stream helpers. */
const hosts = new WeakMap<QueryClient, StreamHost>();

/** The stream host of a client made by {@link createQueryClient}. */
export function streamHostOf(client: QueryClient): StreamHost {
  const host = hosts.get(client);
  if (!host) throw new TypeError('Not a client given by withDb');
  return host;
}

/**
 * A `QueryClient` bound to one lease until `close()`; afterwards every call rejects. Transaction
 * control statements are nested as savepoints (src/nested-transactions.ts).
 */
export function createQueryClient(lease: Lease, context: QueryContext): BoundQueryClient {
  let isOpen = true;
  let depth = 0;
  let endedTransaction: DatabaseTransactionError | undefined;
  const pending = new Set<Promise<unknown>>();
  const streams = new OpenStreams(
    lease,
    (millis) => context.queryTime.record(millis),
    context.transaction,
    () => context.cancelled,
  );
  const host: StreamHost = { lease, context, streams, mapError: (error, values) => toDbError(error, lease, context, values) };
  const usedAfterCallback = () =>
    new DatabaseQueryError('This client was used after its withDb callback returned; use it only inside the callback', undefined);
  const checkOpen = () => {
    if (!isOpen) throw usedAfterCallback();
    if (endedTransaction) throw endedTransaction;
    if (context.cancelled) throw context.cancelled;
  };
  const track = <T>(promise: Promise<T>): Promise<T> => {
    const tracked = promise.finally(() => pending.delete(tracked));
    pending.add(tracked);
    return tracked;
  };
  // A multi-statement text (or a function) may still end the transaction: from then on every
  // statement would be autocommitted, so the client refuses them and withDb reports it.
  const watchStatus = <T>(promise: Promise<T>): Promise<T> =>
    promise.then((result) => {
      if (endedTransaction === undefined && lease.client.getTransactionStatus?.() === 'I') {
        endedTransaction = new DatabaseTransactionError(
          "A statement on the withDb client ended withDb's transaction (a COMMIT or ROLLBACK inside a multi-statement text?): what ran before it was committed or rolled back by that statement, and nothing after it runs",
        );
      }
      return result;
    });
  const send = (text: string) => track(watchStatus(sendQuery(lease, context, text)));
  const control = (kind: 'begin' | 'commit' | 'rollback'): Promise<pg.QueryResult> => {
    if (kind === 'begin') {
      depth++;
      return send(`SAVEPOINT ${savepointName(depth)}`).catch((error: unknown) => {
        depth--;
        throw error;
      });
    }
    if (depth === 0)
      return Promise.reject(
        new TypeError(
          `${kind === 'commit' ? 'COMMIT' : 'ROLLBACK'} on the withDb client would end withDb's transaction early: withDb commits when the callback resolves and rolls back when it throws (a BEGIN of your own before it is nested as a savepoint)`,
        ),
      );
    const name = savepointName(depth);
    const sql = kind === 'commit' ? `RELEASE SAVEPOINT ${name}` : `ROLLBACK TO SAVEPOINT ${name}; RELEASE SAVEPOINT ${name}`;
    // Only a savepoint that is gone lowers the depth: after a failed RELEASE (aborted transaction) the
    // caller's ROLLBACK still has its savepoint to go back to.
    return send(sql).then((result) => {
      depth--;
      return result;
    });
  };
  const client: QueryClient = {
    query(query: string | pg.QueryConfig | Submittable, values?: readonly unknown[]) {
      // pg returns a submittable itself, not a promise: a refusal is thrown.
      if (isSubmittable(query)) {
        checkOpen();
        // Counted once submitted: one refused before sending (a COPY in a cursor) is not a statement sent.
        const submitted = streams.submit(query);
        context.counters.queriesExecuted++;
        return submitted;
      }
      if (!isOpen) return Promise.reject(usedAfterCallback());
      if (endedTransaction) return Promise.reject(endedTransaction);
      if (typeof query !== 'string' && (typeof query !== 'object' || query === null))
        return Promise.reject(new TypeError('client.query needs SQL text or a query config ({ text, values })'));
      const name = typeof query === 'object' ? query.name : undefined;
      if (context.shouldRefuseNamedStatements && typeof name === 'string' && name !== '')
        return Promise.reject(namedStatementError(name));
      const text = typeof query === 'string' ? query : query.text;
      const transactionControl = typeof text === 'string' ? classifyTransactionControl(text) : undefined;
      if (transactionControl?.kind === 'refuse') return Promise.reject(new TypeError(transactionControl.reason));
      if (transactionControl) return control(transactionControl.kind);
      return track(watchStatus(sendQuery(lease, context, query, values)));
    },
    stream<R extends pg.QueryResultRow>(text: string, params?: readonly unknown[], options: { batchSize?: number } = {}) {
      const batchSize = checkBatchSize(options?.batchSize);
      return new RowStream<R>(async () => {
        checkOpen();
        return await openCursor<R>(host, text, params, batchSize);
      });
    },
    copyFrom(sql: string) {
      checkOpen();
      return copyFromOn(host, sql);
    },
    copyTo(sql: string) {
      checkOpen();
      return copyToOn(host, sql);
    },
  } as QueryClient;
  hosts.set(client, host);
  // A statement still running when the callback settles is cancelled and its connection destroyed by
  // us; its rejection must not become an unhandled rejection, nor a stream's 'error' event an uncaught
  // exception, that crashes a caller who never awaited it.
  const close = () => {
    isOpen = false;
    for (const promise of pending) promise.catch(() => undefined);
    pending.clear();
    streams.silence();
  };
  return {
    client,
    close,
    settle: () => streams.settle(),
    get endedTransaction() {
      return endedTransaction;
    },
  };
}
