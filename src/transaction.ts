import type pg from 'pg';
import { hasQueuedWork, sendPipelined } from './client-internals.js';
import {
  DatabaseConnectionError,
  DatabaseQueryError,
  DatabaseTransactionError,
  isConnectionFailure,
  sqlStateOf,
} from './errors.js';
import { leaseQuery, markBroken, type Lease } from './pool/lease.js';
import { sleep } from './timers.js';
import { createQueryClient, sendQuery, toDbError, type QueryClient } from './query-client.js';
import type { QueryContext } from './query-context.js';

/** Transaction isolation levels accepted by `withDb({ isolationLevel })`. */
export const ISOLATION_LEVELS = ['read committed', 'repeatable read', 'serializable'] as const;
export type IsolationLevel = (typeof ISOLATION_LEVELS)[number];

/** SQLSTATEs after which re-running the whole transaction may succeed. */
const RETRYABLE_STATES = new Set(['40001', '40P01']);
const RETRY_BASE_MILLIS = 10;
const RETRY_MAX_MILLIS = 1000;

/** How one transaction runs. */
export interface TransactionSpec {
  readonly isReadOnly: boolean;
  readonly isolationLevel?: IsolationLevel;
  /** Extra runs after a serialization failure or deadlock (40001, 40P01). */
  readonly retries: number;
}

/** BEGIN and the context's preamble as one simple-protocol message: one round trip, and all of it or none of it runs. */
function beginStatement(spec: Pick<TransactionSpec, 'isReadOnly' | 'isolationLevel'>, context: QueryContext): string {
  const level = spec.isolationLevel ? ` ISOLATION LEVEL ${spec.isolationLevel.toUpperCase()}` : '';
  return [`BEGIN${level} ${spec.isReadOnly ? 'READ ONLY' : 'READ WRITE'}`, ...(context.preamble ?? [])].join('; ');
}

/** Thrown when BEGIN failed on a connection that turned out dead: nothing ran, the caller may retry. */
export class BeginConnectionError extends DatabaseConnectionError {
  constructor(message: string, options: { cause?: unknown }) {
    super(message, { ...options, code: 'CONNECTION_LOST' });
    // Callers see the public class name; the subclass only tells Database that a retry is safe.
    this.name = 'DatabaseConnectionError';
  }
}

/**
 * Thrown when the server refused `BEGIN ... READ WRITE` because it is in recovery (a standby: SQLSTATE
 * 0A000, or 25006), so nothing ran and the caller's work may go to the primary instead.
 */
export class BeginRefusedError extends DatabaseTransactionError {
  constructor(message: string, options: { cause?: unknown; attempts: number }) {
    super(message, options);
    // Callers see the public class name; the subclass only tells Database that a retry is safe.
    this.name = 'DatabaseTransactionError';
  }
}

/**
 * Runs `fn` inside BEGIN ... COMMIT on `lease`. ROLLBACK when fn throws, rethrowing fn's own error;
 * a serialization failure or deadlock re-runs fn up to `spec.retries` times with jittered backoff,
 * then rejects with DatabaseTransactionError `SERIALIZATION_FAILURE`. A COMMIT answered with
 * ROLLBACK rejects with `TRANSACTION_ROLLED_BACK`; a failed COMMIT with `TRANSACTION_FAILED`.
 */
