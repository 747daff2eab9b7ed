/**
 * Runs the examples of docs/observability.md against the test server, so the page stays true: each
 * ```ts example type-stripped and run as the body of an async function (import lines dropped, the names
 * they bring in passed as parameters), and each ```js message example compared with the message the
 * library publishes for the call the page names.
 */
import diagnosticsChannel from 'node:diagnostics_channel';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Database, DatabaseQueryError, type DatabaseOptions } from '../../src/index.js';
import { instrument } from '../../src/integrations/otel.js';
import { CHANNEL_NAMES } from '../../src/tracing-channels.js';
import { getTestDatabaseUrl } from '../support/database-url.js';
import { openDatabase, ROOT } from '../support/test-database.js';
import { runExample } from '../support/doc-examples.js';

const page = readFileSync(join(ROOT, 'docs', 'observability.md'), 'utf8');
const tsExamples = [...page.matchAll(/```ts\n([\s\S]*?)```/g)].map((match) => match[1]!);
const messageExamples = [...page.matchAll(/```js\n([\s\S]*?)```/g)].map((match) => match[1]!);

const url = new URL(getTestDatabaseUrl());
const server = { serverAddress: url.hostname, serverPort: Number(url.port), database: url.pathname.slice(1) || 'postgres' };

const databases: Database[] = [];
const undo: (() => void)[] = [];

/** `new Database()` as the page writes it, pointed at the test server. */
class TestDatabase extends Database {
  constructor(options: DatabaseOptions = {}) {
    super({ connectionString: getTestDatabaseUrl(), sslMode: 'disable', logLevel: 'silent', ...options });
    databases.push(this);
  }
}

/** `node:diagnostics_channel` for an example: its subscriptions are undone after the test. */
const trackedChannels = {
  tracingChannel(name: string) {
    const channel = diagnosticsChannel.tracingChannel(name);
    return {
      subscribe(handlers: diagnosticsChannel.TracingChannelSubscribers<object>) {
        channel.subscribe(handlers);
        undo.push(() => channel.unsubscribe(handlers));
      },
    };
  },
};

afterEach(async () => {
  for (const step of undo.splice(0).reverse()) step();
  await Promise.all(databases.splice(0).map((db) => db.shutdown({ timeoutMillis: 2000 })));
});

/** Runs one ts example with `scope` as its free names; returns what it printed with console.log. */
function run(source: string, scope: Record<string, unknown>): Promise<unknown[][]> {
  return runExample(source, scope);
}

/** A message example of the page as an object, with the test server's address in place of the page's. */
function messageExample(index: number): Record<string, unknown> {
  const example = new Function('DatabaseQueryError', `return (${messageExamples[index]!})`)(DatabaseQueryError) as Record<
    string,
    unknown
  >;
  expect(example).toMatchObject({ serverAddress: '127.0.0.1', serverPort: 5432, database: 'postgres' });
  return {
    ...example,
    ...server,
    ...(example.error === DatabaseQueryError ? { error: expect.any(DatabaseQueryError) } : {}),
  };
}

/** The message of the query channel's `asyncEnd` (and `error`) events of one call, copied at the time. */
async function queryMessages(call: () => Promise<unknown>): Promise<{ asyncEnd: unknown[]; error: unknown[] }> {
  const seen = { asyncEnd: [] as unknown[], error: [] as unknown[] };
  const channel = diagnosticsChannel.tracingChannel(CHANNEL_NAMES.query);
  const ignore = () => undefined;
  const handlers = {
    start: ignore,
    end: ignore,
    asyncStart: ignore,
    asyncEnd: (message: object) => void seen.asyncEnd.push({ ...message }),
    error: (message: object) => void seen.error.push({ ...message }),
  };
  channel.subscribe(handlers);
  try {
    await call().catch(() => undefined);
  } finally {
    channel.unsubscribe(handlers);
  }
  return seen;
}

describe('docs/observability.md examples', () => {
  it('has the examples this test expects', () => {
    expect(tsExamples).toHaveLength(2);
    expect(messageExamples).toHaveLength(2);
  });

  it('the subscriber example prints each statement with its row count, error code and duration', async () => {
    const db = openDatabase({ min: 0, max: 1 });
    databases.push(db);
    await db.executeQuery('SELECT 1'); // connected before anyone listens
    // The subscriber keeps the console it was given: what it prints later lands in `printed`.
    const printed = await run(tsExamples[0]!, { diagnosticsChannel: trackedChannels });
    await db.executeQuery('SELECT 1');
    await db.executeQuery('SELECT 1/0').catch(() => undefined);
    expect(printed).toEqual([
      ['SELECT 1', 1, undefined, expect.any(Number), 'ms'],
      ['SELECT 1/0', undefined, 'QUERY_FAILED', expect.any(Number), 'ms'],
    ]);
  });
});

describe('the message examples', () => {
  it('a statement that succeeds is published as the first example shows', async () => {
    const db = openDatabase({ min: 0, max: 1 });
    databases.push(db);
    await db.executeQuery('SELECT 1');
    const seen = await queryMessages(() => db.executeQuery('SELECT $1::text AS value, 2 AS two', ['...']));
    expect(seen.asyncEnd).toEqual([messageExample(0)]);
  });

  it('a statement the server rejects is published as the second example shows, at error and asyncEnd', async () => {
    const db = openDatabase({ min: 0, max: 1 });
    databases.push(db);
    await db.executeQuery('SELECT 1');
    const seen = await queryMessages(() => db.executeQuery('SELECT $1::int', ['abc']));
    expect(seen.error).toEqual([messageExample(1)]);
    expect(seen.asyncEnd).toEqual([messageExample(1)]);
  });
});

describe('the instrument() example', () => {
  const exporter = new InMemorySpanExporter();
  afterAll(() => {
    trace.disable();
    context.disable();
  });

  it('makes a CLIENT span for the statement through the global tracer provider, and nothing is subscribed after', async () => {
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
    await run(tsExamples[1]!, { Database: TestDatabase, instrument });
    const spans = exporter.getFinishedSpans();
    expect(spans.map((span) => [span.name, span.attributes['db.query.text']])).toEqual([
      [`SELECT ${server.database}`, 'SELECT 1'],
    ]);
    for (const name of ['query', 'transaction', 'acquire', 'connect'] as const)
      expect(diagnosticsChannel.tracingChannel(CHANNEL_NAMES[name]).hasSubscribers, name).toBe(false);
  });
});
