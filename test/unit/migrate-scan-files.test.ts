import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runMigrateScan, SCAN_EXIT } from '../../src/cli/migrate-scan/scan-command.js';
import { scanPaths } from '../../src/cli/migrate-scan/scan.js';
import { bundleReason } from '../../src/cli/migrate-scan/source-files.js';

const LEAK = 'export const f = (pool, id) => pool.query(`SELECT * FROM t WHERE id = ${id}`);\n';
const CLEAN = "export const g = (pool, id) => pool.query('SELECT * FROM t WHERE id = $1', [id]);\n";
/** Nested deeper than the TypeScript parser's recursion can go: the analysis runs out of stack. */
const DEEP = `${CLEAN}export const x = ${'[\n'.repeat(50_000)}${']\n'.repeat(50_000)}`;
/** One line of 20,000 characters, as minifiers write. */
const MINIFIED = `${LEAK.trim()}var a=${'1+'.repeat(10_000)}1;\n`;

async function run(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runMigrateScan(argv, {
    stdout: (s) => {
      stdout += s;
    },
    stderr: (s) => {
      stderr += s;
    },
  });
  return { code, stdout, stderr };
}

describe('migrate-scan file isolation, bundles and ignore rules', () => {
  let root: string;
  const files: Record<string, string> = {
    '.git/HEAD': 'ref: refs/heads/main\n',
    '.gitignore': 'generated/\n*.gen.js\n!keep.gen.js\n/top-only.js\n',
    'src/leak.js': LEAK,
    'src/clean.js': CLEAN,
    'src/deep.js': DEEP,
    'src/app.min.js': LEAK,
    'src/minified.js': MINIFIED,
    'src/generated/leak.js': LEAK,
    'src/out.gen.js': LEAK,
    'src/keep.gen.js': LEAK,
    'src/top-only.js': LEAK,
    'top-only.js': LEAK,
    'node_modules/dep/leak.js': LEAK,
  };

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'migrate-scan-files-'));
    for (const [file, text] of Object.entries(files)) {
      await mkdir(join(root, file, '..'), { recursive: true });
      await writeFile(join(root, file), text);
    }
  });

  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('reports a file it cannot analyse, with the reason, and scans the others', async () => {
    const report = await scanPaths([join(root, 'src')]);
    expect(report.unscanned).toEqual([
      {
        file: join(root, 'src/deep.js'),
        reason: 'nested too deeply to analyse (the call stack ran out); if it is generated code, it needs no migration',
      },
    ]);
    expect([...new Set(report.findings.map((f) => f.file))]).toEqual([
      join(root, 'src/keep.gen.js'),
      join(root, 'src/leak.js'),
      join(root, 'src/top-only.js'),
    ]);
  });

  it('exits 4 when some files could not be scanned and the rest have findings, 3 when the rest are clean', async () => {
    const withFindings = await run(['--json', join(root, 'src')]);
    expect(withFindings.code).toBe(SCAN_EXIT.unscannedFindings);
    expect(withFindings.code).toBe(4);
    expect(withFindings.stderr).toContain(`migrate-scan: could not scan ${join(root, 'src/deep.js')}: nested too deeply`);
    expect(JSON.parse(withFindings.stdout).unscanned).toHaveLength(1);
    const clean = await run([join(root, 'src/deep.js'), join(root, 'src/clean.js')]);
    expect(clean.code).toBe(3);
    expect(clean.stdout).toBe('migrate-scan: no findings (1 file scanned)\n');
  });

  it('skips minified and bundled files by default, and scans them with --include-bundles', async () => {
    const report = await scanPaths([join(root, 'src')]);
    expect(report.skipped).toEqual([
      { file: join(root, 'src/app.min.js'), reason: 'minified or bundled (by its name)' },
      { file: join(root, 'src/minified.js'), reason: `minified (a line of ${MINIFIED.trim().length} characters)` },
    ]);
    const text = await run([join(root, 'src')]);
    expect(text.stderr).toContain('migrate-scan: skipped 2 bundled or minified files (--include-bundles scans them)\n');
    const included = await scanPaths([join(root, 'src')], { includeBundles: true });
    expect(included.skipped).toEqual([]);
    expect(included.findings.map((f) => f.file)).toContain(join(root, 'src/minified.js'));
  });

  it('tells bundles from sources by name, size and line length', () => {
    expect(bundleReason('a.js', 'x'.repeat(1024 * 1024 + 1))).toBe('bundled or generated (1024 KiB, over 1024 KiB)');
    expect(bundleReason('a.js', Array(100).fill('a'.repeat(299)).join('\n'))).toBe(
      'minified (300 characters per line on average)',
    );
    expect(bundleReason('a.bundle.js', '')).toBe('minified or bundled (by its name)');
    expect(bundleReason('a.js', `${'a'.repeat(120)}\n`.repeat(1000))).toBeUndefined();
  });

  it('honours .gitignore (negation and anchoring included) and skips node_modules inside directories', async () => {
    const report = await scanPaths([root]);
    const found = [...new Set(report.findings.map((f) => f.file.slice(root.length + 1)))];
    expect(found).toEqual(['src/keep.gen.js', 'src/leak.js', 'src/top-only.js']);
  });

  it('scans what ignore rules would skip with --no-ignore, and always scans a path named on the command line', async () => {
    const all = await scanPaths([root], { useIgnoreRules: false });
    const found = [...new Set(all.findings.map((f) => f.file.slice(root.length + 1)))];
    expect(found).toEqual([
      'node_modules/dep/leak.js',
      'src/generated/leak.js',
      'src/keep.gen.js',
      'src/leak.js',
      'src/out.gen.js',
      'src/top-only.js',
      'top-only.js',
    ]);
    const named = await scanPaths([join(root, 'node_modules'), join(root, 'src/out.gen.js')]);
    expect(named.findings.map((f) => f.file.slice(root.length + 1))).toEqual(['node_modules/dep/leak.js', 'src/out.gen.js']);
  });
});

