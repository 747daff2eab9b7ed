import type { ReadTarget } from './replicas/router.js';
import type { IsolationLevel } from './transaction.js';

/** Per-call options shared by withDb, executeQuery and executeTransaction. */
export interface CallOptions {
  /** Cancels the call: a waiting acquire stops, a running statement is cancelled on the server. */
  signal?: AbortSignal;
  /** Deadline for the whole call (acquire and work), ms. The acquire never waits past `connectionTimeoutMillis`. */
  timeoutMillis?: number;
  /**
   * For read-only work: `primary`, `replica` (only a replica; rejects when none is usable) or `any`
   * node. Without it, reads prefer a replica and fall back to the primary. Writes always use the primary.
   */
  target?: ReadTarget;
  /** A token from `getWriteToken()`: the read sees at least that write (docs/operations.md). */
  afterWrite?: string;
}

/** Options of `withDb(options, fn)`. */
export interface WithDbOptions extends CallOptions {
  /** BEGIN READ ONLY (enforced by the server: writes fail with SQLSTATE 25006). @default false */
  readOnly?: boolean;
  isolationLevel?: IsolationLevel | Uppercase<IsolationLevel>;
  /** Re-runs fn after a serialization failure or deadlock, this many times at most. @default 0 */
  retries?: number;
}

/** Options of `executeQuery`. */
export interface ExecuteQueryOptions extends CallOptions {
  /** Run the statement read-only (server-enforced). @default true */
  readOnly?: boolean;
}

/** Options of `executeTransaction`. */
export interface ExecuteTransactionOptions extends CallOptions {
  /** @default false */
  readOnly?: boolean;
  isolationLevel?: IsolationLevel | Uppercase<IsolationLevel>;
  retries?: number;
}

/** One statement of `executeTransaction`. */
export interface Operation {
  text: string;
  params?: readonly unknown[];
}
