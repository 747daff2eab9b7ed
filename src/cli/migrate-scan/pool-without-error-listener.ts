import type ts from 'typescript';
import type { SourceAnalysis } from './analysis.js';
import { poolConstructions, poolName } from './pool-constructions.js';
import { holderOf, outermost, receiverCall, storedIn, type RuleFinding } from './rules.js';

const LISTEN_METHODS = new Set(['on', 'once', 'addListener', 'prependListener', 'prependOnceListener']);

/**
 * Rule `pool-without-error-listener`: pg emits a pooled idle client's error (server restart, network
 * cut) on the pool, and an EventEmitter `error` with no listener crashes the process.
 */
export function poolWithoutErrorListener(analysis: SourceAnalysis): RuleFinding[] {
  return poolConstructions(analysis).flatMap((node): RuleFinding[] => {
    if (isErrorListenerCall(analysis, outermost(analysis, node))) return []; // new Pool().on('error', ...)
    const stored = storedIn(analysis, node);
    const symbol = stored === undefined ? undefined : analysis.symbolOf(stored);
    const references = symbol === undefined ? [] : analysis.references(symbol);
    if (references.some((reference) => isErrorListenerCall(analysis, holderOf(analysis, reference)))) return [];
    const name = poolName(analysis, node);
    return [
      {
        rule: 'pool-without-error-listener',
        node,
        message:
          "pg Pool has no 'error' listener: an idle client's lost connection is emitted on the pool and crashes the process",
        before: analysis.snippet(analysis.statementOf(node)),
        after: [
          `${name}.on('error', (err) => logger.warn({ err }, 'idle PostgreSQL client failed'));`,
          '// or new Database(), which listens on every pool and client and logs instead of crashing',
        ].join('\n'),
      },
    ];
  });
}

/** Whether `holder` is the receiver of `.on('error', ...)` (or once/addListener). */
function isErrorListenerCall(analysis: SourceAnalysis, holder: ts.Node): boolean {
  const call = receiverCall(analysis, holder, LISTEN_METHODS);
  return call !== undefined && analysis.literalText(call.arguments[0]) === 'error';
}
