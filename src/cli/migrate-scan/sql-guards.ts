import type ts from 'typescript';
import type { SourceAnalysis } from './analysis.js';

/**
 * Whether a spliced expression can only hold one of a constant list of strings at this point: it is
 * checked against the list by a guard that decides whether this code runs —
 *
 * - `LIST.includes(x) ? x : 'id'`, `x in COLUMNS && x`, `if (ALLOWED.has(x)) { ...x... }`;
 * - an earlier `if (!LIST.includes(x)) throw ...` (or `return`) in an enclosing block;
 * - `case 'name':` of a `switch (x)`, or an earlier `switch (x)` whose `default` throws or returns.
 *
 * The list must be constant in this file: an array literal of strings (directly, through a `const`,
 * `new Set(...)` of one, or `Object.keys()` of a `const` object literal), or the keys of such an object
 * for `in` / `hasOwnProperty`. Guards are matched by the guarded expression's text (`x`, `req.query.sort`).
 */
export function isWhitelisted(analysis: SourceAnalysis, node: ts.Node): boolean {
  const t = analysis.ts;
  const text = analysis.unwrap(node).getText(analysis.sourceFile);
  for (let current: ts.Node = node; current.parent !== undefined; current = current.parent) {
    const parent = current.parent;
    if (t.isConditionalExpression(parent)) {
      if (parent.whenTrue === current && testsMembership(analysis, parent.condition, text, true)) return true;
      if (parent.whenFalse === current && testsMembership(analysis, parent.condition, text, false)) return true;
    }
    if (
      t.isBinaryExpression(parent) &&
      parent.right === current &&
      parent.operatorToken.kind === t.SyntaxKind.AmpersandAmpersandToken
    ) {
      if (testsMembership(analysis, parent.left, text, true)) return true;
    }
    if (t.isIfStatement(parent)) {
      if (parent.thenStatement === current && testsMembership(analysis, parent.expression, text, true)) return true;
      if (parent.elseStatement === current && testsMembership(analysis, parent.expression, text, false)) return true;
    }
    if (t.isCaseClause(parent) && t.isSwitchStatement(parent.parent.parent)) {
      const subject = analysis.unwrap(parent.parent.parent.expression).getText(analysis.sourceFile);
      if (subject === text && analysis.literalText(parent.expression) !== undefined) return true;
    }
    if (t.isBlock(parent) || t.isSourceFile(parent) || t.isCaseOrDefaultClause(parent)) {
      const statements = parent.statements as readonly ts.Statement[];
      for (const earlier of statements.slice(0, statements.indexOf(current as ts.Statement))) {
        if (isExitGuard(analysis, earlier, text)) return true;
      }
    }
    if (analysis.isFunction(parent)) break;
  }
  return false;
}

/** `if (!LIST.includes(x)) throw ...;` or a `switch (x)` whose `default` leaves. */
function isExitGuard(analysis: SourceAnalysis, statement: ts.Statement, text: string): boolean {
  const t = analysis.ts;
  if (t.isIfStatement(statement) && statement.elseStatement === undefined && alwaysLeaves(analysis, statement.thenStatement)) {
    return testsMembership(analysis, statement.expression, text, false);
  }
  if (t.isSwitchStatement(statement) && analysis.unwrap(statement.expression).getText(analysis.sourceFile) === text) {
    const fallback = statement.caseBlock.clauses.find((clause) => t.isDefaultClause(clause));
    return fallback !== undefined && fallback.statements.some((inner) => alwaysLeaves(analysis, inner));
  }
  return false;
}

function alwaysLeaves(analysis: SourceAnalysis, statement: ts.Statement): boolean {
  const t = analysis.ts;
  if (t.isThrowStatement(statement) || t.isReturnStatement(statement)) return true;
  return t.isBlock(statement) && statement.statements.some((inner) => alwaysLeaves(analysis, inner));
}

/**
 * Whether `condition` being `expected` means `text` is in a constant list: `LIST.includes(x)`,
 * `SET.has(x)`, `x in OBJ`, `OBJ.hasOwnProperty(x)`, `LIST.indexOf(x) !== -1`, `x === 'a' || x === 'b'`,
 * through `!` and `&&` (when true) / `||` (when false).
 */
