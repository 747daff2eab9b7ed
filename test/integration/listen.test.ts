import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { ConfigError, DatabaseConnectionError, PoolClosedError, type Database } from '../../src/index.js';
import { getTestDatabaseUrl } from '../support/database-url.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { startPostgres, type PostgresServer } from '../support/postgres-server.js';
import {
  adminQuery,
  captureLogs,
  ensureBuiltDist,
  eventually,
  openDatabase,
  ROOT,
  uniqueName,
  within,
} from '../support/test-database.js';
import { failOnCrashes } from '../support/crash-watch.js';

failOnCrashes();

let db: Database | undefined;
let server: PostgresServer | undefined;
let proxy: FaultProxy | undefined;

afterEach(async () => {
  await db?.shutdown({ timeoutMillis: 2000 });
  db = undefined;
  await proxy?.close();
  proxy = undefined;
});
afterAll(async () => {
  await server?.destroy();
});

/** Collects payloads; `next(n)` waits until `n` have arrived. */
function inbox() {
  const payloads: string[] = [];
  return {
    payloads,
    handler: (payload: string) => void payloads.push(payload),
    next: (count: number) =>
      eventually(() => (payloads.length >= count ? payloads.slice() : undefined), 10_000, `${count} notifications`),
  };
}

/** The backend pid of the listener connection, found by its application_name. */
async function listenerPid(url: string, appName: string): Promise<number> {
  return eventually(async () => {
    const rows = await adminQuery<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE application_name = $1', [
      `${appName} listener`,
    ]).catch(() => []);
    void url;
    return rows[0]?.pid;
  });
}

