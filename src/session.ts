import type { ResolvedConfig } from './config.js';

/**
 * Session settings sent as startup parameters on every new connection (no extra round trip):
 * statement_timeout, idle_in_transaction_session_timeout, lock_timeout, application_name, and
 * `default_transaction_read_only=on`, so a statement outside an explicit read-write transaction is
 * read-only unless the caller asked otherwise (the server enforces it: SQLSTATE 25006).
 *
 * Behind PgBouncer only application_name is sent: PgBouncer refuses the others ("unsupported startup
 * parameter", node-postgres #2103) and a session setting would not follow the client to the next
 * server connection anyway; {@link transactionSettings} applies them per transaction instead.
 */
export function sessionParameters(config: ResolvedConfig): Record<string, string | number | undefined> {
  // PgBouncer accepts application_name (it is one of the parameters it tracks and replays per server).
  if (config.pgbouncer) return { application_name: config.applicationName };
  return {
    application_name: config.applicationName,
    statement_timeout: config.statementTimeoutMillis || undefined,
    idle_in_transaction_session_timeout: config.idleInTransactionTimeoutMillis || undefined,
    lock_timeout: config.lockTimeoutMillis || undefined,
    options: '-c default_transaction_read_only=on',
  };
}

/** The timeouts {@link transactionSettings} applies, by server setting name. */
const TRANSACTION_TIMEOUTS = [
  ['statement_timeout', 'statementTimeoutMillis'],
  ['idle_in_transaction_session_timeout', 'idleInTransactionTimeoutMillis'],
  ['lock_timeout', 'lockTimeoutMillis'],
] as const;

/**
 * The `SET LOCAL` statements that give a transaction the configured timeouts behind PgBouncer, where
 * they cannot be session settings; empty otherwise. A timeout of 0 is left out, as it is left out of
 * the startup parameters (the server's own default applies). The values are the resolved config's
 * validated integers, never caller input; they are checked again here because they become SQL text.
 */
export function transactionSettings(config: ResolvedConfig): readonly string[] {
  if (!config.pgbouncer) return [];
  return TRANSACTION_TIMEOUTS.flatMap(([setting, option]) => {
    const millis = config[option];
    if (!Number.isSafeInteger(millis) || millis < 0)
      throw new RangeError(`${option} must be a non-negative integer (got ${String(millis)})`);
    return millis === 0 ? [] : [`SET LOCAL ${setting} = ${millis}`];
  });
}
