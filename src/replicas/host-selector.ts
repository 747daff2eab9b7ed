import { formatHost, orderHosts, type HostAddress, type LoadBalanceHosts } from './host-list.js';
import { describeTarget, needsRole, type TargetSessionAttrs } from './session-attrs.js';

/** One server of the primary pool's host list, as the selector tracks it. */
export interface HostState {
  readonly address: HostAddress;
  /** `host:port` for messages, stats and health. */
  readonly key: string;
  /** Raised each time the host is found not to be the primary: connections made before are let go. */
  generation: number;
  /** Why the host was last passed over (refused a connection, wrong role), for messages and health. */
  lastProblem: string | undefined;
  /** What kind of problem that was: only a server of the wrong role means a failover may be under way. */
  lastProblemKind: 'down' | 'wrong-role' | 'not-primary' | undefined;
}

/** Where a new connection goes, and in which pass of the search it is judged (2: prefer-standby's fallback). */
export interface HostChoice {
  readonly host: HostState;
  readonly pass: 1 | 2;
}

interface Search {
  readonly order: HostState[];
  index: number;
  pass: 1 | 2;
  /** A host answered in this search but had the wrong role (so waiting for a promotion may help). */
  sawWrongRole: boolean;
  isExhausted: boolean;
}

/** What health and stats show about the search for the primary. */
export interface HostSelectorStatus {
  /** The host new connections go to, `host:port`; null while it is being found. */
  readonly currentHost: string | null;
  /**
   * True while no host is known to satisfy target_session_attrs and some server answered with the
   * wrong role or was found not to be the primary: a failover is being followed. (Every host refusing
   * connections is an outage, not a search.)
   */
  readonly isFinding: boolean;
  /** Why each host was passed over in the last search, when it was (`h1:5432 refused the connection; ...`). */
  readonly reason: string | undefined;
}

/**
 * Chooses the server for each new connection of one pool, as libpq walks a host list: hosts in
 * order (or shuffled for `load_balance_hosts=random`), each new connection judged against
 * `target_session_attrs` by the pool, and the first host that satisfies it kept until it fails or is
 * found not to be the primary any more. Then the search starts again from the top of the list. With
 * one host (a DNS name) the search is that host again: each new connection re-resolves the name.
 *
 * The selector does no I/O: the pool reports each attempt with {@link accept} or {@link reject}.
 */
export class HostSelector {
  readonly hosts: readonly HostState[];
  readonly target: TargetSessionAttrs;
  /** Times the pool took up a primary after losing the one it had (`getStats().primaryChanges`). */
  primaryChanges = 0;
  #loadBalance: LoadBalanceHosts;
  #current: HostChoice | undefined;
  #lastAccepted: HostState | undefined;
  #hasLostPrimary = false;
  #search: Search | undefined;
  #onChange: (from: HostState, to: HostState) => void;
  #followsPrimary: boolean;
  /** With target `any`: a host was found not to be the primary, so new connections must reach one. */
  #isFollowing = false;

  /**
   * @param followsPrimary - the primary's pool: with target `any`, once a server is found not to be
   * the primary, new connections must be primaries until one is found (or a search gives up).
   */
  constructor(
    hosts: readonly HostAddress[],
    target: TargetSessionAttrs,
    loadBalance: LoadBalanceHosts,
    options: { followsPrimary?: boolean; onChange?: (from: HostState, to: HostState) => void } = {},
  ) {
    this.hosts = hosts.map((address) => ({
      address,
      key: formatHost(address),
      generation: 0,
      lastProblem: undefined,
      lastProblemKind: undefined,
    }));
    this.target = target;
    this.#loadBalance = loadBalance;
    this.#onChange = options.onChange ?? (() => undefined);
    this.#followsPrimary = options.followsPrimary ?? false;
  }

  /**
   * The target new connections are judged against now: `target`, except that the primary's pool with
   * `any` asks for a `primary` while it follows one that moved (so no connection to the standby that a
   * moved DNS name still points at is kept).
   */
  get effectiveTarget(): TargetSessionAttrs {
    return this.#isFollowing ? 'primary' : this.target;
  }

  /** New connections go to a host whose last accepted connection reached a primary. */
  get hasPrimary(): boolean {
    return this.#current !== undefined && this.#current.host === this.#lastAccepted && !this.#hasLostPrimary;
  }

  /** Several hosts to choose from. */
  get isList(): boolean {
    return this.hosts.length > 1;
  }

  /** Each new connection's role must be checked (target_session_attrs is not `any`). */
  get needsRole(): boolean {
    return needsRole(this.effectiveTarget);
  }

  /** The host that satisfied target_session_attrs last, while it still does. */
  get current(): HostState | undefined {
    return this.#current?.host;
  }

