import type pg from 'pg';
import { isBusy, isPrepared, isReadTimeout } from '../client-internals.js';
import { hasTouchedPreparedStatements, observeStatement } from '../pool/session-state.js';
import { isConnectionFailure } from '../errors.js';
import {
  markBroken,
  statementAnswered,
  statementPrepared,
  statementLeftRunning,
  statementSent,
  streamClosed,
  streamOpened,
  type Lease,
} from '../pool/lease.js';
import type { DescribedStatement } from '../described-statements.js';
import { handOver, refuseCopyWithoutHandlers } from '../streams/open-streams.js';
import type { StatementNames } from '../prepared-statements.js';
import { afterNamedFailure, namedQuery, namedStatementError } from '../query-client.js';
import type { QueryContext } from '../query-context.js';
import type { FacadeSettings } from './pool-config.js';
import { queryChannel, serverOf, settleQueryTrace, type QueryMessage } from '../tracing-channels.js';

/** pg's callback shape for a query. */
export type QueryCallback = (error: Error | undefined, result?: pg.QueryResult) => void;

/** Something pg's `client.query` runs by calling its `submit` (pg-cursor, pg-query-stream, pg-copy-streams, pg.Query). */
export interface Submittable {
  submit(connection: unknown): void;
  callback?: unknown;
}

export function isSubmittable(query: unknown): query is Submittable {
  return typeof (query as Submittable | null)?.submit === 'function';
}

/**
 * pg's overloads of `query(textOrConfig, values?, callback?)`, sorted out as pg does: a function as
 * `values` is the callback.
 */
export function queryArguments(values: unknown, callback: unknown): { values: unknown; callback: QueryCallback | undefined } {
  if (typeof values === 'function') return { values: undefined, callback: values as QueryCallback };
  return { values, callback: typeof callback === 'function' ? (callback as QueryCallback) : undefined };
}

/**
 * The statement as pg should see it, with the Pool's per-statement settings (`types`, `binary`,
 * `query_timeout`) where the caller gave none. The caller's object is never modified (pg copies it too).
 */
function withSettings(query: string | pg.QueryConfig, settings: FacadeSettings): string | pg.QueryConfig {
  if (settings.types === undefined && !settings.binary && settings.queryTimeoutMillis === undefined) return query;
  const config: Record<string, unknown> = typeof query === 'string' ? { text: query } : { ...query };
  if (settings.types !== undefined) config.types ??= settings.types;
  if (settings.binary) config.binary ??= true;
  if (settings.queryTimeoutMillis !== undefined) config.query_timeout ??= settings.queryTimeoutMillis;
  return config as unknown as pg.QueryConfig;
}

/**
 * Sends one caller statement on a checked-out connection, as pg's `client.query` does (same
 * arguments, same results, pg's own errors: a server error is pg's `DatabaseError` with the SQLSTATE
 * in `code`), while the library counts it (`queriesExecuted`, query time), tracks it in flight (a
 * release before it is answered cancels it and destroys the connection), marks the lease broken on a
 * connection failure, and notes what it changed in the session and the statement names it prepared,
 * for the node pool's release (the one session-state tracker, src/pool/session-state.ts). A
 * statement with values on a connection idle outside a transaction is an automatic prepared
 * statement (`statements`, the Database's; docs/drop-in.md), sent once more unnamed when it fails
 * for a reason its being prepared could explain (`afterNamedFailure`, src/query-client.ts). Returns
 * pg's return value: a promise without a callback, `undefined` with one, the submittable itself for a
 * submittable.
 */
