import pg from 'pg';
import type { Logger } from 'pino';
import type { ConnectionTarget, ResolvedConfig } from '../config.js';
import { destroySocket, type CancelSocket } from '../client-internals.js';
import { summarize } from '../error-summary.js';
import { markLost, newConnectionFacts, type ConnectionFacts } from './lease.js';
import { sessionParameters } from '../session.js';
import { connectNegotiated, createClientClass } from '../ssl/ssl-settings.js';
import type { NodeCounters } from '../stats.js';
import type { LoginCache } from '../credentials/login-cache.js';
import { withLogin } from '../credentials/login-client.js';
import { HostPlacement } from './host-placement.js';
import { withConnectTracing } from './traced-client.js';

/**
 * The connections of one server: how they are made (a pg.Pool whose clients negotiate TLS as the
 * sslmode says and carry the session settings as startup parameters), which are connecting and which
 * are open, the {@link ConnectionFacts} kept beside each, how one is put back idle or destroyed, and
 * standalone clients outside the pool (health checks, the replica monitor, the watchdog's probe).
 * Which server each new connection goes to, and whether its role fits, is the {@link HostPlacement}'s
 * word: a client whose server fails target_session_attrs never reaches pg-pool.
 */
export class Connections {
  readonly pool: pg.Pool;
  /** Clients from construction until their connect settles (pg-pool's 'connect', or 'end' on failure): shutdown destroys them. */
  readonly connecting = new Set<pg.Client>();
  /** Open clients (idle and checked out), from pg-pool's 'connect' to its 'remove'. */
  readonly open = new Set<pg.Client>();
  readonly placement: HostPlacement;
  readonly #facts = new WeakMap<pg.Client, ConnectionFacts>();
  /** An error a client emitted after its login but before pg-pool took it (see the connect override below). */
  readonly #startupErrors = new WeakMap<pg.Client, Error>();
  readonly #Client: typeof pg.Client;
  readonly #target: ConnectionTarget;
  readonly #config: ResolvedConfig;
  readonly #log: Logger;
  readonly #counters: NodeCounters;
  #hasWarnedFallback = false;

