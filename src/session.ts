import type { ResolvedConfig } from './config.js';

/**
 * Session settings sent as startup parameters on every new connection (no extra round trip):
 * statement_timeout, idle_in_transaction_session_timeout, lock_timeout, application_name, and
 * `default_transaction_read_only=on`, so a statement outside an explicit read-write transaction is
 * read-only unless the caller asked otherwise (the server enforces it: SQLSTATE 25006).
 */
export function sessionParameters(config: ResolvedConfig): Record<string, string | number | undefined> {
  // PgBouncer rejects these startup parameters; in that mode they are applied per transaction.
  if (config.pgbouncer) return { application_name: config.applicationName };
  return {
    application_name: config.applicationName,
    statement_timeout: config.statementTimeoutMillis || undefined,
    idle_in_transaction_session_timeout: config.idleInTransactionTimeoutMillis || undefined,
    lock_timeout: config.lockTimeoutMillis || undefined,
    options: '-c default_transaction_read_only=on',
  };
}
