import type ts from 'typescript';
import type { SqlPart } from './sql-text.js';

/** What a spliced expression stands for in the SQL around it, which decides how it is made safe. */
export type SpliceKind = 'value' | 'identifier' | 'keyword' | 'fragment';

/**
 * How placeholders are written: pg's numbered `$n` from a first number or a params array, Knex's `?`,
 * or pg-format's `%L` / `%I` in a format string whose own arguments (`args`) are already in order.
 */
export type Numbering = { first: number } | { params: string } | { knex: true } | { format: readonly string[] };

/** The rewritten SQL text (as JS source), the values to bind, and what each spliced expression was. */
export interface Parameterized {
  readonly sql: string;
  readonly values: string[];
  readonly kinds: { readonly text: string; readonly kind: SpliceKind }[];
  /** One line per fragment: what to rewrite by hand. */
  readonly notes: string[];
}

type Piece = { text: string } | { code: string } | { param: number; isName?: boolean };

/** Right after these a value goes: comparison and arithmetic operators, LIKE, IN (, LIMIT, VALUES (. */
const VALUE_BEFORE =
  /(?:[=<>+*/%-]|\|\||\b(?:like|ilike|similar\s+to|limit|offset|between|values\s*\(|in\s*\(|any\s*\(|distinct\s+from|interval)|\(|,)\s*$/i;
/** Right before these an identifier goes: `${col} = $1`, `${col} IN (...)`, `${schema}.table`. */
const IDENTIFIER_AFTER = /^(?:\s*(?:[=<>!]|\bin\b|\blike\b|\bilike\b|\bis\b|\bbetween\b)|\s+(?:asc|desc)\b|\.)/i;
/** Right after these an identifier goes: table and column positions. */
const IDENTIFIER_BEFORE =
  /(?:\b(?:from|join|into|update|table|truncate|order\s+by|group\s+by|returning|on\s+conflict\s*\(|distinct\s+on\s*\(|only|exists)\s+|\.|")$/i;
const IN_SELECT_LIST = /\bselect\s+(?:distinct\s+)?(?:(?!\bfrom\b)[^;])*$/i;
const IN_INSERT_COLUMNS = /\binsert\s+into\s+\S+\s*\([^)]*$/i;
/** `UPDATE t SET (a, b) = (...)`: the column list of a multi-column SET. */
const IN_SET_COLUMNS = /\bupdate\s+\S+\s+set\s*\([^)]*$/i;
const IN_ORDER_BY = /\border\s+by\s+(?:(?!\b(?:limit|offset)\b)[^;])*$/i;
const KEYWORD_BEFORE = /\border\s+by\s+[^,;]*?\S\s+$/i;
const KEYWORD_AFTER = /^\s*nulls\b/i;
const DIRECTION_NAME = /(?:^|[^a-z])(?:dir|direction|order|sort_?order|sort_?dir(?:ection)?|ordering|asc|desc)$/i;
export const FRAGMENT_NAME = /(?:where|clause|condition|filter|sql|query|fragment|sets|updates|joins?|predicate)s?$/i;

/**
 * What a spliced expression is, from the SQL text around it: a value (bound as a parameter), an
 * identifier (a table or column name: quoted with escapeIdentifier or checked against a list), a
 * keyword (ASC/DESC: picked from a list), or a fragment (SQL text built elsewhere: rewritten by hand).
 */
export function classify(before: string, after: string, name: string, isInQuotes: boolean): SpliceKind {
  if (isInQuotes) return 'value';
  if (KEYWORD_AFTER.test(after) || (KEYWORD_BEFORE.test(before) && IN_ORDER_BY.test(before))) return 'keyword';
  if (DIRECTION_NAME.test(name) && IN_ORDER_BY.test(before)) return 'keyword';
  if (
    IDENTIFIER_AFTER.test(after) ||
    IDENTIFIER_BEFORE.test(before) ||
    IN_INSERT_COLUMNS.test(before) ||
    IN_SET_COLUMNS.test(before)
  ) {
    return 'identifier';
  }
  if (IN_ORDER_BY.test(before) || (IN_SELECT_LIST.test(before) && !VALUE_BEFORE.test(before.replace(/[,(]\s*$/, '')))) {
    return FRAGMENT_NAME.test(name) ? 'fragment' : 'identifier';
  }
  if (VALUE_BEFORE.test(before) && !FRAGMENT_NAME.test(name)) return 'value';
  return 'fragment';
}

/**
 * Rewrites SQL text so that nothing unsafe is spliced: values become placeholders (a value spliced
 * inside a quoted SQL literal, `'%${q}%'`, takes the literal's place with the rest moved into the value),
 * identifiers are quoted (`pg.escapeIdentifier(x)`, or Knex's `??` binding), keywords are picked from a
 * list, and fragments stay as written with a note. In a utility statement (SET, NOTIFY, DDL), which
 * takes no parameters, values are quoted with `pg.escapeLiteral()` instead.
 */
export function parameterize(parts: readonly SqlPart[], numbering: Numbering, isUtility: boolean): Parameterized {
  const pending = [...parts];
  const pieces: Piece[] = [];
  const values: string[] = [];
  const kinds: { text: string; kind: SpliceKind }[] = [];
  const notes: string[] = [];
  const isKnex = 'knex' in numbering;
  const isFormat = 'format' in numbering;
  let quotes = 0;
  let sqlSoFar = ''; // the SQL text before the current splice, other splices standing in as `x`
  for (let index = 0; index < pending.length; index += 1) {
    const part = pending[index]!;
    if ('text' in part) {
      pieces.push({ text: part.text });
      quotes += part.text.split("'").length - 1;
      sqlSoFar += part.text;
      continue;
    }
    if (part.isSafe) {
      pieces.push({ code: part.node.getText() });
      sqlSoFar += 'x';
      continue;
    }
    let value = part.node.getText();
    const last = pieces.at(-1);
    const before = last !== undefined && 'text' in last ? last.text : '';
    const next = pending[index + 1];
    const after = next !== undefined && 'text' in next ? next.text : '';
    const isInQuotes = quotes % 2 === 1;
    const name = nameOf(part.node);
    let kind = classify(sqlSoFar, after, name, isInQuotes);
    sqlSoFar += 'x';
    // In a utility statement a bare value is a name (NOTIFY channel, SET ROLE x), except SET's value.
    const isSetValue = /\bset\b[^;]*(?:=|\bto)\s*$/i.test(before);
    if (isUtility && !isInQuotes && kind !== 'identifier' && !isSetValue && !FRAGMENT_NAME.test(name)) kind = 'identifier';
    kinds.push({ text: value, kind });
    if (kind === 'fragment') {
      pieces.push({ code: value });
      notes.push(
        isFormat
          ? `// ${value}: SQL text built elsewhere; build it with format() too (%L, %I)`
          : `// ${value}: SQL text built elsewhere; build it with ${isKnex ? '?' : 'numbered $n'} placeholders and bind its values with these`,
      );
      continue;
    }
    if (kind === 'keyword') {
      pieces.push({
        code:
          DIRECTION_NAME.test(name) || IN_ORDER_BY.test(sqlSoFar) ? `${value} === 'DESC' ? 'DESC' : 'ASC'` : keywordList(value),
      });
      continue;
    }
    if (kind === 'identifier') {
      if (before.endsWith('"') && after.startsWith('"')) {
        pieces[pieces.length - 1] = { text: before.slice(0, -1) }; // "${name}": the quoting adds the quotes
        pending[index + 1] = { text: after.slice(1) };
      }
      if (isKnex) {
        values.push(value);
        pieces.push({ text: '??' });
      } else if (isFormat) {
        // %I quotes a name, or each name of an array, joined with commas: `cols.join(', ')` becomes `cols`.
        values.push(/^([\s\S]+)\.join\(\s*(?:'\s*,\s*'|"\s*,\s*")?\s*\)$/.exec(value)?.[1] ?? value);
        pieces.push({ param: values.length, isName: true });
      } else pieces.push({ code: identifierCode(value) });
      continue;
    }
    const open = before.lastIndexOf("'");
    const close = after.indexOf("'");
    if (isInQuotes && open >= 0 && close >= 0) {
      const prefix = before.slice(open + 1);
      const suffix = after.slice(0, close);
      pieces[pieces.length - 1] = { text: before.slice(0, open) };
      pending[index + 1] = { text: after.slice(close + 1) };
      quotes -= 1; // the opening quote went with the value, and the closing one is no longer ahead
      if (prefix !== '' || suffix !== '') value = `\`${escapeTemplate(prefix)}\${${value}}${escapeTemplate(suffix)}\``;
    }
    if (isUtility && !isFormat) {
      pieces.push({ code: `pg.escapeLiteral(${value})` });
    } else {
      values.push(value);
      pieces.push(isKnex ? { text: '?' } : { param: values.length });
    }
  }
  if ('format' in numbering)
    return { sql: render(formatPlaceholders(pieces)), values: formatArguments(pieces, values, numbering.format), kinds, notes };
  const numbered = pieces.flatMap((piece): ({ text: string } | { code: string })[] => {
    if (!('param' in piece)) return [piece];
    if ('first' in numbering) return [{ text: `$${numbering.first + piece.param - 1}` }];
    const behind = values.length - piece.param;
    const params = 'params' in numbering ? numbering.params : 'params';
    return [{ text: '$' }, { code: behind === 0 ? `${params}.length` : `${params}.length - ${behind}` }];
  });
  return { sql: render(numbered), values, kinds, notes };
}

const FORMAT_SPECIFIER = /%(?:(\d+)\$)?([ILs%])/g;

/** Whether a pg-format string numbers its arguments (`%1$L`), which the rewrite does not renumber. */
export function hasPositionalSpecifier(text: string): boolean {
  return [...text.matchAll(FORMAT_SPECIFIER)].some((match) => match[1] !== undefined);
}

function formatPlaceholders(pieces: readonly Piece[]): ({ text: string } | { code: string })[] {
  return pieces.map((piece) => ('param' in piece ? { text: piece.isName === true ? '%I' : '%L' } : piece));
}

/**
 * format()'s arguments in the order its string takes them: each specifier already in the text takes
 * the next of `existing`, each new `%L` / `%I` its own value; arguments no specifier takes stay last.
 */
function formatArguments(pieces: readonly Piece[], values: readonly string[], existing: readonly string[]): string[] {
  const remaining = [...existing];
  const ordered: string[] = [];
  for (const piece of pieces) {
    if ('param' in piece) ordered.push(values[piece.param - 1]!);
    else if ('text' in piece) {
      for (const match of piece.text.matchAll(FORMAT_SPECIFIER)) {
        if (match[2] !== '%' && remaining.length > 0) ordered.push(remaining.shift()!);
      }
    }
  }
  return [...ordered, ...remaining];
}

/** `pg.escapeIdentifier(x)`, or for a joined list `cols.map((name) => pg.escapeIdentifier(name)).join(', ')`. */
function identifierCode(value: string): string {
  const joined = /^([\s\S]+)\.join\(([^()]*)\)$/.exec(value);
  if (joined !== null) return `${joined[1]}.map((name) => pg.escapeIdentifier(name)).join(${joined[2] || "','"})`;
  return `pg.escapeIdentifier(${value})`;
}

function keywordList(value: string): string {
  return `['ASC', 'DESC'].includes(String(${value}).toUpperCase()) ? String(${value}).toUpperCase() : ''`;
}

const PLUMBING = new Set(['map', 'join', 'filter', 'trim', 'String', 'toString', 'toUpperCase', 'toLowerCase']);

/** The name that says what an expression holds: `dir` of `req.query.dir`, `buildWhere` of `buildWhere(filters)`. */
function nameOf(node: ts.Node): string {
  const text = node.getText();
  const callees = [...text.matchAll(/([A-Za-z_$][\w$]*)\s*\(/g)].map((match) => match[1]!).filter((name) => !PLUMBING.has(name));
  const names = (text.match(/[A-Za-z_$][\w$]*/g) ?? []).filter((name) => !PLUMBING.has(name));
  return callees[0] ?? names.at(-1) ?? '';
}

/** JS source for SQL text: a quoted string when it can be one, else a template literal. */
function render(pieces: readonly ({ text: string } | { code: string })[]): string {
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

/** The highest `$n` in SQL text, 0 when it has none. */
export function highestPlaceholder(text: string): number {
  return Math.max(0, ...[...text.matchAll(/\$(\d+)/g)].map((match) => Number(match[1])));
}
