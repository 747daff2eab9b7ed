import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { eq, sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import { integer, pgTable, serial, text } from 'drizzle-orm/pg-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Pool } from '../../../src/index.js';
import { getTestDatabaseUrl } from '../../support/database-url.js';
import { startFaultProxy } from '../../support/fault-proxy.js';
import { urlVia } from '../reliability/support.js';
import { captureLogs, eventually, sleep, uniqueName } from '../../support/test-database.js';

const tableName = uniqueName('drizzle_items');
const items = pgTable(tableName, { id: serial('id').primaryKey(), name: text('name').notNull(), qty: integer('qty').notNull() });

let pool: Pool;
let db: ReturnType<typeof drizzle<Record<string, never>, Pool>>;

beforeAll(async () => {
  pool = new Pool({ connectionString: getTestDatabaseUrl(), sslMode: 'disable', logLevel: 'silent', max: 4 });
  db = drizzle({ client: pool });
  await db.execute(sql.raw(`CREATE TABLE ${tableName} (id serial PRIMARY KEY, name text NOT NULL, qty int NOT NULL)`));
});

afterAll(async () => {
  await db.execute(sql.raw(`DROP TABLE IF EXISTS ${tableName}`));
  await pool.end();
});

const extraPools: Pool[] = [];
afterEach(async () => {
  for (const extra of extraPools.splice(0)) await extra.end();
});

describe('Drizzle (drizzle-orm/node-postgres) on the drop-in Pool', () => {
  it('inserts and selects rows', async () => {
    const [row] = await db.insert(items).values({ name: 'alpha', qty: 1 }).returning();
    expect(row).toMatchObject({ name: 'alpha', qty: 1 });
    expect(await db.select({ name: items.name }).from(items).where(eq(items.id, row!.id))).toEqual([{ name: 'alpha' }]);
  });

  it('commits db.transaction, rolls it back on a throw, and rolls back a nested savepoint alone', async () => {
    await db.transaction(async (tx) => {
      await tx.insert(items).values({ name: 'outer', qty: 1 });
      await tx
        .transaction(async (nested) => {
          await nested.insert(items).values({ name: 'savepoint', qty: 2 });
          nested.rollback();
        })
        .catch(() => undefined);
    });
    await db
      .transaction(async (tx) => {
        await tx.insert(items).values({ name: 'thrown', qty: 3 });
        throw new Error('undo');
      })
      .catch(() => undefined);
    const names = (await db.select({ name: items.name }).from(items)).map((r) => r.name);
    expect(names).toContain('outer');
    expect(names).not.toContain('savepoint');
    expect(names).not.toContain('thrown');
    expect(pool.getStats().activeConnections).toBe(0);
  });

  it('makes drizzle-orm #6023 visible and harmless: the client leaked when BEGIN fails is reported, then reclaimed', async () => {
    const logs = captureLogs('warn');
    const target = new URL(getTestDatabaseUrl());
    const proxy = await startFaultProxy({ targetHost: target.hostname, targetPort: Number(target.port) });
    const small = new Pool({
      connectionString: urlVia(getTestDatabaseUrl(), proxy),
      sslMode: 'disable',
      logger: logs.logger,
      max: 1,
      validationIntervalMillis: 60_000,
      validationTimeoutMillis: 200,
      statementTimeoutMillis: 300,
      leakDetectionThresholdMillis: 200,
    });
    extraPools.push(small);
    const smallDb = drizzle({ client: small });
    await smallDb.execute(sql`SELECT 1`);
    // The link goes silent (a lost NAT entry): the idle connection looks alive until BEGIN gets no answer,
    // and the statement watchdog abandons it.
    proxy.blackhole();
    // Drizzle runs BEGIN outside its try/finally: the failing BEGIN skips release().
    // Only the message is kept: an unread error stack holds its frames' objects (the leaked client among them).
    const failure = await smallDb
      .transaction(async () => undefined)
      .then(
        () => 'committed',
        (error: Error) => error.message,
      );
    expect(failure).toContain('Failed query: begin');
    expect(small.getStats().activeConnections).toBe(1);
    proxy.heal();
    // Visible: the leak detector names the caller that acquired it.
    const leak = await eventually(() => logs.records().find((r) => String(r.msg).includes('possible leak')));
    expect(String(leak.acquiredAt)).toContain('drizzle.test.ts');
    // Harmless: once the leaked client is unreachable, its slot comes back.
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    await eventually(async () => {
      gc();
      await sleep(20);
      return small.getStats().activeConnections === 0 ? true : undefined;
    });
    expect(logs.records().some((r) => String(r.msg).includes('garbage-collected without release()'))).toBe(true);
    expect(await smallDb.execute(sql`SELECT 2 AS n`)).toMatchObject({ rows: [{ n: 2 }] });
    await small.end();
    extraPools.length = 0;
    await proxy.close();
  });
});
