import type ts from 'typescript';
import type { SourceAnalysis } from './analysis.js';
import { releasesOnEveryPath, type ReleasePlan } from './client-release.js';
import { isPoolLike } from './pg-bindings.js';
import { holderOf, isReadOnlyWork, outermost, queriesThrough, receiverCall, storedIn, type RuleFinding } from './rules.js';

const RELEASE = new Set(['release']);
/** The statement a connection check sends, if any: it proves the server answers and reads nothing. */
const CONNECTION_CHECK = /^\s*select\s+(?:1|true|now\(\)|version\(\)|current_timestamp)\s*(?:as\s+\w+\s*)?;?\s*$/i;

/** One checked-out client: where it came from, how it is named, and how it is given back. */
interface Checkout {
  readonly call: ts.CallExpression;
  readonly client: ts.Symbol | undefined;
  readonly plan: ReleasePlan;
}

/**
 * Rule `unreleased-client`: a client from `pool.connect()` that is not released on every path — never
 * released, or released only when nothing throws. All three forms of pg's API are followed: `await
 * pool.connect()`, `pool.connect().then((client) => ...)` and the callback `pool.connect((err, client,
 * done) => ...)`. Released on every path means: in a `finally` (block or `.finally()` callback), on both
 * the failure path (`catch`, `.catch()`, `if (err)`) and the success path, or first thing, with nothing
 * before it that can throw or return (the connect → log → release startup check). A client that is
 * returned, stored or handed on is the caller's to release and is not reported.
 */
export function unreleasedClient(analysis: SourceAnalysis): RuleFinding[] {
  return analysis.calls.flatMap((call): RuleFinding[] => {
    const method = analysis.methodCall(call);
    if (method?.name !== 'connect' || !isPoolLike(analysis, method.receiver)) return [];
    const checkout = awaited(analysis, call) ?? chained(analysis, call) ?? withCallback(analysis, call);
    if (checkout === undefined || releasesOnEveryPath(analysis, checkout.plan)) return [];
    const scope = analysis.enclosingFunction(call);
    const queries = checkout.client === undefined ? [] : queriesThrough(analysis, checkout.client, undefined);
    const isCheck = queries.every((query) => CONNECTION_CHECK.test(analysis.literalText(query.arguments[0]) ?? 'x'));
    const isReadOnly = checkout.client !== undefined && isReadOnlyWork(analysis, checkout.client, scope);
    const pool = method.receiver.getText(analysis.sourceFile);
    const isNever = checkout.plan.releases.length === 0;
    return [
      {
        rule: 'unreleased-client',
        node: call,
        message: isNever
          ? `client from ${pool}.connect() is never released: each call keeps a connection until the pool is exhausted ` +
            'and later queries wait forever'
          : `client from ${pool}.connect() is released only when nothing throws (not in a finally, nor on the error path): ` +
            'an error leaks the connection',
        before: analysis.snippet(analysis.statementOf(call)),
        after: isCheck
          ? 'await db.ready(); // a connection check: waits until the pool can connect, and releases what it used'
          : [
              `await db.withDb(${isReadOnly}, async (client) => {`,
              '  // the same client.query(text, params) calls, awaited; no release()',
              '}); // withDb releases the connection on every path, and discards it if it broke',
            ].join('\n'),
      },
    ];
  });
}

/** `const client = await pool.connect()` (or a discarded `await pool.connect()`). */
function awaited(analysis: SourceAnalysis, call: ts.CallExpression): Checkout | undefined {
  const t = analysis.ts;
  const awaitExpression = outermost(analysis, call).parent;
  if (call.arguments.length > 0 || !t.isAwaitExpression(awaitExpression)) return undefined;
  const stored = storedIn(analysis, awaitExpression);
  const client = stored === undefined ? undefined : analysis.symbolOf(stored);
  const isDiscarded = t.isExpressionStatement(outermost(analysis, awaitExpression).parent);
  if (client === undefined && !isDiscarded) return undefined;
  const scope = analysis.enclosingFunction(call);
  const references = client === undefined ? [] : analysis.references(client).filter((reference) => reference !== stored);
  if (references.some((reference) => escapes(analysis, holderOf(analysis, reference)))) return undefined;
  const releases = references.flatMap((reference) => receiverCall(analysis, holderOf(analysis, reference), RELEASE) ?? []);
  // A release in another function (a callback handed elsewhere) is trusted: its timing is not visible here.
  if (releases.some((release) => analysis.enclosingFunction(release) !== scope)) return undefined;
  const statement = analysis.statementOf(call);
  const block = statement.parent;
  const statements = t.isBlock(block) || t.isSourceFile(block) || t.isCaseClause(block) ? [...block.statements] : [];
  const rest = statements.slice(statements.indexOf(statement as ts.Statement) + 1);
  return { call, client, plan: { releases, straight: [rest], isThrowSensitive: true } };
}

