import type pg from 'pg';
import { DatabaseConnectionError, PoolTimeoutError } from '../errors.js';
import type { PoolBacking } from './pool-backing.js';
import type { FacadeSettings } from './pool-config.js';

/**
 * What code written against pg sees of the drop-in Pool beside its methods: failures in pg's shape,
 * pg-pool's option names, callbacks called as pg-pool calls them.
 */

/** pg-pool's `connect(callback)` callback. */
export type ConnectCallback = (
  error: Error | undefined,
  client: pg.PoolClient | undefined,
  done: (release?: unknown) => void,
) => void;

export const NOOP = (): undefined => undefined;

/**
 * A failure as pg reports it: a connection that could not be opened rejects with pg's own error (the
 * socket's or the server's, with its `code`), a deadline with pg-pool's words in front of the
 * library's message. The library's classes stay for what pg has no class for (PoolTimeoutError,
 * PoolClosedError, CIRCUIT_OPEN).
 */
export function asPgError(error: Error): Error {
  if (error instanceof PoolTimeoutError) {
    error.message = `timeout exceeded when trying to connect: ${error.message}`;
    return error;
  }
  if (error instanceof DatabaseConnectionError && error.code === 'CONNECTION_FAILED' && error.cause instanceof Error)
    return error.cause;
  return error;
}

/** pg-pool's own option names for what the Database resolved, so `pool.options` reads as pg's. */
export function pgOptionsOf(backing: PoolBacking, given: object, settings: FacadeSettings): Record<string, unknown> {
  const c = backing.config;
  const options: Record<string, unknown> = {
    ...given,
    host: c.host,
    port: c.port,
    user: c.user,
    database: c.database,
    max: c.max,
    min: c.min,
    idleTimeoutMillis: c.idleTimeoutMillis,
    connectionTimeoutMillis: settings.isUnboundedWait ? 0 : c.connectionTimeoutMillis,
    maxLifetimeSeconds: c.maxLifetimeMillis / 1000,
    application_name: c.applicationName,
    allowExitOnIdle: true,
  };
  // pg-pool hides it from enumeration and logs; Prisma's adapter reads it back for a shadow database.
  if (c.password !== undefined) options.password = c.password;
  return options;
}

/**
 * Makes `options.connectionString` (which may carry a password) readable but not enumerable, as
 * pg-pool makes `password`: `JSON.stringify(pool.options)` and `util.inspect(pool)` do not show it.
 */
export function hideSecrets(options: Record<string, unknown>): void {
  if (!('connectionString' in options)) return;
  Object.defineProperty(options, 'connectionString', {
    value: options.connectionString,
    enumerable: false,
    writable: true,
    configurable: true,
  });
}

/** Calls a caller's callback outside our promise chain, so an exception it throws is not swallowed. */
export function callOutside(callback: ConnectCallback, ...args: Parameters<ConnectCallback>): void {
  try {
    callback(...args);
  } catch (error) {
    process.nextTick(() => {
      throw error;
    });
  }
}
