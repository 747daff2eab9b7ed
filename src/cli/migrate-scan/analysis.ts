import type ts from 'typescript';
import { bindScopes, memberOf, resolveName } from './binder-scopes.js';
import { loadTypeScript } from './load-typescript.js';

const MAX_SNIPPET_LINES = 8;
const MAX_LINE_CHARS = 140;

/**
 * One parsed source file with the TypeScript binder's symbols, so that rules follow real bindings
 * (imports, shadowing, `this.pool`) instead of names. The program holds this file alone: no lib, no
 * module resolution, so types are unknown and only declarations inside the file are visible.
 */
export class SourceAnalysis {
  readonly ts: typeof ts;
  readonly sourceFile: ts.SourceFile;
  readonly calls: ts.CallExpression[] = [];
  readonly constructions: ts.NewExpression[] = [];
  /** Only when the binder's scopes cannot be read (see binder-scopes.ts): a one-file program's checker. */
  readonly #checker: ts.TypeChecker | undefined;
  readonly #references = new Map<ts.Symbol, ts.MemberName[]>();

  /**
   * @throws {SyntaxError} naming the first syntax error (`syntax error at line:column: message`) when
   *   the text does not parse: the rules would read a tree the parser made up to recover.
   */
  constructor(fileName: string, text: string, t: typeof ts = loadTypeScript()) {
    this.ts = t;
    // A virtual absolute name keeps the compiler host from touching the disk.
    const virtualName = `/migrate-scan/source${scriptExtension(fileName)}`;
    this.sourceFile = t.createSourceFile(virtualName, text, t.ScriptTarget.Latest, true, scriptKind(t, fileName));
    const [syntaxError] = parseDiagnostics(t, this.sourceFile, virtualName);
    if (syntaxError !== undefined) {
      const { line, character } = this.sourceFile.getLineAndCharacterOfPosition(syntaxError.start ?? 0);
      const message = t.flattenDiagnosticMessageText(syntaxError.messageText, ' ');
      throw new SyntaxError(`syntax error at ${line + 1}:${character + 1}: ${message}`);
    }
    this.#checker = bindScopes(t, this.sourceFile) ? undefined : checkerFor(t, this.sourceFile, virtualName);
    // An explicit stack rather than recursion: generated code nests deeper than the call stack allows.
    const pending: ts.Node[] = [this.sourceFile];
    for (let node = pending.pop(); node !== undefined; node = pending.pop()) {
      if (t.isCallExpression(node)) this.calls.push(node);
      else if (t.isNewExpression(node)) this.constructions.push(node);
      else if ((t.isIdentifier(node) || t.isPrivateIdentifier(node)) && this.#isIndexed(node)) {
        const symbol = this.symbolOf(node);
        const known = symbol === undefined ? undefined : this.#references.get(symbol);
        if (known !== undefined) known.push(node);
        else if (symbol !== undefined) this.#references.set(symbol, [node]);
      }
      const children: ts.Node[] = [];
      t.forEachChild(node, (child) => {
        children.push(child);
      });
      for (let index = children.length - 1; index >= 0; index -= 1) pending.push(children[index]!);
    }
  }

