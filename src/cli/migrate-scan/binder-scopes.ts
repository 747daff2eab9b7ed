import type ts from 'typescript';

/**
 * Name resolution from the TypeScript binder's scopes alone, without a type checker.
 *
 * The checker resolves some names by type-checking the code around them (JavaScript expando and
 * CommonJS handling, return types of called functions), which costs most of a file's analysis time
 * and, on large generated files, recurses deeper than the call stack allows. The binder already knows
 * every scope's declarations; this file reads them. It is the one place that touches the compiler's
 * internals — `ts.bindSourceFile`, and the `locals`, `symbol` and `localSymbol` properties the binder
 * sets on nodes — so when a TypeScript version lacks them, {@link bindScopes} says so and the caller
 * falls back to a checker.
 */
interface BoundNode {
  readonly locals?: ts.SymbolTable;
  readonly symbol?: ts.Symbol;
  readonly localSymbol?: ts.Symbol;
}

/** Binds a parsed file in place; false when this TypeScript does not expose its binder. */
export function bindScopes(t: typeof ts, sourceFile: ts.SourceFile): boolean {
  const bind = (t as unknown as { bindSourceFile?: (file: ts.SourceFile, options: ts.CompilerOptions) => void }).bindSourceFile;
  if (typeof bind !== 'function') return false;
  bind(sourceFile, { allowJs: true, target: t.ScriptTarget.Latest });
  return (sourceFile as unknown as BoundNode).locals !== undefined;
}

/**
 * The symbol a name binds to: for a declaration's own name, the declared symbol (its local one when it
 * is exported, as references see it); otherwise the nearest enclosing scope that declares the name.
 * Class members: see {@link memberOf}. Undefined for globals and for property names.
 */
export function resolveName(t: typeof ts, name: ts.Identifier): ts.Symbol | undefined {
  const parent = name.parent;
  const bound = parent as ts.Node & BoundNode & { name?: ts.Node };
  const isOwnScope =
    t.isFunctionDeclaration(parent) ||
    t.isFunctionExpression(parent) ||
    t.isClassDeclaration(parent) ||
    t.isClassExpression(parent);
  if (bound.name === name && (t.isClassElement(parent) || t.isEnumMember(parent) || t.isPropertyAssignment(parent))) {
    return bound.symbol;
  }
  if (t.isPropertyAccessExpression(parent) && parent.name === name) return undefined;
  if (t.isQualifiedName(parent) && parent.right === name) return undefined;
  const start: ts.Node | undefined = bound.name === name && isOwnScope ? parent.parent : parent;
  for (let scope = start; scope !== undefined; scope = scope.parent) {
    const symbol = (scope as BoundNode).locals?.get(name.escapedText);
    if (symbol !== undefined) return symbol;
  }
  return undefined;
}

/** The member of a class a `this.name` / `this.#name` access denotes (fields, parameter properties, JS `this.x = `). */
export function memberOf(classNode: ts.ClassLikeDeclaration, name: ts.MemberName): ts.Symbol | undefined {
  const members = (classNode as BoundNode).symbol?.members;
  if (members === undefined) return undefined;
  const direct = members.get(name.escapedText);
  if (direct !== undefined) return direct;
  for (const member of members.values()) {
    const declared = (member.valueDeclaration as { name?: ts.Node } | undefined)?.name;
    if (declared !== undefined && 'escapedText' in declared && declared.escapedText === name.escapedText) return member;
  }
  return undefined;
}
