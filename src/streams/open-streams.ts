import type pg from 'pg';
import { DatabaseQueryError, redactedDriverError, type DbError } from '../errors.js';
import { streamClosed, streamOpened, type Lease } from '../pool/lease.js';
import { queryChannel, serverOf, traced, type QueryMessage, type TransactionMessage } from '../tracing-channels.js';
import { isCopyStatement } from './copy-statement.js';

/** How pg finished with a submittable: ReadyForQuery (`{}`), or an error (the server's, or a lost connection). */
export interface StreamEnd {
  readonly error?: unknown;
}

/** Something pg runs by calling `submit(connection)`: pg-cursor, pg-query-stream, pg-copy-streams. */
export interface Submittable {
  submit(connection: unknown): void;
}

/** True for an object pg would run as a submittable rather than as a query config. */
export function isSubmittable(value: unknown): value is Submittable {
  return typeof value === 'object' && value !== null && typeof (value as Submittable).submit === 'function';
}

/**
 * pg-cursor and pg-query-stream have no handler for COPY's messages: pg would call a missing method
 * inside its message loop and the TypeError would end the process. Refused before anything is sent.
 * @throws {TypeError} for a row reader without COPY handlers whose statement is a COPY.
 */
export function refuseCopyWithoutHandlers(submittable: Submittable): void {
  const shown = submittable as {
    text?: unknown;
    cursor?: { text?: unknown };
    handleDataRow?: unknown;
    handleCopyData?: unknown;
    handleCopyInResponse?: unknown;
  };
  const text = shown.text ?? shown.cursor?.text;
  // A row reader (pg-cursor, pg-query-stream) without COPY handlers; pg-copy-streams' COPY TO reads
  // the socket itself, with neither, and reads no rows.
  const readsOnlyRows =
    typeof shown.handleDataRow === 'function' &&
    typeof shown.handleCopyData !== 'function' &&
    typeof shown.handleCopyInResponse !== 'function';
  if (readsOnlyRows && typeof text === 'string' && isCopyStatement(text))
    throw new TypeError(
      'A cursor or query stream cannot run COPY (it reads rows, not COPY data): use client.copyTo / client.copyFrom',
    );
}

/** One cursor, stream or COPY opened on a transaction's connection. */
interface OpenStream {
  /** Resolves once pg handed it ReadyForQuery or an error: the connection is free again. */
  readonly done: Promise<void>;
  /** The consumer has read or written all of it; only the server's last answer may still be on its way. */
  isConsumed(): boolean;
  /** Ends it politely (Close + Sync); absent for a caller's own submittable, whose connection is destroyed instead. */
  close?(): Promise<void>;
  /** The submittable itself (an EventEmitter for the known packages). */
  readonly target: object;
}

/**
 * The cursors, streams and COPYs a withDb callback opened, so the transaction never commits (or
 * hangs) behind one. Each counts in `lease.callerUnanswered` until pg is done with it: a cancel reaches it,
 * and a connection released with one still open is destroyed rather than reused.
 */
export class OpenStreams {
  #lease: Lease;
  #open = new Set<OpenStream>();
  /** The error pg ended a submittable with (the server's, or the lost connection's). */
  #failures = new WeakMap<object, unknown>();
  #submitted = new WeakMap<object, OpenStream>();
  /** Streams whose connection the library destroyed because they were cut short (a `copyTo` destroyed before its end). */
  #cutShort = 0;
  #followUps = new Set<Promise<void>>();
  /** The traced transaction the streams belong to (only while someone subscribes). */
  #transaction: TransactionMessage | undefined;
  #cancelled: (() => DbError | undefined) | undefined;

  /** Records a submitted statement's time (the call's `queryTime`). */
  #recordTime: (millis: number) => void;

  /** @param cancelled - the call's cancellation once its signal or timeout fired (QUERY_CANCELLED). */
  constructor(
    lease: Lease,
    recordTime: (millis: number) => void,
    transaction?: TransactionMessage,
    cancelled?: () => DbError | undefined,
  ) {
    this.#lease = lease;
    this.#recordTime = recordTime;
    this.#transaction = transaction;
    this.#cancelled = cancelled;
  }

