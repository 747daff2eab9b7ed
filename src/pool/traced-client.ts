import type pg from 'pg';
import { connectChannel, traced, type ConnectMessage, type ServerFields } from '../tracing-channels.js';

type ConnectCallback = (error: Error) => void;

/**
 * A pg client class whose `connect()` is traced on `codecheck-db:connect` while someone subscribes
 * (docs/observability.md): the login (a credentials provider included), TLS and startup of one new
 * connection, for the pool's clients and standalone probes alike. The message names the server the
 * client was made for (with a host list, the host chosen for this connection).
 */
export function withConnectTracing(Base: typeof pg.Client, node: Pick<ServerFields, 'database' | 'poolName'>): typeof pg.Client {
  class TracedClient extends Base {
    override connect(): Promise<pg.Client>;
    override connect(callback: ConnectCallback): void;
    override connect(callback?: ConnectCallback): Promise<pg.Client> | void {
      if (!connectChannel.hasSubscribers) return callback ? super.connect(callback) : super.connect();
      const message: ConnectMessage = {
        operation: 'connect',
        serverAddress: this.host,
        serverPort: this.port,
        database: node.database,
        poolName: node.poolName,
      };
      // Always the base's callback form: a base whose promise form calls `this.connect(callback)`
      // (the login client does) would otherwise come back here and trace itself without end.
      const connecting = traced(
        connectChannel,
        message,
        () => new Promise<void>((resolve, reject) => super.connect((error: Error) => (error ? reject(error) : resolve()))),
      );
      if (!callback) return connecting.then(() => this);
      connecting.then(
        () => callback(null as unknown as Error),
        (error: Error) => callback(error),
      );
    }
  }
  return TracedClient as unknown as typeof pg.Client;
}
