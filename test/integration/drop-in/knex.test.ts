import knexFactory, { type Knex } from 'knex';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Pool } from '../../../src/index.js';
import { getTestDatabaseUrl } from '../../support/database-url.js';
import { uniqueName } from '../../support/test-database.js';

const table = uniqueName('knex_items');
let pool: Pool;
let knex: Knex;

beforeAll(async () => {
  pool = new Pool({ connectionString: getTestDatabaseUrl(), sslMode: 'disable', logLevel: 'silent', max: 4 });
  // Knex 3.3+: an external pg.Pool in `connectionPool`; Knex checks connections out and releases them.
  knex = knexFactory({ client: 'pg', connectionPool: pool });
  await knex.schema.createTable(table, (t) => {
    t.increments('id');
    t.text('name').notNullable();
  });
});

afterAll(async () => {
  await knex.schema.dropTableIfExists(table);
  await knex.destroy();
  await pool.end();
});

describe('Knex with the drop-in Pool as its external pool', () => {
  it('inserts and selects rows through the Pool', async () => {
    const [row] = await knex(table).insert({ name: 'alpha' }).returning(['id', 'name']);
    expect(row).toMatchObject({ name: 'alpha' });
    expect(await knex(table).select('name').where({ id: row.id })).toEqual([{ name: 'alpha' }]);
    expect(pool.getStats().queriesExecuted).toBeGreaterThanOrEqual(3);
  });

  it('commits a transaction and rolls one back on a throw', async () => {
    await knex.transaction(async (trx) => {
      await trx(table).insert({ name: 'committed' });
    });
    await knex
      .transaction(async (trx) => {
        await trx(table).insert({ name: 'rolled-back' });
        throw new Error('undo');
      })
      .catch(() => undefined);
    const names = (await knex(table).select('name')).map((r: { name: string }) => r.name);
    expect(names).toContain('committed');
    expect(names).not.toContain('rolled-back');
    expect(pool.getStats().activeConnections).toBe(0);
  });
});
