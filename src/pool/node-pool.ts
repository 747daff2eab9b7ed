import pg from 'pg';
import type { Logger } from 'pino';
import { CircuitBreaker } from './circuit-breaker.js';
import { isRecentlyUsed, newClientMeta, unwatchLease, watchLease, type ClientMeta } from './client-meta.js';
import { destroySocket, isQueryable, sendCancelRequest } from '../client-internals.js';
import type { ConnectionTarget, ResolvedConfig } from '../config.js';
import { DatabaseConnectionError, DbError, PoolClosedError, PoolTimeoutError, type PoolSnapshot } from '../errors.js';
import type { Lease } from './lease.js';
import { cancelledError, PermitQueue } from './permit-queue.js';
import { drainPool } from './drain.js';
import { retireConnections } from './retirement.js';
import { Refiller } from './refiller.js';
import { sessionParameters } from '../session.js';
import { summarize } from '../error-summary.js';
import { StatementWatchdog } from './statement-watchdog.js';
import { connectNegotiated, createClientClass } from '../ssl/ssl-settings.js';
import { newNodeCounters, type DurationRecorder, type NodeCounters, type NodeStats } from '../stats.js';
import type { LoginCache } from '../credentials/login-cache.js';
import { withLogin } from '../credentials/login-client.js';

/** Options for one acquire. */
export interface AcquireOptions {
  /** Epoch ms after which the acquire rejects with PoolTimeoutError. */
  deadline: number;
  signal?: AbortSignal;
  /** Stack captured for leak detection. */
  stack?: string;
  /** `ready()`'s probe: may connect while the circuit breaker is open. */
  isStartupProbe?: boolean;
}

export type NodeRole = 'primary' | 'replica';
type LifecycleState = 'open' | 'closing' | 'closed';

/**
 * One server's pool: a pg.Pool behind a FIFO permit queue of size `max`. Holding a permit means
 * pg.Pool has room (an idle client or a free slot), so pg-pool's own queue is never used and every
 * wait here has the caller's deadline, an abort signal, a queue cap and a shutdown that rejects it.
 * Checkout validates connections idle past the validation interval; release returns only clean,
 * idle-in-session connections to pg-pool and destroys the rest.
 */
export class NodePool {
  readonly name: string;
  readonly role: NodeRole;
  readonly target: ConnectionTarget;
  readonly counters: NodeCounters = newNodeCounters();
  readonly circuit: CircuitBreaker;
  #pool: pg.Pool;
  #Client: typeof pg.Client;
  #config: ResolvedConfig;
  #log: Logger;
  #acquireTime: DurationRecorder;
  #state: LifecycleState = 'open';
  #queue: PermitQueue<AcquireOptions>;
  #meta = new WeakMap<pg.Client, ClientMeta>();
  #leases = new Set<Lease>();
  #watchdog: StatementWatchdog | undefined;
  #openCancelSocket = () => connectNegotiated(this.#config.ssl, this.target);
  #clients = new Set<pg.Client>();
  /** Clients from construction until their connect settles (pg-pool's 'connect', or 'end' on failure): close destroys them. */
  #connecting = new Set<pg.Client>();
  #refiller: Refiller;
  #hasWarnedFallback = false;
  /** When an acquire last passed its deadline (epoch ms); health reports `degraded` for a minute after. */
  lastAcquireTimeoutAt = -Infinity;

