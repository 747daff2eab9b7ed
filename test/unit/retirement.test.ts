import type pg from 'pg';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { ConnectionFacts } from '../../src/pool/lease.js';
import { retireConnections, type RetireTarget } from '../../src/pool/retirement.js';

afterEach(() => {
  vi.restoreAllMocks();
});

/** One idle connection in a pool that hands it out and takes it back, as pg-pool does. */
function oneIdleConnection(): { target: RetireTarget; destroyed: unknown[] } {
  const client = { release: () => void (idle += 1) } as unknown as pg.PoolClient;
  const facts = { retireAt: Infinity, lease: undefined } as unknown as ConnectionFacts;
  let idle = 1;
  const destroyed: unknown[] = [];
  const pool = {
    get idleCount() {
      return idle;
    },
    connect: async () => {
      idle -= 1;
      return client;
    },
  } as unknown as pg.Pool;
  const clients = new Set([client]);
  const target: RetireTarget = {
    pool,
    permits: { waiting: 0, available: 10, takeFree: () => undefined, give: () => undefined },
    clients,
    meta: () => facts,
    destroy: (c) => {
      destroyed.push(c);
      clients.delete(c);
    },
    isOpen: () => true,
  };
  return { target, destroyed };
}

describe('retireConnections', () => {
  it('closes an idle connection at its retire time even when the timer fires before Date.now() reaches it', async () => {
    const { target, destroyed } = oneIdleConnection();
    // Date.now() lags the timers by 2 ms for its first reads after the wait: the case where a sweep
    // would find the connection not yet due, put it back, and stop.
    const start = Date.now();
    let reads = 0;
    vi.spyOn(Date, 'now').mockImplementation(() => {
      reads += 1;
      if (reads === 1) return start;
      const elapsed = performance.now() - startedAt;
      return start + Math.max(0, Math.floor(elapsed) - (elapsed < 60 ? 2 : 0));
    });
    const startedAt = performance.now();
    expect(await retireConnections(target, 50)).toBe(1);
    expect(destroyed).toHaveLength(1);
  });

  it('closes every idle connection by the end of the spread', async () => {
    const { target, destroyed } = oneIdleConnection();
    expect(await retireConnections(target, 20)).toBe(1);
    expect(destroyed).toHaveLength(1);
  });
});
