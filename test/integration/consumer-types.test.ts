/**
 * The published type declarations, as a consumer project sees them: a temporary project that depends
 * on the built package (dist/ and package.json's exports) is type-checked with tsc under each module
 * setting users run, as CommonJS and as ESM, its own code checked against them (skipLibCheck: the library's sources are type-checked by its build).
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ensureBuiltDist, ROOT } from '../support/test-database.js';

const run = promisify(execFile);
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');

/** pg's promise overloads on the withDb client, the contract's names, and the subpath exports. */
const CONSUMER = `
import { Database, DatabaseQueryError, loadConfig, withDb, type QueryClient } from '@codecheck/db';
import { codecheckDb } from '@codecheck/db/fastify';
import { registerDatabaseMetrics } from '@codecheck/db/prometheus';
import { instrument, type Instrumentation } from '@codecheck/db/otel';

export async function work(client: QueryClient): Promise<number> {
  const arrays = await client.query<[number, string]>({ text: 'SELECT 1, $1::text', rowMode: 'array' }, ['x']);
  const first: number = arrays.rows[0]![0];
  const configAndValues = await client.query<{ n: number }>({ text: 'SELECT $1::int AS n' }, [1]);
  const config = await client.query({ text: 'SELECT $1::int AS n', values: [1], name: 'n' });
  const text = await client.query<{ n: number }>('SELECT $1::int AS n', [1]);
  const frozen = await client.query('SELECT $1::int AS n, $2::text AS t', [1, 'a'] as const);
  const arrayNoValues = await client.query({ text: 'SELECT 1', rowMode: 'array' });
  const fields: string = config.fields[0]!.name;
  return first + configAndValues.rows[0]!.n + text.rows[0]!.n + frozen.rowCount! + arrayNoValues.rows.length + fields.length;
}

export async function main(): Promise<void> {
  const db = new Database({ connectionString: 'postgres://localhost/app' });
  const n: number = await db.withDb(true, work);
  const rows = await db.executeQuery<{ n: number }>('SELECT 1 AS n');
  await withDb({ readOnly: false, timeoutMillis: 1000 }, work);
  console.log(n, rows[0]?.n, loadConfig({}).port, new DatabaseQueryError('x', undefined).code);
  console.log(typeof codecheckDb, typeof registerDatabaseMetrics);
  const instrumentation: Instrumentation = instrument(db, { querySpans: 'auto' });
  instrumentation.uninstrument();
  await db.shutdown();
}
`;

/** [what, compiler options, package.json "type" of the consumer]. */
const SETUPS: [string, Record<string, unknown>, 'commonjs' | 'module'][] = [
  ['module node16, CommonJS consumer', { module: 'node16', moduleResolution: 'node16' }, 'commonjs'],
  ['module node16, ESM consumer', { module: 'node16', moduleResolution: 'node16' }, 'module'],
  ['module nodenext, CommonJS consumer', { module: 'nodenext', moduleResolution: 'nodenext' }, 'commonjs'],
  ['module nodenext, ESM consumer', { module: 'nodenext', moduleResolution: 'nodenext' }, 'module'],
  ['moduleResolution bundler', { module: 'esnext', moduleResolution: 'bundler' }, 'module'],
];

let base: string;
beforeAll(async () => {
  await ensureBuiltDist();
  base = mkdtempSync(join(tmpdir(), 'codecheck-consumer-'));
});
afterAll(() => {
  if (base) rmSync(base, { recursive: true, force: true });
});

describe('a consumer project type-checks against the published declarations', () => {
  test.each(SETUPS)('%s', async (what, options, type) => {
    const dir = join(base, what.replace(/\W+/g, '-'));
    mkdirSync(join(dir, 'node_modules', '@codecheck'), { recursive: true });
    symlinkSync(ROOT, join(dir, 'node_modules', '@codecheck', 'db'), 'dir');
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type }));
    writeFileSync(join(dir, 'index.ts'), CONSUMER);
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          ...options,
          target: 'ES2022',
          strict: true,
          noEmit: true,
          skipLibCheck: true,
          esModuleInterop: true,
          types: ['node'],
          typeRoots: [join(ROOT, 'node_modules', '@types')],
        },
        files: ['index.ts'],
      }),
    );
    const result = await run(process.execPath, [TSC, '-p', dir], { cwd: dir, timeout: 120_000 }).then(
      () => '',
      (error: { stdout?: string; stderr?: string }) => `${error.stdout ?? ''}${error.stderr ?? ''}`,
    );
    expect(result).toBe('');
  });
});
