import type pg from 'pg';
import type { Logger } from 'pino';
import { RoleMismatchError } from '../replicas/role-check.js';
import type { CircuitBreaker } from './circuit-breaker.js';
import { summarize } from '../error-summary.js';
import { isCannotGrow } from '../errors.js';
import type { NodeCounters } from '../stats.js';
import { startTimer } from '../timers.js';

const REFILL_BACKOFF_MIN_MILLIS = 100;
const REFILL_BACKOFF_MAX_MILLIS = 5000;
/** At most this many connects run at once when refilling: no reconnect storm after an outage. */
const REFILL_CONCURRENCY = 2;

/** The permits a refill round takes: the pool's permit queue, seen only through what refill needs. */
interface RefillPermits {
  readonly waiting: number;
  readonly available: number;
  takeFree(count: number): void;
  give(): void;
}

/** What a {@link Refiller} works on: its node pool's parts. */
export interface RefillerOptions {
  readonly min: number;
  readonly pool: pg.Pool;
  readonly permits: RefillPermits;
  readonly circuit: CircuitBreaker;
  readonly counters: NodeCounters;
  readonly log: Logger;
  /** False once shutdown started: no round starts and no failure is counted. */
  isOpen(): boolean;
  /** Puts a connection the round checked out back in the pool, idle from now. */
  putBack(client: pg.PoolClient): void;
  /** A connect failed: the node pool tells its circuit breaker (one server, or one host of a list). */
  recordConnectFailure(): void;
}

/**
 * Keeps `min` connections open: opens them a few at a time, backing off (with jitter) while connects
 * fail. Every connect of a round holds a permit, so a refill never makes a caller wait past a free slot.
 */
export class Refiller {
  #options: RefillerOptions;
  #isRefilling = false;
  #timer: NodeJS.Timeout | undefined;
  #backoffMillis = REFILL_BACKOFF_MIN_MILLIS;

  constructor(options: RefillerOptions) {
    this.#options = options;
  }

  /** Runs a round after `delayMillis` unless one is scheduled already, shutdown started, or `min` is 0. */
  schedule(delayMillis: number): void {
    if (!this.#options.isOpen() || this.#timer || this.#options.min === 0) return;
    this.#timer = startTimer(
      delayMillis,
      () => {
        this.#timer = undefined;
        void this.refill();
      },
      'unref',
    );
  }

  /** Cancels a scheduled round (a round already running finishes). */
  stop(): void {
    clearTimeout(this.#timer);
  }

  /**
   * Tops the pool up to `min`, at most REFILL_CONCURRENCY new connects per round; resolves when the
   * round settled. pg.Pool hands out idle clients before it opens new ones, so the round checks out
   * every idle client alongside the new ones and then releases them all. Never rejects.
   */
  async refill(): Promise<void> {
    const { pool, permits, circuit, min } = this.#options;
    if (!this.#options.isOpen() || this.#isRefilling || permits.waiting > 0) return;
    const missing = Math.min(REFILL_CONCURRENCY, min - pool.totalCount);
    const count = missing + pool.idleCount;
    if (missing <= 0 || permits.available < count || !circuit.allowConnect()) {
      if (missing > 0) this.schedule(this.#backoffMillis);
      return;
    }
    this.#isRefilling = true;
    permits.takeFree(count);
    const results = await Promise.allSettled(Array.from({ length: count }, () => pool.connect()));
    let failures = 0;
    for (const result of results) {
      if (result.status === 'fulfilled') {
        this.#options.putBack(result.value);
      } else if (this.#options.isOpen()) {
        failures++;
        // (A connect that shutdown destroyed is not a server failure: not counted. Nor is a server of
        // the wrong role for target_session_attrs: it answered, and the pool counts it as a role mismatch.)
        if (!(result.reason instanceof RoleMismatchError)) {
          this.#options.counters.connectionErrors++;
          // "Too many connections" says the server is up: no reason to open the circuit.
          if (!isCannotGrow(result.reason)) this.#options.recordConnectFailure();
          this.#options.log.debug({ error: summarize(result.reason) }, 'refill connect failed');
        }
      }
      permits.give();
    }
    this.#isRefilling = false;
    // One new connection that opened proves the server answers: close the circuit even when another
    // connect of the round failed (e.g. "the database system is starting up" just after a restart).
    if (failures < missing) circuit.recordSuccess();
    if (failures === 0) {
      this.#backoffMillis = REFILL_BACKOFF_MIN_MILLIS;
    } else {
      this.#backoffMillis = Math.min(REFILL_BACKOFF_MAX_MILLIS, this.#backoffMillis * 2);
    }
    if (this.#options.isOpen() && pool.totalCount < min) {
      this.schedule(failures === 0 ? 0 : Math.round(this.#backoffMillis * (0.5 + Math.random() * 0.5)));
    }
  }
}
