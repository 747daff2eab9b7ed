import { DatabaseConnectionError } from '../errors.js';
import { checkPasswordFile, PasswordFileError, readPasswordFile } from './password-file.js';

/** What a provider is called with: `signal` aborts when the provider's time (`credentialsTimeoutMillis`) is up. */
export interface ProviderContext {
  readonly signal: AbortSignal;
}

/** `password` as a function (as pg allows): returns the password, or a promise of it, for each new login. */
export type PasswordProvider = (context: ProviderContext) => string | Promise<string>;

/** A user and password pair from a provider that rotates both (Vault's database secrets engine). */
export interface Credentials {
  readonly user: string;
  readonly password: string;
  /** When the pair stops working (a lease's end, epoch ms or Date): it is not reused past that. */
  readonly expiresAt?: number | Date;
}

/** `credentials`: returns a user and password pair for each new login. */
export type CredentialsProvider = (context: ProviderContext) => Credentials | Promise<Credentials>;

/** One login as a provider gave it. `user` undefined: the configured user. */
export interface Login {
  readonly user: string | undefined;
  readonly password: string;
  /** Epoch ms after which this login must not be reused; undefined: the cache time decides. */
  readonly expiresAt: number | undefined;
}

/**
 * Where logins come from when the password is not a fixed string: a password function, a
 * credentials function, or a password file. Holds no secret itself (only functions and a path).
 */
export interface LoginSource {
  readonly kind: 'password-function' | 'credentials' | 'password-file';
  /** The option or variable it came from, for messages: `option password`, `DB_PASSWORD_FILE`. */
  readonly origin: string;
  /** Whether a login may be reused for `credentialsCacheMillis` (a password file is re-read for each login). */
  readonly isCacheable: boolean;
  /** Calls the provider once and checks what it returned. @throws {DatabaseConnectionError} `CREDENTIALS_FAILED`. */
  fetch(context: ProviderContext): Promise<Login>;
}

/** The login inputs of the configuration: the `password`, `credentials` and `passwordFile` settings. */
export interface LoginInputs {
  readonly password: unknown;
  readonly credentials: unknown;
  /** The password file's path and the name it was given by (`DB_PASSWORD_FILE` or `option passwordFile`). */
  readonly passwordFile: { readonly path: string; readonly name: string } | undefined;
  /** Where a fixed password was set, if anywhere (option, URL or DB_PASSWORD). */
  readonly fixedPasswordName: string | undefined;
}

/** The provider's own failure, as callers see it: never its value, its error as `cause`. */
export function credentialsFailed(origin: string, problem: string, cause?: unknown): DatabaseConnectionError {
  return new DatabaseConnectionError(`Could not get a login from ${origin}: ${problem}`, {
    code: 'CREDENTIALS_FAILED',
    cause,
  });
}

/** What a wrong-typed value is, without showing it (it may be the secret in another shape). */
function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (Buffer.isBuffer(value)) return 'a Buffer';
  const type = typeof value;
  return type === 'object' ? 'an object' : type === 'undefined' ? 'undefined' : `a ${type}`;
}

function checkPassword(origin: string, value: unknown, what: string): string {
  if (typeof value !== 'string') throw credentialsFailed(origin, `it returned ${kindOf(value)} as the ${what}, not a string`);
  if (value === '') throw credentialsFailed(origin, `it returned an empty ${what}`);
  if (value.includes('\0')) throw credentialsFailed(origin, `the ${what} it returned contains a NUL character`);
  return value;
}

function toEpochMillis(origin: string, value: unknown): number | undefined {
  if (value === undefined) return undefined;
  const millis = value instanceof Date ? value.getTime() : value;
  if (typeof millis !== 'number' || !Number.isFinite(millis))
    throw credentialsFailed(origin, 'its expiresAt is neither a Date nor epoch milliseconds');
  return millis;
}

/** Calls `provider`, turning a throw into `CREDENTIALS_FAILED` with the provider's error as `cause`. */
async function call<T>(
  origin: string,
  provider: (context: ProviderContext) => T | Promise<T>,
  context: ProviderContext,
): Promise<T> {
  try {
    return await provider(context);
  } catch (error) {
    if (error instanceof DatabaseConnectionError && error.code === 'CREDENTIALS_FAILED') throw error;
    const reason = error instanceof Error ? `${error.name}: ${error.message}` : kindOf(error);
    throw credentialsFailed(origin, `the provider failed (${reason.slice(0, 200)})`, error);
  }
}

/**
 * Picks the login source from the configuration, or undefined for a fixed password (or none).
 * `credentials` replaces both user and password, so it cannot be combined with a password of any
 * kind; a password function and a password file likewise exclude each other and a fixed password.
 */
export function resolveLoginSource(inputs: LoginInputs, problems: string[]): LoginSource | undefined {
  const { password, credentials, passwordFile, fixedPasswordName } = inputs;
  const given = [
    typeof password === 'function' ? 'option password (a function)' : undefined,
    credentials !== undefined ? 'option credentials' : undefined,
    passwordFile ? passwordFile.name : undefined,
    fixedPasswordName,
  ].filter((name): name is string => name !== undefined);
  if (credentials !== undefined && typeof credentials !== 'function') {
    problems.push('option credentials must be a function returning { user, password } (or a promise of it).');
    return undefined;
  }
  if (given.length > 1 && (credentials !== undefined || typeof password === 'function' || passwordFile)) {
    problems.push(`Give the password one way only; found ${given.join(', ')}.`);
    return undefined;
  }
  if (typeof credentials === 'function') {
    const provider = credentials as CredentialsProvider;
    const origin = 'the credentials provider (option credentials)';
    return Object.freeze({
      kind: 'credentials',
      origin,
      isCacheable: true,
      async fetch(context: ProviderContext): Promise<Login> {
        const value = (await call(origin, provider, context)) as unknown;
        if (value === null || typeof value !== 'object')
          throw credentialsFailed(origin, `it returned ${kindOf(value)}, not { user, password }`);
        const pair = value as Partial<Credentials>;
        const user = checkPassword(origin, pair.user, 'user');
        return {
          user,
          password: checkPassword(origin, pair.password, 'password'),
          expiresAt: toEpochMillis(origin, pair.expiresAt),
        };
      },
    } satisfies LoginSource);
  }
  if (typeof password === 'function') {
    const provider = password as PasswordProvider;
    const origin = 'the password provider (option password)';
    return Object.freeze({
      kind: 'password-function',
      origin,
      isCacheable: true,
      async fetch(context: ProviderContext): Promise<Login> {
        const value = (await call(origin, provider, context)) as unknown;
        return { user: undefined, password: checkPassword(origin, value, 'password'), expiresAt: undefined };
      },
    } satisfies LoginSource);
  }
  if (passwordFile) {
    if (!checkPasswordFile(passwordFile.path, passwordFile.name, problems)) return undefined;
    const origin = `${passwordFile.name} (${passwordFile.path})`;
    return Object.freeze({
      kind: 'password-file',
      origin,
      isCacheable: false,
      async fetch(context: ProviderContext): Promise<Login> {
        try {
          return { user: undefined, password: await readPasswordFile(passwordFile.path, context.signal), expiresAt: undefined };
        } catch (error) {
          if (error instanceof PasswordFileError) throw credentialsFailed(origin, error.message, error.cause);
          throw error;
        }
      },
    } satisfies LoginSource);
  }
  return undefined;
}
