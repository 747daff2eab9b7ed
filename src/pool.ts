import pg from 'pg';
import type { Logger } from 'pino';
import { CircuitBreaker } from './circuit-breaker.js';
import { destroySocket, isQueryable, sendCancelRequest } from './client-internals.js';
import type { ConnectionTarget, ResolvedConfig } from './config.js';
import { DatabaseConnectionError, DatabaseQueryError, PoolClosedError, PoolTimeoutError, type PoolSnapshot } from './errors.js';
import { sessionParameters } from './session.js';
import { summarize } from './error-summary.js';
import { StatementWatchdog } from './statement-watchdog.js';
import { connectNegotiated, createClientClass } from './ssl.js';
import { newNodeCounters, type DurationRecorder, type NodeCounters, type NodeStats } from './stats.js';

/** Per-connection facts, kept beside pg's client (never on it). */
interface ClientMeta {
  readonly createdAt: number;
  readonly retireAt: number;
  idleSince: number;
  /** An error event arrived while checked out: the connection is unusable. */
  isBroken: boolean;
  isSessionReadOnly: boolean;
  /** The lease holding this connection, while checked out: the error listener marks it broken. */
  lease: Lease | undefined;
  /** Leak detection timer of the current lease (only when leakDetectionThresholdMillis > 0). */
  leakTimer: NodeJS.Timeout | undefined;
}

/** A checked-out connection. Given back with {@link NodePool.release} exactly once. */
export interface Lease {
  readonly client: pg.PoolClient;
  readonly node: NodePool;
  readonly acquiredAt: number;
  /** Statements sent and not yet answered; a lease released with any in flight is destroyed. */
  inFlight: number;
  /** True once the lease saw a connection failure; it is destroyed on release. */
  isBroken: boolean;
  /** The error event that broke the connection while checked out (e.g. the server's FATAL), for messages. */
  lostError?: Error;
  /** The session's `default_transaction_read_only`; kept with the connection across leases. */
  isSessionReadOnly: boolean;
  /** Statements sent through {@link leaseQuery} and not yet answered (ours and the caller's). */
  pending: number;
  /** `performance.now()` when `pending` last rose from 0; 0 while nothing is pending (for the watchdog). */
  busySince: number;
}

/**
 * Sends one statement on a lease, keeping `pending`/`busySince` for the statement watchdog. Every
 * statement the library sends on a checked-out connection goes through here.
 */
export async function leaseQuery<R extends pg.QueryResultRow = Record<string, unknown>>(lease: Lease, query: string | pg.QueryConfig, values?: readonly unknown[]): Promise<pg.QueryResult<R>> {
  if (lease.pending++ === 0) lease.busySince = performance.now();
  try {
    return await lease.client.query<R>(query as string, values as unknown[]);
  } finally {
    if (--lease.pending === 0) lease.busySince = 0;
  }
}

/** A caller queued for a permit. Deadlines are enforced by one timer for the whole queue. */
interface Waiter {
  readonly deadline: number;
  /** The wait it was given, ms, for the timeout message. */
  readonly waitMillis: number;
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
  readonly options: AcquireOptions;
  onAbort: (() => void) | undefined;
}

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

