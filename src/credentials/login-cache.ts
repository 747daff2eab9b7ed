import type { Logger } from 'pino';
import { summarize } from '../error-summary.js';
import { raceDeadline } from '../timers.js';
import { credentialsFailed, type Login, type LoginSource } from './login-source.js';

/** A refresh starts in the background once a login is this far into its cache time (the last fifth is left). */
const REFRESH_AHEAD_FRACTION = 0.8;

/** How a {@link LoginCache} calls its source. */
export interface LoginCacheSettings {
  /** The provider's own deadline per call, ms (`credentialsTimeoutMillis`). */
  readonly timeoutMillis: number;
  /** How long a login is reused, ms (`credentialsCacheMillis`); 0: the provider is called for every login. */
  readonly cacheMillis: number;
  readonly log: Logger;
}

/**
 * The logins of one Database from its {@link LoginSource}: one provider call at a time (concurrent
 * connects share it), each bounded by `timeoutMillis`; a login reused for `cacheMillis` (or until the
 * provider's `expiresAt`, if sooner); in the last fifth of that time a connect gets the cached login at
 * once and a refresh starts in the background. A refresh that fails keeps the cached login until it
 * expires (the failure is logged). A password file is read for every login, never cached.
 *
 * The login is held in private fields only: it never shows in `util.inspect`, JSON or logs.
 */
export class LoginCache {
  readonly source: LoginSource;
  #settings: LoginCacheSettings;
  #login: Login | undefined;
  #expiresAt = 0;
  #refreshAt = 0;
  #pending: Promise<Login> | undefined;
  /** Bumped by {@link invalidate}: a call that started before it does not fill the cache. */
  #epoch = 0;

  constructor(source: LoginSource, settings: LoginCacheSettings) {
    this.source = source;
    this.#settings = settings;
  }

  /**
   * A login for a new connection: the cached one while fresh, else the provider's next answer.
   * @throws {DatabaseConnectionError} `CREDENTIALS_FAILED` when the provider fails, hangs past
   * `timeoutMillis` or returns something unusable; the provider's error is `cause`.
   */
  get(): Promise<Login> {
    const now = Date.now();
    if (this.#login && now < this.#expiresAt) {
      if (now >= this.#refreshAt && !this.#pending)
        this.#call().catch((error: unknown) =>
          this.#settings.log.warn(
            { error: summarize(error) },
            'refreshing the login ahead of expiry failed; the cached one is kept',
          ),
        );
      return Promise.resolve(this.#login);
    }
    return this.#pending ?? this.#call();
  }

  /** Whether {@link get} would answer with the cached login now (synchronously true until it expires). */
  get hasCachedLogin(): boolean {
    return this.#login !== undefined && Date.now() < this.#expiresAt;
  }

  /** Forgets the cached login (after the server refused it, or on rotation): the next connect calls the provider. */
  invalidate(): void {
    this.#login = undefined;
    this.#expiresAt = 0;
    this.#pending = undefined;
    this.#epoch++;
  }

  /** Calls the provider now and caches its answer (for `rotateCredentials()`). */
  async refresh(): Promise<void> {
    this.invalidate();
    await this.#call();
  }

  #call(): Promise<Login> {
    const epoch = this.#epoch;
    const pending = this.#fetchWithin(this.#settings.timeoutMillis).then(
      (login) => {
        if (this.#epoch === epoch) {
          this.#pending = undefined;
          this.#remember(login);
        }
        return login;
      },
      (error: unknown) => {
        if (this.#epoch === epoch) this.#pending = undefined;
        throw error;
      },
    );
    this.#pending = pending;
    return pending;
  }

  #remember(login: Login): void {
    const cacheMillis = this.source.isCacheable ? this.#settings.cacheMillis : 0;
    if (cacheMillis === 0) return;
    const now = Date.now();
    const expiresAt = Math.min(now + cacheMillis, login.expiresAt ?? Infinity);
    if (expiresAt <= now) return;
    this.#login = login;
    this.#expiresAt = expiresAt;
    this.#refreshAt = now + (expiresAt - now) * REFRESH_AHEAD_FRACTION;
  }

  /** One provider call, abandoned (its signal aborted) after `timeoutMillis`. */
  #fetchWithin(timeoutMillis: number): Promise<Login> {
    const controller = new AbortController();
    const fetch = () => {
      const fetched = this.source.fetch({ signal: controller.signal });
      // A provider that settles after its deadline must not become an unhandled rejection.
      fetched.catch(() => undefined);
      return fetched;
    };
    const giveUp = () => {
      const error = credentialsFailed(
        this.source.origin,
        `it did not answer within ${timeoutMillis} ms (credentialsTimeoutMillis)`,
      );
      controller.abort(error);
      throw error;
    };
    return raceDeadline(fetch, timeoutMillis, giveUp, 'unref');
  }
}
