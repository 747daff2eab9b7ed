import type { Lease } from './lease.js';

/** Per-connection facts, kept beside pg's client (never on it). */
export interface ClientMeta {
  readonly createdAt: number;
  /** Epoch ms after which the connection is closed instead of reused (lifetime, or a credentials rotation). */
  retireAt: number;
  idleSince: number;
  /** An error event arrived while checked out: the connection is unusable. */
  isBroken: boolean;
  isSessionReadOnly: boolean;
  /** The lease holding this connection, while checked out: the error listener marks it broken. */
  lease: Lease | undefined;
  /** Leak detection timer of the current lease (only when leakDetectionThresholdMillis > 0). */
  leakTimer: NodeJS.Timeout | undefined;
}

/** Facts of a connection opened at `now`; `maxLifetimeMillis` 0 means it is never retired. */
export function newClientMeta(now: number, maxLifetimeMillis: number, isSessionReadOnly: boolean): ClientMeta {
  // Up to 10% jitter so connections opened together are not all retired together.
  const retireAt = maxLifetimeMillis === 0 ? Infinity : now + maxLifetimeMillis - Math.random() * maxLifetimeMillis * 0.1;
  return { createdAt: now, retireAt, idleSince: now, isBroken: false, isSessionReadOnly, lease: undefined, leakTimer: undefined };
}

/**
 * Idle no longer than `validationIntervalMillis`, so no validation is needed. 0 means every time: at
 * millisecond resolution a connection reused within the same millisecond would otherwise skip it.
 */
export function isRecentlyUsed(meta: ClientMeta, now: number, validationIntervalMillis: number): boolean {
  return validationIntervalMillis > 0 && now - meta.idleSince <= validationIntervalMillis;
}

/**
 * Ties the connection to its lease (for the error listener) and, when `thresholdMillis` > 0, calls
 * `onLeak` once if the lease is still held after that long.
 */
export function watchLease(
  meta: ClientMeta,
  lease: Lease,
  stack: string | undefined,
  thresholdMillis: number,
  onLeak: (lease: Lease, stack: string | undefined) => void,
): void {
  meta.lease = lease;
  if (thresholdMillis <= 0) return;
  meta.leakTimer = setTimeout(() => onLeak(lease, stack), thresholdMillis);
  meta.leakTimer.unref();
}

/** Unties the connection from its lease and stops its leak detection. */
export function unwatchLease(meta: ClientMeta): void {
  meta.lease = undefined;
  if (meta.leakTimer === undefined) return;
  clearTimeout(meta.leakTimer);
  meta.leakTimer = undefined;
}
