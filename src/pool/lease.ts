import type pg from 'pg';
import { startTimer } from '../timers.js';
import type { ServerFields } from '../tracing-channels.js';
import { SESSION_CLEAN, type SessionChanges } from './session-state.js';

/**
 * A pooled connection has two records: {@link ConnectionFacts}, kept beside pg's client for its whole
 * life (never on it), and a {@link Lease} for each checkout. Both are written here or by the node pool
 * that owns them; everyone else reads a lease and reports on it through the functions below.
 */

/** What a lease needs from the pool that handed it out (the node pool; an interface so lease.ts imports no pool). */
export interface LeaseOwner {
  /** The node's name (`host:port`), for messages. */
  readonly name: string;
  /** The node's server, as tracing messages name it (src/tracing-channels.ts). */
  readonly server: ServerFields;
  /** Gives the lease back; exactly once per lease. Undefined when it was put back at once. */
  release(lease: Lease): Promise<void> | undefined;
  /** Sends a cancel request for the statement the lease's backend is running. Never rejects. */
  cancel(lease: Lease): Promise<boolean>;
  /** Destroys the lease's connection at once and marks the lease broken. */
  abandon(lease: Lease): void;
  /**
   * The lease's server refused read-write work as a standby would: the owner lets go of that server's
   * connections and looks for the primary (a node pool with one server and no role to check just
   * closes them; a replica's pool ignores it). Returns whether new connections now look for a
   * primary, so work the server refused may be tried again.
   */
  markNotPrimary(lease: Lease, reason: string): boolean;
}

/** A checked-out connection. Given back with {@link LeaseOwner.release} exactly once. */
export interface Lease {
  readonly client: pg.PoolClient;
  readonly owner: LeaseOwner;
  readonly acquiredAt: number;
  /**
   * Statements sent on this lease and not yet answered: the library's own (BEGIN, COMMIT, SET,
   * probes) and the caller's. The statement watchdog looks at it (through {@link busySince}).
   */
  unanswered: number;
  /**
   * Of {@link unanswered}, the caller's statements. A lease released with any is destroyed (the answer
   * would reach the next caller), and an abort sends a cancel request only for these.
   */
  callerUnanswered: number;
  /** `performance.now()` when {@link unanswered} last rose from 0; 0 while nothing is unanswered. */
  busySince: number;
  /** True once the lease saw a connection failure; it is destroyed on release. Set by {@link markBroken}. */
  isBroken: boolean;
  /** The error event that broke the connection while checked out (e.g. the server's FATAL), for messages. */
  lostError?: Error;
  /** The session's `default_transaction_read_only`; kept with the connection across leases. */
  isSessionReadOnly: boolean;
  /**
   * What the caller's statements changed in the session (SET, LISTEN, temp tables...), read from their
   * command tags by `sendQuery`: release resets or destroys a changed session (src/pool/session-state.ts).
   */
  sessionChanges: SessionChanges;
  /**
   * Statements the holder prepared by name through pg (`name` in a query config on a drop-in Pool
   * client): deallocated at release with the session reset. Undefined when none.
   */
  preparedNames: string[] | undefined;
}

/** A lease on `client`, acquired now. */
export function newLease(client: pg.PoolClient, owner: LeaseOwner, isSessionReadOnly: boolean): Lease {
  return {
    client,
    owner,
    acquiredAt: Date.now(),
    unanswered: 0,
    callerUnanswered: 0,
    busySince: 0,
    isBroken: false,
    isSessionReadOnly,
    sessionChanges: SESSION_CLEAN,
    preparedNames: undefined,
  };
}

/** The holder prepared a statement named `name` on the lease's connection (release deallocates it). */
export function statementPrepared(lease: Lease, name: string): void {
  (lease.preparedNames ??= []).push(name);
}

/** Counts a statement sent on `lease` (`isCallers`: the caller's, not the library's own). `now`: `performance.now()`. */
export function statementSent(lease: Lease, isCallers: boolean, now: number): void {
  if (lease.unanswered++ === 0) lease.busySince = now;
  if (isCallers) lease.callerUnanswered++;
}

/** Counts the answer (or failure) of a statement counted by {@link statementSent}. */
export function statementAnswered(lease: Lease, isCallers: boolean): void {
  if (--lease.unanswered === 0) lease.busySince = 0;
  if (isCallers) lease.callerUnanswered--;
}

/**
 * A caller's cursor, query stream or COPY went to pg on `lease`: it counts in `callerUnanswered` until
 * pg is done with it (a release meanwhile destroys the connection, an abort sends a cancel). Its
 * batches are counted apart, each as one of the library's statements, for the watchdog.
 */
