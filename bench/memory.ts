/**
 * `npm run bench -- --memory`: a million queries through one Database keep heap and RSS flat.
 * Point selects through `executeQuery` at concurrency 16, with a `withDb` write every 100th
 * operation; heap (after a forced GC when `--expose-gc` is on) and RSS are sampled on the way.
 */
import { writeFileSync } from 'node:fs';
import { Database } from '../src/index.js';
import { ITEM_COUNT, Random, SQL, seed } from './workloads.js';

interface MemorySample {
  queries: number;
  heapUsedMiB: number;
  rssMiB: number;
  elapsedSeconds: number;
}

const CONCURRENCY = 16;
const CHECKPOINTS = [10_000, 50_000, 100_000, 250_000, 500_000, 750_000, 1_000_000];

function sample(queries: number, startedAt: number): MemorySample {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const usage = process.memoryUsage();
  const mib = (bytes: number) => Math.round((bytes / 2 ** 20) * 10) / 10;
  return {
    queries,
    heapUsedMiB: mib(usage.heapUsed),
    rssMiB: mib(usage.rss),
    elapsedSeconds: Math.round((performance.now() - startedAt) / 100) / 10,
  };
}

export async function runMemory(url: string, total: number, outPath?: string): Promise<MemorySample[]> {
  if (!(globalThis as { gc?: unknown }).gc)
    console.warn('memory: run node with --expose-gc for stable heap figures (npm run bench does)');
  await seed(url);
  const db = new Database({ connectionString: url, sslMode: 'disable', max: 10, logLevel: 'warn' });
  await db.ready({ timeoutMillis: 10_000 });
  const checkpoints = [...CHECKPOINTS.filter((c) => c < total), total];
  const samples: MemorySample[] = [];
  const startedAt = performance.now();
  let issued = 0;
  let completed = 0;
  let nextCheckpoint = 0;
  let paused: Promise<void> | undefined;
  let resume: (() => void) | undefined;
  async function worker(index: number): Promise<void> {
    const random = new Random(index + 1);
    while (issued < total) {
      if (paused) await paused;
      const n = ++issued;
      const id = random.int(ITEM_COUNT);
      if (n % 100 === 0) {
        await db.withDb(false, async (client) => {
          await client.query(SQL.updateItem, [id]);
        });
      } else {
        await db.executeQuery(SQL.point, [id]);
      }
      completed++;
      if (completed === checkpoints[nextCheckpoint]) {
        nextCheckpoint++;
        // Hold the other workers while sampling, so the sample sees a quiet heap.
        paused = new Promise((resolve) => (resume = resolve));
        await new Promise((resolve) => setTimeout(resolve, 50));
        const s = sample(completed, startedAt);
        samples.push(s);
        console.log(
          `  after ${s.queries.toLocaleString('en-US').padStart(9)} operations: heapUsed ${s.heapUsedMiB.toFixed(1)} MiB, RSS ${s.rssMiB.toFixed(1)} MiB (${s.elapsedSeconds} s)`,
        );
        paused = undefined;
        resume?.();
      }
    }
  }
  console.log(`memory: ${total.toLocaleString('en-US')} operations at concurrency ${CONCURRENCY} (1% withDb writes)`);
  await Promise.all(Array.from({ length: CONCURRENCY }, (_, i) => worker(i)));
  const stats = db.getStats();
  console.log(
    `  stats: queriesExecuted ${stats.queriesExecuted}, transactionsExecuted ${stats.transactionsExecuted}, errors ${stats.errors}, totalConnections ${stats.totalConnections}`,
  );
  await db.shutdown();
  const first = samples[0]!;
  const last = samples[samples.length - 1]!;
  console.log(
    `  heap ${first.heapUsedMiB} → ${last.heapUsedMiB} MiB, RSS ${first.rssMiB} → ${last.rssMiB} MiB from ${first.queries.toLocaleString('en-US')} to ${last.queries.toLocaleString('en-US')} operations`,
  );
  if (outPath)
    writeFileSync(
      outPath,
      `${JSON.stringify({ samples, stats: { queriesExecuted: stats.queriesExecuted, transactionsExecuted: stats.transactionsExecuted, errors: stats.errors } }, null, 2)}\n`,
    );
  return samples;
}
