import { Database } from '../database.js';
import type { HealthReport } from '../health.js';
import {
  createCliLogger,
  EXIT_DEGRADED,
  EXIT_FAILURE,
  EXIT_OK,
  formatMillis,
  formatRows,
  parseCommonArgs,
  parseTimeoutSeconds,
  printFailure,
  type CliIo,
} from './cli-support.js';
import { sleep } from '../timers.js';

export const HEALTH_USAGE = `usage: codecheck-db health [--json] [--timeout <seconds>]
  Checks the database configured by DATABASE_URL / DB_* (as the service sees it) on a fresh
  connection and prints the health report.
  Exit 0: healthy; 1: degraded (a replica is down or lagging, or the primary is in recovery);
  2: unhealthy (the primary did not answer within the timeout), invalid configuration or usage.
  --timeout  the whole check's deadline in seconds (default 5); with replicas, up to half of it
             waits for the first replica probe round so that a replica that is down is reported.
  --json     print the report as JSON.
`;

const DEFAULT_TIMEOUT_SECONDS = 5;
const POLL_MILLIS = 25;

/**
 * `codecheck-db health`: exit 0 healthy, 1 degraded, 2 unhealthy (or a bad configuration), within
 * `--timeout` whatever the server does. Usable as a Kubernetes exec probe.
 */
export async function runHealth(argv: readonly string[], io: CliIo): Promise<number> {
  const args = parseCommonArgs(argv, { hasTimeout: true });
  if (args.isHelp) {
    io.stdout(HEALTH_USAGE);
    return EXIT_OK;
  }
  const timeoutMillis = parseTimeoutSeconds(args.timeout, DEFAULT_TIMEOUT_SECONDS);
  const isJson = args.isJson;
  const deadline = Date.now() + timeoutMillis;
  let db: Database;
  try {
    db = new Database({ logger: createCliLogger() });
  } catch (error) {
    printFailure(io, error, isJson);
    return EXIT_FAILURE;
  }
  try {
    await waitForReplicaProbes(db, Date.now() + timeoutMillis / 2);
    const report = await db.healthCheck({ timeoutMillis: Math.max(100, deadline - Date.now()) });
    io.stdout(isJson ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
    return report.status === 'healthy' ? EXIT_OK : report.status === 'degraded' ? EXIT_DEGRADED : EXIT_FAILURE;
  } finally {
    await db.shutdown({ timeoutMillis: 1000 });
  }
}

/**
 * A fresh Database knows nothing about its replicas until the router's first probe round (it starts
 * at construction): wait until every replica has answered (its role is known) or has been banned,
 * or until `until`. Without this a replica that is down would show as `up` and the report as healthy.
 */
async function waitForReplicaProbes(db: Database, until: number): Promise<void> {
  const isPending = () =>
    db.getStats().nodes.some((node) => node.role === 'replica' && node.isInRecovery === null && node.status !== 'banned');
  while (isPending() && Date.now() < until) await sleep(POLL_MILLIS, 'unref');
}

function formatReport(report: HealthReport): string {
  const rows: [string, string][] = [['status', report.status]];
  if (report.error !== undefined) rows.push(['problem', report.error]);
  if (report.databaseVersion !== null) rows.push(['server', report.databaseVersion]);
  if (report.isReplica !== null) rows.push(['role', report.isReplica ? 'in recovery (standby)' : 'primary']);
  if (report.databaseTime !== null) rows.push(['server time', report.databaseTime]);
  if (report.tls !== null)
    rows.push(['tls', report.tls.encrypted ? `encrypted (${report.tls.protocol ?? 'unknown protocol'})` : 'not encrypted']);
  rows.push(['latency', formatMillis(report.latencyMillis)]);
  for (const replica of report.replicas ?? []) {
    const lag = replica.lagMillis === null ? 'lag unknown' : `lag ${formatMillis(replica.lagMillis)}`;
    rows.push([`replica ${replica.name}`, `${replica.status}, ${lag}${replica.error ? ` (${replica.error})` : ''}`]);
  }
  return formatRows(rows);
}
