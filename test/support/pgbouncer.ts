/**
 * A real PgBouncer for tests, in front of a test server. Uses the system `pgbouncer` binary
 * (Debian's package; `.ci/run` installs it). When the binary is absent, {@link startPgBouncer}
 * resolves with `{ skipped: reason }` so the tests can say why they did not run.
 *
 * PgBouncer refuses to run as root, so as root it runs as the `postgres` OS user, from its own temp
 * directory on a free loopback port. It never daemonizes: the child process is ours and is stopped
 * (and killed on process exit) by this module.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { chmod, chown, mkdtemp, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { findFreePort } from './postgres-server.js';

/** Options for {@link startPgBouncer}. */
export interface StartPgBouncerOptions {
  targetHost: string;
  targetPort: number;
  /** The one user clients log in as (also PgBouncer's admin user). */
  user: string;
  /** Its password: PgBouncer needs the plain text to log in to a SCRAM server on the client's behalf. */
  password: string;
  /** Default `transaction`. */
  poolMode?: 'session' | 'transaction' | 'statement';
  /** Server connections per user/database pair. Default 5. */
  defaultPoolSize?: number;
  /** Client connections PgBouncer accepts. Default 200. */
  maxClientConn?: number;
  /** Extra `[pgbouncer]` settings, e.g. `{ ignore_startup_parameters: 'statement_timeout' }`. */
  settings?: Record<string, string>;
}

/** A running PgBouncer owned by the test process. */
export interface PgBouncer {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  /** `postgres://user:password@127.0.0.1:port/postgres?sslmode=disable` (PgBouncer here has no TLS). */
  readonly url: string;
  /** e.g. `PgBouncer 1.18.0`. */
  readonly version: string;
  readonly logFile: string;
  /** Runs a command on the admin console (`SHOW POOLS`, `SHOW SERVERS`, ...). */
  admin<R extends pg.QueryResultRow = Record<string, unknown>>(command: string): Promise<R[]>;
  /** The last `lines` lines of the log, for failure messages. */
  logTail(lines?: number): string;
  /** Stops PgBouncer (SIGTERM), waits for it to exit and removes its directory; idempotent. */
  stop(): Promise<void>;
}

/** What {@link startPgBouncer} resolves with when PgBouncer cannot run here. */
export interface PgBouncerSkipped {
  readonly skipped: string;
}

const START_TIMEOUT_MS = 15_000;
const live = new Set<ChildProcess>();
let exitHookInstalled = false;

/** The pgbouncer binary on PATH or in Debian's /usr/sbin, or undefined. */
function findBinary(): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin', '/usr/local/bin'];
  return dirs.map((dir) => join(dir, 'pgbouncer')).find((path) => existsSync(path));
}

/** The `postgres` OS user when we are root (PgBouncer refuses root); null otherwise. */
function runAsUser(): { uid: number; gid: number } | null | string {
  if (process.getuid?.() !== 0) return null;
  if (spawnSync('id', ['postgres']).status !== 0) return 'running as root and there is no `postgres` OS user to run PgBouncer as';
  const id = (flag: string): number => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
  return { uid: id('-u'), gid: id('-g') };
}

/**
 * Why PgBouncer cannot run here (no binary; root without a `postgres` OS user), or undefined when it
 * can. Synchronous, so a test file can decide at collection time whether to skip, and say why.
 */
export function pgBouncerUnavailableReason(): string | undefined {
  if (!findBinary()) return 'the pgbouncer binary is not installed (apt-get install -y pgbouncer; .ci/run installs it)';
  const user = runAsUser();
  return typeof user === 'string' ? user : undefined;
}

/** Quotes a userlist.txt field (double quotes doubled). */
const quoteUserlist = (value: string): string => `"${value.replace(/"/g, '""')}"`;

function readOr(path: string, fallback: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return fallback;
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of live) child.kill('SIGKILL');
  });
}

/**
 * Starts PgBouncer in front of `targetHost:targetPort`: every database name is forwarded there
 * (`* = host=... port=...`), clients log in with SCRAM as `user`, and PgBouncer logs in to the server
 * with the same plain password. Resolves once it accepts connections, or with `{ skipped }` when the
 * binary is absent or cannot run here.
 */
