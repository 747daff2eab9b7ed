/**
 * Prisma through @prisma/adapter-pg. The Prisma client itself needs `prisma generate` and its query
 * engine, which this machine cannot download; so these tests call the adapter's own query and
 * transaction API — the calls Prisma's engine makes — on the drop-in Pool (docs/drop-in.md).
 */
import { PrismaPg } from '@prisma/adapter-pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Pool } from '../../../src/index.js';
import { getTestDatabaseUrl } from '../../support/database-url.js';
import { uniqueName } from '../../support/test-database.js';

const table = uniqueName('prisma_items');
let pool: Pool;
const int = { scalarType: 'int', arity: 'scalar' } as const;
const text = { scalarType: 'string', arity: 'scalar' } as const;

beforeAll(async () => {
  pool = new Pool({ connectionString: getTestDatabaseUrl(), sslMode: 'disable', logLevel: 'silent', max: 4 });
  await pool.query(`CREATE TABLE ${table} (id int PRIMARY KEY, name text NOT NULL)`);
});

afterAll(async () => {
  await pool.query(`DROP TABLE IF EXISTS ${table}`);
  await pool.end();
});

describe('Prisma (@prisma/adapter-pg) on the drop-in Pool', () => {
  it('uses the Pool it is given (an instanceof pg.Pool check) instead of building its own', async () => {
    const factory = new PrismaPg(pool);
    expect((factory as unknown as { externalPool: unknown }).externalPool).toBe(pool);
    const adapter = await factory.connect();
    expect(adapter.underlyingDriver()).toBe(pool);
    await adapter.dispose();
    expect(pool.ending).toBe(false);
  });

  it('runs queries, maps a unique violation from the SQLSTATE, and commits or rolls back transactions', async () => {
    const adapter = await new PrismaPg(pool).connect();
    const inserted = await adapter.executeRaw({
      sql: `INSERT INTO ${table} VALUES ($1, $2)`,
      args: [1, 'alpha'],
      argTypes: [int, text],
    });
    expect(inserted).toBe(1);
    const result = await adapter.queryRaw({ sql: `SELECT id, name FROM ${table} WHERE id = $1`, args: [1], argTypes: [int] });
    expect(result.columnNames).toEqual(['id', 'name']);
    expect(result.rows).toEqual([[1, 'alpha']]);

    const duplicate = await adapter
      .executeRaw({ sql: `INSERT INTO ${table} VALUES ($1, $2)`, args: [1, 'again'], argTypes: [int, text] })
      .catch((error: { cause?: { kind?: string; originalCode?: string } }) => error.cause);
    expect(duplicate).toMatchObject({ kind: 'UniqueConstraintViolation', originalCode: '23505' });

    // As Prisma's engine does: BEGIN through the adapter, statements, COMMIT, then commit() releases.
    const committed = await adapter.startTransaction();
    await committed.executeRaw({ sql: `INSERT INTO ${table} VALUES ($1, $2)`, args: [2, 'committed'], argTypes: [int, text] });
    await committed.executeRaw({ sql: 'COMMIT', args: [], argTypes: [] });
    await committed.commit();

    // A transaction given back while still open (the engine gave up before ROLLBACK): the Pool rolls it back.
    const abandoned = await adapter.startTransaction();
    await abandoned.executeRaw({ sql: `INSERT INTO ${table} VALUES ($1, $2)`, args: [3, 'abandoned'], argTypes: [int, text] });
    await abandoned.rollback();

    const names = await adapter.queryRaw({ sql: `SELECT name FROM ${table} ORDER BY id`, args: [], argTypes: [] });
    expect(names.rows).toEqual([['alpha'], ['committed']]);
    expect(pool.getStats().activeConnections).toBe(0);
    await adapter.dispose();
  });
});
