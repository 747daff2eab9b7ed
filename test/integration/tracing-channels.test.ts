import diagnosticsChannel from 'node:diagnostics_channel';
import { Writable } from 'node:stream';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { Pool, type Database } from '../../src/index.js';
import { CHANNEL_NAMES } from '../../src/tracing-channels.js';
import { getTestDatabaseUrl } from '../support/database-url.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { adminQuery, holdConnection, openDatabase, uniqueName } from '../support/test-database.js';

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

describe('cursors, streams and COPY on codecheck-db:query', () => {
  it('publishes a db.stream cursor from its submission until pg is done with it, inside its transaction, with no row count', async () => {
    db = openDatabase({ min: 0, max: 1 });
    await db.executeQuery('SELECT 1');
    record('transaction'); // the query messages name their transaction only while it is traced too
    record('query');
    const rows: unknown[] = [];
    for await (const row of db.stream('SELECT g, $1::text AS tag FROM generate_series(1, 3) AS g', [BOUND], { batchSize: 2 }))
      rows.push(row);
    expect(rows).toHaveLength(3);
    const text = 'SELECT g, $1::text AS tag FROM generate_series(1, 3) AS g';
    const message = { operation: 'query', text, parameterCount: 1, ...server, poolName: 'primary', transaction: 'set' };
    const cursorEvents = events.filter(([, m]) => m.text === text);
    expect(cursorEvents).toEqual([
      ['query:start', message],
      ['query:end', message],
      ['query:asyncStart', message],
      ['query:asyncEnd', message],
    ]);
    expect(JSON.stringify(events)).not.toContain(BOUND);
  });

  it('publishes a COPY TO STDOUT on the withDb client, and a failed cursor with the SQLSTATE of the driver error', async () => {
    db = openDatabase({ min: 0, max: 1 });
    await db.executeQuery('SELECT 1');
    record('query');
    await db.withDb(true, async (client) => {
      const chunks: Buffer[] = [];
      for await (const chunk of client.copyTo('COPY (SELECT 1) TO STDOUT')) chunks.push(chunk as Buffer);
      expect(Buffer.concat(chunks).toString()).toBe('1\n');
    });
    const copy = { operation: 'query', text: 'COPY (SELECT 1) TO STDOUT', parameterCount: 0, ...server, poolName: 'primary' };
    expect(events.filter(([, m]) => m.text === copy.text).map(([name]) => name)).toEqual([
      'query:start',
      'query:end',
      'query:asyncStart',
      'query:asyncEnd',
    ]);
    expect(eventsOf('query:asyncEnd').find(([, m]) => m.text === copy.text)![1]).toEqual(copy);

    events = [];
    const failure = await (async () => {
      for await (const row of db.stream('SELECT 1/0', [])) void row;
    })().catch((error: unknown) => error);
    expect(failure).toMatchObject({ code: 'QUERY_FAILED', sqlState: '22012' });
    const failed = eventsOf('query:asyncEnd').find(([, m]) => m.text === 'SELECT 1/0')![1];
    expect(failed).toEqual({
      operation: 'query',
      text: 'SELECT 1/0',
      parameterCount: 0,
      ...server,
      poolName: 'primary',
      transaction: undefined,
      sqlState: '22012',
      error: failed.error,
    });
  });
});

