/**
 * Shared helpers of the reliability scenarios (issue 4): the one-line figures every scenario
 * prints, a process-level crash guard, an in-memory pino logger, and connection helpers.
 */
import { setTimeout as sleepPromise } from 'node:timers/promises';
import pg from 'pg';
import pino, { type Logger } from 'pino';
import { DatabaseTransactionError } from '../../../src/index.js';

/** Prefix of every figures line; `scripts/reliability.mjs` prints the lines that start with it. */
export const FIGURES_PREFIX = '[reliability]';

/** Prints `[reliability] <scenario>: key=value ...` (one line, in insertion order). */
export function printFigures(scenario: string, figures: Record<string, string | number | boolean>): string {
  const line = `${FIGURES_PREFIX} ${scenario}: ${Object.entries(figures)
    .map(([key, value]) => `${key}=${value}`)
    .join(' ')}`;
  console.log(line);
  return line;
}

/** Sleeps without keeping the process alive. */
export function sleep(millis: number): Promise<void> {
  return sleepPromise(Math.max(0, millis), undefined, { ref: false });
}

/**
 * Records every `uncaughtException` and `unhandledRejection` while installed: a scenario asserts the
 * list is empty (the process would have crashed without a test runner around it).
 */
export function guardProcess(): { readonly crashes: unknown[]; dispose(): void } {
  const crashes: unknown[] = [];
  const onCrash = (error: unknown) => crashes.push(error);
  process.on('uncaughtException', onCrash);
  process.on('unhandledRejection', onCrash);
  return {
    crashes,
    dispose() {
      process.removeListener('uncaughtException', onCrash);
      process.removeListener('unhandledRejection', onCrash);
    },
  };
}

/** A pino logger at `level` whose lines are kept, parsed, in `lines`. */
export function memoryLogger(level = 'warn'): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { logger, lines };
}

/** The shared URL with another host and port (the fault proxy's) and `sslmode=disable`. */
export function urlVia(url: string, target?: { host: string; port: number }): string {
  const parsed = new URL(url);
  if (target) {
    parsed.hostname = target.host;
    parsed.port = String(target.port);
  }
  parsed.searchParams.set('sslmode', 'disable');
  return parsed.toString();
}

/** Runs one statement on a short-lived superuser connection (fault injection, checks). */
export async function adminQuery<R extends pg.QueryResultRow = Record<string, unknown>>(
  url: string,
  text: string,
  params?: unknown[],
): Promise<R[]> {
  const client = new pg.Client({ connectionString: urlVia(url), connectionTimeoutMillis: 5000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return (await client.query<R>(text, params)).rows;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Polls `check` until it returns something other than undefined, or throws after `timeoutMillis`. */
export async function eventually<T>(check: () => Promise<T | undefined>, timeoutMillis = 10_000, everyMillis = 25): Promise<T> {
  const deadline = Date.now() + timeoutMillis;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMillis} ms`);
    await sleep(everyMillis);
  }
}

/** A COMMIT whose answer never arrived: the transaction may or may not have committed. */
export function isOutcomeUnknown(error: unknown): boolean {
  return error instanceof DatabaseTransactionError && /whether it committed is unknown/.test(error.message);
}

/** A unique, SQL-safe name for a test's own table or application_name. */
export function uniqueName(prefix: string): string {
  return `${prefix}_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
}

/** Milliseconds since `startedAt` (a `performance.now()` value), rounded. */
export function elapsedSince(startedAt: number): number {
  return Math.round(performance.now() - startedAt);
}

/** `{ value }` or `{ error }` with how long the promise took to settle. */
export async function timed<T>(promise: Promise<T>): Promise<{ millis: number; value?: T; error?: unknown }> {
  const startedAt = performance.now();
  try {
    const value = await promise;
    return { millis: elapsedSince(startedAt), value };
  } catch (error) {
    return { millis: elapsedSince(startedAt), error };
  }
}
