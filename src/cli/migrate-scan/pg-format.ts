import type ts from 'typescript';
import { oneLine, type SourceAnalysis } from './analysis.js';
import type { RuleFinding } from './rules.js';
import { classify, hasPositionalSpecifier, parameterize } from './sql-placeholders.js';
import { leadingText, statementKeyword, type SqlPart } from './sql-text.js';

/** One `%` specifier of a pg-format string and the argument it takes. */
export interface FormatSlot {
  /** `I`: quoted as an identifier; `L`: quoted as a literal; `s`: spliced as is. */
  readonly specifier: 'I' | 'L' | 's';
  readonly argument: ts.Expression;
  /** Offset of the specifier's letter in the format string's source text (quotes included). */
  readonly offset: number;
}

const SPECIFIER = /%(?:(\d+)\$)?([ILs%])/g;

/** What {@link formatFinding} asks of the SqlEvaluator (named by shape: sql-evaluator.ts imports this file). */
interface SpliceEvaluator {
  isBuilt(node: ts.Node): boolean;
  parts(node: ts.Node): SqlPart[];
  evaluate(node: ts.Node): { readonly kind: string };
}

/**
 * The slots of a pg-format call, `format('SELECT %I FROM t WHERE a = %L', column, value)`, or undefined
 * for other calls. A call counts when its function comes from `pg-format` (import or require), or is
 * named `format` and its string uses `%I` or `%L` (pg-format's own specifiers). The string may be a
 * literal or built (a template with substitutions, a `+` chain: see {@link formatPattern}).
 */
export function formatSlots(analysis: SourceAnalysis, call: ts.CallExpression): FormatSlot[] | undefined {
  const pattern = formatPattern(analysis, call);
  if (pattern === undefined) return undefined;
  const rest = call.arguments.slice(1);
  const source = pattern.getText(analysis.sourceFile);
  const slots: FormatSlot[] = [];
  let next = 0;
  for (const match of source.matchAll(SPECIFIER)) {
    if (match[2] === '%') continue;
    const index = match[1] === undefined ? next++ : Number(match[1]) - 1;
    const argument = rest[index];
    if (argument === undefined) continue;
    slots.push({ specifier: match[2] as 'I' | 'L' | 's', argument, offset: match.index + match[0].length - 1 });
  }
  return slots;
}

/**
 * The format string of a pg-format call: a literal, or a template or `+` chain (whose substitutions
 * splice into the SQL as any other, before pg-format sees it); undefined when the call is not one.
 */
export function formatPattern(analysis: SourceAnalysis, call: ts.CallExpression): ts.Expression | undefined {
  const t = analysis.ts;
  const first = call.arguments[0];
  const pattern = first === undefined ? undefined : (analysis.unwrap(first) as ts.Expression);
  if (pattern === undefined) return undefined;
  const isBuilt =
    t.isTemplateExpression(pattern) || (t.isBinaryExpression(pattern) && pattern.operatorToken.kind === t.SyntaxKind.PlusToken);
  if (!t.isStringLiteralLike(pattern) && !isBuilt) return undefined;
  const callee = analysis.unwrap(call.expression);
  const isFromPgFormat = t.isIdentifier(callee) && comesFromPgFormat(analysis, callee);
  const isNamedFormat = (t.isIdentifier(callee) ? callee.text : analysis.methodCall(call)?.name) === 'format';
  const text = t.isStringLiteralLike(pattern) ? pattern.text : pattern.getText(analysis.sourceFile);
  return isFromPgFormat || (isNamedFormat && /%[IL]/.test(text)) ? pattern : undefined;
}

function comesFromPgFormat(analysis: SourceAnalysis, callee: ts.Identifier): boolean {
  const t = analysis.ts;
  const declaration = analysis.declarationOf(callee);
  if (declaration === undefined) return false;
  if (t.isImportClause(declaration) || t.isImportSpecifier(declaration) || t.isNamespaceImport(declaration)) {
    let current: ts.Node = declaration;
    while (!t.isImportDeclaration(current)) current = current.parent;
    return analysis.literalText(current.moduleSpecifier) === 'pg-format';
  }
  if (t.isVariableDeclaration(declaration) && declaration.initializer !== undefined) {
    const value = analysis.unwrap(declaration.initializer);
    const loader = t.isPropertyAccessExpression(value) ? analysis.unwrap(value.expression) : value;
    return t.isCallExpression(loader) && analysis.literalText(loader.arguments[0]) === 'pg-format';
  }
  return false;
}

/**
 * A `sql-interpolation` finding for a pg-format call that splices a caller's value: an unsafe argument
 * of `%s` (fixed with `%L` for a value, `%I` for a name), or a substitution in a built format string,
 * which pg-format never sees (moved into format()'s arguments behind a `%L` / `%I`). Undefined when the
 * call is not pg-format's or splices nothing unsafe.
 *
 * @param isArgument whether the call is the query's own text argument (else it builds a variable).
 */
