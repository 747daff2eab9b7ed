import type pg from 'pg';
import type { Logger } from 'pino';
import { summarize } from '../error-summary.js';
import { probeConnection, type ProbeTarget } from './probe-connection.js';
import { startInterval } from '../timers.js';

/** What the watchdog needs to know about one checked-out connection. */
export interface WatchedLease {
  readonly client: pg.Client;
  /** `performance.now()` when the oldest unanswered statement was sent; 0 when none is pending. */
  readonly busySince: number;
}

/** The node the watchdog guards. */
export interface WatchedNode extends ProbeTarget {
  readonly name: string;
  leases(): Iterable<WatchedLease>;
  /** Destroys the lease's socket so its pending statement rejects with a connection error. */
  abandon(lease: WatchedLease): void;
}

/**
 * Bounds waits for the server's answer. `statement_timeout` is enforced by the server, so a link
 * that silently dies mid-statement (a black hole, a lost FIN) would leave the caller waiting forever.
 * Every `periodMillis` the watchdog looks for statements unanswered for longer than `limitMillis`
 * (statement_timeout plus a grace) and probes the server on a new connection: if the probe cannot
 * reach it, the statement's backend no longer exists, or the backend is not running a statement
 * (`idle`, `idle in transaction`: our statement never arrived or its answer was lost on a link that
 * went silent while new connections still get through), or the backend is itself waiting on this
 * client (`ClientRead`/`ClientWrite`: a COPY the link stopped carrying, src/streams/copy-progress.ts),
 * the connection is abandoned and the caller's
 * call rejects with a connection error. A backend still running a statement (the caller raised
 * statement_timeout for a long report) is left alone, and so is one whose state the probe's login may
 * not see (another role's backend after a credentials rotation: `state` is null). Off when
 * statement_timeout is 0.
 */
export class StatementWatchdog {
  #node: WatchedNode;
  #limitMillis: number;
  #probeTimeoutMillis: number;
  #shouldMatchBackend: boolean;
  #log: Logger;
  #timer: NodeJS.Timeout;
  #isSweeping = false;
  /** When a lease last passed the probe, so a long legitimate statement is probed once per limit. */
  #clearedAt = new WeakMap<WatchedLease, number>();

  constructor(
    node: WatchedNode,
    options: { limitMillis: number; probeTimeoutMillis: number; shouldMatchBackend: boolean; log: Logger },
  ) {
    this.#node = node;
    this.#limitMillis = options.limitMillis;
    this.#probeTimeoutMillis = options.probeTimeoutMillis;
    this.#shouldMatchBackend = options.shouldMatchBackend;
    this.#log = options.log;
    const periodMillis = Math.min(1000, Math.max(50, Math.round(options.limitMillis / 4)));
    this.#timer = startInterval(periodMillis, () => void this.#sweep(), 'unref');
  }

  async #sweep(): Promise<void> {
    if (this.#isSweeping) return;
    const now = performance.now();
    const overdue = [...this.#node.leases()].filter(
      (lease) => lease.busySince > 0 && now - Math.max(lease.busySince, this.#clearedAt.get(lease) ?? 0) > this.#limitMillis,
    );
    if (overdue.length === 0) return;
    this.#isSweeping = true;
    try {
      // A lease that got its answer, or sent another statement, while the probe ran is judged again later.
      const sentAt = overdue.map((lease) => lease.busySince);
      const runningBackends = await this.#probe(overdue);
      for (const [index, lease] of overdue.entries()) {
        if (lease.busySince !== sentAt[index]) continue;
        const pid = (lease.client as unknown as { processID: number | null }).processID;
        if (runningBackends !== undefined && (!this.#shouldMatchBackend || (pid !== null && runningBackends.has(pid)))) {
          this.#clearedAt.set(lease, performance.now());
          continue;
        }
        this.#log.warn(
          { node: this.#node.name, waitedMillis: Math.round(performance.now() - lease.busySince) },
          'no answer from the server past statement_timeout and its backend is gone or not running our statement: abandoning the connection',
        );
        this.#node.abandon(lease);
      }
    } finally {
      this.#isSweeping = false;
    }
  }

  /**
   * The pids, among the leases' backends, that are still running a statement (or whose state this
   * login may not read), or undefined when the server cannot be reached in time. Behind PgBouncer the
   * pids are not the server's, so only reachability is probed.
   */
  async #probe(leases: readonly WatchedLease[]): Promise<Set<number> | undefined> {
    const pids = leases.map((lease) => (lease.client as unknown as { processID: number | null }).processID ?? -1);
    const sql = this.#shouldMatchBackend
      ? "SELECT pid FROM pg_stat_activity WHERE pid = ANY($1::int[]) AND (state IS NULL OR (state NOT LIKE 'idle%' AND wait_event IS DISTINCT FROM 'ClientRead' AND wait_event IS DISTINCT FROM 'ClientWrite'))"
      : 'SELECT NULL::int AS pid WHERE $1::int[] IS NOT NULL';
    const outcome = await probeConnection<{ pid: number | null }>(this.#node, 'watchdog', this.#probeTimeoutMillis, sql, [pids]);
    if (outcome === 'timeout') return undefined;
    if ('error' in outcome) {
      this.#log.debug({ error: summarize(outcome.error) }, 'watchdog probe failed');
      return undefined;
    }
    return new Set(outcome.rows.flatMap((row) => (row.pid === null ? [] : [row.pid])));
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}
