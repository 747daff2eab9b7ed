/**
 * `npm run bench -- --telemetry`: what the library's telemetry costs per operation (docs/benchmarks.md,
 * "Telemetry"). Two passes, each with its modes interleaved round by round so load on the machine hits
 * them alike:
 *
 * 1. before anything of OpenTelemetry is loaded:
 *    - `none`: nobody subscribes to the tracing channels (the default state: the hot path);
 *    - `subscribed`: a no-op subscriber on every channel (the library builds and publishes messages);
 * 2. with the OpenTelemetry SDK's AsyncLocalStorage context manager enabled, as in an application that
 *    runs OpenTelemetry (it makes every promise of the process dearer, so it gets its own baseline):
 *    - `sdk-only`: the SDK set up, `instrument()` not called;
 *    - `otel`: `instrument()` from `@codecheck/db/otel` (spans to an in-memory exporter, metrics to a reader).
 *
 * Each is measured on `executeQuery('SELECT 1')` (one round trip) and on a `withDb` of two
 * statements (BEGIN, two statements, COMMIT), as wall time and as this process's CPU time per
 * operation. The OTel modules are loaded at run time, so this file also runs on a tree without them
 * (pass 1 only), for a before/after comparison of the no-subscriber path.
 */
import diagnosticsChannel from 'node:diagnostics_channel';
import { Database } from '../src/database.js';
import { median } from './measure.js';

type Mode = 'none' | 'subscribed' | 'sdk-only' | 'otel';

/** One operation's figures: medians over rounds. */
export interface TelemetryResult {
  readonly mode: Mode;
  readonly operation: string;
  readonly wallMicrosPerOp: number;
  readonly cpuMicrosPerOp: number;
  readonly rounds: number;
  readonly opsPerRound: number;
}

const ROUNDS = 7;
const OPS_PER_ROUND = 2000;
const TRACING = ['codecheck-db:query', 'codecheck-db:transaction', 'codecheck-db:acquire', 'codecheck-db:connect'];

/** Sets a mode up; returns how to tear it down. */
type Setup = (db: Database) => Promise<() => void>;

const noop = (): void => undefined;

const subscribeAll: Setup = () => {
  const handlers = { start: noop, end: noop, asyncStart: noop, asyncEnd: noop, error: noop };
  for (const name of TRACING) diagnosticsChannel.tracingChannel(name).subscribe(handlers);
  diagnosticsChannel.subscribe('codecheck-db:release', noop);
  return Promise.resolve(() => {
    for (const name of TRACING) diagnosticsChannel.tracingChannel(name).unsubscribe(handlers);
    diagnosticsChannel.unsubscribe('codecheck-db:release', noop);
  });
};

/**
 * The OTel SDK and `instrument()`, loaded at run time (absent on a tree without the subpath): enables
 * the SDK's context manager and returns the setup of the `otel` mode.
 */
async function otelSetup(): Promise<Setup | undefined> {
  const otelPath = '../src/integrations/otel.js';
  try {
    const [{ instrument }, api, contextHooks, traceSdk, metricsSdk] = await Promise.all([
      import(otelPath) as Promise<{ instrument(db: Database, options: object): { uninstrument(): void } }>,
      import('@opentelemetry/api'),
      import('@opentelemetry/context-async-hooks'),
      import('@opentelemetry/sdk-trace-base'),
      import('@opentelemetry/sdk-metrics'),
    ]);
    api.context.setGlobalContextManager(new contextHooks.AsyncLocalStorageContextManager().enable());
    const exporter = new traceSdk.InMemorySpanExporter();
    const tracerProvider = new traceSdk.BasicTracerProvider({ spanProcessors: [new traceSdk.SimpleSpanProcessor(exporter)] });
    const reader = new metricsSdk.PeriodicExportingMetricReader({
      exporter: new metricsSdk.InMemoryMetricExporter(metricsSdk.AggregationTemporality.CUMULATIVE),
      exportIntervalMillis: 1000,
    });
    const meterProvider = new metricsSdk.MeterProvider({ readers: [reader] });
    return (db) => {
      const instrumentation = instrument(db, { tracerProvider, meterProvider });
      // Spans pile up in the in-memory exporter: empty it now and then, outside the timed batches.
      const timer = setInterval(() => exporter.reset(), 200);
      return Promise.resolve(() => {
        clearInterval(timer);
        instrumentation.uninstrument();
        exporter.reset();
      });
    };
  } catch {
    return undefined;
  }
}

