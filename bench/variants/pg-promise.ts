import pgPromise from 'pg-promise';
import { SQL } from '../workloads.js';
import { POOL_MAX, type Variant, type VariantSpec } from './types.js';

/**
 * pg-promise used idiomatically: `db.any`/`db.oneOrNone` and `db.tx`. Note that pg-promise formats
 * `$1` values into the SQL text on the client (it does not bind them on the server).
 */
export const pgPromiseVariant: VariantSpec = {
  name: 'pgp',
  label: 'pg-promise',
  async create(url: string): Promise<Variant> {
    const pgp = pgPromise({ noWarnings: true });
    const db = pgp({ connectionString: url, max: POOL_MAX });
    await db.one(SQL.select1);
    return {
      select1: () => db.one(SQL.select1),
      point: (id) => db.oneOrNone(SQL.point, [id]),
      list: (category) => db.any(SQL.list, [category]),
      write: (id) =>
        db.tx(async (t) => {
          await t.none(SQL.insertEvent, [id, 'view']);
          await t.none(SQL.updateItem, [id]);
        }),
      close: async () => pgp.end(),
    };
  },
};
