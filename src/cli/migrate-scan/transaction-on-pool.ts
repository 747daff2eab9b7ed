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
 * A COMMIT or ROLLBACK inside a branch keeps the branches (see {@link branchedPlan}), or, where that
 * cannot be done without changing what the code does, the finding says so and suggests no code.
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
    const branched = branchedPlan(analysis, controls);
    const byHand =
      typeof branched === 'string'
        ? `; ${branched}, which the suggestion cannot rewrite: move the statements into withDb by hand`
        : '';
    return {
      rule: 'transaction-on-pool',
      node: first,
      message:
        `${listWords(keywords)} sent through ${receiver}.query: each pool.query may run on a different connection, ` +
        `so the statements between them are not one transaction${byHand}`,
      before: analysis.statementLines(statements),
      after:
        branched === undefined
          ? suggestion(analysis, controls, receiver)
          : typeof branched === 'string'
            ? byHandSuggestion(branched)
            : branchedSuggestion(analysis, branched, receiver),
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

/**
 * A statement's text with its leading comments, dedented, every `<receiver>.query(` turned into
 * `client.query(`, and each node in `replacements` replaced by its text.
 */
function rewritten(
  analysis: SourceAnalysis,
  statement: ts.Statement,
  receiver: string,
  replacements: ReadonlyMap<ts.Node, string> = new Map(),
): string {
  const t = analysis.ts;
  const source = analysis.sourceFile;
  const edits: { from: number; to: number; text: string }[] = [];
  const visit = (node: ts.Node): void => {
    const replacement = replacements.get(node);
    if (replacement !== undefined) {
      edits.push({ from: node.getStart(source), to: node.end, text: replacement });
      return;
    }
    const method = t.isCallExpression(node) ? analysis.methodCall(node) : undefined;
    if (method?.name === 'query' && method.receiver.getText(source) === receiver) {
      edits.push({ from: method.receiver.getStart(source), to: method.receiver.end, text: 'client' });
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
    raw = `${raw.slice(0, edit.from - from)}${edit.text}${raw.slice(edit.to - from)}`;
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

/** A transaction whose COMMIT or ROLLBACK sits in a branch, rewritten with its control flow kept. */
interface BranchedPlan {
  /** Every statement of BEGIN's block after BEGIN: what the branches decide runs inside it. */
  readonly work: ts.Statement[];
  /** COMMIT and ROLLBACK statements (and the return after a ROLLBACK) and what replaces each. */
  readonly replacements: Map<ts.Node, string>;
  readonly usesReturn: boolean;
  /** A ROLLBACK followed by a return: the callback throws and a catch around withDb returns the value. */
  readonly rollsBackAndReturns: boolean;
}

/**
 * Undefined when no COMMIT, and no ROLLBACK outside a catch, sits in a branch below BEGIN's block (the
 * plain rewrite applies). Otherwise the plan that keeps the branches: COMMIT becomes a comment (withDb
 * commits when the callback returns), a ROLLBACK before a `throw` a comment, a ROLLBACK before a
 * `return` a throw that withDb turns into a ROLLBACK; or, when that would change what the code does,
 * the reason why not (the finding then says to do it by hand).
 */
function branchedPlan(analysis: SourceAnalysis, controls: readonly ts.CallExpression[]): BranchedPlan | string | undefined {
  const t = analysis.ts;
  const keyword = (call: ts.CallExpression): string => (sqlTextOf(analysis, call) ?? '').trim().toLowerCase();
  const begin = controls.find((call) => /^(?:begin|start)/.test(keyword(call)));
  if (begin === undefined) return undefined;
  const beginStatement = analysis.statementOf(begin);
  const block = beginStatement.parent;
  if (!t.isBlock(block) && !t.isSourceFile(block)) return undefined;
  const below = (node: ts.Node, test: (ancestor: ts.Node) => boolean): boolean => {
    for (let current = node.parent; current !== undefined && current !== block; current = current.parent) {
      if (test(current)) return true;
    }
    return false;
  };
  const isBranch = (node: ts.Node): boolean =>
    t.isIfStatement(node) || t.isSwitchStatement(node) || t.isIterationStatement(node, false) || t.isConditionalExpression(node);
  const inside = controls.filter((call) => call !== begin && call.pos > beginStatement.end && call.end <= block.end);
  const isEnd = (call: ts.CallExpression): boolean =>
    /^(?:commit|end)\b/.test(keyword(call)) ||
    (/^(?:rollback|abort)\b/.test(keyword(call)) && !below(call, (node) => t.isCatchClause(node)));
  if (!inside.some((call) => isEnd(call) && below(call, isBranch))) return undefined;
  const line = (node: ts.Node): number => analysis.position(node).line;
  const replacements = new Map<ts.Node, string>();
  let rollsBackAndReturns = false;
  for (const call of inside) {
    const text = keyword(call);
    const word = text.split(/\s+/)[0]!.toUpperCase();
    const statement = analysis.statementOf(call);
    const expression = t.isExpressionStatement(statement) ? analysis.unwrap(statement.expression) : undefined;
    const awaited =
      expression !== undefined && t.isAwaitExpression(expression) ? analysis.unwrap(expression.expression) : expression;
    if (awaited !== call) return `the ${word} on line ${line(call)} is not a statement of its own`;
    if (/^(?:commit|end)\b/.test(text)) {
      replacements.set(statement, `// ${word}: withDb commits when this callback returns`);
      continue;
    }
    if (!/^(?:rollback|abort)\s*;?$/.test(text)) return `the ${word} on line ${line(call)} is not a plain COMMIT or ROLLBACK`;
    if (below(call, (node) => t.isCatchClause(node)))
      return `the ROLLBACK on line ${line(call)} is in a catch inside the transaction`;
    const siblings = t.isBlock(statement.parent) || t.isCaseClause(statement.parent) ? statement.parent.statements : undefined;
    const next = siblings?.[siblings.indexOf(statement as ts.Statement) + 1];
    if (next !== undefined && t.isThrowStatement(next)) {
      replacements.set(statement, `// ${word}: withDb rolls back when this callback throws`);
    } else if (next !== undefined && t.isReturnStatement(next)) {
      const value =
        next.expression === undefined
          ? 'undefined'
          : analysis.sourceFile.text.slice(next.expression.getStart(), next.expression.end);
      replacements.set(statement, `rolledBack = { result: ${value} };`);
      replacements.set(
        next,
        `throw new Error('${word}'); // withDb rolls back when this callback throws; the catch below returns`,
      );
      rollsBackAndReturns = true;
    } else {
      return `the ROLLBACK on line ${line(call)} is followed by code that goes on inside the function`;
    }
  }
  const work = [...(block.statements as readonly ts.Statement[])].slice(
    block.statements.indexOf(beginStatement as ts.Statement) + 1,
  );
  let usesReturn = false;
  let escapes = false;
  const visit = (node: ts.Node, loops: number): void => {
    if (analysis.isFunction(node) || t.isClassLike(node)) return;
    if (t.isReturnStatement(node) && !replacements.has(node)) usesReturn = true;
    if ((t.isBreakStatement(node) || t.isContinueStatement(node)) && (loops === 0 || node.label !== undefined)) escapes = true;
    const nested = loops + (t.isIterationStatement(node, false) || t.isSwitchStatement(node) ? 1 : 0);
    t.forEachChild(node, (child) => visit(child, nested));
  };
  for (const statement of work) visit(statement, 0);
  if (escapes) return 'a break or continue leaves the transaction';
  const last = work.at(-1);
  const isBody = analysis.isFunction(block.parent) && block.parent.body === block;
  if (usesReturn && !isBody && !(last !== undefined && (t.isReturnStatement(last) || t.isThrowStatement(last)))) {
    return 'it returns on some paths and goes on after the block on others';
  }
  return { work, replacements, usesReturn, rollsBackAndReturns };
}

/** The withDb rewrite of a {@link BranchedPlan}: the branches as written, inside the callback. */
function branchedSuggestion(analysis: SourceAnalysis, plan: BranchedPlan, receiver: string): string {
  const body = plan.work.flatMap((statement) =>
    rewritten(analysis, statement, receiver, plan.replacements)
      .split('\n')
      .map((line) => `  ${line}`.trimEnd()),
  );
  const call = [
    `${plan.usesReturn ? 'return ' : ''}await db.withDb(false, async (client) => {`,
    ...body,
    '}); // BEGIN before, COMMIT when the callback returns, ROLLBACK when it throws',
  ];
  if (!plan.rollsBackAndReturns) return call.join('\n');
  const isTypeScript = /\.[cm]?tsx?$/.test(analysis.sourceFile.fileName);
  return [
    `let rolledBack${isTypeScript ? ': { result: unknown } | undefined' : ''}; // set where the code rolled back, with what it returns`,
    'try {',
    ...call.map((line) => `  ${line}`),
    '} catch (err) {',
    '  if (rolledBack === undefined) throw err;',
    '  return rolledBack.result; // withDb rolled back',
    '}',
  ].join('\n');
}

/** No code: why the branches cannot be rewritten as they are, and what to do by hand. */
function byHandSuggestion(reason: string): string {
  return [
    `// no rewrite suggested: ${reason}`,
    '// move the statements after BEGIN into db.withDb(false, async (client) => { ... }) by hand, keeping the',
    '// branches: withDb commits when the callback returns and rolls back when it throws',
  ].join('\n');
}
