/**
 * libpq's `target_session_attrs`: which server a new connection must reach, judged from what the
 * server reports at startup (PostgreSQL 14+ sends `in_hot_standby` and `default_transaction_read_only`
 * as ParameterStatus) or, for older servers, from one query.
 */

/** The values libpq accepts, with libpq's meanings. */
export const TARGET_SESSION_ATTRS = ['any', 'read-write', 'read-only', 'primary', 'standby', 'prefer-standby'] as const;
export type TargetSessionAttrs = (typeof TARGET_SESSION_ATTRS)[number];

/** What a server said about itself. */
export interface ServerRole {
  /** `in_hot_standby` (or `pg_is_in_recovery()` on servers before 14). */
  readonly isInHotStandby: boolean;
  /**
   * The server's own `default_transaction_read_only`, when known. Undefined when the library set it
   * for the session itself (its startup parameters do, outside PgBouncer), so the reported value says
   * nothing about the server.
   */
  readonly isDefaultReadOnly: boolean | undefined;
}

/**
 * Whether a server with `role` satisfies `target`. `pass` 2 is libpq's second round for
 * `prefer-standby`: when no host was a standby, any host will do.
 *
 * - `read-write`: not in hot standby and not read-only by default (libpq's `SHOW transaction_read_only`).
 * - `read-only`: the opposite. `primary` / `standby`: in hot standby or not, whatever the default.
 */
export function matchesTarget(target: TargetSessionAttrs, role: ServerRole, pass: 1 | 2 = 1): boolean {
  switch (target) {
    case 'any':
      return true;
    case 'read-write':
      return !role.isInHotStandby && role.isDefaultReadOnly !== true;
    case 'read-only':
      return role.isInHotStandby || role.isDefaultReadOnly === true;
    case 'primary':
      return !role.isInHotStandby;
    case 'standby':
      return role.isInHotStandby;
    case 'prefer-standby':
      return pass === 2 || role.isInHotStandby;
  }
}

/** Whether `target` needs the server's role at all (`any` does not: no check, no query). */
export function needsRole(target: TargetSessionAttrs): boolean {
  return target !== 'any';
}

/** A short description for messages: `a standby (in_hot_standby=on)`, `read-only by default`, `a primary`. */
export function describeRole(role: ServerRole): string {
  if (role.isInHotStandby) return 'a standby (in hot standby)';
  if (role.isDefaultReadOnly === true) return 'read-only by default (default_transaction_read_only=on)';
  return 'a primary';
}

const WANTED: Record<TargetSessionAttrs, readonly [present: string, past: string]> = {
  any: ['answers', 'answered'],
  'read-write': ['accepts writes', 'accepted writes'],
  'read-only': ['is read-only', 'was read-only'],
  primary: ['is a primary', 'was a primary'],
  standby: ['is a standby', 'was a standby'],
  'prefer-standby': ['is a standby', 'was a standby'],
};

/** What `target` asks for, as a phrase: `accepts writes` (present) or `accepted writes` (past). */
export function describeTarget(target: TargetSessionAttrs, tense: 'present' | 'past' = 'present'): string {
  return WANTED[target][tense === 'present' ? 0 : 1];
}
