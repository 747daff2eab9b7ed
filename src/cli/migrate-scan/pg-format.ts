import type ts from 'typescript';
import type { SourceAnalysis } from './analysis.js';

/** One `%` specifier of a pg-format string and the argument it takes. */
export interface FormatSlot {
  /** `I`: quoted as an identifier; `L`: quoted as a literal; `s`: spliced as is. */
  readonly specifier: 'I' | 'L' | 's';
  readonly argument: ts.Expression;
  /** Offset of the specifier's letter in the format string's source text (quotes included). */
  readonly offset: number;
}

const SPECIFIER = /%(?:(\d+)\$)?([ILs%])/g;

/**
 * The slots of a pg-format call, `format('SELECT %I FROM t WHERE a = %L', column, value)`, or undefined
 * for other calls. A call counts when its function comes from `pg-format` (import or require), or is
 * named `format` and its string uses `%I` or `%L` (pg-format's own specifiers).
 */
export function formatSlots(analysis: SourceAnalysis, call: ts.CallExpression): FormatSlot[] | undefined {
  const t = analysis.ts;
  const [first, ...rest] = call.arguments;
  const pattern = first === undefined ? undefined : analysis.unwrap(first);
  if (pattern === undefined || !t.isStringLiteralLike(pattern)) return undefined;
  const callee = analysis.unwrap(call.expression);
  const isFromPgFormat = t.isIdentifier(callee) && comesFromPgFormat(analysis, callee);
  const isNamedFormat = (t.isIdentifier(callee) ? callee.text : analysis.methodCall(call)?.name) === 'format';
  if (!isFromPgFormat && !(isNamedFormat && /%[IL]/.test(pattern.text))) return undefined;
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
