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
  /** Pool size is 10 in every variant (the per-operation client variant caps concurrent connections at 10). */
  create(url: string): Promise<Variant>;
}

/** Pool size used by every variant. */
export const POOL_MAX = 10;
