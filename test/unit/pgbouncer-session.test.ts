import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { sessionParameters, transactionSettings } from '../../src/session.js';

describe('PgBouncer mode session settings', () => {
  it('sends only application_name as a startup parameter behind PgBouncer', () => {
    const config = loadConfig(
      {},
      { pgbouncer: true, applicationName: 'svc', statementTimeoutMillis: 5000, lockTimeoutMillis: 100 },
    );
    expect(sessionParameters(config)).toEqual({ application_name: 'svc' });
  });

  it('turns every non-zero timeout into a SET LOCAL behind PgBouncer, in a fixed order', () => {
    const config = loadConfig({
      DB_PGBOUNCER: 'true',
      DB_STATEMENT_TIMEOUT: '1500',
      DB_IDLE_TIMEOUT: '2500',
      DB_LOCK_TIMEOUT: '700',
    });
    expect(transactionSettings(config)).toEqual([
      'SET LOCAL statement_timeout = 1500',
      'SET LOCAL idle_in_transaction_session_timeout = 2500',
      'SET LOCAL lock_timeout = 700',
    ]);
  });

  it('leaves out a timeout of 0, as the startup parameters do', () => {
    const config = loadConfig({}, { pgbouncer: true, statementTimeoutMillis: 0, idleInTransactionTimeoutMillis: 60_000 });
    expect(transactionSettings(config)).toEqual(['SET LOCAL idle_in_transaction_session_timeout = 60000']);
  });

  it('sends no SET LOCAL when not behind PgBouncer', () => {
    expect(transactionSettings(loadConfig({}, { statementTimeoutMillis: 5000 }))).toEqual([]);
  });

  it('warns that DB_PGBOUNCER_PREPARED_STATEMENTS has no effect without DB_PGBOUNCER', () => {
    const alone = loadConfig({ DB_PGBOUNCER_PREPARED_STATEMENTS: 'true' });
    expect(alone.pgbouncerPreparedStatements).toBe(true);
    expect(alone.warnings.filter((w) => w.includes('DB_PGBOUNCER_PREPARED_STATEMENTS'))).toHaveLength(1);
    const together = loadConfig({ DB_PGBOUNCER_PREPARED_STATEMENTS: 'true', DB_PGBOUNCER: 'true' });
    expect(together.warnings.filter((w) => w.includes('DB_PGBOUNCER_PREPARED_STATEMENTS'))).toEqual([]);
  });
});