  /** The host for the next new connection. */
  pick(): HostChoice {
    if (this.#current) return this.#current;
    this.#search ??= this.#newSearch(1);
    const search = this.#search;
    return { host: search.order[Math.min(search.index, search.order.length - 1)]!, pass: search.pass };
  }

  /**
   * A new connection to `choice.host` satisfied target_session_attrs: new connections go there.
   * `isPrimary`: the server's role when known (false: a standby taken under `any`, which is not
   * counted as taking up a new primary).
   */
  accept(choice: HostChoice, isPrimary?: boolean): void {
    const isNewCurrent = !this.#current;
    if (!this.#current) {
      this.#current = choice;
      this.#search = undefined;
    }
    // Another host was taken up meanwhile (concurrent connects during a search): that one stands.
    if (this.#current.host !== choice.host) return;
    choice.host.lastProblem = undefined;
    choice.host.lastProblemKind = undefined;
    if (isPrimary === false) {
      // The name the primary was reached by now leads to a standby: the primary is lost from here.
      if (isNewCurrent && this.#lastAccepted === choice.host) this.#hasLostPrimary = true;
      return;
    }
    const previous = this.#lastAccepted;
    if (previous !== undefined && (previous !== choice.host || this.#hasLostPrimary)) {
      this.primaryChanges++;
      this.#onChange(previous, choice.host);
    }
    this.#lastAccepted = choice.host;
    this.#hasLostPrimary = false;
    this.#isFollowing = false;
  }

  /**
   * A new connection to `host` failed (`down`) or reached a server of the wrong role: the search
   * moves on to the next host. When every host was tried, {@link isExhausted} turns true (after
   * prefer-standby's second pass, which takes any host).
   */
  reject(host: HostState, problem: 'down' | 'wrong-role', reason: string): void {
    host.lastProblem = reason;
    host.lastProblemKind = problem;
    if (this.#current?.host === host) this.#current = undefined;
    this.#search ??= this.#newSearch(1);
    const search = this.#search;
    if (problem === 'wrong-role') search.sawWrongRole = true;
    if (search.order[search.index] !== host) return;
    search.index++;
    if (search.index < search.order.length) return;
    if (this.effectiveTarget === 'prefer-standby' && search.pass === 1) {
      this.#search = { ...this.#newSearch(2), sawWrongRole: search.sawWrongRole };
      return;
    }
    search.isExhausted = true;
  }

  /** Every host was tried in this search and none satisfied target_session_attrs. */
  get isExhausted(): boolean {
    return this.#search?.isExhausted === true;
  }

  /** Some host answered in this search, with the wrong role (a promotion may be under way). */
  get hasSeenWrongRole(): boolean {
    return this.#search?.sawWrongRole === true;
  }

  /** Starts the search again from the top of the list (after a pause, once it was exhausted). */
  restart(): void {
    this.#search = this.#newSearch(1);
  }

  /** A search ran out of time: with target `any`, stop insisting on a primary (reads may use what answers). */
  giveUp(): void {
    this.#isFollowing = false;
    this.restart();
  }

  /**
   * `host` is not (or may no longer be) the primary: SQLSTATE 25006 on read-write work, in_hot_standby
   * turned on, or a role probe said so. Its connections made before now are let go
   * ({@link isCurrentGeneration}), and the next new connection searches the list again.
   */
  markNotPrimary(host: HostState, reason: string, wasPrimary = true): void {
    host.generation++;
    host.lastProblem = reason;
    host.lastProblemKind = 'not-primary';
    // Following makes sense with a list (another host may be the primary), or for a primary that moved
    // (the pool had reached one by this name). One host pointed at a standby on purpose never had one: a
    // write refused there is just refused, and new connections keep taking the standby for reads.
    if (this.#followsPrimary && this.target === 'any' && (this.isList || this.#lastAccepted !== undefined))
      this.#isFollowing = true;
    // A session that started on a standby refusing writes loses no primary (the pool knew it was a standby).
    if (this.#lastAccepted === host && wasPrimary) this.#hasLostPrimary = true;
    if (this.#current?.host === host) this.#current = undefined;
  }

  /**
   * New connections look for a primary: the target asks for one (`read-write`, `primary`), or the pool
   * follows a primary that moved. False for one host pointed at a standby on purpose, or a target that
   * takes standbys: a write refused there will be refused again.
   */
  get seeksPrimary(): boolean {
    return this.#isFollowing || this.target === 'read-write' || this.target === 'primary';
  }

  /**
   * `host` lost a connection (server shutdown, 57P01/57P02/57P03, network): the next new connection
   * searches the list again, so a failover is noticed by the first connect after it. Connections are
   * kept; checkout validates them.
   */
  suspect(host: HostState, reason: string): void {
    if (this.#current?.host !== host || !this.isList) return;
    host.lastProblem = reason;
    host.lastProblemKind = 'down';
    this.#current = undefined;
  }

  /** Whether a connection made to `host` at `generation` may still be handed out. */
  isCurrentGeneration(host: HostState, generation: number): boolean {
    return host.generation === generation;
  }

  /** For health and stats. */
  status(): HostSelectorStatus {
    const current = this.#current?.host;
    if (current) return { currentHost: current.key, isFinding: false, reason: undefined };
    const problems = this.hosts.filter((host) => host.lastProblem !== undefined);
    const isFinding = problems.some((host) => host.lastProblemKind === 'wrong-role' || host.lastProblemKind === 'not-primary');
    const reason =
      problems.length === 0
        ? undefined
        : `no host ${describeTarget(this.effectiveTarget, 'past')} (target_session_attrs=${this.effectiveTarget}): ${problems
            .map((host) => `${host.key} ${host.lastProblem}`)
            .join('; ')}`;
    return { currentHost: null, isFinding, reason };
  }

  #newSearch(pass: 1 | 2): Search {
    return { order: orderHosts(this.hosts, this.#loadBalance), index: 0, pass, sawWrongRole: false, isExhausted: false };
  }
}
