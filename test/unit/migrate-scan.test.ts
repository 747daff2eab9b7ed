import { readdirSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RULE_IDS } from '../../src/cli/migrate-scan/rules.js';
import { formatReport, runMigrateScan } from '../../src/cli/migrate-scan/scan-command.js';
import { scanPaths, scanSource, type Finding, type ScanReport } from '../../src/cli/migrate-scan/scan.js';

const fixtures = fileURLToPath(new URL('../fixtures/migrate-scan/', import.meta.url));
const fixture = (name: string): string => join(fixtures, name);
/** The per-rule fixtures at the top level (the corpus below has its own test). */
const ruleFixtures = readdirSync(fixtures)
  .filter((name) => /\.[cm]?[jt]s$/.test(name))
  .map(fixture);

/** The rule, line and column of each finding: what the per-rule tests pin down. */
const where = (findings: readonly Finding[]): string[] => findings.map((f) => `${f.rule} ${f.line}:${f.column}`);

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

describe('migrate-scan rules on the fixtures', () => {
  it('reports a pg Client created, connected and ended inside a function as client-per-request', async () => {
    const findings = (await scanPaths([fixture('client-per-request.js')])).findings;
    expect(where(findings)).toEqual(['client-per-request 5:18', 'client-per-request 13:18']);
    expect(findings[0]?.after).toContain(
      "await db.executeQuery('SELECT id, name, type FROM jurisdictions WHERE id = $1', [req.params.id])",
    );
    expect(findings[1]?.after).toContain('await db.withDb(false, async (client) => {');
  });

  it('reports pool.connect() released only on success, or never, as unreleased-client', async () => {
    const findings = (await scanPaths([fixture('unreleased-client.ts')])).findings;
    expect(where(findings)).toEqual(['unreleased-client 5:24', 'unreleased-client 15:24']);
    expect(findings[0]?.message).toContain('released only when nothing throws');
    expect(findings[0]?.after).toContain('await db.withDb(true, async (client) => {');
    expect(findings[1]?.message).toContain('never released');
    expect(findings[1]?.after).toContain('await db.withDb(false, async (client) => {');
  });

  it('reports BEGIN/COMMIT/ROLLBACK through pool.query once per function as transaction-on-pool', async () => {
    const findings = (await scanPaths([fixture('transaction-on-pool.mjs')])).findings;
    expect(where(findings)).toEqual(['transaction-on-pool 5:9']);
    expect(findings[0]?.message).toMatch(/^BEGIN, COMMIT and ROLLBACK sent through pool\.query/);
    expect(findings[0]?.after).toContain(
      'await db.executeTransaction([\n' +
        "  { text: 'DELETE FROM adoptions WHERE jurisdiction_id = $1', params: [jurisdictionId] },\n",
    );
  });

  it('reports values spliced into SQL text as sql-interpolation and binds them in the suggestion', async () => {
    const findings = (await scanPaths([fixture('sql-interpolation.ts')])).findings;
    expect(where(findings)).toEqual(['sql-interpolation 5:37', 'sql-interpolation 10:15', 'sql-interpolation 21:42']);
    expect(findings.map((f) => f.after.split('\n')[0])).toEqual([
      "pool.query('SELECT id, name FROM jurisdictions WHERE name = $1', [name])",
      // limit is declared a number: it cannot carry a quote, and stays spliced
      'const sql = `SELECT id, name FROM jurisdictions WHERE type = $1 LIMIT ${limit}`;',
      'params.push(`%${filters.name}%`);',
    ]);
    expect(findings[2]?.after).toContain('sql += ` AND name ILIKE $${params.length}`;');
  });

  it('reports each new Pool(...) that Database can replace as pool-to-database', async () => {
    const findings = (await scanPaths([fixture('pool-to-database.cjs')])).findings;
    expect(where(findings)).toEqual(['pool-to-database 4:14', 'pool-to-database 7:23']);
    expect(findings[0]?.after).toContain('const db = new Database(); // reads DATABASE_URL and DB_* from process.env');
    expect(findings[1]?.after).toContain('new Database({ connectionString: process.env.REPORTING_URL, max: 4 })');
  });

  it("reports a Pool with no 'error' listener as pool-without-error-listener", async () => {
    const findings = (await scanPaths([fixture('pool-without-error-listener.js')])).findings;
    expect(where(findings)).toEqual(['pool-without-error-listener 5:14']);
    expect(findings[0]?.after).toContain("pool.on('error', ");
  });

  it('finds nothing in the clean fixtures of correct pg and @codecheck/db code', async () => {
    expect((await scanPaths([fixture('clean')])).findings).toEqual([]);
  });

  it('gives every finding a known rule id, a one-line message and a before/after suggestion', async () => {
    const findings = (await scanPaths(ruleFixtures)).findings;
    expect(findings).toHaveLength(11);
    for (const finding of findings) {
      expect(RULE_IDS).toContain(finding.rule);
      expect(finding.message).not.toContain('\n');
      expect(finding.before).not.toBe('');
      expect(finding.after).not.toBe('');
    }
  });
});

