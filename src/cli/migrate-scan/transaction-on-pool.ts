import type ts from 'typescript';
import type { SourceAnalysis } from './analysis.js';
import { isPoolLike } from './pg-bindings.js';
import type { RuleFinding } from './rules.js';
import { isTransactionControl } from './sql-text.js';

/**
 * Rule `transaction-on-pool`: BEGIN/COMMIT/ROLLBACK through `pool.query`. Each call checks out
 * whichever connection is free, so the transaction does not hold the statements around it. Reported
 * once per pool and function, at its first transaction-control statement. The suggestion is the
 * statements between BEGIN and COMMIT moved into `db.withDb(false, async (client) => ...)`, as written
 * (comments, loops, branches and results used later all kept); `db.executeTransaction([...])` is
 * offered first only when they are independent statements with constant SQL whose results are unused.
 */
export function transactionOnPool(analysis: SourceAnalysis): RuleFinding[] {
  const groups = new Map<string, ts.CallExpression[]>();
  for (const call of analysis.calls) {
    const method = analysis.methodCall(call);
    const text = sqlTextOf(analysis, call);
    if (method?.name !== 'query' || text === undefined || !isTransactionControl(text) || !isPoolLike(analysis, method.receiver))
      continue;
    const scope = analysis.enclosingFunction(call) ?? analysis.sourceFile;
    const key = `${scope.pos}:${method.receiver.getText(analysis.sourceFile)}`;
    groups.set(key, [...(groups.get(key) ?? []), call]);
  }
  return [...groups.values()].map((controls): RuleFinding => {
    const [first] = controls as [ts.CallExpression, ...ts.CallExpression[]];
    const receiver = analysis.methodCall(first)?.receiver.getText(analysis.sourceFile) ?? 'pool';
    const statements = analysis.calls.filter(
      (call) =>
        analysis.enclosingFunction(call) === analysis.enclosingFunction(first) &&
        analysis.methodCall(call)?.name === 'query' &&
        analysis.methodCall(call)?.receiver.getText(analysis.sourceFile) === receiver,
    );
    const keywords = [
      ...new Set(controls.map((call) => (sqlTextOf(analysis, call) ?? '').trim().split(/\s+/)[0]!.toUpperCase())),
    ];
    return {
      rule: 'transaction-on-pool',
      node: first,
      message:
        `${listWords(keywords)} sent through ${receiver}.query: each pool.query may run on a different connection, ` +
        'so the statements between them are not one transaction',
      before: analysis.statementLines(statements),
      after: suggestion(analysis, controls, receiver),
    };
  });
}

function suggestion(analysis: SourceAnalysis, controls: readonly ts.CallExpression[], receiver: string): string {
  const work = transactionBody(analysis, controls);
  const independent = independentSteps(analysis, work, receiver);
  const usesReturn = work.some((statement) => analysis.ts.isReturnStatement(statement));
  const body =
    work.length === 0
      ? ['  // the statements of the transaction, through client.query(text, params)']
      : work.flatMap((statement) =>
          rewritten(analysis, statement, receiver)
            .split('\n')
            .map((line) => `  ${line}`.trimEnd()),
        );
  const withDb = [
    `${usesReturn ? 'return ' : ''}await db.withDb(false, async (client) => {`,
    ...body,
    '}); // BEGIN before, COMMIT after, ROLLBACK when the function throws',
  ];
  if (independent === undefined) return withDb.join('\n');
  return [
    'await db.executeTransaction([',
    ...independent.map((step) => `  ${step},`),
    ']); // one connection, all or nothing',
  ].join('\n');
}

/**
 * The statements the transaction wraps: those after BEGIN and before COMMIT in COMMIT's block (all of
 * that block before COMMIT when BEGIN sits outside it, as in `BEGIN; try { ...; COMMIT }`), then those
 * after COMMIT in the same block (the `return` of a result); control statements left out.
 */
