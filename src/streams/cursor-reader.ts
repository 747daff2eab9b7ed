import type pg from 'pg';
import Cursor from 'pg-cursor';
import { DatabaseQueryError, type DbError } from '../errors.js';
import { leaseQuery, statementAnswered, statementSent, type Lease } from '../pool/lease.js';
import { startTimer } from '../timers.js';
import type { QueryContext } from '../query-context.js';
import { isCopyStatement } from './copy-statement.js';
import type { OpenStreams, Submittable } from './open-streams.js';

/** The transaction a cursor, stream or COPY runs in: its connection, call state and open streams. */
export interface StreamHost {
  readonly lease: Lease;
  readonly context: QueryContext;
  readonly streams: OpenStreams;
  /** pg's error as one of ours, without `values` in its message (query-client's toDbError; passed in so this file does not import it). */
  mapError(error: unknown, values?: readonly unknown[]): Error;
}

/** Rows in batches: what a {@link RowStream} reads from. */
export interface BatchSource<R> {
  /** The next batch; an empty array once every row was read. */
  read(): Promise<R[]>;
  /** Stops early: closes the cursor (after a batch in flight) so the connection is free. Idempotent, never rejects. */
  close(): Promise<void>;
  /**
   * Calls `listener` once if the stream is cancelled (signal, timeout) or gives up (idle timeout):
   * rows the consumer holds must not be handed out any more; the next `read()` rejects.
   */
  onHalt(listener: () => void): void;
}

/** Rows fetched per round trip unless the caller says otherwise (pg-query-stream's default). */
export const DEFAULT_BATCH_SIZE = 100;

/** @throws {TypeError} unless `batchSize` is an integer from 1 to 1,000,000 (or undefined). */
export function checkBatchSize(batchSize: unknown): number {
  if (batchSize === undefined) return DEFAULT_BATCH_SIZE;
  if (typeof batchSize !== 'number' || !Number.isInteger(batchSize) || batchSize < 1 || batchSize > 1_000_000)
    throw new TypeError('batchSize must be an integer from 1 to 1000000');
  return batchSize;
}

/**
 * Checks a row stream's statement and parameters before anything is sent.
 * @throws {TypeError} unless `text` is non-blank SQL text that is not a COPY (a cursor reads rows, not
 * COPY data: `copyTo` is for that) and `params` is undefined or an array of at most 65535 values.
 */
export function checkStreamStatement(text: unknown, params: unknown): void {
  if (typeof text !== 'string' || text.trim() === '') throw new TypeError('stream needs SQL text as its first argument');
  if (isCopyStatement(text))
    throw new TypeError('stream cannot run a COPY statement (a cursor reads rows, not COPY data): use copyTo / client.copyTo');
  if (params !== undefined && !Array.isArray(params))
    throw new TypeError('stream params must be an array (bound as $1, $2, ...)');
  if (params !== undefined && params.length > 65_535)
    throw new TypeError(`A statement takes at most 65535 parameters (got ${params.length})`);
}

/** What a stream's cursor may do besides reading. */
export interface CursorOptions {
  /** Called when the cursor gave up on its own (the consumer idled too long, a batch timed out). */
  onFailure?: (error: DbError) => void;
}

/**
 * Opens a pg-cursor for `text` on the lease and reads it `batchSize` rows per round trip, always one
 * batch ahead of the consumer (as pg-query-stream does), so at most two batches are in memory. The
 * statement counts once in `queriesExecuted`; its `queryTime` runs until the cursor is finished.
 *
 * Timeouts. A portal read in batches never reaches ReadyForQuery until it is done, so the server
 * would run statement_timeout over the whole stream (consumer time included) and never apply
 * idle_in_transaction_session_timeout. So, for the cursor's life, the transaction's
 * statement_timeout is set to 0 (restored after; one round trip each way) and both limits are
 * applied here instead: each batch must arrive within statement_timeout (else it is cancelled on
 * the server: `QUERY_FAILED`, SQLSTATE 57014), and the consumer must ask for the next batch within
 * idle_in_transaction_session_timeout (else the cursor is closed: `STREAM_IDLE_TIMEOUT`).
 * @throws {TypeError} for malformed text or params, or a COPY statement ({@link checkStreamStatement}).
 */
