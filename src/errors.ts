/**
 * Error classes. Every error the library rejects with is a {@link DbError} with a stable `code`
 * (documented in docs/errors.md with whether it is retryable). No error message carries a password,
 * a connection URL with a password, or a bound parameter value.
 */

/** Stable error codes: part of the public API. */
export type DbErrorCode =
  | 'CONFIG_INVALID'
  | 'CONNECTION_FAILED'
  | 'CONNECTION_LOST'
  | 'CIRCUIT_OPEN'
  | 'CREDENTIALS_FAILED'
  | 'NO_SUITABLE_HOST'
  | 'POOL_TIMEOUT'
  | 'POOL_QUEUE_FULL'
  | 'POOL_CLOSED'
  | 'QUERY_FAILED'
  | 'QUERY_CANCELLED'
  | 'TRANSACTION_FAILED'
  | 'TRANSACTION_ROLLED_BACK'
  | 'SERIALIZATION_FAILURE'
  | 'STREAM_LEFT_OPEN'
  | 'STREAM_IDLE_TIMEOUT';

/** A snapshot of pool numbers carried by {@link PoolTimeoutError}. */
export interface PoolSnapshot {
  readonly total: number;
  readonly active: number;
  readonly idle: number;
  readonly waiting: number;
  readonly max: number;
}

