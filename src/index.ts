export { Database } from './database.js';
export { Pool } from './pg-compat/pool.js';
export type { PoolConfig } from './pg-compat/pool-config.js';
export type { CallOptions, ExecuteQueryOptions, ExecuteTransactionOptions, Operation, WithDbOptions } from './call-options.js';
export { loadConfig } from './config.js';
export type { ConnectionTarget, DatabaseOptions, ReplicaOptions, ResolvedConfig } from './config.js';
export { SETTINGS } from './config-table.js';
export type { Credentials, CredentialsProvider, PasswordProvider, ProviderContext } from './credentials/login-source.js';
export type { LogLevel, SettingSpec } from './config-table.js';
export {
  withDb,
  executeQuery,
  executeTransaction,
  getDatabase,
  getConnectionPoolStats,
  databaseHealthCheck,
  shutdownDatabase,
} from './default-database.js';
export {
  DbError,
  ConfigError,
  DatabaseConnectionError,
  PoolTimeoutError,
  PoolClosedError,
  DatabaseQueryError,
  DatabaseTransactionError,
} from './errors.js';
export type { DbErrorCode, PoolSnapshot } from './errors.js';
export type { HealthReport, ReplicaHealth, TlsReport } from './health.js';
export type { QueryClient } from './query-client.js';
export type { DurationStats, ListenerStats, NodeStats, PoolStats } from './stats.js';
export type { ListenOptions, Notification, NotificationHandler, Subscription } from './streams/listener.js';
export type { RowStream } from './streams/row-stream.js';
export type { CopyFromStream, CopyToStream } from './streams/copy.js';
export type { CopyOptions, StreamOptions } from './streams/transaction-streams.js';
export type { IsolationLevel } from './transaction.js';
export type { SslMode } from './ssl/ssl-settings.js';
export type { ReadTarget } from './replicas/router.js';
