import { parseArgs } from 'node:util';
import { pino, type Logger } from 'pino';
import { LOG_LEVELS, type LogLevel } from '../config-table.js';
import { ConfigError } from '../errors.js';

/** Where a command writes: main.ts passes process.stdout/stderr writers, tests collect strings. */
export interface CliIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
}

/** Exit codes shared by the commands (health adds 1 for degraded). */
export const EXIT_OK = 0;
export const EXIT_DEGRADED = 1;
/** Unhealthy, unreachable, invalid configuration, or a usage error. */
export const EXIT_FAILURE = 2;

/** A command-line mistake: printed with the command's usage, exit 2. */
export class UsageError extends Error {}

/** The options every database command takes. */
export interface CommonArgs {
  readonly isJson: boolean;
  readonly isHelp: boolean;
  /** `--timeout` as given (seconds), when the command takes it. */
  readonly timeout?: string;
}

/**
 * Parses `[--json] [--help] [--timeout <seconds>]` strictly: unknown options and positionals are usage errors.
 * @throws {UsageError} on an unknown option, a positional argument or a missing value.
 */
export function parseCommonArgs(argv: readonly string[], options: { hasTimeout: boolean }): CommonArgs {
  try {
    const { values } = parseArgs({
      args: [...argv],
      options: {
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        ...(options.hasTimeout ? { timeout: { type: 'string' } } : {}),
      },
      allowPositionals: false,
      strict: true,
    });
    return {
      isJson: values.json === true,
      isHelp: values.help === true,
      timeout: typeof values.timeout === 'string' ? values.timeout : undefined,
    };
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/**
 * `--timeout <seconds>` as milliseconds.
 * @throws {UsageError} when it is not a positive number of seconds up to one hour.
 */
export function parseTimeoutSeconds(text: string | undefined, defaultSeconds: number): number {
  if (text === undefined) return defaultSeconds * 1000;
  const seconds = Number(text);
  if (!/^\d+(\.\d+)?$/.test(text.trim()) || !(seconds > 0) || seconds > 3600)
    throw new UsageError(`--timeout is ${JSON.stringify(text)}; expected a number of seconds from 0.1 to 3600`);
  return Math.max(100, Math.round(seconds * 1000));
}

/**
 * The library's logger for a CLI run: pino on stderr (stdout stays clean for the report and
 * `--json`), at DB_LOG_LEVEL when set and valid, otherwise `warn`, so configuration warnings show.
 */
export function createCliLogger(env: Record<string, string | undefined> = process.env): Logger {
  const wanted = env.DB_LOG_LEVEL?.trim().toLowerCase();
  const level: LogLevel = (LOG_LEVELS as readonly string[]).includes(wanted ?? '') ? (wanted as LogLevel) : 'warn';
  return pino(
    { level, redact: { paths: ['password', '*.password', 'connectionString', '*.connectionString'], censor: '<redacted>' } },
    pino.destination({ fd: 2, sync: true }),
  );
}

/** Prints an error that ended a command; a ConfigError lists every problem. Never prints a password (our errors never carry one). */
export function printFailure(io: CliIo, error: unknown, isJson: boolean): void {
  if (error instanceof ConfigError) {
    if (isJson) io.stdout(`${JSON.stringify({ error: error.code, problems: error.problems }, null, 2)}\n`);
    io.stderr(`${error.message}\n`);
    return;
  }
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: unknown } | null)?.code;
  if (isJson) io.stdout(`${JSON.stringify({ error: typeof code === 'string' ? code : 'ERROR', message }, null, 2)}\n`);
  io.stderr(`error: ${message}\n`);
}

/** `12.345` → `12.3 ms`. */
export function formatMillis(millis: number): string {
  return `${millis < 10 ? millis.toFixed(2) : millis.toFixed(1)} ms`;
}

/** Aligned `key: value` lines. */
export function formatRows(rows: readonly (readonly [string, string])[]): string {
  const width = Math.max(0, ...rows.map(([key]) => key.length)) + 1;
  return rows.map(([key, value]) => `${`${key}:`.padEnd(width)} ${value}\n`).join('');
}
