import pg from 'pg';
import type { CallWork } from '../call-frame.js';
import type { CheckedCall } from '../call-options.js';
import { setSessionReadOnly } from '../call-work.js';
import { isBusy, setKeepAlive } from '../client-internals.js';
import { DatabaseConnectionError, PoolClosedError, PoolTimeoutError } from '../errors.js';
import { summarize } from '../error-summary.js';
import type { HealthReport } from '../health.js';
import type { QueryContext } from '../query-context.js';
import type { PoolStats } from '../stats.js';
import { startTimer } from '../timers.js';
import { isSubmittable, queryArguments, sendFacadeQuery, type QueryCallback } from './facade-query.js';
import { markBroken, type Lease } from '../pool/lease.js';
import { retryAfter } from '../replicas/failover-retry.js';
import { observeStatement, SESSION_CLEAN } from '../pool/session-state.js';
import { openStandaloneBacking, type PoolBacking } from './pool-backing.js';
import { ClientFacade, type ClientHost } from './pool-client.js';
import { resolvePoolConfig, type FacadeSettings, type PoolConfig } from './pool-config.js';

type ConnectCallback = (error: Error | undefined, client: pg.PoolClient | undefined, done: (release?: unknown) => void) => void;

const NOOP = () => undefined;
/** How long end() waits for work asked for before it (pg-pool waits without a deadline). */
const END_WAIT_MILLIS = 10_000;

/**
 * A failure as pg reports it: a connection that could not be opened rejects with pg's own error (the
 * socket's or the server's, with its `code`), a deadline with pg-pool's words in front of the
 * library's message. The library's classes stay for what pg has no class for (PoolTimeoutError,
 * PoolClosedError, CIRCUIT_OPEN).
 */
function asPgError(error: Error): Error {
  if (error instanceof PoolTimeoutError) {
    error.message = `timeout exceeded when trying to connect: ${error.message}`;
    return error;
  }
  if (error instanceof DatabaseConnectionError && error.code === 'CONNECTION_FAILED' && error.cause instanceof Error)
    return error.cause;
  return error;
}
/** One `pool.query` statement, run in the Database's call frame: read-write, on the primary, no signal or timeout. */
interface StatementCall extends CheckedCall {
  readonly query: unknown;
  readonly values: unknown;
}

/** Set by {@link createPoolView} for the constructor it calls; never visible to callers. */
let viewBacking: PoolBacking | undefined;

/** pg-pool's own option names for what the Database resolved, so `pool.options` reads as pg's. */
function pgOptionsOf(backing: PoolBacking, given: object, settings: FacadeSettings): Record<string, unknown> {
  const c = backing.config;
  const options: Record<string, unknown> = {
    ...given,
    host: c.host,
    port: c.port,
    user: c.user,
    database: c.database,
    max: c.max,
    min: c.min,
    idleTimeoutMillis: c.idleTimeoutMillis,
    connectionTimeoutMillis: settings.isUnboundedWait ? 0 : c.connectionTimeoutMillis,
    maxLifetimeSeconds: c.maxLifetimeMillis / 1000,
    application_name: c.applicationName,
    allowExitOnIdle: true,
  };
  // pg-pool hides it from enumeration and logs; Prisma's adapter reads it back for a shadow database.
  if (c.password !== undefined) options.password = c.password;
  return options;
}

/**
 * node-postgres' `pg.Pool`, with this library underneath: `import { Pool } from '@codecheck/db'`
 * instead of `from 'pg'`, or hand `db.pool` to an ORM. It is a `pg.Pool` (`instanceof` holds for the
 * `pg` the application uses) with pg's API and semantics — `query` (autocommit, read-write, on the
 * primary, one round trip), `connect` giving a `PoolClient`, `end`, the counts, `options` and the
 * events `connect`, `acquire`, `release`, `remove`, `error` — and the library's guarantees on every
 * path: an acquire deadline (`PoolTimeoutError`), validation on checkout, session timeouts, TLS as
 * libpq means it, stats and health, leak detection, graceful shutdown, the circuit breaker, the
 * statement watchdog and release hygiene. docs/drop-in.md lists where it deliberately differs from pg.
 *
 * @throws {ConfigError} `CONFIG_INVALID` from the constructor, naming every refused or malformed key.
 */
