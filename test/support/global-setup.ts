/**
 * Vitest globalSetup: gives every test worker a database URL (`inject('databaseUrl')`).
 *
 * Uses `TEST_DATABASE_URL` when set; otherwise starts one shared PostgreSQL 18 primary for the
 * whole run and destroys it at teardown.
 */
import type { TestProject } from 'vitest/node';
import { reapOrphanedServers, startPostgres, type PostgresServer } from './postgres-server.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** postgres:// URL of the shared test database. */
    databaseUrl: string;
  }
}

/** Starts (or adopts) the shared test database; returns the teardown. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const external = process.env.TEST_DATABASE_URL;
  if (external) {
    project.provide('databaseUrl', external);
    return async () => undefined;
  }
  const reaped = await reapOrphanedServers();
  if (reaped > 0) console.warn(`global-setup: removed ${reaped} PostgreSQL server(s) left by dead test processes`);
  let server: PostgresServer | undefined;
  try {
    server = await startPostgres();
  } catch (error) {
    // The first thing a newcomer runs: one sentence that says what to do, not a stack.
    const message = `npm test could not start its PostgreSQL server: ${(error as Error).message}\nOr set TEST_DATABASE_URL to use a server of your own.`;
    throw Object.assign(new Error(message), { stack: message });
  }
  project.provide('databaseUrl', server.url);
  return async () => {
    await server?.destroy();
    server = undefined;
  };
}