  /**
   * Sends a caller's submittable (or one of the library's COPYs) through pg and watches for its end
   * (pg calls `handleReadyForQuery` or `handleError` last). pg gets a stand-in (see {@link handOver}),
   * so the caller's reference keeps working as on pg and no field of it is modified. Its time, from
   * now until pg is done with it whatever the outcome (completed, failed, cancelled, its connection
   * lost or destroyed), is recorded once: the caller counted it in `queriesExecuted`.
   */
  submit<T extends Submittable>(submittable: T): T {
    const startedAt = performance.now();
    void this.watch(submittable).then(() => this.#recordTime(performance.now() - startedAt));
    return submittable;
  }

  /**
   * {@link submit}, for the library's own submittables: `close` ends it politely when the callback
   * returns with it unfinished. Resolves once pg is done with it (ReadyForQuery or an error).
   */
  watch(submittable: Submittable, close?: () => Promise<void>): Promise<StreamEnd> {
    refuseCopyWithoutHandlers(submittable);
    let finish!: (end: StreamEnd) => void;
    const ended = new Promise<StreamEnd>((resolve) => (finish = resolve));
    const done = ended.then(() => undefined);
    let isDone = false;
    const end = (how: StreamEnd) => {
      if (isDone) return;
      isDone = true;
      streamClosed(this.#lease);
      this.#open.delete(entry);
      if (how.error !== undefined) this.#failures.set(submittable, how.error);
      finish(how);
    };
    if (queryChannel.hasSubscribers) this.#trace(submittable, ended);
    // An answer it cannot read leaves the connection mid-protocol: it is destroyed (docs/errors.md, QUERY_FAILED).
    const watched = handOver(submittable, end, () => this.#lease.owner.abandon(this.#lease));
    const entry: OpenStream = { done, isConsumed: () => isConsumed(submittable), close, target: submittable };
    this.#submitted.set(submittable, entry);
    streamOpened(this.#lease);
    this.#open.add(entry);
    try {
      this.#lease.client.query(watched as unknown as pg.QueryConfig);
    } catch (error) {
      end({ error });
      throw error;
    }
    return ended;
  }

  /**
   * Traces a submittable on `codecheck-db:query` from its submission until pg is done with it: the
   * statement's text and the number of its values (pg-cursor and pg-query-stream keep them, COPY only
   * text), no row count; a failure is a redacted copy of the driver's error (`sqlState` set, no
   * bound value in its message; `errorCode` only when the call's signal or timeout cut it: QUERY_CANCELLED).
   */
  #trace(submittable: Submittable, ended: Promise<StreamEnd>): void {
    const shown = submittable as { text?: unknown; values?: unknown; cursor?: { text?: unknown; values?: unknown } };
    const text = shown.text ?? shown.cursor?.text;
    const values = shown.values ?? shown.cursor?.values;
    const message: QueryMessage = {
      operation: 'query',
      text: typeof text === 'string' ? text : '',
      parameterCount: Array.isArray(values) ? values.length : 0,
      transaction: this.#transaction,
      ...serverOf(this.#lease.client, this.#lease.owner.server),
    };
    const settled = () =>
      ended.then((end) => {
        // The driver's own error may quote a bound value (class 22, a value read as a name): observers get a redacted copy.
        if (end.error === undefined) return;
        // Cut by the call's signal or timeout: it ends as the call does (the driver's 57014 stays as `error`).
        const cancelled = this.#cancelled?.();
        if (cancelled) message.errorCode = cancelled.code;
        throw redactedDriverError(end.error, Array.isArray(values) ? values : undefined);
      });
    // The caller learns of a failure from the stream itself; the trace's copy of it is not theirs to handle.
    traced(queryChannel, message, settled).catch(() => undefined);
  }

  /** Whether pg is still running a submittable given to {@link submit}. */
  isOpen(submittable: object): boolean {
    const entry = this.#submitted.get(submittable);
    return entry !== undefined && this.#open.has(entry);
  }

  /** Whether `error` is the one pg ended `submittable` with (not the caller's source's or destination's). */
  isFailureOf(submittable: object, error: unknown): boolean {
    return error !== undefined && this.#failures.get(submittable) === error;
  }

  /** Resolves once pg is done with a submittable given to {@link submit} (at once for an unknown one). */
  finished(submittable: object): Promise<void> {
    return this.#submitted.get(submittable)?.done ?? Promise.resolve();
  }

  /**
   * After the callback: a stream still open will fail when its connection is cancelled or destroyed;
   * its 'error' event must not become an uncaught exception for a caller who no longer listens.
   */
  silence(): void {
    for (const { target } of this.#open) {
      const on = (target as { on?: unknown }).on;
      if (typeof on === 'function') (on as (event: string, listener: () => void) => void).call(target, 'error', () => undefined);
    }
  }

  /**
   * A stream the consumer ended before its end in a way that cost the connection (a COPY TO destroyed
   * with data in flight): the transaction can no longer commit, and {@link settle} counts it as
   * unfinished, so withDb reports `STREAM_LEFT_OPEN` (nothing committed) rather than a COMMIT that
   * failed on a connection we destroyed.
   */
  cutShort(): void {
    this.#cutShort++;
  }

  get size(): number {
    return this.#open.size;
  }

  /**
   * At the end of the callback: waits for streams the consumer finished (their server answer may
   * still be arriving) and closes the library's own unfinished ones. Returns how many were
   * unfinished; a caller's own unfinished submittable stays in flight, so its connection is destroyed.
   */
  async settle(): Promise<number> {
    let unfinished = this.#cutShort;
    this.#cutShort = 0;
    for (const stream of [...this.#open]) {
      if (stream.isConsumed()) await stream.done;
      else {
        unfinished++;
        if (stream.close) await stream.close().catch(() => undefined);
      }
    }
    // A stream that failed left the open set when pg handed it the error, but the library's own
    // statement after it (a cursor restoring statement_timeout) may still be queued on the connection.
    while (this.#followUps.size > 0) await Promise.all(this.#followUps);
    return unfinished;
  }

  /**
   * Work the library does on the connection once one of its streams ended (restoring
   * statement_timeout after a cursor): {@link settle} waits for it, so COMMIT or ROLLBACK is never
   * queued behind it nor taken for a statement the callback left running. `work` must not reject.
   */
  followUp(work: Promise<void>): void {
    this.#followUps.add(work);
    void work.finally(() => this.#followUps.delete(work));
  }
}

/** The methods pg calls on a submittable (pg 8's client.js), all with the submittable as `this`. */
const HANDLERS = [
  'submit',
  'handleRowDescription',
  'handleDataRow',
  'handlePortalSuspended',
  'handleCommandComplete',
  'handleEmptyQuery',
  'handleCopyInResponse',
  'handleCopyData',
  'handleReadyForQuery',
  'handleError',
] as const;

/**
 * What pg runs in place of the submittable: an object whose prototype is the submittable (so pg
 * reads `text`, `name`, `_result` from it) with own methods that call the submittable's with the
 * submittable as `this` (so its state stays on the caller's object), and that report pg's last call
 * (ReadyForQuery or an error) to `end`. Plain functions, not a Proxy: pg calls `handleDataRow` once
 * per row, and a Proxy trap on every property access there cost a third of the stream's throughput.
 *
 * pg calls these from its socket's data handler, where a throw ends the process. A message the
 * submittable has no method for (a second statement's rows after a COPY, COPY data for a cursor) or a
 * method that throws (pg-copy-streams given a server-side file COPY) derails it: `derail` destroys the
 * connection, nothing more is passed on, and pg's last call fails the submittable with one
 * `QUERY_FAILED` error instead.
 */
export function handOver(submittable: Submittable, end: (how: StreamEnd) => void, derail: () => void): Submittable {
  const target = submittable as unknown as Record<string, unknown>;
  let derailed: DatabaseQueryError | undefined;
  let isDelivered = false;
  const deliver = () => {
    if (isDelivered) return;
    isDelivered = true;
    try {
      (target.handleError as ((error: unknown) => void) | undefined)?.call(target, derailed);
    } catch {
      // The submittable cannot even take its error: the stream's end below still frees the transaction.
    }
    end({ error: derailed });
  };
  const methods: PropertyDescriptorMap = {};
  for (const name of HANDLERS) {
    if (name === 'submit' && typeof target[name] !== 'function') continue;
    const isLast = name === 'handleReadyForQuery' || name === 'handleError';
    methods[name] = {
      value: (...args: unknown[]) => {
        if (derailed === undefined) {
          try {
            const method = target[name];
            if (typeof method !== 'function') throw new TypeError(`it has no ${name}`);
            const result = (method as (...a: unknown[]) => unknown).apply(target, args);
            if (isLast) end(name === 'handleError' ? { error: args[0] ?? new Error('the statement failed') } : {});
            return result;
          } catch (error) {
            if (name === 'submit') throw error;
            derailed = new DatabaseQueryError(
              `The server's answer could not be read by this cursor, stream or COPY (${name.replace(/^handle/, '')}), so its connection was closed: send one statement of the kind it runs (one COPY ... FROM STDIN for COPY FROM, one COPY ... TO STDOUT for COPY TO, one query for a cursor)`,
              error,
            );
            derail();
          }
        }
        if (isLast) deliver();
        return undefined;
      },
      writable: true,
      configurable: true,
    };
  }
  return Object.create(target, methods) as Submittable;
}

/**
 * Whether the consumer is done with a pg-cursor (`state`), a Readable (ended) or a Writable (ended),
 * or destroyed it (a pg-query-stream then closes its cursor, a COPY FROM sends CopyFail): only the
 * server's last answer is still to come.
 */
function isConsumed(submittable: object): boolean {
  const s = submittable as { state?: unknown; readableEnded?: unknown; writableEnded?: unknown; destroyed?: unknown };
  return s.state === 'done' || s.readableEnded === true || s.writableEnded === true || s.destroyed === true;
}