describe('db.listen and db.notify', () => {
  it('delivers a notification sent after listen resolves, on a case-sensitive channel with quotes in its name', async () => {
    db = openDatabase();
    const box = inbox();
    const channel = `Orders "eu" ${uniqueName('ch')}`;
    const sub = await db.listen(channel, box.handler);
    await db.notify(channel, 'order 42');
    await db.notify(channel.toLowerCase(), 'other channel');
    await db.notify(channel, 'order 43');
    expect(await box.next(2)).toEqual(['order 42', 'order 43']);
    expect(sub.channel).toBe(channel);
    const stats = db.getStats();
    expect(stats.listener).toEqual({ connected: true, channels: 1, reconnects: 0, notificationsReceived: 2 });
    expect(stats.queriesExecuted).toBe(3);
  });

  it('passes the channel and sender pid with the payload, and calls every handler of a channel', async () => {
    db = openDatabase();
    const channel = uniqueName('multi');
    const seen: string[] = [];
    await db.listen(channel, (payload, n) => void seen.push(`a:${payload}:${n.channel}:${typeof n.processId}`));
    await db.listen(channel, (payload) => void seen.push(`b:${payload}`));
    await db.notify(channel, 'x');
    await eventually(() => (seen.length === 2 ? true : undefined));
    expect(seen).toEqual([`a:x:${channel}:number`, 'b:x']);
    expect(db.getStats().listener.notificationsReceived).toBe(1);
  });

  it('stops delivering after unlisten and closes the listener connection when no channel is left', async () => {
    db = openDatabase({ applicationName: uniqueName('unl') });
    const box = inbox();
    const channel = uniqueName('unl');
    const sub = await db.listen(channel, box.handler);
    await db.notify(channel, 'one');
    await box.next(1);
    await sub.unlisten();
    await sub.unlisten();
    await db.notify(channel, 'two');
    // A round trip on another channel proves the server has delivered anything it would have.
    const probe = inbox();
    const probeChannel = uniqueName('probe');
    await db.listen(probeChannel, probe.handler);
    await db.notify(probeChannel, 'p');
    await probe.next(1);
    expect(box.payloads).toEqual(['one']);
    expect(db.getStats().listener.channels).toBe(1);
  });

  it('rejects a payload of 8000 bytes or more, and malformed channels, with TypeError before anything is sent', async () => {
    db = openDatabase();
    await expect(db.notify('ch', 'x'.repeat(8000))).rejects.toThrow(TypeError);
    await expect(db.notify('ch', 'é'.repeat(4000))).rejects.toThrow(/8000 bytes|at most 7999/);
    await expect(db.notify('', 'x')).rejects.toThrow(TypeError);
    await expect(db.notify('c'.repeat(64), 'x')).rejects.toThrow(/at most 63/);
    await expect(db.notify('ch', { a: 1 } as unknown as string)).rejects.toThrow(/must be a string/);
    await expect(db.listen('', () => undefined)).rejects.toThrow(TypeError);
    await expect(db.listen('ch', 'nope' as unknown as () => void)).rejects.toThrow(TypeError);
    const stats = db.getStats();
    expect(stats.queriesExecuted).toBe(0);
    expect(stats.totalConnections).toBe(0);
    expect(stats.listener.connected).toBe(false);
    await db.notify('ch', 'x'.repeat(7999));
  });

  it('logs a handler that throws or rejects and keeps delivering', async () => {
    const logs = captureLogs('error');
    db = openDatabase({ logger: logs.logger });
    const channel = uniqueName('throw');
    const box = inbox();
    await db.listen(channel, () => {
      throw new Error('handler broke');
    });
    await db.listen(channel, () => Promise.reject(new Error('handler rejected')));
    await db.listen(channel, box.handler);
    await db.notify(channel, 'secret-payload-1');
    await db.notify(channel, 'secret-payload-2');
    await box.next(2);
    await eventually(() => (logs.lines.length >= 4 ? true : undefined));
    expect(logs.lines.join('\n')).toContain('handler broke');
    expect(logs.lines.join('\n')).not.toContain('secret-payload');
  });

  it('refuses to listen behind PgBouncer without DB_LISTEN_URL (LISTEN needs a session of its own)', async () => {
    db = openDatabase({ pgbouncer: true });
    const error = await db.listen('ch', () => undefined).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toMatch(/DB_LISTEN_URL/);
  });

  it('rejects listen with CONNECTION_FAILED within the connection timeout when the server is unreachable', async () => {
    proxy = await startFaultProxy(targetOf(getTestDatabaseUrl()));
    proxy.blackhole();
    db = openDatabase({ listenUrl: viaProxy(getTestDatabaseUrl(), proxy), connectionTimeoutMillis: 300 });
    const error = await db.listen('ch', () => undefined).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DatabaseConnectionError);
    expect((error as DatabaseConnectionError).code).toBe('CONNECTION_FAILED');
    expect(db.getStats().listener).toEqual({ connected: false, channels: 0, reconnects: 0, notificationsReceived: 0 });
  });

  it('is closed by shutdown: later listen rejects with PoolClosedError and the backend is gone', async () => {
    const appName = uniqueName('shut');
    db = openDatabase({ applicationName: appName });
    await db.listen(uniqueName('ch'), () => undefined);
    const pid = await listenerPid(getTestDatabaseUrl(), appName);
    await db.shutdown();
    await expect(db.listen('ch', () => undefined)).rejects.toThrow(PoolClosedError);
    expect(db.getStats().listener.connected).toBe(false);
    await eventually(async () => {
      const rows = await adminQuery('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid]);
      return rows.length === 0 ? true : undefined;
    });
  });

  it('shows the listener in health, degraded while it reconnects', async () => {
    proxy = await startFaultProxy(targetOf(getTestDatabaseUrl()));
    db = openDatabase({ listenUrl: viaProxy(getTestDatabaseUrl(), proxy) });
    expect((await db.healthCheck()).listener).toBeUndefined();
    await db.listen(uniqueName('h'), () => undefined);
    const healthy = await db.healthCheck();
    expect(healthy.status).toBe('healthy');
    expect(healthy.listener).toEqual({ connected: true, channels: 1, reconnects: 0, notificationsReceived: 0 });
    proxy.blackhole();
    proxy.cut();
    await eventually(() => (db!.getStats().listener.connected ? undefined : true));
    const degraded = await db.healthCheck();
    expect(degraded.status).toBe('degraded');
    expect(degraded.error).toMatch(/notification listener/);
    proxy.heal();
    await eventually(() => (db!.getStats().listener.connected ? true : undefined));
  });
});