describe('migrate-scan and files that do not parse', () => {
  let root: string;
  /** The stranger's file: `new Pool(` never closed, so the parser made up the rest of the tree. */
  const BROKEN =
    "const { Pool } = require('pg');\nconst pool = new Pool(\nasync function x( { await pool.query('SELECT 1' + y)\n";

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'migrate-scan-syntax-'));
    await writeFile(join(root, 'broken.js'), BROKEN);
    await writeFile(join(root, 'broken.ts'), 'export async function f(pool: Pool) {\n  await pool.query(`SELECT 1`;\n}\n');
    await writeFile(join(root, 'leak.js'), LEAK);
    await writeFile(join(root, 'clean.js'), CLEAN);
  });

  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it("lists a file with syntax errors as unscanned, with line:column and TypeScript's message, and suggests nothing for it", async () => {
    const report = await scanPaths([root]);
    expect(report.unscanned).toEqual([
      { file: join(root, 'broken.js'), reason: "syntax error at 3:27: ',' expected." },
      { file: join(root, 'broken.ts'), reason: "syntax error at 2:30: ')' expected." },
    ]);
    expect(report.scannedFiles).toBe(2);
    expect([...new Set(report.findings.map((f) => f.file))]).toEqual([join(root, 'leak.js')]);
  });

  it('exits 4 when a file does not parse and the rest have findings, 3 when the rest are clean', async () => {
    const withFindings = await run([root]);
    expect(withFindings.code).toBe(SCAN_EXIT.unscannedFindings);
    expect(withFindings.stderr).toBe(
      `migrate-scan: could not scan ${join(root, 'broken.js')}: syntax error at 3:27: ',' expected.\n` +
        `migrate-scan: could not scan ${join(root, 'broken.ts')}: syntax error at 2:30: ')' expected.\n`,
    );
    const clean = await run([join(root, 'broken.js'), join(root, 'clean.js')]);
    expect(clean.code).toBe(SCAN_EXIT.unscannedClean);
    expect(clean.stdout).toBe('migrate-scan: no findings (1 file scanned)\n');
  });
});