describe('migrate-scan bindings', () => {
  it('follows pg bindings: a Pool named db, this.pool typed Pool, require and dynamic import', () => {
    const findings = scanSource(
      'bindings.ts',
      [
        "import pg from 'pg';",
        "import { Pool } from 'pg';",
        'const db = new pg.Pool();',
        "db.on('error', () => undefined);",
        "export async function move() { await db.query('BEGIN'); await db.query('COMMIT'); }",
        'export class Repo {',
        '  private readonly pool: Pool;',
        '  constructor(pool: Pool) { this.pool = pool; }',
        "  async ping() { const c = await this.pool.connect(); await c.query('SELECT 1'); }",
        '}',
      ].join('\n'),
    );
    expect(where(findings)).toEqual(['pool-to-database 3:12', 'transaction-on-pool 5:38', 'unreleased-client 9:34']);
    const loaded = scanSource(
      'loaded.mjs',
      [
        "const { Pool: PgPool } = await import('pg');",
        "const Pool = require('pg-pool');",
        "export const a = new PgPool().on('error', console.error);",
        "export const b = new Pool().on('error', console.error);",
      ].join('\n'),
    );
    expect(where(loaded)).toEqual(['pool-to-database 3:18', 'pool-to-database 4:18']);
  });

  it('ignores Pool and Client classes that do not come from pg', () => {
    const findings = scanSource(
      'other.js',
      [
        "import { Pool } from 'generic-pool';",
        'const workers = new Pool();',
        "workers.query('BEGIN');",
        'export function f(Client) { const c = new Client(); c.connect(); c.end(); }',
      ].join('\n'),
    );
    expect(findings).toEqual([]);
  });

  it('does not report a client released in a promise finally callback, or returned to the caller', () => {
    const findings = scanSource(
      'callbacks.js',
      [
        "export function a(pool) { return pool.connect().then((c) => c.query('SELECT 1').finally(() => c.release())); }",
        "export async function b(pool) { const c = await pool.connect(); return c.query('SELECT 1').finally(() => c.release()); }",
        'export async function c(pool) { const client = await pool.connect(); return client; }',
      ].join('\n'),
    );
    expect(findings).toEqual([]);
  });

  it('suggests pg.escapeIdentifier for a spliced table name, which cannot be a parameter', () => {
    const [finding] = scanSource('table.js', 'export const f = (pool, table) => pool.query(`SELECT * FROM ${table}`);');
    expect(finding?.rule).toBe('sql-interpolation');
    expect(finding?.message).toContain('pg.escapeIdentifier()');
    expect(finding?.after.split('\n')[0]).toBe('pool.query(`SELECT * FROM ${pg.escapeIdentifier(table)}`)');
  });

  it('quotes values with pg.escapeLiteral in utility statements, which take no parameters', () => {
    const [finding] = scanSource(
      'notify.js',
      "export const f = (client, p) => client.query(`NOTIFY jurisdiction_changes, '${p}'`);",
    );
    expect(finding?.message).toContain('NOTIFY takes no parameters');
    expect(finding?.after).toBe('client.query(`NOTIFY jurisdiction_changes, ${pg.escapeLiteral(p)}`)');
  });

  it('drops a finding when the line above names its rule in a migrate-scan-ignore-next-line comment', () => {
    const text = [
      "import { Pool } from 'pg';",
      '// migrate-scan-ignore-next-line pool-to-database -- the job queue needs a pg.Pool',
      'export const pool = new Pool();',
    ].join('\n');
    expect(where(scanSource('ignored.js', text))).toEqual(['pool-without-error-listener 3:21']);
  });

  it('still scans a file with a syntax error without throwing', () => {
    expect(() => scanSource('broken.ts', 'const x = ;; function ( {')).not.toThrow();
  });
});