export function sendFacadeQuery(
  lease: Lease,
  context: QueryContext,
  settings: FacadeSettings,
  PromiseClass: PromiseConstructorLike,
  query: unknown,
  values: unknown,
  callback: QueryCallback | undefined,
  statements: StatementNames | undefined,
): unknown {
  const client = lease.client;
  if (isSubmittable(query)) {
    // A cursor, stream or COPY stays pg's, the caller's object working as on pg. pg runs a stand-in that
    // passes every message on (src/streams/open-streams.ts, as in withDb): a message the object has no
    // handler for closes the connection and fails it, instead of ending the process.
    refuseCopyWithoutHandlers(query);
    context.counters.queriesExecuted++;
    client.query(trackSubmittable(query, lease, context) as never, values as never, callback as never);
    return query;
  }
  if (query === null || query === undefined || (typeof query !== 'string' && typeof query !== 'object')) {
    // pg throws this synchronously; so do we, before counting anything.
    return client.query(query as never, values as never, callback as never);
  }
  const own =
    callback ?? (typeof query === 'object' ? ((query as { callback?: QueryCallback }).callback ?? undefined) : undefined);
  const config = withSettings(query as string | pg.QueryConfig, settings);
  const name = typeof query === 'object' ? (query as pg.QueryConfig).name : undefined;
  if (context.shouldRefuseNamedStatements && typeof name === 'string' && name !== '') {
    // Behind PgBouncer a named statement would meet another server connection: refused before sending, as in withDb.
    const refused = namedStatementError(name);
    if (own) {
      process.nextTick(own, refused);
      return undefined;
    }
    return new PromiseClass<pg.QueryResult>((_resolve, reject) => reject(refused));
  }
  const isNewName = typeof name === 'string' && name !== '' && !isPrepared(client, name);
  // An automatic prepared statement, only where a failure it alone could cause can be answered by
  // sending it again unnamed: on a connection idle outside a transaction.
  const prepared =
    statements !== undefined && config === query ? preparable(query as string | pg.QueryConfig, values) : undefined;
  const autoName = prepared !== undefined && isIdleOutsideTransaction(lease) ? statements!.nameFor(prepared.text) : undefined;
  // Traced on `codecheck-db:query` as the library's own statements are, while someone subscribes; the
  // outcome is pg's (its error, with the SQLSTATE), as the caller gets it.
  const message = queryChannel.hasSubscribers ? facadeMessage(lease, context, config, values) : undefined;
  if (message) queryChannel.start.publish(message);
  let thrown: unknown;
  const startedAt = performance.now();
  context.counters.queriesExecuted++;
  statementSent(lease, true, startedAt);
  let isDone = false;
  const finish = (error: Error | undefined, result?: pg.QueryResult) => {
    if (isDone) return;
    isDone = true;
    if (message) settleQueryTrace(message, error ?? thrown, result);
    statementAnswered(lease, true);
    context.queryTime.record(performance.now() - startedAt);
    if (error && isConnectionFailure(error)) markBroken(lease);
    else if (error && isReadTimeout(error)) statementLeftRunning(lease);
    if (isNewName && isPrepared(client, name)) statementPrepared(lease, name);
    if (result !== undefined)
      lease.sessionChanges = observeStatement(
        lease.sessionChanges,
        typeof query === 'string' ? query : (query as pg.QueryConfig).text,
        result,
      );
  };
  const send = (done: QueryCallback) => {
    const answered = (error: Error | null | undefined, result: pg.QueryResult | undefined) => {
      finish(error ?? undefined, error ? undefined : result);
      done(error ?? undefined, result);
    };
    try {
      if (autoName === undefined) return sendAsGiven(client, config, values, answered);
      let isAnswered = false;
      const named = namedQuery(prepared!.statement, prepared!.values, autoName, (error, result) => {
        // pg calls back twice for a value it could not serialize (the error, then its Sync's answer).
        if (isAnswered) return;
        isAnswered = true;
        const text = prepared!.text;
        const plan = error ? afterNamedFailure(lease, statements!, text, error, named) : 'fail';
        if (plan === 'fail') return answered(error, result as pg.QueryResult | undefined);
        // Outside a transaction nothing ran: the same statement once more, unnamed (src/query-client.ts).
        sendAsGiven(client, config, values, (unnamedError, unnamedResult) => {
          if (!unnamedError && plan === 'check') statements!.forget(text);
          answered(unnamedError, unnamedResult);
        });
      });
      client.query(named as unknown as pg.Submittable);
    } catch (error) {
      // pg's synchronous argument errors (a malformed config): nothing was sent.
      thrown = error;
      finish(undefined);
      throw error;
    }
  };
  if (own) {
    send(own);
    if (message) queryChannel.end.publish(message);
    return undefined;
  }
  const answer = new PromiseClass<pg.QueryResult>((resolve, reject) =>
    send((error, result) => {
      if (!error) return resolve(result!);
      // As pg does: a stack that leads back to the caller, not to the socket's read.
      Error.captureStackTrace(error);
      reject(error);
    }),
  );
  if (message) queryChannel.end.publish(message);
  return answer;
}

