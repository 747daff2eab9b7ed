import type ts from 'typescript';
import { oneLine, type SourceAnalysis } from './analysis.js';
import { holderOf, type RuleFinding } from './rules.js';
import { isUtilityStatement, leadingText, SqlEvaluator, statementKeyword, type SqlPart } from './sql.js';

const QUERY_METHODS = new Set(['query', 'executeQuery']);

/** A template or `+` chain that becomes a query's SQL text, and how it reaches the query. */
interface Contribution {
  readonly node: ts.Expression;
  /** `argument`: written in the call; the others build a variable that the call passes. */
  readonly kind: 'argument' | 'initializer' | 'assignment' | 'append';
  /** The text that decides whether this is SQL: its own, or for `sql += ...` the variable's initial value. */
  readonly sqlStart: string;
  readonly variable?: ts.VariableDeclaration;
  readonly isAppendedTo?: boolean;
}

/** How placeholders are numbered: from a fixed index, or from a params array that values are pushed on. */
type Numbering = { first: number } | { params: string };

/**
 * Rule `sql-interpolation`: SQL text that splices in a value by template substitution or `+`, passed
 * to `.query()` / `executeQuery()` directly or through a variable. Only text that starts like a SQL
 * statement, and only values that could carry a quote: constants, numbers, placeholder lists
 * (`$${i + 1}`) and `escapeIdentifier()` results are fine.
 */
export function sqlInterpolation(analysis: SourceAnalysis): RuleFinding[] {
  const t = analysis.ts;
  const evaluator = new SqlEvaluator(analysis);
  const seen = new Set<ts.Node>();
  const findings: RuleFinding[] = [];
  for (const call of analysis.calls) {
    const callee = analysis.unwrap(call.expression);
    const name = t.isIdentifier(callee) ? callee.text : analysis.methodCall(call)?.name;
    if (name === undefined || !QUERY_METHODS.has(name)) continue;
    const [text, values] = queryArguments(analysis, call);
    if (text === undefined) continue;
    for (const contribution of contributionsOf(analysis, evaluator, text)) {
      if (seen.has(contribution.node)) continue;
      seen.add(contribution.node);
      const parts = evaluator.parts(contribution.node);
      const index = parts.findIndex((part) => 'node' in part && !part.isSafe);
      const unsafe = parts[index];
      const keyword = statementKeyword(contribution.sqlStart || leadingText(parts));
      if (unsafe === undefined || !('node' in unsafe) || keyword === undefined) continue;
      const how = t.isTemplateExpression(analysis.unwrap(contribution.node)) ? 'interpolates' : 'concatenates';
      const isUtility = isUtilityStatement(keyword);
      const remedy = isIdentifierAt(parts, index)
        ? 'quote the name with pg.escapeIdentifier()'
        : isUtility
          ? `${keyword.toUpperCase()} takes no parameters: quote it with pg.escapeLiteral() or pg.escapeIdentifier()`
          : 'bind it as a parameter';
      findings.push({
        rule: 'sql-interpolation',
        node: contribution.node,
        message:
          `SQL text ${how} ${oneLine(unsafe.node.getText(), 40)}: a value with a quote in it rewrites the statement ` +
          `(SQL injection); ${remedy}`,
        before: analysis.snippet(contribution.kind === 'argument' ? call : analysis.statementOf(contribution.node)),
        after: suggestion(analysis, call, values, contribution, parts, isUtility),
      });
    }
  }
  return findings;
}

