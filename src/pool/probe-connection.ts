import type pg from 'pg';
import { destroySocket } from '../client-internals.js';
import { raceDeadline } from '../timers.js';

/** Where a probe connection comes from: a node pool's standalone clients (same server, TLS and login). */
export interface ProbeTarget {
  createClient(applicationSuffix: string, connectionTimeoutMillis: number): pg.Client;
}

/** How a probe ended: the query's rows, the error that stopped it (connect or query), or the deadline. */
export type ProbeOutcome<R> = { readonly rows: R[] } | { readonly error: unknown } | 'timeout';

/**
 * A standalone connection outside the pool (so an exhausted pool cannot make a healthy server look
 * dead), one query within `timeoutMillis` counted from before the connect, then the connection is
 * destroyed whatever happened. Never rejects. `applicationSuffix` is appended to application_name.
 */
export async function probeConnection<R extends pg.QueryResultRow>(
  target: ProbeTarget,
  applicationSuffix: string,
  timeoutMillis: number,
  sql: string,
  values?: unknown[],
): Promise<ProbeOutcome<R>> {
  const client = target.createClient(applicationSuffix, timeoutMillis);
  const attempt = async () => {
    try {
      await client.connect();
      return { rows: (await client.query<R>(sql, values)).rows };
    } catch (error) {
      return { error };
    }
  };
  try {
    return await raceDeadline(attempt, timeoutMillis, () => 'timeout' as const, 'unref');
  } finally {
    destroySocket(client);
    void client.end().catch(() => undefined);
  }
}
