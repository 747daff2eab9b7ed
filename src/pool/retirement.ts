import type pg from 'pg';
import type { ConnectionFacts } from './lease.js';
import { sleep } from '../timers.js';

/** The permits a sweep takes: the pool's permit queue, seen only through what a sweep needs. */
interface SweepPermits {
  readonly waiting: number;
  readonly available: number;
  takeFree(count: number): void;
  give(): void;
}

/** What {@link retireConnections} works on: its node pool's parts. */
export interface RetireTarget {
  readonly pool: pg.Pool;
  readonly permits: SweepPermits;
  /** The connections open now. */
  readonly clients: ReadonlySet<pg.Client>;
  meta(client: pg.Client): ConnectionFacts | undefined;
  destroy(client: pg.PoolClient): void;
  isOpen(): boolean;
}

/**
 * Retires every connection open now, for a credentials rotation: the i-th of n gets its retire time
 * at `(i + 1) / n` of `spreadMillis` from now (all at once for 0), so the pool reopens them a few at a
 * time rather than all together. A checked-out connection is closed when it is released after its
 * time (release already closes connections past their lifetime); an idle one is closed by a sweep at
 * its time. Resolves after the last sweep (or once shutdown starts) with the number of connections
 * marked.
 */
export async function retireConnections(target: RetireTarget, spreadMillis: number): Promise<number> {
  const startedAt = Date.now();
  const marked = [...target.clients].map((client) => target.meta(client)).filter((meta) => meta !== undefined);
  marked.forEach((meta, i) => {
    meta.retireAt = Math.min(meta.retireAt, startedAt + Math.round((spreadMillis * (i + 1)) / marked.length));
  });
  const times = [...new Set(marked.map((meta) => meta.retireAt))].sort((a, b) => a - b);
  for (const time of times) {
    // A timer may fire a millisecond before Date.now() reaches its time; a sweep then would find the
    // connection not yet due and put it back, and nothing would sweep it again: wait for the clock.
    while (target.isOpen() && Date.now() < time) await sleep(time - Date.now(), 'unref');
    if (!target.isOpen()) break;
    await sweep(target);
  }
  // A sweep finds no free permits while a refill round holds them: try again shortly, for a while.
  for (let attempt = 0; attempt < SWEEP_RETRIES && target.isOpen() && hasRetiredIdle(target); attempt++) {
    await sleep(SWEEP_RETRY_MILLIS, 'unref');
    await sweep(target);
  }
  return marked.length;
}

/** A sweep that could not run is tried again this often, this many times (about 5 s in all). */
const SWEEP_RETRY_MILLIS = 50;
const SWEEP_RETRIES = 100;

/** Whether an idle connection past its retire time is left. */
function hasRetiredIdle(target: RetireTarget): boolean {
  const now = Date.now();
  for (const client of target.clients) {
    const meta = target.meta(client);
    if (meta && meta.lease === undefined && now >= meta.retireAt) return true;
  }
  return false;
}

/**
 * Closes the idle connections past their retire time: checks every idle one out (holding a permit
 * for each, so no caller is made to wait), destroys the retired ones and gives the rest back as they
 * were. While callers wait, nothing is swept: their checkouts close retired connections themselves.
 */
async function sweep(target: RetireTarget): Promise<void> {
  const { pool, permits } = target;
  const count = pool.idleCount;
  if (count === 0 || permits.waiting > 0 || permits.available < count) return;
  permits.takeFree(count);
  const results = await Promise.allSettled(Array.from({ length: count }, () => pool.connect()));
  const now = Date.now();
  for (const result of results) {
    if (result.status === 'fulfilled') {
      const client = result.value;
      const meta = target.meta(client);
      if (!meta || now >= meta.retireAt || !target.isOpen()) target.destroy(client);
      else client.release();
    }
    permits.give();
  }
}