describe('a failed cursor on codecheck-db:query carries no bound value', () => {
  it.each([
    ['a data exception (22P02) quoting the input', 'SELECT $1::int AS n'],
    ['a value read as a name (42P01)', 'SELECT $1::regclass AS n'],
  ])('%s: the published error names the SQLSTATE, never the value', async (_what, sql) => {
    db = openDatabase({ min: 0, max: 1 });
    await db.executeQuery('SELECT 1');
    record('query');
    const failure = await (async () => {
      for await (const row of db.stream(sql, [BOUND])) void row;
    })().catch((error: unknown) => error);
    expect(failure).toMatchObject({ code: 'QUERY_FAILED' });
    const published = eventsOf('query:error').find(([, m]) => m.text === sql)![1];
    const error = published.error as Error & { code?: string };
    expect(error.code).toMatch(/^(22P02|42P01)$/);
    expect(JSON.stringify({ ...error, message: error.message, stack: error.stack }).toLowerCase()).not.toContain(
      BOUND.toLowerCase(),
    );
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

describe('codecheck-db:transaction ends', () => {
  it('reports a withDb cut by timeoutMillis with QUERY_CANCELLED', async () => {
    db = openDatabase({ min: 0, max: 1 });
    await db.executeQuery('SELECT 1');
    record('transaction');
    const error = await db
      .withDb({ readOnly: false, timeoutMillis: 100 }, async (client) => {
        await client.query('SELECT pg_sleep(5)');
      })
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'QUERY_CANCELLED' });
    expect(eventsOf('transaction:asyncEnd').map(([, message]) => message)).toEqual([
      {
        operation: 'transaction',
        readOnly: false,
        isolationLevel: undefined,
        ...server,
        poolName: 'primary',
        errorCode: 'QUERY_CANCELLED',
        error,
      },
    ]);
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
    // The driver's error (the pool maps it to CONNECTION_FAILED for the caller afterwards): no errorCode.
    expect(ended).toEqual({ operation: 'connect', ...server, poolName: 'primary', sqlState: '28P01', error: ended.error });
    expect(ended.error).toBeInstanceOf(Error);
    expect(JSON.stringify(ended)).not.toContain('wrong-password-for-tracing');
    expect(String((ended.error as Error).message)).not.toContain('wrong-password-for-tracing');
  });
});

describe('codecheck-db:acquire and connect failures', () => {
  let proxy: FaultProxy | undefined;
  afterEach(async () => {
    await proxy?.close();
    proxy = undefined;
  });

  it('reports an acquire whose new connection the server refused, with CONNECTION_FAILED and the SQLSTATE', async () => {
    db = openDatabase({ min: 0, max: 1, password: 'wrong-password-for-tracing' });
    record('acquire');
    const error = await db.executeQuery('SELECT 1').catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'CONNECTION_FAILED' });
    const ended = eventsOf('acquire:asyncEnd').map(([, message]) => message);
    expect(ended).toEqual([
      {
        operation: 'acquire',
        waitingRequests: 0,
        ...server,
        poolName: 'primary',
        errorCode: 'CONNECTION_FAILED',
        sqlState: '28P01',
        error,
      },
    ]);
    expect(JSON.stringify(ended)).not.toContain('wrong-password-for-tracing');
  });

  it("reports a connect to a server that never answers: the acquire with POOL_TIMEOUT, the connect with pg's timeout", async () => {
    proxy = await startFaultProxy({ targetHost: url.hostname, targetPort: Number(url.port) });
    proxy.blackhole();
    const viaProxy = new URL(url);
    viaProxy.hostname = proxy.host;
    viaProxy.port = String(proxy.port);
    db = openDatabase({ connectionString: viaProxy.href, min: 0, max: 1, connectionTimeoutMillis: 300 });
    record('acquire');
    record('connect');
    const error = await db.executeQuery('SELECT 1').catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'POOL_TIMEOUT' });
    const proxied = { serverAddress: proxy.host, serverPort: proxy.port, database: server.database, poolName: 'primary' };
    expect(eventsOf('acquire:asyncEnd').map(([, message]) => message)).toEqual([
      { operation: 'acquire', waitingRequests: 0, ...proxied, errorCode: 'POOL_TIMEOUT', error },
    ]);
    // The acquire gave up at its deadline; pg's own connect timeout ends the connect right after it.
    await vi.waitFor(() => expect(eventsOf('connect:asyncEnd')).toHaveLength(1), { timeout: 5000 });
    const connect = eventsOf('connect:asyncEnd')[0]![1];
    expect(connect).toEqual({ operation: 'connect', ...proxied, error: connect.error });
    expect((connect.error as Error).message).toMatch(/timeout/i);
  });
});

