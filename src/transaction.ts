import { DatabaseConnectionError, DatabaseTransactionError, isConnectionFailure, sqlStateOf } from './errors.js';
import type { Lease } from './pool.js';
import { createQueryClient, toDbError, type QueryClient, type QueryContext } from './query-client.js';

/** Transaction isolation levels accepted by `withDb({ isolationLevel })`. */
export const ISOLATION_LEVELS = ['read committed', 'repeatable read', 'serializable'] as const;
export type IsolationLevel = (typeof ISOLATION_LEVELS)[number];

/** SQLSTATEs after which re-running the whole transaction may succeed. */
const RETRYABLE_STATES = new Set(['40001', '40P01']);
const RETRY_BASE_MILLIS = 10;
const RETRY_MAX_MILLIS = 1000;

/** How one transaction runs. */
export interface TransactionSpec {
  readonly isReadOnly: boolean;
  readonly isolationLevel?: IsolationLevel;
  /** Extra runs after a serialization failure or deadlock (40001, 40P01). */
  readonly retries: number;
  /** Statements run right after BEGIN (e.g. SET LOCAL behind PgBouncer); not counted as queries. */
  readonly preamble?: readonly string[];
}

/** Validates an isolation level given by a caller; the SQL text comes from our list, never from input. */
export function parseIsolationLevel(value: unknown): IsolationLevel | undefined {
  if (value === undefined) return undefined;
  const text = typeof value === 'string' ? value.trim().toLowerCase().replace(/[_\s]+/g, ' ') : '';
  const level = ISOLATION_LEVELS.find((l) => l === text);
  if (!level) throw new TypeError(`isolationLevel must be one of ${ISOLATION_LEVELS.join(', ')} (got ${JSON.stringify(String(value)).slice(0, 40)})`);
  return level;
}

function beginStatement(spec: TransactionSpec): string {
  const level = spec.isolationLevel ? ` ISOLATION LEVEL ${spec.isolationLevel.toUpperCase()}` : '';
  return `BEGIN${level} ${spec.isReadOnly ? 'READ ONLY' : 'READ WRITE'}`;
}

/** Thrown when BEGIN failed on a connection that turned out dead: nothing ran, the caller may retry. */
export class BeginConnectionError extends DatabaseConnectionError {}

/**
 * Runs `fn` inside BEGIN ... COMMIT on `lease`. ROLLBACK when fn throws, rethrowing fn's own error;
 * a serialization failure or deadlock re-runs fn up to `spec.retries` times with jittered backoff,
 * then rejects with DatabaseTransactionError `SERIALIZATION_FAILURE`. A COMMIT answered with
 * ROLLBACK rejects with `TRANSACTION_ROLLED_BACK`; a failed COMMIT with `TRANSACTION_FAILED`.
 */
export async function runTransaction<T>(lease: Lease, context: QueryContext, spec: TransactionSpec, fn: (client: QueryClient) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    await control(lease, context, beginStatement(spec), 'BEGIN', attempt);
    for (const statement of spec.preamble ?? []) await control(lease, context, statement, 'BEGIN', attempt);
    const { client, close } = createQueryClient(lease, context);
    let result: T;
    try {
      result = await fn(client);
      if (context.cancelled) throw context.cancelled;
    } catch (error) {
      close();
      await rollback(lease);
      const state = sqlStateOf(error);
      if (!state || !RETRYABLE_STATES.has(state) || lease.isBroken) throw error;
      if (attempt > spec.retries) {
        throw new DatabaseTransactionError(`The transaction failed with SQLSTATE ${state} after ${attempt} attempt${attempt === 1 ? '' : 's'}`, { cause: error, attempts: attempt, code: 'SERIALIZATION_FAILURE' });
      }
      context.counters.transactionRetries++;
      await backoff(attempt);
      continue;
    }
    close();
    const outcome = await commit(lease, context, attempt);
    if (outcome === 'committed') return result;
    if (attempt > spec.retries) {
      throw new DatabaseTransactionError(`COMMIT failed with SQLSTATE ${sqlStateOf(outcome.error)} after ${attempt} attempt${attempt === 1 ? '' : 's'}`, { cause: outcome.error, attempts: attempt, code: 'SERIALIZATION_FAILURE' });
    }
    context.counters.transactionRetries++;
    await backoff(attempt);
  }
}

async function control(lease: Lease, context: QueryContext, statement: string, what: string, attempt: number): Promise<void> {
  if (context.cancelled) throw context.cancelled;
  try {
    await lease.client.query(statement);
  } catch (error) {
    const mapped = toDbError(error, lease, context);
    if (isConnectionFailure(error)) throw new BeginConnectionError(`${what} failed: the connection to ${lease.node.name} was lost`, { cause: error, code: 'CONNECTION_LOST' });
    if (mapped === context.cancelled) throw mapped;
    throw new DatabaseTransactionError(`${what} failed: ${(error as Error).message}`, { cause: mapped, attempts: attempt });
  }
}

async function commit(lease: Lease, context: QueryContext, attempt: number): Promise<'committed' | { error: unknown }> {
  let command: string;
  try {
    command = (await lease.client.query('COMMIT')).command;
  } catch (error) {
    const state = sqlStateOf(error);
    if (state && RETRYABLE_STATES.has(state)) return { error };
    const mapped = toDbError(error, lease, context);
    const lost = lease.isBroken ? ' The connection was lost, so whether it committed is unknown.' : '';
    throw new DatabaseTransactionError(`COMMIT failed: ${(error as Error).message}.${lost}`, { cause: mapped, attempts: attempt });
  }
  if (command === 'ROLLBACK') {
    throw new DatabaseTransactionError('COMMIT was answered with ROLLBACK: a statement in the transaction had failed, so nothing was committed', { attempts: attempt, code: 'TRANSACTION_ROLLED_BACK' });
  }
  return 'committed';
}

/** ROLLBACK unless the connection is already known broken; a failed ROLLBACK marks it broken. */
async function rollback(lease: Lease): Promise<void> {
  if (lease.isBroken || lease.inFlight > 0) {
    lease.isBroken = true;
    return;
  }
  try {
    await lease.client.query('ROLLBACK');
  } catch {
    lease.isBroken = true;
  }
}

function backoff(attempt: number): Promise<void> {
  const ceiling = Math.min(RETRY_MAX_MILLIS, RETRY_BASE_MILLIS * 2 ** (attempt - 1));
  return new Promise((resolve) => setTimeout(resolve, Math.random() * ceiling).unref());
}
