import type pg from 'pg';
import type { Logger } from 'pino';
import { CallFrame } from './call-frame.js';
import {
  checkOperations,
  checkOptionsObject,
  checkQueryCall,
  checkTransactionCall,
  checkWithDbCall,
  type CallOptions,
  type ExecuteQueryOptions,
  type ExecuteTransactionOptions,
  type Operation,
  type QueryCall,
  type TransactionCall,
  type WithDbOptions,
} from './call-options.js';
import { queryWork, rowsOf, transactionWork } from './call-work.js';
import { loadConfig, type DatabaseOptions, type ResolvedConfig } from './config.js';
import { checkMillis } from './durations.js';
import { LoginCache } from './credentials/login-cache.js';
import { PoolClosedError } from './errors.js';
import { checkHealth, type HealthReport } from './health.js';
import { createLogger } from './logger.js';
import { summarize } from './error-summary.js';
import { NodePool } from './pool/node-pool.js';
import { createPoolView, type Pool } from './pg-compat/pool.js';
import { provideStandaloneBacking, type PoolBacking } from './pg-compat/pool-backing.js';
import { Router } from './replicas/router.js';
import type { QueryClient } from './query-client.js';
import { waitUntilReady } from './pool/ready.js';
import { buildStats, DurationRecorder, type DatabaseCounters, type PoolStats } from './stats.js';
import { StatementNames } from './prepared-statements.js';
import { transactionSettings } from './session.js';
import { startTimer } from './timers.js';
import type { Readable, Writable } from 'node:stream';
import { checkChannel, checkPayload } from './streams/channel.js';
import { checkCopyDestination, checkCopyFromSql, checkCopySource, checkCopyToSql } from './streams/copy.js';
import type { RowStream } from './streams/row-stream.js';
import {
  copyFromInTransaction,
  copyToInTransaction,
  streamInTransaction,
  type CopyOptions,
  type RunInTransaction,
  type StreamOptions,
} from './streams/transaction-streams.js';
import { Listener, type ListenOptions, type NotificationHandler, type Subscription } from './streams/listener.js';
import { checkListenTarget, listenerSettings } from './streams/listener-settings.js';

/** How long `rotateCredentials()` spreads the retirement of open connections over by default, ms. */
const DEFAULT_DRAIN_MILLIS = 10_000;

/**
 * A PostgreSQL database: a primary pool (replicas join through the router seam), transactions,
 * one-shot queries, stats, health and graceful shutdown. Configuration is resolved once, at
 * construction, from `options` over `process.env` (docs/configuration.md).
 *
 * @throws {ConfigError} `CONFIG_INVALID` from the constructor when the configuration is invalid.
 */
