/**
 * Which `typescript` package migrate-scan parses with: resolved for real (createRequire) from scratch
 * projects, one with a `typescript` 7.0.2 package that, like the real one, has no JavaScript compiler
 * API, and one with no `typescript` at all.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runMigrateScan, SCAN_EXIT } from '../../src/cli/migrate-scan/scan-command.js';

const LEAK = 'export const f = (pool, id) => pool.query(`SELECT * FROM t WHERE id = ${id}`);\n';

async function run(argv: string[], typescriptFrom: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const io = {
    stdout: (s: string) => {
      stdout += s;
    },
    stderr: (s: string) => {
      stderr += s;
    },
  };
  const code = await runMigrateScan(argv, io, { typescriptFrom });
  return { code, stdout, stderr };
}

describe('migrate-scan and the typescript package it finds', () => {
  let root: string;
  let withTs7: string;
  let withoutTs: string;

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'migrate-scan-typescript-'));
    withTs7 = join(root, 'ts7-app');
    withoutTs = join(root, 'no-ts-app');
    for (const app of [withTs7, withoutTs]) {
      await mkdir(join(app, 'src'), { recursive: true });
      await mkdir(join(app, 'empty'), { recursive: true });
      await writeFile(join(app, 'package.json'), '{ "name": "app", "private": true }\n');
      await writeFile(join(app, 'src/leak.js'), LEAK);
    }
    const typescript = join(withTs7, 'node_modules/typescript');
    await mkdir(typescript, { recursive: true });
    await mkdir(join(typescript, 'lib'), { recursive: true });
    // As TypeScript 7.0.2's package: `require('typescript')` gives lib/version.cjs, which exports the
    // version and nothing else (the compiler is native; its JavaScript API is under ./unstable/*).
    const manifest = { name: 'typescript', version: '7.0.2', type: 'module', exports: { '.': './lib/version.cjs' } };
    await writeFile(join(typescript, 'package.json'), `${JSON.stringify(manifest)}\n`);
    await writeFile(join(typescript, 'lib/version.cjs'), "module.exports = { version: '7.0.2', versionMajorMinor: '7.0' };\n");
  });

  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('exits 2 naming the version and telling to install typescript@5 when typescript has no compiler API (7.x)', async () => {
    const { code, stdout, stderr } = await run([join(withTs7, 'src')], [join(withTs7, 'package.json')]);
    expect(code).toBe(SCAN_EXIT.usage);
    expect(stdout).toBe('');
    expect(stderr).toBe(
      'migrate-scan: the installed `typescript` package (version 7.0.2, in ' +
        `${join(withTs7, 'node_modules/typescript')}) has no JavaScript compiler API that the scanner can use to parse ` +
        'the sources (TypeScript 7 has none): install TypeScript 5 or 6 (the scanner supports typescript >=5.0 <7) ' +
        'with `npm install --save-dev typescript@5`\n',
    );
  });

  it('exits 2 explaining how to install typescript when no typescript package can be found', async () => {
    const { code, stdout, stderr } = await run([join(withoutTs, 'src')], [join(withoutTs, 'package.json')]);
    expect(code).toBe(SCAN_EXIT.usage);
    expect(stdout).toBe('');
    expect(stderr).toBe(
      'migrate-scan: cannot load the `typescript` package, which parses the sources (an optional peer ' +
        'dependency of @codecheck/db): install TypeScript 5 or 6 (the scanner supports typescript >=5.0 <7) ' +
        'with `npm install --save-dev typescript@5`\n',
    );
  });

  it('exits 2 for a missing or unusable typescript even when there is no source file to scan', async () => {
    const unusable = await run([join(withTs7, 'empty')], [join(withTs7, 'package.json')]);
    expect(unusable.code).toBe(SCAN_EXIT.usage);
    expect(unusable.stderr).toContain('(version 7.0.2, in ');
    const missing = await run([join(withoutTs, 'empty')], [join(withoutTs, 'package.json')]);
    expect(missing.code).toBe(SCAN_EXIT.usage);
    expect(missing.stderr).toContain('cannot load the `typescript` package');
    expect(missing.stdout).toBe('');
  });

  it('uses the first usable typescript of the places it searches, past one without the compiler API', async () => {
    const { code, stdout } = await run([join(withTs7, 'src')], [join(withTs7, 'package.json'), fileURLToPath(import.meta.url)]);
    expect(code).toBe(SCAN_EXIT.findings);
    expect(stdout).toContain('sql-interpolation');
  });
});
