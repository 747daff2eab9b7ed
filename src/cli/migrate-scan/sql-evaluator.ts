import type ts from 'typescript';
import type { SourceAnalysis } from './analysis.js';
import { formatSlots } from './pg-format.js';
import { SqlArrays } from './sql-arrays.js';
import { constantKeys, constInitializer, isWhitelisted } from './sql-guards.js';
import { combine, mergeText, type SqlPart, type SqlValue } from './sql-text.js';

const NUMERIC_CALLS = new Set(['Number', 'parseInt', 'parseFloat', 'BigInt']);
const ESCAPE_CALLS = new Set(['escapeIdentifier', 'escapeLiteral']);
/** Imported UPPER_SNAKE_CASE names are taken for constants: nobody names a request value that way. */
const CONSTANT_NAME = /^[A-Z][A-Z0-9_]*$/;

/** Decides, by following the bindings in one file, what each spliced expression can contribute to SQL. */
export class SqlEvaluator {
  readonly #analysis: SourceAnalysis;
  readonly #ts: typeof ts;
  readonly #visiting = new Set<ts.Node>();
  readonly #arrays: SqlArrays;

  constructor(analysis: SourceAnalysis) {
    this.#analysis = analysis;
    this.#ts = analysis.ts;
    this.#arrays = new SqlArrays(analysis, (node) => this.#isSafe(node));
  }

  /** Whether an expression is SQL text built from pieces: a template with substitutions or a `+` chain. */
  isBuilt(node: ts.Node): boolean {
    const t = this.#ts;
    const target = this.#analysis.unwrap(node);
    return (
      t.isTemplateExpression(target) || (t.isBinaryExpression(target) && target.operatorToken.kind === t.SyntaxKind.PlusToken)
    );
  }

  /** The pieces of a template or `+` chain, constants folded into text. */
  parts(node: ts.Node): SqlPart[] {
    const t = this.#ts;
    const target = this.#analysis.unwrap(node);
    const parts: SqlPart[] = [];
    if (t.isTemplateExpression(target)) {
      parts.push({ text: target.head.text });
      for (const span of target.templateSpans) parts.push(this.#part(span.expression), { text: span.literal.text });
    } else if (t.isBinaryExpression(target) && target.operatorToken.kind === t.SyntaxKind.PlusToken) {
      parts.push(...this.parts(target.left), ...this.parts(target.right));
    } else {
      parts.push(this.#part(target as ts.Expression));
    }
    return mergeText(parts);
  }

  /** What one expression contributes to SQL text. */
  evaluate(node: ts.Node): SqlValue {
    const t = this.#ts;
    const target = this.#analysis.unwrap(node);
    if (t.isStringLiteralLike(target) || t.isNumericLiteral(target)) return { kind: 'constant', text: target.text };
    if (this.isBuilt(target)) return combine(this.parts(target));
    if (t.isBinaryExpression(target)) return this.#binary(target);
    // -x, +x, ~x, !x, x++, x--: numbers or booleans
    if (t.isPrefixUnaryExpression(target) || t.isPostfixUnaryExpression(target)) return { kind: 'safe' };
    if (t.isConditionalExpression(target)) {
      return this.#isSafe(target.whenTrue) && this.#isSafe(target.whenFalse) ? { kind: 'safe' } : { kind: 'unsafe' };
    }
    if ((t.isIdentifier(target) || t.isPropertyAccessExpression(target)) && isWhitelisted(this.#analysis, target)) {
      return { kind: 'safe' };
    }
    if (t.isElementAccessExpression(target)) return this.#lookup(target);
    if (t.isIdentifier(target)) return this.#guarded(target, () => this.#identifier(target));
    if (t.isPropertyAccessExpression(target)) return this.#guarded(target, () => this.#property(target));
    if (t.isCallExpression(target)) return this.#guarded(target, () => this.#call(target));
    return { kind: 'unsafe' };
  }

  #part(node: ts.Expression): SqlPart {
    const value = this.evaluate(node);
    return value.kind === 'constant' ? { text: value.text } : { node, isSafe: value.kind === 'safe' };
  }

  #isSafe(node: ts.Node): boolean {
    return this.evaluate(node).kind !== 'unsafe';
  }

  /** Stops on self-reference (`const a = b; const b = a`) instead of recursing forever. */
  #guarded(node: ts.Node, evaluate: () => SqlValue): SqlValue {
    if (this.#visiting.has(node)) return { kind: 'unsafe' };
    this.#visiting.add(node);
    try {
      return evaluate();
    } finally {
      this.#visiting.delete(node);
    }
  }

  #binary(node: ts.BinaryExpression): SqlValue {
    const t = this.#ts;
    switch (node.operatorToken.kind) {
      case t.SyntaxKind.MinusToken:
      case t.SyntaxKind.AsteriskToken:
      case t.SyntaxKind.SlashToken:
      case t.SyntaxKind.PercentToken:
      case t.SyntaxKind.AsteriskAsteriskToken:
        return { kind: 'safe' }; // always a number (or NaN), whatever the operands hold
      case t.SyntaxKind.AmpersandAmpersandToken:
        // `cond && 'x = $1'` yields 'x = $1' or a falsy value ('' at worst): only the right side matters.
        return this.#isSafe(node.right) ? { kind: 'safe' } : { kind: 'unsafe' };
      case t.SyntaxKind.BarBarToken:
      case t.SyntaxKind.QuestionQuestionToken:
        return this.#isSafe(node.left) && this.#isSafe(node.right) ? { kind: 'safe' } : { kind: 'unsafe' };
      default:
        return { kind: 'unsafe' };
    }
  }

