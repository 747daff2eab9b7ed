import { Pool } from '../../src/index.js';
import { SQL } from '../workloads.js';
import { POOL_MAX, type Variant, type VariantSpec } from './types.js';

/**
 * The drop-in `Pool` used exactly as the `raw` variant uses pg.Pool: `pool.query` for one statement,
 * connect/BEGIN/COMMIT/release by hand for a transaction. The difference between the two is what the
 * facade and the library underneath cost (or save) for code written against pg.
 */
export const dropInPoolVariant: VariantSpec = {
  name: 'pool',
  label: '@codecheck/db Pool (drop-in)',
  async create(url: string): Promise<Variant> {
    const pool = new Pool({ connectionString: url, sslMode: 'disable', max: POOL_MAX, logLevel: 'error' });
    return {
      select1: () => pool.query(SQL.select1),
      point: (id) => pool.query({ text: SQL.point, values: [id] }),
      list: (category) => pool.query({ text: SQL.list, values: [category] }),
      async write(id) {
        const client = await pool.connect();
        try {
          await client.query('BEGIN');
          await client.query({ text: SQL.insertEvent, values: [id, 'view'] });
          await client.query({ text: SQL.updateItem, values: [id] });
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
