import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../../src');

/** Every .ts file below `dir`, as paths relative to `root`. */
function sourceFiles(dir: string, root = dir): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path, root);
    return entry.name.endsWith('.ts') ? [relative(root, path)] : [];
  });
}

/** The relative imports of one file (type-only imports too: they are circles for a reader), as src-relative .ts paths. */
function relativeImports(file: string, text: string): string[] {
  const specifiers = [...text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^;]*?\bfrom\s+'(\.{1,2}\/[^']+)'/g)].map((m) => m[1]!);
  return specifiers.map((specifier) => relative(SRC, resolve(SRC, dirname(file), specifier)).replace(/\.js$/, '.ts'));
}

/** The circles of a directed graph: one list of nodes per strongly connected component of two or more (or a self-import). */
function findCircles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  // Tarjan's algorithm.
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const circles: string[][] = [];
  let next = 0;
  const visit = (node: string): void => {
    index.set(node, next);
    low.set(node, next++);
    stack.push(node);
    onStack.add(node);
    for (const to of graph.get(node) ?? []) {
      if (!index.has(to)) {
        visit(to);
        low.set(node, Math.min(low.get(node)!, low.get(to)!));
      } else if (onStack.has(to)) low.set(node, Math.min(low.get(node)!, index.get(to)!));
    }
    if (low.get(node) !== index.get(node)) return;
    const component: string[] = [];
    let member: string;
    do {
      member = stack.pop()!;
      onStack.delete(member);
      component.push(member);
    } while (member !== node);
    if (component.length > 1 || (graph.get(node) ?? []).includes(node)) circles.push(component.sort());
  };
  for (const node of graph.keys()) if (!index.has(node)) visit(node);
  return circles;
}

describe('import circles', () => {
  it('finds a circle of three files and a file that imports itself, and nothing in a chain', () => {
    const graph = new Map([
      ['a.ts', ['b.ts']],
      ['b.ts', ['c.ts']],
      ['c.ts', ['a.ts', 'd.ts']],
      ['d.ts', ['e.ts']],
      ['e.ts', []],
      ['f.ts', ['f.ts']],
    ]);
    expect(findCircles(graph)).toEqual([['a.ts', 'b.ts', 'c.ts'], ['f.ts']]);
  });

  it('reads value, type-only and re-export imports, resolving .js to .ts', () => {
    const text = [
      "import { a } from './a.js';",
      "import type { B } from '../pool/b.js';",
      "import {\n  c,\n  type C,\n} from './c.js';",
      "export { d } from './d.js';",
      "import pg from 'pg';",
    ].join('\n');
    expect(relativeImports('replicas/x.ts', text)).toEqual(['replicas/a.ts', 'pool/b.ts', 'replicas/c.ts', 'replicas/d.ts']);
  });

  it('src has no import circle, type-only imports included', () => {
    const files = sourceFiles(SRC);
    const graph = new Map(files.map((file) => [file, relativeImports(file, readFileSync(join(SRC, file), 'utf8'))]));
    for (const [file, imports] of graph)
      for (const target of imports) expect(files, `${file} imports ${target}`).toContain(target);
    expect(findCircles(graph)).toEqual([]);
  });
});
