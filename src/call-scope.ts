import { checkMillis } from './durations.js';
import { DatabaseQueryError } from './errors.js';
import type { Lease } from './pool/lease.js';
import type { StatementNames } from './prepared-statements.js';
import type { QueryContext } from './query-client.js';
import type { DatabaseCounters, DurationRecorder } from './stats.js';

/** Per-call cancellation state: the caller's signal and timeout folded into one. */
export interface CallScope {
  readonly context: QueryContext;
  /** Epoch ms: the acquire deadline of the call. */
  readonly deadline: number;
  /** Aborts a waiting acquire; undefined when the call has neither a signal nor a timeout. */
  readonly signal: AbortSignal | undefined;
  /** The connection the call holds now; set by the caller around each attempt. */
  lease?: Lease;
  /** Clears the scope's timers and listeners; call once when the call settles. */
  dispose(): void;
}

/** What every scope of one Database shares, made once at construction. */
export interface CallScopeSettings {
  /** The acquire never waits past this (`connectionTimeoutMillis`). */
  readonly maxAcquireMillis: number;
  /** How long a cancelled call may still hold its connection before it is destroyed (`validationTimeoutMillis`). */
  readonly graceMillis: number;
  readonly queryTime: DurationRecorder;
  readonly counters: DatabaseCounters;
  readonly shouldRefuseNamedStatements: boolean;
  readonly statements: StatementNames | undefined;
}

const noop = (): void => undefined;

/**
 * Folds the caller's signal and timeout into one cancellation: on abort, cancel the running
 * statement, and destroy the connection if the call still holds it after the grace.
 * @throws {TypeError} when `timeoutMillis` (1 to 2^31−1 ms) or `signal` is malformed.
 * @throws {DatabaseQueryError} `QUERY_CANCELLED` when `signal` is already aborted.
 */
export function openCallScope(options: { signal?: AbortSignal; timeoutMillis?: number }, settings: CallScopeSettings): CallScope {
  const now = Date.now();
  const timeoutMillis = checkMillis(options.timeoutMillis, 'timeoutMillis');
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal))
    throw new TypeError('signal must be an AbortSignal');
  const deadline = now + Math.min(settings.maxAcquireMillis, timeoutMillis ?? Infinity);
  const context: QueryContext = {
    queryTime: settings.queryTime,
    counters: settings.counters,
    shouldRefuseNamedStatements: settings.shouldRefuseNamedStatements,
    statements: settings.statements,
  };
  if (!options.signal && timeoutMillis === undefined) return { context, deadline, signal: undefined, dispose: noop };
  const controller = new AbortController();
  context.signal = controller.signal;
  const scope: CallScope = { context, deadline, signal: controller.signal, dispose: () => undefined };
  let graceTimer: NodeJS.Timeout | undefined;
  const abort = (reason: unknown, message: string, isTimeout = false) => {
    if (context.cancelled) return;
    context.cancelled = new DatabaseQueryError(message, reason, 'QUERY_CANCELLED');
    settings.counters.queriesCancelled++;
    const lease = scope.lease;
    // A timeout while still waiting for a connection is the acquire deadline's to report
    // (PoolTimeoutError with a pool snapshot); a caller's abort ends the wait at once.
    if (lease || !isTimeout) controller.abort(context.cancelled);
    if (!lease) return;
    if (lease.inFlight > 0) void lease.node.cancel(lease);
    // The cancel request may never reach the server (a black-holed link), and BEGIN/SET/COMMIT are
    // not cancelled at all: a call still holding its connection after the grace has the connection
    // destroyed, so the caller's wait ends (pgx's CancelRequestContextWatcherHandler does the same).
    graceTimer = setTimeout(() => {
      if (scope.lease === lease) lease.node.abandon(lease);
    }, settings.graceMillis);
    graceTimer.unref();
  };
  const onAbort = () => abort(options.signal!.reason, 'The operation was cancelled by its AbortSignal');
  if (options.signal?.aborted) onAbort();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  const timer =
    timeoutMillis === undefined
      ? undefined
      : setTimeout(
          () =>
            abort(
              undefined,
              `The operation did not finish within timeoutMillis (${timeoutMillis} ms); its statement was cancelled`,
              true,
            ),
          timeoutMillis,
        );
  timer?.unref();
  scope.dispose = () => {
    clearTimeout(timer);
    clearTimeout(graceTimer);
    options.signal?.removeEventListener('abort', onAbort);
  };
  if (context.cancelled) {
    scope.dispose();
    throw context.cancelled;
  }
  return scope;
}
