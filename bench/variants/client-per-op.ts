import pg from 'pg';
import { SQL } from '../workloads.js';
import { POOL_MAX, type Variant, type VariantSpec } from './types.js';

/**
 * No pool: a new pg.Client (TCP + SCRAM authentication) for every operation, closed after it — the
 * seed's "before". At most POOL_MAX connections are open at once, like every other variant.
 */
export const clientPerOpVariant: VariantSpec = {
  name: 'client',
  label: 'new pg.Client per op',
  async create(url: string): Promise<Variant> {
    let open = 0;
    const waiting: (() => void)[] = [];
    async function withClient<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
      if (open >= POOL_MAX) await new Promise<void>((resolve) => waiting.push(resolve));
      else open++;
      const client = new pg.Client({ connectionString: url });
      client.on('error', () => undefined);
      try {
        await client.connect();
        return await fn(client);
      } finally {
        await client.end().catch(() => undefined);
        const next = waiting.shift();
        if (next) next();
        else open--;
      }
    }
    return {
      select1: () => withClient((c) => c.query(SQL.select1)),
      point: (id) => withClient((c) => c.query(SQL.point, [id])),
      list: (category) => withClient((c) => c.query(SQL.list, [category])),
      write: (id) =>
        withClient(async (c) => {
          await c.query('BEGIN');
          await c.query(SQL.insertEvent, [id, 'view']);
          await c.query(SQL.updateItem, [id]);
          await c.query('COMMIT');
        }),
      close: async () => undefined,
    };
  },
};