function testsMembership(analysis: SourceAnalysis, condition: ts.Expression, text: string, expected: boolean): boolean {
  const t = analysis.ts;
  const target = analysis.unwrap(condition);
  const same = (node: ts.Node | undefined): boolean =>
    node !== undefined && analysis.unwrap(node).getText(analysis.sourceFile) === text;
  if (t.isPrefixUnaryExpression(target) && target.operator === t.SyntaxKind.ExclamationToken) {
    return testsMembership(analysis, target.operand, text, !expected);
  }
  if (t.isBinaryExpression(target)) {
    const operator = target.operatorToken.kind;
    if (operator === t.SyntaxKind.AmpersandAmpersandToken && expected) {
      return testsMembership(analysis, target.left, text, true) || testsMembership(analysis, target.right, text, true);
    }
    if (operator === t.SyntaxKind.BarBarToken) {
      if (!expected)
        return testsMembership(analysis, target.left, text, false) || testsMembership(analysis, target.right, text, false);
      return isEqualityChain(analysis, target, text);
    }
    if (operator === t.SyntaxKind.InKeyword) return expected && same(target.left) && constantKeys(analysis, target.right);
    const isNotFound = /^-1$/.test(target.right.getText(analysis.sourceFile));
    const isIndexOf = t.isCallExpression(analysis.unwrap(target.left)) && isListCall(analysis, target.left, text, 'indexOf');
    if (
      isIndexOf &&
      isNotFound &&
      (operator === t.SyntaxKind.ExclamationEqualsEqualsToken || operator === t.SyntaxKind.GreaterThanToken)
    ) {
      return expected;
    }
    if (isIndexOf && isNotFound && operator === t.SyntaxKind.EqualsEqualsEqualsToken) return !expected;
    const isEquality = operator === t.SyntaxKind.EqualsEqualsEqualsToken || operator === t.SyntaxKind.EqualsEqualsToken;
    return isEquality && expected && isEqualityChain(analysis, target, text);
  }
  if (!expected || !t.isCallExpression(target)) return false;
  return ['includes', 'has', 'hasOwnProperty'].some((name) => isListCall(analysis, target, text, name));
}

/** `x === 'a' || x === 'b'`: every alternative compares `text` with a string literal. */
function isEqualityChain(analysis: SourceAnalysis, node: ts.Expression, text: string): boolean {
  const t = analysis.ts;
  const target = analysis.unwrap(node);
  if (!t.isBinaryExpression(target)) return false;
  if (target.operatorToken.kind === t.SyntaxKind.BarBarToken) {
    return isEqualityChain(analysis, target.left, text) && isEqualityChain(analysis, target.right, text);
  }
  const isEquality =
    target.operatorToken.kind === t.SyntaxKind.EqualsEqualsEqualsToken ||
    target.operatorToken.kind === t.SyntaxKind.EqualsEqualsToken;
  const sides = [target.left, target.right].map((side) => analysis.unwrap(side));
  return (
    isEquality &&
    sides.some((side) => side.getText(analysis.sourceFile) === text) &&
    sides.some((side) => analysis.literalText(side) !== undefined)
  );
}

/** `LIST.name(x)` (or `Object.prototype.hasOwnProperty.call(OBJ, x)`) over a constant list. */
function isListCall(analysis: SourceAnalysis, node: ts.Node, text: string, name: string): boolean {
  const t = analysis.ts;
  const call = analysis.unwrap(node);
  if (!t.isCallExpression(call)) return false;
  const method = analysis.methodCall(call);
  if (method === undefined) return false;
  const argument = (index: number): string | undefined => {
    const value = call.arguments[index];
    return value === undefined ? undefined : analysis.unwrap(value).getText(analysis.sourceFile);
  };
  if (
    name === 'hasOwnProperty' &&
    method.name === 'call' &&
    /hasOwnProperty$/.test(method.receiver.getText(analysis.sourceFile))
  ) {
    return argument(1) === text && call.arguments[0] !== undefined && constantKeys(analysis, call.arguments[0]);
  }
  if (method.name !== name || argument(0) !== text) return false;
  return name === 'hasOwnProperty' ? constantKeys(analysis, method.receiver) : constantList(analysis, method.receiver);
}

/** An array (or Set) of string literals known in this file. */
export function constantList(analysis: SourceAnalysis, node: ts.Node, depth = 0): boolean {
  const t = analysis.ts;
  const target = analysis.unwrap(node);
  if (depth > 4) return false;
  if (t.isArrayLiteralExpression(target)) return target.elements.every((element) => analysis.literalText(element) !== undefined);
  if (t.isNewExpression(target) && target.expression.getText(analysis.sourceFile) === 'Set') {
    return target.arguments?.[0] !== undefined && constantList(analysis, target.arguments[0], depth + 1);
  }
  if (t.isCallExpression(target) && target.expression.getText(analysis.sourceFile) === 'Object.keys') {
    return target.arguments[0] !== undefined && constantKeys(analysis, target.arguments[0]);
  }
  const initializer = constInitializer(analysis, target);
  return initializer !== undefined && constantList(analysis, initializer, depth + 1);
}

/** An object literal with fixed keys (no spread, no computed names), directly or through a `const`. */
export function constantKeys(analysis: SourceAnalysis, node: ts.Node): boolean {
  const t = analysis.ts;
  const target = analysis.unwrap(node);
  const object = t.isObjectLiteralExpression(target) ? target : constInitializer(analysis, target);
  return (
    object !== undefined &&
    t.isObjectLiteralExpression(analysis.unwrap(object)) &&
    (analysis.unwrap(object) as ts.ObjectLiteralExpression).properties.every(
      (property) => !t.isSpreadAssignment(property) && property.name !== undefined && !t.isComputedPropertyName(property.name),
    )
  );
}

/** The initializer of the `const` an identifier binds to. */
export function constInitializer(analysis: SourceAnalysis, node: ts.Node): ts.Expression | undefined {
  const t = analysis.ts;
  if (!t.isIdentifier(node)) return undefined;
  const declaration = analysis.declarationOf(node);
  if (declaration === undefined || !t.isVariableDeclaration(declaration)) return undefined;
  return t.getCombinedNodeFlags(declaration) & t.NodeFlags.Const ? declaration.initializer : undefined;
}