function transactionBody(analysis: SourceAnalysis, controls: readonly ts.CallExpression[]): ts.Statement[] {
  const t = analysis.ts;
  const texts = controls.map((call) => (sqlTextOf(analysis, call) ?? '').trim().toLowerCase());
  const begin = controls.find((_, index) => /^(?:begin|start)/.test(texts[index]!));
  const commit = controls.find((_, index) => /^(?:commit|end)/.test(texts[index]!));
  if (begin === undefined || commit === undefined) return [];
  const commitStatement = analysis.statementOf(commit);
  const block = commitStatement.parent;
  if (!t.isBlock(block) && !t.isSourceFile(block)) return [];
  const statements = [...block.statements];
  const beginStatement = analysis.statementOf(begin);
  const from = statements.includes(beginStatement as ts.Statement) ? statements.indexOf(beginStatement as ts.Statement) + 1 : 0;
  const isControl = (statement: ts.Statement): boolean => controls.some((call) => analysis.contains(statement, call));
  return statements.slice(from).filter((statement) => !isControl(statement));
}

/** A statement's text with its leading comments, dedented, every `<receiver>.query(` turned into `client.query(`. */
function rewritten(analysis: SourceAnalysis, statement: ts.Statement, receiver: string): string {
  const t = analysis.ts;
  const source = analysis.sourceFile;
  const edits: { from: number; to: number }[] = [];
  const visit = (node: ts.Node): void => {
    const method = t.isCallExpression(node) ? analysis.methodCall(node) : undefined;
    if (method?.name === 'query' && method.receiver.getText(source) === receiver) {
      edits.push({ from: method.receiver.getStart(source), to: method.receiver.end });
    }
    t.forEachChild(node, visit);
  };
  visit(statement);
  const start = statement.getStart(source);
  let from = statement.pos;
  const newline = source.text.indexOf('\n', from);
  if (newline >= 0 && newline < start) from = newline + 1; // what follows the previous statement on its line stays there
  let raw = source.text.slice(from, statement.end);
  for (const edit of edits.sort((a, b) => b.from - a.from)) {
    raw = `${raw.slice(0, edit.from - from)}client${raw.slice(edit.to - from)}`;
  }
  const indent = source.getLineAndCharacterOfPosition(start).character;
  const lines = raw.split(/\r?\n/).filter((line, index, all) => index > 0 || line.trim() !== '' || all.length === 1);
  return lines
    .map((line) => line.replace(new RegExp(`^[ \\t]{0,${indent}}`), '').trimEnd())
    .join('\n')
    .replace(/^\n+/, '');
}

/**
 * `{ text, params }` steps when every statement is `await <pool>.query('constant', [...])` whose
 * result is unused: nothing depends on an earlier result, and no loop or branch decides what runs.
 */
function independentSteps(analysis: SourceAnalysis, work: readonly ts.Statement[], receiver: string): string[] | undefined {
  const t = analysis.ts;
  if (work.length === 0) return undefined;
  const steps: string[] = [];
  for (const statement of work) {
    if (!t.isExpressionStatement(statement)) return undefined;
    const expression = analysis.unwrap(statement.expression);
    const call = t.isAwaitExpression(expression) ? analysis.unwrap(expression.expression) : undefined;
    if (call === undefined || !t.isCallExpression(call)) return undefined;
    const method = analysis.methodCall(call);
    if (method?.name !== 'query' || method.receiver.getText(analysis.sourceFile) !== receiver) return undefined;
    const [text, values] = call.arguments;
    if (sqlTextOf(analysis, call) === undefined || text === undefined || !t.isStringLiteralLike(analysis.unwrap(text)))
      return undefined;
    steps.push(
      values === undefined
        ? `{ text: ${analysis.text(text)} }`
        : `{ text: ${analysis.text(text)}, params: ${analysis.text(values)} }`,
    );
  }
  return steps;
}

/** The constant SQL text of `x.query('...')` or `x.query({ text: '...' })`. */
function sqlTextOf(analysis: SourceAnalysis, call: ts.CallExpression): string | undefined {
  const t = analysis.ts;
  const argument = call.arguments[0] === undefined ? undefined : analysis.unwrap(call.arguments[0]);
  if (argument === undefined || !t.isObjectLiteralExpression(argument)) return analysis.literalText(argument);
  const text = argument.properties.find((property) => property.name?.getText() === 'text');
  return text !== undefined && t.isPropertyAssignment(text) ? analysis.literalText(text.initializer) : undefined;
}

/** `A`, `A and B`, `A, B and C`. */
function listWords(words: readonly string[]): string {
  return words.length < 2 ? words.join('') : `${words.slice(0, -1).join(', ')} and ${words.at(-1)}`;
}
