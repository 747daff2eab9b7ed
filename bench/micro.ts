/**
 * In-process micro-benchmarks of the library's own hot path (no query round trip), and what a new
 * connection costs compared with a warm pooled checkout.
 */
import pg from 'pg';
import pino from 'pino';
import { loadConfig } from '../src/config.js';
import { Database } from '../src/database.js';
import { NodePool } from '../src/pool/node-pool.js';
import { StatementNames } from '../src/prepared-statements.js';
import { DurationRecorder } from '../src/stats.js';
import { median } from './measure.js';
import { runWrapperCost, type WrapperCost } from './wrapper-cost.js';

/** One micro-benchmark: median over batches of the time per operation. */
export interface MicroResult {
  readonly name: string;
  readonly nanosPerOp: number;
  readonly opsPerBatch: number;
  readonly batches: number;
}

/** Latency of one connection-cost measurement, ms. */
export interface LatencyResult {
  readonly name: string;
  readonly count: number;
  readonly p50Millis: number;
  readonly p99Millis: number;
  readonly meanMillis: number;
}

export interface MicroResults {
  readonly micro: MicroResult[];
  readonly connectionCost: LatencyResult[];
  /** The library's own CPU per statement over pg.Pool's, without the network (bench/wrapper-cost.ts). */
  readonly wrapperCost: WrapperCost[];
}

const BATCHES = 7;

async function timeBatches(name: string, opsPerBatch: number, body: (n: number) => Promise<void> | void): Promise<MicroResult> {
  await body(Math.min(opsPerBatch, 10_000)); // warm up the JIT
  const perOp: number[] = [];
  for (let b = 0; b < BATCHES; b++) {
    const startedAt = process.hrtime.bigint();
    await body(opsPerBatch);
    perOp.push(Number(process.hrtime.bigint() - startedAt) / opsPerBatch);
  }
  const result = { name, nanosPerOp: Math.round(median(perOp) * 10) / 10, opsPerBatch, batches: BATCHES };
  console.log(`  ${name.padEnd(58)} ${result.nanosPerOp.toFixed(1).padStart(10)} ns/op`);
  return result;
}

async function timeLatency(name: string, count: number, body: () => Promise<void>): Promise<LatencyResult> {
  const samples: number[] = [];
  for (let i = 0; i < count; i++) {
    const startedAt = performance.now();
    await body();
    samples.push(performance.now() - startedAt);
  }
  samples.sort((a, b) => a - b);
  const at = (q: number) => Math.round(samples[Math.min(samples.length - 1, Math.ceil(q * samples.length) - 1)]! * 1000) / 1000;
  const result = {
    name,
    count,
    p50Millis: at(0.5),
    p99Millis: at(0.99),
    meanMillis: Math.round((samples.reduce((a, b) => a + b, 0) / count) * 1000) / 1000,
  };
  console.log(
    `  ${name.padEnd(58)} p50 ${result.p50Millis.toFixed(3)} ms  p99 ${result.p99Millis.toFixed(3)} ms  mean ${result.meanMillis.toFixed(3)} ms`,
  );
  return result;
}

