import type { Logger } from 'pino';
import { DatabaseConnectionError, PoolClosedError, PoolTimeoutError } from '../errors.js';
import { summarize } from '../error-summary.js';
import type { NodePool } from './node-pool.js';
import { startTimer } from '../timers.js';

const BACKOFF_MIN_MILLIS = 50;
const BACKOFF_MAX_MILLIS = 2000;

/**
 * Waits until `node` answers and holds `min` open connections, retrying with backoff until
 * `deadline`. Startup attempts bypass the circuit breaker: a server that comes up a second late
 * must not leave the circuit open for the first requests.
 *
 * Its sleeps are `'ref'`, unlike the library's other timers: the caller awaits ready() (typically
 * before anything else holds the event loop open), and between attempts nothing else may be pending,
 * so an unref'd timer would let the process exit mid-wait. The deadline bounds them.
 * @throws {DatabaseConnectionError} `CONNECTION_FAILED` with the last connection error as `cause`.
 */
export async function waitUntilReady(node: NodePool, deadline: number, log: Logger): Promise<void> {
  let backoffMillis = BACKOFF_MIN_MILLIS;
  let lastError: unknown;
  for (let attempt = 1; ; attempt++) {
    try {
      const lease = await node.acquire({ deadline, isStartupProbe: true });
      await node.release(lease);
      while (node.openConnections < node.target.min && Date.now() < deadline && node.state === 'open') {
        await node.refill();
        if (node.openConnections < node.target.min) await pause(Math.min(backoffMillis, deadline - Date.now()), node.closeSignal);
      }
      if (node.openConnections >= node.target.min) {
        log.info({ node: node.name, connections: node.openConnections, attempts: attempt }, 'database ready');
        return;
      }
    } catch (error) {
      if (error instanceof PoolClosedError) throw error;
      // Keep the connection error that explains the failure, not the deadline that ended the wait.
      // A login the provider could not give is reported as it is (CREDENTIALS_FAILED), not by its cause.
      if (error instanceof DatabaseConnectionError && error.code === 'CREDENTIALS_FAILED') lastError = error;
      else if (!(error instanceof PoolTimeoutError) || lastError === undefined)
        lastError = (error as { cause?: unknown }).cause ?? error;
      log.debug({ error: summarize(lastError), attempt }, 'database not ready yet');
    }
    const remaining = deadline - Date.now();
    if (remaining <= 0) {
      const reason = lastError
        ? summarize(lastError).message
        : `only ${node.openConnections} of ${node.target.min} connections opened`;
      throw new DatabaseConnectionError(`The database ${node.name} was not ready in time: ${reason}`, { cause: lastError });
    }
    await pause(Math.min(remaining, backoffMillis * (0.5 + Math.random() * 0.5)), node.closeSignal);
    backoffMillis = Math.min(BACKOFF_MAX_MILLIS, backoffMillis * 2);
  }
}

/**
 * A backoff sleep that shutdown ends at once (`signal` aborts when the node starts closing): a
 * `ready()` still retrying must not hold the process open after `shutdown()` resolved.
 */
function pause(millis: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = startTimer(millis, done, 'ref');
    signal.addEventListener('abort', done, { once: true });
  });
}
