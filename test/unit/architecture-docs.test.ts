import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../support/test-database.js';

/** Every .ts file under `dir`, as a path relative to src/. */
function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [relative(join(ROOT, 'src'), path)] : [];
  });
}

describe('docs/architecture.md', () => {
  const text = readFileSync(join(ROOT, 'docs', 'architecture.md'), 'utf8');

  it('names every file of src in its folder map, so a contributor finds where each concept lives', () => {
    const unnamed = sourceFiles(join(ROOT, 'src')).filter((path) => {
      const name = path.split(/[\\/]/).pop()!;
      return !text.includes(`\`${name}\``) && !text.includes(`\`src/${path.split('\\').join('/')}\``);
    });
    expect(unnamed).toEqual([]);
  });

  it('points at no file of the repository that does not exist', () => {
    const mentioned = [...text.matchAll(/`((?:src|test|bench|scripts|examples|docs)\/[\w./-]+\.(?:ts|md|mjs))`/g)].map(
      (match) => match[1]!,
    );
    const missing = mentioned.filter((path) => {
      try {
        readFileSync(join(ROOT, path));
        return false;
      } catch {
        return true;
      }
    });
    expect(missing).toEqual([]);
  });
});
