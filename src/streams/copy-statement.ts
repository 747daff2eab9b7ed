/**
 * The check of the statement text given to `copyFrom` / `copyTo`, before anything is sent. The text is
 * read as the server lexes it: `--` and nested `/* *\/` comments are skipped, and string literals
 * (`'...'`, `E'...'` with backslash escapes), quoted identifiers (`"..."`) and dollar-quoted strings
 * (`$tag$...$tag$`) are single tokens, so a keyword inside any of them counts for nothing. A text with
 * a second statement, or a COPY of a server-side file or program, would leave pg-copy-streams with
 * answers it cannot read (an uncaught TypeError in pg, which ends the process) or have the server
 * read or write a file of its own: both are refused here with a TypeError naming the problem.
 */

/** One token of SQL text outside comments. */
interface Token {
  /** `word` (keyword or unquoted identifier), `name` (quoted identifier), `string` (any literal), or punctuation. */
  readonly kind: 'word' | 'name' | 'string' | 'other';
  /** The word in upper case; the punctuation character; empty for names and strings. */
  readonly text: string;
}

/** The statement direction each call needs, in the words of its messages. */
const WANTED = {
  copyFrom: { keyword: 'FROM', endpoint: 'STDIN', example: 'COPY items (id, name) FROM STDIN' },
  copyTo: { keyword: 'TO', endpoint: 'STDOUT', example: 'COPY (SELECT ...) TO STDOUT' },
} as const;

/**
 * @throws {TypeError} unless `sql` is exactly one `COPY ... FROM STDIN` (`call` `copyFrom`) or
 * `COPY ... TO STDOUT` (`copyTo`; a table or a parenthesized query) statement, comments and one
 * trailing semicolon allowed. The message names what is wrong and never quotes the text.
 */
export function checkCopyStatement(call: 'copyFrom' | 'copyTo', sql: unknown): void {
  const wanted = WANTED[call];
  const needs = `${call} needs a COPY ... ${wanted.keyword} ${wanted.endpoint} statement, such as ${wanted.example}`;
  if (typeof sql !== 'string') throw new TypeError(needs);
  let statements: Token[][];
  try {
    statements = splitStatements(sql);
  } catch (error) {
    throw new TypeError(`${needs}: the text has ${(error as Error).message}`);
  }
  if (statements.length === 0) throw new TypeError(`${needs}: the text has no statement`);
  if (statements.length > 1) throw new TypeError(`${needs}: the text has ${statements.length} statements; send one COPY alone`);
  const problem = copyProblem(statements[0]!, wanted.keyword, wanted.endpoint);
  if (problem !== undefined) throw new TypeError(`${needs}: ${problem}`);
}

/**
 * Whether `text` is a COPY statement: its first word after blanks and comments (read as the server
 * reads them: `--` lines, nested block comments) is COPY. COPY is always a statement of its own, so
 * that word is enough, and only the text up to it is read.
 */
export function isCopyStatement(text: string): boolean {
  let at = 0;
  for (;;) {
    while (at < text.length && /\s/.test(text[at]!)) at++;
    if (text.startsWith('--', at)) {
      const end = text.indexOf('\n', at);
      at = end === -1 ? text.length : end + 1;
    } else if (text.startsWith('/*', at)) {
      try {
        at = afterBlockComment(text, at);
      } catch {
        return false; // an unterminated comment: the server refuses the text anyway
      }
    } else break;
  }
  return /^copy(?![\w$\u0080-\uffff])/i.test(text.slice(at, at + 5));
}

/** Why `tokens` is not `COPY <target> <keyword> <endpoint> ...`, or undefined when it is. */
function copyProblem(tokens: readonly Token[], keyword: 'FROM' | 'TO', endpoint: 'STDIN' | 'STDOUT'): string | undefined {
  const first = tokens[0]!;
  if (!isWord(first, 'COPY')) return `the statement is ${first.kind === 'word' ? `a ${first.text}` : 'not a COPY'}`;
  let at = 1;
  if (isWord(tokens[at], 'BINARY')) at++;
  if (tokens[at]?.text === '(') {
    // COPY (query) TO: the query is anything up to its closing parenthesis.
    at = afterParentheses(tokens, at);
  } else {
    // A table name, qualified or not, then an optional column list.
    if (!isName(tokens[at])) return 'no table name or (query) follows COPY';
    at++;
    while (tokens[at]?.text === '.' && isName(tokens[at + 1])) at += 2;
    if (tokens[at]?.text === '(') at = afterParentheses(tokens, at);
  }
  const direction = tokens[at];
  if (!isWord(direction, 'FROM') && !isWord(direction, 'TO')) return 'no FROM or TO where COPY gives its direction';
  const source = tokens[at + 1];
  if (direction!.text !== keyword) return `the statement is a COPY ... ${direction!.text}, the other direction`;
  if (isWord(source, endpoint)) return undefined;
  if (isWord(source, 'PROGRAM')) return `COPY ... ${keyword} PROGRAM runs a program on the server, which is refused`;
  if (source?.kind === 'string') return `COPY ... ${keyword} 'file' reads or writes a file on the server, which is refused`;
  return `${endpoint} does not follow ${keyword}`;
}

