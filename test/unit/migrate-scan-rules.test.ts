import { describe, expect, it } from 'vitest';
import { scanSource, type Finding } from '../../src/cli/migrate-scan/scan.js';

const scan = (name: string, lines: string[]): Finding[] => scanSource(name, lines.join('\n'));
const where = (findings: readonly Finding[]): string[] => findings.map((f) => `${f.rule} ${f.line}`);
const only = (findings: readonly Finding[], rule: string): Finding[] => findings.filter((f) => f.rule === rule);

describe('unreleased-client follows every connect form and entry point', () => {
  it('reports pool.connect().then(...) that releases only on success, and one that never releases', () => {
    const findings = scan('then.js', [
      "const { Pool } = require('pg/lib');",
      'const pool = new Pool();',
      "pool.on('error', () => {});",
      "exports.a = () => pool.connect().then((c) => c.query('SELECT * FROM t').then((r) => { c.release(); return r.rows; }));",
      "exports.b = () => pool.connect().then(() => console.log('up'));",
    ]);
    expect(where(only(findings, 'unreleased-client'))).toEqual(['unreleased-client 4', 'unreleased-client 5']);
    expect(findings.find((f) => f.line === 5)?.after).toBe(
      'await db.ready(); // a connection check: waits until the pool can connect, and releases what it used',
    );
  });

  it('reports the callback form when done() runs only on success, not when it runs first in the query callback', () => {
    const findings = scan('callbacks.js', [
      "import Pool from 'pg-pool';",
      'export const pool = new Pool();',
      "pool.on('error', () => {});",
      'export const bad = (cb) => pool.connect((err, client, done) => {',
      '  if (err) return cb(err);',
      "  client.query('SELECT 1', (e, r) => { if (e) return cb(e); done(); cb(null, r); });",
      '});',
      'export const good = (cb) => pool.connect((err, client, done) => {',
      '  if (err) return cb(err);',
      "  client.query('SELECT 1', (e, r) => { done(); cb(e, r); });",
      '});',
    ]);
    expect(where(only(findings, 'unreleased-client'))).toEqual(['unreleased-client 4']);
  });

  it('does not report the connect, log, release startup check, where nothing can throw before the release', () => {
    const findings = scan('startup.ts', [
      "import { Pool } from 'pg';",
      'const pool = new Pool();',
      "pool.on('error', () => {});",
      "export async function check() { const c = await pool.connect(); console.log('connected'); c.release(); }",
    ]);
    expect(only(findings, 'unreleased-client')).toEqual([]);
  });
});

describe('sql-interpolation suggestions keep what is there and fix each splice by its kind', () => {
  it('numbers new placeholders after those already in the text and keeps the values array', () => {
    const [literal] = scan('a.js', [
      'export const f = (pool, a, b) => pool.query(`SELECT * FROM t WHERE a = $1 AND b = ${b}`, [a]);',
    ]);
    expect(literal?.after.split('\n')[0]).toBe("pool.query('SELECT * FROM t WHERE a = $1 AND b = $2', [a, b])");
    const [named] = scan('b.js', [
      'export const f = (pool, params, c) => pool.query(`SELECT * FROM t WHERE a = $1 AND b = $2 AND c = ${c}`, params);',
    ]);
    expect(named?.after.split('\n')[0]).toBe("pool.query('SELECT * FROM t WHERE a = $1 AND b = $2 AND c = $3', [...params, c])");
  });

  it('quotes identifiers, picks keywords from a list and leaves fragments with a note instead of making them values', () => {
    const [finding] = scan('c.js', [
      'export const f = (pool, col, dir, where, cols) =>',
      '  pool.query(`SELECT ${cols.join(", ")} FROM t WHERE ${where} ORDER BY ${col} ${dir}`);',
    ]);
    expect(finding?.message).toContain('cols.join(", ") (identifier), where (fragment), col (identifier), dir (keyword)');
    expect(finding?.after.split('\n')).toEqual([
      "pool.query(`SELECT ${cols.map((name) => pg.escapeIdentifier(name)).join(\", \")} FROM t WHERE ${where} ORDER BY ${pg.escapeIdentifier(col)} ${dir === 'DESC' ? 'DESC' : 'ASC'}`)",
      '// where: SQL text built elsewhere; build it with numbered $n placeholders and bind its values with these',
    ]);
  });

  it('reports a conditional whose guard checks another variable, not one that checks the value it splices', () => {
    const findings = scan('d.js', [
      "const COLUMNS = ['name', 'price'];",
      'export const bad = (pool, ok, sort) => pool.query(`SELECT * FROM t ORDER BY ${ok ? sort : "id"}`);',
      'export const good = (pool, sort) => pool.query(`SELECT * FROM t ORDER BY ${COLUMNS.includes(sort) ? sort : "id"}`);',
    ]);
    expect(where(findings)).toEqual(['sql-interpolation 2']);
  });

  it('accepts whitelist guards (throw on includes, switch default, in over a constant object) and counters', () => {
    const findings = scan('e.js', [
      "const SORTS = { newest: 'created_at' };",
      'export async function a(pool, c) { if (!["x", "y"].includes(c)) throw new Error("no"); return pool.query(`SELECT ${c} FROM t`); }',
      'export async function b(pool, c) { switch (c) { case "x": break; default: return; } return pool.query(`SELECT ${c} FROM t`); }',
      'export async function d(pool, k) { if (!(k in SORTS)) return; return pool.query(`SELECT * FROM t ORDER BY ${k}`); }',
      'export async function e(pool, ids) { let n = 1; const v = ids.map(() => `$${n++}`); return pool.query(`SELECT * FROM t WHERE id IN (${v.join(",")})`, ids); }',
    ]);
    expect(findings).toEqual([]);
  });

  it('follows SQL built by pg-format, turning %s into %L for values and %I for names', () => {
    const [finding] = scan('f.js', [
      "const format = require('pg-format');",
      "exports.f = (pool, table, name) => pool.query(format('SELECT * FROM %s WHERE name = %s', table, name));",
    ]);
    expect(finding?.after).toBe("pool.query(format('SELECT * FROM %I WHERE name = %L', table, name))");
  });

  it("follows Knex's raw methods and binds with ? and ??", () => {
    const [finding] = scan('g.js', ['exports.f = (knex, col, v) => knex.raw(`SELECT ${col} FROM t WHERE a = ${v}`);']);
    expect(finding?.after).toBe("knex.raw('SELECT ?? FROM t WHERE a = ?', [col, v])");
  });
});

