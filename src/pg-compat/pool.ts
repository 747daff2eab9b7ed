import pg from 'pg';
import type { CallWork } from '../call-frame.js';
import type { CheckedCall } from '../call-options.js';
import { setSessionReadOnly } from '../call-work.js';
import { isBusy, setKeepAlive } from '../client-internals.js';
import { PoolClosedError } from '../errors.js';
import { summarize } from '../error-summary.js';
import type { HealthReport } from '../health.js';
import type { QueryContext } from '../query-context.js';
import type { PoolStats } from '../stats.js';
import { isSubmittable, queryArguments, sendFacadeQuery, type QueryCallback } from './facade-query.js';
import { markBroken, type Lease } from '../pool/lease.js';
import { retryAfter } from '../replicas/failover-retry.js';
import { openStandaloneBacking, type PoolBacking } from './pool-backing.js';
import { ClientFacade, type ClientHost } from './pool-client.js';
import { resolvePoolConfig, type FacadeSettings, type PoolConfig } from './pool-config.js';
import { ConnectionSetup } from './connection-setup.js';
import { EndGate } from './end-gate.js';
import { asPgError, callOutside, hideSecrets, NOOP, pgOptionsOf, type ConnectCallback } from './pg-shapes.js';

/** One `pool.query` statement, run in the Database's call frame: read-write, on the primary, no signal or timeout. */
interface StatementCall extends CheckedCall {
  readonly query: unknown;
  readonly values: unknown;
}

