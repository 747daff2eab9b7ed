/**
 * What the library's own code costs per statement, without the network: pg.Pool's `query`, the
 * drop-in Pool's `query` and `Database.executeQuery`, each on warm connections, with pg's
 * `Client.prototype.query` answering on a microtask instead of the server. Everything above pg's
 * client (checkout, the call frame, release hygiene, stats) runs as it does in production; pg's
 * protocol work and the socket do not, so the difference between two rows is the wrapper's CPU per
 * statement, free of the scheduler and server noise that a round trip brings (docs/benchmarks.md).
 */
import pg from 'pg';
import { Database, Pool } from '../src/index.js';
import { median } from './measure.js';

/** One path's median time per statement at one concurrency, and its excess over pg.Pool's. */
export interface WrapperCost {
  readonly path: string;
  readonly concurrency: number;
  readonly nanosPerOp: number;
  readonly overRawNanos: number;
}

const ROUNDS = 9;
const OPS_PER_ROUND = 200_000;

/** A canned result for the stub, shaped as pg's (one row, one int4 column). */
const FIELDS = [{ name: '?column?', dataTypeID: 23 }];

type QueryFn = (this: pg.Client, ...args: unknown[]) => unknown;

/** Answers every callback-form `client.query` on a microtask, and the promise form at once. */
function stubbedQuery(this: pg.Client, config: unknown, values?: unknown, callback?: unknown): unknown {
  const result = { command: 'SELECT', rowCount: 1, rows: [{ '?column?': 1 }], fields: FIELDS, oid: null };
  const done =
    typeof values === 'function'
      ? values
      : typeof callback === 'function'
        ? callback
        : typeof (config as { callback?: unknown } | null)?.callback === 'function'
          ? (config as { callback: (...args: unknown[]) => void }).callback.bind(config)
          : undefined;
  if (!done) return Promise.resolve(result);
  queueMicrotask(() => (done as (error: null, result: unknown) => void)(null, result));
  return undefined;
}

async function closedLoop(op: () => Promise<unknown>, concurrency: number, count: number): Promise<number> {
  let left = count;
  const startedAt = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (left-- > 0) await op();
    }),
  );
  return Number(process.hrtime.bigint() - startedAt) / count;
}

export async function runWrapperCost(url: string): Promise<WrapperCost[]> {
  console.log('\nWrapper cost per statement (pg answers on a microtask, no round trip; median of 9 interleaved rounds):');
  const raw = new pg.Pool({ connectionString: url, max: 10 });
  raw.on('error', () => undefined);
  const pool = new Pool({ connectionString: url, sslMode: 'disable', max: 10, logLevel: 'error' });
  const db = new Database({ connectionString: url, sslMode: 'disable', max: 10, logLevel: 'error' });
  const paths: [string, () => Promise<unknown>][] = [
    ['pg.Pool query', () => raw.query('SELECT 1')],
    ['Pool query (drop-in)', () => pool.query('SELECT 1')],
    ['Database.executeQuery', () => db.executeQuery('SELECT 1')],
  ];
  const results: WrapperCost[] = [];
  // Real round trips first: every pool opens its connections, and the JIT sees the real path.
  for (const [, op] of paths) await closedLoop(op, 16, 20_000);
  const real = pg.Client.prototype.query as unknown as QueryFn;
  (pg.Client.prototype as unknown as { query: QueryFn }).query = stubbedQuery;
  try {
    for (const concurrency of [1, 16, 64]) {
      for (const [, op] of paths) await closedLoop(op, concurrency, OPS_PER_ROUND / 2);
      const perPath: number[][] = paths.map(() => []);
      for (let round = 0; round < ROUNDS; round++)
        for (let k = 0; k < paths.length; k++) {
          const i = (k + round) % paths.length;
          perPath[i]!.push(await closedLoop(paths[i]![1], concurrency, OPS_PER_ROUND));
        }
      const rawNanos = median(perPath[0]!);
      paths.forEach(([path], i) => {
        const nanosPerOp = Math.round(median(perPath[i]!));
        const cost = { path, concurrency, nanosPerOp, overRawNanos: Math.round(nanosPerOp - rawNanos) };
        results.push(cost);
        console.log(
          `  c=${String(concurrency).padEnd(3)} ${path.padEnd(24)} ${String(nanosPerOp).padStart(6)} ns/op` +
            (i === 0 ? '' : `  (+${cost.overRawNanos} ns over pg.Pool)`),
        );
      });
    }
  } finally {
    (pg.Client.prototype as unknown as { query: QueryFn }).query = real;
  }
  await Promise.all([raw.end(), pool.end(), db.shutdown({ timeoutMillis: 5000 })]);
  return results;
}
