/**
 * Runs every ```ts example of docs/streaming.md against the test server, so the page stays true.
 * Each example is type-stripped with TypeScript and run as the body of an async function whose
 * parameters are `db` and the names its import lines bring in.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable, Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import Cursor from 'pg-cursor';
import { afterAll, describe, expect, it } from 'vitest';
import { openDatabase, ROOT } from '../support/test-database.js';
import { runExample } from '../support/doc-examples.js';

const db = openDatabase();
const page = readFileSync(join(ROOT, 'docs', 'streaming.md'), 'utf8');
const examples = [...page.matchAll(/```ts\n([\s\S]*?)```/g)].map((match) => match[1]!);
const scope: Record<string, unknown> = { db, Readable, Transform, Writable, pipeline, Cursor };

afterAll(async () => {
  await db.executeQuery('DROP TABLE IF EXISTS doc_items', [], { readOnly: false });
  await db.shutdown();
});

/** Runs one example; returns what it printed with console.log. */
function run(source: string): Promise<unknown[][]> {
  return runExample(source, scope);
}

describe('docs/streaming.md examples', () => {
  it('has the examples this test expects', () => {
    expect(examples).toHaveLength(7);
  });

  it('db.stream sums every fifth row with flat memory', async () => {
    const total = [...Array(50000).keys()]
      .map((i) => i + 1)
      .filter((g) => g % 5 === 0)
      .reduce((sum, g) => sum + g * 1.5, 0);
    expect(await run(examples[0]!)).toEqual([[total]]);
  });

  it('toReadable() pipes into a pipeline', async () => {
    expect(await run(examples[1]!)).toEqual([[1000]]);
  });

  it('client.stream reads inside withDb', async () => {
    expect(await run(examples[2]!)).toEqual([[['ada', 'grace']]]);
  });

  it('client.query(new Cursor(...)) reads ten rows and closes', async () => {
    expect(await run(examples[3]!)).toEqual([[10]]);
  });

  it('db.copyFrom and db.copyTo load and export', async () => {
    expect(await run(examples[4]!)).toEqual([[1000, 1000, '1,item 1']]);
  });

  it('client.copyFrom feeds a COPY inside withDb', async () => {
    expect(await run(examples[5]!)).toEqual([[[2, 2]]]);
  });

  it('db.listen receives what db.notify sends', async () => {
    expect(await run(examples[6]!)).toEqual([[['{"id":42}']]]);
  });
});
