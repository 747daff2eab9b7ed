/**
 * Runs every snippet of docs/drop-in.md and QUICK_START.md's drop-in section as it is written: each `<!-- snippet: name -->` block is saved
 * as an ES module inside the repository (so `@codecheck/db` resolves to this package's dist/) and run
 * with node against the test server. Each must print "hello" and exit cleanly.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getTestDatabaseUrl } from '../../support/database-url.js';
import { ensureBuiltDist, ROOT } from '../../support/test-database.js';

const DIR = join(ROOT, `.snippets-${process.pid}`);
const doc = ['docs/drop-in.md', 'QUICK_START.md'].map((file) => readFileSync(join(ROOT, file), 'utf8')).join('\n');
const snippets = [...doc.matchAll(/<!-- snippet: ([a-z-]+) -->\n```js\n([\s\S]*?)```/g)].map((m) => ({
  name: m[1]!,
  code: m[2]!,
}));

beforeAll(async () => {
  await ensureBuiltDist();
  mkdirSync(DIR, { recursive: true });
}, 120_000);

afterAll(() => rmSync(DIR, { recursive: true, force: true }));

describe('drop-in snippets in docs/drop-in.md and QUICK_START.md', () => {
  it('has one for plain pg, Kysely, Drizzle, Knex, Prisma, TypeORM, MikroORM, OpenTelemetry, and the quick start', () => {
    expect(snippets.map((s) => s.name)).toEqual([
      'pg',
      'kysely',
      'drizzle',
      'knex',
      'prisma',
      'typeorm',
      'mikro-orm',
      'opentelemetry',
      'quickstart-kysely',
      'quickstart-drizzle',
      'quickstart-prisma',
    ]);
  });

  it.each(snippets.map((s) => [s.name, s.code]))('runs the %s snippet as written', async (name, code) => {
    const file = join(DIR, `${name}.mjs`);
    writeFileSync(file, code);
    const url = new URL(getTestDatabaseUrl());
    url.searchParams.set('sslmode', 'disable');
    const env: Record<string, string | undefined> = { ...process.env, DATABASE_URL: url.toString(), DB_LOG_LEVEL: 'silent' };
    const { stdout } = await promisify(execFile)(process.execPath, [file], { env, timeout: 60_000 });
    expect(stdout.trim().split('\n').at(-1)).toBe('hello');
  });
});
