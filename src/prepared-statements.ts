/**
 * Automatic prepared statements. A parameterized statement text that comes back gets a name, and pg
 * then sends it to the server with that name: each connection parses and plans it once (Parse), and
 * every later call on that connection only binds and executes it. That roughly halves the server's
 * CPU for short queries (docs/benchmarks.md). Statements without parameters keep pg's simple query
 * protocol, so a text holding several statements works as before.
 *
 * The names are shared by every connection of a `Database`; pg remembers per connection which ones it
 * has prepared. At most `max` names are ever given out, so no connection holds more than `max`
 * prepared statements; texts seen after that run unnamed, as without this feature. A text is named on
 * its second use, so one-off texts (SQL built with literals in it) do not use up the budget.
 */

/** Prefix of every automatic name; callers' own names (`name` in a query config) are left alone. */
const NAME_PREFIX = 'codecheck_s';

/**
 * SQLSTATE 0A000 "cached plan must not change result type": a table a prepared statement reads
 * changed shape (DDL). The statement must be prepared afresh.
 */
const STALE_PLAN_STATE = '0A000';
/** SQLSTATE 26000: the statement is gone on the server (DEALLOCATE ALL or DISCARD ALL was run). */
const MISSING_STATEMENT_STATE = '26000';

/** Names of parameterized statement texts, given out on a text's second use, at most `max`. */
export class StatementNames {
  readonly #max: number;
  readonly #names = new Map<string, string>();
  /** Texts seen once; cleared when it reaches `#seenLimit`, so it stays bounded. */
  readonly #seen = new Set<string>();
  readonly #seenLimit: number;
  #issued = 0;

  /** @param max - most names ever given out (per `Database`); 0 turns the feature off. */
  constructor(max: number) {
    this.#max = max;
    this.#seenLimit = Math.max(1000, max * 10);
  }

  /** The name to send `text` with, or undefined to send it unnamed. */
  nameFor(text: string): string | undefined {
    const name = this.#names.get(text);
    if (name !== undefined || this.#issued >= this.#max) return name;
    if (!this.#seen.has(text)) {
      if (this.#seen.size >= this.#seenLimit) this.#seen.clear();
      this.#seen.add(text);
      return undefined;
    }
    this.#seen.delete(text);
    const fresh = `${NAME_PREFIX}${++this.#issued}`;
    this.#names.set(text, fresh);
    return fresh;
  }

  /** Drops `text`'s name: its next use is prepared afresh under a new one (while the budget lasts). */
  forget(text: string): void {
    this.#names.delete(text);
  }
}

/**
 * SQLSTATEs a prepared statement may raise only because its parameter types were fixed when it was
 * prepared: after `ALTER COLUMN ... TYPE`, `id = $1` prepared with `$1` an integer finds no operator
 * for the new type (42883), an INSERT's integer does not fit a jsonb column (42804, 42846). An
 * unnamed statement, typed afresh from the current schema, may run where the prepared one fails.
 */
const TYPE_ANALYSIS_STATES = new Set(['42804', '42846', '42883', '42725']);

/**
 * A bound value that cannot become the parameter's fixed type: `'7'` is fine for text but `'7.5'` is
 * not an integer (22P02), 3,000,000,000 is beyond an integer a column has outgrown (22003), a
 * timestamp's text for a parameter that was a date (22007, 22008). The same states come from a value
 * that is simply wrong, which only sending the statement unnamed can tell apart. Errors of class 22
 * that only execution raises (division by zero, 22012) are not among them: a long statement that
 * fails so is not run twice.
 */
const VALUE_INPUT_STATES = new Set(['22P02', '22003', '22007', '22008']);

/** Whether a prepared statement's failure may come from parameter types fixed before DDL (see {@link TYPE_ANALYSIS_STATES}). */
export function mayBeStaleTypes(sqlState: string | undefined): boolean {
  return sqlState !== undefined && (VALUE_INPUT_STATES.has(sqlState) || TYPE_ANALYSIS_STATES.has(sqlState));
}

/** Whether such a failure can only come from the statement's analysis (never from a value). */
export function isStaleAnalysis(sqlState: string | undefined): boolean {
  return sqlState !== undefined && TYPE_ANALYSIS_STATES.has(sqlState);
}

/** What a failed named statement means for the statement cache (by SQLSTATE). */
export function preparedStatementFailure(sqlState: string | undefined, message: string): 'stale-plan' | 'missing' | undefined {
  if (sqlState === STALE_PLAN_STATE && message.includes('cached plan must not change result type')) return 'stale-plan';
  if (sqlState === MISSING_STATEMENT_STATE) return 'missing';
  return undefined;
}
