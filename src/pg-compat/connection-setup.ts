import type pg from 'pg';
import type { Lease } from '../pool/lease.js';
import type { NodePool } from '../pool/node-pool.js';
import { observeStatement, SESSION_CLEAN } from '../pool/session-state.js';
import { isSubmittable, type QueryCallback } from './facade-query.js';
import { NOOP } from './pg-shapes.js';
import type { FacadeSettings } from './pool-config.js';

/**
 * How a new connection is set up before a caller uses it: pg-pool's `onConnect` and `verify` hooks,
 * run once per connection at its first checkout through this Pool, and the statements a `connect`
 * event listener sends. What either changes in the session is the connection's baseline
 * (`NodePool.addSessionBaseline`): release never resets it away.
 */
export class ConnectionSetup {
  readonly #settings: FacadeSettings;
  readonly #primary: NodePool;
  /** Connections whose hooks have run. */
  readonly #done = new WeakSet<pg.Client>();

  constructor(settings: FacadeSettings, primary: NodePool) {
    this.#settings = settings;
    this.#primary = primary;
  }

  /** Runs the hooks on `client` (the facade handed out for `lease`) unless they ran on this connection already. */
  async prepare(client: pg.PoolClient, lease: Lease): Promise<void> {
    const { onConnect, verify } = this.#settings;
    if ((!onConnect && !verify) || this.#done.has(lease.client)) return;
    if (onConnect) await onConnect(client);
    if (verify)
      await new Promise<void>((resolve, reject) => verify(client, (error?: Error) => (error ? reject(error) : resolve())));
    this.#done.add(lease.client);
    // The hooks set the connection up: their session changes are its baseline, not this holder's.
    this.#primary.addSessionBaseline(lease.client, lease.sessionChanges);
    lease.sessionChanges = SESSION_CLEAN;
  }

  /** pg's own query on a connection not yet handed out (a `connect` listener's), observed into its baseline. */
  query(client: pg.PoolClient, query: unknown, values: unknown, callback: QueryCallback | undefined): unknown {
    const text = typeof query === 'string' ? query : (query as { text?: string } | null)?.text;
    const observe = (result: pg.QueryResult | undefined) =>
      this.#primary.addSessionBaseline(client, observeStatement(SESSION_CLEAN, text, result));
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
}
