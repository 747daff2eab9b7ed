import type ts from 'typescript';
import type { SourceAnalysis } from './analysis.js';
import { pgExportOf } from './pg-bindings.js';
import { holderOf, isReadOnlyWork, queriesThrough, receiverCall, storedIn, type RuleFinding } from './rules.js';

const CONNECT = new Set(['connect']);
const END = new Set(['end']);

/**
 * Rule `client-per-request`: a pg Client created inside a function that connects and ends it there,
 * so every call pays a new connection (TCP, TLS, authentication) and concurrency has no bound. A
 * client created at module level (a script, a LISTEN connection) is not reported.
 */
export function clientPerRequest(analysis: SourceAnalysis): RuleFinding[] {
  return analysis.constructions.flatMap((node): RuleFinding[] => {
    const scope = analysis.enclosingFunction(node);
    if (scope === undefined || pgExportOf(analysis, node.expression) !== 'Client') return [];
    const stored = storedIn(analysis, node);
    const symbol = stored === undefined ? undefined : analysis.symbolOf(stored);
    if (symbol === undefined) return [];
    const inScope = analysis.references(symbol).filter((reference) => analysis.enclosingFunction(reference) === scope);
    const connects = inScope.flatMap((reference) => receiverCall(analysis, holderOf(analysis, reference), CONNECT) ?? []);
    const ends = inScope.flatMap((reference) => receiverCall(analysis, holderOf(analysis, reference), END) ?? []);
    if (connects.length === 0 || ends.length === 0) return [];
    const queries = queriesThrough(analysis, symbol, scope);
    const isReadOnly = isReadOnlyWork(analysis, symbol, scope);
    const [only] = queries;
    const after =
      queries.length === 1 && only !== undefined && isTextAndValues(analysis, only)
        ? [`const rows = await db.executeQuery(${executeQueryArguments(analysis, only, isReadOnly)}); // resolves to the rows`]
        : [
            `await db.withDb(${isReadOnly}, async (client) => {`,
            '  // the same client.query(text, params) calls; no connect() or end()',
            '});',
          ];
    return [
      {
        rule: 'client-per-request',
        node,
        message:
          'pg Client created, connected and ended on every call: each call opens a new connection ' +
          '(TCP, TLS, authentication) and nothing bounds how many are open at once',
        before: analysis.statementLines([node, ...connects, ...queries, ...ends]),
        after: ['const db = new Database(); // once, at module level: one pool for every call', ...after].join('\n'),
      },
    ];
  });
}

/** `query(text)` or `query(text, values)`: what `executeQuery` takes (not a config object or a callback). */
function isTextAndValues(analysis: SourceAnalysis, call: ts.CallExpression): boolean {
  const t = analysis.ts;
  const [text, values, ...rest] = call.arguments.map((argument) => analysis.unwrap(argument));
  if (text === undefined || rest.length > 0 || t.isObjectLiteralExpression(text)) return false;
  return values === undefined || !(t.isArrowFunction(values) || t.isFunctionExpression(values));
}

/**
 * `text, values[, options]` for `executeQuery`: options go third, so a statement without values gets
 * `[]` before them (`executeQuery(sql, { readOnly: false })` throws: the options are not an array).
 */
function executeQueryArguments(analysis: SourceAnalysis, call: ts.CallExpression, isReadOnly: boolean): string {
  const [text, values] = call.arguments.map((argument) => analysis.text(argument));
  if (isReadOnly) return values === undefined ? `${text}` : `${text}, ${values}`;
  return `${text}, ${values ?? '[]'}, { readOnly: false }`;
}