export async function startPgBouncer(options: StartPgBouncerOptions): Promise<PgBouncer | PgBouncerSkipped> {
  const binary = findBinary();
  const user = runAsUser();
  if (!binary || typeof user === 'string') return { skipped: pgBouncerUnavailableReason() ?? 'PgBouncer is unavailable' };
  const version = spawnSync(binary, ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0]?.trim() ?? 'PgBouncer';
  installExitHook();
  const dir = await mkdtemp(join(tmpdir(), `codecheck-pgbouncer-${process.pid}-`));
  await chmod(dir, 0o755);
  const logFile = join(dir, 'pgbouncer.log');
  const settings: Record<string, string> = {
    listen_addr: '127.0.0.1',
    unix_socket_dir: '',
    auth_type: 'scram-sha-256',
    auth_file: join(dir, 'userlist.txt'),
    pool_mode: options.poolMode ?? 'transaction',
    default_pool_size: String(options.defaultPoolSize ?? 5),
    max_client_conn: String(options.maxClientConn ?? 200),
    admin_users: options.user,
    logfile: logFile,
    pidfile: join(dir, 'pgbouncer.pid'),
    ...options.settings,
  };
  const writeOwned = async (name: string, text: string): Promise<void> => {
    await writeFile(join(dir, name), text, { mode: 0o600 });
    if (user) await chown(join(dir, name), user.uid, user.gid);
  };
  if (user) await chown(dir, user.uid, user.gid);
  await writeOwned('userlist.txt', `${quoteUserlist(options.user)} ${quoteUserlist(options.password)}\n`);
  for (let attempt = 1; ; attempt++) {
    const port = await findFreePort();
    const ini = [
      '[databases]',
      `* = host=${options.targetHost} port=${options.targetPort}`,
      '[pgbouncer]',
      `listen_port = ${port}`,
      ...Object.entries(settings).map(([key, value]) => `${key} = ${value}`),
      '',
    ].join('\n');
    await writeOwned('pgbouncer.ini', ini);
    const child = spawn(binary, [join(dir, 'pgbouncer.ini')], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], ...(user ?? {}) });
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    live.add(child);
    exited.then(
      () => live.delete(child),
      () => undefined,
    );
    const deadline = Date.now() + START_TIMEOUT_MS;
    let isUp = false;
    while (!isUp && child.exitCode === null && child.signalCode === null && Date.now() < deadline) {
      isUp = await canConnect(port);
      if (!isUp) await sleep(50, undefined, { ref: false });
    }
    if (isUp) return new Bouncer(child, exited, dir, port, options, version, logFile);
    child.kill('SIGKILL');
    await exited;
    const log = `${readOr(logFile, '')}${stderr}`;
    if (/address already in use/i.test(log) && attempt < 3) continue;
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`PgBouncer did not start:\n${log.split('\n').slice(-20).join('\n')}`);
  }
}

class Bouncer implements PgBouncer {
  readonly host = '127.0.0.1';
  readonly user: string;
  readonly password: string;
  #stopping: Promise<void> | undefined;

  constructor(
    private readonly child: ChildProcess,
    private readonly exited: Promise<void>,
    private readonly dir: string,
    readonly port: number,
    options: StartPgBouncerOptions,
    readonly version: string,
    readonly logFile: string,
  ) {
    this.user = options.user;
    this.password = options.password;
    Object.defineProperty(this, 'password', { enumerable: false });
  }

  get url(): string {
    return `postgres://${encodeURIComponent(this.user)}:${encodeURIComponent(this.password)}@${this.host}:${this.port}/postgres?sslmode=disable`;
  }

  async admin<R extends pg.QueryResultRow = Record<string, unknown>>(command: string): Promise<R[]> {
    const client = new pg.Client({
      host: this.host,
      port: this.port,
      user: this.user,
      password: this.password,
      database: 'pgbouncer',
      connectionTimeoutMillis: 5000,
    });
    client.on('error', () => undefined);
    try {
      await client.connect();
      return (await client.query<R>(command)).rows;
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  logTail(lines = 40): string {
    return readOr(this.logFile, '(no log)').split('\n').slice(-lines).join('\n');
  }

  stop(): Promise<void> {
    return (this.#stopping ??= (async () => {
      if (this.child.exitCode === null && this.child.signalCode === null) {
        this.child.kill('SIGTERM');
        const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
        timer.unref();
        await this.exited;
        clearTimeout(timer);
      }
      rmSync(this.dir, { recursive: true, force: true });
    })());
  }
}

/** Narrows {@link startPgBouncer}'s result. */
export function isSkipped(result: PgBouncer | PgBouncerSkipped): result is PgBouncerSkipped {
  return 'skipped' in result;
}
