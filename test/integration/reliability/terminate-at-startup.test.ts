/**
 * A backend ended (pg_terminate_backend; a server shutdown sends the same FATAL 57P01) just as its
 * startup finished, with the client reading ReadyForQuery and the FATAL in one chunk: on a busy
 * client, or after a congested return path, both arrive in one read. pg then emits the FATAL as an
 * 'error' event on a client whose connect has just succeeded, before pg-pool has attached a listener.
 * The process must not crash, and the dead connection must never be handed to a caller.
 *
 * The fault proxy holds the server's replies while the backend starts and is terminated, then
 * delivers them in one write. The server trusts loopback logins, so the startup needs no reply from
 * the client (a password exchange would wait for the held replies).
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { Database } from '../../../src/index.js';
import { startFaultProxy, type FaultProxy } from '../../support/fault-proxy.js';
import { startPostgres, type PostgresServer } from '../../support/postgres-server.js';
import { eventually, guardProcess, printFigures, uniqueName, urlVia } from './support.js';

const guard = guardProcess();
let server: PostgresServer;
let proxy: FaultProxy;

beforeAll(async () => {
  server = await startPostgres({
    hba: ['local all all trust', 'host all all 127.0.0.1/32 trust', 'host all all ::1/128 trust'],
  });
  proxy = await startFaultProxy({ targetHost: '127.0.0.1', targetPort: server.port });
});
afterAll(async () => {
  await proxy?.close();
  await server?.destroy();
  guard.dispose();
});

/** The pid of the backend of `appName` once its startup is done (state idle: ReadyForQuery sent). */
async function startedBackend(appName: string): Promise<number> {
  return eventually(async () => {
    const { rows } = await server.query<{ pid: number }>(
      "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND state = 'idle'",
      [appName],
    );
    return rows[0]?.pid;
  }, 5000);
}

test('a backend terminated in the same read as its startup completes is never handed out: no uncaught error, and a write is served by a new backend', async () => {
  const appName = uniqueName('startup_kill');
  const db = new Database({
    connectionString: urlVia(server.url, proxy),
    applicationName: appName,
    logLevel: 'silent',
    min: 0,
    max: 2,
    connectionTimeoutMillis: 5000,
    circuitBreakerThreshold: 0,
  });
  try {
    proxy.holdReplies();
    // A write: never sent twice, so a dead connection handed to it would be its error.
    const first = db.executeQuery<{ pid: number }>('SELECT pg_backend_pid() AS pid', [], { readOnly: false });
    const pid = await startedBackend(appName);
    await server.query('SELECT pg_terminate_backend($1)', [pid]);
    // Gone: its FATAL message and the end of its socket are held in the proxy too.
    await eventually(async () => {
      const { rowCount } = await server.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid]);
      return rowCount === 0 ? true : undefined;
    }, 5000);
    proxy.heal();

    const [served] = await first;
    expect(served!.pid).not.toBe(pid);
    expect(guard.crashes).toEqual([]);
    const stats = db.getStats();
    expect(stats.errors).toBe(0);
    expect(stats.poolSize).toBe(1);
    expect(stats.totalConnections).toBe(2);
    printFigures('terminate-at-startup', {
      killedAsLoginEnded: 1,
      writeServedByNewBackend: served!.pid !== pid,
      callerErrors: stats.errors,
      uncaughtErrors: guard.crashes.length,
      connectionsOpened: stats.totalConnections,
    });
  } finally {
    await db.shutdown({ timeoutMillis: 1000 });
  }
  expect(guard.crashes).toEqual([]);
});
