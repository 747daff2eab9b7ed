import diagnosticsChannel from 'node:diagnostics_channel';
import { DbError, sqlStateOf } from './errors.js';

/**
 * The library's `diagnostics_channel` tracing channels (docs/observability.md): Node's convention for
 * library telemetry, as undici and `node:http` publish theirs. Each is a `TracingChannel` whose
 * `start`, `end`, `asyncStart`, `asyncEnd` and `error` events carry one message object per
 * operation. Nothing is built or published unless someone subscribes: every call site checks
 * `hasSubscribers` first.
 */
export const CHANNEL_NAMES = Object.freeze({
  query: 'codecheck-db:query',
  transaction: 'codecheck-db:transaction',
  acquire: 'codecheck-db:acquire',
  connect: 'codecheck-db:connect',
  /** A plain channel (not a tracing one): a checked-out connection was given back. */
  release: 'codecheck-db:release',
});

/** Which server an operation ran on. */
export interface ServerFields {
  /** Host name, IP address or socket directory of the server. */
  serverAddress: string;
  serverPort: number;
  /** Database name. */
  database: string;
  /** The node's pool: `primary`, or the replica's name. */
  poolName: string;
}

/** How an operation ended, set before `asyncEnd` (and `error`) is published. */
export interface OutcomeFields {
  /** The `DbError` code when the operation failed (`QUERY_FAILED`, `POOL_TIMEOUT`, ...). */
  errorCode?: string;
  /** The server's SQLSTATE when it answered with an error. */
  sqlState?: string;
  /** Set by `TracingChannel` on failure: the error the caller receives. */
  error?: unknown;
  /** Never set: an operation's value (rows, a connection) is not published. */
  result?: undefined;
}

/** `codecheck-db:query`: one statement a caller sent (`executeQuery`, each `client.query` in `withDb`, each `executeTransaction` operation). */
export interface QueryMessage extends ServerFields, OutcomeFields {
  readonly operation: 'query';
  /** The statement text as sent (`$1` placeholders); bound values are never part of a message. */
  readonly text: string;
  /** How many values were bound. */
  readonly parameterCount: number;
  /** The message of the enclosing `withDb`/`executeTransaction`, when there is one. */
  readonly transaction: TransactionMessage | undefined;
  /** Rows returned (or affected), on success. */
  rowCount?: number;
}

/**
 * `codecheck-db:transaction`: one `withDb` or `executeTransaction` call, from acquire to release. The
 * server fields are the primary's until a connection is acquired, then those of the node that runs it.
 */
export interface TransactionMessage extends ServerFields, OutcomeFields {
  readonly operation: 'transaction';
  readonly readOnly: boolean;
  /** `read committed`, `repeatable read` or `serializable` when the call asked for one. */
  isolationLevel: string | undefined;
}

/** `codecheck-db:acquire`: waiting for a connection of one node's pool (a new connection included). */
export interface AcquireMessage extends ServerFields, OutcomeFields {
  readonly operation: 'acquire';
  /** Callers already waiting when this acquire started. */
  readonly waitingRequests: number;
}

/** `codecheck-db:connect`: opening one new connection (login, TLS and startup), for the pool or a probe. */
export interface ConnectMessage extends ServerFields, OutcomeFields {
  readonly operation: 'connect';
}

/** `codecheck-db:release`: a checked-out connection went back to its pool (or was closed). */
export interface ReleaseMessage extends ServerFields {
  readonly operation: 'release';
  /** How long the connection was checked out, ms. */
  readonly useMillis: number;
}

export const queryChannel = diagnosticsChannel.tracingChannel<unknown, QueryMessage & object>(CHANNEL_NAMES.query);
export const transactionChannel = diagnosticsChannel.tracingChannel<unknown, TransactionMessage & object>(
  CHANNEL_NAMES.transaction,
);
export const acquireChannel = diagnosticsChannel.tracingChannel<unknown, AcquireMessage & object>(CHANNEL_NAMES.acquire);
export const connectChannel = diagnosticsChannel.tracingChannel<unknown, ConnectMessage & object>(CHANNEL_NAMES.connect);
export const releaseChannel = diagnosticsChannel.channel(CHANNEL_NAMES.release);

/** The server fields of `client`: the host and port it was made for (with a host list, the one chosen), `node`'s database and pool. */
export function serverOf(client: { host?: string; port?: number }, node: ServerFields): ServerFields {
  return {
    serverAddress: client.host ?? node.serverAddress,
    serverPort: client.port ?? node.serverPort,
    database: node.database,
    poolName: node.poolName,
  };
}

/**
 * Ends a trace on `codecheck-db:query` that {@link startQueryTrace} began, for a statement sent with a
 * callback: the outcome goes on the message, then `error` (on failure), `asyncStart` and `asyncEnd`.
 */
export function settleQueryTrace(message: QueryMessage, error: unknown, result: unknown): void {
  if (error !== undefined && error !== null) {
    message.error = error;
    if (error instanceof DbError) message.errorCode = error.code;
    const state = sqlStateOf(error);
    if (state !== undefined) message.sqlState = state;
    queryChannel.error.publish(message);
  } else {
    const last = (Array.isArray(result) ? result.at(-1) : result) as { rowCount?: number | null; rows?: unknown[] } | undefined;
    if (last) message.rowCount = last.rowCount ?? last.rows?.length ?? 0;
  }
  queryChannel.asyncStart.publish(message);
  queryChannel.asyncEnd.publish(message);
}

/** The server fields of a node's target. */
export function serverFields(target: { host: string; port: number; database: string }, poolName: string): ServerFields {
  return { serverAddress: target.host, serverPort: target.port, database: target.database, poolName };
}

/**
 * Runs `run` traced on `channel` with `message`: `start`/`end` around the call, `asyncStart`/`asyncEnd`
 * when its promise settles, `error` on failure (with `errorCode` and `sqlState` set first). The
 * operation's value is returned to the caller but not put on the message (`result` stays unset): a
 * result holds rows, which may echo bound values.
 */
export async function traced<T, M extends OutcomeFields & object>(
  channel: diagnosticsChannel.TracingChannel<unknown, M>,
  message: M,
  run: () => Promise<T>,
): Promise<T> {
  let value: T;
  await channel.tracePromise(async () => {
    try {
      value = await run();
    } catch (error) {
      if (error instanceof DbError) message.errorCode = error.code;
      // A refused connection is a DatabaseConnectionError whose cause carries the server's SQLSTATE.
      const state = sqlStateOf(error) ?? (error instanceof DbError ? sqlStateOf(error.cause) : undefined);
      if (state !== undefined) message.sqlState = state;
      throw error;
    }
  }, message);
  return value!;
}