export async function runMicro(url: string): Promise<MicroResults> {
  console.log('\nMicro-benchmarks (in-process, median of 7 batches):');
  const micro: MicroResult[] = [];
  const config = loadConfig({}, { connectionString: url, sslMode: 'disable', max: 10, min: 1 });
  const log = pino({ level: 'silent' });

  const recorder = new DurationRecorder();
  micro.push(
    await timeBatches('DurationRecorder.record (stats, one sample)', 5_000_000, (n) => {
      for (let i = 0; i < n; i++) recorder.record((i % 977) * 0.013);
    }),
  );
  micro.push(
    await timeBatches('DurationRecorder.snapshot (percentiles of 1024 samples)', 20_000, (n) => {
      for (let i = 0; i < n; i++) recorder.snapshot();
    }),
  );
  const names = new StatementNames(100);
  const texts = Array.from({ length: 20 }, (_, i) => `SELECT id, name FROM items WHERE id = $1 AND kind = ${i}`);
  micro.push(
    await timeBatches('StatementNames.nameFor (prepared-statement lookup)', 2_000_000, (n) => {
      for (let i = 0; i < n; i++) names.nameFor(texts[i % 20]!);
    }),
  );
  const env = {
    DATABASE_URL: url,
    DB_POOL_MAX: '20',
    DB_POOL_MIN: '2',
    DB_TIMEOUT: '10',
    DB_STATEMENT_TIMEOUT: '5000',
    DB_APPLICATION_NAME: 'bench',
  };
  micro.push(
    await timeBatches('loadConfig (DATABASE_URL + 5 DB_* variables)', 20_000, (n) => {
      for (let i = 0; i < n; i++) loadConfig(env);
    }),
  );

  const node = new NodePool(config, 'primary', config, log, new DurationRecorder());
  await node.release(await node.acquire({ deadline: Date.now() + 10_000 }));
  micro.push(
    await timeBatches('NodePool acquire + release (warm, no round trip)', 200_000, async (n) => {
      for (let i = 0; i < n; i++) await node.release(await node.acquire({ deadline: Date.now() + 10_000 }));
    }),
  );
  const pool = new pg.Pool({ connectionString: url, max: 10 });
  (await pool.connect()).release();
  micro.push(
    await timeBatches('pg.Pool connect + release (warm, no round trip)', 200_000, async (n) => {
      for (let i = 0; i < n; i++) (await pool.connect()).release();
    }),
  );

  // The call frame of Database (scope, acquire, work, release) around one round trip each.
  const db = new Database({ connectionString: url, sslMode: 'disable', max: 10, min: 1, logger: log });
  await db.executeQuery('SELECT 1');
  micro.push(
    await timeBatches('Database.executeQuery SELECT 1 (one round trip)', 10_000, async (n) => {
      for (let i = 0; i < n; i++) await db.executeQuery('SELECT 1');
    }),
  );
  micro.push(
    await timeBatches('Database.executeQuery SELECT 1 with timeoutMillis', 10_000, async (n) => {
      for (let i = 0; i < n; i++) await db.executeQuery('SELECT 1', [], { timeoutMillis: 5000 });
    }),
  );
  micro.push(
    await timeBatches('Database.withDb(true) SELECT 1 (BEGIN, SELECT, COMMIT)', 3_000, async (n) => {
      for (let i = 0; i < n; i++) await db.withDb(true, (client) => client.query('SELECT 1'));
    }),
  );
  await db.shutdown();

  console.log('\nConnection cost (sequential, loopback TCP, SCRAM-SHA-256):');
  const connectionCost: LatencyResult[] = [];
  connectionCost.push(
    await timeLatency('new pg.Client: connect + end', 200, async () => {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      await client.end();
    }),
  );
  connectionCost.push(
    await timeLatency('new pg.Client: connect + SELECT 1 + end', 200, async () => {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      await client.query('SELECT 1');
      await client.end();
    }),
  );
  connectionCost.push(
    await timeLatency('NodePool warm checkout + release', 20_000, async () => {
      await node.release(await node.acquire({ deadline: Date.now() + 10_000 }));
    }),
  );
  connectionCost.push(
    await timeLatency('pooled SELECT 1 (NodePool checkout + query + release)', 2000, async () => {
      const lease = await node.acquire({ deadline: Date.now() + 10_000 });
      await lease.client.query('SELECT 1');
      await node.release(lease);
    }),
  );
  // A bare NodePool's close waits only on unref'd timers and sockets (its pool lets an idle process
  // exit), and nothing else holds this process now: without a hold it would exit before the close
  // resolves, and the results would never be written (exit code 13, unsettled top-level await).
  const hold = setInterval(() => undefined, 1000);
  try {
    await node.close(Date.now() + 5000);
    await pool.end();
  } finally {
    clearInterval(hold);
  }
  const wrapperCost = await runWrapperCost(url);
  return { micro, connectionCost, wrapperCost };
}
