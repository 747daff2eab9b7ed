import { Database } from '../database.js';
import type { DurationStats, PoolStats } from '../stats.js';
import {
  createCliLogger,
  EXIT_FAILURE,
  EXIT_OK,
  formatMillis,
  formatRows,
  parseCommonArgs,
  parseTimeoutSeconds,
  printFailure,
  type CliIo,
} from './cli-support.js';

export const STATS_USAGE = `usage: codecheck-db stats [--json] [--timeout <seconds>]
  Opens a pool with the configuration from DATABASE_URL / DB_*, waits for ready() (min connections
  open) and prints getStats(). These are the numbers of this CLI process's own pool, which shows that
  the configuration connects and how the pool starts; a running service's numbers are in its
  /metrics endpoint (docs/operations.md).
  Exit 0: printed; 2: not ready within the timeout, invalid configuration or usage.
  --timeout  how long ready() may take, in seconds (default: DB_TIMEOUT)
  --json     print getStats() as JSON.
`;

/** `codecheck-db stats`: the CLI process's own pool after `ready()`. */
export async function runStats(argv: readonly string[], io: CliIo): Promise<number> {
  const args = parseCommonArgs(argv, { hasTimeout: true });
  if (args.isHelp) {
    io.stdout(STATS_USAGE);
    return EXIT_OK;
  }
  const isJson = args.isJson;
  const timeoutMillis = args.timeout === undefined ? undefined : parseTimeoutSeconds(args.timeout, 0);
  let db: Database | undefined;
  try {
    db = new Database({ logger: createCliLogger() });
    await db.ready({ timeoutMillis });
    const stats = db.getStats();
    io.stdout(isJson ? `${JSON.stringify(stats, null, 2)}\n` : formatStats(stats));
    return EXIT_OK;
  } catch (error) {
    printFailure(io, error, isJson);
    return EXIT_FAILURE;
  } finally {
    await db?.shutdown({ timeoutMillis: 1000 });
  }
}

function formatDuration(duration: DurationStats): string {
  if (duration.count === 0) return 'no samples';
  return `${duration.count} samples, p50 ${formatMillis(duration.p50Millis)}, p95 ${formatMillis(duration.p95Millis)}, p99 ${formatMillis(duration.p99Millis)}, max ${formatMillis(duration.maxMillis)}`;
}

function formatStats(stats: PoolStats): string {
  const rows: [string, string][] = [];
  for (const [key, value] of Object.entries(stats)) {
    if (typeof value === 'number') rows.push([key, String(value)]);
  }
  rows.push(['acquireTime', formatDuration(stats.acquireTime)], ['queryTime', formatDuration(stats.queryTime)]);
  for (const node of stats.nodes) {
    rows.push([
      `node ${node.name}`,
      `${node.role}, ${node.status}, open ${node.poolSize} (active ${node.activeConnections}, idle ${node.availableConnections}), waiting ${node.waitingRequests}, min ${node.minConnections}, max ${node.maxConnections}, circuit ${node.circuit}`,
    ]);
  }
  return `# the codecheck-db CLI process's own pool, after ready()\n${formatRows(rows)}`;
}