/** pg's `client.query` with the statement as the caller gave it (a config object too, in this three-argument form). */
function sendAsGiven(
  client: pg.PoolClient,
  config: string | pg.QueryConfig,
  values: unknown,
  callback: (error: Error | null | undefined, result: pg.QueryResult | undefined) => void,
): void {
  (client.query as (q: unknown, v: unknown, cb: (error: Error | undefined, result: pg.QueryResult) => void) => void)(
    config,
    values,
    callback,
  );
}

/**
 * Whether the statement about to be sent will run outside a transaction: the session is idle (pg's
 * last ReadyForQuery), nothing of the caller's is still queued or in flight (a `BEGIN` sent without
 * waiting would make it run inside one), pg's pipeline mode is off, and the holder has not run
 * `PREPARE`, `DEALLOCATE` or `DISCARD ALL` (after which pg's list of prepared statements may lie).
 */
function isIdleOutsideTransaction(lease: Lease): boolean {
  const client = lease.client;
  return (
    client.getTransactionStatus() === 'I' &&
    !isBusy(client) &&
    !(client as { pipeline?: boolean }).pipeline &&
    !hasTouchedPreparedStatements(lease.sessionChanges)
  );
}

/** The config keys a statement may have and still be sent as an automatic prepared statement. */
const PREPARABLE_KEYS = new Set(['text', 'values', 'rowMode', 'types']);

/**
 * What pool.query may send as an automatic prepared statement: a text with values, or a config with
 * nothing but `text`, `values`, `rowMode: 'array'` and `types` (as Drizzle and Prisma's adapter send
 * them); values given beside a config win, as in pg. Anything else (a `name` of the caller's own,
 * `rows`, `binary`, `queryMode`, a callback in the config...) is sent as pg sends it.
 */
function preparable(
  query: string | pg.QueryConfig,
  values: unknown,
): { text: string; statement: DescribedStatement; values: unknown[] } | undefined {
  if (typeof query === 'string')
    return Array.isArray(values) && values.length > 0 ? { text: query, statement: query, values } : undefined;
  const bound: unknown = Array.isArray(values) ? values : query.values;
  if (typeof query.text !== 'string' || !Array.isArray(bound) || bound.length === 0) return undefined;
  const config = query as pg.QueryConfig & { rowMode?: unknown };
  for (const key of Object.keys(config))
    if (!PREPARABLE_KEYS.has(key) && config[key as keyof typeof config] !== undefined) return undefined;
  if (config.rowMode !== undefined && config.rowMode !== 'array') return undefined;
  const statement: DescribedStatement = { text: config.text };
  if (config.rowMode === 'array') statement.rowMode = 'array';
  if (config.types !== undefined) statement.types = config.types;
  return { text: config.text, statement, values: bound };
}

/** The `codecheck-db:query` message of a statement of the drop-in Pool (text and the count of its values only). */
function facadeMessage(lease: Lease, context: QueryContext, config: string | pg.QueryConfig, values: unknown): QueryMessage {
  const bound = Array.isArray(values) ? values : typeof config === 'string' ? undefined : config.values;
  return {
    operation: 'query',
    text: typeof config === 'string' ? config : String(config.text),
    parameterCount: Array.isArray(bound) ? bound.length : 0,
    transaction: context.transaction,
    ...serverOf(lease.client, lease.owner.server),
  };
}

/**
 * The stand-in pg runs for a caller's submittable: it counts as the caller's unanswered work until pg
 * hands it ReadyForQuery or an error (a release meanwhile cancels it and destroys the connection),
 * and is timed until then.
 */
function trackSubmittable(query: Submittable, lease: Lease, context: QueryContext): Submittable {
  const startedAt = performance.now();
  let isEnded = false;
  streamOpened(lease);
  return handOver(
    query,
    () => {
      if (isEnded) return;
      isEnded = true;
      streamClosed(lease);
      context.queryTime.record(performance.now() - startedAt);
    },
    () => lease.owner.abandon(lease),
  );
}
