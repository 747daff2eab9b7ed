import type { Operations } from '../workloads.js';

/** One way of talking to PostgreSQL, set up against one server. */
export interface Variant extends Operations {
  /** Releases every connection it holds. */
  close(): Promise<void>;
  /** Called before each measured window (warm-up included), for a variant that must start afresh. */
  reset?(): Promise<void>;
}

/** A variant's name, label and factory. */
export interface VariantSpec {
  readonly name: string;
  /** Shown in tables and charts. */
  readonly label: string;
  /** Pool size is POOL_MAX in every variant (the per-operation client variant caps concurrent connections at it). */
  create(url: string): Promise<Variant>;
}

/** Pool size used by every variant: 10, or what `--max` says (bench/run.ts, for the curve of ops/s against max). */
export let POOL_MAX = 10;

/** Sets {@link POOL_MAX} for the variants created from now on. */
export function setPoolMax(max: number): void {
  POOL_MAX = max;
}
