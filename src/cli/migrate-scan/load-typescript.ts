import { createRequire } from 'node:module';
import { join } from 'node:path';
import type ts from 'typescript';
import { MigrateScanError } from './scan-error.js';

let typescript: typeof ts | undefined;

/**
 * Loads the optional `typescript` peer dependency on first use, from this package's location and then
 * from the current directory (a globally installed CLI scanning a project that has TypeScript).
 *
 * @throws {MigrateScanError} code `TYPESCRIPT_MISSING` when neither place has it.
 */
export function loadTypeScript(): typeof ts {
  if (typescript !== undefined) return typescript;
  let lastError: unknown;
  for (const base of [import.meta.url, join(process.cwd(), 'package.json')]) {
    try {
      typescript = createRequire(base)('typescript') as typeof ts;
      return typescript;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw error;
      lastError = error;
    }
  }
  throw new MigrateScanError(
    'TYPESCRIPT_MISSING',
    'cannot load the `typescript` package, which parses the sources (an optional peer dependency of ' +
      '@codecheck/db): install it with `npm install --save-dev typescript`',
    { cause: lastError },
  );
}