export function formatFinding(
  analysis: SourceAnalysis,
  evaluator: SpliceEvaluator,
  call: ts.CallExpression,
  node: ts.Expression,
  isArgument: boolean,
): RuleFinding | undefined {
  const t = analysis.ts;
  const target = analysis.unwrap(node);
  const slots = t.isCallExpression(target) ? formatSlots(analysis, target) : undefined;
  if (slots === undefined || !t.isCallExpression(target)) return undefined;
  const unsafe = slots.filter((slot) => slot.specifier === 's' && evaluator.evaluate(slot.argument).kind === 'unsafe');
  const pattern = target.arguments[0]!;
  const built = evaluator.isBuilt(pattern) ? builtPattern(analysis, evaluator, target, unsafe) : undefined;
  if (built === undefined && (unsafe.length === 0 || evaluator.isBuilt(pattern))) return undefined;
  const { source, rest, notes } = built ?? rewriteSpecifiers(analysis, target, unsafe);
  const rewritten = `${analysis.text(target.expression)}(${[source, ...rest].join(', ')})`;
  const sSlots = unsafe.map((slot) => oneLine(slot.argument.getText(), 40)).join(', ');
  const message =
    built === undefined
      ? `pg-format %s splices ${sSlots} as is (SQL injection); `
      : `pg-format string interpolates ${built.listed}${unsafe.length === 0 ? '' : `, and %s splices ${sSlots}`}: ` +
        'format() quotes only its arguments, so a value with a quote in it rewrites the statement (SQL injection); ';
  return {
    rule: 'sql-interpolation',
    node: target,
    message: `${message}use %L for a value (quoted as a literal) and %I for a name (quoted as an identifier)`,
    before: analysis.snippet(isArgument ? call : analysis.statementOf(target)),
    after: [isArgument ? analysis.text(call).replace(analysis.text(target), rewritten) : rewritten, ...notes].join('\n'),
  };
}

/** A literal format string with each unsafe `%s` turned into `%L` or `%I` by the SQL around it. */
function rewriteSpecifiers(
  analysis: SourceAnalysis,
  call: ts.CallExpression,
  unsafe: readonly FormatSlot[],
): { source: string; rest: string[]; notes: string[] } {
  let source = call.arguments[0]!.getText(analysis.sourceFile);
  const notes: string[] = [];
  for (const slot of [...unsafe].sort((a, b) => b.offset - a.offset)) {
    const before = source.slice(0, slot.offset - 1);
    const text = slot.argument.getText();
    const kind = classify(before, source.slice(slot.offset + 1), text.split('.').at(-1) ?? '', false);
    if (kind === 'fragment' || kind === 'keyword') {
      notes.unshift(
        `// ${text}: ${kind === 'keyword' ? 'a keyword; pick it from a fixed list' : 'SQL text built elsewhere; build it with format() too (%L, %I)'}`,
      );
      continue;
    }
    source = `${before}%${kind === 'identifier' ? 'I' : 'L'}${source.slice(slot.offset + 1)}`;
  }
  return { source, rest: call.arguments.slice(1).map((argument) => analysis.text(argument)), notes };
}

/**
 * A built format string (template or `+` chain) rewritten: each unsafe substitution becomes `%L` or
 * `%I` with its value placed among format()'s arguments in order. Undefined when nothing spliced is
 * unsafe or the text is not SQL. A string that numbers its arguments (`%1$L`) is left as written, with
 * a note, and so are unsafe `%s` arguments (a note each).
 */
function builtPattern(
  analysis: SourceAnalysis,
  evaluator: SpliceEvaluator,
  call: ts.CallExpression,
  unsafeSlots: readonly FormatSlot[],
): { source: string; rest: string[]; notes: string[]; listed: string } | undefined {
  const parts = evaluator.parts(call.arguments[0]!);
  if (!parts.some((part) => 'node' in part && !part.isSafe) || statementKeyword(leadingText(parts)) === undefined)
    return undefined;
  const existing = call.arguments.slice(1).map((argument) => analysis.text(argument));
  const text = parts.map((part) => ('text' in part ? part.text : '')).join('');
  const bound = parameterize(parts, { format: existing }, false);
  const listed = bound.kinds.map((entry) => `${oneLine(entry.text, 40)} (${entry.kind})`).join(', ');
  const sNotes = unsafeSlots.map(
    (slot) => `// ${oneLine(slot.argument.getText(), 40)}: spliced as is by %s; use %L for a value, %I for a name`,
  );
  if (hasPositionalSpecifier(text)) {
    const note = '// numbered %n$ arguments: move each substitution into format() behind %L or %I by hand';
    return { source: analysis.text(call.arguments[0]!), rest: existing, notes: [note, ...sNotes], listed };
  }
  return { source: bound.sql, rest: bound.values, notes: [...bound.notes, ...sNotes], listed };
}