/** The SQL text and values of `q(text, values)` or `q({ text, values })`. */
function queryArguments(
  analysis: SourceAnalysis,
  call: ts.CallExpression,
): [ts.Expression | undefined, ts.Expression | undefined] {
  const t = analysis.ts;
  const [first, second] = call.arguments;
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

/** The built expressions behind a query's text: the argument itself, or a variable's initializer and assignments. */
function contributionsOf(analysis: SourceAnalysis, evaluator: SqlEvaluator, text: ts.Expression): Contribution[] {
  const t = analysis.ts;
  const target = analysis.unwrap(text) as ts.Expression;
  if (evaluator.isBuilt(target)) return [{ node: target, kind: 'argument', sqlStart: '' }];
  if (!t.isIdentifier(target)) return [];
  const symbol = analysis.symbolOf(target);
  const variable = symbol?.declarations?.[0];
  if (symbol === undefined || variable === undefined || !t.isVariableDeclaration(variable) || !t.isIdentifier(variable.name))
    return [];
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
    contributions.push({ node: variable.initializer, kind: 'initializer', sqlStart: '', variable, isAppendedTo });
  }
  for (const assignment of assignments) {
    const isAppend = assignment.operatorToken.kind === t.SyntaxKind.PlusEqualsToken;
    contributions.push({
      node: assignment.right,
      kind: isAppend ? 'append' : 'assignment',
      sqlStart: isAppend ? base : '',
      variable,
      isAppendedTo,
    });
  }
  return contributions.filter((contribution) => evaluator.isBuilt(contribution.node));
}

/** The same code with every unsafe value bound as a parameter (or quoted, where parameters cannot go). */
function suggestion(
  analysis: SourceAnalysis,
  call: ts.CallExpression,
  values: ts.Expression | undefined,
  contribution: Contribution,
  parts: readonly SqlPart[],
  isUtility: boolean,
): string {
  const t = analysis.ts;
  const callee = call.expression.getText(analysis.sourceFile);
  const existing = values === undefined ? undefined : analysis.unwrap(values);
  if (contribution.kind === 'argument') {
    const isArray = existing !== undefined && t.isArrayLiteralExpression(existing);
    const kept =
      existing === undefined
        ? []
        : isArray
          ? existing.elements.map((element) => element.getText())
          : [`...${existing.getText()}`];
    const bound = parameterize(parts, { first: isArray ? existing.elements.length + 1 : 1 }, isUtility);
    const all = [...kept, ...bound.values];
    const args = all.length === 0 ? bound.sql : `${bound.sql}, [${all.join(', ')}]`;
    const lines = [`${callee}(${args})`];
    const method = analysis.methodCall(call);
    if (!isUtility && method?.name === 'query' && analysis.isPoolLike(method.receiver)) {
      lines.push(`// with @codecheck/db: await db.executeQuery(${args}) resolves to the rows`);
    }
    return lines.join('\n');
  }
  const variable = contribution.variable!;
  const name = variable.name.getText();
  const params = existing !== undefined && t.isIdentifier(existing) ? existing.text : 'params';
  const bound = parameterize(parts, contribution.isAppendedTo ? { params } : { first: 1 }, isUtility);
  const flags = t.getCombinedNodeFlags(variable);
  const keyword = flags & t.NodeFlags.Const ? 'const' : flags & t.NodeFlags.Let ? 'let' : 'var';
  const statement =
    contribution.kind === 'initializer'
      ? `${keyword} ${name} = ${bound.sql};`
      : `${name} ${contribution.kind === 'append' ? '+=' : '='} ${bound.sql};`;
  if (contribution.isAppendedTo) {
    const push = bound.values.length === 0 ? [] : [`${params}.push(${bound.values.join(', ')});`];
    return [...push, statement, `// then ${callee}(${name}, ${params})`].join('\n');
  }
  const list = bound.values.length === 0 ? '' : `, [${bound.values.join(', ')}]`;
  return [statement, `// then ${callee}(${name}${list})`].join('\n');
}

type Piece = { text: string } | { code: string };

