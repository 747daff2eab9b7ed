import type { CallScope } from '../call-scope.js';
import { DatabaseConnectionError, PoolClosedError, PoolTimeoutError } from '../errors.js';
import { leaseQuery, markBroken, type Lease } from '../pool/lease.js';
import { parseLsn, type RoutedNode, type Router } from './router.js';
import { sleep } from '../timers.js';

/**
 * Checks out a connection on the first of `candidates` that gives one, within the scope's deadline:
 * a replica that fails to connect is banned and the next candidate is tried (the primary is always
 * last for reads). With a write `token`, a replica is used only once it has replayed that position
 * (waiting at most `replicaWaitMillis`); otherwise the next candidate serves the read.
 * @throws {DatabaseConnectionError} the last replica's connection error when every candidate failed,
 * or when no replica replayed the token in time (target: replica). {@link PoolTimeoutError},
 * {@link PoolClosedError} and the primary's errors as they are.
 */
export async function acquireRouted(
  router: Router,
  scope: CallScope,
  candidates: readonly RoutedNode[],
  token: bigint | undefined,
  stack: string | undefined,
  replicaWaitMillis: number,
): Promise<Lease> {
  let lastError: unknown;
  for (const node of candidates) {
    let lease: Lease;
    try {
      lease = await node.pool.acquire({ deadline: scope.deadline, signal: scope.signal, stack });
    } catch (error) {
      const isNodeFailure =
        node !== router.primary &&
        error instanceof DatabaseConnectionError &&
        !(error instanceof PoolTimeoutError) &&
        !(error instanceof PoolClosedError);
      if (!isNodeFailure) throw error;
      router.ban(node, error);
      lastError = error;
      continue;
    }
    if (
      token !== undefined &&
      node !== router.primary &&
      !(await hasReplayed(router, node, lease, token, scope, replicaWaitMillis))
    ) {
      await node.pool.release(lease);
      continue;
    }
    scope.lease = lease;
    return lease;
  }
  throw (
    lastError ?? new DatabaseConnectionError('No replica has replayed the write token within replicaWaitMillis (target: replica)')
  );
}

/** True once the replica behind `lease` has replayed `token`, polling for at most `replicaWaitMillis`. */
async function hasReplayed(
  router: Router,
  node: RoutedNode,
  lease: Lease,
  token: bigint,
  scope: CallScope,
  replicaWaitMillis: number,
): Promise<boolean> {
  if (node.lsn !== null && node.lsn >= token) return true;
  const until = Math.min(scope.deadline, Date.now() + replicaWaitMillis);
  for (;;) {
    try {
      const { rows } = await leaseQuery<{ lsn: string | null }>(lease, 'SELECT pg_last_wal_replay_lsn()::text AS lsn');
      const replayed = parseLsn(rows[0]?.lsn);
      if (replayed !== undefined && replayed >= token) return true;
    } catch (error) {
      markBroken(lease);
      router.ban(node, error);
      return false;
    }
    if (Date.now() + 10 > until || scope.context.cancelled) return false;
    await sleep(10, 'unref');
  }
}
