import { checkMillis } from './durations.js';
import type { QueryClient } from './query-client.js';
import { parseLsn, type ReadTarget } from './replicas/router.js';
import { ISOLATION_LEVELS, type IsolationLevel, type TransactionSpec } from './transaction.js';

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

/**
 * A call's arguments after their checks: everything the call frame (src/call-frame.ts) needs, decided
 * once per call. Every check of a caller's per-call argument is in this file.
 */
export interface CheckedCall {
  readonly isReadOnly: boolean;
  readonly target: ReadTarget | undefined;
  /** `afterWrite` as a WAL position; undefined without one. */
  readonly afterWrite: bigint | undefined;
  readonly signal: AbortSignal | undefined;
  readonly timeoutMillis: number | undefined;
}

/** An `executeQuery` call. */
export interface QueryCall extends CheckedCall {
  readonly text: string;
  readonly params: readonly unknown[] | undefined;
}

/** A `withDb` or `executeTransaction` call. */
export interface TransactionCall<T> extends CheckedCall, TransactionSpec {
  readonly fn: (client: QueryClient) => Promise<T>;
}

/**
 * Checks `executeQuery(text, params, options)`.
 * @throws {TypeError} naming the first argument or option that is malformed.
 */
export function checkQueryCall(text: unknown, params: unknown, options: ExecuteQueryOptions): QueryCall {
  if (typeof text !== 'string' || text.trim() === '') throw new TypeError('executeQuery needs SQL text as its first argument');
  if (params !== undefined && !Array.isArray(params))
    throw new TypeError('executeQuery params must be an array (bound as $1, $2, ...)');
  checkOptionsObject(options, 'executeQuery options');
  const isReadOnly = checkReadOnly(options.readOnly, true);
  const { target, signal, timeoutMillis } = options;
  const afterWrite = checkCallOptions(options, isReadOnly);
  return { isReadOnly, target, afterWrite, signal, timeoutMillis, text, params: params as readonly unknown[] | undefined };
}

/**
 * Checks `withDb(readOnlyOrOptions, fn)` (`readOnly` as a boolean is the short form of `{ readOnly }`).
 * @throws {TypeError} naming the first argument or option that is malformed.
 */
export function checkWithDbCall<T>(readOnlyOrOptions: boolean | WithDbOptions, fn: unknown): TransactionCall<T> {
  // Only a boolean or an options object: `withDb('true', fn)` must not run READ WRITE (or READ ONLY) by accident.
  if (typeof readOnlyOrOptions !== 'boolean' && !isPlainObject(readOnlyOrOptions))
    throw new TypeError('withDb needs readOnly (true or false) or an options object as its first argument');
  const options: WithDbOptions = typeof readOnlyOrOptions === 'boolean' ? { readOnly: readOnlyOrOptions } : readOnlyOrOptions;
  if (typeof fn !== 'function') throw new TypeError('withDb needs a callback: withDb(readOnly, async (client) => ...)');
  return checkTransactionCall(options, fn as TransactionCall<T>['fn']);
}

/**
 * Checks `executeTransaction(operations, options)`'s operations (the options are checked with the
 * transaction that runs them, by {@link checkTransactionCall}).
 * @throws {TypeError} when `operations` is not an array of `{ text: string, params?: unknown[] }`.
 */
export function checkOperations(operations: unknown): readonly Operation[] {
  const isOperation = (op: Operation | undefined) =>
    typeof op?.text === 'string' && (op.params === undefined || Array.isArray(op.params));
  if (!Array.isArray(operations) || !operations.every(isOperation))
    throw new TypeError('executeTransaction needs an array of { text: string, params?: unknown[] }');
  return operations;
}

/**
 * Checks the options of a transaction that runs `fn` (read-write unless `readOnly`).
 * @throws {TypeError} naming the first option that is malformed.
 */
export function checkTransactionCall<T>(options: WithDbOptions, fn: TransactionCall<T>['fn']): TransactionCall<T> {
  const isolationLevel = parseIsolationLevel(options.isolationLevel);
  const retries = checkRetries(options.retries);
  const isReadOnly = checkReadOnly(options.readOnly, false);
  const { target, signal, timeoutMillis } = options;
  const afterWrite = checkCallOptions(options, isReadOnly);
  return { isReadOnly, target, afterWrite, signal, timeoutMillis, isolationLevel, retries, fn };
}

/**
 * Checks the options every call takes (its deadline and signal, where it may run, the write it must
 * see) and returns `afterWrite` parsed.
 */
function checkCallOptions(options: CallOptions, isReadOnly: boolean): bigint | undefined {
  const { timeoutMillis, signal, target, afterWrite } = options;
  checkMillis(timeoutMillis, 'timeoutMillis');
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw new TypeError('signal must be an AbortSignal');
  if (target !== undefined && target !== 'primary' && target !== 'replica' && target !== 'any')
    throw new TypeError("target must be 'primary', 'replica' or 'any'");
  if (!isReadOnly && target === 'replica')
    throw new TypeError("target 'replica' needs readOnly: true (writes always go to the primary)");
  const token = afterWrite === undefined ? undefined : parseLsn(afterWrite);
  if (afterWrite !== undefined && token === undefined)
    throw new TypeError('afterWrite must be a token from getWriteToken() (a WAL position such as 0/16B3748)');
  return token;
}

/** A plain object: made by `{ ... }` or `Object.create(null)`, not an array, a string or a class instance. */
function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const prototype = Object.getPrototypeOf(value) as unknown;
  return prototype === Object.prototype || prototype === null;
}

/**
 * Checks that `options` (named `what` in the message) is an options object; undefined counts as `{}`.
 * @throws {TypeError} `<what> must be an object` for null, a string, an array, a number...
 */
export function checkOptionsObject(options: unknown, what: string): void {
  if (options !== undefined && !isPlainObject(options)) throw new TypeError(`${what} must be an object`);
}

/** `readOnly` when it is a boolean, `fallback` when absent; `'false'` and `1` are refused, never guessed. */
function checkReadOnly(value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw new TypeError('readOnly must be true or false');
  return value;
}

/** Validates an isolation level given by a caller; the SQL text comes from our list, never from input. */
export function parseIsolationLevel(value: unknown): IsolationLevel | undefined {
  if (value === undefined) return undefined;
  const text =
    typeof value === 'string'
      ? value
          .trim()
          .toLowerCase()
          .replace(/[_\s]+/g, ' ')
      : '';
  const level = ISOLATION_LEVELS.find((l) => l === text);
  if (!level)
    throw new TypeError(
      `isolationLevel must be one of ${ISOLATION_LEVELS.join(', ')} (got ${JSON.stringify(String(value)).slice(0, 40)})`,
    );
  return level;
}

function checkRetries(retries: unknown): number {
  if (retries === undefined) return 0;
  if (typeof retries !== 'number' || !Number.isInteger(retries) || retries < 0 || retries > 100)
    throw new TypeError('retries must be an integer from 0 to 100');
  return retries;
}