const REFILL_BACKOFF_MIN_MILLIS = 100;
const REFILL_BACKOFF_MAX_MILLIS = 5000;
/** At most this many connects run at once when refilling: no reconnect storm after an outage. */
const REFILL_CONCURRENCY = 2;

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
  #permits: number;
  #waiters: Waiter[] = [];
  /** Fires at the earliest waiter deadline (or earlier); `#waitTimerAt` is when. */
  #waitTimer: NodeJS.Timeout | undefined;
  #waitTimerAt = Infinity;
  #meta = new WeakMap<pg.Client, ClientMeta>();
  #leases = new Set<Lease>();
  #watchdog: StatementWatchdog | undefined;
  #openCancelSocket = () => connectNegotiated(this.#config.ssl, this.target);
  #clients = new Set<pg.Client>();
  #isRefilling = false;
  #refillTimer: NodeJS.Timeout | undefined;
  #refillBackoffMillis = REFILL_BACKOFF_MIN_MILLIS;
  #hasWarnedFallback = false;
  /** When an acquire last passed its deadline (epoch ms); health reports `degraded` for a minute after. */
  lastAcquireTimeoutAt = -Infinity;

  constructor(target: ConnectionTarget, role: NodeRole, config: ResolvedConfig, log: Logger, acquireTime: DurationRecorder) {
    this.name = target.name;
    this.role = role;
    this.target = target;
    this.#config = config;
    this.#log = log.child({ node: target.name });
    this.#acquireTime = acquireTime;
    this.#permits = target.max;
    this.circuit = new CircuitBreaker(config.circuitBreakerThreshold, config.circuitBreakerResetMillis);
    this.#Client = createClientClass(config.ssl, { onPlaintextFallback: () => this.#warnFallback() });
    const Client = this.#Client;
    const connectionTimeoutMillis = config.connectionTimeoutMillis;
    this.#pool = new pg.Pool({
      // pg-pool arms a timer on every checkout when it has connectionTimeoutMillis, even for an idle
      // client; our permits and #connect already bound every wait, so only the client gets the
      // timeout, which pg applies to opening a new connection.
      Client: class extends Client {
        constructor(options: pg.ClientConfig) {
          // pg-pool hides `password` as a non-enumerable property, so the spread drops it.
          super({ ...options, password: options.password, connectionTimeoutMillis });
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
    // An idle client's error is handled by pg-pool (it removes the client); we log it so it can
    // never become an unhandled 'error' event that crashes the process.
    this.#pool.on('error', (error) => this.#log.warn({ error: summarize(error) }, 'idle connection failed and was removed'));
    this.#pool.on('connect', (client) => this.#onConnect(client));
    if (config.statementTimeoutMillis > 0) {
      // Behind PgBouncer a statement may also wait in its queue, and backend pids are PgBouncer's own.
      const grace = config.validationTimeoutMillis + (config.pgbouncer ? config.connectionTimeoutMillis : 0);
      this.#watchdog = new StatementWatchdog(this, { limitMillis: config.statementTimeoutMillis + grace, probeTimeoutMillis: config.validationTimeoutMillis, shouldMatchBackend: !config.pgbouncer, log: this.#log });
    }
    this.#pool.on('remove', (client) => {
      this.#clients.delete(client);
      this.counters.connectionsClosed++;
      this.#scheduleRefill(0);
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
    const now = Date.now();
    const lifetime = this.#config.maxLifetimeMillis;
    // Up to 10% jitter so connections opened together are not all retired together.
    const retireAt = lifetime === 0 ? Infinity : now + lifetime - Math.random() * lifetime * 0.1;
    const meta: ClientMeta = { createdAt: now, retireAt, idleSince: now, isBroken: false, isSessionReadOnly: !this.#config.pgbouncer, lease: undefined, leakTimer: undefined };
    this.#meta.set(client, meta);
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
    const client = new this.#Client({ host: t.host, port: t.port, user: t.user, password: t.password, database: t.database, application_name: `${this.#config.applicationName} ${applicationSuffix}`, connectionTimeoutMillis });
    client.on('error', () => undefined);
    return client;
  }

  #warnFallback(): void {
    if (this.#hasWarnedFallback) return;
    this.#hasWarnedFallback = true;
    this.#log.warn('sslmode=prefer: the server refused TLS, so connections of this pool are unencrypted');
  }

  snapshot(): PoolSnapshot {
    const total = this.#pool.totalCount;
    const idle = this.#pool.idleCount;
    return { total, idle, active: this.#leases.size, waiting: this.#waiters.length, max: this.target.max };
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
    if (this.#permits > 0 && this.#waiters.length === 0) this.#permits--;
    else await this.#takePermit(options);
    const permit = { isHeld: true };
    let client: pg.PoolClient | undefined;
    try {
      // The common case inline (an idle connection used recently): no extra async layer per acquire.
      const remaining = options.deadline - Date.now();
      const idle = this.#pool.idleCount > 0 && remaining > 0 ? await this.#connect(remaining, true, permit, options) : undefined;
      client = idle && this.#isReady(idle) ? idle : await this.#checkout(options, permit, idle);
    } finally {
      if (!client && permit.isHeld) this.#returnPermit();
    }
    const meta = this.#meta.get(client)!;
    const lease: Lease = { client, node: this, acquiredAt: Date.now(), inFlight: 0, isBroken: false, isSessionReadOnly: meta.isSessionReadOnly, pending: 0, busySince: 0 };
    this.#leases.add(lease);
    this.#watchLease(meta, lease, options.stack);
    this.#acquireTime.record(performance.now() - startedAt);
    return lease;
  }

  /**
   * Queues for a permit (FIFO). No timer per waiter: one timer for the queue fires at the earliest
   * deadline, so a busy pool with many callers queued pays no timer per acquire.
   */
  #takePermit(options: AcquireOptions): Promise<void> {
    if (this.#permits > 0 && this.#waiters.length === 0) {
      this.#permits--;
      return Promise.resolve();
    }
    const maxWaiting = this.#config.maxWaiting;
    if (maxWaiting > 0 && this.#waiters.length >= maxWaiting) {
      this.counters.poolExhaustedCount++;
      return Promise.reject(new PoolTimeoutError(`No connection available and ${maxWaiting} callers already wait (DB_POOL_MAX_WAITING)`, this.snapshot(), 'POOL_QUEUE_FULL'));
    }
    return new Promise<void>((resolve, reject) => {
      const waitMillis = Math.max(0, options.deadline - Date.now());
      const waiter: Waiter = { deadline: options.deadline, waitMillis, resolve, reject, options, onAbort: undefined };
      if (options.signal) {
        waiter.onAbort = () => {
          const index = this.#waiters.indexOf(waiter);
          if (index === -1) return;
          this.#waiters.splice(index, 1);
          reject(cancelledError(options.signal!));
        };
        options.signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      this.#waiters.push(waiter);
      if (options.deadline < this.#waitTimerAt) this.#armWaitTimer(options.deadline);
    });
  }

  #armWaitTimer(at: number): void {
    clearTimeout(this.#waitTimer);
    this.#waitTimerAt = at;
    this.#waitTimer = setTimeout(() => this.#expireWaiters(), Math.max(0, at - Date.now()));
    this.#waitTimer.unref();
  }

  /** Rejects every waiter whose deadline passed, then re-arms for the earliest deadline left. */
  #expireWaiters(): void {
    this.#waitTimer = undefined;
    this.#waitTimerAt = Infinity;
    const now = Date.now();
    let next = Infinity;
    for (const waiter of [...this.#waiters]) {
      if (waiter.deadline > now) {
        next = Math.min(next, waiter.deadline);
        continue;
      }
      // The snapshot still counts this waiter: it shows the pool as the caller saw it at its deadline.
      const error = new PoolTimeoutError(`No connection available within ${Math.round(waiter.waitMillis)} ms`, this.snapshot());
      this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
      this.#detach(waiter);
      this.#recordTimeout(waiter.options);
      waiter.reject(error);
    }
    if (next !== Infinity && this.#state === 'open') this.#armWaitTimer(next);
  }

  #detach(waiter: Waiter): void {
    if (waiter.onAbort) waiter.options.signal!.removeEventListener('abort', waiter.onAbort);
  }

  /** Counts an acquire that passed its deadline; ready()'s startup probes do not count (nothing was served yet). */
  #recordTimeout(options: AcquireOptions): void {
    if (options.isStartupProbe) return;
    this.counters.acquireTimeouts++;
    this.counters.poolExhaustedCount++;
    this.lastAcquireTimeoutAt = Date.now();
  }

  #returnPermit(): void {
    // A returned permit goes straight to the oldest waiter, so nobody can jump the queue.
    const waiter = this.#state === 'open' ? this.#waiters.shift() : undefined;
    if (!waiter) {
      this.#permits++;
      return;
    }
    this.#detach(waiter);
    waiter.resolve();
  }

  /** An idle connection that may be handed out as it is: alive, not past its lifetime, used recently. */
  #isReady(client: pg.PoolClient): boolean {
    const meta = this.#meta.get(client)!;
    const now = Date.now();
    return !meta.isBroken && now < meta.retireAt && this.#isRecentlyUsed(meta, now);
  }

  /**
   * Idle no longer than `validationIntervalMillis`, so no validation is needed. 0 means every time: at
   * millisecond resolution a connection reused within the same millisecond would otherwise skip it.
   */
  #isRecentlyUsed(meta: ClientMeta, now: number): boolean {
    const interval = this.#config.validationIntervalMillis;
    return interval > 0 && now - meta.idleSince <= interval;
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
          throw new DatabaseConnectionError(`The circuit breaker for ${this.name} is open after repeated connection failures; failing fast`, { code: 'CIRCUIT_OPEN' });
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
      if (isFresh || this.#isRecentlyUsed(meta, now)) return client;
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
          reject(new PoolTimeoutError(`Connecting took longer than the acquire deadline (${Math.round(remaining)} ms)`, this.snapshot()));
        }, remaining);
        timer.unref();
      };
      // A new connection: the deadline timer first, so at a tie it fires before the connect's own timeout.
      if (!hasIdle) armDeadline();
      this.#pool.connect((error: Error | undefined, client: pg.PoolClient | undefined) => {
        isSettled = true;
        clearTimeout(timer);
        if (error || !client) {
          this.counters.connectionErrors++;
          this.circuit.recordFailure();
          this.#log.warn({ error: summarize(error) }, 'connection attempt failed');
          if (!isLate) reject(new DatabaseConnectionError(`Could not connect to ${this.name}: ${error?.message}`, { cause: error }));
          else this.#returnPermit();
          return;
        }
        if (!hasIdle) this.circuit.recordSuccess();
        if (!isLate) return resolve(client);
        // We gave up waiting, but the connection is good: keep it for the next caller.
        this.#meta.get(client)!.idleSince = Date.now();
        client.release();
        this.#returnPermit();
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
    const attempt = client.query('SELECT 1').then(() => true, () => false);
    try {
      const ok = await Promise.race([attempt, timeout]);
      if (!ok) this.#log.warn('connection failed validation on checkout and was evicted');
      return ok;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Ties the connection to its lease (for the error listener) and starts leak detection when on. */
  #watchLease(meta: ClientMeta, lease: Lease, stack: string | undefined): void {
    meta.lease = lease;
    const threshold = this.#config.leakDetectionThresholdMillis;
    if (threshold <= 0) return;
    meta.leakTimer = setTimeout(() => {
      this.counters.leaksDetected++;
      this.#log.warn({ heldMillis: Date.now() - lease.acquiredAt, acquiredAt: stack }, `connection held longer than ${threshold} ms (possible leak)`);
    }, threshold);
    meta.leakTimer.unref();
  }

  #unwatchLease(meta: ClientMeta): void {
    meta.lease = undefined;
    if (meta.leakTimer === undefined) return;
    clearTimeout(meta.leakTimer);
    meta.leakTimer = undefined;
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
    if (!lease.isBroken && !meta.isBroken && lease.inFlight === 0 && isOutsideTransaction(client) && now < meta.retireAt && this.#state === 'open' && isQueryable(client)) {
      try {
        meta.idleSince = now;
        meta.isSessionReadOnly = lease.isSessionReadOnly;
        this.#unwatchLease(meta);
        client.release();
      } finally {
        this.#returnPermit();
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
        this.#unwatchLease(meta);
        client.release();
      } else {
        if (lease.inFlight > 0) await sendCancelRequest(client, this.#openCancelSocket, this.#config.validationTimeoutMillis);
        this.#unwatchLease(meta);
        this.#destroy(client);
      }
    } finally {
      this.#returnPermit();
    }
  }

  async #rollback(client: pg.PoolClient): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), this.#config.validationTimeoutMillis);
      timer.unref();
    });
    try {
      return await Promise.race([client.query('ROLLBACK').then(() => true, () => false), timeout]);
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

  /** Opens connections until `min` are open, a few at a time, backing off while connects fail. */
  #scheduleRefill(delayMillis: number): void {
    if (this.#state !== 'open' || this.#refillTimer || this.target.min === 0) return;
    this.#refillTimer = setTimeout(() => {
      this.#refillTimer = undefined;
      void this.refill();
    }, delayMillis);
    this.#refillTimer.unref();
  }

  /**
   * Tops the pool up to `min`, at most REFILL_CONCURRENCY new connects per round; resolves when the
   * round settled. pg.Pool hands out idle clients before it opens new ones, so the round checks out
   * every idle client alongside the new ones and then releases them all.
   */
  async refill(): Promise<void> {
    if (this.#state !== 'open' || this.#isRefilling || this.#waiters.length > 0) return;
    const missing = Math.min(REFILL_CONCURRENCY, this.target.min - this.#pool.totalCount);
    const count = missing + this.#pool.idleCount;
    if (missing <= 0 || this.#permits < count || !this.circuit.allowConnect()) {
      if (missing > 0) this.#scheduleRefill(this.#refillBackoffMillis);
      return;
    }
    this.#isRefilling = true;
    this.#permits -= count;
    const results = await Promise.allSettled(Array.from({ length: count }, () => this.#pool.connect()));
    let failures = 0;
    for (const result of results) {
      if (result.status === 'fulfilled') {
        this.#meta.get(result.value)!.idleSince = Date.now();
        result.value.release();
      } else {
        failures++;
        this.counters.connectionErrors++;
        this.circuit.recordFailure();
        this.#log.debug({ error: summarize(result.reason) }, 'refill connect failed');
      }
      this.#returnPermit();
    }
    this.#isRefilling = false;
    // One new connection that opened proves the server answers: close the circuit even when another
    // connect of the round failed (e.g. "the database system is starting up" just after a restart).
    if (failures < missing) this.circuit.recordSuccess();
    if (failures === 0) {
      this.#refillBackoffMillis = REFILL_BACKOFF_MIN_MILLIS;
    } else {
      this.#refillBackoffMillis = Math.min(REFILL_BACKOFF_MAX_MILLIS, this.#refillBackoffMillis * 2);
    }
    if (this.#state === 'open' && this.#pool.totalCount < this.target.min) {
      this.#scheduleRefill(failures === 0 ? 0 : Math.round(this.#refillBackoffMillis * (0.5 + Math.random() * 0.5)));
    }
  }

  /**
   * Number of connections currently open (idle + checked out). Not pg.Pool's totalCount, which also
   * counts connects still in progress: ready() must not resolve while one of its `min` may yet fail.
   */
  get openConnections(): number {
    return this.#clients.size;
  }

  /**
   * Starts shutdown: waiting callers reject with PoolClosedError at once; leases may finish until
   * `deadline`, then their statements are cancelled and their connections destroyed. Idempotent.
   */
  async close(deadline: number): Promise<void> {
    if (this.#state !== 'open') return this.#closed;
    this.#state = 'closing';
    this.#watchdog?.stop();
    clearTimeout(this.#refillTimer);
    clearTimeout(this.#waitTimer);
    for (const waiter of this.#waiters.splice(0)) {
      this.#detach(waiter);
      waiter.reject(new PoolClosedError());
    }
    this.#closed = this.#drain(deadline);
    return this.#closed;
  }

  #closed: Promise<void> = Promise.resolve();

  async #drain(deadline: number): Promise<void> {
    const ended = this.#pool.end();
    while (this.#leases.size > 0 && Date.now() < deadline) await sleep(Math.min(20, deadline - Date.now()));
    // All stragglers at once, each with one cancel request (release sends it): over a black-holed
    // link N of them cost one cancel timeout past the deadline, not 2 × N.
    await Promise.all([...this.#leases].map((lease) => {
      this.#log.warn('shutdown deadline passed: cancelling a statement still running and closing its connection');
      lease.isBroken = true;
      return this.release(lease);
    }));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([ended, new Promise<void>((resolve) => { timer = setTimeout(resolve, Math.max(50, deadline - Date.now())); timer.unref(); })]);
    clearTimeout(timer);
    // Sockets whose polite end() never completed (a black-holed link) are destroyed.
    for (const client of this.#clients) destroySocket(client);
    await ended.catch(() => undefined);
    // pg-pool emits 'remove' (counted in connectionsClosed) only once a client's end() completed:
    // wait briefly for the closed sockets to report it, so stats read after shutdown are final.
    const settleBy = Date.now() + 1000;
    while (this.#clients.size > 0 && Date.now() < settleBy) await sleep(5);
    this.#state = 'closed';
  }
}

/** pg's status from the last ReadyForQuery: 'I' outside a transaction ('T' in one, 'E' in a failed one; null before the first). */
function isOutsideTransaction(client: pg.Client): boolean {
  const status = client.getTransactionStatus();
  return status === 'I' || status === null;
}

function sleep(millis: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, millis)).unref());
}

function cancelledError(signal: AbortSignal): DatabaseQueryError {
  if (signal.reason instanceof DatabaseQueryError) return signal.reason;
  return new DatabaseQueryError('The operation was cancelled by its AbortSignal', signal.reason, 'QUERY_CANCELLED');
}


export { cancelledError };
