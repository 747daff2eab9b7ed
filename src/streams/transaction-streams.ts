import type pg from 'pg';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { checkOptionsObject, type CallOptions, type WithDbOptions } from '../call-options.js';
import type { StreamHost } from './cursor-reader.js';
import { sqlStateOf } from '../errors.js';
import { streamHostOf, type QueryClient } from '../query-client.js';
import { copyFromOn, copyToOn } from './copy.js';
import { checkBatchSize, checkStreamStatement, openCursor, type BatchSource } from './cursor-reader.js';
import { RowStream } from './row-stream.js';

/** Options of `db.stream`. */
export interface StreamOptions extends CallOptions {
  /** Rows fetched per round trip (at most two batches are held in memory). @default 100 */
  batchSize?: number;
  /** Read-only (server-enforced), and may be served by a replica. @default true */
  readOnly?: boolean;
}

/** Options of `db.copyFrom` and `db.copyTo`. */
export type CopyOptions = Pick<CallOptions, 'signal' | 'timeoutMillis'>;

/** `withDb` of the Database the helpers run on. */
export type RunInTransaction = <T>(options: WithDbOptions, fn: (client: QueryClient) => Promise<T>) => Promise<T>;

/**
 * `db.stream`: the rows of one statement through a cursor, in a transaction of its own (BEGIN READ
 * ONLY by default, so a replica may serve it), read lazily by the consumer. The transaction holds
 * its connection only while the stream is being read: the last row, an early exit from the loop,
 * an error, the signal or the timeout ends it and releases the connection before the iteration step
 * that saw it completes. The timeout covers the whole stream, reading included.
 */
export function streamInTransaction<R extends pg.QueryResultRow>(
  run: RunInTransaction,
  text: string,
  params: readonly unknown[] | undefined,
  options: StreamOptions,
  countRefusal: () => void,
): RowStream<R> {
  const open = () => {
    let batchSize: number;
    try {
      checkOptionsObject(options, 'stream options');
      batchSize = checkBatchSize(options.batchSize);
      checkStreamStatement(text, params);
    } catch (error) {
      // Refused before a connection is taken: a failed call all the same (docs/errors.md).
      countRefusal();
      return Promise.reject(error);
    }
    return openInTransaction<R>(run, text, params, options, batchSize);
  };
  return new RowStream<R>(open, countRefusal);
}

function openInTransaction<R extends pg.QueryResultRow>(
  run: RunInTransaction,
  text: string,
  params: readonly unknown[] | undefined,
  options: StreamOptions,
  batchSize: number,
): Promise<BatchSource<R>> {
  const { batchSize: _batchSize, readOnly = true, ...callOptions } = options;
  return new Promise((resolveSource, rejectSource) => {
    let stop!: (error?: unknown) => void;
    const stopped = new Promise<{ error?: unknown }>((resolve) => (stop = (error) => resolve({ error })));
    let inner: BatchSource<R> | undefined;
    const call = run({ ...callOptions, readOnly }, async (client) => {
      const host = streamHostOf(client);
      inner = await openCursor<R>(host, text, params, batchSize, { onFailure: (error) => stop(error) });
      resolveSource(outer);
      // The consumer may be busy (or gone) when the call is cancelled: the signal wakes us so the
      // cursor is closed and the connection released now, not when the consumer next asks for a row.
      const signal = host.context.signal;
      let onAbort: (() => void) | undefined;
      const outcome = await new Promise<{ error?: unknown }>((resolve) => {
        void stopped.then(resolve);
        if (!signal) return;
        onAbort = () => resolve({});
        if (signal.aborted) onAbort();
        else signal.addEventListener('abort', onAbort, { once: true });
      });
      if (onAbort) signal?.removeEventListener('abort', onAbort);
      await inner.close();
      if (outcome.error !== undefined) throw outcome.error;
    });
    // Before the callback ran (bad options, no connection, cancelled while waiting), the first read rejects.
    call.catch((error: unknown) => {
      if (!inner) rejectSource(error);
    });
    const outer: BatchSource<R> = {
      async read() {
        let rows: R[];
        try {
          rows = await inner!.read();
        } catch (error) {
          stop(error);
          await call;
          throw error;
        }
        if (rows.length === 0) {
          stop();
          await call;
        }
        return rows;
      },
      async close() {
        stop();
        await call;
      },
      onHalt: (listener) => inner!.onHalt(listener),
    };
  });
}

/**
 * `db.copyFrom`: `COPY ... FROM STDIN` fed from `source` in a read-write transaction of its own, with
 * `stream/promises.pipeline` semantics. Resolves with the number of rows copied once they are
 * committed. A source that fails sends CopyFail: nothing is copied, the transaction rolls back and
 * the call rejects with the source's error; the connection stays healthy.
 */
export function copyFromInTransaction(
  run: RunInTransaction,
  sql: string,
  source: Readable | AsyncIterable<unknown> | Iterable<unknown>,
  options: CopyOptions,
): Promise<number> {
  return run({ ...options, readOnly: false, target: 'primary' }, async (client) => {
    const host = streamHostOf(client);
    const sink = copyFromOn(host, sql);
    // pg-copy-streams sends the error's message to the server in CopyFail (and so into its log): the
    // source's own error stays here, the server gets a fixed sentence.
    let sourceError: unknown;
    async function* guarded() {
      try {
        yield* source as AsyncIterable<unknown>;
      } catch (error) {
        sourceError = error;
        throw new Error('the COPY source failed');
      }
    }
    await pipeline(guarded, sink).catch((error: unknown) => {
      throw sourceError ?? fromServer(host, sink, error);
    });
    return sink.rowCount;
  });
}

/**
 * `db.copyTo`: `COPY ... TO STDOUT` into `destination` in a read-only transaction of its own (a
 * replica may serve it), with pipeline semantics. Resolves with the number of rows copied. A
 * destination that fails cancels the COPY and destroys the connection (COPY data still in flight
 * cannot be skipped); the call rejects with the destination's error.
 */
export function copyToInTransaction(
  run: RunInTransaction,
  sql: string,
  destination: Writable,
  options: CopyOptions & { readOnly?: boolean; target?: CallOptions['target']; afterWrite?: string },
): Promise<number> {
  const { readOnly = true, ...rest } = options;
  return run({ ...rest, readOnly }, async (client) => {
    const host = streamHostOf(client);
    const data = copyToOn(host, sql);
    await pipeline(data, destination).catch((error: unknown) => {
      throw fromServer(host, data, error);
    });
    // rowCount arrives with CommandComplete, which may follow the end of the data.
    await host.streams.finished(data);
    return data.rowCount;
  });
}

/**
 * A server error (it has a SQLSTATE) or the lost connection pg failed the COPY with, as one of ours
 * (`CONNECTION_LOST`, not pg's bare "Connection terminated"); the caller's own source or destination
 * error as it is.
 */
function fromServer(host: StreamHost, copy: object, error: unknown): unknown {
  return sqlStateOf(error) !== undefined || host.streams.isFailureOf(copy, error) ? host.mapError(error) : error;
}