export class Pool extends pg.Pool {
  readonly #backing: PoolBacking;
  readonly #settings: FacadeSettings;
  readonly #host: ClientHost;
  /** The facade serving each connection while a caller keeps it (pg-pool hands out the same object each time). */
  readonly #facades = new WeakMap<pg.Client, WeakRef<ClientFacade>>();
  /** Connections whose onConnect/verify hooks have run. */
  readonly #prepared = new WeakSet<pg.Client>();
  /** Checkouts per connection, for `maxUses`. */
  readonly #uses = new WeakMap<pg.Client, number>();
  #endCalled = false;
  /** Checkouts asked for and not yet released (pg-pool's end() lets them finish). */
  #outstanding = 0;
  #onDrained: (() => void) | undefined;
  /** pool.query's work in the call frame. */
  readonly #statementWork: CallWork<StatementCall, pg.QueryResult, pg.QueryResult> = {
    run: (call, lease, context) => this.#runStatement(call, lease, context),
    finish: (result) => result,
    // As executeQuery's write: sent again only when nothing ran (a standby refused it during a failover).
    mayRetry: (_call, lease, error, attempt) => retryAfter(lease, error, { isReadOnly: false, isStatement: true, attempt }),
  };

  constructor(config?: PoolConfig) {
    const view = viewBacking;
    viewBacking = undefined;
    const resolved = view ? undefined : resolvePoolConfig(config);
    // pg.Pool opens nothing in the background: min defaults to pg's 0 unless DB_POOL_MIN says otherwise.
    if (resolved && resolved.options.min === undefined && (process.env.DB_POOL_MIN ?? '').trim() === '') resolved.options.min = 0;
    const backing = view ?? openStandaloneBacking(resolved!.options);
    const settings = resolved?.settings ?? resolvePoolConfig({}).settings;
    super(pgOptionsOf(backing, view ? {} : (config ?? {}), settings));
    this.#backing = backing;
    this.#settings = settings;
    for (const warning of settings.warnings) backing.log.warn(warning);
    const Promise = (this as unknown as { Promise: PromiseConstructorLike }).Promise;
    this.#host = {
      context: backing.context,
      settings,
      Promise,
      endCheckout: (client, lease, error) => this.#endCheckout(client, lease, error),
      setupQuery: (client, query, values, callback) => this.#setupQuery(client, query, values, callback),
      reclaim: (lease) => {
        backing.log.warn(
          'a client checked out with pool.connect() was garbage-collected without release(); its connection was closed and its slot freed (a leak in the caller)',
        );
        markBroken(lease);
        this.#give(lease);
        this.#settle();
      },
    };
    // pg-pool keeps `ending`/`ended` as fields; here they follow the Database's lifecycle (db.shutdown() ends db.pool too).
    Object.defineProperty(this, 'ending', { get: () => !this.#isAccepting(), set: NOOP, configurable: true });
    Object.defineProperty(this, 'ended', { get: () => backing.state() === 'closed', set: NOOP, configurable: true });
    backing.primary.subscribe({
      connect: (client) => {
        if (settings.keepAlive) setKeepAlive(client, settings.keepAlive.initialDelayMillis);
        if (this.listenerCount('connect') > 0) this.emit('connect', this.#facadeFor(client).client);
      },
      remove: (client) => this.emit('remove', this.#facades.get(client)?.deref()?.client ?? client),
      error: (error, client) => {
        if (this.listenerCount('error') === 0) return; // the node pool has logged it
        const facade = this.#facades.get(client)?.deref()?.client ?? client;
        (error as Error & { client?: unknown }).client = facade;
        this.emit('error', error, facade);
      },
    });
  }

  get #Promise(): PromiseConstructorLike {
    return this.#host.Promise;
  }

  /** The Database's stats (`getStats()`): the Pool's traffic is counted there. */
  getStats(): PoolStats {
    return this.#backing.getStats();
  }

  /** The Database's health report (`healthCheck()`); never rejects. */
  healthCheck(options?: { timeoutMillis?: number }): Promise<HealthReport> {
    return this.#backing.healthCheck(options);
  }

  static {
    // pg.Pool's members keep their declared types (@types/pg); these are the implementations.
    const counts: Record<string, (pool: Pool) => number> = {
      totalCount: (pool) => pool.#backing.primary.snapshot().total,
      idleCount: (pool) => pool.#backing.primary.snapshot().idle,
      waitingCount: (pool) => pool.#backing.primary.snapshot().waiting,
      // Connections past their lifetime are retired at release, never kept waiting: none to count.
      expiredCount: () => 0,
    };
    for (const [name, count] of Object.entries(counts))
      Object.defineProperty(Pool.prototype, name, {
        get(this: Pool) {
          return count(this);
        },
        configurable: true,
      });
    const methods = {
      connect(this: Pool, callback?: ConnectCallback) {
        return this.#connect(callback);
      },
      query(this: Pool, query: unknown, values?: unknown, callback?: unknown) {
        return this.#query(query, values, callback);
      },
      end(this: Pool, callback?: (error?: Error) => void) {
        return this.#end(callback);
      },
    };
    for (const [name, method] of Object.entries(methods))
      Object.defineProperty(Pool.prototype, name, { value: method, writable: true, configurable: true });
  }

  /** False once end() was called or the Database is shutting down. */
  #isAccepting(): boolean {
    return !this.#endCalled && this.#backing.state() === 'open';
  }

  /** A checkout or pool.query ended; end() waits for the count to reach 0. */
  #settle(): void {
    if (--this.#outstanding === 0) this.#onDrained?.();
  }

  #connect(callback?: ConnectCallback): Promise<pg.PoolClient> | void {
    if (!this.#isAccepting()) {
      const error = new PoolClosedError('Cannot use a pool after calling end on the pool (the database pool is closed)');
      this.#backing.countError();
      if (callback) return callback(error, undefined, NOOP);
      return this.#reject(error) as unknown as Promise<pg.PoolClient>;
    }
    // Not pg-pool's connect: the checkout is the node pool's (its own pg-pool instance is what
    // instrumentations such as OpenTelemetry's see: one pg-pool.connect span per checkout).
    const checkingOut = this.#checkOut().catch((error: Error) => {
      this.#backing.countError();
      throw asPgError(error);
    });
    if (!callback)
      return new this.#Promise<pg.PoolClient>((resolve, reject) => checkingOut.then(resolve, reject)) as Promise<pg.PoolClient>;
    checkingOut.then(
      (client) => callOutside(callback, undefined, client, client.release as (release?: unknown) => void),
      (error: Error) => callOutside(callback, error, undefined, NOOP),
    );
  }

  #query(query: unknown, values: unknown, callback: unknown): unknown {
    if (typeof query === 'function') {
      const error = new TypeError('Passing a function as the first parameter to pool.query is not supported');
      process.nextTick(query as QueryCallback, error);
      return undefined;
    }
    const args = queryArguments(values, callback);
    if (args.callback) return void this.#run(query, args.values, args.callback);
    return new this.#Promise((resolve, reject) =>
      this.#run(query, args.values, (error, result) => (error ? reject(error) : resolve(result!))),
    );
  }

  /** pool.query: a checkout, one statement, a release. */
  #run(query: unknown, values: unknown, done: QueryCallback): void {
    const fail = (error: Error) => {
      this.#backing.countError();
      done(asPgError(error));
    };
    if (!this.#isAccepting()) return void process.nextTick(fail, new PoolClosedError());
    if (isSubmittable(query))
      return void process.nextTick(
        fail,
        new TypeError(
          'pool.query does not take a cursor, stream or COPY: check out a client with pool.connect(), pass it to client.query, and release the client when the stream ends',
        ),
      );
    // With listeners or hooks the checkout goes through a client facade (pg emits acquire/release
    // with a client); otherwise the statement runs on the lease directly.
    const needsFacade =
      this.listenerCount('acquire') > 0 ||
      this.listenerCount('release') > 0 ||
      this.#settings.onConnect !== undefined ||
      this.#settings.verify !== undefined;
    if (needsFacade) {
      this.#checkOut().then((client) => {
        try {
          client.query(query as string, values as unknown[], (error: Error | undefined, result: pg.QueryResult) => {
            client.release();
            if (error) fail(error);
            else done(undefined, result);
          });
        } catch (error) {
          client.release();
          fail(error as Error);
        }
      }, fail);
      return;
    }
    // The Database's own call frame: its acquire (deadline, validation, leak stack), release (the
    // session-state hygiene) and its count of a failed call in `errors`.
    this.#outstanding++;
    const call: StatementCall = {
      isReadOnly: false,
      target: undefined,
      afterWrite: undefined,
      signal: undefined,
      timeoutMillis: undefined,
      query,
      values,
    };
    this.#backing.frame.run(call, this.#statementWork).then(
      (result) => {
        this.#settle();
        done(undefined, result);
      },
      (error: Error) => {
        this.#settle();
        done(asPgError(error));
      },
    );
  }

  /** pool.query's statement on the connection the frame checked out, read-write like every statement of pg's. */
  async #runStatement(call: StatementCall, lease: Lease, context: QueryContext): Promise<pg.QueryResult> {
    if (lease.isSessionReadOnly) await setSessionReadOnly(lease, false);
    this.#log('dispatching query');
    const result = await new Promise<pg.QueryResult>((resolve, reject) =>
      sendFacadeQuery(lease, context, this.#settings, Promise, call.query, call.values, (error, result) =>
        error ? reject(error) : resolve(result!),
      ),
    );
    this.#log('query dispatched');
    this.#countUse(lease);
    return result;
  }

  /** A checkout of the primary through the call frame, its session read-write (pg's statements are). */
  async #acquire(): Promise<Lease> {
    const lease = await this.#backing.frame.checkOut();
    if (!lease.isSessionReadOnly) return lease;
    try {
      await setSessionReadOnly(lease, false);
      return lease;
    } catch (error) {
      this.#give(lease);
      throw error;
    }
  }

  /** pool.connect: a checkout handed out as a client facade, after the connection's hooks ran once. */
  async #checkOut(): Promise<pg.PoolClient> {
    this.#outstanding++;
    let lease: Lease;
    try {
      lease = await this.#acquire();
    } catch (error) {
      this.#settle();
      throw error;
    }
    const facade = this.#facadeFor(lease.client);
    facade.begin(lease);
    this.#prepareConnection(lease);
    if (!this.#prepared.has(lease.client) && (this.#settings.onConnect || this.#settings.verify)) {
      try {
        await this.#runHooks(facade.client);
        this.#prepared.add(lease.client);
        // The hooks set the connection up: their session changes are its baseline, not this holder's.
        this.#backing.primary.addSessionBaseline(lease.client, lease.sessionChanges);
        lease.sessionChanges = SESSION_CLEAN;
      } catch (error) {
        facade.client.release(true);
        throw error;
      }
    }
    this.emit('acquire', facade.client);
    return facade.client;
  }

  /** pg's own query on a connection not yet handed out, observed into its baseline. */
  #setupQuery(client: pg.PoolClient, query: unknown, values: unknown, callback: QueryCallback | undefined): unknown {
    const text = typeof query === 'string' ? query : (query as { text?: string } | null)?.text;
    const observe = (result: pg.QueryResult | undefined) =>
      this.#backing.primary.addSessionBaseline(client, observeStatement(SESSION_CLEAN, text, result));
    const send = client.query as (q: unknown, v: unknown, cb?: QueryCallback) => unknown;
    if (isSubmittable(query)) return send.call(client, query, values, callback);
    if (callback)
      return send.call(client, query, values, (error, result) => {
        if (!error) observe(result);
        callback(error, result);
      });
    const sent = send.call(client, query, values) as Promise<pg.QueryResult>;
    sent.then(observe, NOOP);
    return sent;
  }

  #prepareConnection(lease: Lease): void {
    if (this.#settings.pipeline) (lease.client as { pipeline: boolean }).pipeline = true;
  }

  async #runHooks(client: pg.PoolClient): Promise<void> {
    const { onConnect, verify } = this.#settings;
    if (onConnect) await onConnect(client);
    if (verify)
      await new Promise<void>((resolve, reject) => verify(client, (error?: Error) => (error ? reject(error) : resolve())));
  }

  #facadeFor(client: pg.PoolClient): ClientFacade {
    const existing = this.#facades.get(client)?.deref();
    if (existing && !existing.isCheckedOut) return existing;
    const facade = new ClientFacade(client, this.#host);
    this.#facades.set(client, new WeakRef(facade));
    return facade;
  }

  #endCheckout(client: pg.PoolClient, lease: Lease, error: unknown): void {
    this.emit('release', error, client);
    this.#finish(lease, Boolean(error));
    this.#settle();
  }

  /**
   * Ends a checkout. Stronger than pg-pool's release: a truthy argument, a broken connection or one
   * past `maxUses` is closed; the node pool's release does the rest (src/pool/node-pool.ts): a
   * statement, cursor, stream or COPY still running is cancelled and its connection closed, an open
   * transaction rolled back, a changed session reset in one message (with the holder's named
   * statements deallocated) or closed, and a clean one put back with no round trip.
   */
  #finish(lease: Lease, shouldDestroy: boolean): void {
    const client = lease.client;
    if (shouldDestroy) markBroken(lease);
    if (this.#settings.pipeline) (client as { pipeline: boolean }).pipeline = false;
    this.#countUse(lease);
    // Whatever pg still runs that the facade did not see sent (its own queue): never handed to another caller.
    if (lease.callerUnanswered === 0 && isBusy(client)) markBroken(lease);
    this.#give(lease);
  }

  /** Counts a checkout of the lease's connection for `maxUses`; the last one closes it at release. */
  #countUse(lease: Lease): void {
    if (this.#settings.maxUses === Infinity) return;
    const uses = (this.#uses.get(lease.client) ?? 0) + 1;
    this.#uses.set(lease.client, uses);
    if (uses < this.#settings.maxUses) return;
    this.#log('remove expended client');
    markBroken(lease);
  }

  #give(lease: Lease): void {
    const releasing = lease.owner.release(lease);
    if (releasing) releasing.catch((error: unknown) => this.#backing.log.warn({ error: summarize(error) }, 'release failed'));
  }

  /**
   * pool.end(): new work is refused at once; checkouts and pool.query calls asked for before it may
   * finish, as in pg-pool, but within one deadline ({@link END_WAIT_MILLIS}); then the Database shuts
   * down (`shutdown()`), cancelling what still runs. For `db.pool`, that is the whole Database. A
   * second call fails, as in pg-pool.
   */
  #end(callback?: (error?: Error) => void): Promise<void> | void {
    if (this.#endCalled) {
      const error = new PoolClosedError('Called end on pool more than once');
      if (callback) return callback(error);
      return this.#reject(error) as unknown as Promise<void>;
    }
    this.#endCalled = true;
    const deadline = Date.now() + END_WAIT_MILLIS;
    const ended = this.#drain().then(() => this.#backing.shutdown({ timeoutMillis: Math.max(0, deadline - Date.now()) }));
    if (!callback) return ended;
    ended.then(() => callback(), callback);
  }

  /** Resolves once the checkouts and pool.query calls asked for before end() are done, or at END_WAIT_MILLIS. */
  #drain(): Promise<void> {
    if (this.#outstanding === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = startTimer(END_WAIT_MILLIS, resolve, 'unref');
      this.#onDrained = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /** pg-pool's `log` option (a no-op unless given). */
  #log(message: string): void {
    (this as unknown as { log: (message: string) => void }).log(message);
  }

  #reject(error: Error): PromiseLike<never> {
    return new this.#Promise<never>((_resolve, reject) => reject(error));
  }
}

/** Calls a caller's callback outside our promise chain, so an exception it throws is not swallowed. */
function callOutside(callback: ConnectCallback, ...args: Parameters<ConnectCallback>): void {
  try {
    callback(...args);
  } catch (error) {
    process.nextTick(() => {
      throw error;
    });
  }
}

/** The `db.pool` view of an existing Database (its backing). */
export function createPoolView(backing: PoolBacking): Pool {
  viewBacking = backing;
  try {
    return new Pool();
  } finally {
    viewBacking = undefined;
  }
}