export class Database {
  /** The resolved, frozen configuration (password not enumerable). */
  readonly config: ResolvedConfig;
  readonly log: Logger;
  #primary: NodePool;
  #router: Router;
  #counters: DatabaseCounters = {
    queriesExecuted: 0,
    transactionsExecuted: 0,
    errors: 0,
    transactionRetries: 0,
    queriesCancelled: 0,
  };
  #acquireTime = new DurationRecorder();
  #queryTime = new DurationRecorder();
  #state: 'open' | 'closing' | 'closed' = 'open';
  #shutdown: Promise<void> | undefined;
  readonly #frame: CallFrame;
  /** Automatic prepared statement names, shared by every call and the drop-in Pool; absent when off. */
  readonly #statements: StatementNames | undefined;
  readonly #queryWork: ReturnType<typeof queryWork>;
  /** LISTEN on a dedicated connection, opened by the first `listen()` (src/streams/listener.ts). */
  readonly #listener: Listener;
  /** Logins from the password function, credentials provider or password file; undefined for a fixed password. */
  readonly #logins: LoginCache | undefined;
  /** The `db.pool` view, made on first access. */
  #poolView: Pool | undefined;

  constructor(options: DatabaseOptions = {}) {
    this.config = loadConfig(process.env, options);
    this.log = createLogger(this.config.logLevel, options.logger);
    const config = this.config;
    const preamble = transactionSettings(config);
    // Automatic prepared statements: off with maxPreparedStatements 0, or behind PgBouncer without prepared statements.
    const canPrepare = !config.pgbouncer || config.pgbouncerPreparedStatements;
    const statements =
      canPrepare && config.maxPreparedStatements > 0 ? new StatementNames(config.maxPreparedStatements) : undefined;
    this.#statements = statements;
    for (const warning of config.warnings) this.log.warn(warning);
    const source = config.loginSource;
    this.#logins = source
      ? new LoginCache(source, {
          timeoutMillis: Math.min(config.credentialsTimeoutMillis, config.connectionTimeoutMillis),
          cacheMillis: config.credentialsCacheMillis,
          log: this.log,
        })
      : undefined;
    const acquireTime = this.#acquireTime;
    this.#primary = new NodePool(config, 'primary', config, this.log, acquireTime, this.#logins);
    const replicas = config.replicas.map(
      (target) => new NodePool(target, 'replica', config, this.log, acquireTime, this.#logins),
    );
    this.#router = new Router(this.#primary, replicas, config, this.log);
    const primary = this.#primary;
    this.#listener = new Listener(listenerSettings(config, this.log, this.#logins, () => primary.hosts.pick().host.address));
    this.#queryWork = queryWork(config.pgbouncer);
    this.#frame = new CallFrame({
      router: this.#router,
      maxAcquireMillis: config.connectionTimeoutMillis,
      graceMillis: config.validationTimeoutMillis,
      leakDetectionThresholdMillis: config.leakDetectionThresholdMillis,
      replicaWaitMillis: config.replicaWaitMillis,
      queryTime: this.#queryTime,
      counters: this.#counters,
      shouldRefuseNamedStatements: config.pgbouncer && !config.pgbouncerPreparedStatements,
      statements,
      preamble,
      isOpen: () => this.#state === 'open',
    });
    this.log.info(
      {
        host: this.config.host,
        port: this.config.port,
        database: this.config.database,
        min: this.config.min,
        max: this.config.max,
        sslMode: this.config.ssl.mode,
      },
      'database pool created',
    );
  }

  /**
   * Resolves once the primary answers and `min` connections are open. Retries with backoff until
   * `timeoutMillis` (default `connectionTimeoutMillis`).
   * @throws {DatabaseConnectionError} `CONNECTION_FAILED` with the last connection error as `cause`.
   * @throws {PoolClosedError} after shutdown.
   * @throws {TypeError} when `timeoutMillis` is not a number from 1 to 2^31−1 (Node timers' bound).
   */
  async ready(options: { timeoutMillis?: number } = {}): Promise<void> {
    this.#assertOpen();
    checkOptionsObject(options, 'ready options');
    const timeoutMillis = checkMillis(options.timeoutMillis, 'ready timeoutMillis');
    const deadline = Date.now() + (timeoutMillis ?? this.config.connectionTimeoutMillis);
    await waitUntilReady(this.#primary, deadline, this.log);
    // Replicas warm up in the background: one that is down is banned, never a reason to fail startup.
    for (const node of this.#router.replicas)
      void waitUntilReady(node.pool, deadline, this.log).catch((error: unknown) => this.#router.ban(node, error));
  }

  /**
   * This Database as a node-postgres `pg.Pool` (the same object on every access), for code and ORMs
   * written against pg: it shares this Database's connections, stats, health and shutdown
   * (`db.pool.end()` shuts the Database down). Its statements are autocommit and read-write, on the
   * primary (docs/drop-in.md).
   */
  get pool(): Pool {
    return (this.#poolView ??= createPoolView(this.#poolBacking()));
  }

  static {
    provideStandaloneBacking((options) => new Database(options).#poolBacking());
  }

  /** What the drop-in Pool uses of this Database (src/pg-compat/pool-backing.ts): the same frame, node pool and counters. */
  #poolBacking(): PoolBacking {
    return {
      config: this.config,
      log: this.log,
      primary: this.#primary,
      frame: this.#frame,
      context: {
        queryTime: this.#queryTime,
        counters: this.#counters,
        statements: this.#statements,
        shouldRefuseNamedStatements: this.config.pgbouncer && !this.config.pgbouncerPreparedStatements,
      },
      countError: () => void this.#counters.errors++,
      state: () => this.#state,
      shutdown: (options) => this.shutdown(options),
      getStats: () => this.getStats(),
      healthCheck: (options) => this.healthCheck(options),
    };
  }

  /**
   * A read-your-writes token: the primary's current WAL position, which orders after every write
   * committed before this call. Pass it as `afterWrite` to a read (it is a short ASCII string, safe in
   * a header or cookie).
   * @throws {DatabaseConnectionError}, {@link PoolTimeoutError}, {@link PoolClosedError}.
   */
  async getWriteToken(options: CallOptions = {}): Promise<string> {
    checkOptionsObject(options, 'getWriteToken options');
    const rows = await this.executeQuery<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn', [], {
      ...options,
      target: 'primary',
      afterWrite: undefined,
    });
    return rows[0]!.lsn;
  }

  /**
   * Runs `fn` in a transaction on one connection: COMMIT when it resolves, ROLLBACK when it throws
   * (rethrowing fn's error). `readOnly` as a boolean is the short form of `{ readOnly }`.
   * @throws {DatabaseTransactionError} when BEGIN/COMMIT fail, COMMIT is answered with ROLLBACK, or a
   * serialization failure outlives `retries`. {@link PoolTimeoutError}, {@link PoolClosedError},
   * {@link DatabaseConnectionError}, {@link DatabaseQueryError} (`QUERY_CANCELLED` on abort/timeout).
   */
  withDb<T>(readOnlyOrOptions: boolean | WithDbOptions, fn: (client: QueryClient) => Promise<T>): Promise<T> {
    let call: TransactionCall<T>;
    try {
      call = checkWithDbCall(readOnlyOrOptions, fn);
    } catch (error) {
      return this.#reject(error);
    }
    return this.#frame.run(call, transactionWork) as Promise<T>;
  }

  /**
   * Runs one statement and returns its rows. Read-only by default (enforced by the server, without an
   * extra round trip). A read-only statement whose connection proves dead before answering is retried
   * once on another connection within the same deadline. Behind PgBouncer (`pgbouncer`) the statement
   * runs in a transaction of its own, in two round trips, so statements that cannot run in a
   * transaction block (VACUUM) fail with SQLSTATE 25001 (docs/operations.md).
   */
  executeQuery<R extends pg.QueryResultRow = Record<string, unknown>>(
    text: string,
    params?: readonly unknown[],
    options: ExecuteQueryOptions = {},
  ): Promise<R[]> {
    let call: QueryCall;
    try {
      call = checkQueryCall(text, params, options);
    } catch (error) {
      return this.#reject(error);
    }
    return this.#frame.run(call, this.#queryWork) as Promise<R[]>;
  }

  /** Runs every operation in one transaction, all or nothing; returns each operation's rows. */
  executeTransaction<R extends pg.QueryResultRow = Record<string, unknown>>(
    operations: readonly Operation[],
    options: ExecuteTransactionOptions = {},
  ): Promise<R[][]> {
    let call: TransactionCall<R[][]>;
    try {
      const checked = checkOperations(operations);
      checkOptionsObject(options, 'executeTransaction options');
      call = checkTransactionCall({ readOnly: false, ...options }, async (client) => {
        const results: R[][] = [];
        for (const op of checked) results.push(rowsOf(await client.query<R>(op.text, op.params)));
        return results;
      });
    } catch (error) {
      return this.#reject(error);
    }
    return this.#frame.run(call, transactionWork) as Promise<R[][]>;
  }

  /**
   * The rows of one statement, read through a cursor in batches (`batchSize`, default 100) so memory
   * stays flat whatever the row count: `for await (const row of db.stream<Row>(sql, params)) ...`, or
   * `.toReadable()` for `pipeline`. Runs in a transaction of its own, read-only by default (so a
   * replica may serve it) and holds its connection only while being read: the last row, `break`, a
   * throw in the loop, `signal` or `timeoutMillis` (for the whole stream) closes the cursor and
   * releases the connection at once. statement_timeout applies to each batch. Nothing is sent until
   * iteration starts; errors (the same classes as `withDb`) reject the iteration step.
   */
  stream<R extends pg.QueryResultRow = Record<string, unknown>>(
    text: string,
    params?: readonly unknown[],
    options: StreamOptions = {},
  ): RowStream<R> {
    return streamInTransaction<R>(this.#run, text, params, options, () => void this.#counters.errors++);
  }

  /**
   * Runs `COPY ... FROM STDIN` fed by `source` in a transaction of its own on the primary, with
   * `stream/promises.pipeline` semantics; resolves with the number of rows copied, once committed. A
   * source that fails aborts the COPY (CopyFail): nothing is copied, the call rejects with its error.
   * @throws {TypeError} when `sql` is not a COPY ... FROM STDIN statement.
   */
  copyFrom(
    sql: string,
    source: Readable | AsyncIterable<unknown> | Iterable<unknown>,
    options: CopyOptions = {},
  ): Promise<number> {
    try {
      checkCopyFromSql(sql);
      checkCopySource(source);
      checkOptionsObject(options, 'copyFrom options');
    } catch (error) {
      return this.#reject(error);
    }
    return copyFromInTransaction(this.#run, sql, source, options);
  }

  /**
   * Runs `COPY ... TO STDOUT` into `destination` in a read-only transaction of its own (a replica may
   * serve it) with pipeline semantics; resolves with the number of rows. A destination that fails
   * cancels the COPY and destroys its connection (it is never reused mid-COPY).
   * @throws {TypeError} when `sql` is not a COPY ... TO STDOUT statement.
   */
  copyTo(
    sql: string,
    destination: Writable,
    options: CopyOptions & Pick<CallOptions, 'target' | 'afterWrite'> = {},
  ): Promise<number> {
    try {
      checkCopyToSql(sql);
      checkCopyDestination(destination);
      checkOptionsObject(options, 'copyTo options');
    } catch (error) {
      return this.#reject(error);
    }
    return copyToInTransaction(this.#run, sql, destination, options);
  }

  #run: RunInTransaction = (options, fn) => this.withDb(options, fn);

  /**
   * Calls `onNotification(payload)` for every NOTIFY on `channel`, received on one dedicated
   * connection per Database (not from the pool; `listenUrl` / DB_LISTEN_URL, else the primary).
   * Resolves once the server listens, so a NOTIFY sent afterwards is delivered. After any loss of
   * that connection it reconnects with backoff forever, LISTENs again, then calls `onReconnect`
   * (notifications sent meanwhile are lost: resync there). Channel names are case-sensitive.
   * @throws {TypeError} for a malformed channel or handler. {@link ConfigError} behind PgBouncer
   * without `listenUrl`. {@link DatabaseConnectionError} `CONNECTION_FAILED` when LISTEN did not
   * succeed within `connectionTimeoutMillis`. {@link PoolClosedError} after shutdown.
   */
  async listen(channel: string, onNotification: NotificationHandler, options: ListenOptions = {}): Promise<Subscription> {
    checkOptionsObject(options, 'listen options');
    this.#assertOpen();
    checkListenTarget(this.config);
    return this.#listener.listen(channel, onNotification, options);
  }

  /**
   * Sends a notification through the pool (`SELECT pg_notify($1, $2)` on the primary, counted as a
   * query). Inside a transaction, use `client.query('SELECT pg_notify($1, $2)', ...)` instead: it is
   * delivered on COMMIT.
   * @throws {TypeError} for a malformed channel, or a payload that is not a string of fewer than 8000 bytes.
   */
  async notify(channel: string, payload = '', options: CallOptions = {}): Promise<void> {
    try {
      checkChannel(channel);
      checkPayload(payload);
      checkOptionsObject(options, 'notify options');
    } catch (error) {
      return this.#reject(error as Error);
    }
    await this.executeQuery('SELECT pg_notify($1, $2)', [channel, payload], { ...options, readOnly: false, target: 'primary' });
  }

  /**
   * After a credentials rotation: asks the provider (or password file) for a login now, then retires
   * every open connection, spread evenly over `drainMillis` (default 10000) so they are reopened a
   * few at a time with the new login. Idle connections are closed when their turn comes; a connection
   * checked out then is closed when released. Resolves once the last idle one is closed; new
   * connections use the new login from the moment the provider answered. The notification listener's
   * connection (`listen()`), when it logs in as the pool does, is replaced at once: it LISTENs again
   * and calls `onReconnect`, as after a lost connection.
   * @throws {DatabaseConnectionError} `CREDENTIALS_FAILED` when the provider fails (nothing is retired).
   * @throws {PoolClosedError} after shutdown. {@link TypeError} for a bad `drainMillis`.
   */
  async rotateCredentials(options: { drainMillis?: number } = {}): Promise<void> {
    checkOptionsObject(options, 'rotateCredentials options');
    this.#assertOpen();
    const drainMillis = checkMillis(options?.drainMillis, 'drainMillis', 0) ?? DEFAULT_DRAIN_MILLIS;
    await this.#logins?.refresh();
    this.#assertOpen();
    const isListenerRenewed = this.#listener.renew();
    const retired = await Promise.all(this.#router.nodes.map((node) => node.pool.retire(drainMillis)));
    this.log.info(
      { connections: retired.reduce((a, b) => a + b, 0), drainMillis, isListenerRenewed },
      'credentials rotated; connections retired',
    );
  }

  #assertOpen(): void {
    if (this.#state !== 'open') throw new PoolClosedError();
  }

  /** A call refused before it started (a malformed argument): counted as a failed call. */
  #reject(error: unknown): Promise<never> {
    this.#counters.errors++;
    return Promise.reject(error);
  }

  /** A frozen snapshot of pool gauges, exact counters and duration percentiles. Synchronous. */
  getStats(): PoolStats {
    return buildStats(
      this.#router.nodeStats(),
      { ...this.#counters },
      this.#acquireTime,
      this.#queryTime,
      this.#listener.stats(),
    );
  }

  /** Health within `timeoutMillis` (default 5000), whatever the server does. Never rejects. */
  healthCheck(options: { timeoutMillis?: number } = {}): Promise<HealthReport> {
    return checkHealth({
      isOpen: this.#state === 'open',
      stats: () => this.getStats(),
      router: this.#router,
      timeoutMillis: options?.timeoutMillis ?? 5000,
    });
  }

  /**
   * Graceful shutdown: new work rejects with PoolClosedError at once, callers waiting for a connection
   * too (queued, or on a connect in progress, which is destroyed); work holding a connection may
   * finish until `timeoutMillis` (default 10000), then its statement is cancelled and its connection
   * destroyed. Idempotent; leaves no handle open.
   * @throws {TypeError} (nothing is closed) when `timeoutMillis` is not a number from 0 to 2^31−1.
   */
  shutdown(options: { timeoutMillis?: number } = {}): Promise<void> {
    if (this.#shutdown) return this.#shutdown;
    let timeoutMillis: number | undefined;
    try {
      checkOptionsObject(options, 'shutdown options');
      timeoutMillis = checkMillis(options.timeoutMillis, 'shutdown timeoutMillis', 0);
    } catch (error) {
      return Promise.reject(error);
    }
    this.#state = 'closing';
    const deadline = Date.now() + (timeoutMillis ?? 10_000);
    this.log.info('database shutdown started');
    this.#router.close();
    void this.#listener.close();
    // The one timer deliberately left ref'd: pooled sockets are unref'd (allowExitOnIdle), so without
    // it Node can exit while `await shutdown()` is pending (a script's top-level await then ends with
    // exit code 13). It never holds the process past the deadline plus one second.
    const keepAlive = startTimer(Math.max(0, deadline - Date.now()) + 1000, () => undefined, 'ref');
    this.#shutdown = Promise.all(this.#router.nodes.map((node) => node.pool.close(deadline)))
      .then(
        () => {
          this.#state = 'closed';
          this.log.info('database shutdown complete');
        },
        (error: unknown) => {
          this.#state = 'closed';
          this.log.error({ error: summarize(error) }, 'database shutdown failed');
        },
      )
      .finally(() => clearTimeout(keepAlive));
    return this.#shutdown;
  }
}
