import type pg from 'pg';
import type { Logger } from 'pino';
import type { ConnectionTarget, ResolvedConfig } from '../config.js';
import { destroySocket } from '../client-internals.js';
import { DatabaseConnectionError, PoolTimeoutError } from '../errors.js';
import { summarize } from '../error-summary.js';
import { HostSelector, type HostChoice } from '../replicas/host-selector.js';
import type { HostAddress } from '../replicas/host-list.js';
import { checkRole, readServerRole, RoleMismatchError, serverParameter, watchServerParameters } from '../replicas/role-check.js';
import { describeRole, matchesTarget, type ServerRole } from '../replicas/session-attrs.js';
import type { NodeCounters } from '../stats.js';
import { sleep } from '../timers.js';
import type { ConnectionFacts } from './lease.js';

/** Pause between two searches of a host list that found no suitable host (a promotion may be under way). */
const SEARCH_PAUSE_MILLIS = 100;

/** Where a connection went: the host chosen for it and that host's generation at the time. */
interface Placement {
  readonly choice: HostChoice;
  readonly generation: number;
}

/** One acquire's progress through a host list (see {@link HostPlacement.searchOn}). */
export interface HostSearch {
  attempts: number;
  hasSeenWrongRole: boolean;
  hasEverSeenWrongRole: boolean;
  /** Set when a whole round of the list refused the connection (the circuit breaker counts that round). */
  isEveryHostDown: boolean;
}

/** What a {@link HostPlacement} works with: its node's parts, seen only through what placement needs. */
export interface HostPlacementOptions {
  readonly name: string;
  /** The primary's pool walks `config.hosts` with target_session_attrs; a replica's pool has its one server. */
  readonly isPrimary: boolean;
  readonly target: ConnectionTarget;
  readonly config: ResolvedConfig;
  readonly counters: NodeCounters;
  readonly log: Logger;
  /** The node's open connections (idle and checked out) and their facts. */
  readonly open: ReadonlySet<pg.Client>;
  factsOf(client: pg.Client): ConnectionFacts | undefined;
  /** False once shutdown started: nothing is marked, searched or counted any more. */
  isOpen(): boolean;
}

/**
 * Which server each new connection of one node goes to, and whether that server's role fits: libpq's
 * host list walk with target_session_attrs ({@link HostSelector}), the role of every new connection
 * judged from what the server reported at startup, and letting go of a host found not to be the
 * primary any more (its connections made until then are never handed out again).
 */
export class HostPlacement {
  readonly hosts: HostSelector;
  readonly #options: HostPlacementOptions;
  readonly #placements = new WeakMap<pg.Client, Placement>();
  /** Connections let go because their host stopped being the primary (each counted once). */
  readonly #evicted = new WeakSet<pg.Client>();

  constructor(options: HostPlacementOptions) {
    this.#options = options;
    const { config, target, isPrimary, counters, log } = options;
    this.hosts = new HostSelector(
      isPrimary ? config.hosts : [{ host: target.host, port: target.port }],
      isPrimary ? config.targetSessionAttrs : 'any',
      config.loadBalanceHosts,
      {
        followsPrimary: isPrimary,
        onChange: (from, to) => {
          counters.primaryChanges++;
          log.warn({ from: from.key, to: to.key }, 'new connections go to the new primary');
        },
      },
    );
  }

  /** The host for the next new connection (while a host list is searched: the host the search is at). */
  choose(): HostChoice {
    return this.hosts.pick();
  }

  /** The address standalone clients (health, probes) go to now. */
  address(): HostAddress {
    return this.hosts.pick().host.address;
  }