export async function runTransaction<T>(
  lease: Lease,
  context: QueryContext,
  spec: TransactionSpec,
  fn: (client: QueryClient) => Promise<T>,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    await control(lease, context, beginStatement(spec, context), 'BEGIN', attempt);
    const bound = createQueryClient(lease, context);
    const { client, close, settle } = bound;
    let result: T;
    try {
      result = await fn(client);
      if (context.cancelled) throw context.cancelled;
      if (bound.endedTransaction) throw bound.endedTransaction;
      // Streams whose data was all read or written may still await the server's last answer: wait
      // for it. One left unfinished is closed (the library's own politely; a caller's pg-cursor or
      // COPY object stays in flight, so the rollback below destroys its connection).
      const unfinished = await settle();
      if (unfinished > 0) {
        throw new DatabaseTransactionError(
          `The withDb callback returned while ${unfinished} cursor(s), stream(s) or COPY it opened were unfinished; they were closed and nothing was committed (read each to its end, or break out of its loop, before returning)`,
          { attempts: attempt, code: 'STREAM_LEFT_OPEN' },
        );
      }
      // A statement fn did not await would be committed unseen (or fail after fn "succeeded"), and a
      // cursor, stream or COPY still open would hold COMMIT behind it forever: commit nothing; the
      // connection is destroyed (a statement in flight is cancelled first).
      // What the lease counts, or (work it does not count) what pg still holds: one running statement is one.
      const running = Math.max(lease.callerUnanswered, hasQueuedWork(lease.client) ? 1 : 0);
      if (running > 0) {
        markBroken(lease);
        throw new DatabaseTransactionError(
          `The withDb callback returned while ${running} statement(s), cursor(s) or stream(s) it started were still running (a missing await?); nothing was committed and the connection was closed`,
          { attempts: attempt },
        );
      }
    } catch (error) {
      close();
      // The library's own cursors are closed politely, so the connection survives the rollback.
      if (!lease.isBroken && !context.cancelled) await settle();
      await rollback(lease);
      const state = serverSqlState(error);
      if (!state || !RETRYABLE_STATES.has(state) || lease.isBroken) throw error;
      if (attempt > spec.retries) {
        throw new DatabaseTransactionError(
          `The transaction failed with SQLSTATE ${state} after ${attempt} attempt${attempt === 1 ? '' : 's'}`,
          { cause: error, attempts: attempt, code: 'SERIALIZATION_FAILURE' },
        );
      }
      context.counters.transactionRetries++;
      await backoff(attempt);
      continue;
    }
    close();
    const outcome = await commit(lease, context, attempt);
    if (outcome === 'committed') {
      context.counters.transactionsExecuted++;
      return result;
    }
    if (attempt > spec.retries) {
      throw new DatabaseTransactionError(
        `COMMIT failed with SQLSTATE ${sqlStateOf(outcome.error)} after ${attempt} attempt${attempt === 1 ? '' : 's'}`,
        { cause: outcome.error, attempts: attempt, code: 'SERIALIZATION_FAILURE' },
      );
    }
    context.counters.transactionRetries++;
    await backoff(attempt);
  }
}

/**
 * Runs one caller statement in a transaction of its own, in two round trips: BEGIN with the preamble,
 * then the statement and COMMIT pipelined. `executeQuery` uses it behind PgBouncer, where neither a
 * session's read-only default nor its timeouts can be relied on.
 *
 * The statement is sent only once BEGIN has been answered. Pipelining BEGIN too would save one more
 * round trip, but a cancel that lands on BEGIN (ours, or a stray one PgBouncer forwards) would make
 * the statement run outside the transaction: autocommitted, read-write, without the timeouts.
 * A statement that fails leaves the transaction aborted, so the pipelined COMMIT is answered ROLLBACK.
 *
 * @throws the statement's own error ({@link DatabaseQueryError}, {@link DatabaseConnectionError});
 * {@link BeginConnectionError} when BEGIN found the connection dead (nothing ran);
 * {@link DatabaseTransactionError} when BEGIN or COMMIT failed.
 */
export async function runStatement<R extends pg.QueryResultRow>(
  lease: Lease,
  context: QueryContext,
  spec: Pick<TransactionSpec, 'isReadOnly'>,
  text: string,
  params?: readonly unknown[],
): Promise<pg.QueryResult<R>> {
  await control(lease, context, beginStatement(spec, context), 'BEGIN', 1);
  if (context.cancelled) {
    await rollback(lease);
    throw context.cancelled;
  }
  const [statement, committed] = await sendPipelined(
    lease.client,
    () => [sendQuery<R>(lease, context, text, params), leaseQuery(lease, 'COMMIT')] as const,
  );
  const result = await statement;
  const outcome = await commit(lease, context, 1, committed);
  if (outcome !== 'committed') {
    throw new DatabaseTransactionError(`COMMIT failed with SQLSTATE ${sqlStateOf(outcome.error)}`, {
      cause: outcome.error,
      attempts: 1,
      code: 'SERIALIZATION_FAILURE',
    });
  }
  return result;
}

