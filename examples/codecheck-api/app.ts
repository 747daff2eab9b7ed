/**
 * The CodeCheck API as a Fastify app: `@codecheck/db/fastify` gives it `app.db`, health routes and
 * /metrics; the schema is created on start when missing; errors become clear HTTP answers.
 */
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { codecheckDb, type Database, type DatabaseOptions } from './codecheck-db.js';
import { handleError } from './errors.js';
import { jurisdictionRoutes } from './routes.js';
import { migrate } from './schema.js';

/** Options of {@link buildApp}. */
export interface AppOptions {
  /** Use this Database (the app still shuts it down on close). */
  database?: Database;
  /** Options for the Database the app creates, over DATABASE_URL / DB_*. */
  databaseOptions?: DatabaseOptions;
  /** Fastify's logger option. @default true (pino JSON at info) */
  logger?: FastifyServerOptions['logger'];
  /** How long the database may take to be ready at startup, ms. @default DB_TIMEOUT */
  readyTimeoutMillis?: number;
}

/**
 * Builds the app; nothing connects until `app.ready()` / `app.listen()`, which wait for the database
 * (`db.ready()`) and then create the schema if its tables are missing. `app.close()` closes the
 * server, then the database (`db.shutdown()`).
 * @throws {ConfigError} when the database configuration is invalid.
 */
export async function buildApp(options: AppOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: options.logger ?? true,
    return503OnClosing: true,
    // Fastify's default ajv coerces types ("name": 12345 becomes "12345") and removes properties the
    // schema does not list; the API promises a 400 naming the field instead, so both are off.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false } },
  });
  app.setErrorHandler(handleError);
  await app.register(codecheckDb, {
    database: options.database,
    databaseOptions: options.databaseOptions,
    readyTimeoutMillis: options.readyTimeoutMillis,
    health: true,
    metrics: true,
  });
  // Runs after the plugin's own onReady hook (db.ready()), so the database answers by now.
  app.addHook('onReady', async () => {
    if (await migrate(app.db)) app.log.info('created the schema and its seed data');
  });
  await app.register(jurisdictionRoutes);
  return app;
}
