import diagnosticsChannel from 'node:diagnostics_channel';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/index.js';
import { CHANNEL_NAMES } from '../../src/tracing-channels.js';
import { getTestDatabaseUrl } from '../support/database-url.js';
import { holdConnection, openDatabase } from '../support/test-database.js';

type Event = readonly [string, Record<string, unknown>];

const url = new URL(getTestDatabaseUrl());
const server = { serverAddress: url.hostname, serverPort: Number(url.port), database: url.pathname.slice(1) || 'postgres' };
const BOUND = 'Bound-value-7781';

let db: Database;
let events: Event[];
const unsubscribe: (() => void)[] = [];

/** Records every event of the tracing channel `name` as [event, copy of the message]. */
function record(name: keyof typeof CHANNEL_NAMES): void {
  if (name === 'release') {
    const onMessage = (message: unknown) => events.push(['release', { ...(message as Record<string, unknown>) }]);
    diagnosticsChannel.subscribe(CHANNEL_NAMES.release, onMessage);
    unsubscribe.push(() => diagnosticsChannel.unsubscribe(CHANNEL_NAMES.release, onMessage));
    return;
  }
  const channel = diagnosticsChannel.tracingChannel(CHANNEL_NAMES[name]);
  const copy = (event: string) => (message: unknown) => {
    const { transaction, ...rest } = message as Record<string, unknown>;
    events.push([`${name}:${event}`, { ...rest, ...(transaction ? { transaction: 'set' } : {}) }]);
  };
  const handlers = {
    start: copy('start'),
    end: copy('end'),
    asyncStart: copy('asyncStart'),
    asyncEnd: copy('asyncEnd'),
    error: copy('error'),
  };
  channel.subscribe(handlers);
  unsubscribe.push(() => channel.unsubscribe(handlers));
}

function eventsOf(prefix: string): Event[] {
  return events.filter(([name]) => name.startsWith(prefix));
}

beforeAll(() => {
  events = [];
});
afterEach(async () => {
  for (const undo of unsubscribe.splice(0)) undo();
  events = [];
  await db?.shutdown({ timeoutMillis: 2000 });
});

describe('codecheck-db:query', () => {
  it('publishes start, end, asyncStart and asyncEnd with the documented message for a statement that succeeds', async () => {
    db = openDatabase({ min: 0, max: 1 });
    await db.executeQuery('SELECT 1'); // connected before anyone listens
    record('query');
    await db.executeQuery('SELECT $1::text AS value, 2 AS two', [BOUND]);
    const message = {
      operation: 'query',
      text: 'SELECT $1::text AS value, 2 AS two',
      parameterCount: 1,
      ...server,
      poolName: 'primary',
    };
    expect(events).toEqual([
      ['query:start', message],
      ['query:end', message],
      ['query:asyncStart', { ...message, rowCount: 1 }],
      ['query:asyncEnd', { ...message, rowCount: 1 }],
    ]);
    expect(JSON.stringify(events)).not.toContain(BOUND);
  });

  it('publishes error with errorCode and sqlState for a statement the server rejects, without the bound value', async () => {
    db = openDatabase({ min: 0, max: 1 });
    await db.executeQuery('SELECT 1');
    record('query');
    const error = await db.executeQuery('SELECT $1::int', [BOUND]).catch((e: unknown) => e);
    const message = { operation: 'query', text: 'SELECT $1::int', parameterCount: 1, ...server, poolName: 'primary' };
    const failed = { ...message, errorCode: 'QUERY_FAILED', sqlState: '22P02', error };
    expect(events).toEqual([
      ['query:start', message],
      ['query:end', message],
      ['query:error', failed],
      ['query:asyncStart', failed],
      ['query:asyncEnd', failed],
    ]);
    expect(JSON.stringify(events)).not.toContain(BOUND);
    expect((error as Error).message).not.toContain(BOUND);
  });

  it('publishes QUERY_CANCELLED for a statement cut by timeoutMillis', async () => {
    db = openDatabase({ min: 0, max: 1 });
    await db.executeQuery('SELECT 1');
    record('query');
    const error = await db.executeQuery('SELECT pg_sleep(5)', [], { timeoutMillis: 100 }).catch((e: unknown) => e);
    const last = events.at(-1)!;
    expect(last[0]).toBe('query:asyncEnd');
    expect(last[1]).toEqual({
      operation: 'query',
      text: 'SELECT pg_sleep(5)',
      parameterCount: 0,
      ...server,
      poolName: 'primary',
      errorCode: 'QUERY_CANCELLED',
      error,
    });
  });
});

