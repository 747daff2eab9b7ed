#!/usr/bin/env node
/**
 * The `codecheck-db` command: health, stats, config and migrate-scan. Each command resolves the
 * configuration from DATABASE_URL / DB_* exactly as the library does (docs/operations.md).
 */
import { pathToFileURL } from 'node:url';
import { realpathSync } from 'node:fs';
import { EXIT_FAILURE, EXIT_OK, UsageError, type CliIo } from './cli-support.js';
import { CONFIG_USAGE, runConfig } from './config-command.js';
import { HEALTH_USAGE, runHealth } from './health-command.js';
import { MIGRATE_SCAN_USAGE, runMigrateScan } from './migrate-scan/scan-command.js';
import { runStats, STATS_USAGE } from './stats-command.js';
import { startInterval, startTimer } from '../timers.js';

export const USAGE = `usage: codecheck-db <command> [options]

commands:
  health [--json] [--timeout <seconds>]   health report; exit 0 healthy, 1 degraded, 2 unhealthy
  stats [--json] [--timeout <seconds>]    open a pool, wait for ready(), print getStats() (this process's pool)
  config [--json]                         resolved configuration, password redacted; exit 2 listing every problem
  migrate-scan [--json] [--include-bundles] [--no-ignore] <paths...>
                                          find pg code to migrate to @codecheck/db; exit 0 nothing found,
                                          1 findings, 2 usage error, 3/4 some files could not be scanned
                                          (the rest clean / with findings)

Configuration comes from DATABASE_URL and DB_* (docs/configuration.md).
Run \`codecheck-db <command> --help\` for a command's options.
`;

const COMMANDS: Record<string, { run: (argv: readonly string[], io: CliIo) => Promise<number>; usage?: string }> = {
  health: { run: runHealth, usage: HEALTH_USAGE },
  stats: { run: runStats, usage: STATS_USAGE },
  config: { run: (argv, io) => runConfig(argv, io), usage: CONFIG_USAGE },
  'migrate-scan': { run: runMigrateScan, usage: MIGRATE_SCAN_USAGE },
};

/** Runs one command line (without `node` and the script) and resolves with the exit code. */
export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    (name === undefined ? io.stderr : io.stdout)(USAGE);
    return name === undefined ? EXIT_FAILURE : EXIT_OK;
  }
  const command = COMMANDS[name];
  if (!command) {
    io.stderr(`codecheck-db: unknown command ${JSON.stringify(name)}\n\n${USAGE}`);
    return EXIT_FAILURE;
  }
  try {
    return await command.run(rest, io);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    io.stderr(`codecheck-db ${name}: ${error.message}\n\n${command.usage ?? USAGE}`);
    return EXIT_FAILURE;
  }
}

/** True when this file is the program node runs (not imported by a test). */
function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return import.meta.url === pathToFileURL(realpathSync(script)).href;
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  const io: CliIo = { stdout: (text) => process.stdout.write(text), stderr: (text) => process.stderr.write(text) };
  // The library unrefs every timer and monitor socket, so while a command waits on one of them
  // nothing would keep node running: it would exit early with status 0, which a probe reads as healthy.
  const keepAlive = startInterval(60_000, () => undefined, 'ref');
  main(process.argv.slice(2), io).then(
    (code) => {
      clearInterval(keepAlive);
      process.exitCode = code;
      // Everything we open is closed or unref'd; this only guards a probe against a handle left by a bug.
      startTimer(2000, () => process.exit(code), 'unref');
    },
    (error: unknown) => {
      process.stderr.write(`codecheck-db: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exit(EXIT_FAILURE);
    },
  );
}
