import pg from 'pg';
import { SQL } from '../workloads.js';
import { POOL_MAX, type Variant, type VariantSpec } from './types.js';

/**
 * Diagnostic, write workload only: pg.Pool whose clients use pg's pipeline mode, sending BEGIN,
 * INSERT, UPDATE and COMMIT in one round trip. The library does not do this (docs/benchmarks.md):
 * pg ends every pipelined statement with its own Sync, so a BEGIN that fails (a cancel landing on it)
 * would leave the statements behind it to run outside any transaction.
 */
export const rawPipelineVariant: VariantSpec = {
  name: 'raw-pipeline',
  label: 'pg.Pool, pipelined tx',
  async create(url: string): Promise<Variant> {
    const pool = new pg.Pool({ connectionString: url, max: POOL_MAX, pipeline: true } as pg.PoolConfig);
    pool.on('error', () => undefined);
    return {
      select1: () => pool.query(SQL.select1),
      point: (id) => pool.query(SQL.point, [id]),
      list: (category) => pool.query(SQL.list, [category]),
      async write(id) {
        const client = await pool.connect();
        try {
          const results = await Promise.allSettled([
            client.query('BEGIN'),
            client.query(SQL.insertEvent, [id, 'view']),
            client.query(SQL.updateItem, [id]),
            client.query('COMMIT'),
          ]);
          const failed = results.find((r) => r.status === 'rejected');
          if (failed) throw (failed as PromiseRejectedResult).reason;
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
