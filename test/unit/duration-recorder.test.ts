import { describe, expect, it } from 'vitest';
import { DURATION_BUCKETS_MILLIS, DurationRecorder } from '../../src/stats.js';

describe('DurationRecorder', () => {
  it('reports zeros and empty buckets before the first sample', () => {
    const snapshot = new DurationRecorder().snapshot();
    expect([snapshot.count, snapshot.sumMillis, snapshot.p50Millis, snapshot.p99Millis, snapshot.maxMillis]).toEqual([
      0, 0, 0, 0, 0,
    ]);
    expect(snapshot.buckets.every((bucket) => bucket.count === 0)).toBe(true);
  });

  it('counts, sums and keeps the maximum of every sample, rounded to the microsecond', () => {
    const recorder = new DurationRecorder();
    for (const millis of [1.0004, 2, 3]) recorder.record(millis);
    const snapshot = recorder.snapshot();
    expect([snapshot.count, snapshot.sumMillis, snapshot.maxMillis]).toEqual([3, 6, 3]);
  });

  it('gives nearest-rank percentiles: of 1..100 ms, p50 is 50, p95 is 95 and p99 is 99', () => {
    const recorder = new DurationRecorder();
    for (let millis = 100; millis >= 1; millis--) recorder.record(millis);
    const { p50Millis, p95Millis, p99Millis } = recorder.snapshot();
    expect([p50Millis, p95Millis, p99Millis]).toEqual([50, 95, 99]);
  });

  it('counts buckets cumulatively, a sample on a bound in that bound, the last bucket Infinity holding all', () => {
    const recorder = new DurationRecorder();
    for (const millis of [0.1, 0.2, 1, 60_000]) recorder.record(millis);
    const buckets = new Map(recorder.snapshot().buckets.map((bucket) => [bucket.leMillis, bucket.count]));
    expect([buckets.get(0.1), buckets.get(0.25), buckets.get(1), buckets.get(30_000), buckets.get(Infinity)]).toEqual([
      1, 2, 3, 3, 4,
    ]);
    expect(buckets.size).toBe(DURATION_BUCKETS_MILLIS.length + 1);
  });

  it('takes percentiles from the latest 1024 samples while counting all of them', () => {
    const recorder = new DurationRecorder();
    for (let i = 0; i < 1024; i++) recorder.record(1000);
    for (let i = 0; i < 1024; i++) recorder.record(1);
    const snapshot = recorder.snapshot();
    expect([snapshot.count, snapshot.p99Millis, snapshot.maxMillis]).toEqual([2048, 1, 1000]);
  });
});
