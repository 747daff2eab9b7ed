import type ts from 'typescript';
import { oneLine, type SourceAnalysis } from './analysis.js';
import { holderOf, outermost, receiverCall, storedIn, type RuleFinding } from './rules.js';
import { isTransactionControl } from './sql.js';

const LISTEN_METHODS = new Set(['on', 'once', 'addListener', 'prependListener', 'prependOnceListener']);
/** pg.Pool options with no Database equivalent: a pool configured with them stays a pg.Pool. */
const PG_ONLY_OPTIONS = new Set(['Client', 'Promise', 'log', 'verify', 'onConnect', 'types', 'stream']);

/** Every `new Pool(...)` / `new pg.Pool(...)` whose class comes from `pg` or `pg-pool`. */
function poolConstructions(analysis: SourceAnalysis): ts.NewExpression[] {
  return analysis.constructions.filter((node) => analysis.pgExportOf(node.expression) === 'Pool');
}

/** How suggestions name the pool: its variable or `this.pool`, else `pool`. */
function poolName(analysis: SourceAnalysis, node: ts.NewExpression): string {
  return storedIn(analysis, node)?.getText(analysis.sourceFile) ?? 'pool';
}

/**
 * Rule `pool-to-database`: a pg Pool this library can replace. Pools handed to another library
 * (`new PgStore({ pool })`, `drizzle(pool)`) or configured with pg-only hooks must stay pg.Pools.
 */
export function poolToDatabase(analysis: SourceAnalysis): RuleFinding[] {
  const t = analysis.ts;
  return poolConstructions(analysis).flatMap((node): RuleFinding[] => {
    const options = node.arguments?.[0] === undefined ? undefined : analysis.unwrap(node.arguments[0]);
    const hasPgOnlyOption =
      options !== undefined &&
      t.isObjectLiteralExpression(options) &&
      options.properties.some((property) => property.name !== undefined && PG_ONLY_OPTIONS.has(property.name.getText()));
    if (hasPgOnlyOption || isHandedOver(analysis, node)) return [];
    const stored = storedIn(analysis, node);
    const symbol = stored === undefined ? undefined : analysis.symbolOf(stored);
    if (
      symbol !== undefined &&
      analysis.references(symbol).some((reference) => isHandedOver(analysis, holderOf(analysis, reference)))
    ) {
      return [];
    }
    const isFromEnvironment =
      options === undefined ||
      (t.isObjectLiteralExpression(options) &&
        options.properties.every(
          (property) =>
            t.isPropertyAssignment(property) &&
            property.name.getText() === 'connectionString' &&
            /^process\.env\.DATABASE_URL$/.test(property.initializer.getText()),
        ));
    const name = poolName(analysis, node);
    const construction = isFromEnvironment
      ? 'const db = new Database(); // reads DATABASE_URL and DB_* from process.env'
      : `const db = new Database(${oneLine(options?.getText() ?? '')}); // option names: docs/configuration.md`;
    return [
      {
        rule: 'pool-to-database',
        node,
        message:
          'pg Pool can become new Database(): configuration from the environment, validated checkouts, ' +
          'connections released on every path, stats and health checks',
        before: analysis.snippet(analysis.statementOf(node)),
        after: [
          "import { Database } from '@codecheck/db';",
          construction,
          `// ${name}.query(text, params) -> db.executeQuery(text, params) (read-only by default; writes: { readOnly: false })`,
          `// ${name}.connect() ... release() -> db.withDb(readOnly, async (client) => ...)`,
        ].join('\n'),
      },
    ];
  });
}

/**
 * Rule `pool-without-error-listener`: pg emits a pooled idle client's error (server restart, network
 * cut) on the pool, and an EventEmitter `error` with no listener crashes the process.
 */
export function poolWithoutErrorListener(analysis: SourceAnalysis): RuleFinding[] {
  return poolConstructions(analysis).flatMap((node): RuleFinding[] => {
    if (isErrorListenerCall(analysis, outermost(analysis, node))) return []; // new Pool().on('error', ...)
    const stored = storedIn(analysis, node);
    const symbol = stored === undefined ? undefined : analysis.symbolOf(stored);
    const references = symbol === undefined ? [] : analysis.references(symbol);
    if (references.some((reference) => isErrorListenerCall(analysis, holderOf(analysis, reference)))) return [];
    const name = poolName(analysis, node);
    return [
      {
        rule: 'pool-without-error-listener',
        node,
        message:
          "pg Pool has no 'error' listener: an idle client's lost connection is emitted on the pool and crashes the process",
        before: analysis.snippet(analysis.statementOf(node)),
        after: [
          `${name}.on('error', (err) => logger.warn({ err }, 'idle PostgreSQL client failed'));`,
          '// or new Database(), which listens on every pool and client and logs instead of crashing',
        ].join('\n'),
      },
    ];
  });
}

/** Whether `holder` is the receiver of `.on('error', ...)` (or once/addListener). */
function isErrorListenerCall(analysis: SourceAnalysis, holder: ts.Node): boolean {
  const call = receiverCall(analysis, holder, LISTEN_METHODS);
  return call !== undefined && analysis.literalText(call.arguments[0]) === 'error';
}

