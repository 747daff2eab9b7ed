/**
 * `@codecheck/db/pg`: node-postgres' module with this library's {@link Pool} in place of pg's, for
 * code that takes the pg module itself (TypeORM's `driver`, Knex's client). Everything else is pg's
 * own export: `Client`, `types`, `DatabaseError`, `escapeIdentifier`, ...
 */
import pg from 'pg';
// The Database provides the standalone Pool's backing (src/pg-compat/pool-backing.ts).
import '../database.js';
import { Pool } from './pool.js';

export { Pool };
export const {
  Client,
  Query,
  Connection,
  DatabaseError,
  Result,
  TypeOverrides,
  types,
  defaults,
  escapeIdentifier,
  escapeLiteral,
} = pg;
/** pg-native's binding is not offered: the library's guarantees need pg's JavaScript client. */
export const native = null;

const module: typeof pg = { ...pg, Pool: Pool as unknown as typeof pg.Pool, native: null };
export default module;
