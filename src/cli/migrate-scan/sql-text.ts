import type ts from 'typescript';

/**
 * What an expression can put into SQL text: a constant known here (`const TABLE = 'users'`), a value
 * that cannot carry a quote (a number, `$${params.length}`, `escapeIdentifier(name)`, `x ? 'ASC' : 'DESC'`),
 * or anything else — a caller's value, which must be bound as a parameter.
 */
export type SqlValue = { kind: 'constant'; text: string } | { kind: 'safe' } | { kind: 'unsafe' };

/** One piece of SQL text as written: literal text, or an expression spliced into it. */
export type SqlPart = { text: string } | { node: ts.Expression; isSafe: boolean };

const SQL_START =
  /^(?:select|insert|update|delete|with|merge|values|create|alter|drop|truncate|grant|revoke|copy|call|explain|set|show|listen|notify|lock|declare|vacuum|analyze|refresh|comment)\b/i;
const TRANSACTION_CONTROL = /^(?:begin|start\s+transaction|commit|end|rollback|abort|savepoint|release)\b/i;
/** Statements that take bind parameters; the others (SET, NOTIFY, DDL, ...) are utility statements. */
const PLANNABLE = new Set(['select', 'insert', 'update', 'delete', 'with', 'merge', 'values', 'call']);

/**
 * The statement keyword SQL text starts with (after whitespace, comments and parentheses), lower
 * case, or undefined when the text does not look like SQL.
 */
export function statementKeyword(text: string): string | undefined {
  const start = text.replace(/^(?:\s+|\(|--[^\n]*\n?|\/\*[\s\S]*?\*\/)*/, '');
  return SQL_START.exec(start)?.[0].toLowerCase();
}

/** Whether a statement keyword starts a utility statement, which PostgreSQL runs without parameters. */
export function isUtilityStatement(keyword: string): boolean {
  return !PLANNABLE.has(keyword);
}

/** Whether constant SQL text is a transaction-control statement (BEGIN, COMMIT, ROLLBACK, ...). */
export function isTransactionControl(text: string): boolean {
  return TRANSACTION_CONTROL.test(text.trim());
}

/** Literal text before the first spliced expression. */
export function leadingText(parts: readonly SqlPart[]): string {
  const [first] = parts;
  return first !== undefined && 'text' in first ? first.text : '';
}

export function combine(parts: readonly SqlPart[]): SqlValue {
  if (parts.every((part) => 'text' in part)) {
    return { kind: 'constant', text: parts.map((part) => ('text' in part ? part.text : '')).join('') };
  }
  return parts.every((part) => 'text' in part || part.isSafe) ? { kind: 'safe' } : { kind: 'unsafe' };
}

export function mergeText(parts: readonly SqlPart[]): SqlPart[] {
  const merged: SqlPart[] = [];
  for (const part of parts) {
    const last = merged.at(-1);
    if ('text' in part && last !== undefined && 'text' in last) merged[merged.length - 1] = { text: last.text + part.text };
    else if (!('text' in part) || part.text !== '') merged.push(part);
  }
  return merged;
}
