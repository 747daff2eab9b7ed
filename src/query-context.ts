import type { DatabaseQueryError } from './errors.js';
import type { StatementNames } from './prepared-statements.js';
import type { DatabaseCounters, DurationRecorder } from './stats.js';
import type { TransactionMessage } from './tracing-channels.js';

/**
 * Shared by every statement one call sends (src/call-scope.ts makes it): counters, timing, the
 * cancellation state and the Database-wide statement settings.
 */
export interface QueryContext {
  readonly queryTime: DurationRecorder;
  readonly counters: DatabaseCounters;
  /** Set once the caller's signal or timeout fired: later statements reject at once. */
  cancelled?: DatabaseQueryError;
  /** Aborts when the call is cancelled while it holds a connection (absent without a signal or timeout). */
  signal?: AbortSignal;
  /** Behind PgBouncer (before 1.21), a named prepared statement would not survive the transaction. */
  readonly shouldRefuseNamedStatements?: boolean;
  /** Automatic prepared statements (`maxPreparedStatements`); absent when off. */
  readonly statements?: StatementNames;
  /**
   * Statements run right after each BEGIN (SET LOCAL timeouts behind PgBouncer), sent in BEGIN's own
   * message so they cost no round trip; constant text only, never caller input. Not counted as queries.
   */
  readonly preamble?: readonly string[];
  /** The traced `withDb`/`executeTransaction` the statements belong to (set only while someone subscribes). */
  transaction?: TransactionMessage;
}
