/**
 * Helpers for the core library's integration tests: a Database on the shared test server with short
 * timeouts, a pino logger whose lines the test can read, polling, and a built dist/ for child processes.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { pino, type Logger } from 'pino';
import { Database, type DatabaseOptions } from '../../src/index.js';
import { getTestDatabaseUrl } from './database-url.js';

export { sleep };

/** The repository root. */
export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * A Database on the shared test server: no TLS (the test servers are plaintext), silent logs,
 * 2 s connect/acquire deadline, and an application_name the test can find in pg_stat_activity.
 */
export function openDatabase(options: DatabaseOptions = {}): Database {
  return new Database({
    connectionString: getTestDatabaseUrl(),
    sslMode: 'disable',
    logLevel: 'silent',
    connectionTimeoutMillis: 2000,
    ...options,
  });
}

/** A pino logger at trace level writing into `lines` (one parsed JSON object per log line). */
export function captureLogs(level: pino.LevelWithSilent = 'trace'): {
  logger: Logger;
  lines: string[];
  records(): Record<string, unknown>[];
} {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim() !== '') lines.push(line);
      done();
    },
  });
  return {
    logger: pino({ level }, stream),
    lines,
    records: () => lines.map((line) => JSON.parse(line) as Record<string, unknown>),
  };
}

/** Polls `check` until it returns something other than undefined; throws after `timeoutMillis`. */
export async function eventually<T>(
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMillis = 10_000,
  what = 'condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMillis;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what} not met within ${timeoutMillis} ms`);
    await sleep(25, undefined, { ref: false });
  }
}

/** Settles `promise` and reports how: `{ value }`, `{ error }`, or 'pending' after `ms`. */
export async function within<T>(ms: number, promise: Promise<T>): Promise<{ value: T } | { error: unknown } | 'pending'> {
  const settled = promise.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
  return Promise.race([settled, sleep(ms, 'pending' as const, { ref: false })]);
}

/** Runs one statement on a short-lived superuser connection to the shared server (outside any pool). */
export async function adminQuery<R extends pg.QueryResultRow = Record<string, unknown>>(
  sql: string,
  params?: unknown[],
): Promise<R[]> {
  const client = new pg.Client({ connectionString: getTestDatabaseUrl(), connectionTimeoutMillis: 5000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return (await client.query<R>(sql, params)).rows;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** A name unique to this test process, usable as an identifier and as an application_name. */
export function uniqueName(prefix: string): string {
  return `${prefix}_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
}

/** The newest modification time of any file under `dir`, in ms. */
function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs);
  }
  return newest;
}

let hasBuilt = false;

/**
 * Makes sure dist/ holds a build of the current src/ (`npm test` builds first; a lone `vitest run`
 * after an edit may find none, or a stale one). Test files running in parallel take a lock
 * directory so only one of them runs tsc; each process builds at most once.
 */
export async function ensureBuiltDist(): Promise<string> {
  const entry = join(ROOT, 'dist', 'index.js');
  const lock = join(ROOT, 'dist.build-lock');
  const isStale = () => !existsSync(entry) || (!hasBuilt && statSync(entry).mtimeMs < newestMtime(join(ROOT, 'src')));
  const deadline = Date.now() + 90_000;
  while (isStale()) {
    try {
      mkdirSync(lock);
    } catch {
      // A lock left by a worker killed mid-build is removed once it is older than any build takes.
      const lockedAt = statSync(lock, { throwIfNoEntry: false })?.mtimeMs ?? Date.now();
      if (Date.now() - lockedAt > 120_000) rmSync(lock, { recursive: true, force: true });
      if (Date.now() > deadline) throw new Error('timed out waiting for another test file to build dist/');
      await sleep(200, undefined, { ref: false });
      continue;
    }
    try {
      if (isStale()) {
        try {
          execFileSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], {
            cwd: ROOT,
            stdio: 'pipe',
          });
        } finally {
          // `npm run build`'s second step: the CommonJS declarations for the `require` condition.
          if (existsSync(entry))
            execFileSync(process.execPath, [join(ROOT, 'scripts', 'emit-cjs-types.mjs')], { cwd: ROOT, stdio: 'pipe' });
        }
      }
    } catch (error) {
      // tsc emits despite type errors; a type error elsewhere must not hide what this test checks.
      if (!existsSync(entry)) throw error;
      console.warn(
        `tsc reported errors while building dist/ (the build was emitted):\n${String((error as { stdout?: unknown }).stdout ?? error)}`,
      );
    } finally {
      hasBuilt = true;
      rmdirSync(lock);
    }
  }
  return entry;
}

/** Holds one pooled connection inside `withDb(true)` until `release()`; `held` resolves once it does. */
export function holdConnection(database: Database): { held: Promise<void>; release(): void; done: Promise<unknown> } {
  let release!: () => void;
  let markHeld!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const held = new Promise<void>((resolve) => (markHeld = resolve));
  const done = database.withDb(true, async () => {
    markHeld();
    await gate;
  });
  return { held, release, done };
}
