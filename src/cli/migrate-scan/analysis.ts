import { createRequire } from 'node:module';
import { join } from 'node:path';
import type ts from 'typescript';
import { MigrateScanError } from './scan-error.js';

let typescript: typeof ts | undefined;

/**
 * Loads the optional `typescript` peer dependency on first use, from this package's location and then
 * from the current directory (a globally installed CLI scanning a project that has TypeScript).
 *
 * @throws {MigrateScanError} code `TYPESCRIPT_MISSING` when neither place has it.
 */
export function loadTypeScript(): typeof ts {
  if (typescript !== undefined) return typescript;
  let lastError: unknown;
  for (const base of [import.meta.url, join(process.cwd(), 'package.json')]) {
    try {
      typescript = createRequire(base)('typescript') as typeof ts;
      return typescript;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw error;
      lastError = error;
    }
  }
  throw new MigrateScanError(
    'TYPESCRIPT_MISSING',
    'cannot load the `typescript` package, which parses the sources (an optional peer dependency of ' +
      '@codecheck/db): install it with `npm install --save-dev typescript`',
    { cause: lastError },
  );
}

/** What a `pg` binding or expression stands for. */
export type PgExport = 'module' | 'Pool' | 'Client';

/** What an expression holds, as far as one file shows: a pg Pool, a pg Client, something else, or unknown. */
export type ValueKind = 'pool' | 'client' | 'other' | 'unknown';

