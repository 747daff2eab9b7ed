import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { CircuitBreaker } from '../../src/pool/circuit-breaker.js';

beforeEach(() => {
  vi.useFakeTimers({ now: 1_000_000 });
});
afterEach(() => {
  vi.useRealTimers();
});

/** A breaker that has seen `failures` connect failures in a row. */
function failedTimes(failures: number, threshold = 3, resetMillis = 5000): CircuitBreaker {
  const breaker = new CircuitBreaker(threshold, resetMillis);
  for (let i = 0; i < failures; i++) breaker.recordFailure();
  return breaker;
}

describe('CircuitBreaker', () => {
  it('stays closed and allows connects below the threshold of consecutive failures', () => {
    const breaker = failedTimes(2);
    expect([breaker.state(), breaker.allowConnect()]).toEqual(['closed', true]);
  });

  it('opens at the threshold and refuses connects until the reset time', () => {
    const breaker = failedTimes(3);
    expect([breaker.state(), breaker.allowConnect()]).toEqual(['open', false]);
    vi.advanceTimersByTime(4999);
    expect([breaker.state(), breaker.allowConnect()]).toEqual(['open', false]);
  });

  it('lets exactly one probe connect through once half-open', () => {
    const breaker = failedTimes(3);
    vi.advanceTimersByTime(5000);
    expect(breaker.state()).toBe('half-open');
    expect([breaker.allowConnect(), breaker.allowConnect()]).toEqual([true, false]);
  });

  it('closes after the probe succeeds', () => {
    const breaker = failedTimes(3);
    vi.advanceTimersByTime(5000);
    breaker.allowConnect();
    breaker.recordSuccess();
    expect([breaker.state(), breaker.allowConnect(), breaker.allowConnect()]).toEqual(['closed', true, true]);
  });

  it('opens again for a full reset time after the probe fails', () => {
    const breaker = failedTimes(3);
    vi.advanceTimersByTime(5000);
    breaker.allowConnect();
    breaker.recordFailure();
    expect([breaker.state(), breaker.allowConnect()]).toEqual(['open', false]);
    vi.advanceTimersByTime(5000);
    expect(breaker.allowConnect()).toBe(true);
  });

  it('counts failures only in a row: a success in between starts the count again', () => {
    const breaker = failedTimes(2);
    breaker.recordSuccess();
    breaker.recordFailure();
    breaker.recordFailure();
    expect(breaker.state()).toBe('closed');
  });

  it('never opens with threshold 0 (off)', () => {
    const breaker = failedTimes(100, 0);
    expect([breaker.state(), breaker.allowConnect()]).toEqual(['closed', true]);
  });
});
