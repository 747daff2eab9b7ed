import { startTimer } from '../timers.js';

/** How long end() waits for work asked for before it (pg-pool waits without a deadline). */
const END_WAIT_MILLIS = 10_000;

/**
 * pg-pool's `end()` semantics with a deadline: checkouts and `pool.query` calls asked for before
 * `end()` may finish, new ones are refused, and the wait for the first ones ends after
 * {@link END_WAIT_MILLIS} whatever they do.
 */
export class EndGate {
  #isEndCalled = false;
  /** Checkouts and pool.query calls asked for and not yet done. */
  #outstanding = 0;
  #onDrained: (() => void) | undefined;

  /** True once {@link close} was called. */
  get isEndCalled(): boolean {
    return this.#isEndCalled;
  }

  /** A checkout or pool.query starts. */
  enter(): void {
    this.#outstanding++;
  }

  /** A checkout or pool.query ended. */
  leave(): void {
    if (--this.#outstanding === 0) this.#onDrained?.();
  }

  /**
   * Refuses new work from now on; resolves with the epoch ms deadline of the whole end() once the
   * work asked for before is done, or when that deadline passes.
   */
  close(): Promise<number> {
    this.#isEndCalled = true;
    const deadline = Date.now() + END_WAIT_MILLIS;
    if (this.#outstanding === 0) return Promise.resolve(deadline);
    return new Promise((resolve) => {
      const timer = startTimer(END_WAIT_MILLIS, () => resolve(deadline), 'unref');
      this.#onDrained = () => {
        clearTimeout(timer);
        resolve(deadline);
      };
    });
  }
}
