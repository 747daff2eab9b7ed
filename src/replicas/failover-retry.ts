import { DatabaseConnectionError, sqlStateOf } from '../errors.js';
import type { Lease } from '../pool/lease.js';
import { BeginConnectionError, BeginRefusedError } from '../transaction.js';
import { serverParameter } from './role-check.js';

/** Most attempts of one call while the primary is being followed (each within the caller's deadline). */
const MAX_ATTEMPTS = 20;
const PAUSE_MIN_MILLIS = 25;
const PAUSE_MAX_MILLIS = 200;

/** What kind of work failed: one `executeQuery` statement, or a `withDb`/`executeTransaction` call. */
export interface FailedWork {
  readonly isReadOnly: boolean;
  readonly isStatement: boolean;
  /** 1 for the first attempt. */
  readonly attempt: number;
}

/**
 * The "may retry" rule of the call frame's two kinds of work (src/call-work.ts): whether a failed
 * attempt may run again on another connection because none of the caller's work ran, and after how
 * long. It also tells the pool when the failure shows that the server is not the primary:
 *
 * - BEGIN found the connection dead: nothing ran, retry at once.
 * - The server refused `BEGIN READ WRITE` (in recovery: SQLSTATE 0A000 or 25006): nothing ran; the
 *   host is marked not-primary and the work retried after a short pause (a promotion may be under
 *   way); where the pool does not look for a primary (one host pointed at a standby on purpose), only
 *   once, in case the name moved to a primary.
 * - A read-write `executeQuery` statement refused with 25006 on a session whose server did not say
 *   `in_hot_standby=off`: it was refused before it ran; marked and retried the same way.
 * - A caller's statement inside a read-write transaction refused with 25006: the host is marked, but
 *   the call is not replayed (the caller's code already ran); it rejects with the statement's error.
 * - A read whose connection died before answering: retried once, at once.
 *
 * Never more than 20 attempts; the frame also stops at the call's deadline.
 * @returns false (no retry) or the pause before the retry, ms.
 */
export function retryAfter(lease: Lease, error: unknown, work: FailedWork): number | false {
  const isNotPrimary = isRefusedAsStandby(lease, error, work);
  const seeksPrimary =
    isNotPrimary && lease.owner.markNotPrimary(lease, `refused read-write work (SQLSTATE ${sqlStateOf(error)})`);
  if (work.attempt >= MAX_ATTEMPTS) return false;
  if (error instanceof BeginConnectionError) return 0;
  if (error instanceof BeginRefusedError || (work.isStatement && isNotPrimary)) {
    // A pool that does not look for a primary (one host, target any, never reached a primary) tries
    // once more on a new connection, in case the name moved to a primary, then lets the refusal stand.
    if (!seeksPrimary && work.attempt > 1) return false;
    return Math.min(PAUSE_MAX_MILLIS, PAUSE_MIN_MILLIS * 2 ** (work.attempt - 1));
  }
  const isDeadRead = work.isStatement && work.isReadOnly && lease.isBroken && error instanceof DatabaseConnectionError;
  return isDeadRead && work.attempt === 1 ? 0 : false;
}

function isRefusedAsStandby(lease: Lease, error: unknown, work: FailedWork): boolean {
  if (error instanceof BeginRefusedError) return true;
  if (work.isReadOnly || sqlStateOf(error) !== '25006') return false;
  // A session the server reported as a primary refused the statement for another reason (the caller's
  // own SET TRANSACTION READ ONLY): not a role change.
  return serverParameter(lease.client, 'in_hot_standby') !== 'off';
}
