import type ts from 'typescript';
import type { SourceAnalysis } from './analysis.js';
import { pgExportOf } from './pg-bindings.js';
import { outermost, storedIn } from './rules.js';

/** Every `new Pool(...)` / `new pg.Pool(...)` whose class comes from one of pg's entry points. */
export function poolConstructions(analysis: SourceAnalysis): ts.NewExpression[] {
  return analysis.constructions.filter((node) => pgExportOf(analysis, node.expression) === 'Pool');
}

/** How suggestions name the pool: its variable or `this.pool`, else `pool`. */
export function poolName(analysis: SourceAnalysis, node: ts.NewExpression): string {
  return storedIn(analysis, node)?.getText(analysis.sourceFile) ?? 'pool';
}

/** Whether a value is passed to a call or constructor, directly or inside an object or array literal. */
export function isHandedOver(analysis: SourceAnalysis, node: ts.Node): boolean {
  const t = analysis.ts;
  let current = outermost(analysis, node);
  for (;;) {
    const parent = current.parent;
    if ((t.isCallExpression(parent) || t.isNewExpression(parent)) && parent.expression !== current) return true;
    if (t.isPropertyAssignment(parent) && parent.initializer === current) current = outermost(analysis, parent.parent);
    else if (t.isShorthandPropertyAssignment(parent)) current = outermost(analysis, parent.parent);
    else if (t.isArrayLiteralExpression(parent)) current = outermost(analysis, parent);
    else return false;
  }
}
