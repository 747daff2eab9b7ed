import { createPostgreSqlTypeParsers, EntitySchema, MikroORM, UniqueConstraintViolationException } from '@mikro-orm/postgresql';
import { PostgresDialect } from 'kysely';
import pg from 'pg';
import Cursor from 'pg-cursor';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Pool } from '../../../src/index.js';
import { getTestDatabaseUrl } from '../../support/database-url.js';
import { adminQuery, uniqueName } from '../../support/test-database.js';

interface Item {
  id: number;
  name: string;
  day: string;
}

/** text[]: pg's parser for it splits an array literal into strings (pg's `builtins` lists no array types). */
const TEXT_ARRAY_OID = 1009 as Parameters<typeof pg.types.getTypeParser>[0];
const table = uniqueName('mikro_items');
/**
 * A database of its own: orm.schema reads the whole catalog (every table, then each one's indexes),
 * and in the shared database another test file's table can be dropped between those two reads.
 */
const database = uniqueName('mikro_db');
const ItemSchema = new EntitySchema<Item>({
  name: 'Item',
  tableName: table,
  properties: {
    id: { type: 'integer', primary: true, autoincrement: true },
    name: { type: 'text' },
    day: { type: 'date' },
  },
});

let pool: Pool;
let orm: MikroORM;
let acquires = 0;
let schemaCreateResets = 0;

/** What the Pool saw since `before`: checkouts (pg's `acquire` event) and statements (`queriesExecuted`). */
function trafficSince(before: { acquires: number; queries: number }): { acquires: number; queries: number } {
  return { acquires: acquires - before.acquires, queries: pool.getStats().queriesExecuted - before.queries };
}

function mark(): { acquires: number; queries: number } {
  return { acquires, queries: pool.getStats().queriesExecuted };
}

async function namesInTable(): Promise<string[]> {
  const items = await orm.em.fork().find(ItemSchema, {}, { orderBy: { id: 'asc' } });
  return items.map((item) => item.name);
}

beforeAll(async () => {
  // MikroORM's own pg pool keeps date, timestamp and interval values as strings; give ours the same parsers.
  const types = new pg.TypeOverrides();
  for (const [oid, parse] of Object.entries(createPostgreSqlTypeParsers(pg.types.getTypeParser(TEXT_ARRAY_OID)))) {
    types.setTypeParser(Number(oid), parse);
  }
  await adminQuery(`CREATE DATABASE ${database}`);
  const url = new URL(getTestDatabaseUrl());
  url.pathname = `/${database}`;
  pool = new Pool({ connectionString: url.toString(), sslMode: 'disable', logLevel: 'silent', max: 4, types });
  pool.on('acquire', () => acquires++);
  // MikroORM 7 takes a ready Kysely dialect in driverOptions and then opens no pool of its own.
  orm = await MikroORM.init({
    entities: [ItemSchema],
    dbName: pool.options.database,
    driverOptions: new PostgresDialect({ pool, cursor: Cursor }),
  });
  const resetsBefore = pool.getStats().sessionResets;
  await orm.schema.create();
  schemaCreateResets = pool.getStats().sessionResets - resetsBefore;
});

afterAll(async () => {
  await orm.schema.drop();
  await orm.close(); // Kysely's driver ends the Pool
  await adminQuery(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
});

describe('MikroORM 7 on the drop-in Pool through a Kysely PostgresDialect', () => {
  it('inserts an entity with em.flush and finds it again, each through a checkout of the Pool', async () => {
    const before = mark();
    const em = orm.em.fork();
    const item = em.create(ItemSchema, { name: 'alpha', day: '2026-12-07' });
    await em.flush();
    expect(trafficSince(before)).toEqual({ acquires: 1, queries: 3 }); // BEGIN, INSERT, COMMIT on one checkout

    const found = await orm.em.fork().findOneOrFail(ItemSchema, { id: item.id });
    expect(found).toMatchObject({ id: item.id, name: 'alpha', day: '2026-12-07' });
    expect(trafficSince(before)).toEqual({ acquires: 2, queries: 4 });
    expect(pool.getStats().activeConnections).toBe(0);
  });

  it('sees no change to flush on an entity it loaded, so its date column round-trips as MikroORM expects', async () => {
    const em = orm.em.fork();
    em.create(ItemSchema, { name: 'dated', day: '2026-01-31' });
    await em.flush();
    const reader = orm.em.fork();
    const loaded = await reader.findOneOrFail(ItemSchema, { name: 'dated' });
    expect(loaded.day).toBe('2026-01-31');
    const before = mark();
    await reader.flush();
    expect(trafficSince(before)).toEqual({ acquires: 0, queries: 0 });
  });

  it('commits em.transactional and rolls it back when its callback throws, leaving no connection checked out', async () => {
    await orm.em.fork().transactional(async (em) => {
      em.create(ItemSchema, { name: 'committed', day: '2026-12-07' });
    });
    const before = mark();
    const failure = await orm.em
      .fork()
      .transactional(async (em) => {
        em.create(ItemSchema, { name: 'rolled-back', day: '2026-12-07' });
        await em.flush(); // the INSERT reaches the server inside the transaction
        throw new Error('undo');
      })
      .catch((error: Error) => error.message);
    expect(failure).toBe('undo');
    expect(trafficSince(before)).toEqual({ acquires: 1, queries: 3 }); // BEGIN, INSERT, ROLLBACK on one checkout

    const names = await namesInTable();
    expect(names).toContain('committed');
    expect(names).not.toContain('rolled-back');
    expect(pool.getStats().activeConnections).toBe(0);
  });

  it('resets the session setting its schema generator sends (set names) before the connection goes back', () => {
    expect(schemaCreateResets).toBe(1);
    expect(pool.getStats().sessionDiscards).toBe(0);
  });

  it('rolls back a transaction whose statement fails, MikroORM mapping the Pool’s pg error by its SQLSTATE', async () => {
    const failure = await orm.em
      .fork()
      .transactional(async (em) => {
        const item = em.create(ItemSchema, { name: 'before the error', day: '2026-12-07' });
        await em.flush();
        await em.insert(ItemSchema, { id: item.id, name: 'same id', day: '2026-12-07' });
      })
      .catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(UniqueConstraintViolationException);
    expect(failure).toMatchObject({ code: '23505' });
    const names = await namesInTable();
    expect(names).not.toContain('before the error');
    expect(names).not.toContain('same id');
    expect(pool.getStats().activeConnections).toBe(0);
  });
});
