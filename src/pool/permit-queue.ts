import { DatabaseQueryError, PoolClosedError, PoolTimeoutError, type PoolSnapshot } from '../errors.js';
import { startTimer } from '../timers.js';

/** What a queued caller brings: its deadline and abort signal (and anything the owner needs back on timeout). */
export interface PermitRequest {
  /** Epoch ms after which the wait rejects with PoolTimeoutError. */
  deadline: number;
  signal?: AbortSignal;
}

/** What the queue asks of its pool: a snapshot for error messages and the counters it keeps. */
export interface PermitQueueOwner<R extends PermitRequest> {
  snapshot(): PoolSnapshot;
  /** A queued request passed its deadline (called before it rejects). */
  onTimeout(request: R): void;
  /** A request was refused because `maxWaiting` callers already wait. */
  onQueueFull(): void;
}

/** A caller queued for a permit. Deadlines are enforced by one timer for the whole queue. */
interface Waiter<R extends PermitRequest, H> {
  readonly deadline: number;
  /** The wait it was given, ms, for the timeout message. */
  readonly waitMillis: number;
  readonly resolve: (handed: H | undefined) => void;
  readonly reject: (error: Error) => void;
  readonly request: R;
  onAbort: (() => void) | undefined;
}

/**
 * A FIFO semaphore of `size` permits with a deadline, an abort signal and a queue cap per waiter. A
 * returned permit goes straight to the oldest waiter, so nobody can jump the queue; it may carry
 * something with it (`H`: the node pool hands a released connection over with its permit, see
 * {@link handOver}). No timer per waiter: one timer for the queue fires at the earliest deadline, so a
 * busy pool with many callers queued pays no timer per acquire. After {@link close}, waiters are
 * rejected and returned permits are only counted.
 */
export class PermitQueue<R extends PermitRequest, H = never> {
  #permits: number;
  #waiters: Waiter<R, H>[] = [];
  #maxWaiting: number;
  #owner: PermitQueueOwner<R>;
  #isClosed = false;
  /** Fires at the earliest waiter deadline (or earlier); `#timerAt` is when. */
  #timer: NodeJS.Timeout | undefined;
  #timerAt = Infinity;

  /** `maxWaiting` 0 means no cap. */
  constructor(size: number, maxWaiting: number, owner: PermitQueueOwner<R>) {
    this.#permits = size;
    this.#maxWaiting = maxWaiting;
    this.#owner = owner;
  }

  /** Callers waiting now. */
  get waiting(): number {
    return this.#waiters.length;
  }

  /** Permits free now. */
  get available(): number {
    return this.#permits;
  }

  /** Takes a permit without waiting when one is free and nobody is queued; false otherwise. */
  tryTake(): boolean {
    if (this.#permits > 0 && this.#waiters.length === 0) {
      this.#permits--;
      return true;
    }
    return false;
  }

  /** Takes `count` free permits at once; the caller checked {@link available} and {@link waiting} just before. */
  takeFree(count: number): void {
    this.#permits -= count;
  }

  /**
   * Resolves once the caller holds a permit (FIFO): with what {@link handOver} gave along with it, or
   * undefined for a permit alone.
   * @throws {PoolTimeoutError} `POOL_TIMEOUT` at the deadline, `POOL_QUEUE_FULL` when `maxWaiting` callers already wait.
   * @throws {DatabaseQueryError} `QUERY_CANCELLED` when the signal aborts. {@link PoolClosedError} on {@link close}.
   */
  take(request: R): Promise<H | undefined> {
    if (this.tryTake()) return Promise.resolve(undefined);
    const maxWaiting = this.#maxWaiting;
    if (maxWaiting > 0 && this.#waiters.length >= maxWaiting) {
      this.#owner.onQueueFull();
      return Promise.reject(
        new PoolTimeoutError(
          `No connection available and ${maxWaiting === 1 ? '1 caller already waits' : `${maxWaiting} callers already wait`} (the cap set by maxWaiting or DB_POOL_MAX_WAITING)`,
          this.#owner.snapshot(),
          'POOL_QUEUE_FULL',
        ),
      );
    }
    return new Promise<H | undefined>((resolve, reject) => {
      const waitMillis = Math.max(0, request.deadline - Date.now());
      const waiter: Waiter<R, H> = { deadline: request.deadline, waitMillis, resolve, reject, request, onAbort: undefined };
      if (request.signal) {
        waiter.onAbort = () => {
          const index = this.#waiters.indexOf(waiter);
          if (index === -1) return;
          this.#waiters.splice(index, 1);
          reject(cancelledError(request.signal!));
        };
        request.signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      this.#waiters.push(waiter);
      if (request.deadline < this.#timerAt) this.#armTimer(request.deadline);
    });
  }

  /** Gives a permit back: to the oldest waiter, or to the free count. */
  give(): void {
    const waiter = this.#isClosed ? undefined : this.#waiters.shift();
    if (!waiter) {
      this.#permits++;
      return;
    }
    this.#detach(waiter);
    waiter.resolve(undefined);
  }

  /**
   * Gives a permit back together with `handed`, straight to the oldest waiter; false (nothing given,
   * the caller keeps both) when nobody waits or the queue is closed.
   */
  handOver(handed: H): boolean {
    const waiter = this.#isClosed ? undefined : this.#waiters.shift();
    if (!waiter) return false;
    this.#detach(waiter);
    waiter.resolve(handed);
    return true;
  }

  /** Rejects every waiter with PoolClosedError; later {@link give}s only count. Idempotent. */
  close(): void {
    this.#isClosed = true;
    clearTimeout(this.#timer);
    for (const waiter of this.#waiters.splice(0)) {
      this.#detach(waiter);
      waiter.reject(new PoolClosedError());
    }
  }

  #armTimer(at: number): void {
    clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = startTimer(at - Date.now(), () => this.#expire(), 'unref');
  }

  /** Rejects every waiter whose deadline passed, then re-arms for the earliest deadline left. */
  #expire(): void {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const now = Date.now();
    let next = Infinity;
    for (const waiter of [...this.#waiters]) {
      if (waiter.deadline > now) {
        next = Math.min(next, waiter.deadline);
        continue;
      }
      // The snapshot still counts this waiter: it shows the pool as the caller saw it at its deadline.
      const error = new PoolTimeoutError(
        `No connection available within ${Math.round(waiter.waitMillis)} ms`,
        this.#owner.snapshot(),
      );
      this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
      this.#detach(waiter);
      this.#owner.onTimeout(waiter.request);
      waiter.reject(error);
    }
    if (next !== Infinity && !this.#isClosed) this.#armTimer(next);
  }

  #detach(waiter: Waiter<R, H>): void {
    if (waiter.onAbort) waiter.request.signal!.removeEventListener('abort', waiter.onAbort);
  }
}

/** The error an aborted wait rejects with: the signal's reason when it is one of ours. */
export function cancelledError(signal: AbortSignal): DatabaseQueryError {
  if (signal.reason instanceof DatabaseQueryError) return signal.reason;
  return new DatabaseQueryError('The operation was cancelled by its AbortSignal', signal.reason, 'QUERY_CANCELLED');
}