/** The index after the parenthesis that closes the one at `open`. */
function afterParentheses(tokens: readonly Token[], open: number): number {
  let depth = 0;
  for (let at = open; at < tokens.length; at++) {
    if (tokens[at]!.text === '(') depth++;
    else if (tokens[at]!.text === ')' && --depth === 0) return at + 1;
  }
  return tokens.length;
}

function isWord(token: Token | undefined, word: string): boolean {
  return token?.kind === 'word' && token.text === word;
}

function isName(token: Token | undefined): boolean {
  return token?.kind === 'name' || (token?.kind === 'word' && /^[A-Z_\u0080-\uffff]/.test(token.text));
}

/**
 * The tokens of each non-empty statement of `sql`, split at semicolons outside literals and comments.
 * @throws {Error} naming an unterminated comment, literal or quoted identifier.
 */
function splitStatements(sql: string): Token[][] {
  const statements: Token[][] = [];
  let current: Token[] = [];
  let at = 0;
  while (at < sql.length) {
    const char = sql[at]!;
    const next = sql[at + 1];
    if (/\s/.test(char)) at++;
    else if (char === '-' && next === '-') {
      const end = sql.indexOf('\n', at);
      at = end === -1 ? sql.length : end + 1;
    } else if (char === '/' && next === '*') at = afterBlockComment(sql, at);
    else if (char === ';') {
      if (current.length > 0) statements.push(current);
      current = [];
      at++;
    } else if (char === "'" || ((char === 'E' || char === 'e') && next === "'")) {
      const hasEscapes = char !== "'";
      at = afterQuoted(sql, hasEscapes ? at + 1 : at, "'", hasEscapes, 'an unterminated string literal');
      current.push({ kind: 'string', text: '' });
    } else if ((char === 'U' || char === 'u') && next === '&' && (sql[at + 2] === '"' || sql[at + 2] === "'")) {
      // A Unicode-escaped identifier or string (U&"..." / U&'...'), with its optional UESCAPE 'c'.
      const isName = sql[at + 2] === '"';
      at = afterQuoted(sql, at + 2, sql[at + 2]!, false, `an unterminated quoted ${isName ? 'identifier' : 'string literal'}`);
      at += /^\s*UESCAPE\s*'[^']'/i.exec(sql.slice(at))?.[0].length ?? 0;
      current.push({ kind: isName ? 'name' : 'string', text: '' });
    } else if (char === '"') {
      at = afterQuoted(sql, at, '"', false, 'an unterminated quoted identifier');
      current.push({ kind: 'name', text: '' });
    } else if (char === '$' && /^\$(?:[A-Za-z_\u0080-\uffff][\w\u0080-\uffff]*)?\$/.test(sql.slice(at))) {
      const tag = /^\$(?:[A-Za-z_\u0080-\uffff][\w\u0080-\uffff]*)?\$/.exec(sql.slice(at))![0];
      const end = sql.indexOf(tag, at + tag.length);
      if (end === -1) throw new Error('an unterminated dollar-quoted string');
      at = end + tag.length;
      current.push({ kind: 'string', text: '' });
    } else if (/[A-Za-z_\u0080-\uffff]/.test(char)) {
      const word = /^[\w$\u0080-\uffff]+/.exec(sql.slice(at))![0];
      at += word.length;
      current.push({ kind: 'word', text: word.toUpperCase() });
    } else if (/\d/.test(char)) {
      at += /^[\w.]+/.exec(sql.slice(at))![0].length;
      current.push({ kind: 'other', text: '0' });
    } else {
      current.push({ kind: 'other', text: char });
      at++;
    }
  }
  if (current.length > 0) statements.push(current);
  return statements;
}

/** The index after the block comment starting at `start`; block comments nest, as the server reads them. */
function afterBlockComment(sql: string, start: number): number {
  let depth = 0;
  let at = start;
  while (at < sql.length) {
    if (sql.startsWith('/*', at)) {
      depth++;
      at += 2;
    } else if (sql.startsWith('*/', at)) {
      at += 2;
      if (--depth === 0) return at;
    } else at++;
  }
  throw new Error('an unterminated /* comment');
}

/** The index after the literal or identifier quoted by `quote` at `start` (a doubled quote is one character). */
function afterQuoted(sql: string, start: number, quote: string, hasEscapes: boolean, unterminated: string): number {
  let at = start + 1;
  while (at < sql.length) {
    const char = sql[at]!;
    if (hasEscapes && char === '\\') at += 2;
    else if (char === quote) {
      if (sql[at + 1] !== quote) return at + 1;
      at += 2;
    } else at++;
  }
  throw new Error(unterminated);
}
