/**
 * The Fastify plugin (`@codecheck/db/fastify`): decorates the app with a ready Database, logs through
 * Fastify's logger, serves health routes, and shuts the Database down when the app closes.
 */
import { createServer } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, test } from 'vitest';
import { codecheckDb, type CodecheckDbPluginOptions } from '../../src/integrations/fastify.js';
import { ConfigError, Database, DatabaseConnectionError, PoolClosedError } from '../../src/index.js';
import { getTestDatabaseUrl } from '../support/database-url.js';
import { adminQuery, captureLogs, uniqueName } from '../support/test-database.js';

const apps: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

function databaseOptions(applicationName: string) {
  return {
    connectionString: getTestDatabaseUrl(),
    sslMode: 'disable' as const,
    connectionTimeoutMillis: 2000,
    min: 2,
    max: 4,
    applicationName,
    logLevel: 'silent' as const,
  };
}

async function start(options: CodecheckDbPluginOptions, app: FastifyInstance = Fastify()): Promise<FastifyInstance> {
  apps.push(app);
  await app.register(codecheckDb, options);
  await app.ready();
  return app;
}

async function connectionsNamed(applicationName: string): Promise<number> {
  const rows = await adminQuery<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1', [
    applicationName,
  ]);
  return rows[0]!.n;
}

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('fastify plugin', () => {
  test('decorates the app with a Database that is ready (min connections open) once app.ready() resolves', async () => {
    const name = uniqueName('plugin_ready');
    const app = await start({ databaseOptions: databaseOptions(name) });
    expect(app.db).toBeInstanceOf(Database);
    expect(app.db.getStats()).toMatchObject({ poolSize: 2, availableConnections: 2, totalConnections: 2 });
    expect(await connectionsNamed(name)).toBe(2);
    expect(await app.db.executeQuery('SELECT 41 + 1 AS answer')).toEqual([{ answer: 42 }]);
  });

  test("logs through Fastify's logger, with the library's lines marked lib=@codecheck/db", async () => {
    const { logger, records } = captureLogs('info');
    const { logLevel: _ignored, ...options } = databaseOptions(uniqueName('plugin_log'));
    const app = Fastify({ loggerInstance: logger });
    await app.register(codecheckDb, { databaseOptions: options });
    await app.ready();
    apps.push(app as unknown as FastifyInstance);
    const ours = records().filter((record) => record.lib === '@codecheck/db');
    expect(ours.map((record) => record.msg)).toEqual(expect.arrayContaining(['database pool created', 'database ready']));
  });

  test('shuts the Database down when the app closes: its connections are gone, stats show it closed, health is unhealthy', async () => {
    const name = uniqueName('plugin_close');
    const app = await start({ databaseOptions: databaseOptions(name) });
    const db = app.db;
    await app.close();
    expect(await connectionsNamed(name)).toBe(0);
    const stats = db.getStats();
    expect(stats.poolSize).toBe(0);
    expect(stats.nodes.map((node) => node.status)).toEqual(['closed']);
    expect(await db.healthCheck()).toMatchObject({ status: 'unhealthy' });
    await expect(db.executeQuery('SELECT 1')).rejects.toBeInstanceOf(PoolClosedError);
  });

  test('uses a Database passed in, makes it ready, and shuts it down on close', async () => {
    const name = uniqueName('plugin_given');
    const db = new Database({ ...databaseOptions(name), min: 1 });
    const app = await start({ database: db });
    expect(app.db).toBe(db);
    expect(db.getStats().poolSize).toBe(1);
    await app.close();
    expect(db.getStats().nodes[0]!.status).toBe('closed');
    expect(await connectionsNamed(name)).toBe(0);
  });

  test('app.ready() rejects with DatabaseConnectionError when the database does not answer within readyTimeoutMillis', async () => {
    const port = await closedPort();
    const app = Fastify();
    apps.push(app);
    await app.register(codecheckDb, {
      databaseOptions: { host: '127.0.0.1', port, sslMode: 'disable', logLevel: 'silent', min: 1 },
      readyTimeoutMillis: 300,
    });
    const startedAt = Date.now();
    await expect(app.ready()).rejects.toBeInstanceOf(DatabaseConnectionError);
    expect(Date.now() - startedAt).toBeLessThan(5000);
  });

  test('registration fails with ConfigError listing the problem when the options are invalid', async () => {
    const app = Fastify();
    apps.push(app);
    app.register(codecheckDb, { databaseOptions: { ...databaseOptions('x'), min: 5, max: 1 } });
    const error = await app.ready().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems).toHaveLength(1);
  });

  test('/health/live answers 200; /health/ready answers 200 with the report, and 503 once the Database is shut down', async () => {
    const app = await start({ databaseOptions: databaseOptions(uniqueName('plugin_health')), health: true });
    const live = await app.inject({ method: 'GET', url: '/health/live' });
    expect(live.statusCode).toBe(200);
    const ready = await app.inject({ method: 'GET', url: '/health/ready' });
    expect(ready.statusCode).toBe(200);
    expect(ready.json()).toMatchObject({ status: 'healthy', isReplica: false, poolStats: { poolSize: 2 } });
    expect(ready.json().databaseVersion).toMatch(/^PostgreSQL /);
    await app.db.shutdown();
    const after = await app.inject({ method: 'GET', url: '/health/ready' });
    expect(after.statusCode).toBe(503);
    expect(after.json()).toMatchObject({ status: 'unhealthy' });
    expect((await app.inject({ method: 'GET', url: '/health/live' })).statusCode).toBe(200);
  });

  test('registers no routes unless asked, and the health routes under a custom prefix when asked', async () => {
    const plain = await start({ databaseOptions: databaseOptions(uniqueName('plugin_plain')) });
    expect((await plain.inject({ method: 'GET', url: '/health/ready' })).statusCode).toBe(404);
    expect((await plain.inject({ method: 'GET', url: '/metrics' })).statusCode).toBe(404);
    const custom = await start({ databaseOptions: databaseOptions(uniqueName('plugin_prefix')), health: { prefix: '/_db' } });
    expect((await custom.inject({ method: 'GET', url: '/_db/ready' })).statusCode).toBe(200);
  });

  test('is not encapsulated: app.db is visible outside the register call and plugins may depend on it by name', async () => {
    const app = Fastify();
    apps.push(app);
    await app.register(codecheckDb, { databaseOptions: databaseOptions(uniqueName('plugin_dep')) });
    const dependent = Object.assign(
      async (instance: FastifyInstance) => {
        instance.get('/count', async () => instance.db.executeQuery('SELECT 3 AS n'));
      },
      { [Symbol.for('plugin-meta')]: { name: 'dependent', dependencies: ['@codecheck/db'] } },
    );
    await app.register(dependent);
    await app.ready();
    expect(app.hasDecorator('db')).toBe(true);
    expect((await app.inject({ method: 'GET', url: '/count' })).json()).toEqual([{ n: 3 }]);
  });
});
