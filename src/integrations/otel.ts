import {
  context,
  metrics,
  SpanKind,
  SpanStatusCode,
  trace,
  ValueType,
  type Attributes,
  type Context,
  type Meter,
  type MeterProvider,
  type Span,
  type Tracer,
  type TracerProvider,
} from '@opentelemetry/api';
import diagnosticsChannel from 'node:diagnostics_channel';
import pg from 'pg';
import type { Database } from '../database.js';
import {
  acquireChannel,
  CHANNEL_NAMES,
  connectChannel,
  queryChannel,
  transactionChannel,
  type AcquireMessage,
  type ConnectMessage,
  type OutcomeFields,
  type QueryMessage,
  type ReleaseMessage,
  type ServerFields,
  type TransactionMessage,
} from '../tracing-channels.js';

/** Options of {@link instrument}. */
export interface InstrumentOptions {
  /** Where spans go; the global tracer provider by default. */
  tracerProvider?: TracerProvider;
  /** Where metrics go; the global meter provider by default. */
  meterProvider?: MeterProvider;
  /**
   * A span per statement. `auto` (the default): unless `@opentelemetry/instrumentation-pg` is active,
   * which already makes one per statement (so there is never a second).
   */
  querySpans?: boolean | 'auto';
}

/** What {@link instrument} returns: `uninstrument()` unsubscribes and stops the metric callbacks. */
export interface Instrumentation {
  uninstrument(): void;
}

