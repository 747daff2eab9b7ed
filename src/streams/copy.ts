import { from as copyFromStdin, to as copyToStdout, type CopyStreamQuery, type CopyToStreamQuery } from 'pg-copy-streams';
import type { Readable, Writable } from 'node:stream';
import { watchCopyProgress } from './copy-progress.js';
import { checkCopyStatement } from './copy-statement.js';
import type { StreamHost } from './cursor-reader.js';

/** What `client.copyFrom` returns: pg-copy-streams' Writable; `rowCount` is set once it finished. */
export type CopyFromStream = CopyStreamQuery;
/** What `client.copyTo` returns: pg-copy-streams' Readable of COPY data; `rowCount` is set once it ended. */
export type CopyToStream = CopyToStreamQuery;

/**
 * Starts `COPY ... FROM STDIN` on the transaction's connection and returns the Writable to feed it
 * (pg-copy-streams). `end()` it to finish; `destroy(error)` sends CopyFail, so nothing is copied and
 * the transaction is aborted. Counted once in `queriesExecuted`.
 * @throws {TypeError} when `sql` is not a `COPY ... FROM STDIN` statement (anything else would leave
 * pg-copy-streams waiting for an answer that never comes).
 */
export function copyFromOn(host: StreamHost, sql: string): CopyFromStream {
  checkCopyFromSql(sql);
  if (host.context.cancelled) throw host.context.cancelled;
  const stream = copyFromStdin(sql);
  count(host);
  listenForErrors(stream);
  host.streams.submit(stream);
  watchCopyProgress(host.lease, stream, 'from', host.streams.finished(stream));
  return stream;
}

/**
 * Starts `COPY ... TO STDOUT` on the transaction's connection and returns its data as a Readable
 * (pg-copy-streams). While it flows, the connection belongs to it: a stream destroyed before its end
 * (a failing destination, an early `destroy()`) leaves COPY data in flight that nothing can read,
 * so the connection is destroyed at once and the transaction fails (`STREAM_LEFT_OPEN`: nothing was
 * committed). Counted once in `queriesExecuted`.
 * @throws {TypeError} when `sql` is not a `COPY ... TO STDOUT` statement.
 */
export function copyToOn(host: StreamHost, sql: string): CopyToStream {
  checkCopyToSql(sql);
  if (host.context.cancelled) throw host.context.cancelled;
  const stream = copyToStdout(sql);
  count(host);
  stream.once('close', () => {
    // A server error ends the COPY cleanly (pg reads on); only a COPY cut short by us leaves data in flight.
    if (!stream.readableEnded && host.streams.isOpen(stream)) {
      host.streams.cutShort();
      host.lease.owner.abandon(host.lease);
    }
  });
  listenForErrors(stream);
  host.streams.submit(stream);
  watchCopyProgress(host.lease, stream, 'to', host.streams.finished(stream));
  return stream;
}

/**
 * A COPY stream the caller holds inside withDb fails when its connection is lost (a server restart,
 * a cut link, shutdown's deadline) whether or not the caller is listening at that moment: that
 * 'error' must never end the process. The caller's own listeners, `pipeline` and `finished` still
 * get it, then 'close'; the call reports the lost connection.
 */
function listenForErrors(stream: Readable | Writable): void {
  // pg-copy-streams emits pg's error without destroying the stream: destroy it, so 'close' follows
  // as on any Node stream that failed (a caller waiting for 'close' is not left waiting for ever).
  stream.on('error', () => {
    if (!stream.destroyed) stream.destroy();
  });
}

/** @throws {TypeError} unless `sql` is one `COPY ... FROM STDIN` statement (src/streams/copy-statement.ts). */
export function checkCopyFromSql(sql: unknown): void {
  checkCopyStatement('copyFrom', sql);
}

/** @throws {TypeError} unless `sql` is one `COPY ... TO STDOUT` statement (src/streams/copy-statement.ts). */
export function checkCopyToSql(sql: unknown): void {
  checkCopyStatement('copyTo', sql);
}

/** @throws {TypeError} unless `source` is a Readable, an async iterable or an iterable (of strings or Buffers). */
export function checkCopySource(source: unknown): void {
  const candidate = source as { [Symbol.asyncIterator]?: unknown; [Symbol.iterator]?: unknown } | null | undefined;
  if (
    candidate === null ||
    (typeof candidate !== 'object' && typeof candidate !== 'string') ||
    (typeof candidate[Symbol.asyncIterator] !== 'function' && typeof candidate[Symbol.iterator] !== 'function')
  )
    throw new TypeError('copyFrom needs a source: a Readable, an async iterable or an iterable of strings or Buffers');
}

/**
 * @throws {TypeError} unless `destination` is a Node Writable (a string or a Readable would leave
 * pg-copy-streams with nowhere to write: a call pending for ever, or an uncaught TypeError).
 */
export function checkCopyDestination(destination: unknown): void {
  const candidate = destination as { write?: unknown; on?: unknown; end?: unknown } | null | undefined;
  if (
    candidate === null ||
    typeof candidate !== 'object' ||
    typeof candidate.write !== 'function' ||
    typeof candidate.on !== 'function' ||
    typeof candidate.end !== 'function'
  )
    throw new TypeError('copyTo needs a destination that is a Writable stream');
}

/** One query in the stats; its time is recorded by `OpenStreams.submit` once pg is done with it. */
function count(host: StreamHost): void {
  host.context.counters.queriesExecuted++;
}