/** Base class of every error this library throws. */
export class DbError extends Error {
  readonly code: DbErrorCode;
  constructor(code: DbErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** The configuration is invalid. `problems` lists every problem found, one sentence each. */
export class ConfigError extends DbError {
  readonly problems: readonly string[];
  constructor(problems: string[]) {
    super(
      'CONFIG_INVALID',
      `Invalid database configuration (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n- ${problems.join('\n- ')}`,
    );
    this.problems = Object.freeze([...problems]);
  }
}

/**
 * The server could not be reached, refused us, or the connection was lost (SQLSTATE class 08, 57P0x);
 * `CREDENTIALS_FAILED` when the password file or credentials provider gave no usable login.
 */
export class DatabaseConnectionError extends DbError {
  constructor(
    message: string,
    options?: {
      cause?: unknown;
      code?: 'CONNECTION_FAILED' | 'CONNECTION_LOST' | 'CIRCUIT_OPEN' | 'CREDENTIALS_FAILED' | 'NO_SUITABLE_HOST';
    },
  ) {
    super(options?.code ?? 'CONNECTION_FAILED', message, options);
  }
}

/** No connection became available within the acquire deadline, or the waiting queue was full. */
export class PoolTimeoutError extends DatabaseConnectionError {
  readonly stats: PoolSnapshot;
  constructor(message: string, stats: PoolSnapshot, code: 'POOL_TIMEOUT' | 'POOL_QUEUE_FULL' = 'POOL_TIMEOUT') {
    super(
      `${message} (pool: total=${stats.total}, active=${stats.active}, idle=${stats.idle}, waiting=${stats.waiting}, max=${stats.max})`,
    );
    (this as { code: DbErrorCode }).code = code;
    this.stats = Object.freeze({ ...stats });
  }
}

/** The database (or the pool) was shut down. */
export class PoolClosedError extends DatabaseConnectionError {
  constructor(message = 'The database pool is closed (shutdown() was called).') {
    super(message);
    (this as { code: DbErrorCode }).code = 'POOL_CLOSED';
  }
}

/** Fields copied from a pg DatabaseError. */
interface PgErrorFields {
  code?: string;
  detail?: string;
  constraint?: string;
  table?: string;
  column?: string;
  message?: string;
}

/** The server rejected a statement. The pg error is `cause`; bound values are never included. */
export class DatabaseQueryError extends DbError {
  readonly sqlState: string | undefined;
  /** The server's DETAIL; may quote key values, so it is not enumerable (kept out of JSON and logs). */
  declare readonly detail: string | undefined;
  readonly constraint: string | undefined;
  readonly table: string | undefined;
  readonly column: string | undefined;
  constructor(
    message: string,
    cause: unknown,
    code: 'QUERY_FAILED' | 'QUERY_CANCELLED' | 'STREAM_IDLE_TIMEOUT' = 'QUERY_FAILED',
  ) {
    super(code, message, { cause });
    const fields = (cause ?? {}) as PgErrorFields;
    // Only a real SQLSTATE: an AbortSignal's DOMException cause carries a numeric `code` too.
    this.sqlState = sqlStateOf(cause);
    this.constraint = fields.constraint;
    this.table = fields.table;
    this.column = fields.column;
    // The server's detail may quote a key value: keep it on the object, out of JSON and logs.
    Object.defineProperty(this, 'detail', { value: fields.detail, enumerable: false });
  }
}

/** BEGIN/COMMIT/ROLLBACK failed, COMMIT was answered with ROLLBACK, or retries ran out. */
export class DatabaseTransactionError extends DbError {
  /** How many times the transaction ran (1 without retries). */
  readonly attempts: number;
  readonly sqlState: string | undefined;
  constructor(
    message: string,
    options: {
      cause?: unknown;
      attempts?: number;
      code?: 'TRANSACTION_FAILED' | 'TRANSACTION_ROLLED_BACK' | 'SERIALIZATION_FAILURE' | 'STREAM_LEFT_OPEN';
    } = {},
  ) {
    super(options.code ?? 'TRANSACTION_FAILED', message, { cause: options.cause });
    this.attempts = options.attempts ?? 1;
    this.sqlState = sqlStateOf(options.cause);
  }
}

/** What replaces input quoted by a data exception's message. */
export const VALUE_REDACTED = '<value redacted>';

/**
 * A server message without the input it quotes. Data exceptions (SQLSTATE class 22) quote the input
 * they could not use, which may be a bound value: at the end (`invalid input syntax for type integer:
 * "abc"`), in the middle (`value "99999999999" is out of range for type integer`, `invalid value "xx"
 * for "YYYY"`), as bytes (`invalid byte sequence for encoding "UTF8": 0x00`) or as a bare token after
 * a colon (`date field value out of range: 2020-13-01`). Everything from the first double quote to the
 * last goes (a value may itself contain quotes, so quotes are not paired), then byte sequences, then a
 * one-word tail. Messages of other classes quote identifiers, which are kept.
 */
export function redactServerMessage(message: string, state: string | undefined): string {
  if (!state?.startsWith('22')) return message;
  return message
    .replace(/"[\s\S]*"/, VALUE_REDACTED)
    .replace(/\b0x[0-9a-f]{1,2}(?:\s+0x[0-9a-f]{1,2})*/gi, VALUE_REDACTED)
    .replace(/: (?!<value redacted>$)\S+$/, `: ${VALUE_REDACTED}`);
}

/**
 * A server message without the statement's bound values, whatever its SQLSTATE class. Outside class
 * 22 the server still quotes input it was handed as a name: `$1::regclass` (`relation "x" does not
 * exist`, folded to lower case), `$1::regproc`, `current_setting($1)` / `set_config($1, ...)`
 * (`unrecognized configuration parameter "x"`), `to_tsquery($1)` (`syntax error in tsquery: "x"`).
 * A quoted span goes when it is a value, holds one, or is part of one (compared without case); a
 * value of 4 characters or more goes wherever it appears. Class 22 is also redacted by
 * {@link redactServerMessage}.
 */
export function redactBoundValues(message: string, values: readonly unknown[] | undefined): string {
  if (values === undefined || values.length === 0) return message;
  const texts = boundTexts(values, 0)
    .map((text) => text.toLowerCase())
    .filter((text) => text !== '');
  if (texts.length === 0) return message;
  const quotedRedacted = message.replace(/"([^"]*)"/g, (span, inner: string) => {
    const quoted = inner.toLowerCase();
    const isValue = texts.some(
      (text) => text === quoted || (text.length >= 3 && quoted.includes(text)) || (quoted.length >= 3 && text.includes(quoted)),
    );
    return isValue ? VALUE_REDACTED : span;
  });
  let redacted = quotedRedacted;
  for (const text of texts) {
    if (text.length < 4) continue;
    const lower = redacted.toLowerCase();
    let at = lower.indexOf(text);
    if (at < 0) continue;
    let out = '';
    let from = 0;
    while (at >= 0) {
      out += redacted.slice(from, at) + VALUE_REDACTED;
      from = at + text.length;
      at = lower.indexOf(text, from);
    }
    redacted = out + redacted.slice(from);
  }
  return redacted;
}

