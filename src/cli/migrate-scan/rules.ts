import type ts from 'typescript';
import type { SourceAnalysis } from './analysis.js';

/** Rule ids: stable public API (they appear in `--json` output and in ignore comments). */
export const RULE_IDS = [
  'client-per-request',
  'unreleased-client',
  'transaction-on-pool',
  'sql-interpolation',
  'pool-to-database',
  'pool-without-error-listener',
] as const;

/** One of {@link RULE_IDS}. */
export type RuleId = (typeof RULE_IDS)[number];

/** What a rule reports, before the scanner turns the node into a file position. */
export interface RuleFinding {
  readonly rule: RuleId;
  /** Where the finding is reported: the first token of this node. */
  readonly node: ts.Node;
  /** One line: what is wrong and why it matters. */
  readonly message: string;
  /** The code as written. */
  readonly before: string;
  /** The same code with this library. */
  readonly after: string;
}

const READ_ONLY_SQL = /^\s*(?:select|show|explain|values|table)\b/i;

/** Whether SQL text starts with a statement that only reads (SELECT, SHOW, EXPLAIN, VALUES, TABLE). */
export function isReadOnlySql(text: string): boolean {
  return READ_ONLY_SQL.test(text);
}

/**
 * `true` when every `.query()` sent through `symbol` inside `scope` is constant read-only SQL, so the
 * suggestion can use `withDb(true, ...)`; `false` (read-write, the safe default) otherwise.
 */
export function isReadOnlyWork(analysis: SourceAnalysis, symbol: ts.Symbol, scope: ts.Node | undefined): boolean {
  const texts = queriesThrough(analysis, symbol, scope).map((call) => analysis.literalText(call.arguments[0]));
  return texts.length > 0 && texts.every((text) => text !== undefined && isReadOnlySql(text));
}

/** The `x.query(...)` calls whose receiver binds to `symbol`, inside `scope` (the whole file if undefined). */
export function queriesThrough(analysis: SourceAnalysis, symbol: ts.Symbol, scope: ts.Node | undefined): ts.CallExpression[] {
  return analysis.calls.filter((call) => {
    const method = analysis.methodCall(call);
    return (
      method?.name === 'query' &&
      analysis.symbolOf(method.receiver) === symbol &&
      (scope === undefined || (call.pos >= scope.pos && call.end <= scope.end))
    );
  });
}

/** The expression a `new X()` or `await x` result is stored in: `const a = ...`, `a = ...`, `this.a = ...`. */
export function storedIn(analysis: SourceAnalysis, node: ts.Node): ts.Node | undefined {
  const t = analysis.ts;
  const holder = outermost(analysis, node);
  const parent = holder.parent;
  if ((t.isVariableDeclaration(parent) || t.isPropertyDeclaration(parent)) && parent.initializer === holder) {
    return t.isIdentifier(parent.name) ? parent.name : undefined;
  }
  if (t.isBinaryExpression(parent) && parent.right === holder && parent.operatorToken.kind === t.SyntaxKind.EqualsToken) {
    return parent.left;
  }
  return undefined;
}

/** The outermost of a node's enclosing parentheses and type assertions. */
export function outermost(analysis: SourceAnalysis, node: ts.Node): ts.Node {
  let current = node;
  while (current.parent !== undefined && analysis.unwrap(current.parent) === analysis.unwrap(node)) current = current.parent;
  return current;
}

/** The expression a reference stands in: `pool` itself, or `this.pool` when `pool` is a property name. */
export function holderOf(analysis: SourceAnalysis, reference: ts.MemberName): ts.Node {
  const parent = reference.parent;
  const holder = analysis.ts.isPropertyAccessExpression(parent) && parent.name === reference ? parent : reference;
  return outermost(analysis, holder);
}

/** The call `holder.name(...)` when `holder` is the receiver of one of `names`, else undefined. */
export function receiverCall(
  analysis: SourceAnalysis,
  holder: ts.Node,
  names: ReadonlySet<string>,
): ts.CallExpression | undefined {
  const t = analysis.ts;
  const access = holder.parent;
  if (!t.isPropertyAccessExpression(access) || access.expression !== holder || !names.has(access.name.text)) return undefined;
  const call = outermost(analysis, access).parent;
  return t.isCallExpression(call) && analysis.unwrap(call.expression) === access ? call : undefined;
}
