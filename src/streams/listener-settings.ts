import type { Logger } from 'pino';
import type { ResolvedConfig } from '../config.js';
import { ConfigError } from '../errors.js';
import type { LoginCache } from '../credentials/login-cache.js';
import { withLogin } from '../credentials/login-client.js';
import { createClientClass } from '../ssl/ssl-settings.js';
import type { ListenerSettings } from './listener.js';

/**
 * Where and how the notification listener connects: `listenUrl` (DB_LISTEN_URL) or the primary,
 * with the primary's TLS settings and login source, an application_name ending in `listener`, and
 * the connection timeout. Session settings such as statement_timeout are left out: the listener runs nothing long.
 * `primaryAddress`: where the primary's pool connects now (with a host list, the host that is the
 * primary, not the first one listed: a standby refuses LISTEN); read at each (re)connect.
 */
export function listenerSettings(
  config: ResolvedConfig,
  log: Logger,
  logins?: LoginCache,
  primaryAddress?: () => { readonly host: string; readonly port: number },
): ListenerSettings {
  const target = config.listen ?? config;
  const Negotiating = createClientClass(config.ssl);
  // Without a password of its own, the listener logs in as the pool does (provider, password file).
  const Client = logins && target.loginSource ? withLogin(Negotiating, logins) : Negotiating;
  return {
    createClient: () =>
      new Client({
        ...(config.listen === undefined && primaryAddress ? primaryAddress() : { host: target.host, port: target.port }),
        user: target.user,
        password: target.password,
        database: target.database,
        application_name: `${config.applicationName} listener`,
        connectionTimeoutMillis: config.connectionTimeoutMillis,
      }),
    connectTimeoutMillis: config.connectionTimeoutMillis,
    keepaliveMillis: config.listenKeepaliveMillis,
    pingTimeoutMillis: config.validationTimeoutMillis,
    sharesPoolLogin: config.listen === undefined || target.loginSource !== undefined,
    log: log.child({ component: 'listener' }),
  };
}

/**
 * LISTEN needs a session of its own: behind PgBouncer transaction pooling the server connection
 * changes under the client, so notifications would go to whoever holds it next.
 * @throws {ConfigError} `CONFIG_INVALID` behind PgBouncer without `listenUrl`.
 */
export function checkListenTarget(config: ResolvedConfig): void {
  if (config.pgbouncer && !config.listen)
    throw new ConfigError([
      'db.listen needs DB_LISTEN_URL (option listenUrl) behind PgBouncer (DB_PGBOUNCER=true): LISTEN needs a session of its own, so point it at the primary directly, not at PgBouncer in transaction mode.',
    ]);
}