  /** Records where a new pooled client goes and watches its ParameterStatus (call before it connects). */
  track(client: pg.Client, choice: HostChoice): void {
    this.#placements.set(client, { choice, generation: choice.host.generation });
    watchServerParameters(client, (isInHotStandby) => this.#onRoleChange(client, isInHotStandby));
  }

  /**
   * Judges a new connection's server against target_session_attrs (from its startup ParameterStatus,
   * or one query on servers before 14). A mismatch closes it and rejects with RoleMismatchError.
   */
  async judge(client: pg.Client): Promise<void> {
    const { choice } = this.#placements.get(client)!;
    const { counters, log, config, isPrimary } = this.#options;
    if (!this.hosts.needsRole) {
      // No check asked for; what the server reported at startup (14+) still tells a standby apart.
      const hotStandby = serverParameter(client, 'in_hot_standby');
      // The primary's pool already reaches a primary by this name: a standby now is a stale route
      // (a DNS answer from before a flip), not a server to keep.
      if (hotStandby === 'on' && isPrimary && this.hosts.hasPrimary) {
        counters.roleMismatches++;
        void client.end().catch(() => undefined);
        throw new RoleMismatchError(choice.host.key, { isInHotStandby: true, isDefaultReadOnly: undefined }, 'primary');
      }
      return this.hosts.accept(choice, hotStandby === undefined ? undefined : hotStandby === 'off');
    }
    let isServerPrimary: boolean;
    try {
      // Outside PgBouncer the session's default_transaction_read_only is ours (session.ts), not the server's.
      const role = await readServerRole(client, !config.pgbouncer);
      checkRole(choice.host.key, role, this.hosts.effectiveTarget, choice.pass);
      isServerPrimary = !role.isInHotStandby;
    } catch (error) {
      if (error instanceof RoleMismatchError) {
        counters.roleMismatches++;
        this.hosts.reject(choice.host, 'wrong-role', `is ${describeRole(error.role)}`);
        log.info({ host: choice.host.key, target: this.hosts.effectiveTarget }, 'connection closed: server role does not match');
      } else this.hosts.reject(choice.host, 'down', `failed its role check: ${summarize(error).message}`);
      void client.end().catch(() => undefined);
      throw error;
    }
    this.hosts.accept(choice, isServerPrimary);
  }

  /**
   * A standalone probe (the health check) went to `choice` and could not connect (`'refused'`) or
   * reached a server with `role`: while the pool has a host list, the search takes that as it takes a
   * pooled connect, so a pool with no traffic (min 0) still follows a failover and health sees it.
   * A refused current host is suspected (the next connect searches); while no host is current, a
   * server of the wrong role is passed over and a suitable one taken up. Nothing is evicted or counted.
   * @returns true when the search moved on, so probing the host it is at now may tell more.
   */
  probed(choice: HostChoice, result: 'refused' | ServerRole, reason: string): boolean {
    if (!this.hosts.isList || !this.#options.isOpen()) return false;
    const host = choice.host;
    if (result === 'refused') {
      if (this.hosts.current === host) this.hosts.suspect(host, `refused the health check's connection (${reason})`);
      else if (!this.hosts.current) this.hosts.reject(host, 'down', `refused the connection (${reason})`);
      else return false;
      return true;
    }
    if (this.hosts.current) return false;
    if (matchesTarget(this.hosts.effectiveTarget, result, choice.pass)) {
      this.hosts.accept(choice, !result.isInHotStandby);
      return false;
    }
    this.hosts.reject(host, 'wrong-role', `is ${describeRole(result)}`);
    return true;
  }

  /** A new connection failed to open: the search moves on to the next host. */
  connectFailed(client: pg.Client, error: Error): void {
    const placement = this.#placements.get(client);
    if (placement && this.#options.isOpen())
      this.hosts.reject(placement.choice.host, 'down', `refused the connection (${summarize(error).message})`);
  }

  /** An open connection failed (server shutdown, 57P0x, network): with a host list, the next connect searches again. */
  connectionLost(client: pg.Client, error: unknown): void {
    const placement = this.#placements.get(client);
    if (placement && this.#options.isOpen() && !this.#evicted.has(client))
      this.hosts.suspect(placement.choice.host, `lost a connection (${summarize(error).message})`);
  }

  /** The connection was let go on purpose because its host stopped being the primary. */
  isEvicted(client: pg.Client): boolean {
    return this.#evicted.has(client);
  }

  /**
   * A connection just opened: if its host was found not to be the primary while it was connecting, it
   * is let go like the others (marked broken: never handed out).
   */
  opened(client: pg.Client, facts: ConnectionFacts): void {
    if (!this.#isCurrent(client)) this.#evict(client, facts);
  }

  /**
   * The server behind `client` is not the primary (it refused read-write work, in_hot_standby turned
   * on): no connection to its host made until now is handed out again (each is marked broken), idle
   * ones are closed at once, checked-out ones when they are released, and new connections search the
   * host list (or re-resolve the one name) for the primary. Idempotent per host and generation.
   * @returns whether new connections look for a primary ({@link HostSelector.seeksPrimary}).
   */
  markNotPrimary(client: pg.Client, reason: string): boolean {
    const placement = this.#placements.get(client);
    if (!placement || !this.#isCurrent(client) || !this.#options.isOpen()) return this.hosts.seeksPrimary;
    const host = placement.choice.host;
    this.hosts.markNotPrimary(host, reason, serverParameter(client, 'in_hot_standby') !== 'on');
    this.#options.log.warn({ host: host.key, reason }, 'server is not the primary: its connections are let go');
    for (const other of this.#options.open) {
      const facts = this.#options.factsOf(other);
      if (!facts || this.#isCurrent(other)) continue;
      this.#evict(other, facts);
      // pg-pool removes an idle client whose socket fails; one checked out is destroyed on release.
      if (!facts.lease) destroySocket(other);
    }
    return this.hosts.seeksPrimary;
  }

  /**
   * After a failed connect of an acquire: go on to the next host, pause and search again while a host
   * answered with the wrong role (a promotion under way), or throw.
   * @throws the error itself when it is not a connect failure to search past (one host and no role
   * needed, as without a list); {@link DatabaseConnectionError} `CONNECTION_FAILED` when every host
   * of the list refused; `NO_SUITABLE_HOST` when the deadline passes with no host satisfying
   * target_session_attrs. `signal`: the caller's, which ends the pause between two rounds early.
   */
  async searchOn(error: unknown, search: HostSearch, deadline: number, signal?: AbortSignal): Promise<void> {
    const { name } = this.#options;
    const isOpen = this.#options.isOpen();
    // The deadline passed in the middle of a search that had passed hosts over: say why, not just "timeout".
    if (error instanceof PoolTimeoutError && search.hasEverSeenWrongRole && isOpen) {
      this.hosts.giveUp();
      throw new DatabaseConnectionError(
        `No suitable host of ${name} before the acquire deadline: ${this.hosts.status().reason ?? error.message}`,
        { code: 'NO_SUITABLE_HOST' },
      );
    }
    if (!this.isSearchable(error) || !isOpen) throw error;
    search.attempts++;
    if (error instanceof RoleMismatchError) search.hasSeenWrongRole = search.hasEverSeenWrongRole = true;
    const rounds = this.hosts.effectiveTarget === 'prefer-standby' ? 2 : 1;
    if (search.attempts % (this.hosts.hosts.length * rounds) !== 0) return;
    const reason = this.hosts.status().reason ?? summarize(error).message;
    if (!search.hasSeenWrongRole) {
      // Every host refused: fail as one host would, naming them all (ready() retries with backoff).
      search.isEveryHostDown = true;
      this.hosts.restart();
      throw new DatabaseConnectionError(`Could not connect to any host of ${name}: ${reason}`, { cause: error });
    }
    if (deadline - Date.now() <= SEARCH_PAUSE_MILLIS) {
      this.hosts.giveUp();
      throw new DatabaseConnectionError(`No suitable host of ${name} before the acquire deadline: ${reason}`, {
        code: 'NO_SUITABLE_HOST',
      });
    }
    // A caller waits on this pause (its call is pending I/O to it): it keeps the process alive, as a
    // connect in progress would, so a script awaiting the call gets its result or NO_SUITABLE_HOST.
    // The caller's abort ends the pause (the acquire then rejects with QUERY_CANCELLED).
    await sleep(SEARCH_PAUSE_MILLIS, 'ref', signal);
    this.hosts.restart();
    search.hasSeenWrongRole = false;
  }

  /**
   * A connect failure the acquire may search past: a server of the wrong role, or, with a host list, a
   * host that refused the connection (not an open circuit, a credentials failure or a deadline).
   */
  isSearchable(error: unknown): boolean {
    if (error instanceof RoleMismatchError) return true;
    return (
      this.hosts.isList &&
      error instanceof DatabaseConnectionError &&
      (error.code === 'CONNECTION_FAILED' || error.code === 'CONNECTION_LOST')
    );
  }

  /** in_hot_standby changed under an open session: leave the host if it no longer satisfies the target. */
  #onRoleChange(client: pg.Client, isInHotStandby: boolean): void {
    const placement = this.#placements.get(client);
    if (!placement) return;
    const role = { isInHotStandby, isDefaultReadOnly: undefined };
    const shouldLeave = this.hosts.needsRole
      ? !matchesTarget(this.hosts.effectiveTarget, role, placement.choice.pass)
      : this.#options.isPrimary && isInHotStandby;
    if (shouldLeave) this.markNotPrimary(client, `reported in_hot_standby=${isInHotStandby ? 'on' : 'off'}`);
  }

  /** False once the connection's host was found not to be the primary after it connected. */
  #isCurrent(client: pg.Client): boolean {
    const placement = this.#placements.get(client);
    return placement === undefined || placement.choice.host.generation === placement.generation;
  }

  #evict(client: pg.Client, facts: ConnectionFacts): void {
    facts.isBroken = true;
    if (this.#evicted.has(client)) return;
    this.#evicted.add(client);
    this.#options.counters.notPrimaryEvictions++;
  }
}
