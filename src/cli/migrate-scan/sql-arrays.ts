import type ts from 'typescript';
import type { SourceAnalysis } from './analysis.js';
import { constantKeys } from './sql-guards.js';

const INDEX_CALLBACKS = new Set(['map', 'flatMap', 'forEach', 'filter', 'some', 'every', 'find', 'findIndex']);
const ARRAY_READS = new Set(['join', 'length', 'map', 'filter', 'forEach', 'slice', 'some', 'every', 'includes', 'indexOf']);
const ARRAY_KEEPS_ELEMENTS = new Set(['filter', 'slice', 'reverse', 'sort', 'toSorted', 'toReversed']);

/**
 * Decides whether every element of an array is safe SQL text, for `.join()`, `for ... of` and the
 * element parameter of `.map()`: literals, placeholder lists, the keys of an object with fixed keys,
 * and `const` arrays that only ever receive safe text. Elements are judged by the evaluator's rule.
 */
export class SqlArrays {
  readonly #analysis: SourceAnalysis;
  readonly #ts: typeof ts;
  readonly #isSafeValue: (node: ts.Node) => boolean;
  readonly #visiting = new Set<ts.Node>();

  constructor(analysis: SourceAnalysis, isSafeValue: (node: ts.Node) => boolean) {
    this.#analysis = analysis;
    this.#ts = analysis.ts;
    this.#isSafeValue = isSafeValue;
  }

  /** Whether a callback method's name passes array elements (`map`, `forEach`, ...). */
  static isElementCallback(name: string): boolean {
    return INDEX_CALLBACKS.has(name);
  }

  /** Whether every element of an array expression is safe SQL text (for `.join(', ')`). */
  isSafe(node: ts.Node): boolean {
    const t = this.#ts;
    const target = this.#analysis.unwrap(node);
    if (t.isArrayLiteralExpression(target)) {
      return target.elements.every((element) =>
        t.isSpreadElement(element) ? this.isSafe(element.expression) : this.#isSafeValue(element),
      );
    }
    if (t.isCallExpression(target) && target.expression.getText(this.#analysis.sourceFile) === 'Object.keys') {
      return target.arguments[0] !== undefined && constantKeys(this.#analysis, target.arguments[0]);
    }
    if (t.isCallExpression(target)) return this.#isSafeCall(target);
    if (!t.isIdentifier(target) || this.#visiting.has(target)) return false;
    this.#visiting.add(target);
    try {
      return this.#isSafeBinding(target);
    } finally {
      this.#visiting.delete(target);
    }
  }

  #isSafeCall(call: ts.CallExpression): boolean {
    const t = this.#ts;
    const method = this.#analysis.methodCall(call);
    if (method === undefined) return false;
    const isArrayFrom = method.name === 'from' && t.isIdentifier(method.receiver) && method.receiver.text === 'Array';
    if (isArrayFrom || method.name === 'map' || method.name === 'flatMap') {
      const callback = call.arguments[isArrayFrom ? 1 : 0];
      const result = callback === undefined ? undefined : this.#returned(callback);
      return result !== undefined && this.#isSafeValue(result);
    }
    if (ARRAY_KEEPS_ELEMENTS.has(method.name)) return this.isSafe(method.receiver);
    if (method.name === 'concat') {
      return this.isSafe(method.receiver) && call.arguments.every((argument) => this.isSafe(argument));
    }
    return false;
  }

  /**
   * A `const` array that starts safe and is only ever read or pushed safe text here: the
   * `clauses.push('status = $' + params.length)` ... `clauses.join(' AND ')` idiom.
   */
  #isSafeBinding(node: ts.Identifier): boolean {
    const t = this.#ts;
    const symbol = this.#analysis.symbolOf(node);
    const declaration = symbol?.declarations?.[0];
    if (
      symbol === undefined ||
      declaration === undefined ||
      !t.isVariableDeclaration(declaration) ||
      !(t.getCombinedNodeFlags(declaration) & t.NodeFlags.Const) ||
      declaration.initializer === undefined ||
      !this.isSafe(declaration.initializer)
    ) {
      return false;
    }
    return this.#analysis.references(symbol).every((reference) => {
      if (reference === declaration.name) return true;
      const access = reference.parent;
      if (t.isForOfStatement(access) && access.expression === reference) return true;
      if (!t.isPropertyAccessExpression(access) || access.expression !== reference) return false;
      if (ARRAY_READS.has(access.name.text)) return true;
      const call = access.parent;
      return (
        (access.name.text === 'push' || access.name.text === 'unshift') &&
        t.isCallExpression(call) &&
        call.expression === access &&
        call.arguments.every((argument) => this.#isSafeValue(argument))
      );
    });
  }

  /** The value a callback returns: its expression body, or the one `return` of a block body. */
  #returned(node: ts.Node): ts.Expression | undefined {
    const t = this.#ts;
    if (!t.isArrowFunction(node) && !t.isFunctionExpression(node)) return undefined;
    if (!t.isBlock(node.body)) return node.body;
    const [only] = node.body.statements;
    return node.body.statements.length === 1 && only !== undefined && t.isReturnStatement(only) ? only.expression : undefined;
  }
}