describe('transaction-on-pool suggestions', () => {
  it('suggests withDb with the statements as written when one uses an earlier result, comments kept', () => {
    const [finding] = scan('t.js', [
      'export async function f(pool, name) {',
      "  await pool.query('BEGIN');",
      '  // the row first',
      "  const { rows } = await pool.query('INSERT INTO a (name) VALUES ($1) RETURNING id', [name]);",
      "  await pool.query('INSERT INTO b (a_id) VALUES ($1)', [rows[0].id]);",
      "  await pool.query('COMMIT');",
      '}',
    ]);
    expect(finding?.after).toBe(
      [
        'await db.withDb(false, async (client) => {',
        '  // the row first',
        "  const { rows } = await client.query('INSERT INTO a (name) VALUES ($1) RETURNING id', [name]);",
        "  await client.query('INSERT INTO b (a_id) VALUES ($1)', [rows[0].id]);",
        '}); // BEGIN before, COMMIT after, ROLLBACK when the function throws',
      ].join('\n'),
    );
  });
});

describe('pool-without-error-listener', () => {
  it('sees a listener registered on a pool held in a private field', () => {
    const findings = scan('private.ts', [
      "import pg from 'pg';",
      'export class Store {',
      '  readonly #pool: pg.Pool;',
      '  constructor() {',
      '    this.#pool = new pg.Pool({ types: undefined });',
      "    this.#pool.on('error', () => undefined);",
      '  }',
      '}',
    ]);
    expect(findings).toEqual([]);
  });
});

describe('pool-to-database suggestions', () => {
  it('offers the drop-in Pool first, then Database with the options it understands, naming the ones it drops', () => {
    const [finding] = scan('p.mjs', [
      "import pg from 'pg';",
      'export const pool = new pg.Pool({ host: "db", statement_timeout: 3000, maxLifetimeSeconds: 60, keepAlive: true, query_timeout: 5000 });',
      "pool.on('error', () => {});",
    ]);
    expect(finding?.after.split('\n')).toEqual([
      '// 1. drop-in: replace the pg import; pool keeps the pg.Pool API',
      "import { Pool } from '@codecheck/db';",
      '// (then write new Pool(...) for new pg.Pool(...))',
      '// 2. or move to the Database API:',
      "import { Database } from '@codecheck/db';",
      'const db = new Database({ host: "db", statementTimeoutMillis: 3000, maxLifetimeMillis: 60000 }); // option names: docs/configuration.md',
      '// dropped: keepAlive (no Database option; the drop-in Pool keeps it)',
      '// dropped: query_timeout (a client-side timer; statementTimeoutMillis has the server cancel the statement instead)',
      '// pool.query(text, params) -> db.executeQuery(text, params) (read-only by default; writes: { readOnly: false })',
      '// pool.connect() ... release() -> db.withDb(readOnly, async (client) => ...)',
    ]);
  });
});