const SCOPE = '@codecheck/db';
const DB_SYSTEM = 'postgresql';
/** The first keyword of a statement, as `db.operation.name` (after leading comments and parentheses). */
const OPERATION = /^(?:\s|--[^\n]*\n|\/\*[\s\S]*?\*\/|\()*([A-Za-z]+)/;

/** `db.client.connection.pool.name`: the semantic conventions' suggested `address:port/database`. */
function poolNameOf(server: ServerFields): string {
  return `${server.serverAddress}:${server.serverPort}/${server.database}`;
}

/** Whether `@opentelemetry/instrumentation-pg` has wrapped pg's `Client.prototype.query` (shimmer marks wrappers). */
function isPgInstrumented(): boolean {
  return (pg.Client.prototype.query as { __wrapped?: boolean }).__wrapped === true;
}

function serverAttributes(server: ServerFields): Attributes {
  return {
    'db.system.name': DB_SYSTEM,
    'db.namespace': server.database,
    'server.address': server.serverAddress,
    'server.port': server.serverPort,
  };
}

/** Ends `span` with the outcome the message carries. */
function endSpan(span: Span, message: OutcomeFields): void {
  if (message.error !== undefined) {
    const error = message.error as Error;
    const type = message.sqlState ?? message.errorCode ?? error?.name ?? 'Error';
    span.setAttribute('error.type', type);
    if (message.sqlState !== undefined) span.setAttribute('db.response.status_code', message.sqlState);
    span.recordException(error);
    span.setStatus({ code: SpanStatusCode.ERROR, message: error?.message });
  }
  span.end();
}

/** The process-wide channel subscriptions (spans and histograms): made by the first {@link instrument}, ended by the last. */
let shared: { users: number; undo: () => void } | undefined;

/**
 * Sends the library's telemetry to OpenTelemetry (docs/observability.md): spans from the
 * `diagnostics_channel` tracing channels following the database semantic conventions (a `CLIENT`
 * span per statement, an `INTERNAL` span per `withDb`/`executeTransaction` that is the active span
 * inside its callback), and the conventions' nine connection-pool metrics.
 *
 * The channels are process-wide: spans and the three duration histograms cover every Database of the
 * process and are set up once, by the first call (with its providers and `querySpans`); the pool
 * gauges and the timeout counter are `db`'s. `@opentelemetry/api` is an optional peer dependency that
 * only this subpath loads.
 */
export function instrument(db: Database, options: InstrumentOptions = {}): Instrumentation {
  const meter = (options.meterProvider ?? metrics.getMeterProvider()).getMeter(SCOPE);
  if (!shared) {
    const tracer = (options.tracerProvider ?? trace.getTracerProvider()).getTracer(SCOPE);
    shared = { users: 0, undo: subscribeChannels(tracer, meter, options.querySpans ?? 'auto') };
  }
  shared.users++;
  const stopObserving = observePools(db, meter);
  let isActive = true;
  return {
    uninstrument() {
      if (!isActive) return;
      isActive = false;
      stopObserving();
      if (shared && --shared.users === 0) {
        shared.undo();
        shared = undefined;
      }
    },
  };
}

/** Spans and duration histograms from the tracing channels; returns how to unsubscribe. */
function subscribeChannels(tracer: Tracer, meter: Meter, querySpans: boolean | 'auto'): () => void {
  const wantsQuerySpans = () => (querySpans === 'auto' ? !isPgInstrumented() : querySpans);
  const undo: (() => void)[] = [];
  // Spans. The transaction span is made in a store transform, so the callback runs with it active.
  const spans = new WeakMap<object, Span>();
  const transactionStore = {
    run<T>(active: Context, next: () => T): T {
      return context.with(active, next);
    },
  };
  const startTransaction = (message: TransactionMessage): Context => {
    const span = tracer.startSpan(
      `transaction ${message.database}`,
      {
        kind: SpanKind.INTERNAL,
        attributes: {
          ...serverAttributes(message),
          'db.operation.name': 'transaction',
          'codecheck.db.read_only': message.readOnly,
        },
      },
      context.active(),
    );
    spans.set(message, span);
    return trace.setSpan(context.active(), span);
  };
  transactionChannel.start.bindStore(transactionStore as never, startTransaction as never);
  undo.push(() => transactionChannel.start.unbindStore(transactionStore as never));
  const endTransaction = (message: TransactionMessage) => {
    const span = spans.get(message);
    if (!span) return;
    span.setAttributes({
      ...serverAttributes(message),
      ...(message.isolationLevel ? { 'codecheck.db.isolation_level': message.isolationLevel } : {}),
    });
    endSpan(span, message);
  };
  subscribe(transactionChannel, { asyncEnd: endTransaction }, undo);

  const startQuery = (message: QueryMessage) => {
    if (!wantsQuerySpans()) return;
    const operation = OPERATION.exec(message.text)?.[1]?.toUpperCase();
    const parentSpan = message.transaction ? spans.get(message.transaction) : undefined;
    const parent = parentSpan ? trace.setSpan(context.active(), parentSpan) : context.active();
    const span = tracer.startSpan(
      operation ? `${operation} ${message.database}` : message.database,
      {
        kind: SpanKind.CLIENT,
        attributes: {
          ...serverAttributes(message),
          'db.query.text': message.text,
          ...(operation ? { 'db.operation.name': operation } : {}),
        },
      },
      parent,
    );
    spans.set(message, span);
  };
  const endQuery = (message: QueryMessage) => {
    const span = spans.get(message);
    if (!span) return;
    if (message.rowCount !== undefined) span.setAttribute('db.response.returned_rows', message.rowCount);
    endSpan(span, message);
  };
  subscribe(queryChannel, { start: startQuery, asyncEnd: endQuery }, undo);

  // Histograms, from the timing of the channels' events.
  const createTime = meter.createHistogram('db.client.connection.create_time', {
    description: 'The time it took to create a new connection.',
    unit: 's',
  });
  const waitTime = meter.createHistogram('db.client.connection.wait_time', {
    description: 'The time it took to obtain an open connection from the pool.',
    unit: 's',
  });
  const useTime = meter.createHistogram('db.client.connection.use_time', {
    description: 'The time between borrowing a connection and returning it to the pool.',
    unit: 's',
  });
  const startedAt = new WeakMap<object, number>();
  const markStart = (message: object) => startedAt.set(message, performance.now());
  const recordSince = (histogram: typeof createTime) => (message: ServerFields & object) => {
    const start = startedAt.get(message);
    if (start === undefined) return;
    histogram.record((performance.now() - start) / 1000, { 'db.client.connection.pool.name': poolNameOf(message) });
  };
  subscribe(connectChannel, { start: markStart, asyncEnd: recordSince(createTime) as (m: ConnectMessage) => void }, undo);
  subscribe(acquireChannel, { start: markStart, asyncEnd: recordSince(waitTime) as (m: AcquireMessage) => void }, undo);
  const onRelease = (message: unknown) => {
    const release = message as ReleaseMessage;
    useTime.record(release.useMillis / 1000, { 'db.client.connection.pool.name': poolNameOf(release) });
  };
  diagnosticsChannel.subscribe(CHANNEL_NAMES.release, onRelease);
  undo.push(() => diagnosticsChannel.unsubscribe(CHANNEL_NAMES.release, onRelease));

  return () => {
    for (const step of undo.reverse()) step();
  };
}

/** `db`'s pool gauges and timeout counter, read from getStats() when the SDK collects; returns how to stop. */
function observePools(db: Database, meter: Meter): () => void {
  // Gauges and the timeout counter, read from getStats() when the SDK collects.
  const config = db.config;
  const targets = new Map([config, ...config.replicas].map((target) => [target.name, target]));
  // The server the node's connections go to now (with a host list, the current host), as the
  // channels' messages name it, so gauges and histograms of one pool carry the same name.
  const poolNameOfNode = (node: { name: string; currentHost: string | null }): string => {
    const target = targets.get(node.name);
    if (!target) return node.name;
    return node.currentHost === null
      ? `${target.host}:${target.port}/${target.database}`
      : `${node.currentHost}/${target.database}`;
  };
  const gauge = (name: string, description: string, unit: string) =>
    meter.createObservableUpDownCounter(name, { description, unit, valueType: ValueType.INT });
  const count = gauge(
    'db.client.connection.count',
    'The number of connections that are currently in the state described by the state attribute.',
    '{connection}',
  );
  const idleMax = gauge('db.client.connection.idle.max', 'The maximum number of idle open connections allowed.', '{connection}');
  const idleMin = gauge('db.client.connection.idle.min', 'The minimum number of idle open connections allowed.', '{connection}');
  const max = gauge('db.client.connection.max', 'The maximum number of open connections allowed.', '{connection}');
  const pending = gauge(
    'db.client.connection.pending_requests',
    'The number of current pending requests for an open connection.',
    '{request}',
  );
  const timeouts = meter.createObservableCounter('db.client.connection.timeouts', {
    description: 'The number of connection timeouts that have occurred trying to obtain a connection from the pool.',
    unit: '{timeout}',
    valueType: ValueType.INT,
  });
  const observe: Parameters<typeof meter.addBatchObservableCallback>[0] = (result) => {
    for (const node of db.getStats().nodes) {
      const attributes = { 'db.client.connection.pool.name': poolNameOfNode(node) };
      result.observe(count, node.availableConnections, { ...attributes, 'db.client.connection.state': 'idle' });
      result.observe(count, node.activeConnections, { ...attributes, 'db.client.connection.state': 'used' });
      result.observe(idleMax, node.maxConnections, attributes);
      result.observe(idleMin, node.minConnections, attributes);
      result.observe(max, node.maxConnections, attributes);
      result.observe(pending, node.waitingRequests, attributes);
      result.observe(timeouts, node.acquireTimeouts, attributes);
    }
  };
  const observables = [count, idleMax, idleMin, max, pending, timeouts];
  meter.addBatchObservableCallback(observe, observables);
  return () => meter.removeBatchObservableCallback(observe, observables);
}

/** Subscribes `handlers` to a tracing channel and records how to unsubscribe. */
function subscribe<M extends object>(
  channel: diagnosticsChannel.TracingChannel<unknown, M>,
  handlers: { start?: (message: M) => void; asyncEnd?: (message: M) => void },
  undo: (() => void)[],
): void {
  const subscribers = handlers as diagnosticsChannel.TracingChannelSubscribers<M>;
  channel.subscribe(subscribers);
  undo.push(() => channel.unsubscribe(subscribers));
}
