/**
 * The `codecheck-db` bin as a child process (`node dist/cli/main.js`), as a Kubernetes exec probe
 * runs it: exit codes against a healthy, degraded and unreachable server and a bad environment.
 */
import { execFile } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { getTestDatabaseUrl } from '../support/database-url.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { ensureBuiltDist, ROOT } from '../support/test-database.js';

const MAIN = join(ROOT, 'dist', 'cli', 'main.js');
const PASSWORD = new URL(getTestDatabaseUrl()).password;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  millis: number;
}

/** Runs the CLI with only PATH and `env` set (none of the test process's DB_* leak in). */
function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const startedAt = Date.now();
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [MAIN, ...args],
      { cwd: ROOT, env: { PATH: process.env.PATH ?? '', ...env }, timeout: 30_000 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : null) : 0;
        resolve({ code, stdout, stderr, millis: Date.now() - startedAt });
      },
    );
  });
}

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const healthy = () => ({ DATABASE_URL: `${getTestDatabaseUrl()}?sslmode=disable` });

beforeAll(async () => {
  // Builds all of src/ (dist/cli/main.js included) when dist/ is missing or older than src/.
  await ensureBuiltDist();
});

describe('codecheck-db health', () => {
  test('exits 0 and prints the report against a healthy server', async () => {
    const run = await cli(['health'], healthy());
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^status:\s+healthy$/m);
    expect(run.stdout).toMatch(/^server:\s+PostgreSQL \d+/m);
  });

  test('--json prints the health report as JSON', async () => {
    const run = await cli(['health', '--json'], healthy());
    expect(run.code).toBe(0);
    const report = JSON.parse(run.stdout);
    expect(report).toMatchObject({ status: 'healthy', isReplica: false, poolStats: { maxConnections: 10 } });
    expect(report.databaseVersion).toMatch(/^PostgreSQL /);
  });

  test('exits 1 (degraded) when a configured replica is down: it waits for the first replica probe before reporting', async () => {
    const port = await closedPort();
    const run = await cli(['health'], {
      ...healthy(),
      DB_REPLICA_URLS: `postgres://postgres:${PASSWORD}@127.0.0.1:${port}/postgres?sslmode=disable`,
    });
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/^status:\s+degraded$/m);
    expect(run.stdout).toContain(`replica 127.0.0.1:${port} is banned`);
    expect(run.stdout + run.stderr).not.toContain(PASSWORD);
  });

  test('exits 2 (unhealthy) when nothing listens on the port', async () => {
    const port = await closedPort();
    const run = await cli(['health', '--timeout', '3'], {
      DATABASE_URL: `postgres://postgres:${PASSWORD}@127.0.0.1:${port}/postgres?sslmode=disable`,
    });
    expect(run.code).toBe(2);
    expect(run.stdout).toMatch(/^status:\s+unhealthy$/m);
    expect(run.stdout + run.stderr).not.toContain(PASSWORD);
  });

  describe('behind a proxy that swallows every packet', () => {
    let proxy: FaultProxy;
    beforeAll(async () => {
      const target = new URL(getTestDatabaseUrl());
      proxy = await startFaultProxy({ targetHost: target.hostname, targetPort: Number(target.port) });
      proxy.blackhole();
    });
    afterAll(async () => {
      await proxy?.close();
    });

    test('exits 2 within --timeout (plus node startup) when the server never answers', async () => {
      const run = await cli(['health', '--timeout', '1', '--json'], {
        DATABASE_URL: `postgres://postgres:${PASSWORD}@${proxy.host}:${proxy.port}/postgres?sslmode=disable`,
      });
      expect(run.code).toBe(2);
      expect(JSON.parse(run.stdout)).toMatchObject({
        status: 'unhealthy',
        error: expect.stringMatching(/^The server did not answer within \d+ ms$/),
      });
      expect(run.millis).toBeLessThan(1000 + 4000);
    });
  });

  test('exits 2 with the problem when the configuration is invalid, and 2 with usage for a bad --timeout', async () => {
    const bad = await cli(['health'], { DB_POOL_MAX: 'lots' });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('DB_POOL_MAX is "lots"');
    const usage = await cli(['health', '--timeout', 'soon'], healthy());
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('usage: codecheck-db health');
  });
});

