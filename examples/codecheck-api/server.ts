/**
 * Runs the CodeCheck API: `node --import tsx examples/codecheck-api/server.ts` with DATABASE_URL (or
 * DB_*) set; HOST and PORT choose where it listens (default 0.0.0.0:3000). SIGTERM and SIGINT close
 * it gracefully: the server stops accepting, in-flight requests finish, then the database pool
 * drains (`app.close()` → `db.shutdown()`).
 */
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { buildApp } from './app.js';

/** Longest a graceful close may take before the process exits anyway (keep below terminationGracePeriodSeconds). */
const CLOSE_DEADLINE_MILLIS = 15_000;

/**
 * Listens on `host:port`; when `port` is taken and `isPortFlexible`, on a free port instead.
 * @returns the address, e.g. `http://127.0.0.1:3000`.
 * @throws {Error} when the app does not start (its database is closed again).
 */
export async function listen(
  app: FastifyInstance,
  options: { host: string; port: number; isPortFlexible?: boolean },
): Promise<string> {
  try {
    return await app.listen({ host: options.host, port: options.port });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE' && options.isPortFlexible)
      return app.listen({ host: options.host, port: 0 });
    await app.close();
    throw error;
  }
}

/**
 * Closes `app` on the first SIGTERM or SIGINT, then calls `afterClose`; a second signal exits at
 * once. The process exits when everything is closed (or after {@link CLOSE_DEADLINE_MILLIS}).
 */
export function closeOnSignals(app: FastifyInstance, afterClose: () => Promise<void> = async () => undefined): void {
  let isClosing = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (isClosing) {
      app.log.warn({ signal }, 'second signal: exiting without waiting');
      process.exit(1);
    }
    isClosing = true;
    app.log.info({ signal }, 'closing: no new requests, waiting for those in flight, then draining the database pool');
    setTimeout(() => {
      app.log.error(`graceful close took longer than ${CLOSE_DEADLINE_MILLIS} ms; exiting`);
      process.exit(1);
    }, CLOSE_DEADLINE_MILLIS).unref();
    app
      .close()
      .then(afterClose)
      .then(
        () => {
          process.exitCode = 0;
        },
        (error: unknown) => {
          app.log.error({ err: error }, 'graceful close failed');
          process.exitCode = 1;
        },
      );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

function isEntryPoint(): boolean {
  try {
    return process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href;
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  const app = await buildApp();
  closeOnSignals(app);
  await listen(app, { host: process.env.HOST ?? '0.0.0.0', port: Number(process.env.PORT ?? 3000) });
}
