import type ts from 'typescript';
import type { SourceAnalysis } from './analysis.js';

/** Calls that log and return: they do not throw in practice, so a release after them still runs. */
const LOGGER_NAMES = /^(?:console|logger|log|this\.logger|this\.log|fastify\.log|app\.log|req\.log)$/;
const LOG_FUNCTIONS = new Set(['debug', 'log']);

/**
 * How one checked-out client is given back: the release calls found, and the code that decides
 * whether every path reaches one. Shared by the three `connect` forms of `unreleased-client`.
 */
export interface ReleasePlan {
  /** Calls that give the client back: `client.release()`, or `done()` in the callback form. */
  readonly releases: readonly ts.CallExpression[];
  /**
   * Code in which a release at the top level runs on every path, provided nothing before it leaves
   * early (`return`, `throw`, or — when `isThrowSensitive` — a call that may throw): statement lists,
   * or an arrow's expression body.
   */
  readonly straight: readonly (readonly ts.Statement[] | ts.Expression)[];
  /** Whether a statement before the release that may throw (an await, a call) breaks the path. */
  readonly isThrowSensitive: boolean;
  /** A node-style callback's error parameter, whose guard (`if (err) return`) leaves no client behind. */
  readonly connectError?: ts.Symbol;
}

/** Whether every path through the plan releases the client. */
export function releasesOnEveryPath(analysis: SourceAnalysis, plan: ReleasePlan): boolean {
  const { releases } = plan;
  if (releases.some((release) => isInFinally(analysis, release))) return true;
  const failures = releases.filter((release) => isInFailurePath(analysis, release));
  if (failures.length > 0 && failures.length < releases.length) return true;
  return releases.some((release) => isUnconditional(analysis, plan, release));
}

/** In a `finally` block or a `.finally(() => ...)` callback. */
function isInFinally(analysis: SourceAnalysis, node: ts.Node): boolean {
  const t = analysis.ts;
  for (let current: ts.Node = node; current.parent !== undefined; current = current.parent) {
    const parent = current.parent;
    if (t.isTryStatement(parent) && parent.finallyBlock === current) return true;
    if (t.isCallExpression(parent) && parent.arguments.includes(current as ts.Expression)) {
      if (analysis.methodCall(parent)?.name === 'finally') return true;
    }
  }
  return false;
}

/** In a `catch` block, a `.catch(fn)` or `.then(_, fn)` callback, or a node-style `if (err) { ... }` branch. */
export function isInFailurePath(analysis: SourceAnalysis, node: ts.Node): boolean {
  const t = analysis.ts;
  for (let current: ts.Node = node; current.parent !== undefined; current = current.parent) {
    const parent = current.parent;
    if (t.isCatchClause(parent)) return true;
    if (t.isCallExpression(parent) && parent.arguments.includes(current as ts.Expression)) {
      const name = analysis.methodCall(parent)?.name;
      if (name === 'catch' || (name === 'then' && parent.arguments[1] === current)) return true;
    }
    if (t.isIfStatement(parent) && parent.thenStatement === current && isErrorTest(analysis, parent.expression)) return true;
  }
  return false;
}

/** `err`, `error`, `e`, `err != null`: a test of a node-style callback's error argument. */
function isErrorTest(analysis: SourceAnalysis, condition: ts.Expression): boolean {
  const t = analysis.ts;
  const target = analysis.unwrap(condition);
  const tested = t.isBinaryExpression(target) ? analysis.unwrap(target.left) : target;
  if (!t.isIdentifier(tested)) return false;
  const declaration = analysis.declarationOf(tested);
  return (
    declaration !== undefined &&
    t.isParameter(declaration) &&
    analysis.isFunction(declaration.parent) &&
    declaration.parent.parameters[0] === declaration
  );
}

/** A release at the top level of a straight body, with nothing before it that leaves the body early. */
function isUnconditional(analysis: SourceAnalysis, plan: ReleasePlan, release: ts.CallExpression): boolean {
  const t = analysis.ts;
  const statement = analysis.statementOf(release);
  // An expression-bodied arrow whose body is the release: `(client) => client.release()`.
  if (plan.straight.some((body) => !Array.isArray(body) && analysis.unwrap(body as ts.Expression) === release)) return true;
  const body = plan.straight.find(
    (candidate): candidate is readonly ts.Statement[] =>
      Array.isArray(candidate) && (candidate as readonly ts.Statement[]).includes(statement as ts.Statement),
  );
  if (body === undefined) return false;
  for (const before of body) {
    if (before === statement) return true;
    if (plan.connectError !== undefined && t.isIfStatement(before) && mentions(analysis, before.expression, plan.connectError)) {
      continue; // `if (err) return next(err)`: on a connect error there is no client to release
    }
    if (canLeave(analysis, before, plan.isThrowSensitive)) return false;
  }
  return false;
}

/** Whether a statement may leave the body before the next one: a return, a throw, or (if sensitive) a throwing call. */
function canLeave(analysis: SourceAnalysis, statement: ts.Node, isThrowSensitive: boolean): boolean {
  const t = analysis.ts;
  let leaves = false;
  const visit = (node: ts.Node): void => {
    if (leaves || analysis.isFunction(node)) return;
    if (t.isReturnStatement(node) || t.isThrowStatement(node)) leaves = true;
    else if (isThrowSensitive && (t.isAwaitExpression(node) || (t.isCallExpression(node) && !isLogCall(analysis, node)))) {
      leaves = true;
    } else t.forEachChild(node, visit);
  };
  visit(statement);
  return leaves;
}

function isLogCall(analysis: SourceAnalysis, call: ts.CallExpression): boolean {
  const t = analysis.ts;
  const callee = analysis.unwrap(call.expression);
  if (t.isIdentifier(callee)) return LOG_FUNCTIONS.has(callee.text);
  return t.isPropertyAccessExpression(callee) && LOGGER_NAMES.test(callee.expression.getText(analysis.sourceFile));
}

function mentions(analysis: SourceAnalysis, node: ts.Node, symbol: ts.Symbol): boolean {
  const t = analysis.ts;
  let found = false;
  const visit = (child: ts.Node): void => {
    if (found) return;
    if (t.isIdentifier(child) && analysis.symbolOf(child) === symbol) found = true;
    else t.forEachChild(child, visit);
  };
  visit(node);
  return found;
}