  /**
   * Whether an identifier goes into the reference index: all but the names after a dot, which only
   * the checker's type pass can bind (slow, and it allocates: most of a file's analysis time); of
   * those, `this.pool` and `this.#pool` are kept, which the rules follow as bindings.
   */
  #isIndexed(node: ts.Identifier | ts.PrivateIdentifier): boolean {
    const t = this.ts;
    const parent = node.parent;
    if (!t.isPropertyAccessExpression(parent) || parent.name !== node) return true;
    return parent.expression.kind === t.SyntaxKind.ThisKeyword;
  }

  /** The symbol an identifier or `a.b` (by its name) binds to; shorthand `{ pool }` means the variable. */
  symbolOf(node: ts.Node): ts.Symbol | undefined {
    const t = this.ts;
    const target = this.unwrap(node);
    if (t.isPropertyAccessExpression(target)) return this.symbolOf(target.name);
    if (!t.isIdentifier(target) && !t.isPrivateIdentifier(target)) return undefined;
    const access = target.parent;
    if (t.isPropertyAccessExpression(access) && access.name === target) return this.#memberOfThis(access);
    if (this.#checker === undefined) return t.isIdentifier(target) ? resolveName(t, target) : undefined;
    if (t.isShorthandPropertyAssignment(target.parent) && target.parent.name === target) {
      return this.#checker.getShorthandAssignmentValueSymbol(target.parent);
    }
    return this.#checker.getSymbolAtLocation(target);
  }

  /**
   * The class member `this.name` denotes, looked up in the enclosing class's members (the binder puts
   * declared fields, parameter properties and, in JavaScript, `this.x = ...` assignments there), or
   * undefined for other property accesses. The checker's own resolution would type-check the receiver
   * with flow analysis: slow, and deep enough to exhaust the stack on large generated files.
   */
  #memberOfThis(access: ts.PropertyAccessExpression): ts.Symbol | undefined {
    const t = this.ts;
    if (access.expression.kind !== t.SyntaxKind.ThisKeyword) return undefined;
    let owner: ts.Node | undefined = access.parent;
    while (owner !== undefined && !t.isClassLike(owner)) owner = owner.parent;
    if (owner === undefined) return undefined;
    if (this.#checker === undefined) return memberOf(owner, access.name);
    const name = access.name;
    if (t.isPrivateIdentifier(name)) return this.#checker.getSymbolAtLocation(name); // a private name's key is mangled
    const classSymbol = owner.name === undefined ? undefined : this.#checker.getSymbolAtLocation(owner.name);
    return classSymbol?.members?.get(name.escapedText);
  }

  /** The first declaration of what a node binds to. */
  declarationOf(node: ts.Node): ts.Declaration | undefined {
    return this.symbolOf(node)?.declarations?.[0];
  }

  /** Every identifier in the file that binds to `symbol`, declarations included, in source order. */
  references(symbol: ts.Symbol): readonly ts.MemberName[] {
    return this.#references.get(symbol) ?? [];
  }

  /** Strips parentheses and type-only wrappers (`as`, `satisfies`, `!`, `<T>x`). */
  unwrap(node: ts.Node): ts.Node {
    const t = this.ts;
    let current = node;
    while (
      t.isParenthesizedExpression(current) ||
      t.isAsExpression(current) ||
      t.isSatisfiesExpression(current) ||
      t.isNonNullExpression(current) ||
      t.isTypeAssertionExpression(current)
    ) {
      current = current.expression;
    }
    return current;
  }

  /** The literal text of a string literal or substitution-free template, else undefined. */
  literalText(node: ts.Node | undefined): string | undefined {
    if (node === undefined) return undefined;
    const target = this.unwrap(node);
    return this.ts.isStringLiteralLike(target) ? target.text : undefined;
  }

  /** `receiver.name(args)` (also `receiver?.name(args)`), or undefined for other calls. */
  methodCall(call: ts.CallExpression): { receiver: ts.Expression; name: string } | undefined {
    const callee = this.unwrap(call.expression);
    if (!this.ts.isPropertyAccessExpression(callee)) return undefined;
    return { receiver: callee.expression, name: callee.name.text };
  }

  /** The name a call is made by: `f` of `f(x)`, `m` of `a.b.m(x)`. */
  calleeName(call: ts.CallExpression): string | undefined {
    const callee = this.unwrap(call.expression);
    return this.ts.isIdentifier(callee) ? callee.text : this.methodCall(call)?.name;
  }

  /** Whether a node is a function with a body: declaration, expression, arrow, method, accessor. */
  isFunction(node: ts.Node): node is ts.FunctionLikeDeclaration {
    const t = this.ts;
    return (
      t.isFunctionDeclaration(node) ||
      t.isFunctionExpression(node) ||
      t.isArrowFunction(node) ||
      t.isMethodDeclaration(node) ||
      t.isConstructorDeclaration(node) ||
      t.isAccessor(node)
    );
  }

  /** The nearest enclosing function, or undefined at module level. */
  enclosingFunction(node: ts.Node): ts.FunctionLikeDeclaration | undefined {
    for (let current = node.parent; current !== undefined; current = current.parent) {
      if (this.isFunction(current)) return current;
    }
    return undefined;
  }

  /** Whether `inner` lies inside `outer` (or is it). */
  contains(outer: ts.Node, inner: ts.Node): boolean {
    return inner.pos >= outer.pos && inner.end <= outer.end;
  }

  /** The statement (or class member, or expression body) that contains `node`. */
  statementOf(node: ts.Node): ts.Node {
    const t = this.ts;
    let current = node;
    while (current.parent !== undefined) {
      const parent = current.parent;
      if (
        t.isBlock(parent) ||
        t.isSourceFile(parent) ||
        t.isModuleBlock(parent) ||
        t.isCaseOrDefaultClause(parent) ||
        t.isClassLike(parent) ||
        (this.isFunction(parent) && parent.body === current)
      ) {
        return current;
      }
      current = parent;
    }
    return current;
  }

  /** 1-based line and column (UTF-16 code units) of a node's first token. */
  position(node: ts.Node): { line: number; column: number } {
    const { line, character } = this.sourceFile.getLineAndCharacterOfPosition(node.getStart(this.sourceFile));
    return { line: line + 1, column: character + 1 };
  }

  /** A node's source text as written, every line dedented by the indentation of its first line. */
  text(node: ts.Node): string {
    const start = node.getStart(this.sourceFile);
    const lineStart = this.sourceFile.getLineStarts()[this.sourceFile.getLineAndCharacterOfPosition(start).line] ?? 0;
    const indent = /^[ \t]*/.exec(this.sourceFile.text.slice(lineStart, start))?.[0].length ?? 0;
    return this.sourceFile.text
      .slice(start, node.end)
      .split(/\r?\n/)
      .map((line, index) => (index === 0 ? line : line.replace(new RegExp(`^[ \\t]{0,${indent}}`), '')).trimEnd())
      .join('\n');
  }

  /** A node's dedented source text cut to a few lines (for `before`, which is shown, not pasted). */
  snippet(node: ts.Node): string {
    const lines = this.text(node).split('\n');
    return lines.length > MAX_SNIPPET_LINES ? [...lines.slice(0, MAX_SNIPPET_LINES - 1), '…'].join('\n') : lines.join('\n');
  }

  /** The statements that hold `nodes`, once each in source order, each on one line (for `before`). */
  statementLines(nodes: readonly ts.Node[]): string {
    const statements = [...new Set(nodes.map((node) => this.statementOf(node)))].sort((a, b) => a.pos - b.pos);
    const lines = statements.map((statement) => oneLine(statement.getText(this.sourceFile)));
    return lines.length > MAX_SNIPPET_LINES ? [...lines.slice(0, MAX_SNIPPET_LINES - 1), '…'].join('\n') : lines.join('\n');
  }
}