  #identifier(node: ts.Identifier): SqlValue {
    const t = this.#ts;
    const declaration = this.#analysis.symbolOf(node)?.declarations?.[0];
    if (declaration === undefined) return node.text === 'undefined' ? { kind: 'constant', text: '' } : { kind: 'unsafe' };
    if (t.isVariableDeclaration(declaration) && t.isForOfStatement(declaration.parent.parent)) {
      // `for (const column of COLUMNS)`: an element of a safe array.
      return this.#arrays.isSafe(declaration.parent.parent.expression) ? { kind: 'safe' } : { kind: 'unsafe' };
    }
    if (
      (t.isVariableDeclaration(declaration) || t.isParameter(declaration)) &&
      isQuoteFreeType(this.#analysis, declaration.type)
    ) {
      return { kind: 'safe' }; // declared number, boolean or a union of literals: trusted as the file's author wrote it
    }
    if (t.isVariableDeclaration(declaration)) {
      const isConst = (t.getCombinedNodeFlags(declaration) & t.NodeFlags.Const) !== 0;
      if (isConst && declaration.initializer !== undefined) return this.evaluate(declaration.initializer);
      // `let i = 1; ... i++`, `let order = 'ASC'; if (desc) order = 'DESC'`: every value written is safe.
      return this.#isSafeVariable(declaration) ? { kind: 'safe' } : { kind: 'unsafe' };
    }
    if (t.isParameter(declaration) && (this.#isIndexParameter(declaration) || this.#isSafeElementParameter(declaration))) {
      return { kind: 'safe' };
    }
    if (t.isImportSpecifier(declaration) || t.isImportClause(declaration)) {
      return CONSTANT_NAME.test(node.text) ? { kind: 'safe' } : { kind: 'unsafe' };
    }
    return { kind: 'unsafe' };
  }

  /** A `let`/`var` whose initializer and every later write (`=`, `+=`, `++`) put safe values in it. */
  #isSafeVariable(declaration: ts.VariableDeclaration): boolean {
    const t = this.#ts;
    const symbol = t.isIdentifier(declaration.name) ? this.#analysis.symbolOf(declaration.name) : undefined;
    if (symbol === undefined || t.isForInStatement(declaration.parent.parent)) return false; // for (const key in input)
    if (declaration.initializer !== undefined && !this.#isSafe(declaration.initializer)) return false;
    return this.#analysis.references(symbol).every((reference) => {
      const parent = reference.parent;
      if (t.isPrefixUnaryExpression(parent) || t.isPostfixUnaryExpression(parent)) return true;
      if (!t.isBinaryExpression(parent) || parent.left !== reference) return true; // a read
      const operator = parent.operatorToken.kind;
      if (operator === t.SyntaxKind.EqualsToken || operator === t.SyntaxKind.PlusEqualsToken) return this.#isSafe(parent.right);
      return operator < t.SyntaxKind.FirstCompoundAssignment || operator > t.SyntaxKind.LastCompoundAssignment;
    });
  }

  /** The element parameter of `SAFE.map((column) => ...)`, over an array whose elements are all safe. */
  #isSafeElementParameter(parameter: ts.ParameterDeclaration): boolean {
    const t = this.#ts;
    const callback = parameter.parent;
    if (!(t.isArrowFunction(callback) || t.isFunctionExpression(callback)) || callback.parameters[0] !== parameter) return false;
    const call = callback.parent;
    if (!t.isCallExpression(call) || call.arguments[0] !== callback) return false;
    const method = this.#analysis.methodCall(call);
    return method !== undefined && SqlArrays.isElementCallback(method.name) && this.#arrays.isSafe(method.receiver);
  }

  /** `COLUMNS[key]` of a `const` object literal whose values are all safe: one of them, or undefined. */
  #lookup(node: ts.ElementAccessExpression): SqlValue {
    const t = this.#ts;
    const object = this.#analysis.unwrap(node.expression);
    const initializer = constInitializer(this.#analysis, object) ?? object;
    const literal = this.#analysis.unwrap(initializer);
    if (!t.isObjectLiteralExpression(literal) || !constantKeys(this.#analysis, literal)) return { kind: 'unsafe' };
    const isSafe = literal.properties.every((property) => t.isPropertyAssignment(property) && this.#isSafe(property.initializer));
    return isSafe ? { kind: 'safe' } : { kind: 'unsafe' };
  }

  /** The index parameter of `xs.map((x, i) => ...)` or `Array.from(source, (x, i) => ...)`. */
  #isIndexParameter(parameter: ts.ParameterDeclaration): boolean {
    const t = this.#ts;
    const callback = parameter.parent;
    if (!(t.isArrowFunction(callback) || t.isFunctionExpression(callback)) || callback.parameters[1] !== parameter) return false;
    const call = callback.parent;
    if (!t.isCallExpression(call)) return false;
    const method = this.#analysis.methodCall(call);
    if (method === undefined) return false;
    if (method.name === 'from' && t.isIdentifier(method.receiver) && method.receiver.text === 'Array') {
      return call.arguments[1] === callback;
    }
    return SqlArrays.isElementCallback(method.name) && call.arguments[0] === callback;
  }

  #property(node: ts.PropertyAccessExpression): SqlValue {
    const t = this.#ts;
    if (node.name.text === 'length') return { kind: 'safe' };
    const declaration = this.#analysis.symbolOf(node.expression)?.declarations?.[0];
    if (declaration === undefined) return { kind: 'unsafe' };
    if (t.isEnumDeclaration(declaration)) return { kind: 'safe' };
    if (t.isImportSpecifier(declaration) || t.isImportClause(declaration) || t.isNamespaceImport(declaration)) {
      return CONSTANT_NAME.test(declaration.name?.getText() ?? '') || CONSTANT_NAME.test(node.name.text)
        ? { kind: 'safe' }
        : { kind: 'unsafe' };
    }
    const initializer =
      t.isVariableDeclaration(declaration) && t.getCombinedNodeFlags(declaration) & t.NodeFlags.Const
        ? declaration.initializer && this.#analysis.unwrap(declaration.initializer)
        : undefined;
    if (initializer === undefined || !t.isObjectLiteralExpression(initializer)) return { kind: 'unsafe' };
    const property = initializer.properties.find(
      (candidate) => t.isPropertyAssignment(candidate) && candidate.name.getText() === node.name.text,
    );
    return property !== undefined && t.isPropertyAssignment(property) ? this.evaluate(property.initializer) : { kind: 'unsafe' };
  }

  #call(node: ts.CallExpression): SqlValue {
    const t = this.#ts;
    const slots = formatSlots(this.#analysis, node);
    if (slots !== undefined) {
      // pg-format quotes %I and %L arguments itself; %s splices its argument as is, and so does a
      // substitution in the format string itself.
      const pattern = node.arguments[0]!;
      const isPatternSafe = !this.isBuilt(pattern) || this.parts(pattern).every((part) => !('node' in part) || part.isSafe);
      const isSafe = isPatternSafe && slots.every((slot) => slot.specifier !== 's' || this.#isSafe(slot.argument));
      return isSafe ? { kind: 'safe' } : { kind: 'unsafe' };
    }
    const callee = this.#analysis.unwrap(node.expression);
    if (t.isIdentifier(callee)) {
      return NUMERIC_CALLS.has(callee.text) || ESCAPE_CALLS.has(callee.text) ? { kind: 'safe' } : { kind: 'unsafe' };
    }
    const method = this.#analysis.methodCall(node);
    if (method === undefined) return { kind: 'unsafe' };
    if (ESCAPE_CALLS.has(method.name) || method.name === 'toFixed') return { kind: 'safe' };
    if (t.isIdentifier(method.receiver) && method.receiver.text === 'Math') return { kind: 'safe' };
    if (method.name !== 'join') return { kind: 'unsafe' };
    const separator = node.arguments[0];
    const isSeparatorConstant = separator === undefined || this.evaluate(separator).kind === 'constant';
    return isSeparatorConstant && this.#arrays.isSafe(method.receiver) ? { kind: 'safe' } : { kind: 'unsafe' };
  }
}

/** `number`, `bigint`, `boolean`, or a union of those and of literal types (`'asc' | 'desc'`). */
function isQuoteFreeType(analysis: SourceAnalysis, type: ts.TypeNode | undefined): boolean {
  const t = analysis.ts;
  if (type === undefined) return false;
  if (t.isUnionTypeNode(type)) return type.types.every((member) => isQuoteFreeType(analysis, member));
  if (t.isLiteralTypeNode(type)) return !t.isStringLiteral(type.literal) || !/['\\]/.test(type.literal.text);
  return [t.SyntaxKind.NumberKeyword, t.SyntaxKind.BigIntKeyword, t.SyntaxKind.BooleanKeyword].includes(type.kind);
}
