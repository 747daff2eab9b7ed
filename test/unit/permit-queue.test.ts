import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DatabaseQueryError, PoolClosedError, PoolTimeoutError, type PoolSnapshot } from '../../src/errors.js';
import { PermitQueue, type PermitRequest } from '../../src/pool/permit-queue.js';

const SNAPSHOT: PoolSnapshot = { total: 2, idle: 0, active: 2, waiting: 1, max: 2 };

/** A queue of `size` permits whose owner records what the queue told it. */
function queue(size: number, maxWaiting = 0) {
  const timedOut: PermitRequest[] = [];
  let queueFull = 0;
  const permits = new PermitQueue<PermitRequest>(size, maxWaiting, {
    snapshot: () => SNAPSHOT,
    onTimeout: (request) => timedOut.push(request),
    onQueueFull: () => queueFull++,
  });
  return { permits, timedOut, queueFull: () => queueFull };
}

type Outcome<T> = 'pending' | { value: T } | { error: unknown };

/** Watches `promise` from now on (so a rejection is never unhandled); `now()` says how it has settled so far. */
function watch<T>(promise: Promise<T>): { now(): Promise<Outcome<T>> } {
  let outcome: Outcome<T> = 'pending';
  promise.then(
    (value) => (outcome = { value }),
    (error: unknown) => (outcome = { error }),
  );
  return {
    async now() {
      await vi.advanceTimersByTimeAsync(0);
      return outcome;
    },
  };
}

beforeEach(() => {
  vi.useFakeTimers({ now: 1_000_000 });
});
afterEach(() => {
  vi.useRealTimers();
});

describe('PermitQueue', () => {
  it('hands out free permits without waiting, then refuses tryTake once they are gone', () => {
    const { permits } = queue(2);
    expect([permits.tryTake(), permits.tryTake(), permits.tryTake()]).toEqual([true, true, false]);
    expect(permits.available).toBe(0);
  });

  it('gives a returned permit to the oldest waiter, first in first out', async () => {
    const { permits } = queue(1);
    permits.tryTake();
    const order: string[] = [];
    const first = permits.take({ deadline: Date.now() + 10_000 }).then(() => order.push('first'));
    const second = permits.take({ deadline: Date.now() + 10_000 }).then(() => order.push('second'));
    expect(permits.waiting).toBe(2);
    permits.give();
    await first;
    permits.give();
    await second;
    expect(order).toEqual(['first', 'second']);
    expect(permits.available).toBe(0);
  });

  it('lets nobody jump the queue: tryTake is refused while someone waits, even with a permit given back', async () => {
    const { permits } = queue(1);
    permits.tryTake();
    const waiting = permits.take({ deadline: Date.now() + 10_000 });
    permits.give();
    expect(permits.tryTake()).toBe(false);
    await expect(waiting).resolves.toBeUndefined();
  });

  it('rejects a waiter with PoolTimeoutError carrying the snapshot at its deadline, and tells the owner', async () => {
    const { permits, timedOut } = queue(1);
    permits.tryTake();
    const request = { deadline: Date.now() + 500 };
    const waiting = watch(permits.take(request));
    expect(await waiting.now()).toBe('pending');
    await vi.advanceTimersByTimeAsync(500);
    const outcome = await waiting.now();
    expect(outcome).toMatchObject({ error: expect.any(PoolTimeoutError) });
    const error = (outcome as { error: PoolTimeoutError }).error;
    expect([error.code, error.message, error.stats]).toEqual([
      'POOL_TIMEOUT',
      'No connection available within 500 ms (pool: total=2, active=2, idle=0, waiting=1, max=2)',
      SNAPSHOT,
    ]);
    expect(timedOut).toEqual([request]);
    expect(permits.waiting).toBe(0);
  });

  it('expires each waiter at its own deadline with one timer, keeping later waiters queued', async () => {
    const { permits } = queue(1);
    permits.tryTake();
    const late = permits.take({ deadline: Date.now() + 2000 });
    const early = watch(permits.take({ deadline: Date.now() + 1000 }));
    const lateOutcome = watch(late);
    await vi.advanceTimersByTimeAsync(1000);
    expect(await early.now()).toMatchObject({ error: expect.any(PoolTimeoutError) });
    expect(await lateOutcome.now()).toBe('pending');
    permits.give();
    await expect(late).resolves.toBeUndefined();
  });

  it('refuses a caller at once with POOL_QUEUE_FULL when maxWaiting callers already wait', async () => {
    const { permits, queueFull } = queue(1, 1);
    permits.tryTake();
    const first = permits.take({ deadline: Date.now() + 10_000 });
    await expect(permits.take({ deadline: Date.now() + 10_000 })).rejects.toMatchObject({
      name: 'PoolTimeoutError',
      code: 'POOL_QUEUE_FULL',
      message: expect.stringContaining('1 caller already waits (the cap set by maxWaiting or DB_POOL_MAX_WAITING)'),
    });
    expect(queueFull()).toBe(1);
    permits.give();
    await first;
  });

  it('ends a wait at once with QUERY_CANCELLED when its signal aborts, and the queue forgets it', async () => {
    const { permits } = queue(1);
    permits.tryTake();
    const controller = new AbortController();
    const waiting = watch(permits.take({ deadline: Date.now() + 10_000, signal: controller.signal }));
    controller.abort(new Error('caller went away'));
    const outcome = await waiting.now();
    expect(outcome).toMatchObject({ error: expect.any(DatabaseQueryError) });
    expect((outcome as { error: DatabaseQueryError }).error.code).toBe('QUERY_CANCELLED');
    expect(permits.waiting).toBe(0);
    permits.give();
    expect(permits.available).toBe(1);
  });

  it('rejects every waiter with PoolClosedError on close, and afterwards only counts returned permits', async () => {
    const { permits } = queue(1);
    permits.tryTake();
    const waiting = [
      watch(permits.take({ deadline: Date.now() + 10_000 })),
      watch(permits.take({ deadline: Date.now() + 10_000 })),
    ];
    permits.close();
    for (const wait of waiting) expect(await wait.now()).toMatchObject({ error: expect.any(PoolClosedError) });
    permits.give();
    expect([permits.waiting, permits.available]).toEqual([0, 1]);
  });

  it('hands a value over with a permit to the oldest waiter, and refuses it when nobody waits or the queue is closed', async () => {
    const permits = new PermitQueue<PermitRequest, string>(1, 0, {
      snapshot: () => SNAPSHOT,
      onTimeout: () => undefined,
      onQueueFull: () => undefined,
    });
    expect(permits.handOver('nobody waits')).toBe(false);
    permits.tryTake();
    const first = watch(permits.take({ deadline: Date.now() + 10_000 }));
    const second = watch(permits.take({ deadline: Date.now() + 10_000 }));
    expect(permits.handOver('connection')).toBe(true);
    expect(await first.now()).toEqual({ value: 'connection' });
    expect(await second.now()).toBe('pending');
    permits.give();
    expect(await second.now()).toEqual({ value: undefined });
    const third = watch(permits.take({ deadline: Date.now() + 10_000 }));
    permits.close();
    expect(await third.now()).toMatchObject({ error: expect.any(PoolClosedError) });
    expect(permits.handOver('after close')).toBe(false);
    expect([permits.waiting, permits.available]).toEqual([0, 0]);
  });

  it('takes several free permits at once for a refill round', () => {
    const { permits } = queue(5);
    permits.takeFree(3);
    expect(permits.available).toBe(2);
  });
});
