import { pino, type Logger } from 'pino';
import type { LogLevel } from './config-table.js';

export type { Logger };

/** Paths pino censors in anything the library logs (a belt to the braces of never logging them). */
const REDACT_PATHS = ['password', '*.password', 'config.password', 'connectionString', '*.connectionString'];

/**
 * The library's logger: a child of the caller's pino logger when given, else its own pino logger at
 * `level`. Every line carries `lib: '@codecheck/db'`.
 */
export function createLogger(level: LogLevel, given?: Logger): Logger {
  if (given) return given.child({ lib: '@codecheck/db' });
  return pino({ level, redact: { paths: REDACT_PATHS, censor: '<redacted>' } }).child({ lib: '@codecheck/db' });
}
