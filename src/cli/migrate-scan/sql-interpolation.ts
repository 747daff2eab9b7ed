import type ts from 'typescript';
import { oneLine, type SourceAnalysis } from './analysis.js';
import { isPoolLike } from './pg-bindings.js';
import { formatFinding, formatSlots } from './pg-format.js';
import { holderOf, isReadOnlySql, type RuleFinding } from './rules.js';
import { SqlEvaluator } from './sql-evaluator.js';
import { highestPlaceholder, parameterize, type Numbering, type Parameterized, type SpliceKind } from './sql-placeholders.js';
import { isUtilityStatement, leadingText, statementKeyword, type SqlPart } from './sql-text.js';

const QUERY_METHODS = new Set(['query', 'executeQuery']);
/** Knex's raw SQL methods: their text is SQL whatever it starts with, with `?` and `??` bindings. */
const KNEX_RAW = /^(?:raw|(?:or|and)?(?:where|having)(?:Not)?Raw|(?:orderBy|groupBy|join|select|from)Raw)$/;

/** A template, `+` chain or pg-format call that becomes a query's SQL text, and how it reaches the query. */
interface Contribution {
  readonly node: ts.Expression;
  /** `argument`: the call's own text argument; `nested`: inside it (a branch); the others build a variable. */
  readonly kind: 'argument' | 'nested' | 'initializer' | 'assignment' | 'append';
  /** For `sql += ...`: the variable's initial value, which decides whether this is SQL. */
  readonly sqlStart: string;
  readonly variable?: ts.VariableDeclaration;
  readonly isAppendedTo?: boolean;
}

const REMEDY: Record<SpliceKind, string> = {
  value: 'bind values as parameters',
  identifier: 'quote identifiers with pg.escapeIdentifier() or check them against a list of allowed names',
  keyword: 'pick keywords from a fixed list',
  fragment: 'rewrite fragments built elsewhere with placeholders',
};

/**
 * Rule `sql-interpolation`: SQL text that splices in a caller's value — template substitution, `+`,
 * or pg-format's `%s` — passed to `.query()` / `executeQuery()` / Knex `raw()` and its `*Raw` methods,
 * directly, through a variable, or through a conditional expression. Constants, numbers, placeholder
 * lists, values checked against a constant list, and escaped names are fine (see the evaluator). Each
 * spliced expression is classified (value / identifier / keyword / fragment) and fixed accordingly.
 */
export function sqlInterpolation(analysis: SourceAnalysis): RuleFinding[] {
  const evaluator = new SqlEvaluator(analysis);
  const seen = new Set<ts.Node>();
  const findings: RuleFinding[] = [];
  for (const call of analysis.calls) {
    const name = analysis.calleeName(call);
    const isKnex = name !== undefined && KNEX_RAW.test(name) && analysis.methodCall(call) !== undefined;
    if (name === undefined || (!QUERY_METHODS.has(name) && !isKnex)) continue;
    const [text, values] = queryArguments(analysis, call);
    if (text === undefined) continue;
    for (const contribution of contributionsOf(analysis, evaluator, text, 'argument')) {
      if (seen.has(contribution.node)) continue;
      seen.add(contribution.node);
      const finding =
        formatFinding(analysis, evaluator, call, contribution.node, contribution.kind === 'argument') ??
        spliceFinding(analysis, evaluator, call, values, contribution, isKnex);
      if (finding !== undefined) findings.push(finding);
    }
  }
  return findings;
}