/** Whether a value is passed to a call or constructor, directly or inside an object or array literal. */
function isHandedOver(analysis: SourceAnalysis, node: ts.Node): boolean {
  const t = analysis.ts;
  let current = outermost(analysis, node);
  for (;;) {
    const parent = current.parent;
    if ((t.isCallExpression(parent) || t.isNewExpression(parent)) && parent.expression !== current) return true;
    if (t.isPropertyAssignment(parent) && parent.initializer === current) current = outermost(analysis, parent.parent);
    else if (t.isShorthandPropertyAssignment(parent)) current = outermost(analysis, parent.parent);
    else if (t.isArrayLiteralExpression(parent)) current = outermost(analysis, parent);
    else return false;
  }
}

/**
 * Rule `transaction-on-pool`: BEGIN/COMMIT/ROLLBACK through `pool.query`. Each call checks out
 * whichever connection is free, so the transaction does not hold the statements around it. Reported
 * once per pool and function, at its first transaction-control statement.
 */
export function transactionOnPool(analysis: SourceAnalysis): RuleFinding[] {
  const groups = new Map<string, ts.CallExpression[]>();
  for (const call of analysis.calls) {
    const method = analysis.methodCall(call);
    const text = sqlTextOf(analysis, call);
    if (method?.name !== 'query' || text === undefined || !isTransactionControl(text) || !analysis.isPoolLike(method.receiver))
      continue;
    const scope = analysis.enclosingFunction(call) ?? analysis.sourceFile;
    const key = `${scope.pos}:${method.receiver.getText(analysis.sourceFile)}`;
    groups.set(key, [...(groups.get(key) ?? []), call]);
  }
  return [...groups.values()].map((controls): RuleFinding => {
    const [first] = controls as [ts.CallExpression, ...ts.CallExpression[]];
    const receiver = analysis.methodCall(first)?.receiver.getText(analysis.sourceFile) ?? 'pool';
    const statements = analysis.calls.filter(
      (call) =>
        analysis.enclosingFunction(call) === analysis.enclosingFunction(first) &&
        analysis.methodCall(call)?.name === 'query' &&
        analysis.methodCall(call)?.receiver.getText(analysis.sourceFile) === receiver,
    );
    const work = statements.filter((call) => !controls.includes(call));
    const keywords = [
      ...new Set(controls.map((call) => (sqlTextOf(analysis, call) ?? '').trim().split(/\s+/)[0]!.toUpperCase())),
    ];
    const withDb = [
      'await db.withDb(false, async (client) => {',
      '  // the same statements through client.query(text, params); no BEGIN/COMMIT/ROLLBACK',
      '}); // BEGIN, then COMMIT, or ROLLBACK when the function throws',
    ];
    const after =
      work.length === 0
        ? withDb
        : [
            'await db.executeTransaction([',
            ...work.map((call) => `  ${transactionStep(analysis, call)},`),
            ']); // one connection, all or nothing',
            '// or, when a statement needs an earlier result:',
            ...withDb.map((line) => `// ${line}`),
          ];
    return {
      rule: 'transaction-on-pool',
      node: first,
      message:
        `${listWords(keywords)} sent through ${receiver}.query: each pool.query may run on a different connection, ` +
        'so the statements between them are not one transaction',
      before: analysis.statementLines(statements),
      after: after.join('\n'),
    };
  });
}

/** The constant SQL text of `x.query('...')` or `x.query({ text: '...' })`. */
function sqlTextOf(analysis: SourceAnalysis, call: ts.CallExpression): string | undefined {
  const t = analysis.ts;
  const argument = call.arguments[0] === undefined ? undefined : analysis.unwrap(call.arguments[0]);
  if (argument === undefined || !t.isObjectLiteralExpression(argument)) return analysis.literalText(argument);
  const text = argument.properties.find((property) => property.name?.getText() === 'text');
  return text !== undefined && t.isPropertyAssignment(text) ? analysis.literalText(text.initializer) : undefined;
}

/** `{ text, params }` for executeTransaction, from `x.query(text, values)` or `x.query({ text, values })`. */
function transactionStep(analysis: SourceAnalysis, call: ts.CallExpression): string {
  const t = analysis.ts;
  const [first, second] = call.arguments;
  const argument = first === undefined ? undefined : analysis.unwrap(first);
  if (argument !== undefined && t.isObjectLiteralExpression(argument)) {
    const find = (name: string): ts.Node | undefined => {
      const property = argument.properties.find((candidate) => candidate.name?.getText() === name);
      return property !== undefined && t.isPropertyAssignment(property) ? property.initializer : property?.name;
    };
    return step(find('text'), find('values'));
  }
  return step(first, second);
}

function step(text: ts.Node | undefined, values: ts.Node | undefined): string {
  const sql = oneLine(text?.getText() ?? "''", Infinity);
  return values === undefined ? `{ text: ${sql} }` : `{ text: ${sql}, params: ${oneLine(values.getText(), Infinity)} }`;
}

/** `A`, `A and B`, `A, B and C`. */
function listWords(words: readonly string[]): string {
  return words.length < 2 ? words.join('') : `${words.slice(0, -1).join(', ')} and ${words.at(-1)}`;
}
