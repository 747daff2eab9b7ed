import postgres from 'postgres';
import { POOL_MAX, type Variant, type VariantSpec } from './types.js';

/**
 * postgres.js with its defaults (automatic prepared statements), tagged-template queries.
 *
 * A fresh `sql` instance for every measured window: postgres.js 3.4 slows down steadily while more
 * callers than `max` queue for its connections (porsager/postgres#747; here SELECT 1 at concurrency 16
 * fell from about 30k to 15k ops/s within 8 s, while at concurrency <= max it stays flat), so one
 * instance for the whole run would measure that decay rather than the driver. docs/benchmarks.md.
 */
export const postgresJsVariant: VariantSpec = {
  name: 'postgresjs',
  label: 'postgres.js',
  async create(url: string): Promise<Variant> {
    const open = () => postgres(url, { max: POOL_MAX, onnotice: () => undefined });
    let sql = open();
    await sql`SELECT 1`;
    return {
      select1: () => sql`SELECT 1`.execute(),
      point: (id) => sql`SELECT id, category, name, score, updated_at FROM bench_items WHERE id = ${id}`.execute(),
      list: (category) =>
        sql`SELECT id, name, score FROM bench_items WHERE category = ${category} ORDER BY score DESC, id LIMIT 10`.execute(),
      write: (id) =>
        sql.begin(async (tx) => {
          await tx`INSERT INTO bench_events (item_id, kind) VALUES (${id}, ${'view'})`;
          await tx`UPDATE bench_items SET score = score + 1, updated_at = now() WHERE id = ${id}`;
        }),
      async reset() {
        await sql.end({ timeout: 5 });
        sql = open();
      },
      close: () => sql.end({ timeout: 5 }),
    };
  },
};
