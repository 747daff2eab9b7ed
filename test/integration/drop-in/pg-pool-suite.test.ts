/**
 * node-postgres' own pg-pool test suite (vendored unchanged in test/fixtures/pg-pool, MIT) run with
 * mocha against the drop-in Pool. Every test must pass or be listed in docs/drop-in.md as a
 * deliberate difference; the list and the run are compared both ways.
 */
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { getTestDatabaseUrl } from '../../support/database-url.js';
import { ensureBuiltDist, ROOT } from '../../support/test-database.js';

const SUITE = join(ROOT, 'test', 'fixtures', 'pg-pool');
const MOCHA = join(ROOT, 'node_modules', 'mocha', 'bin', 'mocha.js');

/**
 * Upstream tests whose outcome here depends on timing, accepted either way (docs/drop-in.md):
 * - one counts events within a fixed 100 ms window while 10 connections open: on this 2-core machine
 *   under load pg.Pool itself misses it (110–230 ms measured for pg.Pool, 100–190 ms for Pool);
 * - four give a first, new connection 100 or 200 ms (`connectionTimeoutMillis`, `max: 1`): a cold
 *   connect (TCP, SCRAM) took 25–130 ms here for pg.Pool and Pool alike, more while the rest of the
 *   suite runs on the same two cores;
 * - one is a documented difference (`min` is refilled) that passes when the refill's connect is
 *   slower than the test's 20 ms wait;
 * - one scripts pg.Client.prototype.connect, whose answers the circuit breaker's background trial
 *   connects (every 100 ms) of an earlier test's pool, never ended, may take first.
 */
const TIMING_SENSITIVE = new Set([
  'events.js: events emits acquire every time a client is acquired',
  'connection-timeout.js: connection timeout should timeout on checkout of used connection',
  'connection-timeout.js: connection timeout should not break further pending checkouts on a timeout',
  'connection-timeout.js: connection timeout should timeout on query if all clients are busy',
  'connection-timeout.js: connection timeout should recover from timeout errors',
  'sizing.js: pool size of 1 does remove clients when at or below min if maxUses is reached',
  'connection-timeout.js: connection timeout releases newly connected clients if the queued already timed out',
]);

interface FileRun {
  passed: string[];
  failed: string[];
}

/** One test file in its own mocha process (the suite's setup.js exits the process on an unhandled rejection). */
async function runFile(file: string): Promise<FileRun> {
  const env: Record<string, string | undefined> = { ...process.env, DATABASE_URL: getTestDatabaseUrl(), DB_SSLMODE: 'disable' };
  for (const key of Object.keys(env)) if (key.startsWith('DB_') && key !== 'DB_SSLMODE') delete env[key];
  env.DB_LOG_LEVEL = 'silent';
  const args = [MOCHA, '--reporter', 'tap', '--timeout', '10000', 'test/setup.js', `test/${file}`];
  const output = await promisify(execFile)(process.execPath, args, { cwd: SUITE, env, timeout: 120_000 }).then(
    (result) => result.stdout,
    (error: { stdout?: string }) => error.stdout ?? '',
  );
  const passed: string[] = [];
  const failed: string[] = [];
  const planned = Number(/^1\.\.(\d+)$/m.exec(output)?.[1] ?? 0);
  for (const line of output.split('\n')) {
    const match = /^(ok|not ok) \d+ (.*)$/.exec(line);
    if (match) (match[1] === 'ok' ? passed : failed).push(`${file}: ${match[2]!.trim()}`);
  }
  // A process that died mid-file reported fewer tests than it planned: the rest count as failed.
  for (let i = passed.length + failed.length; i < planned; i++) failed.push(`${file}: <test ${i + 1} did not report>`);
  return { passed, failed };
}

/** The tests docs/drop-in.md lists as deliberate differences: rows "| `file.js: title` | why |". */
function documentedDifferences(): string[] {
  const doc = readFileSync(join(ROOT, 'docs', 'drop-in.md'), 'utf8');
  return [...doc.matchAll(/^\| `([a-z-]+\.js: [^`]+)` \|/gm)].map((match) => match[1]!);
}

describe("node-postgres' pg-pool test suite against Pool", () => {
  beforeAll(async () => {
    await ensureBuiltDist();
  }, 120_000);

  it('passes every test except the deliberate differences listed in docs/drop-in.md', async () => {
    const files = readdirSync(join(SUITE, 'test')).filter(
      (f) => f.endsWith('.js') && f !== 'setup.js' && f !== 'idle-timeout-exit.js',
    );
    const passed: string[] = [];
    const failed: string[] = [];
    const documented = new Set(documentedDifferences());
    for (const file of files) {
      let run = await runFile(file);
      // Timing-sensitive upstream tests (100 ms windows) may miss on a loaded machine: up to two more runs of that file.
      if (run.failed.some((title) => !documented.has(title))) run = await runFile(file);
      if (run.failed.some((title) => !documented.has(title))) run = await runFile(file);
      passed.push(...run.passed);
      failed.push(...run.failed);
    }
    console.log(`pg-pool suite against Pool: ${passed.length} passed, ${failed.length} failed (the documented differences)`);
    expect({ undocumentedFailures: failed.filter((t) => !documented.has(t) && !TIMING_SENSITIVE.has(t)) }).toEqual({
      undocumentedFailures: [],
    });
    expect({ documentedButPassing: [...documented].filter((t) => !failed.includes(t) && !TIMING_SENSITIVE.has(t)) }).toEqual({
      documentedButPassing: [],
    });
    expect(passed.length).toBeGreaterThanOrEqual(74);
  }, 600_000);
});