describe('migrate-scan files and output', () => {
  let root: string;

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'migrate-scan-'));
    const bad = "import { Pool } from 'pg';\nexport const pool = new Pool();\n";
    for (const dir of ['src', 'node_modules/pg', 'dist', '.git', 'src/nested']) await mkdir(join(root, dir), { recursive: true });
    for (const file of ['src/a.ts', 'src/nested/b.jsx', 'node_modules/pg/c.js', 'dist/d.js', '.git/e.js', 'src/types.d.ts']) {
      await writeFile(join(root, file), bad);
    }
    await writeFile(join(root, 'src/notes.md'), bad);
  });

  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('walks directories, skipping node_modules, dist, .git, declaration files and other extensions', async () => {
    const files = new Set((await scanPaths([root])).findings.map((f) => f.file));
    expect([...files]).toEqual([join(root, 'src/a.ts'), join(root, 'src/nested/b.jsx')]);
  });

  it('prints findings grouped per file with their suggestions, and a summary', async () => {
    const findings = (await scanPaths([fixture('pool-without-error-listener.js')])).findings;
    const text = formatReport({ findings, unscanned: [], skipped: [], scannedFiles: 1 });
    expect(text.split('\n').slice(0, 4)).toEqual([
      findings[0]?.file,
      "  5:14  pool-without-error-listener  pg Pool has no 'error' listener: an idle client's lost connection is emitted on the pool and crashes the process",
      '      before  const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL });',
      "      after   pool.on('error', (err) => logger.warn({ err }, 'idle PostgreSQL client failed'));",
    ]);
    expect(text).toMatch(/1 finding in 1 file \(pool-without-error-listener: 1\); 1 file scanned\n$/);
  });

  it('exits 1 and prints parseable JSON findings with --json', async () => {
    const { code, stdout, stderr } = await run(['--json', ...ruleFixtures]);
    expect(code).toBe(1);
    expect(stderr).toBe('');
    const report = JSON.parse(stdout) as ScanReport;
    expect(Object.keys(report)).toEqual(['findings', 'unscanned', 'skipped', 'scannedFiles']);
    expect(report.unscanned).toEqual([]);
    const parsed = report.findings;
    expect(parsed).toHaveLength(11);
    for (const finding of parsed) {
      expect(Object.keys(finding)).toEqual(['file', 'line', 'column', 'rule', 'message', 'before', 'after']);
    }
    expect(parsed.map((f) => `${basename(f.file)} ${f.rule}`)).toContain('transaction-on-pool.mjs transaction-on-pool');
  });

  it('exits 0 on clean code', async () => {
    const { code, stdout } = await run([fixture('clean')]);
    expect(code).toBe(0);
    expect(stdout).toBe('migrate-scan: no findings (7 files scanned)\n');
    expect(JSON.parse((await run(['--json', fixture('clean')])).stdout)).toEqual({
      findings: [],
      unscanned: [],
      skipped: [],
      scannedFiles: 7,
    });
  });

  it('exits 2 with a usage message when no path is given', async () => {
    const { code, stdout, stderr } = await run(['--json']);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toMatch(/^migrate-scan: no paths given\nusage: codecheck-db migrate-scan/);
  });

  it('exits 2 naming the path when a path cannot be read', async () => {
    const missing = join(root, 'missing');
    const { code, stderr } = await run([fixtures, missing]);
    expect(code).toBe(2);
    expect(stderr).toBe(`migrate-scan: ${missing}: cannot read (no such file or directory)\n`);
  });

  it('exits 2 on an unknown option or a named file that is not a JS/TS source', async () => {
    expect((await run(['--fix', fixtures])).code).toBe(2);
    const notSource = await run([join(root, 'src/notes.md')]);
    expect(notSource.code).toBe(2);
    expect(notSource.stderr).toContain('notes.md: not a JavaScript or TypeScript source');
  });
});
