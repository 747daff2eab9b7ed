/**
 * `npm run bench -- --streams [--rows 1000000] [--rounds 3]`: large results, COPY and notifications.
 *
 * - stream N generated rows: `db.stream` against raw pg.Client + pg-query-stream on one connection,
 *   at the same batch size, rounds interleaved; rows/s, the ratio, and peak heap growth;
 * - COPY FROM N rows: `db.copyFrom` against raw pg.Client + pg-copy-streams, and against batched
 *   multi-row INSERTs (1000 rows per statement, one transaction) through `withDb`;
 * - NOTIFY → handler latency through `db.notify` / `db.listen`, p50 and p99.
 *
 * Results go to bench/results/streams.json (docs/benchmarks.md, "Streams, COPY and notifications").
 */
import { writeFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import QueryStream from 'pg-query-stream';
import { Database } from '../src/index.js';
import { median } from './measure.js';

const STREAM_SQL = "SELECT g AS id, 'row number ' || g AS label, g * 2 AS twice FROM generate_series(1, $1::int) AS g";
const TABLE = 'bench_copy_items';
const INSERT_BATCH = 1000;
const NOTIFICATIONS = 2000;

interface Run {
  rowsPerSec: number;
  peakHeapMiB: number;
}

export interface StreamsResults {
  rows: number;
  rounds: number;
  stream: { batchSize: number; library: Run[]; raw: Run[]; ratio: number; libraryRowsPerSec: number; rawRowsPerSec: number }[];
  copyFrom: {
    library: number[];
    raw: number[];
    insert: number[];
    libraryRowsPerSec: number;
    rawRowsPerSec: number;
    insertRowsPerSec: number;
    ratioToRaw: number;
    ratioToInsert: number;
  };
  notify: { count: number; p50Millis: number; p99Millis: number; maxMillis: number };
}

const mib = (bytes: number) => Math.round((bytes / 2 ** 20) * 10) / 10;
const gc = () => (globalThis as { gc?: () => void }).gc?.();

/** Counts rows from an async iterable, sampling heap growth every 10,000 rows. */
async function consume(rows: AsyncIterable<unknown>, expected: number): Promise<Run> {
  gc();
  const baseline = process.memoryUsage().heapUsed;
  let peak = 0;
  let count = 0;
  const startedAt = performance.now();
  for await (const _row of rows) {
    if (++count % 10_000 === 0) peak = Math.max(peak, process.memoryUsage().heapUsed - baseline);
  }
  const seconds = (performance.now() - startedAt) / 1000;
  if (count !== expected) throw new Error(`expected ${expected} rows, got ${count}`);
  return { rowsPerSec: Math.round(count / seconds), peakHeapMiB: mib(peak) };
}

/** COPY text lines, 1000 per chunk (the same source for every variant). */
function* copyChunks(rows: number): Generator<string> {
  for (let start = 1; start <= rows; start += 1000) {
    let chunk = '';
    for (let id = start; id < Math.min(start + 1000, rows + 1); id++) chunk += `${id}\titem number ${id}\t${id * 2}\n`;
    yield chunk;
  }
}

async function timed(rows: number, work: () => Promise<unknown>): Promise<number> {
  const startedAt = performance.now();
  await work();
  return Math.round(rows / ((performance.now() - startedAt) / 1000));
}

export async function runStreams(url: string, rows: number, rounds: number, outPath?: string): Promise<StreamsResults> {
  const db = new Database({ connectionString: url, sslMode: 'disable', max: 4, logLevel: 'warn', statementTimeoutMillis: 0 });
  await db.ready({ timeoutMillis: 10_000 });
  const raw = new pg.Client({ connectionString: url });
  await raw.connect();
  await raw.query(`DROP TABLE IF EXISTS ${TABLE}`);
  await raw.query(`CREATE UNLOGGED TABLE ${TABLE} (id int, name text, twice int)`);

  const stream: StreamsResults['stream'] = [];
  for (const batchSize of [100, 1000]) {
    const library: Run[] = [];
    const rawRuns: Run[] = [];
    for (let round = 0; round < rounds; round++) {
      library.push(await consume(db.stream(STREAM_SQL, [rows], { batchSize }), rows));
      rawRuns.push(await consume(raw.query(new QueryStream(STREAM_SQL, [rows], { batchSize })), rows));
      console.log(
        `stream batchSize=${batchSize} round ${round + 1}: library ${library.at(-1)!.rowsPerSec} rows/s (peak heap +${library.at(-1)!.peakHeapMiB} MiB), raw ${rawRuns.at(-1)!.rowsPerSec} rows/s (+${rawRuns.at(-1)!.peakHeapMiB} MiB)`,
      );
    }
    const ratios = library.map((run, i) => run.rowsPerSec / rawRuns[i]!.rowsPerSec);
    stream.push({
      batchSize,
      library,
      raw: rawRuns,
      ratio: Math.round(median(ratios) * 1000) / 1000,
      libraryRowsPerSec: median(library.map((r) => r.rowsPerSec)),
      rawRowsPerSec: median(rawRuns.map((r) => r.rowsPerSec)),
    });
  }

  const copySql = `COPY ${TABLE} (id, name, twice) FROM STDIN`;
  const copy = { library: [] as number[], raw: [] as number[], insert: [] as number[] };
  for (let round = 0; round < rounds; round++) {
    await raw.query(`TRUNCATE ${TABLE}`);
    copy.library.push(await timed(rows, () => db.copyFrom(copySql, Readable.from(copyChunks(rows)))));
    await raw.query(`TRUNCATE ${TABLE}`);
    copy.raw.push(
      await timed(rows, async () => {
        await raw.query('BEGIN');
        await pipeline(Readable.from(copyChunks(rows)), raw.query(copyFrom(copySql)));
        await raw.query('COMMIT');
      }),
    );
    await raw.query(`TRUNCATE ${TABLE}`);
    copy.insert.push(await timed(rows, () => insertBatched(db, rows)));
    console.log(
      `copy from round ${round + 1}: library ${copy.library.at(-1)} rows/s, raw ${copy.raw.at(-1)} rows/s, batched INSERT ${copy.insert.at(-1)} rows/s`,
    );
  }
  const copyRatio = median(copy.library.map((value, i) => value / copy.raw[i]!));
  const insertRatio = median(copy.library.map((value, i) => value / copy.insert[i]!));

  const notify = await notificationLatency(db);
  console.log(`notify → handler: p50 ${notify.p50Millis} ms, p99 ${notify.p99Millis} ms over ${notify.count}`);

  await raw.query(`DROP TABLE IF EXISTS ${TABLE}`);
  await raw.end();
  await db.shutdown();
  const results: StreamsResults = {
    rows,
    rounds,
    stream,
    copyFrom: {
      ...copy,
      libraryRowsPerSec: median(copy.library),
      rawRowsPerSec: median(copy.raw),
      insertRowsPerSec: median(copy.insert),
      ratioToRaw: Math.round(copyRatio * 1000) / 1000,
      ratioToInsert: Math.round(insertRatio * 100) / 100,
    },
    notify,
  };
  if (outPath) writeFileSync(outPath, `${JSON.stringify(results, null, 2)}\n`);
  return results;
}

/** Multi-row INSERTs of 1000 rows each (3000 parameters), all in one transaction. */
async function insertBatched(db: Database, rows: number): Promise<void> {
  await db.withDb(false, async (client) => {
    for (let start = 1; start <= rows; start += INSERT_BATCH) {
      const count = Math.min(INSERT_BATCH, rows - start + 1);
      const values: unknown[] = [];
      const tuples: string[] = [];
      for (let i = 0; i < count; i++) {
        const id = start + i;
        values.push(id, `item number ${id}`, id * 2);
        tuples.push(`($${i * 3 + 1}, $${i * 3 + 2}, $${i * 3 + 3})`);
      }
      await client.query(`INSERT INTO ${TABLE} (id, name, twice) VALUES ${tuples.join(', ')}`, values);
    }
  });
}

/** Sends notifications one at a time; each carries its send time, the handler records the delay. */
async function notificationLatency(db: Database): Promise<StreamsResults['notify']> {
  const delays: number[] = [];
  let arrived: (() => void) | undefined;
  const subscription = await db.listen('bench_latency', (payload) => {
    delays.push(performance.now() - Number(payload));
    arrived?.();
  });
  for (let i = 0; i < NOTIFICATIONS; i++) {
    const received = new Promise<void>((resolve) => (arrived = resolve));
    await db.notify('bench_latency', String(performance.now()));
    await received;
  }
  await subscription.unlisten();
  const sorted = [...delays].sort((a, b) => a - b);
  const at = (q: number) => Math.round(sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]! * 1000) / 1000;
  return { count: sorted.length, p50Millis: at(0.5), p99Millis: at(0.99), maxMillis: at(1) };
}
