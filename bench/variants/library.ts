import { Database, type DatabaseOptions } from '../../src/index.js';
import { SQL } from '../workloads.js';
import { POOL_MAX, type Variant, type VariantSpec } from './types.js';

/**
 * This library with its defaults: validation on checkout, release hygiene, stats, server-enforced
 * read-only `executeQuery`, transactions through `withDb`. `extra` lets a run compare option settings.
 */
export function libraryVariant(name: string, label: string, extra: DatabaseOptions = {}): VariantSpec {
  return {
    name,
    label,
    async create(url: string): Promise<Variant> {
      const db = new Database({ connectionString: url, sslMode: 'disable', max: POOL_MAX, logLevel: 'error', ...extra });
      await db.ready({ timeoutMillis: 10_000 });
      return {
        select1: () => db.executeQuery(SQL.select1),
        point: (id) => db.executeQuery(SQL.point, [id]),
        list: (category) => db.executeQuery(SQL.list, [category]),
        write: (id) =>
          db.withDb(false, async (client) => {
            await client.query(SQL.insertEvent, [id, 'view']);
            await client.query(SQL.updateItem, [id]);
          }),
        close: () => db.shutdown({ timeoutMillis: 5000 }),
      };
    },
  };
}
