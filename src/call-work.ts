import type pg from 'pg';
import type { CallWork } from './call-frame.js';
import type { QueryCall, TransactionCall } from './call-options.js';
import { DatabaseConnectionError } from './errors.js';
import { leaseQuery, markBroken, type Lease } from './pool/lease.js';
import { sendQuery } from './query-client.js';
import type { QueryContext } from './query-context.js';
import { retryAfter } from './replicas/failover-retry.js';
import { runStatement, runTransaction } from './transaction.js';

/**
 * The two kinds of work a call frame (src/call-frame.ts) runs, each with its "may retry" rule:
 * executeQuery's one statement, and a transaction (withDb, executeTransaction).
 */

/**
 * executeQuery's work: one statement, whose rows the caller gets. A read may be re-sent on a dead
 * connection; a write only when nothing of it ran: BEGIN found the connection dead, or a standby
 * refused it (the pool then follows the primary; src/replicas/failover-retry.ts). Behind PgBouncer (`isPgBouncer`) the
 * session is not ours between transactions (no SET SESSION, no session timeouts), so the statement
 * gets a transaction of its own that carries its read-only mode and the timeouts; elsewhere it runs
 * on the session's read-only default, switched first when the statement needs the other one.
 */
export function queryWork(isPgBouncer: boolean): CallWork<QueryCall, pg.QueryResult | pg.QueryResult[], unknown[]> {
  return {
    run(call, lease, context) {
      if (isPgBouncer) return runStatement(lease, context, call, call.text, call.params);
      // The common case (the session already has the right read-only mode): sendQuery's own promise.
      if (lease.isSessionReadOnly === call.isReadOnly) return sendQuery(lease, context, call.text, call.params);
      return runAfterSet(call, lease, context);
    },
    finish: rowsOf,
    mayRetry: (call, lease, error, attempt) =>
      retryAfter(lease, error, { isReadOnly: call.isReadOnly, isStatement: true, attempt }),
  };
}

/**
 * A transaction's work. BEGIN found the connection dead, or a standby refused `BEGIN READ WRITE`:
 * nothing of the caller's ran, so another connection (the primary's, wherever it is now) is safe.
 */
export const transactionWork: CallWork<TransactionCall<unknown>, unknown, unknown> = {
  run: (call, lease, context) => runTransaction(lease, context, call, call.fn),
  finish: (result) => result,
  mayRetry: (call, lease, error, attempt) =>
    retryAfter(lease, error, { isReadOnly: call.isReadOnly, isStatement: false, attempt }),
  traceMessage: (call, server) => ({
    operation: 'transaction',
    readOnly: call.isReadOnly,
    isolationLevel: call.isolationLevel,
    ...server,
  }),
};

/**
 * The rows of a statement's result. A text of several statements (sent without params, so by the
 * simple protocol) gives pg one result per statement: its rows are the last statement's, as psycopg2's
 * `fetchall()` gives after such an `execute` (docs/errors.md).
 */
export function rowsOf<R extends pg.QueryResultRow>(result: pg.QueryResult<R> | readonly pg.QueryResult<R>[]): R[] {
  const last = Array.isArray(result) ? (result as readonly pg.QueryResult<R>[]).at(-1) : (result as pg.QueryResult<R>);
  return last?.rows ?? [];
}

async function runAfterSet(call: QueryCall, lease: Lease, context: QueryContext): Promise<pg.QueryResult> {
  // A SET cut short by the caller's timeout or signal reports the cancellation, not a lost connection.
  await setSessionReadOnly(lease, call.isReadOnly).catch((error: unknown) => {
    throw context.cancelled ?? error;
  });
  return sendQuery(lease, context, call.text, call.params);
}

/**
 * Switches the session's default read-only mode (the one writer of `lease.isSessionReadOnly`; the
 * drop-in Pool's read-write statements use it too).
 * @throws {DatabaseConnectionError} `CONNECTION_LOST` (the lease is marked broken).
 */
export async function setSessionReadOnly(lease: Lease, isReadOnly: boolean): Promise<void> {
  try {
    await leaseQuery(lease, `SET SESSION default_transaction_read_only = ${isReadOnly ? 'on' : 'off'}`);
    lease.isSessionReadOnly = isReadOnly;
  } catch (error) {
    markBroken(lease);
    throw new DatabaseConnectionError(`Could not set the session's read-only mode on ${lease.owner.name}`, {
      cause: error,
      code: 'CONNECTION_LOST',
    });
  }
}
