import type ts from 'typescript';
import type { SourceAnalysis } from './analysis.js';

/** What a `pg` binding or expression stands for. */
export type PgExport = 'module' | 'Pool' | 'Client';

/** What an expression holds, as far as one file shows: a pg Pool, a pg Client, something else, or unknown. */
export type ValueKind = 'pool' | 'client' | 'other' | 'unknown';

/**
 * The entry points of pg and what each exports as a whole (its CommonJS `module.exports`, its ESM
 * default): the pg module object, or one class. `pg-pool`'s export is the Pool class pg itself uses.
 */
const PG_ENTRY_POINTS = new Map<string, PgExport>([
  ['pg', 'module'],
  ['pg/lib', 'module'],
  ['pg/lib/index', 'module'],
  ['pg/lib/index.js', 'module'],
  ['pg/esm/index.mjs', 'module'],
  ['pg-pool', 'Pool'],
  ['pg/lib/client', 'Client'],
  ['pg/lib/client.js', 'Client'],
]);

const kinds = new WeakMap<SourceAnalysis, Map<ts.Symbol, ValueKind>>();

/** What a module specifier of pg exports as a whole, or undefined for other modules. */
export function pgEntryPoint(specifier: string | undefined): PgExport | undefined {
  return specifier === undefined ? undefined : PG_ENTRY_POINTS.get(specifier);
}

/** Export `name` of what exports `exported` as a whole: `Pool` of the pg module, `default` of pg-pool. */
export function pgNamed(exported: PgExport | undefined, name: string): PgExport | undefined {
  if (exported !== 'module') return name === 'default' ? exported : undefined;
  if (name === 'default' || name === 'native') return 'module';
  return name === 'Pool' || name === 'Client' ? name : undefined;
}

/** Which pg export an expression denotes: the module itself, its Pool class or its Client class. */
export function pgExportOf(analysis: SourceAnalysis, node: ts.Node, depth = 0): PgExport | undefined {
  const t = analysis.ts;
  const target = analysis.unwrap(node);
  if (depth > 8) return undefined;
  if (t.isAwaitExpression(target)) return pgExportOf(analysis, target.expression, depth + 1);
  if (t.isCallExpression(target)) {
    const isLoader =
      target.expression.kind === t.SyntaxKind.ImportKeyword ||
      (t.isIdentifier(target.expression) && target.expression.text === 'require');
    if (!isLoader) return undefined;
    const exported = pgEntryPoint(analysis.literalText(target.arguments[0]));
    // import('pg-pool') resolves to a namespace whose default is the class.
    return target.expression.kind === t.SyntaxKind.ImportKeyword && exported !== undefined ? 'module' : exported;
  }
  if (t.isPropertyAccessExpression(target) || t.isQualifiedName(target)) {
    const base = t.isPropertyAccessExpression(target) ? target.expression : target.left;
    const name = t.isPropertyAccessExpression(target) ? target.name.text : target.right.text;
    const isDynamicPgPool = t.isAwaitExpression(analysis.unwrap(base)) && name === 'default';
    return isDynamicPgPool ? dynamicDefault(analysis, base) : pgNamed(pgExportOf(analysis, base, depth + 1), name);
  }
  if (!t.isIdentifier(target)) return undefined;
  const declaration = analysis.declarationOf(target);
  if (declaration === undefined) return undefined;
  if (t.isImportSpecifier(declaration)) {
    const exported = pgEntryPoint(analysis.literalText(declaration.parent.parent.parent.moduleSpecifier));
    return pgNamed(exported, (declaration.propertyName ?? declaration.name).text);
  }
  if (t.isImportClause(declaration)) return pgEntryPoint(analysis.literalText(declaration.parent.moduleSpecifier));
  if (t.isNamespaceImport(declaration)) {
    const exported = pgEntryPoint(analysis.literalText(declaration.parent.parent.moduleSpecifier));
    return exported === undefined ? undefined : 'module';
  }
  if (t.isImportEqualsDeclaration(declaration) && t.isExternalModuleReference(declaration.moduleReference)) {
    return pgEntryPoint(analysis.literalText(declaration.moduleReference.expression));
  }
  if (t.isVariableDeclaration(declaration) && declaration.initializer) {
    return pgExportOf(analysis, declaration.initializer, depth + 1);
  }
  if (t.isBindingElement(declaration) && t.isObjectBindingPattern(declaration.parent)) {
    const holder = declaration.parent.parent;
    if (!t.isVariableDeclaration(holder) || !holder.initializer) return undefined;
    const key = declaration.propertyName ?? declaration.name;
    if (!t.isIdentifier(key)) return undefined;
    const whole = pgExportOf(analysis, holder.initializer, depth + 1);
    return key.text === 'default' && whole !== undefined
      ? dynamicDefault(analysis, holder.initializer)
      : pgNamed(whole, key.text);
  }
  return undefined;
}