/** `pool.connect().then((client) => ...)`. */
function chained(analysis: SourceAnalysis, call: ts.CallExpression): Checkout | undefined {
  const t = analysis.ts;
  if (call.arguments.length > 0) return undefined;
  const access = outermost(analysis, call).parent;
  if (!t.isPropertyAccessExpression(access) || access.name.text !== 'then') return undefined;
  const then = access.parent;
  const callback = t.isCallExpression(then) && then.expression === access ? then.arguments[0] : undefined;
  if (callback === undefined || !(t.isArrowFunction(callback) || t.isFunctionExpression(callback))) return undefined;
  const parameter = callback.parameters[0];
  if (parameter !== undefined && !t.isIdentifier(parameter.name)) return undefined;
  const client = parameter === undefined ? undefined : analysis.symbolOf(parameter.name);
  const references = client === undefined ? [] : analysis.references(client).filter((reference) => reference !== parameter?.name);
  if (references.some((reference) => escapes(analysis, holderOf(analysis, reference)))) return undefined;
  const releases = references.flatMap((reference) => receiverCall(analysis, holderOf(analysis, reference), RELEASE) ?? []);
  const straight = t.isBlock(callback.body) ? [[...callback.body.statements]] : [callback.body];
  return { call, client, plan: { releases, straight, isThrowSensitive: true } };
}

/** `pool.connect((err, client, done) => ...)`: released by `done()` or `client.release()`. */
function withCallback(analysis: SourceAnalysis, call: ts.CallExpression): Checkout | undefined {
  const t = analysis.ts;
  const callback = call.arguments.at(-1);
  if (callback === undefined || !(t.isArrowFunction(callback) || t.isFunctionExpression(callback))) return undefined;
  const [errorParameter, clientParameter, doneParameter] = callback.parameters;
  const symbolOfParameter = (parameter: ts.ParameterDeclaration | undefined): ts.Symbol | undefined =>
    parameter !== undefined && t.isIdentifier(parameter.name) ? analysis.symbolOf(parameter.name) : undefined;
  const client = symbolOfParameter(clientParameter);
  const done = symbolOfParameter(doneParameter);
  const clientReferences = client === undefined ? [] : analysis.references(client).slice(1);
  const doneReferences = done === undefined ? [] : analysis.references(done).slice(1);
  const isHandedOn = [...clientReferences, ...doneReferences].some((reference) => {
    const holder = holderOf(analysis, reference);
    return (
      escapes(analysis, holder) ||
      (t.isCallExpression(holder.parent) && holder.parent.arguments.includes(holder as ts.Expression))
    );
  });
  if (isHandedOn) return undefined;
  const releases = [
    ...clientReferences.flatMap((reference) => receiverCall(analysis, holderOf(analysis, reference), RELEASE) ?? []),
    ...doneReferences.flatMap((reference) => {
      const holder = holderOf(analysis, reference);
      return t.isCallExpression(holder.parent) && holder.parent.expression === holder ? [holder.parent] : [];
    }),
  ];
  // A release runs on every path when it is first in the connect callback or in a query's callback.
  const straight: (readonly ts.Statement[] | ts.Expression)[] = [];
  const addBody = (fn: ts.ArrowFunction | ts.FunctionExpression): void => {
    straight.push(t.isBlock(fn.body) ? [...fn.body.statements] : fn.body);
  };
  addBody(callback);
  for (const reference of clientReferences) {
    const query = receiverCall(analysis, holderOf(analysis, reference), new Set(['query']));
    const last = query?.arguments.at(-1);
    if (last !== undefined && (t.isArrowFunction(last) || t.isFunctionExpression(last))) addBody(last);
  }
  const plan: ReleasePlan = { releases, straight, isThrowSensitive: false, connectError: symbolOfParameter(errorParameter) };
  return { call, client, plan };
}

/** Whether the client leaves the function: returned, yielded, assigned, or put in an object or array. */
function escapes(analysis: SourceAnalysis, holder: ts.Node): boolean {
  const t = analysis.ts;
  const parent = holder.parent;
  return (
    t.isReturnStatement(parent) ||
    t.isYieldExpression(parent) ||
    (t.isArrowFunction(parent) && parent.body === holder) ||
    (t.isBinaryExpression(parent) && parent.right === holder && parent.operatorToken.kind === t.SyntaxKind.EqualsToken) ||
    (t.isVariableDeclaration(parent) && parent.initializer === holder) ||
    (t.isPropertyAssignment(parent) && parent.initializer === holder) ||
    t.isShorthandPropertyAssignment(parent) ||
    t.isArrayLiteralExpression(parent)
  );
}