describe('the listener survives faults: it reconnects, listens again and calls onReconnect once per reconnection', () => {
  it('after pg_terminate_backend of its connection', async () => {
    const appName = uniqueName('term');
    db = openDatabase({ applicationName: appName });
    const box = inbox();
    let reconnected = 0;
    const channel = uniqueName('term');
    await db.listen(channel, box.handler, { onReconnect: () => void reconnected++ });
    for (let round = 1; round <= 2; round++) {
      const pid = await listenerPid(getTestDatabaseUrl(), appName);
      await adminQuery('SELECT pg_terminate_backend($1)', [pid]);
      await eventually(() => (reconnected === round ? true : undefined));
      await db.notify(channel, `after ${round}`);
      await box.next(round);
    }
    expect(box.payloads).toEqual(['after 1', 'after 2']);
    expect(reconnected).toBe(2);
    expect(db.getStats().listener).toMatchObject({ connected: true, reconnects: 2, channels: 1 });
  });

  it('after a network cut through the fault proxy, and a black hole the keepalive ping notices', async () => {
    proxy = await startFaultProxy(targetOf(getTestDatabaseUrl()));
    db = openDatabase({
      listenUrl: viaProxy(getTestDatabaseUrl(), proxy),
      listenKeepaliveMillis: 100,
      validationTimeoutMillis: 200,
    });
    const box = inbox();
    const calls: number[] = [];
    const channel = uniqueName('cut');
    await db.listen(channel, box.handler, { onReconnect: () => void calls.push(Date.now()) });
    proxy.cut();
    await eventually(() => (calls.length === 1 ? true : undefined));
    await db.notify(channel, 'after cut');
    await box.next(1);
    // A black hole sends no reset: only the unanswered keepalive ping reveals it.
    proxy.blackhole();
    await eventually(() => (db!.getStats().listener.connected ? undefined : true));
    proxy.heal();
    await eventually(() => (calls.length === 2 ? true : undefined));
    await db.notify(channel, 'after black hole');
    expect(await box.next(2)).toEqual(['after cut', 'after black hole']);
    expect(db.getStats().listener.reconnects).toBe(2);
  });

  it('across a server restart, retrying while the server is down', async () => {
    server ??= await startPostgres();
    db = openDatabase({ connectionString: server.url });
    const box = inbox();
    let reconnected = 0;
    const channel = uniqueName('restart');
    await db.listen(channel, box.handler, { onReconnect: () => void reconnected++ });
    await server.stop('fast');
    await eventually(() => (db!.getStats().listener.connected ? undefined : true));
    await server.start();
    await eventually(() => (reconnected === 1 ? true : undefined), 20_000);
    await db.notify(channel, 'after restart');
    expect(await box.next(1)).toEqual(['after restart']);
    expect(reconnected).toBe(1);
    expect(db.getStats().listener).toMatchObject({ connected: true, reconnects: 1 });
  });
});

function targetOf(url: string): { targetHost: string; targetPort: number } {
  const parsed = new URL(url);
  return { targetHost: parsed.hostname, targetPort: Number(parsed.port) };
}

function viaProxy(url: string, through: FaultProxy): string {
  const parsed = new URL(url);
  parsed.hostname = through.host;
  parsed.port = String(through.port);
  return parsed.toString();
}

describe('a listen() pending while the listener reconnects', () => {
  it('keeps a one-shot script alive until it rejects with CONNECTION_FAILED at its deadline', async () => {
    await ensureBuiltDist();
    proxy = await startFaultProxy(targetOf(getTestDatabaseUrl()));
    const through = proxy;
    const child = spawn(process.execPath, [join(ROOT, 'test', 'fixtures', 'listen-during-outage.mjs')], {
      cwd: ROOT,
      env: {
        ...process.env,
        FIXTURE_DATABASE_URL: getTestDatabaseUrl(),
        FIXTURE_LISTEN_URL: viaProxy(getTestDatabaseUrl(), through),
      },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += String(chunk)));
    child.stdout.on('data', (chunk: Buffer) => {
      const isFirst = !stdout.includes('ready');
      stdout += String(chunk);
      if (isFirst && stdout.includes('ready')) {
        through.blackhole();
        // The keepalive (500 ms, answered within 300 ms) notices, and the listener reconnects into the black hole.
        setTimeout(() => child.stdin.end('go\n'), 2000);
      }
    });
    const [exitCode] = (await once(child, 'exit')) as [number | null];
    expect({ exitCode, stdout: stdout.trim(), stderr: stderr.trim() }).toEqual({
      exitCode: 0,
      stdout: `ready\n${JSON.stringify({ rejected: 'CONNECTION_FAILED', name: 'DatabaseConnectionError' })}`,
      stderr: '',
    });
  }, 30_000);

  it('rejects with CONNECTION_FAILED at its deadline when the connection went silent before the keepalive noticed', async () => {
    proxy = await startFaultProxy(targetOf(getTestDatabaseUrl()));
    db = openDatabase({
      listenUrl: viaProxy(getTestDatabaseUrl(), proxy),
      connectionTimeoutMillis: 1000,
      listenKeepaliveMillis: 60_000,
    });
    await db.listen('silent_first', () => undefined);
    proxy.blackhole();
    const outcome = await within(
      20_000,
      db.listen('silent_second', () => undefined),
    );
    expect(outcome).not.toBe('pending');
    expect((outcome as { error?: { code?: string } }).error?.code).toBe('CONNECTION_FAILED');
    proxy.heal();
  }, 30_000);
});