function spliceFinding(
  analysis: SourceAnalysis,
  evaluator: SqlEvaluator,
  call: ts.CallExpression,
  values: ts.Expression | undefined,
  contribution: Contribution,
  isKnex: boolean,
): RuleFinding | undefined {
  const t = analysis.ts;
  const parts = evaluator.parts(contribution.node);
  if (!parts.some((part) => 'node' in part && !part.isSafe)) return undefined;
  const keyword = statementKeyword(contribution.sqlStart || leadingText(parts));
  if (keyword === undefined && !isKnex) return undefined;
  const isUtility = keyword !== undefined && isUtilityStatement(keyword);
  const existing = values === undefined ? undefined : analysis.unwrap(values);
  const literalCount = existing !== undefined && t.isArrayLiteralExpression(existing) ? existing.elements.length : 0;
  const first = Math.max(literalCount, highestPlaceholder(textOf(parts))) + 1;
  const numbering: Numbering = isKnex
    ? { knex: true }
    : contribution.isAppendedTo
      ? { params: existing !== undefined && t.isIdentifier(existing) ? existing.text : 'params' }
      : { first };
  const bound = parameterize(parts, numbering, isUtility);
  const how = t.isTemplateExpression(analysis.unwrap(contribution.node)) ? 'interpolates' : 'concatenates';
  const kinds = [...new Set(bound.kinds.map((entry) => entry.kind))];
  const listed = bound.kinds.map((entry) => `${oneLine(entry.text, 40)} (${entry.kind})`).join(', ');
  const utility = isUtility ? `; ${keyword!.toUpperCase()} takes no parameters: values are quoted with pg.escapeLiteral()` : '';
  return {
    rule: 'sql-interpolation',
    node: contribution.node,
    message:
      `SQL text ${how} ${listed}: a value with a quote in it rewrites the statement (SQL injection); ` +
      `${kinds.map((kind) => REMEDY[kind]).join('; ')}${utility}`,
    before: analysis.snippet(contribution.kind === 'argument' ? call : analysis.statementOf(contribution.node)),
    after: suggestion(analysis, call, existing, contribution, bound, isUtility),
  };
}

/** The SQL text and values of `q(text, values)` or `q({ text, values })`. */
function queryArguments(
  analysis: SourceAnalysis,
  call: ts.CallExpression,
): [ts.Expression | undefined, ts.Expression | undefined] {
  const t = analysis.ts;
  const [first, maybeValues] = call.arguments;
  const second = maybeValues !== undefined && isCallback(analysis, maybeValues) ? undefined : maybeValues;
  const argument = first === undefined ? undefined : analysis.unwrap(first);
  if (argument === undefined || !t.isObjectLiteralExpression(argument)) return [first, second];
  const find = (name: string): ts.Expression | undefined => {
    const property = argument.properties.find((candidate) => candidate.name?.getText() === name);
    if (property === undefined) return undefined;
    if (t.isPropertyAssignment(property)) return property.initializer;
    return t.isShorthandPropertyAssignment(property) ? property.name : undefined;
  };
  return [find('text'), find('values')];
}

/**
 * The built expressions behind a query's text: the argument itself, the branches of a conditional or
 * `||`/`??`, a pg-format call, or a variable's initializer and assignments (followed the same way).
 */
function contributionsOf(
  analysis: SourceAnalysis,
  evaluator: SqlEvaluator,
  text: ts.Expression,
  kind: Contribution['kind'],
  context: Omit<Contribution, 'node' | 'kind'> = { sqlStart: '' },
  depth = 0,
): Contribution[] {
  const t = analysis.ts;
  const target = analysis.unwrap(text) as ts.Expression;
  if (depth > 6) return [];
  if (evaluator.isBuilt(target)) return [{ node: target, kind, ...context }];
  if (t.isCallExpression(target) && formatSlots(analysis, target) !== undefined) return [{ node: target, kind, ...context }];
  const nested = 'nested';
  if (t.isConditionalExpression(target)) {
    return [target.whenTrue, target.whenFalse].flatMap((branch) =>
      contributionsOf(analysis, evaluator, branch, nested, context, depth + 1),
    );
  }
  if (
    t.isBinaryExpression(target) &&
    (target.operatorToken.kind === t.SyntaxKind.BarBarToken || target.operatorToken.kind === t.SyntaxKind.QuestionQuestionToken)
  ) {
    return [target.left, target.right].flatMap((side) => contributionsOf(analysis, evaluator, side, nested, context, depth + 1));
  }
  if (!t.isIdentifier(target) || kind !== 'argument') return [];
  const symbol = analysis.symbolOf(target);
  const variable = symbol?.declarations?.[0];
  if (symbol === undefined || variable === undefined || !t.isVariableDeclaration(variable) || !t.isIdentifier(variable.name)) {
    return [];
  }
  const assignments = analysis.references(symbol).flatMap((reference) => {
    const holder = holderOf(analysis, reference);
    const parent = holder.parent;
    const isAssignment =
      t.isBinaryExpression(parent) &&
      parent.left === holder &&
      (parent.operatorToken.kind === t.SyntaxKind.EqualsToken || parent.operatorToken.kind === t.SyntaxKind.PlusEqualsToken);
    return isAssignment ? [parent] : [];
  });
  const isAppendedTo = assignments.some((assignment) => assignment.operatorToken.kind === t.SyntaxKind.PlusEqualsToken);
  const initial =
    variable.initializer ?? assignments.find((assignment) => assignment.operatorToken.kind === t.SyntaxKind.EqualsToken)?.right;
  const base = initial === undefined ? '' : leadingText(evaluator.parts(initial));
  const contributions: Contribution[] = [];
  if (variable.initializer !== undefined) {
    contributions.push(
      ...contributionsOf(
        analysis,
        evaluator,
        variable.initializer,
        'initializer',
        { sqlStart: '', variable, isAppendedTo },
        depth + 1,
      ),
    );
  }
  for (const assignment of assignments) {
    const isAppend = assignment.operatorToken.kind === t.SyntaxKind.PlusEqualsToken;
    const from = { sqlStart: isAppend ? base : '', variable, isAppendedTo };
    contributions.push(
      ...contributionsOf(analysis, evaluator, assignment.right, isAppend ? 'append' : 'assignment', from, depth + 1),
    );
  }
  return contributions;
}

