import pg from 'pg';
import { SQL } from '../workloads.js';
import { POOL_MAX, type Variant, type VariantSpec } from './types.js';

/**
 * node-postgres' pg.Pool used by hand: `pool.query` for one statement, connect/BEGIN/COMMIT/release
 * for a transaction. `isNamed` gives every parameterized statement a `name` (pg then prepares it once
 * per connection): the diagnostic variant `raw-named` that isolates what prepared statements save.
 */
function rawPool(name: string, label: string, isNamed: boolean): VariantSpec {
  const q = (text: string, key: string) => (isNamed ? { text, name: `bench_${key}` } : { text });
  const point = q(SQL.point, 'point');
  const list = q(SQL.list, 'list');
  const insertEvent = q(SQL.insertEvent, 'insert');
  const updateItem = q(SQL.updateItem, 'update');
  return {
    name,
    label,
    async create(url: string): Promise<Variant> {
      const pool = new pg.Pool({ connectionString: url, max: POOL_MAX });
      pool.on('error', () => undefined);
      return {
        select1: () => pool.query(SQL.select1),
        point: (id) => pool.query({ ...point, values: [id] }),
        list: (category) => pool.query({ ...list, values: [category] }),
        async write(id) {
          const client = await pool.connect();
          try {
            await client.query('BEGIN');
            await client.query({ ...insertEvent, values: [id, 'view'] });
            await client.query({ ...updateItem, values: [id] });
            await client.query('COMMIT');
            client.release();
          } catch (error) {
            await client.query('ROLLBACK').catch(() => undefined);
            client.release(true);
            throw error;
          }
        },
        close: () => pool.end(),
      };
    },
  };
}

export const rawPoolVariant = rawPool('raw', 'pg.Pool (raw)', false);
export const rawNamedPoolVariant = rawPool('raw-named', 'pg.Pool, named statements', true);
/** The same pg.Pool as `raw`, a second instance: whatever separates it from `raw` is noise. */
export const rawAgainPoolVariant = rawPool('raw-again', 'pg.Pool again (A/A)', false);