describe('codecheck-db:connect with a credentials provider', () => {
  it('reports a provider that fails with CREDENTIALS_FAILED and no secret', async () => {
    const withoutPassword = new URL(url);
    withoutPassword.password = '';
    db = openDatabase({
      connectionString: withoutPassword.href,
      min: 0,
      max: 1,
      password: () => Promise.reject(new Error('the vault is sealed')),
    });
    record('connect');
    const error = await db.executeQuery('SELECT 1').catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'CREDENTIALS_FAILED' });
    expect(eventsOf('connect:asyncEnd').map(([, message]) => message)).toEqual([
      { operation: 'connect', ...server, poolName: 'primary', errorCode: 'CREDENTIALS_FAILED', error },
    ]);
  });
});

describe('the drop-in Pool on codecheck-db:query', () => {
  it("publishes pool.query and a checked-out client's query with the same message; a failure carries pg's error and its SQLSTATE", async () => {
    const pool = new Pool({ connectionString: getTestDatabaseUrl(), sslMode: 'disable', logLevel: 'silent', max: 1 });
    try {
      await pool.query('SELECT 1'); // connected before anyone listens
      record('query');
      await pool.query('SELECT $1::text AS v', [BOUND]);
      const client = await pool.connect();
      const error = await client.query({ text: 'SELECT $1::text AS v, 1/0 AS n', values: [BOUND] }).catch((e: unknown) => e);
      client.release();
      const message = { operation: 'query', text: 'SELECT $1::text AS v', parameterCount: 1, ...server, poolName: 'primary' };
      expect(events.slice(0, 4)).toEqual([
        ['query:start', message],
        ['query:end', message],
        ['query:asyncStart', { ...message, rowCount: 1 }],
        ['query:asyncEnd', { ...message, rowCount: 1 }],
      ]);
      const failed = {
        operation: 'query',
        text: 'SELECT $1::text AS v, 1/0 AS n',
        parameterCount: 1,
        ...server,
        poolName: 'primary',
      };
      expect(events.slice(4).map(([name]) => name)).toEqual([
        'query:start',
        'query:end',
        'query:error',
        'query:asyncStart',
        'query:asyncEnd',
      ]);
      expect(events.at(-1)![1]).toEqual({ ...failed, sqlState: '22012', error });
      expect(error).toMatchObject({ code: '22012' }); // pg's own error, as pg gives it
      expect(JSON.stringify(events)).not.toContain(BOUND);
    } finally {
      await pool.end();
    }
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

describe('codecheck-db:transaction for db.stream, db.copyFrom and db.copyTo', () => {
  it('publishes one transaction for each, read-only as documented, and names it on its statement', async () => {
    const table = uniqueName('traced_copy');
    await adminQuery(`CREATE TABLE ${table} (n int)`);
    try {
      db = openDatabase({ min: 0, max: 1 });
      await db.executeQuery('SELECT 1');
      record('transaction');
      record('query');
      for await (const row of db.stream('SELECT 1 AS one')) void row;
      await db.copyFrom(`COPY ${table} FROM STDIN`, ['1\n']);
      await db.copyTo(`COPY ${table} TO STDOUT`, new Writable({ write: (_chunk, _encoding, done) => done() }));
      const transaction = (readOnly: boolean) => ({ operation: 'transaction', readOnly, ...server, poolName: 'primary' });
      expect(eventsOf('transaction:asyncEnd').map(([, message]) => message)).toEqual([
        transaction(true),
        transaction(false),
        transaction(true),
      ]);
      expect(eventsOf('query:start').map(([, message]) => [message.text, message.transaction])).toEqual([
        ['SELECT 1 AS one', 'set'],
        [`COPY ${table} FROM STDIN`, 'set'],
        [`COPY ${table} TO STDOUT`, 'set'],
      ]);
    } finally {
      await adminQuery(`DROP TABLE IF EXISTS ${table}`);
    }
  });
});
