import { Kysely, PostgresDialect, sql, type Generated } from 'kysely';
import Cursor from 'pg-cursor';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Pool } from '../../../src/index.js';
import { getTestDatabaseUrl } from '../../support/database-url.js';
import { uniqueName } from '../../support/test-database.js';

const table = uniqueName('kysely_items');
interface Schema {
  [table]: { id: Generated<number>; name: string };
}

let pool: Pool;
let db: Kysely<Schema>;

beforeAll(async () => {
  pool = new Pool({ connectionString: getTestDatabaseUrl(), sslMode: 'disable', logLevel: 'silent', max: 4 });
  db = new Kysely<Schema>({ dialect: new PostgresDialect({ pool, cursor: Cursor }) });
  await sql`CREATE TABLE ${sql.table(table)} (id serial PRIMARY KEY, name text NOT NULL)`.execute(db);
});

afterAll(async () => {
  await sql`DROP TABLE IF EXISTS ${sql.table(table)}`.execute(db);
  await db.destroy();
});

describe('Kysely on the drop-in Pool', () => {
  it('inserts and selects rows', async () => {
    const inserted = await db.insertInto(table).values({ name: 'alpha' }).returning(['id', 'name']).executeTakeFirstOrThrow();
    expect(inserted.name).toBe('alpha');
    const rows = await db.selectFrom(table).select(['name']).where('id', '=', inserted.id).execute();
    expect(rows).toEqual([{ name: 'alpha' }]);
  });

  it('commits a transaction and rolls one back when its callback throws', async () => {
    await db.transaction().execute(async (trx) => {
      await trx.insertInto(table).values({ name: 'committed' }).execute();
    });
    const failure = await db
      .transaction()
      .execute(async (trx) => {
        await trx.insertInto(table).values({ name: 'rolled-back' }).execute();
        throw new Error('undo');
      })
      .catch((error: Error) => error.message);
    expect(failure).toBe('undo');
    const names = (await db.selectFrom(table).select('name').execute()).map((row) => row.name);
    expect(names).toContain('committed');
    expect(names).not.toContain('rolled-back');
    expect(pool.getStats().activeConnections).toBe(0);
  });

  it('streams rows through pg-cursor and frees the connection when the loop breaks early', async () => {
    await sql`INSERT INTO ${sql.table(table)} (name) SELECT 'row ' || n FROM generate_series(1, 1000) AS n`.execute(db);
    const seen: string[] = [];
    for await (const row of db.selectFrom(table).select(['name']).where('name', 'like', 'row %').orderBy('id').stream(100)) {
      seen.push(row.name);
      if (seen.length === 250) break;
    }
    expect(seen.length).toBe(250);
    expect(seen.at(-1)).toBe('row 250');
    expect(pool.getStats().activeConnections).toBe(0);
    const after = await sql<{ ok: number }>`SELECT 1 AS ok`.execute(db);
    expect(after.rows).toEqual([{ ok: 1 }]);
  });
});
