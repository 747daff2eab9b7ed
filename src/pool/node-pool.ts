import type pg from 'pg';
import type { Logger } from 'pino';
import { CircuitBreaker } from './circuit-breaker.js';
import { Connections } from './connections.js';
import { destroySocket, forgetPrepared, isQueryable, sendCancelRequest } from '../client-internals.js';
import type { ConnectionTarget, ResolvedConfig } from '../config.js';
import {
  DatabaseConnectionError,
  DbError,
  isCannotGrow,
  PoolClosedError,
  PoolTimeoutError,
  type PoolSnapshot,
} from '../errors.js';
import {
  isRecentlyUsed,
  markBroken,
  newLease,
  unwatchLease,
  watchLease,
  type ConnectionFacts,
  type Lease,
  type LeaseOwner,
} from './lease.js';
import { cancelledError, PermitQueue } from './permit-queue.js';
import { probeConnection } from './probe-connection.js';
import { beyondBaseline, planRelease, SESSION_CLEAN, type SessionChanges } from './session-state.js';
import { drainPool } from './drain.js';
import { retireConnections } from './retirement.js';
import { Refiller } from './refiller.js';
import { summarize } from '../error-summary.js';
import { StatementWatchdog } from './statement-watchdog.js';
import { newNodeCounters, type DurationRecorder, type NodeCounters, type NodeStats } from '../stats.js';
import { raceDeadline, startTimer } from '../timers.js';
import type { LoginCache } from '../credentials/login-cache.js';
import { isStaleLoginRefusal } from '../credentials/login-client.js';
import type { HostPlacement, HostSearch } from './host-placement.js';
import type { HostSelector } from '../replicas/host-selector.js';
import { RoleMismatchError } from '../replicas/role-check.js';
import {
  acquireChannel,
  releaseChannel,
  serverFields,
  serverOf,
  traced,
  type AcquireMessage,
  type ReleaseMessage,
  type ServerFields,
} from '../tracing-channels.js';

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
 * Who holds an acquire's permit: the acquire itself until it hands out a lease (the lease then keeps
 * it) or fails (it gives it back), or a connect the acquire stopped waiting for (deadline or abort),
 * which keeps pg.Pool's slot taken until it settles and then gives the permit back.
 */
interface Permit {
  holder: 'acquire' | 'connect';
}

/** How long new connections pause after the server refused one for want of slots (53300, 53400). */
const GROWTH_PAUSE_MILLIS = 1000;

/** How long after opening an unused connection is handed out without validation (it just answered the login). */
const FRESH_MILLIS = 50;

/**
 * One server's pool: a pg.Pool behind a FIFO permit queue of size `max`. Holding a permit means
 * pg.Pool has room (an idle client or a free slot), so pg-pool's own queue is never used and every
 * wait here has the caller's deadline, an abort signal, a queue cap and a shutdown that rejects it.
 * Checkout validates connections idle past the validation interval; release returns only clean,
 * idle-in-session connections to pg-pool and destroys the rest.
 */