async function timeRound(count: number, operation: () => Promise<unknown>): Promise<{ wall: number; cpu: number }> {
  const cpuBefore = process.cpuUsage();
  const startedAt = process.hrtime.bigint();
  for (let i = 0; i < count; i++) await operation();
  const wallNanos = Number(process.hrtime.bigint() - startedAt);
  const cpu = process.cpuUsage(cpuBefore);
  return { wall: wallNanos / 1000 / count, cpu: (cpu.user + cpu.system) / count };
}

/**
 * What the no-subscriber check costs: `executeQuery` makes 3 (query, acquire, release), a `withDb`
 * of n statements n + 3; a new connection one more. Median over batches, ns per check.
 */
function timeSubscriberChecks(): number {
  const channels = TRACING.map((name) => diagnosticsChannel.tracingChannel(name));
  const release = diagnosticsChannel.channel('codecheck-db:release');
  const perCheck: number[] = [];
  let seen = 0;
  for (let batch = 0; batch < 8; batch++) {
    const startedAt = process.hrtime.bigint();
    for (let i = 0; i < 1_000_000; i++) {
      for (const channel of channels) if (channel.hasSubscribers) seen++;
      if (release.hasSubscribers) seen++;
    }
    if (batch > 0) perCheck.push(Number(process.hrtime.bigint() - startedAt) / 5_000_000);
  }
  if (seen !== 0) throw new Error('a channel has a subscriber during the no-subscriber measurement');
  return Math.round(median(perCheck) * 100) / 100;
}

const operationsOf = (db: Database): [string, () => Promise<unknown>][] => [
  ["executeQuery('SELECT 1')", () => db.executeQuery('SELECT 1')],
  [
    'withDb with two statements',
    () =>
      db.withDb(false, async (client) => {
        await client.query('SELECT 1');
        await client.query('SELECT 2');
      }),
  ],
];

/** One pass: every operation measured in every mode, modes interleaved round by round. */
async function runPass(db: Database, modes: [Mode, Setup][], results: TelemetryResult[]): Promise<void> {
  for (const [operationName, operation] of operationsOf(db)) {
    const samples = new Map<Mode, { wall: number[]; cpu: number[] }>(modes.map(([mode]) => [mode, { wall: [], cpu: [] }]));
    for (const [, setup] of modes) {
      const teardown = await setup(db);
      await timeRound(500, operation); // warm up every path
      teardown();
    }
    for (let round = 0; round < ROUNDS; round++) {
      // Rotate the order each round so no mode always runs first.
      for (let i = 0; i < modes.length; i++) {
        const [mode, setup] = modes[(round + i) % modes.length]!;
        const teardown = await setup(db);
        const figures = await timeRound(OPS_PER_ROUND, operation);
        teardown();
        samples.get(mode)!.wall.push(figures.wall);
        samples.get(mode)!.cpu.push(figures.cpu);
      }
    }
    for (const [mode] of modes) {
      const { wall, cpu } = samples.get(mode)!;
      const result = {
        mode,
        operation: operationName,
        wallMicrosPerOp: Math.round(median(wall) * 10) / 10,
        cpuMicrosPerOp: Math.round(median(cpu) * 10) / 10,
        rounds: ROUNDS,
        opsPerRound: OPS_PER_ROUND,
      };
      results.push(result);
      console.log(
        `  ${`${operationName}, ${mode}`.padEnd(52)} wall ${result.wallMicrosPerOp.toFixed(1).padStart(7)} µs/op   cpu ${result.cpuMicrosPerOp.toFixed(1).padStart(7)} µs/op`,
      );
    }
  }
}

export async function runTelemetry(url: string): Promise<TelemetryResult[]> {
  const checkNanos = timeSubscriberChecks();
  console.log(`\nNo-subscriber check (hasSubscribers of one channel): ${checkNanos} ns`);
  const db = new Database({ connectionString: url, sslMode: 'disable', min: 1, max: 2, logLevel: 'silent' });
  await db.ready();
  const results: TelemetryResult[] = [];
  const note = `median of ${ROUNDS} rounds of ${OPS_PER_ROUND} operations, modes interleaved`;
  console.log(`\nTelemetry cost, no OpenTelemetry loaded (sequential, ${note}):`);
  await runPass(
    db,
    [
      ['none', () => Promise.resolve(noop)],
      ['subscribed', subscribeAll],
    ],
    results,
  );
  const otel = await otelSetup();
  if (otel) {
    console.log(`\nTelemetry cost with the OpenTelemetry SDK's context manager enabled (sequential, ${note}):`);
    await runPass(
      db,
      [
        ['sdk-only', () => Promise.resolve(noop)],
        ['otel', otel],
      ],
      results,
    );
  }
  await db.shutdown();
  return results;
}