/** Set by {@link createPoolView} for the constructor it calls; never visible to callers. */
let viewBacking: PoolBacking | undefined;

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
  readonly #setup: ConnectionSetup;
  /** Checkouts per connection, for `maxUses`. */
  readonly #uses = new WeakMap<pg.Client, number>();
  /** end(): checkouts and pool.query calls asked for before it may finish. */
  readonly #gate = new EndGate();
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
    hideSecrets(this.options as unknown as Record<string, unknown>);
    this.#backing = backing;
    this.#settings = settings;
    this.#setup = new ConnectionSetup(settings, backing.primary);
    for (const warning of settings.warnings) backing.log.warn(warning);
    const Promise = (this as unknown as { Promise: PromiseConstructorLike }).Promise;
    this.#host = {
      context: backing.context,
      settings,
      Promise,
      endCheckout: (client, lease, error) => this.#endCheckout(client, lease, error),
      setupQuery: (client, query, values, callback) => this.#setup.query(client, query, values, callback),
      reclaim: (lease) => {
        backing.log.warn(
          'a client checked out with pool.connect() was garbage-collected without release(); its connection was closed and its slot freed (a leak in the caller)',
        );
        markBroken(lease);
        this.#give(lease);
        this.#gate.leave();
      },
    };
    backing.primary.subscribe({
      connect: (client) => {
        if (settings.keepAlive) setKeepAlive(client, settings.keepAlive.initialDelayMillis);
        // A Pool opens nothing until it is used (as pg's); from its first connection on, `min` are kept open.
        if (!view && backing.config.min > 1) queueMicrotask(() => void backing.primary.refill());
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
    const accessors: Record<string, (pool: Pool) => number | boolean> = {
      totalCount: (pool) => pool.#backing.primary.snapshot().total,
      idleCount: (pool) => pool.#backing.primary.snapshot().idle,
      waitingCount: (pool) => pool.#backing.primary.snapshot().waiting,
      // Connections past their lifetime are retired at release, never kept waiting: none to count.
      expiredCount: () => 0,
      // pg-pool keeps `ending`/`ended` as fields; here they follow the Database's lifecycle
      // (db.shutdown() ends db.pool too).
      ending: (pool) => !pool.#isAccepting(),
      ended: (pool) => pool.#backing.state() === 'closed',
    };
    // Fields pg-pool's constructor assigns: their setters take those writes. Accessors on the
    // prototype, not redefined on each instance, which would put every Pool in slow (dictionary) mode,
    // and every private field read on the hot path with it.
    const assigned = new Set(['ending', 'ended']);
    for (const [name, read] of Object.entries(accessors))
      Object.defineProperty(Pool.prototype, name, {
        get(this: Pool) {
          return read(this);
        },
        ...(assigned.has(name) ? { set: NOOP } : {}),
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
    return !this.#gate.isEndCalled && this.#backing.state() === 'open';
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
    const running = this.#statement(query, args.values);
    if (args.callback) {
      const done = args.callback;
      running.then(
        (result) => done(undefined, result),
        (error: Error) => done(error),
      );
      return undefined;
    }
    // The statement's own promise unless the pool was given another Promise class (pg's `Promise` option).
    if (this.#Promise === Promise) return running;
    return new this.#Promise((resolve, reject) => running.then(resolve, reject));
  }

  /** pool.query: a checkout, one statement, a release; rejects with pg's errors. */
  #statement(query: unknown, values: unknown): Promise<pg.QueryResult> {
    if (!this.#isAccepting()) return this.#failed(new PoolClosedError());
    if (isSubmittable(query))
      return this.#failed(
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
    if (needsFacade)
      return this.#checkOut()
        .then(
          (client) =>
            new Promise<pg.QueryResult>((resolve, reject) => {
              try {
                this.#log('dispatching query');
                client.query(query as string, values as unknown[], (error: Error | undefined, result: pg.QueryResult) => {
                  client.release();
                  if (error) return reject(error);
                  this.#log('query dispatched');
                  resolve(result);
                });
              } catch (error) {
                client.release();
                reject(error as Error);
              }
            }),
        )
        .catch((error: Error) => this.#failed(error));
    // The Database's own call frame: its acquire (deadline, validation, leak stack), release (the
    // session-state hygiene) and its count of a failed call in `errors`.
    this.#gate.enter();
    const call: StatementCall = {
      isReadOnly: false,
      target: undefined,
      afterWrite: undefined,
      signal: undefined,
      timeoutMillis: undefined,
      query,
      values,
    };
    return this.#backing.frame.run(call, this.#statementWork).then(
      (result) => {
        this.#gate.leave();
        return result;
      },
      (error: Error) => {
        this.#gate.leave();
        throw asPgError(error);
      },
    );
  }

  /** A pool.query failure outside the call frame (which counts its own): counted in `errors`, as pg words it. */
  #failed(error: Error): Promise<never> {
    this.#backing.countError();
    return Promise.reject(asPgError(error));
  }

  /**
   * pool.query's statement on the connection the frame checked out, read-write like every statement of
   * pg's. Traced on `codecheck-db:query` by `sendFacadeQuery` while someone subscribes.
   */
  #runStatement(call: StatementCall, lease: Lease, context: QueryContext): Promise<pg.QueryResult> {
    if (lease.isSessionReadOnly) return setSessionReadOnly(lease, false).then(() => this.#sendStatement(call, lease, context));
    return this.#sendStatement(call, lease, context);
  }

  #sendStatement(call: StatementCall, lease: Lease, context: QueryContext): Promise<pg.QueryResult> {
    this.#log('dispatching query');
    return new Promise<pg.QueryResult>((resolve, reject) =>
      sendFacadeQuery(
        lease,
        context,
        this.#settings,
        Promise,
        call.query,
        call.values,
        (error, result) => {
          if (error) return reject(error);
          this.#log('query dispatched');
          this.#countUse(lease);
          resolve(result!);
        },
        context.statements,
      ),
    );
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
    this.#gate.enter();
    let lease: Lease;
    try {
      lease = await this.#acquire();
    } catch (error) {
      this.#gate.leave();
      throw error;
    }
    const facade = this.#facadeFor(lease.client);
    facade.begin(lease);
    if (this.#settings.pipeline) (lease.client as { pipeline: boolean }).pipeline = true;
    try {
      await this.#setup.prepare(facade.client, lease);
    } catch (error) {
      facade.client.release(true);
      throw error;
    }
    this.emit('acquire', facade.client);
    return facade.client;
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
    this.#gate.leave();
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
   * finish, as in pg-pool, but within one deadline (10 s, src/pg-compat/end-gate.ts); then the Database shuts
   * down (`shutdown()`), cancelling what still runs. For `db.pool`, that is the whole Database. A
   * second call fails, as in pg-pool.
   */
  #end(callback?: (error?: Error) => void): Promise<void> | void {
    if (this.#gate.isEndCalled) {
      const error = new PoolClosedError('Called end on pool more than once');
      if (callback) return callback(error);
      return this.#reject(error) as unknown as Promise<void>;
    }
    const ended = this.#gate
      .close()
      .then((deadline) => this.#backing.shutdown({ timeoutMillis: Math.max(0, deadline - Date.now()) }));
    if (!callback) return ended;
    ended.then(() => callback(), callback);
  }

  /** pg-pool's `log` option (a no-op unless given). */
  #log(message: string): void {
    (this as unknown as { log: (message: string) => void }).log(message);
  }

  #reject(error: Error): PromiseLike<never> {
    return new this.#Promise<never>((_resolve, reject) => reject(error));
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