describe('codecheck-db:transaction', () => {
  it('wraps a withDb call; its statements carry the transaction message', async () => {
    db = openDatabase({ min: 0, max: 1 });
    await db.executeQuery('SELECT 1');
    record('transaction');
    record('query');
    await db.withDb({ readOnly: true, isolationLevel: 'repeatable read' }, async (client) => {
      await client.query('SELECT $1::text AS v', [BOUND]);
    });
    const transaction = {
      operation: 'transaction',
      readOnly: true,
      isolationLevel: 'repeatable read',
      ...server,
      poolName: 'primary',
    };
    // `end` follows `start` synchronously (the call returned its promise); the statements run after it.
    expect(events.map(([name]) => name)).toEqual([
      'transaction:start',
      'transaction:end',
      'query:start',
      'query:end',
      'query:asyncStart',
      'query:asyncEnd',
      'transaction:asyncStart',
      'transaction:asyncEnd',
    ]);
    expect(eventsOf('transaction:asyncEnd')[0]![1]).toEqual(transaction);
    expect(eventsOf('query:start')[0]![1]).toMatchObject({ text: 'SELECT $1::text AS v', transaction: 'set' });
    expect(JSON.stringify(events)).not.toContain(BOUND);
  });

  it('reports a failed executeTransaction with its error code', async () => {
    db = openDatabase({ min: 0, max: 1 });
    await db.executeQuery('SELECT 1');
    record('transaction');
    const error = await db.executeTransaction([{ text: 'SELECT 1/0' }]).catch((e: unknown) => e);
    expect(eventsOf('transaction:asyncEnd')[0]![1]).toEqual({
      operation: 'transaction',
      readOnly: false,
      isolationLevel: undefined,
      ...server,
      poolName: 'primary',
      errorCode: 'QUERY_FAILED',
      sqlState: '22012',
      error,
    });
  });
});

describe('codecheck-db:acquire, connect and release', () => {
  it('traces an acquire that opens a connection, the connect inside it, and the release', async () => {
    db = openDatabase({ min: 0, max: 1 });
    record('acquire');
    record('connect');
    record('release');
    await db.executeQuery('SELECT 1');
    const fields = { ...server, poolName: 'primary' };
    expect(events.map(([name]) => name)).toEqual([
      'acquire:start',
      'connect:start',
      'connect:end',
      'acquire:end',
      'connect:asyncStart',
      'connect:asyncEnd',
      'acquire:asyncStart',
      'acquire:asyncEnd',
      'release',
    ]);
    expect(eventsOf('acquire:asyncEnd')[0]![1]).toEqual({ operation: 'acquire', waitingRequests: 0, ...fields });
    expect(eventsOf('connect:asyncEnd')[0]![1]).toEqual({ operation: 'connect', ...fields });
    const release = eventsOf('release')[0]![1];
    expect(release).toEqual({ operation: 'release', useMillis: release.useMillis, ...fields });
    expect(typeof release.useMillis).toBe('number');
  });

  it('reports an acquire that times out with POOL_TIMEOUT and the callers already waiting', async () => {
    db = openDatabase({ min: 0, max: 1 });
    const holder = holdConnection(db);
    await holder.held;
    record('acquire');
    const error = await db.executeQuery('SELECT 1', [], { timeoutMillis: 100 }).catch((e: unknown) => e);
    holder.release();
    await holder.done;
    expect(eventsOf('acquire:asyncEnd')[0]![1]).toEqual({
      operation: 'acquire',
      waitingRequests: 0,
      ...server,
      poolName: 'primary',
      errorCode: 'POOL_TIMEOUT',
      error,
    });
  });

  it('reports a connect whose login the server refuses, with the SQLSTATE', async () => {
    db = openDatabase({ min: 0, max: 1, password: 'wrong-password-for-tracing' });
    record('connect');
    await db.executeQuery('SELECT 1').catch(() => undefined);
    const ended = eventsOf('connect:asyncEnd')[0]![1];
    expect(ended).toMatchObject({ operation: 'connect', ...server, poolName: 'primary', sqlState: '28P01' });
    expect(JSON.stringify(ended)).not.toContain('wrong-password-for-tracing');
  });
});

describe('with no subscriber', () => {
  it('publishes nothing and the channels report no subscribers', async () => {
    db = openDatabase({ min: 0, max: 1 });
    await db.executeQuery('SELECT 1');
    for (const name of ['query', 'transaction', 'acquire', 'connect'] as const)
      expect(diagnosticsChannel.tracingChannel(CHANNEL_NAMES[name]).hasSubscribers, name).toBe(false);
    expect(diagnosticsChannel.hasSubscribers(CHANNEL_NAMES.release)).toBe(false);
  });
});
