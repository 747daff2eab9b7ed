/**
 * `@codecheck/db/fastify`: a Fastify plugin that gives the app one {@link Database} as `app.db`, with
 * Fastify's logger, `ready()` on startup, `shutdown()` on close, and optional health and metrics
 * routes. fastify is an optional peer dependency and is only imported here for its types.
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { DatabaseOptions } from '../config.js';
import { Database } from '../database.js';
import { checkMillis } from '../durations.js';
import type { HealthReport } from '../health.js';
import type { DatabaseMetrics } from './prometheus.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** The Database registered by `@codecheck/db/fastify`. */
    db: Database;
  }
}

/** Options of the health routes. */
export interface HealthRouteOptions {
  /** Routes are `${prefix}/live` and `${prefix}/ready`. @default '/health' */
  prefix?: string;
  /** Deadline of the check behind `/ready`, ms; keep it below the probe's timeoutSeconds. @default 1000 */
  timeoutMillis?: number;
}

/** Options of the metrics route. */
export interface MetricsRouteOptions {
  /** @default '/metrics' */
  path?: string;
  /**
   * The prom-client registry to add the Database's metrics to and serve. Pass prom-client's global
   * `register` to serve them beside your own and the default process metrics. @default a new Registry
   */
  register?: Registry;
  /** Metric name prefix. @default 'codecheck_db_' */
  prefix?: string;
  /** Constant labels on every series. */
  labels?: Readonly<Record<string, string>>;
}

/** Options of the plugin. */
export interface CodecheckDbPluginOptions {
  /** A Database to use instead of creating one (its logger is then whatever it was built with). */
  database?: Database;
  /** Options for the Database the plugin creates (over `process.env`). `logger` defaults to `app.log`. */
  databaseOptions?: DatabaseOptions;
  /** How long `ready()` may take at startup, ms. @default connectionTimeoutMillis (DB_TIMEOUT) */
  readyTimeoutMillis?: number;
  /** How long in-flight work may finish on close before it is cancelled, ms. @default 10000 */
  shutdownTimeoutMillis?: number;
  /** Register `GET /health/live` and `GET /health/ready`. @default false */
  health?: boolean | HealthRouteOptions;
  /** Register `GET /metrics` (Prometheus text; needs prom-client). @default false */
  metrics?: boolean | MetricsRouteOptions;
}

/**
 * The plugin. It decorates the app with `db` (created from `databaseOptions` over `process.env`, with
 * `app.log` as its logger, unless `database` is given), runs `db.ready()` in an `onReady` hook (so
 * `app.ready()` / `app.listen()` reject when the database does not answer in time) and
 * `db.shutdown()` in an `onClose` hook. It is not encapsulated: `app.db` and the routes belong to
 * the instance it is registered on.
 *
 * Routes, when enabled: `/health/live` answers 200 while the process runs (it never touches the
 * database, so a database outage does not restart the pod); `/health/ready` answers 200 when the
 * report is healthy or degraded, 503 when unhealthy, with the report as body; `/metrics` serves the
 * registry in the Prometheus text format (src/integrations/prometheus.ts is loaded only when enabled).
 *
 * @throws {ConfigError} `CONFIG_INVALID` at registration when the configuration is invalid.
 * @throws {TypeError} at registration when both `database` and `databaseOptions` are given, or a
 * duration option is not a number of milliseconds up to 2^31−1.
 * @throws {DatabaseConnectionError} from `app.ready()` when the database is not ready in time.
 * @throws {Error} at registration when `metrics` is enabled and prom-client is not installed.
 */
async function codecheckDb(app: FastifyInstance, options: CodecheckDbPluginOptions = {}): Promise<void> {
  if (options.database && options.databaseOptions)
    throw new TypeError(
      '@codecheck/db/fastify: pass either `database` or `databaseOptions`, not both (the options would be ignored)',
    );
  // Checked at registration: a bad value would otherwise surface only at startup, shutdown or every probe.
  checkMillis(options.readyTimeoutMillis, '@codecheck/db/fastify readyTimeoutMillis');
  checkMillis(options.shutdownTimeoutMillis, '@codecheck/db/fastify shutdownTimeoutMillis', 0);
  if (typeof options.health === 'object') checkMillis(options.health.timeoutMillis, '@codecheck/db/fastify health.timeoutMillis');
  const db =
    options.database ??
    new Database({ ...options.databaseOptions, logger: options.databaseOptions?.logger ?? (app.log as unknown as Logger) });
  app.decorate('db', db);
  let metrics: DatabaseMetrics | undefined;
  app.addHook('onReady', async () => {
    await db.ready({ timeoutMillis: options.readyTimeoutMillis });
  });
  app.addHook('onClose', async () => {
    metrics?.unregister();
    await db.shutdown({ timeoutMillis: options.shutdownTimeoutMillis });
  });
  if (options.health) registerHealthRoutes(app, db, options.health === true ? {} : options.health);
  if (options.metrics) metrics = await registerMetricsRoute(app, db, options.metrics === true ? {} : options.metrics);
}

function registerHealthRoutes(app: FastifyInstance, db: Database, options: HealthRouteOptions): void {
  const prefix = options.prefix ?? '/health';
  const timeoutMillis = options.timeoutMillis ?? 1000;
  // Probes of several kinds (and several kubelets) may arrive together: they share one check.
  let running: Promise<HealthReport> | undefined;
  app.get(`${prefix}/live`, async () => ({ status: 'alive' }));
  app.get(`${prefix}/ready`, async (_request, reply: FastifyReply) => {
    running ??= db.healthCheck({ timeoutMillis }).finally(() => (running = undefined));
    const report = await running;
    return reply
      .code(report.status === 'unhealthy' ? 503 : 200)
      .header('cache-control', 'no-store')
      .send(report);
  });
}

async function registerMetricsRoute(app: FastifyInstance, db: Database, options: MetricsRouteOptions): Promise<DatabaseMetrics> {
  let promClient: typeof import('prom-client');
  let prometheus: typeof import('./prometheus.js');
  try {
    [promClient, prometheus] = await Promise.all([import('prom-client'), import('./prometheus.js')]);
  } catch (error) {
    throw new Error('@codecheck/db/fastify: metrics need the prom-client package (npm install prom-client@15)', { cause: error });
  }
  const register = options.register ?? new promClient.Registry();
  const metrics = prometheus.registerDatabaseMetrics(db, { register, prefix: options.prefix, labels: options.labels });
  app.get(options.path ?? '/metrics', async (_request, reply: FastifyReply) => {
    const text = await register.metrics();
    return reply.type(register.contentType).header('cache-control', 'no-store').send(text);
  });
  return metrics;
}

/*
 * What fastify-plugin would set, without the dependency: skip-override makes the plugin act on the
 * instance it is registered on (not an encapsulated child), plugin-meta lets Fastify check the
 * version and lets other plugins declare `dependencies: ['@codecheck/db']`.
 */
Object.assign(codecheckDb, {
  [Symbol.for('skip-override')]: true,
  [Symbol.for('fastify.display-name')]: '@codecheck/db',
  [Symbol.for('plugin-meta')]: { fastify: '5.x', name: '@codecheck/db' },
});

export { codecheckDb };
export default codecheckDb;