export function streamOpened(lease: Lease): void {
  lease.callerUnanswered++;
}

/** pg is done with a stream counted by {@link streamOpened}. */
export function streamClosed(lease: Lease): void {
  lease.callerUnanswered--;
}

/**
 * pg gave up on a caller's statement that the server still runs (its `query_timeout`): the statement
 * stays counted as the caller's unanswered work for the rest of the lease, so the connection is
 * never reused: its release sends a cancel request and closes it, as a release mid-query does.
 */
export function statementLeftRunning(lease: Lease): void {
  lease.callerUnanswered++;
  lease.isBroken = true;
}

/** The connection is unusable (lost, or in a state we cannot trust): it is destroyed on release. */
export function markBroken(lease: Lease): void {
  lease.isBroken = true;
}

/** The connection's error event arrived while checked out: broken, and the first such error is kept for messages. */
export function markLost(lease: Lease, error: Error): void {
  lease.isBroken = true;
  lease.lostError ??= error;
}

/**
 * Sends one of the library's own statements on a lease (BEGIN, COMMIT, SET, probes), counted for the
 * statement watchdog. Caller statements go through `sendQuery` (src/query-client.ts).
 */
export async function leaseQuery<R extends pg.QueryResultRow = Record<string, unknown>>(
  lease: Lease,
  query: string | pg.QueryConfig,
  values?: readonly unknown[],
): Promise<pg.QueryResult<R>> {
  statementSent(lease, false, performance.now());
  try {
    return await lease.client.query<R>(query as string, values as unknown[]);
  } finally {
    statementAnswered(lease, false);
  }
}

/** Per-connection facts, kept beside pg's client (never on it) for the connection's whole life. */
export interface ConnectionFacts {
  readonly createdAt: number;
  /** Epoch ms after which the connection is closed instead of reused (lifetime, or a credentials rotation; Infinity: never). */
  retireAt: number;
  /** Epoch ms when the connection last went back to the pool idle. */
  idleSince: number;
  /** An error event arrived while checked out: the connection is unusable. */
  isBroken: boolean;
  /** The session's `default_transaction_read_only`, as the last lease left it. */
  isSessionReadOnly: boolean;
  /**
   * What the connection's own setup changed in its session before its first caller (a drop-in Pool
   * `connect` listener or `onConnect` hook): a reset at release must not undo it (src/pool/session-state.ts).
   */
  sessionBaseline: SessionChanges;
  /** The lease holding this connection, while checked out: the error listener marks it broken. */
  lease: Lease | undefined;
  /** Leak detection timer of the current lease (only when leakDetectionThresholdMillis > 0). */
  leakTimer: NodeJS.Timeout | undefined;
}

/** Facts of a connection opened at `now`; `maxLifetimeMillis` 0 means it is never retired. */
export function newConnectionFacts(now: number, maxLifetimeMillis: number, isSessionReadOnly: boolean): ConnectionFacts {
  // Up to 10% jitter so connections opened together are not all retired together.
  const retireAt = maxLifetimeMillis === 0 ? Infinity : now + maxLifetimeMillis - Math.random() * maxLifetimeMillis * 0.1;
  return {
    createdAt: now,
    retireAt,
    idleSince: now,
    isBroken: false,
    isSessionReadOnly,
    sessionBaseline: SESSION_CLEAN,
    lease: undefined,
    leakTimer: undefined,
  };
}

/**
 * Idle no longer than `validationIntervalMillis`, so no validation is needed. 0 means every time: at
 * millisecond resolution a connection reused within the same millisecond would otherwise skip it.
 */
export function isRecentlyUsed(facts: ConnectionFacts, now: number, validationIntervalMillis: number): boolean {
  return validationIntervalMillis > 0 && now - facts.idleSince <= validationIntervalMillis;
}

/**
 * Ties the connection to its lease (for the error listener) and, when `thresholdMillis` > 0, calls
 * `onLeak` once if the lease is still held after that long.
 */
export function watchLease(
  facts: ConnectionFacts,
  lease: Lease,
  stack: string | undefined,
  thresholdMillis: number,
  onLeak: (lease: Lease, stack: string | undefined) => void,
): void {
  facts.lease = lease;
  if (thresholdMillis <= 0) return;
  facts.leakTimer = startTimer(thresholdMillis, () => onLeak(lease, stack), 'unref');
}

/** Unties the connection from its lease and stops its leak detection. */
export function unwatchLease(facts: ConnectionFacts): void {
  facts.lease = undefined;
  if (facts.leakTimer === undefined) return;
  clearTimeout(facts.leakTimer);
  facts.leakTimer = undefined;
}
