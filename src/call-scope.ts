import { DatabaseQueryError } from './errors.js';
import type { Lease } from './pool/lease.js';
import type { StatementNames } from './prepared-statements.js';
import type { QueryContext } from './query-context.js';
import type { DatabaseCounters, DurationRecorder } from './stats.js';
import { startTimer } from './timers.js';

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
  /** SET LOCAL timeouts sent with every BEGIN behind PgBouncer; empty otherwise. */
  readonly preamble: readonly string[];
}

const noop = (): void => undefined;

/**
 * Folds the caller's signal and timeout (checked already, src/call-options.ts) into one cancellation:
 * on abort, cancel the running statement, and destroy the connection if the call still holds it
 * after the grace.
 * @throws {DatabaseQueryError} `QUERY_CANCELLED` when `signal` is already aborted.
 */
export function openCallScope(
  options: { readonly signal: AbortSignal | undefined; readonly timeoutMillis: number | undefined },
  settings: CallScopeSettings,
): CallScope {
  const now = Date.now();
  const timeoutMillis = options.timeoutMillis;
  const deadline = now + Math.min(settings.maxAcquireMillis, timeoutMillis ?? Infinity);
  const context: QueryContext = {
    queryTime: settings.queryTime,
    counters: settings.counters,
    shouldRefuseNamedStatements: settings.shouldRefuseNamedStatements,
    statements: settings.statements,
    preamble: settings.preamble,
  };
  if (!options.signal && timeoutMillis === undefined) return { context, deadline, signal: undefined, dispose: noop };
  const controller = new AbortController();
  context.signal = controller.signal;
  // A timeout that passes while the call still waits for a connection is the acquire deadline's to
  // report and count (PoolTimeoutError, poolExhaustedCount); it counts as a cancellation only if the
  // call gets a connection after all (and then rejects with QUERY_CANCELLED).
  let isCountPending = false;
  let heldLease: Lease | undefined;
  const scope: CallScope = {
    context,
    deadline,
    signal: controller.signal,
    dispose: () => undefined,
    get lease() {
      return heldLease;
    },
    set lease(lease) {
      heldLease = lease;
      if (lease && isCountPending) {
        isCountPending = false;
        settings.counters.queriesCancelled++;
      }
    },
  };
  let graceTimer: NodeJS.Timeout | undefined;
  const abort = (reason: unknown, message: string, isTimeout = false) => {
    if (context.cancelled) return;
    context.cancelled = new DatabaseQueryError(message, reason, 'QUERY_CANCELLED');
    const lease = scope.lease;
    if (lease || !isTimeout) settings.counters.queriesCancelled++;
    else isCountPending = true;
    // A timeout while still waiting for a connection is the acquire deadline's to report
    // (PoolTimeoutError with a pool snapshot); a caller's abort ends the wait at once.
    if (lease || !isTimeout) controller.abort(context.cancelled);
    if (!lease) return;
    if (lease.callerUnanswered > 0) void lease.owner.cancel(lease);
    // The cancel request may never reach the server (a black-holed link), and BEGIN/SET/COMMIT are
    // not cancelled at all: a call still holding its connection after the grace has the connection
    // destroyed, so the caller's wait ends (pgx's CancelRequestContextWatcherHandler does the same).
    graceTimer = startTimer(
      settings.graceMillis,
      () => {
        if (scope.lease === lease) lease.owner.abandon(lease);
      },
      'unref',
    );
  };
  const onAbort = () => abort(options.signal!.reason, 'The operation was cancelled by its AbortSignal');
  if (options.signal?.aborted) onAbort();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  const timer =
    timeoutMillis === undefined
      ? undefined
      : startTimer(
          timeoutMillis,
          () =>
            abort(
              undefined,
              `The operation did not finish within timeoutMillis (${timeoutMillis} ms); its statement was cancelled`,
              true,
            ),
          'unref',
        );
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