export class NodePool implements LeaseOwner {
  readonly name: string;
  readonly role: NodeRole;
  readonly target: ConnectionTarget;
  readonly counters: NodeCounters = newNodeCounters();
  readonly circuit: CircuitBreaker;
  /** This node's server as tracing messages name it (src/tracing-channels.ts). */
  readonly server: ServerFields;
  /** When an acquire last passed its deadline (epoch ms); health reports `degraded` for a minute after. */
  lastAcquireTimeoutAt = -Infinity;
  #connections: Connections;
  #placement: HostPlacement;
  #pool: pg.Pool;
  #config: ResolvedConfig;
  #log: Logger;
  #acquireTime: DurationRecorder;
  #state: LifecycleState = 'open';
  #closed: Promise<void> = Promise.resolve();
  /** Permits, and the connection a release hands over with one to a queued acquire. */
  #queue: PermitQueue<AcquireOptions, pg.PoolClient>;
  #leases = new Set<Lease>();
  #closing = new AbortController();
  /** Aborts when shutdown starts: waits that are not acquires (ready()'s backoff) end on it. */
  readonly closeSignal: AbortSignal = this.#closing.signal;
  /** Until when (epoch ms) no new connection is tried after the server said it has no slot (53300). */
  #growthPausedUntil = 0;
  /** Acquires waiting for a pooled connection while growth is paused. */
  #idleWaiters = new Set<() => void>();
  /** Acquires waiting on pg.Pool.connect: shutdown rejects them at once (see {@link #connect}). */
  #connectWaits = new Set<(error: Error) => void>();
  #watchdog: StatementWatchdog | undefined;
  #refiller: Refiller;

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
    this.#queue = new PermitQueue<AcquireOptions, pg.PoolClient>(target.max, config.maxWaiting, {
      snapshot: () => this.snapshot(),
      onTimeout: (options) => this.#recordTimeout(options),
      onQueueFull: () => this.counters.poolExhaustedCount++,
    });
    this.circuit = new CircuitBreaker(config.circuitBreakerThreshold, config.circuitBreakerResetMillis, () =>
      this.#trialConnect(),
    );
    const node = { isPrimary: role === 'primary', isOpen: () => this.#state === 'open' };
    this.server = serverFields(target, target.name);
    this.#connections = new Connections(target, config, this.#log, this.counters, node, logins);
    this.#placement = this.#connections.placement;
    this.#pool = this.#connections.pool;
    this.#refiller = new Refiller({
      min: target.min,
      pool: this.#pool,
      permits: this.#queue,
      circuit: this.circuit,
      counters: this.counters,
      log: this.#log,
      isOpen: () => this.#state === 'open',
      putBack: (client) => this.#connections.putBack(client),
      recordConnectFailure: () => this.#recordConnectFailure(),
    });
    this.#pool.on('remove', () => this.#refiller.schedule(0));
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
  }

  /** This node's server fields with the address new connections go to now (with a host list, the current host). */
  currentServer(): ServerFields {
    const { host, port } = this.#connections.placement.address();
    return { ...this.server, serverAddress: host, serverPort: port };
  }

  /**
   * Follows the underlying pg.Pool's `connect` (a new connection), `remove` (a connection closed) and
   * `error` (an idle connection failed; already logged) events: the drop-in Pool re-emits them.
   */
  subscribe(listeners: {
    connect(client: pg.PoolClient): void;
    remove(client: pg.PoolClient): void;
    error(error: Error, client: pg.PoolClient): void;
  }): void {
    this.#pool.on('connect', listeners.connect);
    this.#pool.on('remove', listeners.remove);
    this.#pool.on('error', listeners.error);
  }

  /**
   * Records what a new connection's own setup changed in its session (a drop-in Pool `connect`
   * listener or `onConnect` hook): release never resets it away; a holder that changes the same kind
   * of state gets its connection destroyed instead (src/pool/session-state.ts).
   */
  addSessionBaseline(client: pg.Client, changes: SessionChanges): void {
    const facts = this.#connections.factsOf(client);
    if (facts) facts.sessionBaseline |= changes;
  }

  /** The connections checked out now. */
  leases(): Iterable<Lease> {
    return this.#leases.values();
  }

  /** Where new connections go and how their roles are judged (health feeds its probes to it). */
  get placement(): HostPlacement {
    return this.#placement;
  }

  /** Which server new connections go to: the primary's host list with target_session_attrs, or the one host. */
  get hosts(): HostSelector {
    return this.#placement.hosts;
  }

  /**
   * The lease's server refused read-write work as a standby would (SQLSTATE 25006, BEGIN READ WRITE
   * refused): its host's connections are let go and new ones search for the primary (see
   * {@link HostPlacement.markNotPrimary}).
   */
  markNotPrimary(lease: Lease, reason: string): boolean {
    return this.#placement.markNotPrimary(lease.client, reason);
  }

  /** The lifecycle state: open, closing (shutdown started) or closed. */
  get state(): LifecycleState {
    return this.#state;
  }

  /**
   * Number of connections currently open (idle + checked out). Not pg.Pool's totalCount, which also
   * counts connects still in progress: ready() must not resolve while one of its `min` may yet fail.
   */
  get openConnections(): number {
    return this.#connections.open.size;
  }

  /** The circuit breaker's background trial: a standalone connection and one round trip. Never rejects. */
  async #trialConnect(): Promise<boolean> {
    const outcome = await probeConnection(this, 'circuit', this.#config.validationTimeoutMillis, 'SELECT 1');
    return outcome !== 'timeout' && 'rows' in outcome;
  }

  /** A standalone client to this node, outside the pool (see {@link Connections.createClient}). */
  createClient(applicationSuffix: string, connectionTimeoutMillis: number): pg.Client {
    return this.#connections.createClient(applicationSuffix, connectionTimeoutMillis);
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
      currentHost: this.#placement.hosts.current?.key ?? null,
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
  acquire(options: AcquireOptions): Promise<Lease> {
    // No subscriber (the common case): the acquire's own promise, nothing built.
    if (!acquireChannel.hasSubscribers) return this.#acquire(options);
    const message: AcquireMessage = { operation: 'acquire', waitingRequests: this.#queue.waiting, ...this.currentServer() };
    return traced(acquireChannel, message, async () => {
      const lease = await this.#acquire(options);
      // With a host list, the server of the connection handed out.
      Object.assign(message, serverOf(lease.client, this.server));
      return lease;
    });
  }

  async #acquire(options: AcquireOptions): Promise<Lease> {
    const startedAt = performance.now();
    if (this.#state !== 'open') throw new PoolClosedError();
    options.signal?.throwIfAborted();
    // Fast path without a promise: a free permit and nobody queued before us. A queued caller may get
    // a released connection along with its permit (see release).
    const handed = this.#queue.tryTake() ? undefined : await this.#queue.take(options);
    const permit: Permit = { holder: 'acquire' };
    let client: pg.PoolClient | undefined;
    try {
      if (handed) {
        // Judged like any other checkout: it may have failed, or be due for validation, meanwhile.
        client = this.#isReady(this.#connections.factsOf(handed), Date.now())
          ? handed
          : await this.#checkout(options, permit, handed);
      } else {
        // The common case inline (an idle connection used recently): no extra async layer per acquire.
        const remaining = options.deadline - Date.now();
        let idle: pg.PoolClient | undefined;
        try {
          idle = this.#pool.idleCount > 0 && remaining > 0 ? await this.#connect(remaining, false, permit, options) : undefined;
        } catch (error) {
          // The idle connection went to another caller first and pg-pool opened a new one, which the
          // server refused for want of slots (wait for a pooled connection like any other refusal), or
          // which reached the wrong host of a list (the checkout below searches on).
          if (!this.#isGrowthRefusal(error) && !this.#placement.isSearchable(error) && !isStaleLogin(error)) throw error;
        }
        client =
          idle && this.#isReady(this.#connections.factsOf(idle), Date.now()) ? idle : await this.#checkout(options, permit, idle);
      }
      // Shutdown started while this acquire was in a later stage (pg-pool's idle handover, a
      // validation): the caller gets PoolClosedError, never a connection of a closing pool.
      if (this.#state !== 'open') {
        this.#connections.destroy(client);
        client = undefined;
        throw new PoolClosedError();
      }
    } catch (error) {
      // Counted only when the caller gets the timeout: a host-list search turns a deadline that passed
      // in the middle of it into NO_SUITABLE_HOST, which is no acquire timeout (docs/stats.md).
      if (error instanceof PoolTimeoutError && error.code === 'POOL_TIMEOUT') this.#recordTimeout(options);
      throw error;
    } finally {
      if (!client && permit.holder === 'acquire') this.#queue.give();
    }
    const facts = this.#connections.factsOf(client);
    const lease = newLease(client, this, facts.isSessionReadOnly);
    this.#leases.add(lease);
    watchLease(facts, lease, options.stack, this.#config.leakDetectionThresholdMillis, this.#onLeak);
    this.#acquireTime.record(performance.now() - startedAt);
    return lease;
  }

  /**
   * With a permit held: a connection that is alive, not past its lifetime, and validated when it was
   * idle long. `taken`: one already checked out of pg-pool that {@link #isReady} refused, judged first.
   */
  async #checkout(options: AcquireOptions, permit: Permit, taken?: pg.PoolClient): Promise<pg.PoolClient> {
    const search: HostSearch = { attempts: 0, hasSeenWrongRole: false, hasEverSeenWrongRole: false, isEveryHostDown: false };
    let hasRenewedLogin = false;
    for (;;) {
      let client: pg.PoolClient;
      try {
        client = taken ?? (await this.#next(options, permit));
      } catch (error) {
        // The server has no slot for another connection (max_connections) but this pool holds live
        // ones: wait for one of them (in #next) until the deadline, rather than fail the caller now.
        if (this.#isGrowthRefusal(error)) continue;
        // The server refused a cached login (a secret rotated without rotateCredentials()): the cache
        // is dropped, so one more connect gets the provider's login. Once per checkout.
        if (!hasRenewedLogin && isStaleLogin(error)) {
          hasRenewedLogin = true;
          continue;
        }
        // A host of the list refused or had the wrong role: the next one (or, after a round, a pause
        // and the list again); throws when there is nothing to search (or NO_SUITABLE_HOST at the deadline).
        try {
          await this.#placement.searchOn(error, search, options.deadline, options.signal);
        } catch (failure) {
          // With a host list the breaker counts rounds in which every host refused (see #recordConnectFailure).
          if (search.isEveryHostDown) this.circuit.recordFailure();
          throw failure;
        }
        continue;
      }
      taken = undefined;
      const facts = this.#connections.factsOf(client);
      const now = Date.now();
      if (!this.#isAlive(facts, now)) {
        this.#connections.destroy(client);
        continue;
      }
      if (!this.#isValidationDue(facts, now)) return client;
      if (await this.#validate(client, Math.min(this.#config.validationTimeoutMillis, options.deadline - now))) return client;
      this.counters.validationFailures++;
      this.#connections.destroy(client);
    }
  }

  /** An idle connection, or a new one when none is idle: within the deadline, and through the circuit breaker. */
  #next(options: AcquireOptions, permit: Permit): Promise<pg.PoolClient> {
    // The caller aborted between two attempts (during a host-list search's pause, a validation, an
    // evicted connection): an abort listener added from here on would never fire, so look now.
    if (options.signal?.aborted) throw cancelledError(options.signal);
    const remaining = options.deadline - Date.now();
    if (remaining <= 0) {
      throw new PoolTimeoutError('No usable connection within the acquire deadline', this.snapshot());
    }
    const isNew = this.#pool.idleCount === 0;
    if (isNew && Date.now() < this.#growthPausedUntil && this.#hasOthers())
      return this.#waitForIdle(Math.min(options.deadline, this.#growthPausedUntil)).then(() => this.#next(options, permit));
    if (isNew && !options.isStartupProbe && !this.circuit.allowConnect()) {
      this.counters.circuitRejections++;
      throw new DatabaseConnectionError(
        `The circuit breaker for ${this.name} is open after repeated connection failures; failing fast`,
        { code: 'CIRCUIT_OPEN' },
      );
    }
    return this.#connect(remaining, isNew, permit, options);
  }

  /** A new connection refused for want of server slots (53300, 53400) while the pool holds others to wait for. */
  #isGrowthRefusal(error: unknown): boolean {
    return error instanceof DatabaseConnectionError && isCannotGrow(error.cause) && this.#hasOthers();
  }

  /** The pool holds connections, open or opening, that may come back idle (pg.Pool's count includes connects in progress). */
  #hasOthers(): boolean {
    return this.#pool.totalCount > 0;
  }

  /** Resolves when a connection goes back to the pool idle, or at `until` (epoch ms), whichever is first. */
  #waitForIdle(until: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#idleWaiters.delete(done);
        resolve();
      };
      // An acquire waits on this timer (its caller's call is pending): it keeps the process alive.
      const timer = startTimer(until - Date.now(), done, 'ref');
      this.#idleWaiters.add(done);
    });
  }

  /** Not broken and not past its lifetime. */
  #isAlive(facts: ConnectionFacts, now: number): boolean {
    return !facts.isBroken && now < facts.retireAt;
  }

  /** Idle past the validation interval, and not a connection that has just answered its login. */
  #isValidationDue(facts: ConnectionFacts, now: number): boolean {
    const isFresh = facts.idleSince === facts.createdAt && now - facts.createdAt < FRESH_MILLIS;
    return !isFresh && !isRecentlyUsed(facts, now, this.#config.validationIntervalMillis);
  }

  /** May be handed out as it is: alive, and no validation due. */
  #isReady(facts: ConnectionFacts, now: number): boolean {
    return this.#isAlive(facts, now) && !this.#isValidationDue(facts, now);
  }

  /**
   * pg.Pool.connect, waited for until the remaining deadline (and, for a new connection, the caller's
   * signal). The wait is one state: `waiting` until the connect settles (`settled`), or until the
   * caller stops waiting (`gave-up`): then the connect takes the permit, because its slot in pg.Pool is
   * taken until it settles, and when it does it gives the permit back and keeps a good client idle.
   */
  #connect(remaining: number, isNew: boolean, permit: Permit, options: AcquireOptions): Promise<pg.PoolClient> {
    return new Promise((resolve, reject) => {
      let wait: 'waiting' | 'settled' | 'gave-up' = 'waiting';
      let timer: NodeJS.Timeout | undefined;
      const giveUp = (error: Error) => {
        if (wait !== 'waiting') return;
        wait = 'gave-up';
        permit.holder = 'connect';
        clearTimeout(timer);
        reject(error);
      };
      const armDeadline = () => {
        if (wait !== 'waiting') return;
        timer = startTimer(
          remaining,
          () => {
            const message = `Connecting took longer than the acquire deadline (${Math.round(remaining)} ms)`;
            giveUp(new PoolTimeoutError(message, this.snapshot()));
          },
          'unref',
        );
      };
      // A caller's abort ends its wait for a new connection at once.
      const onAbort = () => giveUp(cancelledError(options.signal!));
      // So does shutdown: pg-pool hands an idle client over on a later tick, and its end() (in the
      // drain) forgets a handover still pending, whose callback then never comes.
      this.#connectWaits.add(giveUp);
      // A new connection: the deadline timer first, so at a tie it fires before the connect's own timeout.
      if (isNew) {
        armDeadline();
        options.signal?.addEventListener('abort', onAbort, { once: true });
      }
      this.#pool.connect((error: Error | undefined, client: pg.PoolClient | undefined) => {
        this.#connectWaits.delete(giveUp);
        const hasGivenUp = wait === 'gave-up';
        wait = 'settled';
        clearTimeout(timer);
        if (isNew) options.signal?.removeEventListener('abort', onAbort);
        if (error || !client) {
          const failure = this.#connectFailed(error);
          if (hasGivenUp) this.#queue.give();
          else reject(failure);
          return;
        }
        if (isNew) this.circuit.recordSuccess();
        if (!hasGivenUp) return resolve(client);
        // The caller gave up, but the connection is good: keep it for the next caller.
        this.#connections.putBack(client);
        this.#queue.give();
      });
      // pg-pool hands an idle client over on its next tick (this tick runs after it): the deadline
      // timer is needed only when that did not happen, i.e. a new connection is being opened.
      if (!isNew) process.nextTick(armDeadline);
    });
  }

  /** What a failed connect rejects with; a connect that shutdown destroyed is no server failure. */
  #connectFailed(error: Error | undefined): Error {
    if (this.#state !== 'open') return new PoolClosedError();
    // The server answered, with the wrong role for target_session_attrs: no connection failure, and
    // proof the server is reachable (the circuit stays closed). Counted in roleMismatches.
    if (error instanceof RoleMismatchError) {
      this.circuit.recordSuccess();
      return error;
    }
    this.counters.connectionErrors++;
    if (isStaleLoginRefusal(error)) {
      // The server answered (it refused an old secret): no reason to open the circuit.
      this.circuit.recordSuccess();
      this.#log.warn({ error: summarize(error) }, 'the server refused the cached login; connecting again with a new one');
      return new DatabaseConnectionError(`Could not connect to ${this.name}: ${error?.message}`, { cause: error });
    }
    if (isCannotGrow(error)) {
      // 53300/53400: the server is up but has no slot for us now. Not a reason to open the circuit;
      // new connections pause for a moment while the live ones serve (see #next).
      this.#growthPausedUntil = Date.now() + GROWTH_PAUSE_MILLIS;
      this.#log.warn(
        { error: summarize(error) },
        'the server refused another connection (too many connections); waiting for a pooled one',
      );
      return new DatabaseConnectionError(`Could not connect to ${this.name}: ${error?.message}`, { cause: error });
    }
    this.#recordConnectFailure();
    this.#log.warn({ error: summarize(error) }, 'connection attempt failed');
    // CREDENTIALS_FAILED (src/credentials/) already says what failed; it is passed on as it is.
    if (error instanceof DbError) return error;
    return new DatabaseConnectionError(`Could not connect to ${this.name}: ${error?.message}`, { cause: error });
  }

  /**
   * A new connection failed (not for want of slots, not a refused cached login). With one server that
   * counts towards opening the circuit. With a host list one host refusing is not the database being
   * down while another may answer (during a failover the old primary refuses while the standby is
   * promoted): the search goes on to the next host, and the breaker counts only a round of the list
   * in which every host refused ({@link #checkout}). A server that answered with the wrong role
   * closes the circuit (see {@link #connectFailed}).
   */
  #recordConnectFailure(): void {
    if (this.#placement.hosts.isList) this.circuit.recordInconclusive();
    else this.circuit.recordFailure();
  }

  /** A round trip with its own timeout; false when it fails or hangs. */
  async #validate(client: pg.PoolClient, timeoutMillis: number): Promise<boolean> {
    const answered = () =>
      client.query('SELECT 1').then(
        () => true,
        () => false,
      );
    const ok = await raceDeadline(answered, Math.max(1, timeoutMillis), () => false, 'unref');
    if (!ok) this.#log.warn('connection failed validation on checkout and was evicted');
    return ok;
  }

  /** Counts an acquire that passed its deadline; ready()'s startup probes do not count (nothing was served yet). */
  #recordTimeout(options: AcquireOptions): void {
    if (options.isStartupProbe) return;
    this.counters.acquireTimeouts++;
    this.counters.poolExhaustedCount++;
    this.lastAcquireTimeoutAt = Date.now();
  }

  /** Leak detection's report: a lease held past `leakDetectionThresholdMillis`. */
  #onLeak = (lease: Lease, stack: string | undefined): void => {
    this.counters.leaksDetected++;
    this.#log.warn(
      { heldMillis: Date.now() - lease.acquiredAt, acquiredAt: stack },
      `connection held longer than ${this.#config.leakDetectionThresholdMillis} ms (possible leak)`,
    );
  };

  /**
   * Gives a lease back. A connection still running a statement, broken, past its lifetime, or whose
   * ROLLBACK of a left-open transaction fails is destroyed; only a clean idle session is reused.
   */
  release(lease: Lease): Promise<void> | undefined {
    if (!this.#leases.delete(lease)) return undefined;
    if (releaseChannel.hasSubscribers)
      releaseChannel.publish({
        operation: 'release',
        useMillis: Date.now() - lease.acquiredAt,
        ...serverOf(lease.client, this.server),
      } satisfies ReleaseMessage);
    const facts = this.#connections.factsOf(lease.client);
    if (!this.#isReusable(lease, facts) || !isOutsideTransaction(lease.client) || this.#hasSessionChanges(lease))
      return this.#releaseSlowly(lease, facts);
    // A caller waits for a permit: the connection goes to it with the permit, checked out as it is,
    // instead of a round through pg-pool's idle list (pg-pool's own release hands a client to its next
    // waiter the same way). Not while acquires wait for an idle connection: they already hold permits.
    if (this.#queue.waiting > 0 && this.#idleWaiters.size === 0) {
      facts.isSessionReadOnly = lease.isSessionReadOnly;
      unwatchLease(facts);
      this.#connections.passOn(lease.client);
      if (this.#queue.handOver(lease.client)) return undefined;
    }
    try {
      this.#returnToPool(lease, facts);
    } finally {
      this.#queue.give();
    }
    return undefined;
  }

  /** {@link release} when the connection needs a ROLLBACK, a cancel, or to be destroyed. */
  async #releaseSlowly(lease: Lease, facts: ConnectionFacts): Promise<void> {
    try {
      // A transaction left open is rolled back, and the connection judged again after it.
      const isReusable =
        this.#isReusable(lease, facts) &&
        (isOutsideTransaction(lease.client) || ((await this.#rollback(lease.client)) && this.#isReusable(lease, facts)));
      if (isReusable && (await this.#resetSession(lease, facts))) return this.#returnToPool(lease, facts);
      if (lease.callerUnanswered > 0)
        await sendCancelRequest(
          lease.client,
          this.#connections.cancelSocketFor(lease.client),
          this.#config.validationTimeoutMillis,
        );
      unwatchLease(facts);
      this.#connections.destroy(lease.client);
    } finally {
      this.#queue.give();
    }
  }

  /**
   * A caller changed the session (SET, LISTEN, a temp table, an advisory lock...): the next caller must
   * not see it. Behind PgBouncer the session is not ours to reset (the next statement may run on another
   * server connection), so nothing is tracked there (docs/operations.md).
   */
  #hasSessionChanges(lease: Lease): boolean {
    return (lease.sessionChanges !== SESSION_CLEAN || lease.preparedNames !== undefined) && !this.#config.pgbouncer;
  }

  /**
   * Undoes a caller's session changes in one message within the validation timeout; false (destroy)
   * when that fails, or when no statement can undo them (src/pool/session-state.ts). After `RESET ALL`
   * the session's read-only default is its startup value again (`on`). Named statements the holder
   * prepared through a drop-in Pool client are deallocated in the same message.
   */
  async #resetSession(lease: Lease, facts: ConnectionFacts): Promise<boolean> {
    if (!this.#hasSessionChanges(lease)) return true;
    const plan = planRelease(beyondBaseline(lease.sessionChanges, facts.sessionBaseline), lease.preparedNames);
    if (plan.action === 'reuse') return true;
    if (plan.action === 'destroy') {
      this.counters.sessionDiscards++;
      this.#log.debug({ reason: plan.reason }, 'connection closed on release: session state cannot be reset');
      return false;
    }
    const reset = () =>
      lease.client.query(plan.sql).then(
        () => true,
        () => false,
      );
    const isReset = await raceDeadline(reset, this.#config.validationTimeoutMillis, () => false, 'unref');
    if (!isReset) {
      this.counters.sessionDiscards++;
      return false;
    }
    this.counters.sessionResets++;
    lease.sessionChanges = SESSION_CLEAN;
    for (const name of lease.preparedNames ?? []) forgetPrepared(lease.client, name);
    lease.preparedNames = undefined;
    if (plan.resetsSettings) lease.isSessionReadOnly = true;
    return true;
  }

  /**
   * May serve another caller: no failure seen, none of the caller's statements unanswered, not past
   * its lifetime, pg still considers it usable, and the pool is open.
   */
  #isReusable(lease: Lease, facts: ConnectionFacts): boolean {
    return (
      !lease.isBroken &&
      lease.callerUnanswered === 0 &&
      this.#isAlive(facts, Date.now()) &&
      this.#state === 'open' &&
      isQueryable(lease.client)
    );
  }

  /** Puts a lease's connection back in the pool, idle from now, with the session mode the lease left. */
  #returnToPool(lease: Lease, facts: ConnectionFacts): void {
    facts.isSessionReadOnly = lease.isSessionReadOnly;
    unwatchLease(facts);
    this.#connections.putBack(lease.client);
    // Acquires waiting because the server cannot take more connections look again.
    if (this.#idleWaiters.size > 0) for (const wake of [...this.#idleWaiters]) wake();
  }

  /** ROLLBACK within the validation timeout; false when it fails or hangs. */
  #rollback(client: pg.PoolClient): Promise<boolean> {
    const rolledBack = () =>
      client.query('ROLLBACK').then(
        () => true,
        () => false,
      );
    return raceDeadline(rolledBack, this.#config.validationTimeoutMillis, () => false, 'unref');
  }

  /** Sends a cancel request for the statement a lease is running (used by timeouts and aborts). */
  cancel(lease: Lease): Promise<boolean> {
    return sendCancelRequest(lease.client, this.#connections.cancelSocketFor(lease.client), this.#config.validationTimeoutMillis);
  }

  /**
   * Destroys a lease's connection at once and marks the lease broken: for a caller that gave up on a
   * statement its cancel request could not end (a black-holed link). Whatever the connection was
   * waiting for rejects with a connection error; {@link release} then closes it for good.
   */
  abandon(lease: Lease): void {
    markBroken(lease);
    destroySocket(lease.client);
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
        clients: this.#connections.open,
        meta: (client) => this.#connections.factsOf(client),
        destroy: (client) => this.#connections.destroy(client),
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
   * Starts shutdown: waiting callers reject with PoolClosedError at once, and so do callers waiting on
   * a connect in progress (the connect is destroyed); leases may finish until `deadline`, then their
   * statements are cancelled and their connections destroyed (see {@link drainPool}). Idempotent.
   */
  close(deadline: number): Promise<void> {
    if (this.#state !== 'open') return this.#closed;
    this.#state = 'closing';
    this.#watchdog?.stop();
    this.#refiller.stop();
    this.circuit.stop();
    this.#queue.close();
    this.#closing.abort();
    for (const giveUp of [...this.#connectWaits]) giveUp(new PoolClosedError());
    this.#connectWaits.clear();
    const target = {
      pool: this.#pool,
      leases: this.#leases,
      connecting: this.#connections.connecting,
      clients: this.#connections.open,
      log: this.#log,
      release: (lease: Lease) => this.release(lease),
    };
    this.#closed = drainPool(target, deadline).then(() => {
      this.#state = 'closed';
    });
    return this.#closed;
  }
}

/** pg's status from the last ReadyForQuery: 'I' outside a transaction ('T' in one, 'E' in a failed one; null before the first). */
function isOutsideTransaction(client: pg.Client): boolean {
  const status = client.getTransactionStatus();
  return status === 'I' || status === null;
}

/** A connect error (as the node pool's connect rejects) for a cached login the server refused. */
function isStaleLogin(error: unknown): boolean {
  return error instanceof DatabaseConnectionError && isStaleLoginRefusal(error.cause);
}