/** SQL text after which a spliced value is a table or column name, not a value. */
const IDENTIFIER_CONTEXT = /(?:\b(?:from|join|into|update|table|truncate|order\s+by|group\s+by)\s+(?:only\s+)?|\.|")$/i;

/**
 * Replaces each unsafe value by a placeholder and returns the new SQL text as JS source plus the
 * values to bind. A value spliced inside a quoted SQL literal (`'%${q}%'`) takes the literal's place,
 * quotes dropped, with the rest of the literal moved into the value (`` `%${q}%` ``). Names cannot be
 * parameters, and utility statements (SET, NOTIFY, DDL) take none: those are quoted with
 * `pg.escapeIdentifier()` / `pg.escapeLiteral()` instead.
 */
function parameterize(parts: readonly SqlPart[], numbering: Numbering, isUtility: boolean): { sql: string; values: string[] } {
  const pending = [...parts];
  const pieces: (Piece | { param: number })[] = [];
  const values: string[] = [];
  let quotes = 0;
  for (let index = 0; index < pending.length; index += 1) {
    const part = pending[index]!;
    if ('text' in part) {
      pieces.push({ text: part.text });
      quotes += part.text.split("'").length - 1;
      continue;
    }
    if (part.isSafe) {
      pieces.push({ code: part.node.getText() });
      continue;
    }
    let value = part.node.getText();
    const last = pieces.at(-1);
    const before = last !== undefined && 'text' in last ? last.text : '';
    const next = pending[index + 1];
    const after = next !== undefined && 'text' in next ? next.text : '';
    // In a utility statement a bare value is a name (NOTIFY channel, CREATE ROLE x), except SET's value.
    const isBareName = isUtility && quotes % 2 === 0 && !/\bset\b[^;]*(?:=|\bto)\s*$/i.test(before);
    if (IDENTIFIER_CONTEXT.test(before) || isBareName) {
      if (before.endsWith('"') && after.startsWith('"')) {
        // "${name}": escapeIdentifier adds the quotes
        pieces[pieces.length - 1] = { text: before.slice(0, -1) };
        pending[index + 1] = { text: after.slice(1) };
      }
      pieces.push({ code: `pg.escapeIdentifier(${value})` });
      continue;
    }
    const open = before.lastIndexOf("'");
    const close = after.indexOf("'");
    if (quotes % 2 === 1 && open >= 0 && close >= 0) {
      const prefix = before.slice(open + 1);
      const suffix = after.slice(0, close);
      pieces[pieces.length - 1] = { text: before.slice(0, open) };
      pending[index + 1] = { text: after.slice(close + 1) };
      quotes -= 1; // the opening quote went with the value, and the closing one is no longer ahead
      if (prefix !== '' || suffix !== '') value = `\`${escapeTemplate(prefix)}\${${value}}${escapeTemplate(suffix)}\``;
    }
    if (isUtility) {
      pieces.push({ code: `pg.escapeLiteral(${value})` });
    } else {
      values.push(value);
      pieces.push({ param: values.length });
    }
  }
  const numbered = pieces.flatMap((piece): Piece[] => {
    if (!('param' in piece)) return [piece];
    if ('first' in numbering) return [{ text: `$${numbering.first + piece.param - 1}` }];
    const behind = values.length - piece.param;
    return [{ text: '$' }, { code: behind === 0 ? `${numbering.params}.length` : `${numbering.params}.length - ${behind}` }];
  });
  return { sql: render(numbered), values };
}

function isIdentifierAt(parts: readonly SqlPart[], index: number): boolean {
  const before = parts[index - 1];
  return before !== undefined && 'text' in before && IDENTIFIER_CONTEXT.test(before.text);
}

/** JS source for SQL text: a quoted string when it can be one, else a template literal. */
function render(pieces: readonly Piece[]): string {
  const text = pieces.map((piece) => ('text' in piece ? piece.text : '')).join('');
  if (pieces.every((piece) => 'text' in piece) && !text.includes('\n')) {
    if (!text.includes("'")) return `'${text.replace(/\\/g, '\\\\')}'`;
    if (!text.includes('"')) return `"${text.replace(/\\/g, '\\\\')}"`;
  }
  return `\`${pieces.map((piece) => ('text' in piece ? escapeTemplate(piece.text) : `\${${piece.code}}`)).join('')}\``;
}

function escapeTemplate(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/`/g, '\\`').replace(/\$\{/g, '\\${');
}
