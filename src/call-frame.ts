import type { CheckedCall } from './call-options.js';
import { openCallScope, type CallScope, type CallScopeSettings } from './call-scope.js';
import { DatabaseConnectionError, PoolClosedError } from './errors.js';
import type { Lease } from './pool/lease.js';
import type { QueryContext } from './query-context.js';
import { acquireRouted } from './replicas/routed-acquire.js';
import type { Router } from './replicas/router.js';
import { sleep } from './timers.js';
import { serverOf, traced, transactionChannel, type ServerFields, type TransactionMessage } from './tracing-channels.js';

/**
 * What one kind of call does with its connection. The frame around it is the same for every call;
 * the work and its "may retry" rule are what differ (executeQuery's statement, a transaction).
 */
export interface CallWork<C extends CheckedCall, R, T> {
  /** Does the call's work on the connection the frame checked out. */
  run(call: C, lease: Lease, context: QueryContext): Promise<R>;
  /** What the caller gets from the work's result, on success (synchronous). */
  finish(result: R): T;
  /**
   * After attempt number `attempt` failed with `error` (and the caller did not cancel): may the call
   * run again on another connection, and after what pause? `false`: no; a number: yes, after that many
   * ms (0: at once). The frame retries only when the pause ends before the call's deadline; the node
   * that failed is banned from reads first.
   */
  mayRetry(call: C, lease: Lease, error: unknown, attempt: number): number | false;
  /**
   * For work traced as a whole on `codecheck-db:transaction` (src/tracing-channels.ts): its message,
   * built only while someone subscribes, naming `server` (the primary) until a connection is acquired.
   * Absent for executeQuery's statement, which `sendQuery` traces on `codecheck-db:query`.
   */
  traceMessage?(call: C, server: ServerFields): TransactionMessage;
}

/** A write checkout held outside any call (the drop-in Pool's `connect()`): the primary, no signal or timeout of its own. */
const HELD_CHECKOUT: CheckedCall = Object.freeze({
  isReadOnly: false,
  target: undefined,
  afterWrite: undefined,
  signal: undefined,
  timeoutMillis: undefined,
});

/** What every call of one Database shares, made once at construction. */
export interface CallFrameSettings extends CallScopeSettings {
  readonly router: Router;
  /** A stack is captured at each acquire for leak detection when above 0. */
  readonly leakDetectionThresholdMillis: number;
  readonly replicaWaitMillis: number;
  /** False once shutdown started: new calls reject with PoolClosedError. */
  isOpen(): boolean;
}

/**
 * The one frame every call runs in: open a scope (deadline, signal, timeout), acquire on the node
 * the router picks, run the work, retry on another connection when the work's rule allows it (nothing
 * ran: a read found its connection dead, BEGIN did, or a standby refused the write while the pool
 * follows the primary), release, count a failed call, dispose the scope.
 * One async function per call: the work's own promise is awaited inside it, with no wrapper.
 */
export class CallFrame {
  readonly #settings: CallFrameSettings;

  constructor(settings: CallFrameSettings) {
    this.#settings = settings;
  }

  run<C extends CheckedCall, R, T>(call: C, work: CallWork<C, R, T>): Promise<T> {
    // Not traced as a whole, or no subscriber (the common case): the frame's own promise, nothing built.
    if (work.traceMessage === undefined || !transactionChannel.hasSubscribers) return this.#run(call, work, undefined);
    const message = work.traceMessage(call, this.#settings.router.primary.pool.currentServer());
    return traced(transactionChannel, message, () => this.#run(call, work, message));
  }

  async #run<C extends CheckedCall, R, T>(call: C, work: CallWork<C, R, T>, message: TransactionMessage | undefined): Promise<T> {
    let scope: CallScope | undefined;
    try {
      scope = openCallScope(call, this.#settings);
      let pauseMillis = 0;
      if (message) scope.context.transaction = message;
      for (let attempt = 1; ; attempt++) {
        // A retry after a standby refused the work: the primary may still be being promoted. The caller
        // waits on this pause, so it keeps the process alive like the call's pending I/O.
        // The caller's abort ends the pause; the acquire below then rejects with QUERY_CANCELLED.
        if (pauseMillis > 0) await sleep(pauseMillis, 'ref', scope.signal);
        const lease = await this.#acquire(scope, call);
        scope.lease = lease;
        // A read may be served by a replica: the message names the node that runs the work.
        if (message) Object.assign(message, serverOf(lease.client, lease.owner.server));
        try {
          return work.finish(await work.run(call, lease, scope.context));
        } catch (error) {
          const pause = scope.context.cancelled ? false : work.mayRetry(call, lease, error, attempt);
          if (pause !== false && Date.now() + pause < scope.deadline) {
            const router = this.#settings.router;
            router.ban(
              router.nodes.find((node) => node.pool === lease.owner)!,
              error,
            );
            pauseMillis = pause;
            continue;
          }
          throw error;
        } finally {
          scope.lease = undefined;
          const releasing = lease.owner.release(lease);
          if (releasing) await releasing;
        }
      }
    } catch (error) {
      this.#settings.counters.errors++;
      throw error;
    } finally {
      scope?.dispose();
    }
  }

  /**
   * A checkout whose holder keeps it past this frame (the drop-in Pool's `connect()`): the frame's
   * open and recovery checks and leak stack, the primary within `connectionTimeoutMillis`. The holder
   * gives the lease back through its owner; a failure is the holder's to count.
   * @throws what `NodePool.acquire` throws; {@link PoolClosedError} after shutdown started.
   */
  checkOut(): Promise<Lease> {
    try {
      return this.#acquire(openCallScope(HELD_CHECKOUT, this.#settings), HELD_CHECKOUT);
    } catch (error) {
      return Promise.reject(error as Error);
    }
  }

  /**
   * Checks out a connection on the node the router picks. A replica that fails to connect is banned
   * and the next candidate is tried within the same deadline (the primary is always last for reads).
   * With `afterWrite`, a replica is used only once it has replayed that position (waiting at most
   * `replicaWaitMillis`); otherwise the primary serves the read.
   */
  #acquire(scope: CallScope, call: CheckedCall): Promise<Lease> {
    const { router, leakDetectionThresholdMillis, replicaWaitMillis } = this.#settings;
    if (!this.#settings.isOpen()) throw new PoolClosedError();
    // A primary pool that checks roles (target_session_attrs) finds the primary itself; otherwise the probe's word stands.
    if (!call.isReadOnly && router.primary.isInRecovery === true && !router.primary.pool.hosts.needsRole) {
      throw new DatabaseConnectionError(
        `${primaryName(router.primary.pool.name)} is in recovery (a standby); writes are refused until it is promoted`,
        { code: 'CONNECTION_FAILED' },
      );
    }
    const stack = leakDetectionThresholdMillis > 0 ? new Error('acquired here').stack : undefined;
    const candidates = router.candidates(call.isReadOnly, call.target);
    if (candidates.length === 0)
      throw new DatabaseConnectionError('No replica is usable for a read with target: replica (all banned, lagging or down)');
    // The common case, the primary alone: its acquire's own promise, no wrapper around it.
    if (candidates.length === 1 && candidates[0] === router.primary)
      return router.primary.pool.acquire({ deadline: scope.deadline, signal: scope.signal, stack });
    return acquireRouted(router, scope, candidates, call.afterWrite, stack, replicaWaitMillis);
  }
}

/** The primary as messages name it: `The primary`, or `The primary db-a` when it has a name of its own. */
function primaryName(name: string): string {
  return name === 'primary' ? 'The primary' : `The primary ${name}`;
}
