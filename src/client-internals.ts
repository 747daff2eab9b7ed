import type pg from 'pg';
import { startTimer } from './timers.js';

/**
 * The few places where the library looks past pg's public API, isolated here (STYLE.md rule 8).
 * Each says what it reads and why no public API does the job.
 */

interface ClientInternals {
  connection?: {
    stream?: { destroy(): void };
  };
  _queryable?: boolean;
  _ending?: boolean;
}

/**
 * Destroys the client's socket at once. `client.end()` sends Terminate and waits for the server to
 * close; over a black-holed link that wait never ends and keeps a handle open, so a connection we
 * evict or abandon has its socket destroyed as well (pg-pool's own connect timeout does the same).
 */
export function destroySocket(client: pg.Client): void {
  try {
    (client as unknown as ClientInternals).connection?.stream?.destroy();
  } catch {
    // already gone
  }
}

/**
 * Sends the queries `submit` starts back to back without waiting for each answer (one round trip), and
 * resolves with the same promises once every one has settled (so none can reject unhandled).
 *
 * This uses pg's pipeline mode (pg 8.23, `Client.pipeline`) for just these queries: the pool's
 * clients are made without it, so a withDb caller's cursors and query streams keep working. pg
 * reads the flag each time it pulses its queue, and only the pipelined path promotes a sent query to
 * the active one, so the flag stays on until every pipelined query is answered. Callers hold the
 * client exclusively, and its queue is empty when this is called.
 */
export async function sendPipelined<T extends readonly Promise<unknown>[]>(client: pg.Client, submit: () => T): Promise<T> {
  const internals = client as unknown as { pipeline: boolean };
  const wasPipelined = internals.pipeline;
  internals.pipeline = true;
  let promises: T;
  try {
    promises = submit();
  } catch (error) {
    internals.pipeline = wasPipelined;
    throw error;
  }
  await Promise.allSettled(promises);
  internals.pipeline = wasPipelined;
  return promises;
}

/**
 * Whether pg still has a statement running or queued on the client: a cursor, query stream or COPY
 * keeps being pg's active query until it is read to the end or closed, although no promise of ours
 * waits for it. pg 8 offers this only through the deprecated `activeQuery`/`queryQueue` getters, which
 * print a warning, so the fields behind them are read.
 */
export function hasQueuedWork(client: pg.Client): boolean {
  const internals = client as unknown as { _activeQuery?: unknown; _queryQueue?: unknown[] };
  return (internals._activeQuery ?? null) !== null || (internals._queryQueue?.length ?? 0) > 0;
}

/**
 * Whether `error` is pg's own for a statement its `query_timeout` gave up on ("Query read timeout"):
 * pg stopped waiting, but the server still runs the statement and will answer on this connection.
 */
export function isReadTimeout(error: unknown): boolean {
  return error instanceof Error && error.message === 'Query read timeout' && !('code' in error);
}

/** False once pg considers the client unusable (ended, errored); pg-pool reads the same fields. */
export function isQueryable(client: pg.Client): boolean {
  const internals = client as unknown as ClientInternals;
  return internals._queryable !== false && internals._ending !== true;
}

/** A socket-like stream to the server, negotiated as the sslmode says (see `connectNegotiated`). */
export interface CancelSocket {
  once(event: 'connect' | 'close', listener: () => void): unknown;
  once(event: 'error', listener: (error: Error) => void): unknown;
  write(data: Buffer): unknown;
  destroy(): unknown;
  resume(): unknown;
}

/**
 * Sends PostgreSQL's CancelRequest for the statement the client's backend is running, on a new
 * connection from `open` (negotiated like a session, so a hostssl-only server gets it over TLS, as
 * libpq 17 does), and resolves once the server has closed it (or after `timeoutMillis`). Never rejects.
 */
export function sendCancelRequest(client: pg.Client, open: () => CancelSocket, timeoutMillis = 1000): Promise<boolean> {
  const { processID, secretKey } = client as unknown as { processID: number | null; secretKey: number | null };
  if (processID === null || secretKey === null || processID === undefined) return Promise.resolve(false);
  return new Promise((resolve) => {
    const socket = open();
    const timer = startTimer(timeoutMillis, () => finish(false), 'unref');
    let sent = false;
    function finish(ok: boolean) {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    }
    socket.once('connect', () => {
      socket.write(cancelRequestPacket(processID, secretKey));
      sent = true;
    });
    socket.once('error', () => finish(false));
    socket.once('close', () => finish(sent));
    socket.resume();
  });
}

