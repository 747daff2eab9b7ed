import type pg from 'pg';
import type { Logger } from 'pino';
import type { ResolvedConfig } from '../config.js';
import { destroySocket } from '../client-internals.js';
import { summarize } from '../error-summary.js';
import type { NodePool } from '../pool/node-pool.js';
import type { NodeStats } from '../stats.js';
import { raceDeadline, startTimer } from '../timers.js';

/** Where read-only work may go: `primary` only, `replica` only, or `any` node. */
export type ReadTarget = 'primary' | 'replica' | 'any';

/** A node as the router sees it. */
export interface RoutedNode {
  readonly pool: NodePool;
  /** Set when the node failed to connect or answer; no reads until then and a successful probe. */
  bannedUntil: number;
  isBanned: boolean;
  /** Replay lag of a replica in ms (0 when it has replayed everything the primary wrote), null if unknown. */
  lagMillis: number | null;
  /** Replica: last replayed WAL position; primary: current WAL position. */
  lsn: bigint | null;
  /** `pg_is_in_recovery()` as last seen, null before the first probe. */
  isInRecovery: boolean | null;
  lastError: string | undefined;
  monitor: pg.Client | undefined;
}

const PROBE_SQL = `SELECT pg_is_in_recovery() AS in_recovery,
  (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text AS lsn,
  CASE WHEN pg_is_in_recovery() THEN extract(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000 END AS replay_age_millis`;

/** Parses a pg_lsn text (`16/B374D848`) into a comparable number; undefined when malformed. */
export function parseLsn(text: unknown): bigint | undefined {
  if (typeof text !== 'string') return undefined;
  const match = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text.trim());
  return match ? (BigInt(`0x${match[1]}`) << 32n) + BigInt(`0x${match[2]}`) : undefined;
}

function newNode(pool: NodePool): RoutedNode {
  return {
    pool,
    bannedUntil: 0,
    isBanned: false,
    lagMillis: null,
    lsn: null,
    isInRecovery: null,
    lastError: undefined,
    monitor: undefined,
  };
}

/**
 * Chooses nodes for work and watches them. Writes and read-write transactions always go to the
 * primary. Reads go to the least busy usable replica (ties broken round-robin), then the primary:
 * a read never fails because replicas are down while the primary is up. A replica is usable when it
 * is not banned, is in recovery (a "replica" that turns out to be a primary is reported, not used),
 * and lags at most `replicaMaxLagMillis`. A background probe every `replicaCheckIntervalMillis`
 * measures role, replay position and lag, bans nodes that fail and re-admits them after a success.
 */
export class Router {
  readonly primary: RoutedNode;
  readonly replicas: readonly RoutedNode[];
  #config: ResolvedConfig;
  #log: Logger;
  #next = 0;
  #timer: NodeJS.Timeout | undefined;
  #isClosed = false;
  #warned = new WeakSet<RoutedNode>();
  #primaryOnly: readonly RoutedNode[];

  constructor(primary: NodePool, replicas: readonly NodePool[], config: ResolvedConfig, log: Logger) {
    this.primary = newNode(primary);
    this.replicas = replicas.map(newNode);
    this.#primaryOnly = Object.freeze([this.primary]);
    this.#config = config;
    this.#log = log;
    if (this.replicas.length > 0) this.#schedule(0);
  }

  get nodes(): readonly RoutedNode[] {
    return [this.primary, ...this.replicas];
  }

  /** Nodes to try, best first, for work of this kind. Empty only for `target: 'replica'` with none usable. */
  candidates(isReadOnly: boolean, target: ReadTarget | undefined): readonly RoutedNode[] {
    // Without replicas every call but target 'replica' gets the primary: no array built per call.
    if (!isReadOnly || target === 'primary' || (this.replicas.length === 0 && target !== 'replica')) return this.#primaryOnly;
    const usable = this.replicas.filter((node) => this.isUsable(node));
    const ordered = this.#byLoad(target === 'any' ? [...usable, this.primary] : usable);
    return target === 'replica' || target === 'any' ? ordered : [...ordered, this.primary];
  }

  /** A replica that may serve reads now. */
  isUsable(node: RoutedNode): boolean {
    if (node.isBanned || node.pool.state !== 'open' || node.isInRecovery === false) return false;
    return node.lagMillis === null || node.lagMillis <= this.#config.replicaMaxLagMillis;
  }