  /** `logins`: where new connections get their login when `target.loginSource` is set (src/credentials/). */
  constructor(
    target: ConnectionTarget,
    role: NodeRole,
    config: ResolvedConfig,
    log: Logger,
    acquireTime: DurationRecorder,
    logins?: LoginCache,
  ) {
    this.name = target.name;
    this.role = role;
    this.target = target;
    this.#config = config;
    this.#log = log.child({ node: target.name });
    this.#acquireTime = acquireTime;
    this.#queue = new PermitQueue<AcquireOptions>(target.max, config.maxWaiting, {
      snapshot: () => this.snapshot(),
      onTimeout: (options) => this.#recordTimeout(options),
      onQueueFull: () => this.counters.poolExhaustedCount++,
    });
    this.circuit = new CircuitBreaker(config.circuitBreakerThreshold, config.circuitBreakerResetMillis);
    const Negotiating = createClientClass(config.ssl, { onPlaintextFallback: () => this.#warnFallback() });
    this.#Client = logins && target.loginSource ? withLogin(Negotiating, logins) : Negotiating;
    const Client = this.#Client;
    const connectionTimeoutMillis = config.connectionTimeoutMillis;
    const connecting = this.#connecting;
    this.#pool = new pg.Pool({
      // pg-pool arms a timer on every checkout when it has connectionTimeoutMillis, even for an idle
      // client; our permits and #connect already bound every wait, so only the client gets the
      // timeout, which pg applies to opening a new connection.
      Client: class extends Client {
        constructor(options: pg.ClientConfig) {
          // pg-pool hides `password` as a non-enumerable property, so the spread drops it.
          super({ ...options, password: options.password, connectionTimeoutMillis });
          // Tracked from construction: a connect in progress has no other handle for shutdown to reach.
          connecting.add(this);
          this.once('end', () => connecting.delete(this));
        }
      } as typeof pg.Client,
      host: target.host,
      port: target.port,
      user: target.user,
      password: target.password,
      database: target.database,
      max: target.max,
      min: target.min,
      idleTimeoutMillis: config.idleTimeoutMillis,
      allowExitOnIdle: true,
      ...sessionParameters(config),
    });
    this.#refiller = new Refiller({
      min: target.min,
      pool: this.#pool,
      permits: this.#queue,
      circuit: this.circuit,
      counters: this.counters,
      log: this.#log,
      isOpen: () => this.#state === 'open',
      markIdle: (client) => {
        this.#meta.get(client)!.idleSince = Date.now();
      },
    });
    // An idle client's error is handled by pg-pool (it removes the client); we log it so it can
    // never become an unhandled 'error' event that crashes the process.
    this.#pool.on('error', (error) => this.#log.warn({ error: summarize(error) }, 'idle connection failed and was removed'));
    this.#pool.on('connect', (client) => this.#onConnect(client));
    if (config.statementTimeoutMillis > 0) {
      // Behind PgBouncer a statement may also wait in its queue, and backend pids are PgBouncer's own.
      const grace = config.validationTimeoutMillis + (config.pgbouncer ? config.connectionTimeoutMillis : 0);
      this.#watchdog = new StatementWatchdog(this, {
        limitMillis: config.statementTimeoutMillis + grace,
        probeTimeoutMillis: config.validationTimeoutMillis,
        shouldMatchBackend: !config.pgbouncer,
        log: this.#log,
      });
    }
    this.#pool.on('remove', (client) => {
      this.#clients.delete(client);
      this.counters.connectionsClosed++;
      this.#refiller.schedule(0);
    });
  }

  /** The connections checked out now. */
  leases(): Iterable<Lease> {
    return this.#leases.values();
  }

  /** The lifecycle state: open, closing (shutdown started) or closed. */
  get state(): LifecycleState {
    return this.#state;
  }

  #onConnect(client: pg.Client): void {
    const meta = newClientMeta(Date.now(), this.#config.maxLifetimeMillis, !this.#config.pgbouncer);
    this.#meta.set(client, meta);
    this.#connecting.delete(client);
    this.#clients.add(client);
    this.counters.totalConnections++;
    // pg-pool listens only while a client is idle in it: checked out (validation, a refill round
    // holding idle clients, a lease) a server restart or pg_terminate_backend would otherwise be an
    // unhandled 'error' event that crashes the process. One listener for the client's whole life, not
    // one per lease: adding and removing a listener (and its closure) on every checkout is hot-path cost.
    client.on('error', (error: Error) => {
      meta.isBroken = true;
      const lease = meta.lease;
      if (!lease) return;
      lease.isBroken = true;
      lease.lostError ??= error;
      this.#log.warn({ error: summarize(error) }, 'checked-out connection failed');
    });
  }

  /**
   * A standalone client to this node with the pool's TLS and login settings, outside the pool (for
   * health checks and the replica monitor). Its error events are swallowed; the caller ends it.
   */
  createClient(applicationSuffix: string, connectionTimeoutMillis: number): pg.Client {
    const t = this.target;
    const client = new this.#Client({
      host: t.host,
      port: t.port,
      user: t.user,
      password: t.password,
      database: t.database,
      application_name: `${this.#config.applicationName} ${applicationSuffix}`,
      connectionTimeoutMillis,
    });
    client.on('error', () => undefined);
    return client;
  }

  /** Leak detection's report: a lease held past `leakDetectionThresholdMillis`. */
  #onLeak = (lease: Lease, stack: string | undefined): void => {
    this.counters.leaksDetected++;
    this.#log.warn(
      { heldMillis: Date.now() - lease.acquiredAt, acquiredAt: stack },
      `connection held longer than ${this.#config.leakDetectionThresholdMillis} ms (possible leak)`,
    );
  };

  #warnFallback(): void {
    if (this.#hasWarnedFallback) return;
    this.#hasWarnedFallback = true;
    this.#log.warn('sslmode=prefer: the server refused TLS, so connections of this pool are unencrypted');
  }

  snapshot(): PoolSnapshot {
    const total = this.#pool.totalCount;
    const idle = this.#pool.idleCount;
    return { total, idle, active: this.#leases.size, waiting: this.#queue.waiting, max: this.target.max };
  }

  /** Gauges and counters for `getStats().nodes`. */
  stats(extra: { status?: NodeStats['status']; lagMillis?: number | null; isInRecovery?: boolean | null } = {}): NodeStats {
    const snap = this.snapshot();
    return {
      name: this.name,
      role: this.role,
      status: this.#state === 'open' ? (extra.status ?? 'up') : 'closed',
      lagMillis: extra.lagMillis ?? null,
      isInRecovery: extra.isInRecovery ?? null,
      circuit: this.circuit.state(),
      poolSize: snap.total,
      availableConnections: snap.idle,
      activeConnections: this.#leases.size,
      waitingRequests: snap.waiting,
      minConnections: this.target.min,
      maxConnections: this.target.max,
      ...this.counters,
    };
  }

  /**
   * Checks out a validated connection before `deadline`.
   * @throws {PoolClosedError} after shutdown started. {@link PoolTimeoutError} `POOL_TIMEOUT` when the
   * deadline passes, `POOL_QUEUE_FULL` when `maxWaiting` callers already wait.
   * {@link DatabaseConnectionError} when a new connection fails, `CIRCUIT_OPEN` while the breaker is open.
   * {@link DatabaseQueryError} `QUERY_CANCELLED` when `signal` aborts.
   */
  async acquire(options: AcquireOptions): Promise<Lease> {
    const startedAt = performance.now();
    if (this.#state !== 'open') throw new PoolClosedError();
    options.signal?.throwIfAborted();
    // Fast path without a promise: a free permit and nobody queued before us.
    if (!this.#queue.tryTake()) await this.#queue.take(options);
    const permit = { isHeld: true };
    let client: pg.PoolClient | undefined;
    try {
      // The common case inline (an idle connection used recently): no extra async layer per acquire.
      const remaining = options.deadline - Date.now();
      const idle = this.#pool.idleCount > 0 && remaining > 0 ? await this.#connect(remaining, true, permit, options) : undefined;
      client = idle && this.#isReady(idle) ? idle : await this.#checkout(options, permit, idle);
    } finally {
      if (!client && permit.isHeld) this.#queue.give();
    }
    const meta = this.#meta.get(client)!;
    const lease: Lease = {
      client,
      node: this,
      acquiredAt: Date.now(),
      inFlight: 0,
      isBroken: false,
      isSessionReadOnly: meta.isSessionReadOnly,
      pending: 0,
      busySince: 0,
    };
    this.#leases.add(lease);
    watchLease(meta, lease, options.stack, this.#config.leakDetectionThresholdMillis, this.#onLeak);
    this.#acquireTime.record(performance.now() - startedAt);
    return lease;
  }

  /** Counts an acquire that passed its deadline; ready()'s startup probes do not count (nothing was served yet). */
  #recordTimeout(options: AcquireOptions): void {
    if (options.isStartupProbe) return;
    this.counters.acquireTimeouts++;
    this.counters.poolExhaustedCount++;
    this.lastAcquireTimeoutAt = Date.now();
  }

  /** An idle connection that may be handed out as it is: alive, not past its lifetime, used recently. */
  #isReady(client: pg.PoolClient): boolean {
    const meta = this.#meta.get(client)!;
    const now = Date.now();
    return !meta.isBroken && now < meta.retireAt && isRecentlyUsed(meta, now, this.#config.validationIntervalMillis);
  }

  /**
   * With a permit held: a pg client that is alive, not past its lifetime, validated when idle long.
   * `taken`: one already checked out of pg-pool that {@link #isReady} refused, judged first.
   */
  async #checkout(options: AcquireOptions, permit: { isHeld: boolean }, taken?: pg.PoolClient): Promise<pg.PoolClient> {
    for (;;) {
      let client = taken;
      taken = undefined;
      if (!client) {
        const remaining = options.deadline - Date.now();
        if (remaining <= 0) {
          this.#recordTimeout(options);
          throw new PoolTimeoutError('No usable connection within the acquire deadline', this.snapshot());
        }
        const hasIdle = this.#pool.idleCount > 0;
        if (!hasIdle && !options.isStartupProbe && !this.circuit.allowConnect()) {
          this.counters.circuitRejections++;
          throw new DatabaseConnectionError(
            `The circuit breaker for ${this.name} is open after repeated connection failures; failing fast`,
            { code: 'CIRCUIT_OPEN' },
          );
        }
        client = await this.#connect(remaining, hasIdle, permit, options);
      }
      const meta = this.#meta.get(client)!;
      const now = Date.now();
      if (now >= meta.retireAt || meta.isBroken) {
        this.#destroy(client);
        continue;
      }
      const isFresh = meta.idleSince === meta.createdAt && now - meta.createdAt < 50;
      if (isFresh || isRecentlyUsed(meta, now, this.#config.validationIntervalMillis)) return client;
      if (await this.#validate(client, Math.min(this.#config.validationTimeoutMillis, options.deadline - now))) return client;
      this.counters.validationFailures++;
      this.#destroy(client);
    }
  }

  /**
   * pg.Pool.connect bounded by the remaining deadline. A connect that outlives the deadline keeps
   * the permit (its slot in pg.Pool is taken) until it settles; a late client is put back, not leaked.
   */
  #connect(remaining: number, hasIdle: boolean, permit: { isHeld: boolean }, options: AcquireOptions): Promise<pg.PoolClient> {
    return new Promise((resolve, reject) => {
      let isSettled = false;
      let isLate = false;
      let timer: NodeJS.Timeout | undefined;
      const armDeadline = () => {
        if (isSettled) return;
        timer = setTimeout(() => {
          isLate = true;
          permit.isHeld = false;
          this.#recordTimeout(options);
          reject(
            new PoolTimeoutError(
              `Connecting took longer than the acquire deadline (${Math.round(remaining)} ms)`,
              this.snapshot(),
            ),
          );
        }, remaining);
        timer.unref();
      };
      // A caller's abort ends its wait for a new connection at once; like a late connect, the
      // connection is kept for the next caller when it opens.
      const onAbort = () => {
        if (isSettled || isLate) return;
        isLate = true;
        permit.isHeld = false;
        clearTimeout(timer);
        reject(cancelledError(options.signal!));
      };
      // A new connection: the deadline timer first, so at a tie it fires before the connect's own timeout.
      if (!hasIdle) {
        armDeadline();
        options.signal?.addEventListener('abort', onAbort, { once: true });
      }
      this.#pool.connect((error: Error | undefined, client: pg.PoolClient | undefined) => {
        isSettled = true;
        clearTimeout(timer);
        if (!hasIdle) options.signal?.removeEventListener('abort', onAbort);
        if (error || !client) {
          // Shutdown destroyed this connect (see #drain): the pool closed, the server did not fail.
          if (this.#state !== 'open') {
            if (!isLate) reject(new PoolClosedError());
            else this.#queue.give();
            return;
          }
          this.counters.connectionErrors++;
          this.circuit.recordFailure();
          this.#log.warn({ error: summarize(error) }, 'connection attempt failed');
          // CREDENTIALS_FAILED (src/credentials/) already says what failed; it is passed on as it is.
          if (!isLate)
            reject(
              error instanceof DbError
                ? error
                : new DatabaseConnectionError(`Could not connect to ${this.name}: ${error?.message}`, { cause: error }),
            );
          else this.#queue.give();
          return;
        }
        if (!hasIdle) this.circuit.recordSuccess();
        if (!isLate) return resolve(client);
        // We gave up waiting, but the connection is good: keep it for the next caller.
        this.#meta.get(client)!.idleSince = Date.now();
        client.release();
        this.#queue.give();
      });
      // pg-pool hands an idle client over on its next tick (this tick runs after it): the deadline
      // timer is needed only when that did not happen, i.e. a new connection is being opened.
      if (hasIdle) process.nextTick(armDeadline);
    });
  }

  /** A round trip with its own timeout; false when it fails or hangs. */
  async #validate(client: pg.PoolClient, timeoutMillis: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), Math.max(1, timeoutMillis));
      timer.unref();
    });
    const attempt = client.query('SELECT 1').then(
      () => true,
      () => false,
    );
    try {
      const ok = await Promise.race([attempt, timeout]);
      if (!ok) this.#log.warn('connection failed validation on checkout and was evicted');
      return ok;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Gives a lease back. A connection still running a statement, broken, past its lifetime, or whose
   * ROLLBACK of a left-open transaction fails is destroyed; only a clean idle session is reused.
   */
  release(lease: Lease): Promise<void> | undefined {
    if (!this.#leases.delete(lease)) return undefined;
    const client = lease.client;
    const meta = this.#meta.get(client)!;
    const now = Date.now();
    if (
      !lease.isBroken &&
      !meta.isBroken &&
      lease.inFlight === 0 &&
      isOutsideTransaction(client) &&
      now < meta.retireAt &&
      this.#state === 'open' &&
      isQueryable(client)
    ) {
      try {
        meta.idleSince = now;
        meta.isSessionReadOnly = lease.isSessionReadOnly;
        unwatchLease(meta);
        client.release();
      } finally {
        this.#queue.give();
      }
      return undefined;
    }
    return this.#releaseSlowly(lease, client, meta);
  }

  /** {@link release} when the connection needs a ROLLBACK, a cancel, or to be destroyed. */
  async #releaseSlowly(lease: Lease, client: pg.PoolClient, meta: ClientMeta): Promise<void> {
    try {
      let isReusable = !lease.isBroken && !meta.isBroken && lease.inFlight === 0 && isQueryable(client) && this.#state === 'open';
      if (isReusable && !isOutsideTransaction(client)) isReusable = await this.#rollback(client);
      if (isReusable && Date.now() < meta.retireAt) {
        meta.idleSince = Date.now();
        meta.isSessionReadOnly = lease.isSessionReadOnly;
        unwatchLease(meta);
        client.release();
      } else {
        if (lease.inFlight > 0) await sendCancelRequest(client, this.#openCancelSocket, this.#config.validationTimeoutMillis);
        unwatchLease(meta);
        this.#destroy(client);
      }
    } finally {
      this.#queue.give();
    }
  }

  async #rollback(client: pg.PoolClient): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), this.#config.validationTimeoutMillis);
      timer.unref();
    });
    try {
      return await Promise.race([
        client.query('ROLLBACK').then(
          () => true,
          () => false,
        ),
        timeout,
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Sends a cancel request for the statement a lease is running (used by timeouts and aborts). */
  cancel(lease: Lease): Promise<boolean> {
    return sendCancelRequest(lease.client, this.#openCancelSocket, this.#config.validationTimeoutMillis);
  }

  /**
   * Destroys a lease's connection at once and marks the lease broken: for a caller that gave up on a
   * statement its cancel request could not end (a black-holed link). Whatever the connection was
   * waiting for rejects with a connection error; {@link release} then closes it for good.
   */
  abandon(lease: Lease): void {
    lease.isBroken = true;
    destroySocket(lease.client);
  }

  #destroy(client: pg.PoolClient): void {
    try {
      client.release(true);
    } catch {
      // released already: the socket below is all that is left to close
    }
    destroySocket(client);
  }

  /**
   * Retires every connection open now, spread over `spreadMillis` (see {@link retireConnections}):
   * new connections take their place with the current login. Resolves with the number retired.
   */
  retire(spreadMillis: number): Promise<number> {
    return retireConnections(
      {
        pool: this.#pool,
        permits: this.#queue,
        clients: this.#clients,
        meta: (client) => this.#meta.get(client),
        destroy: (client) => this.#destroy(client),
        isOpen: () => this.#state === 'open',
      },
      spreadMillis,
    );
  }

  /** Tops the pool up towards `min` now (one round; see {@link Refiller.refill}). Never rejects. */
  refill(): Promise<void> {
    return this.#refiller.refill();
  }

  /**
   * Number of connections currently open (idle + checked out). Not pg.Pool's totalCount, which also
   * counts connects still in progress: ready() must not resolve while one of its `min` may yet fail.
   */
  get openConnections(): number {
    return this.#clients.size;
  }

  /**
   * Starts shutdown: waiting callers reject with PoolClosedError at once, and so do callers waiting on
   * a connect in progress (the connect is destroyed); leases may finish until `deadline`, then their
   * statements are cancelled and their connections destroyed (see {@link drainPool}). Idempotent.
   */
  async close(deadline: number): Promise<void> {
    if (this.#state !== 'open') return this.#closed;
    this.#state = 'closing';
    this.#watchdog?.stop();
    this.#refiller.stop();
    this.#queue.close();
    const target = {
      pool: this.#pool,
      leases: this.#leases,
      connecting: this.#connecting,
      clients: this.#clients,
      log: this.#log,
      release: (lease: Lease) => this.release(lease),
    };
    this.#closed = drainPool(target, deadline).then(() => {
      this.#state = 'closed';
    });
    return this.#closed;
  }

  #closed: Promise<void> = Promise.resolve();
}

/** pg's status from the last ReadyForQuery: 'I' outside a transaction ('T' in one, 'E' in a failed one; null before the first). */
function isOutsideTransaction(client: pg.Client): boolean {
  const status = client.getTransactionStatus();
  return status === 'I' || status === null;
}
