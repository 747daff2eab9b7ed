/**
 * A connect circuit breaker. After `threshold` consecutive connect failures it opens: new
 * connections are refused at once (callers fail fast instead of each waiting a full connect
 * timeout). After `resetMillis` one probe connect is let through (half-open); its success closes
 * the circuit, its failure opens it again. `threshold` 0 turns the breaker off.
 */
export class CircuitBreaker {
  #threshold: number;
  #resetMillis: number;
  #failures = 0;
  #openUntil = 0;
  #isProbing = false;

  constructor(threshold: number, resetMillis: number) {
    this.#threshold = threshold;
    this.#resetMillis = resetMillis;
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
  }

  recordFailure(): void {
    this.#failures++;
    this.#isProbing = false;
    if (this.#threshold > 0 && this.#failures >= this.#threshold) this.#openUntil = Date.now() + this.#resetMillis;
  }
}