/** Collapses whitespace runs to one space and cuts long text with an ellipsis (messages and `before` only). */
export function oneLine(text: string, maxChars = MAX_LINE_CHARS): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > maxChars ? `${flat.slice(0, maxChars - 1)}…` : flat;
}

function scriptExtension(fileName: string): string {
  return /\.(?:[cm]?[jt]s|[jt]sx)$/i.exec(fileName)?.[0].toLowerCase() ?? '.js';
}

function scriptKind(t: typeof ts, fileName: string): ts.ScriptKind {
  const extension = scriptExtension(fileName);
  if (extension === '.tsx') return t.ScriptKind.TSX;
  if (extension === '.jsx') return t.ScriptKind.JSX;
  return /^\.[cm]?ts$/.test(extension) ? t.ScriptKind.TS : t.ScriptKind.JS;
}

/**
 * The parser's own diagnostics for a file: what it could not parse. They are kept on the source file
 * (`parseDiagnostics`, internal); the public route, a program's syntactic diagnostics, adds for
 * JavaScript files the "types can only be used in a .ts file" kind, which Flow-annotated sources
 * would trip, so it is only the fallback for a TypeScript that does not keep the field.
 */
function parseDiagnostics(t: typeof ts, sourceFile: ts.SourceFile, virtualName: string): readonly ts.Diagnostic[] {
  const internal = (sourceFile as unknown as { parseDiagnostics?: unknown }).parseDiagnostics;
  if (Array.isArray(internal)) return internal as ts.DiagnosticWithLocation[];
  return programFor(t, sourceFile, virtualName).getSyntacticDiagnostics(sourceFile);
}

/** A checker over {@link programFor}'s program. */
function checkerFor(t: typeof ts, sourceFile: ts.SourceFile, virtualName: string): ts.TypeChecker {
  return programFor(t, sourceFile, virtualName).getTypeChecker();
}

/** A program of this one file: no lib, no module resolution, nothing read from disk. */
function programFor(t: typeof ts, sourceFile: ts.SourceFile, virtualName: string): ts.Program {
  const host: ts.CompilerHost = {
    getSourceFile: (name) => (name === virtualName ? sourceFile : undefined),
    getDefaultLibFileName: () => '/migrate-scan/lib.d.ts',
    writeFile: () => undefined,
    getCurrentDirectory: () => '/migrate-scan',
    getCanonicalFileName: (name) => name,
    useCaseSensitiveFileNames: () => true,
    getNewLine: () => '\n',
    fileExists: (name) => name === virtualName,
    readFile: () => undefined,
  };
  const options: ts.CompilerOptions = { noLib: true, noResolve: true, allowJs: true, types: [] };
  return t.createProgram({ rootNames: [virtualName], options, host });
}
