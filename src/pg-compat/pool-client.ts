import type pg from 'pg';
import { DatabaseQueryError } from '../errors.js';
import type { Lease } from '../pool/lease.js';
import type { QueryContext } from '../query-context.js';
import { queryArguments, sendFacadeQuery, type QueryCallback } from './facade-query.js';
import type { FacadeSettings } from './pool-config.js';

/** What a checked-out client needs from its Pool. */
export interface ClientHost {
  readonly context: QueryContext;
  readonly settings: FacadeSettings;
  readonly Promise: PromiseConstructorLike;
  /** Ends a checkout: hygiene, the `release` event, the lease back to its node pool. */
  endCheckout(client: pg.PoolClient, lease: Lease, error: unknown): void;
  /** A checked-out client was garbage-collected without `release()`: close its connection, free its slot. */
  reclaim(lease: Lease): void;
  /**
   * A statement on a new connection before its first checkout (a `connect` event listener): pg's own,
   * and what it changes in the session is the connection's baseline, not a holder's change.
   */
  setupQuery(client: pg.PoolClient, query: unknown, values: unknown, callback: QueryCallback | undefined): unknown;
}

/**
 * The part of a facade that outlives nothing: what the finalization registry holds. It must not
 * reference the client proxy, or the proxy could never be collected.
 */
interface CheckoutState {
  lease: Lease | undefined;
  readonly host: ClientHost;
}

// A caller that drops a checked-out client without releasing it (drizzle-orm #6023 when BEGIN fails)
// would hold its connection for the life of the process; once the client is unreachable, the slot comes back.
const reclaimer = new FinalizationRegistry<CheckoutState>((state) => {
  const lease = state.lease;
  if (!lease) return;
  state.lease = undefined;
  state.host.reclaim(lease);
});

function releasedTwice(): never {
  // pg-pool's words, for code that matches on them.
  throw new Error('Release called on client which has already been released to the pool.');
}

/**
 * A checked-out client as `pool.connect()` hands it out: pg's own client seen through a proxy, so
 * everything pg offers works unchanged (`instanceof pg.Client`, events, `escapeIdentifier`, cursors,
 * COPY), except `query`, which the library counts and tracks, and `release`, which ends the checkout
 * with the library's hygiene. One facade serves a connection as long as the caller keeps it, so the
 * same object comes back from later checkouts of that connection, as in pg-pool.
 */
export class ClientFacade implements ProxyHandler<pg.PoolClient> {
  /** The proxy handed to callers. */
  readonly client: pg.PoolClient;
  readonly #target: pg.PoolClient;
  readonly #state: CheckoutState;
  #release: ((error?: unknown) => void) | undefined;
  #listeners: [string | symbol, (...args: unknown[]) => void][] | undefined;
  /** Never checked out yet: made for a `connect` event, whose listener may set the connection up. */
  #isFresh = true;

  constructor(target: pg.PoolClient, host: ClientHost) {
    this.#target = target;
    this.#state = { lease: undefined, host };
    this.client = new Proxy(target, this);
    reclaimer.register(this.client, this.#state);
  }

  /** True while a caller holds this client. */
  get isCheckedOut(): boolean {
    return this.#state.lease !== undefined;
  }

  /** Starts a checkout of `lease`; `client.release` ends it, once. */
  begin(lease: Lease): void {
    this.#state.lease = lease;
    this.#isFresh = false;
    let isReleased = false;
    this.#release = (error?: unknown) => {
      if (isReleased) releasedTwice();
      isReleased = true;
      this.#end(error);
    };
  }

  #end(error: unknown): void {
    const lease = this.#state.lease;
    this.#state.lease = undefined;
    this.#release = undefined;
    if (this.#listeners) {
      // Listeners the holder added (notification, notice, error) go with the checkout, not with the connection.
      for (const [event, listener] of this.#listeners) this.#target.removeListener(event, listener);
      this.#listeners = undefined;
    }
    if (lease) this.#state.host.endCheckout(this.client, lease, error);
  }

  get(target: pg.PoolClient, property: string | symbol): unknown {
    switch (property) {
      case 'query':
        return this.#query;
      case 'release':
        return this.#release ?? releasedTwice;
      case 'on':
      case 'addListener':
      case 'once':
      case 'prependListener':
      case 'prependOnceListener':
        return this.#listen(property);
      case 'binary':
        return this.#state.host.settings.binary || (target as { binary?: boolean }).binary;
    }
    return Reflect.get(target, property, target);
  }

  #listen(method: 'on' | 'addListener' | 'once' | 'prependListener' | 'prependOnceListener') {
    return (event: string | symbol, listener: (...args: unknown[]) => void) => {
      if (this.#state.lease) (this.#listeners ??= []).push([event, listener]);
      (this.#target[method] as (event: string | symbol, listener: (...args: unknown[]) => void) => unknown)(event, listener);
      return this.client;
    };
  }

  #query = (query: unknown, values?: unknown, callback?: unknown): unknown => {
    const host = this.#state.host;
    const lease = this.#state.lease;
    const args = queryArguments(values, callback);
    if (!lease && this.#isFresh) return host.setupQuery(this.#target, query, args.values, args.callback);
    if (!lease) {
      const error = new DatabaseQueryError(
        'This client was released to the pool; check out another one with pool.connect() before querying',
        undefined,
      );
      if (args.callback) return void process.nextTick(args.callback as QueryCallback, error);
      return new host.Promise((_resolve, reject) => reject(error));
    }
    return sendFacadeQuery(
      lease,
      host.context,
      host.settings,
      host.Promise,
      query,
      args.values,
      args.callback,
      host.context.statements,
    );
  };
}
