import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type ts from 'typescript';
import { MigrateScanError } from './scan-error.js';

/** The TypeScript releases the scanner works with: their JavaScript compiler API (docs/migration.md). */
const SUPPORTED_TYPESCRIPT = '>=5.0 <7';
const INSTALL_HINT =
  'install TypeScript 5 or 6 (the scanner supports typescript ' +
  `${SUPPORTED_TYPESCRIPT}) with \`npm install --save-dev typescript@5\``;

const loaded = new Map<string, typeof ts>();

/**
 * Loads the optional `typescript` peer dependency, once per list of places: by default from this
 * package's location and then from the current directory (a globally installed CLI scanning a
 * project that has TypeScript). The first package found there whose JavaScript compiler API the
 * scanner can use wins; TypeScript 7 ships without that API, and 4.x lacks parts of it.
 *
 * @param searchFrom files to resolve `typescript` from, in order, as `require` in that file would (a
 *   project's `package.json` stands for the project).
 * @throws {MigrateScanError} code `TYPESCRIPT_MISSING` when no place has a `typescript` package, or
 *   `TYPESCRIPT_UNSUPPORTED` (naming the version found) when none of those found can be used.
 */
export function loadTypeScript(searchFrom: readonly string[] = defaultSearchPlaces()): typeof ts {
  const key = searchFrom.join('\0');
  const cached = loaded.get(key);
  if (cached !== undefined) return cached;
  let lastError: unknown;
  let unusable: string | undefined;
  for (const base of searchFrom) {
    const require = createRequire(base);
    let candidate: unknown;
    try {
      candidate = require('typescript');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw error;
      lastError = error;
      continue;
    }
    if (hasCompilerApi(candidate)) {
      loaded.set(key, candidate);
      return candidate;
    }
    const found = packageOf(require.resolve('typescript'));
    unusable ??= `version ${found.version}, in ${found.directory}`;
  }
  if (unusable !== undefined) {
    throw new MigrateScanError(
      'TYPESCRIPT_UNSUPPORTED',
      `the installed \`typescript\` package (${unusable}) has no JavaScript compiler API that the scanner can ` +
        `use to parse the sources (TypeScript 7 has none): ${INSTALL_HINT}`,
    );
  }
  throw new MigrateScanError(
    'TYPESCRIPT_MISSING',
    'cannot load the `typescript` package, which parses the sources (an optional peer dependency of ' +
      `@codecheck/db): ${INSTALL_HINT}`,
    { cause: lastError },
  );
}

function defaultSearchPlaces(): string[] {
  return [fileURLToPath(import.meta.url), join(process.cwd(), 'package.json')];
}

/**
 * Whether a loaded `typescript` module has what the scanner calls: the parser, the tree walker, the
 * program (for the fallback checker) and the enums, at major version 5 or later (`satisfies`, 4.9+,
 * and the node factories the rules test for).
 */
function hasCompilerApi(candidate: unknown): candidate is typeof ts {
  const api = candidate as Partial<typeof ts> | null;
  if (typeof api !== 'object' || api === null) return false;
  const major = Number(/^(\d+)\./.exec(typeof api.version === 'string' ? api.version : '')?.[1]);
  return (
    major >= 5 &&
    typeof api.createSourceFile === 'function' &&
    typeof api.forEachChild === 'function' &&
    typeof api.createProgram === 'function' &&
    typeof api.isSatisfiesExpression === 'function' &&
    api.ScriptTarget?.Latest !== undefined &&
    api.ScriptKind?.TS !== undefined &&
    api.SyntaxKind?.ThisKeyword !== undefined
  );
}

/**
 * The version and directory of the `typescript` package a resolved entry file belongs to (TypeScript 7's
 * entry is `lib/version.cjs`): the nearest package.json above it named `typescript`.
 */
function packageOf(entry: string): { version: string; directory: string } {
  for (let dir = dirname(entry); dir !== dirname(dir); dir = dirname(dir)) {
    const file = join(dir, 'package.json');
    if (!existsSync(file)) continue;
    try {
      const manifest = JSON.parse(readFileSync(file, 'utf8')) as { name?: unknown; version?: unknown };
      if (manifest.name !== 'typescript') continue;
      return { version: typeof manifest.version === 'string' ? manifest.version : 'unknown', directory: dir };
    } catch {
      break;
    }
  }
  return { version: 'unknown', directory: dirname(entry) };
}