  #byLoad(nodes: RoutedNode[]): RoutedNode[] {
    if (nodes.length < 2) return nodes;
    const start = this.#next++ % nodes.length;
    const rotated = [...nodes.slice(start), ...nodes.slice(0, start)];
    const load = (node: RoutedNode) => {
      const snap = node.pool.snapshot();
      return snap.active + snap.waiting;
    };
    // Stable sort keeps the round-robin order among equally busy nodes.
    return rotated.sort((a, b) => load(a) - load(b));
  }

  /** Takes a replica out of read rotation for `replicaBanMillis` (the primary is never banned). */
  ban(node: RoutedNode, error: unknown): void {
    if (node === this.primary) return;
    node.lastError = summarize(error).message;
    node.bannedUntil = Date.now() + this.#config.replicaBanMillis;
    if (!node.isBanned) this.#log.warn({ node: node.pool.name, error: summarize(error) }, 'replica banned from reads');
    node.isBanned = true;
  }

  /** Status for stats and health. */
  status(node: RoutedNode): NodeStats['status'] {
    // A host of the primary's list that is the primary now (readTargetSessionAttrs prefer-standby): no reads, no fault.
    if (node.pool.target.isListHost === true && node.isInRecovery === false && !node.isBanned) return 'primary';
    if (node.isBanned || (node !== this.primary && node.isInRecovery === false)) return 'banned';
    if (node !== this.primary && node.lagMillis !== null && node.lagMillis > this.#config.replicaMaxLagMillis) return 'lagging';
    return 'up';
  }

  nodeStats(): NodeStats[] {
    return this.nodes.map((node) =>
      node.pool.stats({ status: this.status(node), lagMillis: node.lagMillis, isInRecovery: node.isInRecovery }),
    );
  }

  #schedule(delayMillis: number): void {
    if (this.#isClosed) return;
    this.#timer = startTimer(
      delayMillis,
      () => void this.probeAll().finally(() => this.#schedule(this.#config.replicaCheckIntervalMillis)),
      'unref',
    );
  }

  /** One probe round: the primary first (for its WAL position), then every replica. */
  async probeAll(): Promise<void> {
    await this.#probe(this.primary);
    await Promise.all(this.replicas.map((node) => this.#probe(node)));
  }

  async #probe(node: RoutedNode): Promise<void> {
    const timeoutMillis = Math.min(this.#config.validationTimeoutMillis, this.#config.replicaCheckIntervalMillis);
    try {
      // The query (and its connect timeout) starts before the deadline is armed, as it always has.
      const probing = this.#query(node, timeoutMillis);
      const row = await raceDeadline(
        () => probing,
        timeoutMillis,
        () => {
          throw new Error(`probe did not answer within ${timeoutMillis} ms`);
        },
        'unref',
      );
      this.#apply(node, row);
    } catch (error) {
      if (node.monitor) destroySocket(node.monitor);
      node.monitor = undefined;
      node.lastError = summarize(error).message;
      if (node === this.primary) this.#log.warn({ error: summarize(error) }, 'primary probe failed');
      else this.ban(node, error);
    }
  }

  async #query(
    node: RoutedNode,
    timeoutMillis: number,
  ): Promise<{ in_recovery: boolean; lsn: string | null; replay_age_millis: number | null }> {
    if (!node.monitor) {
      const client = node.pool.createClient('monitor', timeoutMillis);
      node.monitor = client;
      await client.connect();
      // A monitor connection must not keep the process alive on its own.
      (client as unknown as { unref?: () => void }).unref?.();
    }
    return (await node.monitor.query(PROBE_SQL)).rows[0];
  }

  #apply(node: RoutedNode, row: { in_recovery: boolean; lsn: string | null; replay_age_millis: number | string | null }): void {
    node.isInRecovery = row.in_recovery;
    node.lsn = parseLsn(row.lsn) ?? null;
    if (node === this.primary) {
      if (row.in_recovery && !this.#warned.has(node))
        this.#log.error('the configured primary is in recovery (a standby): writes are refused until it is promoted');
      if (row.in_recovery) this.#warned.add(node);
      else this.#warned.delete(node);
      return;
    }
    if (!row.in_recovery) {
      if (!this.#warned.has(node) && node.pool.target.isListHost === true)
        this.#log.info({ node: node.pool.name }, 'a host of the list is the primary: it gets no reads as a replica');
      else if (!this.#warned.has(node))
        this.#log.error({ node: node.pool.name }, 'a configured replica is not in recovery (it is a primary): it gets no reads');
      this.#warned.add(node);
    } else this.#warned.delete(node);
    const primaryLsn = this.primary.lsn;
    const age = row.replay_age_millis === null ? null : Number(row.replay_age_millis);
    // Caught up (replayed at least what the primary had written) means no lag, however old the last
    // replayed transaction is; otherwise the lag is the age of the last replayed transaction.
    node.lagMillis =
      primaryLsn !== null && node.lsn !== null && node.lsn >= primaryLsn ? 0 : age === null ? null : Math.max(0, Math.round(age));
    if (node.isBanned && Date.now() >= node.bannedUntil) {
      node.isBanned = false;
      node.lastError = undefined;
      this.#log.info({ node: node.pool.name }, 'replica re-admitted after a successful probe');
    }
  }

  /** Stops probing and closes the monitor connections. */
  close(): void {
    this.#isClosed = true;
    clearTimeout(this.#timer);
    for (const node of this.nodes) {
      if (node.monitor) {
        destroySocket(node.monitor);
        void node.monitor.end().catch(() => undefined);
        node.monitor = undefined;
      }
    }
  }
}
