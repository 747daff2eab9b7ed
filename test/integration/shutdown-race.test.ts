/**
 * Calls racing `shutdown()` (issue 12, items 1 and 2): a call made in the same tick as shutdown, or one
 * microtask before it, settles at once with PoolClosedError (never at the acquire deadline as a
 * POOL_TIMEOUT), and a `ready()` still retrying ends when shutdown starts.
 */
import { createServer } from 'node:net';
import { afterEach, describe, expect, test } from 'vitest';
import { PoolClosedError, type Database } from '../../src/index.js';
import { openDatabase, within } from '../support/test-database.js';

let db: Database | undefined;
afterEach(async () => {
  await db?.shutdown({ timeoutMillis: 1000 });
  db = undefined;
});

const CALLS: [string, (database: Database) => Promise<unknown>][] = [
  ['withDb', (database) => database.withDb(true, async (client) => client.query('SELECT 1'))],
  ['executeQuery', (database) => database.executeQuery('SELECT 1')],
  ['executeTransaction', (database) => database.executeTransaction([{ text: 'SELECT 1' }])],
  ['getWriteToken', (database) => database.getWriteToken()],
];

describe('a call racing shutdown()', () => {
  for (const [name, call] of CALLS) {
    for (const when of ['in the same tick', 'one microtask before'] as const) {
      test(`${name} made ${when} as shutdown() settles at once, with PoolClosedError if it did not run`, async () => {
        // An idle connection is there: pg-pool hands it over on a later tick, after shutdown began.
        db = openDatabase({ min: 1, max: 2, connectionTimeoutMillis: 10_000 });
        await db.ready();
        const pending = call(db);
        if (when === 'one microtask before') await Promise.resolve();
        const closing = db.shutdown({ timeoutMillis: 2000 });
        const outcome = await within(3000, pending);
        expect(outcome).not.toBe('pending');
        if (typeof outcome === 'object' && 'error' in outcome) expect(outcome.error).toBeInstanceOf(PoolClosedError);
        await closing;
        expect(db.getStats()).toMatchObject({ acquireTimeouts: 0, poolExhaustedCount: 0 });
      });
    }
  }
});

describe('ready() racing shutdown()', () => {
  test('a ready() still retrying against a server that is not there ends with PoolClosedError when shutdown starts', async () => {
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const { port } = probe.address() as { port: number };
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    db = openDatabase({ connectionString: `postgres://u:p@127.0.0.1:${port}/db`, min: 1, max: 1 });
    const ready = db.ready({ timeoutMillis: 20_000 });
    ready.catch(() => undefined);
    // Long enough for a few attempts, so its backoff has grown towards two seconds.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await db.shutdown({ timeoutMillis: 500 });
    const outcome = await within(300, ready);
    expect(outcome).not.toBe('pending');
    expect((outcome as { error: unknown }).error).toBeInstanceOf(PoolClosedError);
  });
});
