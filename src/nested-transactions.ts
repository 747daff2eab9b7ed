/**
 * Transaction control sent by a caller on the `withDb` client. `withDb` already runs the transaction,
 * so a caller's BEGIN would only earn a warning and its COMMIT would commit withDb's transaction early
 * (a later throw would then undo nothing). ORMs run their `transaction()` on whatever client they are
 * given: Kysely sends `begin` (or `start transaction isolation level ...`) then `commit`/`rollback`;
 * Drizzle sends `begin` then `commit`/`rollback`, and `savepoint`/`release savepoint`/`rollback to
 * savepoint` for its own nested transactions. So a plain BEGIN becomes a SAVEPOINT, its COMMIT a RELEASE
 * and its ROLLBACK a ROLLBACK TO: the ORM gets a nested transaction, and withDb's stays atomic. What
 * cannot be nested (a BEGIN with an isolation level or access mode, COMMIT AND CHAIN, two-phase
 * commit, a COMMIT or ROLLBACK with no BEGIN of the caller's to match) is refused with a TypeError
 * before anything is sent (docs/errors.md, "Transaction control inside withDb").
 */

/** What one caller statement is, as transaction control. */
export type TransactionControl =
  { readonly kind: 'begin' | 'commit' | 'rollback' } | { readonly kind: 'refuse'; readonly reason: string };

/** Leading whitespace and comments, which the server skips too. */
const LEADING_NOISE = /^(?:\s+|--[^\n]*(?:\n|$)|\/\*[\s\S]*?\*\/)*/;
const BEGIN = /^(?:begin|start\s+transaction)(?:\s+(?:work|transaction))?(?:\s+(.*))?$/is;
const COMMIT = /^(?:commit|end)(?:\s+(?:work|transaction))?(?:\s+and\s+(no\s+)?chain)?$/i;
const ROLLBACK = /^(?:rollback|abort)(?:\s+(?:work|transaction))?(?:\s+and\s+(no\s+)?chain)?$/i;
const TWO_PHASE = /^(?:prepare\s+transaction|commit\s+prepared|rollback\s+prepared)\b/i;
const FIRST_WORD = /^(?:begin|start|commit|end|rollback|abort|prepare)\b/i;

const NESTING = 'withDb runs the whole callback in one transaction';

/**
 * Classifies `text` when it is a single transaction-control statement; undefined for anything else
 * (including `ROLLBACK TO SAVEPOINT`, `SAVEPOINT`, `RELEASE`, which nest by themselves).
 */
export function classifyTransactionControl(text: string): TransactionControl | undefined {
  // Cheap rejection first: this runs on every statement of a withDb callback.
  const statement = text.replace(LEADING_NOISE, '');
  if (!FIRST_WORD.test(statement)) return undefined;
  const body = statement.replace(/[\s;]+$/, '');
  if (body.includes(';')) return undefined;
  if (TWO_PHASE.test(body))
    return { kind: 'refuse', reason: `two-phase commit statements cannot run inside withDb (${NESTING})` };
  const begin = BEGIN.exec(body);
  if (begin) {
    if (begin[1] === undefined || begin[1].trim() === '') return { kind: 'begin' };
    return {
      kind: 'refuse',
      reason: `a BEGIN with an isolation level or access mode cannot be nested (${NESTING}); pass isolationLevel and readOnly to withDb instead`,
    };
  }
  for (const [pattern, kind] of [
    [COMMIT, 'commit'],
    [ROLLBACK, 'rollback'],
  ] as const) {
    const match = pattern.exec(body);
    if (!match) continue;
    if (/\band\s+chain$/i.test(body) && match[1] === undefined)
      return { kind: 'refuse', reason: `${kind.toUpperCase()} AND CHAIN cannot run inside withDb (${NESTING})` };
    return { kind };
  }
  return undefined;
}

/** The name of the savepoint standing for the caller's BEGIN at `depth` (1 for the outermost). */
export function savepointName(depth: number): string {
  return `codecheck_nested_${depth}`;
}
