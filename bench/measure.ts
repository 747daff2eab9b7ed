/**
 * Closed-loop load: `concurrency` workers each run one operation after another until the window
 * ends. Latency is measured per operation; throughput is completed operations over the window.
 */
import { Random, runOperation, type Operations, type WorkloadName } from './workloads.js';

/** What one measured window produced. */
export interface WindowResult {
  readonly opsPerSec: number;
  readonly operations: number;
  readonly errors: number;
  readonly p50Millis: number;
  readonly p99Millis: number;
  /** CPU time (user + system) of this Node process per completed operation, µs: the client-side cost. */
  readonly cpuMicrosPerOp: number;
  /** CPU time of the PostgreSQL server per completed operation, µs (own server only; 10 ms tick resolution). */
  readonly serverCpuMicrosPerOp?: number;
  /** The first error's message, when any operation failed. */
  readonly firstError?: string;
}

/** A growable array of latency samples, reused across windows. */
class Samples {
  #values = new Float64Array(1 << 16);
  length = 0;
  push(value: number): void {
    if (this.length === this.#values.length) {
      const bigger = new Float64Array(this.#values.length * 2);
      bigger.set(this.#values);
      this.#values = bigger;
    }
    this.#values[this.length++] = value;
  }
  percentiles(...quantiles: number[]): number[] {
    const sorted = this.#values.subarray(0, this.length).sort();
    return quantiles.map((q) =>
      sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!,
    );
  }
}

const samples = new Samples();

/**
 * Runs `workload` for `seconds` (after `warmupSeconds` unmeasured) with `concurrency` workers.
 * Operations still running when the window closes finish but are not counted.
 */
export async function runWindow(
  ops: Operations,
  workload: WorkloadName,
  concurrency: number,
  seconds: number,
  warmupSeconds: number,
  seed: number,
  serverCpuSeconds?: () => number | undefined,
): Promise<WindowResult> {
  if (warmupSeconds > 0) await drive(ops, workload, concurrency, warmupSeconds, seed ^ 0x5bd1e995, undefined);
  samples.length = 0;
  const cpuBefore = process.cpuUsage();
  const serverBefore = serverCpuSeconds?.();
  const outcome = await drive(ops, workload, concurrency, seconds, seed, samples);
  const cpu = process.cpuUsage(cpuBefore);
  const serverAfter = serverCpuSeconds?.();
  const serverCpu = serverBefore !== undefined && serverAfter !== undefined ? serverAfter - serverBefore : undefined;
  const [p50, p99] = samples.percentiles(0.5, 0.99);
  return {
    opsPerSec: outcome.completed / seconds,
    operations: outcome.completed,
    errors: outcome.errors,
    p50Millis: round(p50!),
    p99Millis: round(p99!),
    cpuMicrosPerOp: Math.round(((cpu.user + cpu.system) / Math.max(1, outcome.completed)) * 10) / 10,
    ...(serverCpu !== undefined
      ? { serverCpuMicrosPerOp: Math.round(((serverCpu * 1e6) / Math.max(1, outcome.completed)) * 10) / 10 }
      : {}),
    ...(outcome.firstError ? { firstError: outcome.firstError } : {}),
  };
}

async function drive(
  ops: Operations,
  workload: WorkloadName,
  concurrency: number,
  seconds: number,
  seed: number,
  record: Samples | undefined,
) {
  const startedAt = performance.now();
  const endsAt = startedAt + seconds * 1000;
  let completed = 0;
  let errors = 0;
  let firstError: string | undefined;
  async function worker(index: number): Promise<void> {
    const random = new Random(seed * 31 + index * 7919 + 1);
    for (;;) {
      const opStartedAt = performance.now();
      if (opStartedAt >= endsAt) return;
      try {
        await runOperation(ops, workload, random);
      } catch (error) {
        errors++;
        firstError ??= (error as Error)?.message ?? String(error);
      }
      const finishedAt = performance.now();
      if (finishedAt <= endsAt) {
        completed++;
        record?.push(finishedAt - opStartedAt);
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, (_, i) => worker(i)));
  return { completed, errors, firstError };
}

/** The median of `values` (mean of the middle two for an even count). */
export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function round(millis: number): number {
  return Math.round(millis * 1000) / 1000;
}
