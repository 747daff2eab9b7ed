import type { Logger } from 'pino';
import type { DatabaseOptions, ResolvedConfig } from '../config.js';
import type { HealthReport } from '../health.js';
import type { CallFrame } from '../call-frame.js';
import type { NodePool } from '../pool/node-pool.js';
import type { QueryContext } from '../query-context.js';
import type { PoolStats } from '../stats.js';

/**
 * What the drop-in Pool uses of its Database, handed over by the Database itself (it is never reached
 * into): the one call frame (pool.query runs in it; connect() checks out through it), the primary's
 * node pool (counts, events, session baselines), the counters, stats, health and shutdown.
 */
export interface PoolBacking {
  readonly config: ResolvedConfig;
  readonly log: Logger;
  /** Every statement of the Pool is read-write and autocommit, so it runs on the primary. */
  readonly primary: NodePool;
  /** The Database's call frame: acquire, work, release with its hygiene, a failed call counted. */
  readonly frame: CallFrame;
  /** The Database's counters and query timing, for statements on checked-out clients (pg's API has no cancellation). */
  readonly context: QueryContext;
  /** Counts a caller call that rejected (`getStats().errors`). */
  countError(): void;
  state(): 'open' | 'closing' | 'closed';
  shutdown(options?: { timeoutMillis?: number }): Promise<void>;
  getStats(): PoolStats;
  healthCheck(options?: { timeoutMillis?: number }): Promise<HealthReport>;
}

type BackingFactory = (options: DatabaseOptions) => PoolBacking;
let openBacking: BackingFactory | undefined;

/**
 * Called once by database.ts: how a standalone `new Pool(config)` gets its Database. The Database
 * owns the `db.pool` view and so imports the Pool; this seam keeps the Pool from importing the
 * Database back (no import circle).
 */
export function provideStandaloneBacking(factory: BackingFactory): void {
  openBacking = factory;
}

/** A new Database for a standalone Pool, as its backing. */
export function openStandaloneBacking(options: DatabaseOptions): PoolBacking {
  if (!openBacking)
    throw new Error('@codecheck/db: the Database module was not loaded; import Pool from the package entry point');
  return openBacking(options);
}