export async function openCursor<R extends pg.QueryResultRow>(
  host: StreamHost,
  text: string,
  params: readonly unknown[] | undefined,
  batchSize: number,
  options: CursorOptions = {},
): Promise<BatchSource<R>> {
  checkStreamStatement(text, params);
  const { lease, context, streams } = host;
  if (context.cancelled) throw context.cancelled;
  const limits = await takeOverTimeouts(host);
  const cursor = new Cursor<R>(text, params as unknown[] | undefined);
  const startedAt = performance.now();
  context.counters.queriesExecuted++;
  let isFinished = false;
  let failure: unknown;
  let idleTimer: NodeJS.Timeout | undefined;
  // pg-cursor emits 'error' only while it is open, and nothing at all for an error after close():
  // pg's own hand-over (ReadyForQuery or an error, watched by OpenStreams) says when it is done.
  cursor.on('error', (error: unknown) => {
    failure ??= error;
  });
  const close = async () => {
    clearTimeout(idleTimer);
    // A lost connection never answers the Close: pg's error hand-over ends the wait instead.
    if (!isFinished) await Promise.race([cursor.close().catch(() => undefined), finished]);
    await restored;
  };
  const ended = streams.watch(cursor as unknown as Submittable, close);
  const finished = ended.then(() => {
    isFinished = true;
    clearTimeout(idleTimer);
    context.queryTime.record(performance.now() - startedAt);
  });
  // The transaction's statement_timeout comes back once the cursor is done (before anything else runs on it).
  const restored = finished.then(() => limits.restore());
  streams.followUp(restored);

  let ahead: Promise<R[]> | undefined;
  let isExhausted = false;
  let gaveUp: DbError | undefined;
  let haltListener: (() => void) | undefined;
  const halt = () => {
    clearTimeout(idleTimer);
    haltListener?.();
    haltListener = undefined;
  };
  const giveUp = (error: DbError) => {
    gaveUp ??= error;
    halt();
    void close();
    options.onFailure?.(error);
  };
  // The call's signal or timeout: whatever the consumer still holds is not handed out, and the idle
  // limit no longer applies (the cancellation is the answer).
  context.signal?.addEventListener('abort', halt, { once: true });
  void finished.then(() => context.signal?.removeEventListener('abort', halt));
  // pg-cursor never answers a read in flight when an error (a cancel, a lost connection) arrives
  // after close() was called: pg's error hand-over fails it instead (one read is in flight at a time).
  let failInFlight: ((error: unknown) => void) | undefined;
  let endError: unknown;
  void ended.then((end) => {
    if (end.error === undefined) return;
    endError = end.error;
    failInFlight?.(end.error);
  });
  const fetch = (): Promise<R[]> => {
    if (isExhausted) return Promise.resolve([]);
    // pg ended the cursor before its last row was read (the connection was lost, or an error came
    // while the consumer was busy with a batch): that failure is the answer, never an end of the rows.
    const lost = failure ?? endError;
    if (lost !== undefined) return Promise.reject(host.mapError(lost, params));
    if (isFinished) return Promise.resolve([]);
    statementSent(lease, false, performance.now());
    let hasTimedOut = false;
    const batchTimer =
      limits.statementMillis > 0
        ? startTimer(
            limits.statementMillis,
            () => {
              hasTimedOut = true;
              void lease.owner.cancel(lease);
            },
            'unref',
          )
        : undefined;
    const read = new Promise<R[]>((resolve, reject) => {
      failInFlight = reject;
      cursor.read(batchSize).then(resolve, reject);
    });
    return read.then(
      (rows) => {
        clearTimeout(batchTimer);
        statementAnswered(lease, false);
        // Fewer rows than asked for: the portal is complete and pg-cursor has closed it.
        if (rows.length < batchSize) isExhausted = true;
        return rows;
      },
      (error: unknown) => {
        clearTimeout(batchTimer);
        statementAnswered(lease, false);
        isExhausted = true;
        if (hasTimedOut && !context.cancelled)
          throw new DatabaseQueryError(
            `A batch of the stream did not arrive within statement_timeout (${limits.statementMillis} ms); it was cancelled on the server (SQLSTATE 57014)`,
            failure ?? error,
          );
        throw host.mapError(failure ?? error, params);
      },
    );
  };
  return {
    async read() {
      clearTimeout(idleTimer);
      if (context.cancelled) throw context.cancelled;
      if (gaveUp) throw gaveUp;
      const rows = await (ahead ?? fetch());
      ahead = rows.length > 0 && !isExhausted ? fetch() : undefined;
      // The prefetch may fail while the consumer is busy: the next read reports it.
      ahead?.catch(() => undefined);
      if (rows.length === 0) await close();
      else if (limits.idleMillis > 0 && !context.cancelled) {
        idleTimer = startTimer(
          limits.idleMillis,
          () =>
            giveUp(
              new DatabaseQueryError(
                `The stream was not read for idle_in_transaction_session_timeout (${limits.idleMillis} ms): its cursor was closed. Read faster, raise idleInTransactionTimeoutMillis (DB_IDLE_TIMEOUT), or set timeoutMillis on the call.`,
                undefined,
                'STREAM_IDLE_TIMEOUT',
              ),
            ),
          'unref',
        );
      }
      return rows;
    },
    close,
    onHalt(listener) {
      if (context.cancelled || gaveUp) listener();
      else haltListener = listener;
    },
  };
}

/** The transaction's own limits, taken over by the cursor, and how to give statement_timeout back. */
interface TakenTimeouts {
  readonly statementMillis: number;
  readonly idleMillis: number;
  restore(): Promise<void>;
}

/** One round trip: reads both timeouts and sets statement_timeout to 0 for the transaction (SET LOCAL). */
async function takeOverTimeouts(host: StreamHost): Promise<TakenTimeouts> {
  let row: { statement: string; idle: string };
  try {
    row = (
      await leaseQuery<{ statement: string; idle: string }>(
        host.lease,
        "SELECT current_setting('statement_timeout') AS statement, current_setting('idle_in_transaction_session_timeout') AS idle, set_config('statement_timeout', '0', true)",
      )
    ).rows[0]!;
  } catch (error) {
    throw host.mapError(error);
  }
  const statementMillis = settingMillis(row.statement);
  return {
    statementMillis,
    idleMillis: settingMillis(row.idle),
    restore: async () => {
      if (statementMillis === 0 || host.lease.isBroken) return;
      await leaseQuery(host.lease, "SELECT set_config('statement_timeout', $1, true)", [row.statement]).catch(() => undefined);
    },
  };
}

const UNIT_MILLIS: Record<string, number> = { ms: 1, s: 1000, min: 60_000, h: 3_600_000, d: 86_400_000 };

/** A duration setting as the server shows it (`30s`, `500ms`, `1min`, `0`) in milliseconds. */
function settingMillis(shown: string): number {
  const match = /^(\d+)\s*(ms|s|min|h|d)?$/.exec(shown.trim());
  return match ? Number(match[1]) * UNIT_MILLIS[match[2] ?? 'ms']! : 0;
}