/** Modules whose exports we recognise; `pg-pool`'s default export is the Pool class. */
const PG_MODULES = new Set(['pg', 'pg-pool']);
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
  readonly #checker: ts.TypeChecker;
  readonly #references = new Map<ts.Symbol, ts.Identifier[]>();
  readonly #kinds = new Map<ts.Symbol, ValueKind>();

  constructor(fileName: string, text: string) {
    this.ts = loadTypeScript();
    const t = this.ts;
    // A virtual absolute name keeps the compiler host from touching the disk.
    const virtualName = `/migrate-scan/source${scriptExtension(fileName)}`;
    this.sourceFile = t.createSourceFile(virtualName, text, t.ScriptTarget.Latest, true, scriptKind(t, fileName));
    const sourceFile = this.sourceFile;
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
    this.#checker = t.createProgram({ rootNames: [virtualName], options, host }).getTypeChecker();
    const visit = (node: ts.Node): void => {
      if (t.isCallExpression(node)) this.calls.push(node);
      else if (t.isNewExpression(node)) this.constructions.push(node);
      else if (t.isIdentifier(node)) {
        const symbol = this.symbolOf(node);
        const known = symbol === undefined ? undefined : this.#references.get(symbol);
        if (known !== undefined) known.push(node);
        else if (symbol !== undefined) this.#references.set(symbol, [node]);
      }
      t.forEachChild(node, visit);
    };
    visit(this.sourceFile);
  }

  /** The symbol an identifier or `a.b` (by its name) binds to; shorthand `{ pool }` means the variable. */
  symbolOf(node: ts.Node): ts.Symbol | undefined {
    const t = this.ts;
    const target = this.unwrap(node);
    if (t.isPropertyAccessExpression(target)) return this.symbolOf(target.name);
    if (!t.isIdentifier(target)) return undefined;
    if (t.isShorthandPropertyAssignment(target.parent) && target.parent.name === target) {
      return this.#checker.getShorthandAssignmentValueSymbol(target.parent);
    }
    return this.#checker.getSymbolAtLocation(target);
  }

  /** Every identifier in the file that binds to `symbol`, declarations included, in source order. */
  references(symbol: ts.Symbol): readonly ts.Identifier[] {
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

  /** Which pg export an expression denotes: the module itself, its Pool class or its Client class. */
  pgExportOf(node: ts.Node, depth = 0): PgExport | undefined {
    const t = this.ts;
    const target = this.unwrap(node);
    if (depth > 8) return undefined;
    if (t.isAwaitExpression(target)) return this.pgExportOf(target.expression, depth + 1);
    if (t.isCallExpression(target)) {
      const isLoader =
        target.expression.kind === t.SyntaxKind.ImportKeyword ||
        (t.isIdentifier(target.expression) && target.expression.text === 'require');
      const specifier = this.literalText(target.arguments[0]);
      if (!isLoader || specifier === undefined || !PG_MODULES.has(specifier)) return undefined;
      return specifier === 'pg-pool' ? 'Pool' : 'module';
    }
    if (t.isPropertyAccessExpression(target) || t.isQualifiedName(target)) {
      const base = t.isPropertyAccessExpression(target) ? target.expression : target.left;
      const name = t.isPropertyAccessExpression(target) ? target.name.text : target.right.text;
      if (this.pgExportOf(base, depth + 1) !== 'module') return undefined;
      return name === 'default' ? 'module' : name === 'Pool' || name === 'Client' ? name : undefined;
    }
    if (!t.isIdentifier(target)) return undefined;
    const declaration = this.symbolOf(target)?.declarations?.[0];
    if (declaration === undefined) return undefined;
    if (t.isImportSpecifier(declaration)) {
      const module = this.literalText(declaration.parent.parent.parent.moduleSpecifier);
      const name = (declaration.propertyName ?? declaration.name).text;
      if (module === 'pg' && (name === 'Pool' || name === 'Client')) return name;
      return module === 'pg' && name === 'default' ? 'module' : undefined;
    }
    if (t.isImportClause(declaration) || t.isNamespaceImport(declaration)) {
      const clause = t.isImportClause(declaration) ? declaration : declaration.parent;
      const module = this.literalText(clause.parent.moduleSpecifier);
      if (module === 'pg-pool' && t.isImportClause(declaration)) return 'Pool';
      return module === 'pg' ? 'module' : undefined;
    }
    if (t.isImportEqualsDeclaration(declaration) && t.isExternalModuleReference(declaration.moduleReference)) {
      return this.literalText(declaration.moduleReference.expression) === 'pg' ? 'module' : undefined;
    }
    if (t.isVariableDeclaration(declaration) && declaration.initializer) {
      return this.pgExportOf(declaration.initializer, depth + 1);
    }
    if (t.isBindingElement(declaration) && t.isObjectBindingPattern(declaration.parent)) {
      const holder = declaration.parent.parent;
      if (!t.isVariableDeclaration(holder) || !holder.initializer) return undefined;
      if (this.pgExportOf(holder.initializer, depth + 1) !== 'module') return undefined;
      const key = declaration.propertyName ?? declaration.name;
      const name = t.isIdentifier(key) ? key.text : undefined;
      return name === 'Pool' || name === 'Client' ? name : undefined;
    }
    return undefined;
  }

  /**
   * What a binding or expression holds: `new Pool()` / `new pg.Client()` (directly, through the
   * variable's initializer, an assignment, or a `Pool`/`pg.Pool` type annotation), something else, or
   * unknown (a parameter without a type, a call result).
   */
  kindOf(node: ts.Node): ValueKind {
    const t = this.ts;
    const target = this.unwrap(node);
    if (t.isNewExpression(target)) {
      const made = this.pgExportOf(target.expression);
      return made === 'Pool' ? 'pool' : made === 'Client' ? 'client' : 'other';
    }
    if (t.isAwaitExpression(target) || t.isCallExpression(target)) return 'unknown';
    const symbol = this.symbolOf(target);
    if (symbol === undefined) return 'unknown';
    const known = this.#kinds.get(symbol);
    if (known !== undefined) return known;
    this.#kinds.set(symbol, 'unknown'); // guards `a = b; b = a` cycles
    let kind: ValueKind = 'unknown';
    for (const source of this.#valueSources(symbol)) {
      kind = t.isTypeNode(source) ? this.#kindOfType(source) : this.kindOf(source);
      if (kind !== 'unknown') break;
    }
    this.#kinds.set(symbol, kind);
    return kind;
  }

  /** A pg Pool by binding, or (when the binding tells nothing) by name: `pool`, `pgPool`, `this.readPool`. */
  isPoolLike(node: ts.Node): boolean {
    const kind = this.kindOf(node);
    if (kind !== 'unknown') return kind === 'pool';
    const target = this.unwrap(node);
    const name = this.ts.isIdentifier(target) ? target.text : this.ts.isPropertyAccessExpression(target) ? target.name.text : '';
    return /pool$/i.test(name);
  }

  /** Initializers, assigned values and type annotations of a variable, parameter or property. */
  #valueSources(symbol: ts.Symbol): ts.Node[] {
    const t = this.ts;
    const sources: ts.Node[] = [];
    for (const declaration of symbol.declarations ?? []) {
      if (t.isVariableDeclaration(declaration) || t.isPropertyDeclaration(declaration) || t.isParameter(declaration)) {
        if (declaration.initializer) sources.push(declaration.initializer);
        if (declaration.type) sources.push(declaration.type);
      }
    }
    for (const reference of this.references(symbol)) {
      const holder =
        t.isPropertyAccessExpression(reference.parent) && reference.parent.name === reference ? reference.parent : reference;
      const parent = holder.parent;
      if (t.isBinaryExpression(parent) && parent.left === holder && parent.operatorToken.kind === t.SyntaxKind.EqualsToken) {
        sources.push(parent.right);
      }
    }
    return sources;
  }

  #kindOfType(type: ts.TypeNode): ValueKind {
    if (!this.ts.isTypeReferenceNode(type)) return 'unknown';
    const made = this.pgExportOf(type.typeName);
    return made === 'Pool' ? 'pool' : made === 'Client' ? 'client' : 'unknown';
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

  /** A node's source text, dedented to its first line, cut to a few lines. */
  snippet(node: ts.Node): string {
    const start = node.getStart(this.sourceFile);
    const lineStart = this.sourceFile.getLineStarts()[this.sourceFile.getLineAndCharacterOfPosition(start).line] ?? 0;
    const indent = /^[ \t]*/.exec(this.sourceFile.text.slice(lineStart, start))?.[0].length ?? 0;
    const lines = this.sourceFile.text
      .slice(start, node.end)
      .split(/\r?\n/)
      .map((line, index) => (index === 0 ? line : line.replace(new RegExp(`^[ \\t]{0,${indent}}`), '')).trimEnd());
    return lines.length > MAX_SNIPPET_LINES ? [...lines.slice(0, MAX_SNIPPET_LINES - 1), '…'].join('\n') : lines.join('\n');
  }

  /** The statements that hold `nodes`, once each in source order, each on one line. */
  statementLines(nodes: readonly ts.Node[]): string {
    const statements = [...new Set(nodes.map((node) => this.statementOf(node)))].sort((a, b) => a.pos - b.pos);
    const lines = statements.map((statement) => oneLine(statement.getText(this.sourceFile)));
    return lines.length > MAX_SNIPPET_LINES ? [...lines.slice(0, MAX_SNIPPET_LINES - 1), '…'].join('\n') : lines.join('\n');
  }
}

/** Collapses whitespace runs to one space and cuts long text with an ellipsis. */
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