/**
 * The SQLSTATE the server gave a statement of this call, found on our error or on the `cause` chain of
 * an error wrapping it (an ORM's). A callback's own error that merely carries `code: '40001'` is not a
 * serialization failure: it is rethrown as it is, never retried.
 */
function serverSqlState(error: unknown): string | undefined {
  let current = error;
  for (let depth = 0; depth < 5 && current instanceof Error; depth++) {
    if (current instanceof DatabaseQueryError) return current.sqlState;
    current = current.cause;
  }
  return undefined;
}

async function control(lease: Lease, context: QueryContext, statement: string, what: string, attempt: number): Promise<void> {
  if (context.cancelled) throw context.cancelled;
  try {
    await leaseQuery(lease, statement);
  } catch (error) {
    const mapped = toDbError(error, lease, context);
    // A connection destroyed because the caller's timeout or signal fired reports the cancellation.
    if (mapped === context.cancelled) throw mapped;
    if (isConnectionFailure(error))
      throw new BeginConnectionError(`${what} failed: the connection to ${lease.owner.name} was lost (${mapped.message})`, {
        cause: error,
      });
    // A standby refuses BEGIN READ WRITE with 0A000 "cannot set transaction read-write mode during
    // recovery" (25006 from poolers and older forks): nothing ran, the work belongs on the primary.
    const state = sqlStateOf(error);
    if (what === 'BEGIN' && (state === '0A000' || state === '25006') && statement.includes('READ WRITE'))
      throw new BeginRefusedError(`${what} failed: ${mapped.message}`, { cause: mapped, attempts: attempt });
    throw new DatabaseTransactionError(`${what} failed: ${mapped.message}`, { cause: mapped, attempts: attempt });
  }
}

/** Reads COMMIT's answer (`answer`: one already sent, e.g. pipelined behind the statement). */
async function commit(
  lease: Lease,
  context: QueryContext,
  attempt: number,
  answer?: Promise<pg.QueryResult>,
): Promise<'committed' | { error: unknown }> {
  let command: string;
  try {
    command = (await (answer ?? leaseQuery(lease, 'COMMIT'))).command;
  } catch (error) {
    const state = sqlStateOf(error);
    if (state && RETRYABLE_STATES.has(state)) return { error };
    const mapped = toDbError(error, lease, context);
    const lost = lease.isBroken ? ' The connection was lost, so whether it committed is unknown.' : '';
    throw new DatabaseTransactionError(`COMMIT failed: ${mapped.message}.${lost}`, { cause: mapped, attempts: attempt });
  }
  if (command === 'ROLLBACK') {
    throw new DatabaseTransactionError(
      'COMMIT was answered with ROLLBACK: a statement in the transaction had failed, so nothing was committed',
      { attempts: attempt, code: 'TRANSACTION_ROLLED_BACK' },
    );
  }
  return 'committed';
}

/** ROLLBACK unless the connection is already known broken; a failed ROLLBACK marks it broken. */
async function rollback(lease: Lease): Promise<void> {
  if (lease.isBroken || lease.callerUnanswered > 0) {
    markBroken(lease);
    return;
  }
  try {
    await leaseQuery(lease, 'ROLLBACK');
  } catch {
    markBroken(lease);
  }
}

function backoff(attempt: number): Promise<void> {
  const ceiling = Math.min(RETRY_MAX_MILLIS, RETRY_BASE_MILLIS * 2 ** (attempt - 1));
  return sleep(Math.random() * ceiling, 'unref');
}
