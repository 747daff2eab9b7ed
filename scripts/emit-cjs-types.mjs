#!/usr/bin/env node
/**
 * After `tsc`: writes a CommonJS flavour (`.d.cts`) beside every declaration file in dist/, for the
 * `require` condition of package.json's exports. The package is ESM; Node >= 20.19 loads it through
 * require(), but TypeScript with `module: node16` does not model that and reports TS1479 for a
 * CommonJS consumer reading `.d.ts` files of a `"type": "module"` package. The `.d.cts` copies say the
 * same thing as CommonJS declarations; relative specifiers point at their `.cjs` siblings, which
 * TypeScript resolves to these `.d.cts` files.
 */
/* global process */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const DIST = process.argv[2] ?? 'dist';
// `from './x.js'`, `import('./x.js')` and `declare module './x.js'` with a relative specifier.
const RELATIVE_JS = /(['"])(\.{1,2}\/[^'"]+)\.js\1/g;

let written = 0;
for (const entry of readdirSync(DIST, { recursive: true, encoding: 'utf8' })) {
  if (!entry.endsWith('.d.ts')) continue;
  const source = readFileSync(join(DIST, entry), 'utf8').replace(/^\/\/# sourceMappingURL=.*$/m, '');
  writeFileSync(join(DIST, entry.replace(/\.d\.ts$/, '.d.cts')), source.replace(RELATIVE_JS, '$1$2.cjs$1'));
  written++;
}
if (written === 0) {
  process.exitCode = 1;
  process.stderr.write(`emit-cjs-types: no .d.ts files under ${DIST}; run tsc first\n`);
}
