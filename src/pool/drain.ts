import type pg from 'pg';
import type { Logger } from 'pino';
import { destroySocket } from '../client-internals.js';
import { markBroken, type Lease } from './lease.js';
import { raceDeadline, sleep } from '../timers.js';

/** The parts of a node pool that shutdown drains; the sets are the pool's live ones. */
export interface DrainTarget {
  readonly pool: pg.Pool;
  /** Checked-out connections; {@link release} removes them. */
  readonly leases: ReadonlySet<Lease>;
  /** Clients whose connect is still in progress. */
  readonly connecting: ReadonlySet<pg.Client>;
  /** Open clients; pg-pool's 'remove' takes them out once their end() completed. */
  readonly clients: ReadonlySet<pg.Client>;
  readonly log: Logger;
  release(lease: Lease): Promise<void> | undefined;
}

/**
 * Shutdown's second half, after waiters were rejected. Connects still in progress are destroyed at
 * once, not at the deadline: no caller is left to use them (waiters were rejected, the one waiting on
 * the connect gets PoolClosedError now) and over a black-holed link they would hold shutdown until
 * `connectionTimeoutMillis`. Leases may finish until `deadline`; the rest have their statements
 * cancelled and their connections destroyed. Ends within the deadline plus one cancel timeout, plus
 * up to a second for closed sockets to be reported.
 */
export async function drainPool(target: DrainTarget, deadline: number): Promise<void> {
  for (const client of target.connecting) destroySocket(client);
  const ended = target.pool.end();
  while (target.leases.size > 0 && Date.now() < deadline) await sleep(Math.min(20, deadline - Date.now()), 'unref');
  // All stragglers at once, each with one cancel request (release sends it): over a black-holed
  // link N of them cost one cancel timeout past the deadline, not 2 × N.
  await Promise.all(
    [...target.leases].map((lease) => {
      target.log.warn('shutdown deadline passed: cancelling a statement still running and closing its connection');
      markBroken(lease);
      return target.release(lease);
    }),
  );
  await raceDeadline(
    () => ended,
    Math.max(50, deadline - Date.now()),
    () => undefined,
    'unref',
  );
  // Sockets whose polite end() never completed (a black-holed link) are destroyed.
  for (const client of target.clients) destroySocket(client);
  await ended.catch(() => undefined);
  // pg-pool emits 'remove' (counted in connectionsClosed) only once a client's end() completed:
  // wait briefly for the closed sockets to report it, so stats read after shutdown are final.
  const settleBy = Date.now() + 1000;
  while (target.clients.size > 0 && Date.now() < settleBy) await sleep(5, 'unref');
}
