import { DataSource, EntitySchema } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from '../../../src/pg-compat/pg-module.js';
import { getTestDatabaseUrl } from '../../support/database-url.js';
import { uniqueName } from '../../support/test-database.js';

interface Item {
  id: number;
  name: string;
}
const table = uniqueName('typeorm_items');
const ItemSchema = new EntitySchema<Item>({
  name: 'Item',
  tableName: table,
  columns: { id: { type: Number, primary: true, generated: true }, name: { type: String } },
});

let dataSource: DataSource;

beforeAll(async () => {
  const url = new URL(getTestDatabaseUrl());
  url.searchParams.set('sslmode', 'disable');
  // TypeORM takes the pg module itself: @codecheck/db/pg is pg with the library's Pool in it.
  dataSource = new DataSource({
    type: 'postgres',
    driver: pg,
    url: url.toString(),
    entities: [ItemSchema],
    synchronize: true,
    extra: { logLevel: 'silent' },
  });
  await dataSource.initialize();
});

afterAll(async () => {
  await dataSource.query(`DROP TABLE IF EXISTS "${table}"`);
  await dataSource.destroy();
});

describe('TypeORM through @codecheck/db/pg', () => {
  it('runs on the library Pool: save, find, and a transaction rolled back on a throw', async () => {
    const driver = dataSource.driver as unknown as { master: unknown };
    expect(driver.master).toBeInstanceOf(pg.Pool);
    const repo = dataSource.getRepository(ItemSchema);
    const saved = await repo.save({ name: 'alpha' });
    expect(await repo.findOneBy({ id: saved.id })).toEqual({ id: saved.id, name: 'alpha' });
    await dataSource
      .transaction(async (manager) => {
        await manager.getRepository(ItemSchema).save({ name: 'rolled-back' });
        throw new Error('undo');
      })
      .catch(() => undefined);
    expect(await repo.findOneBy({ name: 'rolled-back' })).toBeNull();
    const pool = driver.master as InstanceType<typeof pg.Pool> & { getStats(): { activeConnections: number } };
    expect(pool.getStats().activeConnections).toBe(0);
  });
});
