import type pg from 'pg';
import type { NodePool } from './node-pool.js';

/** A checked-out connection. Given back with {@link NodePool.release} exactly once. */
export interface Lease {
  readonly client: pg.PoolClient;
  readonly node: NodePool;
  readonly acquiredAt: number;
  /** Statements sent and not yet answered; a lease released with any in flight is destroyed. */
  inFlight: number;
  /** True once the lease saw a connection failure; it is destroyed on release. */
  isBroken: boolean;
  /** The error event that broke the connection while checked out (e.g. the server's FATAL), for messages. */
  lostError?: Error;
  /** The session's `default_transaction_read_only`; kept with the connection across leases. */
  isSessionReadOnly: boolean;
  /** Statements sent through {@link leaseQuery} and not yet answered (ours and the caller's). */
  pending: number;
  /** `performance.now()` when `pending` last rose from 0; 0 while nothing is pending (for the watchdog). */
  busySince: number;
}

/**
 * Sends one statement on a lease, keeping `pending`/`busySince` for the statement watchdog. Every
 * statement the library sends on a checked-out connection goes through here.
 */
export async function leaseQuery<R extends pg.QueryResultRow = Record<string, unknown>>(
  lease: Lease,
  query: string | pg.QueryConfig,
  values?: readonly unknown[],
): Promise<pg.QueryResult<R>> {
  if (lease.pending++ === 0) lease.busySince = performance.now();
  try {
    return await lease.client.query<R>(query as string, values as unknown[]);
  } finally {
    if (--lease.pending === 0) lease.busySince = 0;
  }
}
