import { createServer } from 'node:net';
import { inspect } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Database, DatabaseConnectionError, type DatabaseOptions } from '../../src/index.js';
import { startPostgres, type PostgresServer } from '../support/postgres-server.js';
import { captureLogs } from '../support/test-database.js';

// Distinctive, with characters that need percent-encoding in a URL.
const PASSWORD = 'Qz7!pw@Secret#9';
const WRONG_PASSWORD = 'Wr0ng/Pw%Zk4';
const forms = (secret: string) => [secret, encodeURIComponent(secret), Buffer.from(secret).toString('base64')];

let server: PostgresServer;
beforeAll(async () => {
  server = await startPostgres({ password: PASSWORD });
});
afterAll(async () => {
  await server?.destroy();
});

/** Everything a caller or operator could see, as text. */
function exposures(parts: { logs: string[]; values: unknown[] }): string[] {
  return [
    ...parts.logs,
    ...parts.values.flatMap((value) => [
      JSON.stringify(value) ?? '',
      inspect(value, { depth: 20, showHidden: false }),
      value instanceof Error
        ? `${value.message}\n${value.stack ?? ''}\n${String(value.cause instanceof Error ? value.cause.message : '')}`
        : '',
    ]),
  ];
}

function expectNoSecret(texts: string[], secrets: string[]): void {
  for (const secret of secrets) {
    for (const form of forms(secret)) {
      const leaks = texts.filter((text) => text.includes(form));
      expect(leaks, `"${form}" leaked`).toEqual([]);
    }
  }
}

function urlWith(password: string, port = server.port): string {
  return `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres?sslmode=disable`;
}

function open(options: DatabaseOptions, logger: DatabaseOptions['logger']): Database {
  return new Database({ min: 1, max: 2, connectionTimeoutMillis: 1500, statementTimeoutMillis: 200, logger, ...options });
}

async function closedPort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as { port: number };
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

describe('the password never appears', () => {
  it('in trace logs, errors, stats, health or the config during ordinary work and failures', async () => {
    const { logger, lines } = captureLogs('trace');
    const db = open({ connectionString: urlWith(PASSWORD), leakDetectionThresholdMillis: 50 }, logger);
    const seen: unknown[] = [db.config];
    await db.ready();
    await db.executeQuery('SELECT $1::text AS echoed', ['not a secret']);
    seen.push(await db.executeQuery('SELECT nope').catch((error: unknown) => error));
    seen.push(await db.executeQuery('SELECT pg_sleep(1)').catch((error: unknown) => error));
    await db.withDb(false, async (client) => {
      await client.query('SELECT pg_sleep(0.1)'); // held past the leak threshold: a warning with a stack
    });
    seen.push(
      await db
        .withDb(false, async () => {
          throw new Error('callback failed');
        })
        .catch((error: unknown) => error),
    );
    seen.push(await db.executeTransaction([{ text: 'SELECT 1' }, { text: 'SELECT broken(' }]).catch((error: unknown) => error));
    seen.push(db.getStats(), await db.healthCheck({ timeoutMillis: 2000 }));
    await db.shutdown();
    seen.push(db.getStats(), await db.healthCheck());
    expect(lines.length).toBeGreaterThan(3);
    expect(lines.some((line) => line.includes('database pool created'))).toBe(true);
    expect(JSON.parse(JSON.stringify(db.config))).toMatchObject({ password: '<redacted>' });
    expectNoSecret(exposures({ logs: lines, values: seen }), [PASSWORD]);
  });

  it('when the password is wrong: not the wrong one, not the right one', async () => {
    const { logger, lines } = captureLogs('trace');
    const db = open({ connectionString: urlWith(WRONG_PASSWORD) }, logger);
    const seen: unknown[] = [db.config];
    const readyError = await db.ready({ timeoutMillis: 1000 }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(readyError).toBeInstanceOf(DatabaseConnectionError);
    expect((readyError as Error).message).toMatch(/password authentication failed/);
    seen.push(readyError);
    seen.push(await db.executeQuery('SELECT 1').catch((error: unknown) => error));
    const health = await db.healthCheck({ timeoutMillis: 2000 });
    expect(health.status).toBe('unhealthy');
    seen.push(health, db.getStats());
    await db.shutdown();
    expect(lines.length).toBeGreaterThan(0);
    expectNoSecret(exposures({ logs: lines, values: seen }), [WRONG_PASSWORD, PASSWORD]);
  });

  it('when the host is unreachable', async () => {
    const { logger, lines } = captureLogs('trace');
    const db = open({ connectionString: urlWith(PASSWORD, await closedPort()) }, logger);
    const seen: unknown[] = [db.config];
    const readyError = await db.ready({ timeoutMillis: 500 }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(readyError).toBeInstanceOf(DatabaseConnectionError);
    seen.push(readyError);
    seen.push(await db.executeQuery('SELECT 1').catch((error: unknown) => error));
    const health = await db.healthCheck({ timeoutMillis: 1000 });
    expect(health.status).toBe('unhealthy');
    seen.push(health, db.getStats());
    await db.shutdown();
    expectNoSecret(exposures({ logs: lines, values: seen }), [PASSWORD]);
  });

  it('when given as DB_PASSWORD and as an option', async () => {
    const { logger, lines } = captureLogs('trace');
    const saved = process.env.DB_PASSWORD;
    process.env.DB_PASSWORD = PASSWORD;
    let db: Database;
    try {
      db = open({ host: '127.0.0.1', port: server.port, user: 'postgres', database: 'postgres', sslMode: 'disable' }, logger);
    } finally {
      if (saved === undefined) delete process.env.DB_PASSWORD;
      else process.env.DB_PASSWORD = saved;
    }
    const viaOption = open({ host: '127.0.0.1', port: server.port, password: PASSWORD, sslMode: 'disable' }, logger);
    await db.ready();
    await viaOption.ready();
    const seen: unknown[] = [db.config, viaOption.config, await db.healthCheck(), viaOption.getStats()];
    await Promise.all([db.shutdown(), viaOption.shutdown()]);
    expectNoSecret(exposures({ logs: lines, values: seen }), [PASSWORD]);
  });
});
