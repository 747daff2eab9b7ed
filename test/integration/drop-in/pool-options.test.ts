/**
 * pg.PoolConfig keys as the drop-in Pool takes them: `min`, `log`, `query_timeout: false`, pg's
 * settings in a connection string's query, and no secret in `pool.options`.
 */
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ConfigError, Pool, type PoolConfig } from '../../../src/index.js';
import { getTestDatabaseUrl } from '../../support/database-url.js';
import { eventually, sleep } from '../../support/test-database.js';
import { poolOpener } from '../../support/test-pools.js';

const openPool = poolOpener();

/** The test server's URL with `params` added to its query. */
function urlWith(params: Record<string, string>): string {
  const url = new URL(getTestDatabaseUrl());
  for (const [key, value] of Object.entries(params)) url.searchParams.set(key, value);
  return url.toString();
}

describe('the drop-in Pool options', () => {
  it('opens nothing until used, then opens and keeps min connections', async () => {
    const pool = openPool({ min: 3, max: 5 });
    await sleep(300);
    expect(pool.totalCount).toBe(0);
    await pool.query('SELECT 1');
    await eventually(() => (pool.totalCount === 3 && pool.idleCount === 3 ? true : undefined), 5000, 'min connections open');
  });

  it('keeps a password in connectionString out of JSON.stringify(pool.options) and util.inspect(pool), still readable', () => {
    const url = getTestDatabaseUrl();
    const secret = decodeURIComponent(new URL(url).password);
    expect(secret.length).toBeGreaterThan(0);
    const pool = openPool({ connectionString: url });
    expect(pool.options.connectionString).toBe(url);
    expect(JSON.stringify(pool.options)).not.toContain(secret);
    expect(inspect(pool, { depth: 5 })).not.toContain(secret);
  });

  it("applies pg's session settings from the connection string's query, as pg does", async () => {
    const pool = openPool({
      connectionString: urlWith({ statement_timeout: '1234', lock_timeout: '2345', query_timeout: '60000' }),
    });
    const { rows } = await pool.query<{ statement: string; lock: string }>(
      "SELECT current_setting('statement_timeout') AS statement, current_setting('lock_timeout') AS lock",
    );
    expect(rows).toEqual([{ statement: '1234ms', lock: '2345ms' }]);
  });

  it('refuses server options in the connection string by name, as it refuses the options key, and a malformed duration', () => {
    const attempt = (params: Record<string, string>) => () => new Pool({ connectionString: urlWith(params), logLevel: 'silent' });
    expect(attempt({ options: '-c search_path=pg_catalog' })).toThrow(ConfigError);
    expect(attempt({ options: '-c search_path=pg_catalog' })).toThrow(
      /connectionString parameter options \(server command-line options\) is not supported/,
    );
    expect(attempt({ statement_timeout: 'soon' })).toThrow(
      /connectionString parameter statement_timeout must be a non-negative integer/,
    );
  });

  it("takes pg's query_timeout: false as no read timeout", async () => {
    const pool = openPool({ query_timeout: false });
    expect((await pool.query('SELECT pg_sleep(0.2), 1 AS n')).rows).toEqual([{ pg_sleep: '', n: 1 }]);
  });

  it("calls log with pg-pool's query messages whether or not verify or onConnect hooks are given", async () => {
    for (const hooks of [{}, { verify: (_client: unknown, done: () => void) => done() }, { onConnect: () => undefined }]) {
      const messages: unknown[] = [];
      const pool = openPool({ ...hooks, log: (...parts: unknown[]) => messages.push(parts[0]) } as PoolConfig);
      await pool.query('SELECT 1');
      expect(messages).toEqual(expect.arrayContaining(['dispatching query', 'query dispatched']));
    }
  });
});