/** PostgreSQL's CancelRequest message (protocol 3.0): length 16, code 80877102, backend pid, secret key. */
export function cancelRequestPacket(processID: number, secretKey: number): Buffer {
  const packet = Buffer.alloc(16);
  packet.writeInt32BE(16, 0);
  packet.writeInt32BE(80877102, 4);
  packet.writeInt32BE(processID, 8);
  packet.writeInt32BE(secretKey, 12);
  return packet;
}

/**
 * Sets the login of a client not yet connected. pg reads the user for the startup message from
 * `connectionParameters` (and `client.user` for MD5), and the password from `client.password`; a
 * provider's login is known only once its promise settles, after pg-pool has constructed the client,
 * and pg has no public setter. Both stay non-enumerable as pg made them.
 */
export function setLogin(client: pg.Client, user: string | undefined, password: string): void {
  const internals = client as unknown as {
    user: string;
    password: string;
    connectionParameters: { user: string; password: string };
  };
  if (user !== undefined) {
    internals.user = user;
    internals.connectionParameters.user = user;
  }
  internals.password = password;
  internals.connectionParameters.password = password;
}

/**
 * Lowers pg's own connect timeout (read from `_connectionTimeoutMillis` when `connect()` starts) by
 * the time a credentials provider already took, so the provider is part of the connect deadline.
 */
export function shortenConnectTimeout(client: pg.Client, spentMillis: number): void {
  const internals = client as unknown as { _connectionTimeoutMillis: number };
  if (internals._connectionTimeoutMillis > 0)
    internals._connectionTimeoutMillis = Math.max(1, internals._connectionTimeoutMillis - spentMillis);
}

/** True once the client's socket was destroyed (shutdown destroys clients whose connect is in progress). */
export function isSocketDestroyed(client: pg.Client): boolean {
  return (client as unknown as { connection?: { stream?: { destroyed?: boolean } } }).connection?.stream?.destroyed === true;
}

/**
 * Calls `listener` with every ParameterStatus the server sends on the client's connection: the ones
 * sent at startup (server_version, in_hot_standby, default_transaction_read_only, ...) and any later
 * change (in_hot_standby turns off when a standby is promoted). pg parses these messages but keeps
 * none of them (its Client has no handler), and its Connection emits each parsed message under its
 * name, so this listens there. Call it before `connect()` to see the startup values.
 */
export function onParameterStatus(client: pg.Client, listener: (name: string, value: string) => void): void {
  const connection = (client as unknown as { connection?: NodeJS.EventEmitter }).connection;
  connection?.on('parameterStatus', (message: { parameterName?: unknown; parameterValue?: unknown }) => {
    if (typeof message.parameterName === 'string' && typeof message.parameterValue === 'string')
      listener(message.parameterName, message.parameterValue);
  });
}

/**
 * Whether pg still has a statement running or queued on the client: an unanswered query, an open
 * cursor, a query stream or COPY not read to its end. pg's public `activeQuery` getter is deprecated
 * (it logs a warning), so its private queue fields are read instead.
 */
export function isBusy(client: pg.Client): boolean {
  const internals = client as unknown as {
    _activeQuery?: unknown;
    _queryQueue?: readonly unknown[];
    _sentQueryQueue?: readonly unknown[];
  };
  return (
    (internals._activeQuery ?? null) !== null ||
    (internals._queryQueue?.length ?? 0) > 0 ||
    (internals._sentQueryQueue?.length ?? 0) > 0
  );
}

/** The client's socket (pg's private `connection.stream`), for watching a COPY's traffic; undefined before connect. */
export function socketOf(client: pg.Client): import('node:net').Socket | undefined {
  return (client as unknown as { connection?: { stream?: import('node:net').Socket } }).connection?.stream;
}

/** Turns on TCP keepalive for a connected client's socket (pg's `keepAlive` option, applied after connect). */
export function setKeepAlive(client: pg.Client, initialDelayMillis: number): void {
  const stream = (client as unknown as { connection?: { stream?: { setKeepAlive?(on: boolean, delay: number): void } } })
    .connection?.stream;
  stream?.setKeepAlive?.(true, initialDelayMillis);
}

/** pg's list of the named statements it has prepared on this connection (it sends only Bind for them later). */
function parsedStatements(client: pg.Client): Record<string, string> | undefined {
  return (client as unknown as { connection?: { parsedStatements?: Record<string, string> } }).connection?.parsedStatements;
}

/** Whether pg has prepared a statement of this name on the client's connection. */
export function isPrepared(client: pg.Client, name: string): boolean {
  return parsedStatements(client)?.[name] !== undefined;
}

/** Makes pg forget a named statement after a DEALLOCATE, so a later use of the name prepares it again. */
export function forgetPrepared(client: pg.Client, name: string): void {
  const statements = parsedStatements(client);
  if (statements) delete statements[name];
}
