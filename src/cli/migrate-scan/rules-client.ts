import type ts from 'typescript';
import { oneLine, type SourceAnalysis } from './analysis.js';
import { holderOf, isReadOnlyWork, outermost, queriesThrough, receiverCall, storedIn, type RuleFinding } from './rules.js';

const CONNECT = new Set(['connect']);
const END = new Set(['end']);
const RELEASE = new Set(['release']);

/**
 * Rule `client-per-request`: a pg Client created inside a function that connects and ends it there,
 * so every call pays a new connection (TCP, TLS, authentication) and concurrency has no bound. A
 * client created at module level (a script, a LISTEN connection) is not reported.
 */
export function clientPerRequest(analysis: SourceAnalysis): RuleFinding[] {
  return analysis.constructions.flatMap((node): RuleFinding[] => {
    const scope = analysis.enclosingFunction(node);
    if (scope === undefined || analysis.pgExportOf(node.expression) !== 'Client') return [];
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
      queries.length === 1 && only !== undefined
        ? [`await db.executeQuery(${argumentsText(only)}${isReadOnly ? '' : ', { readOnly: false }'}); // resolves to the rows`]
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

/**
 * Rule `unreleased-client`: `await pool.connect()` whose client is not released on every path —
 * never released, or released only when nothing throws (no `release()` in a `finally`, nor in a
 * `catch` as well as on the success path). A client that is returned or stored is the caller's to
 * release, and a release inside a callback (`.finally(() => client.release())`) is trusted: neither is
 * reported.
 */
export function unreleasedClient(analysis: SourceAnalysis): RuleFinding[] {
  const t = analysis.ts;
  return analysis.calls.flatMap((call): RuleFinding[] => {
    const method = analysis.methodCall(call);
    if (method?.name !== 'connect' || call.arguments.length > 0 || !analysis.isPoolLike(method.receiver)) return [];
    const awaited = outermost(analysis, call).parent;
    if (!t.isAwaitExpression(awaited)) return [];
    const stored = storedIn(analysis, awaited);
    const symbol = stored === undefined ? undefined : analysis.symbolOf(stored);
    const isDiscarded = t.isExpressionStatement(outermost(analysis, awaited).parent);
    if (symbol === undefined && !isDiscarded) return [];
    const scope = analysis.enclosingFunction(call);
    const references = symbol === undefined ? [] : analysis.references(symbol).filter((reference) => reference !== stored);
    if (references.some((reference) => escapes(analysis, holderOf(analysis, reference)))) return [];
    const releases = references.flatMap((reference) => receiverCall(analysis, holderOf(analysis, reference), RELEASE) ?? []);
    if (releases.some((release) => analysis.enclosingFunction(release) !== scope)) return [];
    if (releases.some((release) => isInFinally(analysis, release, scope)) || isReleasedOnBothPaths(analysis, releases)) return [];
    const client = stored === undefined ? 'client' : oneLine(stored.getText(analysis.sourceFile));
    const isReadOnly = symbol !== undefined && isReadOnlyWork(analysis, symbol, scope);
    return [
      {
        rule: 'unreleased-client',
        node: call,
        message:
          releases.length === 0
            ? `${client} from ${method.receiver.getText(analysis.sourceFile)}.connect() is never released: ` +
              'each call keeps a connection until the pool is exhausted and later queries wait forever'
            : `${client} from ${method.receiver.getText(analysis.sourceFile)}.connect() is released only when nothing throws: ` +
              'release() is not in a finally, so an error leaks the connection',
        before: analysis.statementLines([call, ...releases]),
        after: [
          `await db.withDb(${isReadOnly}, async (client) => {`,
          '  // the same client.query(text, params) calls; no release()',
          '}); // withDb releases the connection on every path, and discards it if it broke',
        ].join('\n'),
      },
    ];
  });
}

/** Whether the client leaves the function: returned, yielded, assigned, or put in an object or array. */
function escapes(analysis: SourceAnalysis, holder: ts.Node): boolean {
  const t = analysis.ts;
  const parent = holder.parent;
  return (
    t.isReturnStatement(parent) ||
    t.isYieldExpression(parent) ||
    t.isArrowFunction(parent) ||
    (t.isBinaryExpression(parent) && parent.right === holder && parent.operatorToken.kind === t.SyntaxKind.EqualsToken) ||
    (t.isVariableDeclaration(parent) && parent.initializer === holder) ||
    (t.isPropertyAssignment(parent) && parent.initializer === holder) ||
    t.isShorthandPropertyAssignment(parent) ||
    t.isArrayLiteralExpression(parent)
  );
}

/** Whether a release runs in a `finally` block of a `try` inside the acquiring function. */
function isInFinally(analysis: SourceAnalysis, release: ts.Node, scope: ts.Node | undefined): boolean {
  const t = analysis.ts;
  for (let current: ts.Node = release; current.parent !== undefined && current.parent !== scope; current = current.parent) {
    if (t.isTryStatement(current.parent) && current.parent.finallyBlock === current) return true;
  }
  return false;
}

/** `try { ...; client.release() } catch (e) { client.release(); throw e }`: released on both paths. */
function isReleasedOnBothPaths(analysis: SourceAnalysis, releases: readonly ts.Node[]): boolean {
  const t = analysis.ts;
  const catchOf = (node: ts.Node): ts.Node | undefined => {
    for (let current = node.parent; current !== undefined; current = current.parent) if (t.isCatchClause(current)) return current;
    return undefined;
  };
  return releases.some((release) => {
    const clause = catchOf(release);
    return clause !== undefined && releases.some((other) => other !== release && catchOf(other) !== clause);
  });
}

/** The argument list of a `.query(...)` call as written, on one line. */
function argumentsText(call: ts.CallExpression): string {
  return call.arguments.map((argument) => oneLine(argument.getText(), 80)).join(', ');
}