/** The same code with nothing unsafe spliced in, complete: it parses, keeps the values already passed and their numbers. */
function suggestion(
  analysis: SourceAnalysis,
  call: ts.CallExpression,
  existing: ts.Node | undefined,
  contribution: Contribution,
  bound: Parameterized,
  isUtility: boolean,
): string {
  const t = analysis.ts;
  const callee = analysis.text(call.expression);
  const kept =
    existing === undefined
      ? []
      : t.isArrayLiteralExpression(existing)
        ? existing.elements.map((element) => analysis.text(element))
        : [`...${analysis.text(existing)}`];
  const all = [...kept, ...bound.values];
  const list = all.length === 0 ? '' : `[${all.join(', ')}]`;
  if (contribution.kind === 'argument') {
    const last = call.arguments.at(-1);
    const callback = last !== undefined && call.arguments.length > 1 && isCallback(analysis, last) ? [analysis.text(last)] : [];
    const lines = [`${callee}(${[bound.sql, ...(list === '' ? [] : [list]), ...callback].join(', ')})`];
    const method = analysis.methodCall(call);
    if (!isUtility && bound.notes.length === 0 && method?.name === 'query' && isPoolLike(analysis, method.receiver)) {
      // executeQuery is read-only unless told: a write gets its options third, after the values ([] when none).
      const isReadOnly = isReadOnlySql(bound.sql.replace(/^[`'"]/, ''));
      const args = isReadOnly
        ? [bound.sql, ...(list === '' ? [] : [list])]
        : [bound.sql, list === '' ? '[]' : list, '{ readOnly: false }'];
      lines.push(`// with @codecheck/db: await db.executeQuery(${args.join(', ')}) resolves to the rows`);
    }
    return [...lines, ...bound.notes].join('\n');
  }
  if (contribution.kind === 'nested') {
    const pass =
      bound.values.length === 0 ? [] : [`// pass [${bound.values.join(', ')}] after the values this statement already has`];
    return [bound.sql, ...pass, ...bound.notes].join('\n');
  }
  const variable = contribution.variable!;
  const name = variable.name.getText();
  const flags = t.getCombinedNodeFlags(variable);
  const keyword = flags & t.NodeFlags.Const ? 'const' : flags & t.NodeFlags.Let ? 'let' : 'var';
  const statement =
    contribution.kind === 'initializer'
      ? `${keyword} ${name} = ${bound.sql};`
      : `${name} ${contribution.kind === 'append' ? '+=' : '='} ${bound.sql};`;
  if (contribution.isAppendedTo) {
    const params = existing !== undefined && t.isIdentifier(existing) ? existing.text : 'params';
    const push = bound.values.length === 0 ? [] : [`${params}.push(${bound.values.join(', ')});`];
    return [...push, statement, `// then ${callee}(${name}, ${params})`, ...bound.notes].join('\n');
  }
  return [statement, `// then ${callee}(${name}${list === '' ? '' : `, ${list}`})`, ...bound.notes].join('\n');
}

/** A function written in place: the node-style callback of `query(text, values, (err, result) => ...)`. */
function isCallback(analysis: SourceAnalysis, node: ts.Node): boolean {
  const target = analysis.unwrap(node);
  return analysis.ts.isArrowFunction(target) || analysis.ts.isFunctionExpression(target);
}

function textOf(parts: readonly SqlPart[]): string {
  return parts.map((part) => ('text' in part ? part.text : '')).join('');
}
