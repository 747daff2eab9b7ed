import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { getTestDatabaseUrl } from '../../support/database-url.js';
import { ensureBuiltDist, ROOT } from '../../support/test-database.js';

beforeAll(async () => {
  await ensureBuiltDist();
}, 120_000);

describe('@opentelemetry/instrumentation-pg on the drop-in Pool', () => {
  it('records one span per statement with its text and command (prepared or not), one pg-pool.connect span per checkout, and the pool metrics', async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [join(ROOT, 'test', 'fixtures', 'otel', 'pool-telemetry.mjs')],
      {
        env: { ...process.env, DATABASE_URL: getTestDatabaseUrl() },
        timeout: 60_000,
      },
    );
    const { spans, metrics } = JSON.parse(stdout.trim().split('\n').at(-1)!) as {
      spans: { name: string; statement: string | null }[];
      metrics: string[];
    };
    const statements = spans.map((span) => span.statement);
    expect(statements.filter((s) => s === 'SELECT 1 AS one')).toHaveLength(1);
    expect(statements.filter((s) => s === 'SELECT $1::int AS two')).toHaveLength(1);
    // The second and third are sent as an automatic prepared statement: named like the first all the same.
    const threes = spans.filter((span) => span.statement === 'SELECT $1::int AS three');
    expect(threes.map((span) => span.name)).toEqual(
      [0, 1, 2].map(() => spans.find((s) => s.statement === 'SELECT 1 AS one')!.name),
    );
    expect(threes[0]!.name).toMatch(/^pg\.query:SELECT /);
    // pool.query and pool.connect each check a connection out once, as with pg.Pool.
    expect(spans.filter((span) => span.name === 'pg-pool.connect')).toHaveLength(5);
    // The library's own statements are pg statements too: the once-per-connection switch to read-write.
    const known = ['SELECT 1 AS one', 'SELECT $1::int AS two', 'SELECT $1::int AS three'];
    const others = statements.filter((s) => s !== null && !known.includes(s));
    expect(others).toEqual(['SET SESSION default_transaction_read_only = off']);
    expect(metrics).toEqual(expect.arrayContaining(['db.client.connection.count', 'db.client.connection.max']));
  });
});