describe('codecheck-db config', () => {
  test('exits 2 listing every problem of a bad environment, never the password', async () => {
    const run = await cli(['config'], {
      DB_PASSWORD: 'hunter2-very-secret',
      DB_POOL_MIN: '20',
      DB_POOL_MAX: '5',
      DB_TIMEOUT: 'abc',
      DB_SSLMODE: 'Require',
      DB_PORT: '70000',
    });
    expect(run.code).toBe(2);
    const problems = run.stderr.split('\n').filter((line) => line.startsWith('- '));
    expect(problems).toHaveLength(4);
    expect(run.stderr).toContain('DB_TIMEOUT is "abc"');
    expect(run.stderr).toContain('DB_SSLMODE is "Require"');
    expect(run.stderr).toContain('DB_PORT is "70000"');
    expect(run.stderr).toContain('The pool minimum (20');
    expect(run.stdout + run.stderr).not.toContain('hunter2');
  });

  test('--json prints { error, problems } for a bad environment', async () => {
    const run = await cli(['config', '--json'], { DB_POOL_MAX: '0', DB_LOG_LEVEL: 'loud' });
    expect(run.code).toBe(2);
    const output = JSON.parse(run.stdout);
    expect(output.error).toBe('CONFIG_INVALID');
    expect(output.problems).toHaveLength(2);
  });

  test('exits 0 with the resolved configuration, the password redacted and warnings listed', async () => {
    const env = {
      DATABASE_URL: 'postgres://app:s3cr3t-pass@db.internal:6543/codecheck?sslmode=require',
      DB_HOST: 'ignored.example',
      DB_POOL_MAX: '25',
    };
    const text = await cli(['config'], env);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^host \(DB_HOST\):\s+db\.internal$/m);
    expect(text.stdout).toMatch(/^password \(DB_PASSWORD\):\s+<redacted>$/m);
    expect(text.stdout).toMatch(/^max \(DB_POOL_MAX\):\s+25$/m);
    expect(text.stdout).toContain('DB_HOST is ignored because DATABASE_URL sets the host too.');
    const json = await cli(['config', '--json'], env);
    const output = JSON.parse(json.stdout);
    expect(output.config).toMatchObject({
      host: 'db.internal',
      port: 6543,
      user: 'app',
      database: 'codecheck',
      password: '<redacted>',
      max: 25,
      ssl: { mode: 'require' },
    });
    expect(output.warnings).toEqual(['DB_HOST is ignored because DATABASE_URL sets the host too.']);
    expect(text.stdout + text.stderr + json.stdout + json.stderr).not.toContain('s3cr3t');
  });
});

describe('codecheck-db stats, migrate-scan and usage', () => {
  test('stats opens its own pool, waits for ready() and prints getStats() (min connections open)', async () => {
    const run = await cli(['stats', '--json'], { ...healthy(), DB_POOL_MIN: '3' });
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({
      poolSize: 3,
      minConnections: 3,
      totalConnections: 3,
      queriesExecuted: 0,
      nodes: [{ name: 'primary', status: 'up' }],
    });
    const text = await cli(['stats'], healthy());
    expect(text.stdout).toContain("the codecheck-db CLI process's own pool");
  });

  test('stats exits 2 when the server is unreachable within --timeout', async () => {
    const port = await closedPort();
    const run = await cli(['stats', '--timeout', '0.5'], {
      DATABASE_URL: `postgres://postgres@127.0.0.1:${port}/postgres?sslmode=disable`,
    });
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('was not ready in time');
  });

  test('migrate-scan exits 1 on the fixtures with findings and 0 on the clean ones', async () => {
    const fixtures = join(ROOT, 'test', 'fixtures', 'migrate-scan');
    const found = await cli(['migrate-scan', '--json', join(fixtures, 'client-per-request.js')]);
    expect(found.code).toBe(1);
    expect(JSON.parse(found.stdout).findings).toHaveLength(2);
    const clean = await cli(['migrate-scan', join(fixtures, 'clean')]);
    expect(clean.code).toBe(0);
  });

  test('migrate-scan --help lists its options and every exit code', async () => {
    const help = await cli(['migrate-scan', '--help']);
    expect(help.code).toBe(0);
    for (const text of ['--include-bundles', '--no-ignore', '--json', '0 nothing found', '1 findings', '2 usage error']) {
      expect(help.stdout).toContain(text);
    }
    expect(help.stdout).toContain('3 some files could not be scanned, the rest clean; 4 some files could not be scanned');
  });

  test('--help exits 0 with the usage; no command or an unknown one exits 2', async () => {
    const help = await cli(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('usage: codecheck-db <command>');
    expect((await cli([])).code).toBe(2);
    const unknown = await cli(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
  });
});
