/**
 * A connect circuit breaker. After `threshold` consecutive connect failures it opens: new
 * connections are refused at once (callers fail fast instead of each waiting a full connect
 * timeout). A breaker exists to fail fast while the server is down, never to keep the service down
 * once it is back: while open, a background trial connect (`probe`) runs after 25, 50, then every
 * 100 ms, and its first success closes the circuit (first success within about 150 ms of the server
 * accepting connections again, docs/reliability.md). After 30 s open, the trials space out, doubling
 * up to `resetMillis`, so a server that stays down (or refuses our login) is not probed ten times a
 * second for ever. Without a probe, after `resetMillis` one caller's connect is let
 * through (half-open): its success closes the circuit, its failure opens it again. `threshold` 0
 * turns the breaker off.
 */

import { startTimer } from '../timers.js';

const FIRST_TRIAL_MILLIS = 25;
const STEADY_TRIAL_MILLIS = 100;
/** How long trials stay at {@link STEADY_TRIAL_MILLIS} before they space out towards `resetMillis`. */
const STEADY_FOR_MILLIS = 30_000;

/** A trial connect: true when the server accepted a connection and answered. Never rejects. */
export type CircuitProbe = () => Promise<boolean>;

export class CircuitBreaker {
  #threshold: number;
  #resetMillis: number;
  #probe: CircuitProbe | undefined;
  #failures = 0;
  #openUntil = 0;
  #openedAt = 0;
  #isProbing = false;
  #trialTimer: NodeJS.Timeout | undefined;
  #isStopped = false;

  constructor(threshold: number, resetMillis: number, probe?: CircuitProbe) {
    this.#threshold = threshold;
    this.#resetMillis = resetMillis;
    this.#probe = probe;
  }

  /** closed: connects allowed; open: refused; half-open: one probe in flight or allowed next. */
  state(): 'closed' | 'open' | 'half-open' {
    if (this.#threshold === 0 || this.#failures < this.#threshold) return 'closed';
    return Date.now() < this.#openUntil ? 'open' : 'half-open';
  }

  /** May a new connection be attempted now? In half-open state only one caller gets `true`. */
  allowConnect(): boolean {
    const state = this.state();
    if (state === 'closed') return true;
    if (state === 'open' || this.#isProbing) return false;
    this.#isProbing = true;
    return true;
  }

  recordSuccess(): void {
    this.#failures = 0;
    this.#isProbing = false;
    clearTimeout(this.#trialTimer);
    this.#trialTimer = undefined;
  }

  /**
   * A connect failed in a way that says nothing about the server as a whole (one host of a host list
   * refused while the search goes on to the others): the failure count stays as it is, and a half-open
   * slot this connect held is freed for the next attempt.
   */
  recordInconclusive(): void {
    this.#isProbing = false;
  }

  recordFailure(): void {
    this.#failures++;
    this.#isProbing = false;
    if (this.#threshold === 0 || this.#failures < this.#threshold) return;
    const wasOpen = this.#openUntil > Date.now() || this.#trialTimer !== undefined;
    this.#openUntil = Date.now() + this.#resetMillis;
    if (!wasOpen) this.#openedAt = Date.now();
    if (this.#trialTimer === undefined) this.#scheduleTrial(FIRST_TRIAL_MILLIS);
  }

  /** Stops background trials for good (shutdown). */
  stop(): void {
    this.#isStopped = true;
    clearTimeout(this.#trialTimer);
    this.#trialTimer = undefined;
  }

  #scheduleTrial(delayMillis: number): void {
    if (!this.#probe || this.#isStopped) return;
    const probe = this.#probe;
    const timer = startTimer(
      delayMillis,
      () => {
        void probe().then((isUp) => {
          if (this.#trialTimer !== timer) return; // closed meanwhile, or stopped
          this.#trialTimer = undefined;
          if (isUp) return this.recordSuccess();
          const next =
            Date.now() - this.#openedAt < STEADY_FOR_MILLIS
              ? Math.min(delayMillis * 2, STEADY_TRIAL_MILLIS)
              : Math.min(Math.max(delayMillis * 2, STEADY_TRIAL_MILLIS), this.#resetMillis);
          this.#scheduleTrial(next);
        });
      },
      // A trial alone never holds the process open.
      'unref',
    );
    this.#trialTimer = timer;
  }
}
