import type pg from 'pg';
import { isSocketDestroyed, setLogin, shortenConnectTimeout } from '../client-internals.js';
import { sqlStateOf } from '../errors.js';
import type { LoginCache } from './login-cache.js';

/** SQLSTATEs of a refused login: invalid_password, invalid_authorization_specification. */
const LOGIN_REFUSED = new Set(['28P01', '28000']);

type ConnectCallback = (error: Error) => void;

/** Connect errors of a login the server refused that came from the cache: worth one more try (see {@link isStaleLoginRefusal}). */
const staleRefusals = new WeakSet<Error>();

/**
 * Whether `error` is a connect refused for a cached login (the secret was rotated without
 * `rotateCredentials()`). The cache has been dropped, so a new connection gets the provider's login:
 * the node pool tries once more within the same acquire deadline instead of failing the caller.
 */
export function isStaleLoginRefusal(error: unknown): boolean {
  return error instanceof Error && staleRefusals.has(error);
}

/**
 * A pg client class whose `connect()` first gets a login from `logins` (within the credentials
 * timeout), then connects with it; the time the provider took comes off pg's own connect timeout.
 * A login the server refuses is dropped from the cache, so the next connection asks the provider
 * again (a secret rotated without `rotateCredentials()`); when the refused one came from the cache,
 * the error is marked ({@link isStaleLoginRefusal}) so the pool tries once more at once. Used for
 * pooled and standalone clients alike.
 */
export function withLogin(Base: typeof pg.Client, logins: LoginCache): typeof pg.Client {
  class LoginClient extends Base {
    // pg's two forms: pg-pool uses the callback one, standalone clients the promise one.
    override connect(): Promise<pg.Client>;
    override connect(callback: ConnectCallback): void;
    override connect(callback?: ConnectCallback): Promise<pg.Client> | void {
      if (!callback)
        return new Promise<pg.Client>((resolve, reject) => this.connect((error) => (error ? reject(error) : resolve(this))));
      const startedAt = Date.now();
      const isCached = logins.hasCachedLogin;
      logins.get().then(
        (login) => {
          // Shutdown destroys clients whose connect is in progress, the provider's wait included.
          if (isSocketDestroyed(this)) return this.#fail(callback, new Error('Connection terminated before it was opened'));
          setLogin(this, login.user, login.password);
          shortenConnectTimeout(this, Date.now() - startedAt);
          super.connect((error: Error) => {
            const state = sqlStateOf(error);
            if (state !== undefined && LOGIN_REFUSED.has(state)) {
              logins.invalidate();
              if (isCached) staleRefusals.add(error);
            }
            callback(error);
          });
        },
        (error: Error) => this.#fail(callback, error),
      );
    }

    /** A connect that never reached the socket: report it as pg reports a failed connect, 'end' included. */
    #fail(callback: ConnectCallback, error: Error): void {
      callback(error);
      this.emit('end');
    }
  }
  return LoginClient as unknown as typeof pg.Client;
}