  /**
   * `logins`: where new connections get their login when `target.loginSource` is set (src/credentials/).
   * `node.isPrimary`: the primary's connections walk the host list; `node.isOpen`: false once shutdown started.
   */
  constructor(
    target: ConnectionTarget,
    config: ResolvedConfig,
    log: Logger,
    counters: NodeCounters,
    node: { readonly isPrimary: boolean; isOpen(): boolean },
    logins?: LoginCache,
  ) {
    this.#target = target;
    this.#config = config;
    this.#log = log;
    this.#counters = counters;
    const placement = new HostPlacement({
      name: target.name,
      isPrimary: node.isPrimary,
      target,
      config,
      counters,
      log,
      open: this.open,
      factsOf: (client) => this.#facts.get(client),
      isOpen: node.isOpen,
    });
    this.placement = placement;
    const Negotiating = createClientClass(config.ssl, {
      onPlaintextFallback: () => {
        if (this.#hasWarnedFallback) return;
        this.#hasWarnedFallback = true;
        log.warn('sslmode=prefer: the server refused TLS, so connections of this pool are unencrypted');
      },
    });
    // Traced around the login, so a connect's trace covers the provider's call, TLS and startup.
    const Login = logins && target.loginSource ? withLogin(Negotiating, logins) : Negotiating;
    this.#Client = withConnectTracing(Login, { database: target.database, poolName: target.name });
    const Client = this.#Client;
    const connectionTimeoutMillis = config.connectionTimeoutMillis;
    const connecting = this.connecting;
    const startupErrors = this.#startupErrors;
    this.pool = new pg.Pool({
      // pg-pool arms a timer on every checkout when it has connectionTimeoutMillis, even for an idle
      // client; our permits and the node pool's connect already bound every wait, so only the client
      // gets the timeout, which pg applies to opening a new connection.
      Client: class extends Client {
        constructor(options: pg.ClientConfig) {
          // Each new connection goes to the host the placement picks (libpq's host list walk).
          const choice = placement.choose();
          const { host, port } = choice.host.address;
          // pg-pool hides `password` as a non-enumerable property, so the spread drops it.
          super({ ...options, host, port, password: options.password, connectionTimeoutMillis });
          placement.track(this, choice);
          // Tracked from construction: a connect in progress has no other handle for shutdown to reach.
          connecting.add(this);
          this.once('end', () => connecting.delete(this));
        }

        /**
         * pg-pool connects with a callback. A connection is only handed to pg-pool once its server's
         * role satisfies target_session_attrs; otherwise it is closed and the connect fails with
         * RoleMismatchError (pg-pool then forgets it, as any failed connect).
         */
        override connect(): Promise<pg.Client>;
        override connect(callback: (error: Error) => void): void;
        override connect(callback?: (error: Error) => void): Promise<pg.Client> | void {
          // pg calls back at ReadyForQuery; pg-pool adds its 'error' listener in its own callback,
          // after the role check below. A FATAL read in the same chunk as ReadyForQuery (a backend
          // terminated as its startup ended, as in a server restart) is emitted in between: kept
          // here, it marks the connection broken when pg-pool's 'connect' arrives (#onConnect),
          // instead of being an unhandled 'error' event that crashes the process.
          const onStartupError = (error: Error) => {
            if (!startupErrors.has(this)) startupErrors.set(this, error);
          };
          this.on('error', onStartupError);
          const settled = new Promise<pg.Client>((resolve, reject) => {
            super.connect((error: Error | undefined) => {
              if (error) {
                placement.connectFailed(this, error);
                return reject(error);
              }
              placement.judge(this).then(() => resolve(this), reject);
            });
          });
          const handOver = (error: Error | undefined) => {
            try {
              callback?.(error as Error);
            } finally {
              this.removeListener('error', onStartupError);
            }
          };
          settled.then(
            () => handOver(undefined),
            (error: Error) => handOver(error),
          );
          if (!callback) return settled;
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
    this.pool.on('error', (error, client) => {
      // A connection let go on purpose (its host is not the primary any more) is closed without a word.
      if (placement.isEvicted(client)) return;
      placement.connectionLost(client, error);
      log.warn({ error: summarize(error) }, 'idle connection failed and was removed');
    });
    this.pool.on('connect', (client) => this.#onConnect(client));
    this.pool.on('remove', (client) => {
      this.open.delete(client);
      counters.connectionsClosed++;
    });
  }

  #onConnect(client: pg.Client): void {
    const facts = newConnectionFacts(Date.now(), this.#config.maxLifetimeMillis, !this.#config.pgbouncer);
    this.#facts.set(client, facts);
    this.connecting.delete(client);
    this.open.add(client);
    this.#counters.totalConnections++;
    this.placement.opened(client, facts);
    // pg-pool listens only while a client is idle in it: checked out (validation, a refill round
    // holding idle clients, a lease) a server restart or pg_terminate_backend would otherwise be an
    // unhandled 'error' event that crashes the process. One listener for the client's whole life, not
    // one per lease: adding and removing a listener (and its closure) on every checkout is hot-path cost.
    client.on('error', (error: Error) => {
      facts.isBroken = true;
      this.placement.connectionLost(client, error);
      if (!facts.lease) return;
      markLost(facts.lease, error);
      this.#log.warn({ error: summarize(error) }, 'checked-out connection failed');
    });
    // Failed between its login and now: never handed out (checkout destroys a broken connection).
    const startupError = this.#startupErrors.get(client);
    if (startupError) {
      facts.isBroken = true;
      this.placement.connectionLost(client, startupError);
      this.#log.warn({ error: summarize(startupError) }, 'a new connection failed right after its login');
    }
  }

  /** What is known about an open client (every client pg-pool hands out has passed 'connect'). */
  factsOf(client: pg.Client): ConnectionFacts {
    return this.#facts.get(client)!;
  }

  /** Puts a checked-out connection back in pg-pool, idle from now (one of the two writers of `idleSince`). */
  putBack(client: pg.PoolClient): void {
    this.#facts.get(client)!.idleSince = Date.now();
    client.release();
  }

  /**
   * A checked-out connection passes from one caller to the next without going back to pg-pool: as far
   * as validation on checkout is concerned it went idle now (the other writer of `idleSince`).
   */
  passOn(client: pg.PoolClient): void {
    this.#facts.get(client)!.idleSince = Date.now();
  }

  /** Takes a checked-out connection out of pg-pool and closes its socket at once. */
  destroy(client: pg.PoolClient): void {
    try {
      client.release(true);
    } catch {
      // released already: the socket below is all that is left to close
    }
    destroySocket(client);
  }

  /**
   * A standalone client to this server with the pool's TLS and login settings, outside the pool. Its
   * error events are swallowed; the caller ends it.
   */
  createClient(applicationSuffix: string, connectionTimeoutMillis: number): pg.Client {
    const t = this.#target;
    // The host pool connections go to now (while a host list is searched: the host the search is at).
    const { host, port } = this.placement.address();
    const client = new this.#Client({
      host,
      port,
      user: t.user,
      password: t.password,
      database: t.database,
      application_name: `${this.#config.applicationName} ${applicationSuffix}`,
      connectionTimeoutMillis,
    });
    client.on('error', () => undefined);
    return client;
  }

  /**
   * Opens a socket for a cancel request to the server `client` is connected to (with a host list, not
   * necessarily the first host), negotiated like a session (TLS as the sslmode says).
   */
  cancelSocketFor(client: pg.Client): () => CancelSocket {
    return () => connectNegotiated(this.#config.ssl, { host: client.host, port: client.port });
  }
}
