import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, expect, it } from 'vitest';
import { getTestDatabaseUrl } from '../support/database-url.js';
import { ensureBuiltDist, ROOT } from '../support/test-database.js';

const run = promisify(execFile);

/** The public names DESIGN.md makes part of the contract. */
const CONTRACT = [
  'Database',
  'loadConfig',
  'withDb',
  'executeQuery',
  'executeTransaction',
  'getDatabase',
  'getConnectionPoolStats',
  'databaseHealthCheck',
  'shutdownDatabase',
  'DbError',
  'ConfigError',
  'DatabaseConnectionError',
  'PoolTimeoutError',
  'PoolClosedError',
  'DatabaseQueryError',
  'DatabaseTransactionError',
];

beforeAll(async () => {
  await ensureBuiltDist();
});

it('can be required from CommonJS by package name and works there, then the process exits by itself', async () => {
  const [major, minor] = process.versions.node.split('.').map(Number) as [number, number];
  expect(
    major > 20 || (major === 20 && minor >= 19),
    `Node ${process.versions.node} predates require() of ES modules (needs >= 20.19)`,
  ).toBe(true);
  const { stdout, stderr } = await run(process.execPath, [join(ROOT, 'test', 'fixtures', 'cjs', 'require-package.cjs')], {
    cwd: ROOT,
    env: { ...process.env, FIXTURE_DATABASE_URL: getTestDatabaseUrl() },
    timeout: 15_000,
  });
  const result = JSON.parse(stdout) as { names: string[]; doubled: number; configError: unknown };
  expect(result.names).toEqual(expect.arrayContaining(CONTRACT));
  expect(result.doubled).toBe(42);
  expect(result.configError).toEqual({ isConfigError: true, isDbError: true, code: 'CONFIG_INVALID' });
  // Node 20/22 print an ExperimentalWarning for require(esm); nothing else may appear.
  expect(
    stderr.split('\n').filter((line) => line.trim() !== '' && !/ExperimentalWarning|require\(\)|--trace-warnings/.test(line)),
  ).toEqual([]);
});
