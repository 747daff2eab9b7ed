/**
 * The URL of the PostgreSQL server shared by the test run.
 */
import { inject } from 'vitest';

/**
 * The shared test database: `TEST_DATABASE_URL` when set, otherwise the server that
 * `test/support/global-setup.ts` started for this run. Throws when neither is available.
 */
export function getTestDatabaseUrl(): string {
  const url = process.env.TEST_DATABASE_URL || inject('databaseUrl');
  if (!url) {
    throw new Error('No test database: set TEST_DATABASE_URL or run through vitest.config.ts (its globalSetup starts one)');
  }
  return url;
}