/** `(await import('pg-pool')).default` is the Pool class; `(await import('pg')).default` the module. */
function dynamicDefault(analysis: SourceAnalysis, base: ts.Node): PgExport | undefined {
  const t = analysis.ts;
  const awaited = analysis.unwrap(base);
  const loader = t.isAwaitExpression(awaited) ? analysis.unwrap(awaited.expression) : awaited;
  if (!t.isCallExpression(loader)) return pgExportOf(analysis, base) === 'module' ? 'module' : undefined;
  return pgEntryPoint(analysis.literalText(loader.arguments[0]));
}

/**
 * What a binding or expression holds: `new Pool()` / `new pg.Client()` (directly, through the
 * variable's initializer, an assignment, or a `Pool`/`pg.Pool` type annotation), something else, or
 * unknown (a parameter without a type, a call result).
 */
export function kindOf(analysis: SourceAnalysis, node: ts.Node): ValueKind {
  const t = analysis.ts;
  const target = analysis.unwrap(node);
  if (t.isNewExpression(target)) {
    const made = pgExportOf(analysis, target.expression);
    return made === 'Pool' ? 'pool' : made === 'Client' ? 'client' : 'other';
  }
  if (t.isAwaitExpression(target) || t.isCallExpression(target)) return 'unknown';
  const symbol = analysis.symbolOf(target);
  if (symbol === undefined) return 'unknown';
  let cache = kinds.get(analysis);
  if (cache === undefined) kinds.set(analysis, (cache = new Map()));
  const known = cache.get(symbol);
  if (known !== undefined) return known;
  cache.set(symbol, 'unknown'); // guards `a = b; b = a` cycles
  let kind: ValueKind = 'unknown';
  for (const source of valueSources(analysis, symbol)) {
    kind = t.isTypeNode(source) ? kindOfType(analysis, source) : kindOf(analysis, source);
    if (kind !== 'unknown') break;
  }
  cache.set(symbol, kind);
  return kind;
}

/** A pg Pool by binding, or (when the binding tells nothing) by name: `pool`, `pgPool`, `this.readPool`. */
export function isPoolLike(analysis: SourceAnalysis, node: ts.Node): boolean {
  const kind = kindOf(analysis, node);
  if (kind !== 'unknown') return kind === 'pool';
  const t = analysis.ts;
  const target = analysis.unwrap(node);
  const name = t.isIdentifier(target) ? target.text : t.isPropertyAccessExpression(target) ? target.name.text : '';
  return /pool$/i.test(name);
}

/** Initializers, assigned values and type annotations of a variable, parameter or property. */
function valueSources(analysis: SourceAnalysis, symbol: ts.Symbol): ts.Node[] {
  const t = analysis.ts;
  const sources: ts.Node[] = [];
  for (const declaration of symbol.declarations ?? []) {
    if (t.isVariableDeclaration(declaration) || t.isPropertyDeclaration(declaration) || t.isParameter(declaration)) {
      if (declaration.initializer) sources.push(declaration.initializer);
      if (declaration.type) sources.push(declaration.type);
    }
  }
  for (const reference of analysis.references(symbol)) {
    const holder =
      t.isPropertyAccessExpression(reference.parent) && reference.parent.name === reference ? reference.parent : reference;
    const parent = holder.parent;
    if (t.isBinaryExpression(parent) && parent.left === holder && parent.operatorToken.kind === t.SyntaxKind.EqualsToken) {
      sources.push(parent.right);
    }
  }
  return sources;
}

function kindOfType(analysis: SourceAnalysis, type: ts.TypeNode): ValueKind {
  if (!analysis.ts.isTypeReferenceNode(type)) return 'unknown';
  const made = pgExportOf(analysis, type.typeName);
  return made === 'Pool' ? 'pool' : made === 'Client' ? 'client' : 'unknown';
}