/** The text forms a bound value may take in a server message (pg sends arrays element by element, objects as JSON). */
function boundTexts(values: readonly unknown[], depth: number): string[] {
  const texts: string[] = [];
  for (const value of values) {
    if (typeof value === 'string') texts.push(value);
    else if (typeof value === 'number' || typeof value === 'bigint') texts.push(String(value));
    else if (Array.isArray(value) && depth < 3) texts.push(...boundTexts(value, depth + 1));
    else if (value !== null && typeof value === 'object' && !(value instanceof Date) && !ArrayBuffer.isView(value)) {
      try {
        const json = JSON.stringify(value);
        if (typeof json === 'string') texts.push(json);
      } catch {
        // A value pg could not send either.
      }
    }
  }
  return texts;
}

/** The SQLSTATE of a pg error or of one of ours, if any. */
export function sqlStateOf(error: unknown): string | undefined {
  if (error instanceof DatabaseQueryError || error instanceof DatabaseTransactionError) return error.sqlState;
  const code = (error as { code?: unknown } | null)?.code;
  // A socket's error code can look like one (EPIPE, EBADF): those carry the failed syscall.
  if (typeof code !== 'string' || !/^[0-9A-Z]{5}$/.test(code) || 'syscall' in (error as object)) return undefined;
  return code;
}

/**
 * SQLSTATE 53300 (too_many_connections) or 53400 (configuration_limit_exceeded, e.g. a role's
 * connection limit): the server is up and answered, it only cannot take another connection now.
 */
export function isCannotGrow(error: unknown): boolean {
  const state = sqlStateOf(error);
  return state === '53300' || state === '53400';
}

/**
 * True when a pg error means the connection itself is unusable (class 08, admin shutdown, or a socket
 * error). A class-08 error the server sent at severity ERROR is not: it rejected one message and the
 * session goes on (08P01 for a Bind whose parameter count does not match the statement's `$n`s).
 */
export function isConnectionFailure(error: unknown): boolean {
  if (error instanceof DatabaseConnectionError) return true;
  const state = sqlStateOf(error);
  if (state)
    return (state.startsWith('08') || state.startsWith('57P0')) && (error as { severity?: unknown }).severity !== 'ERROR';
  const message = error instanceof Error ? error.message : '';
  const code = (error as { code?: unknown } | null)?.code;
  return (
    typeof code === 'string' ||
    /Connection terminated|connection timeout|ECONNRESET|ECONNREFUSED|EPIPE|not queryable|timeout expired/i.test(message)
  );
}

/**
 * A copy of a driver error that is safe to hand to observers (tracing subscribers): its message with
 * class-22 quotes and every bound value redacted, its SQLSTATE kept as `code`; no cause, no detail.
 */
export function redactedDriverError(error: unknown, values: readonly unknown[] | undefined): Error {
  if (error instanceof DbError) return error;
  const state = sqlStateOf(error);
  const message = error instanceof Error ? error.message : String(error);
  const safe = new Error(redactBoundValues(redactServerMessage(message, state), values));
  if (state !== undefined) Object.assign(safe, { code: state });
  return safe;
}
