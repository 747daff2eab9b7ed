/**
 * Suggestions a new user pasted and found wrong: executeQuery options in the params slot, a
 * transaction rewrite that dropped its branch, a splice inside a pg-format string left unreported.
 * Each suggestion is also parsed, as it would be pasted, with the TypeScript parser.
 */
import { describe, expect, it } from 'vitest';
import { scanSource, type Finding } from '../../src/cli/migrate-scan/scan.js';
import { syntaxErrors } from '../support/suggestion-syntax.js';

const scan = (name: string, lines: string[]): Finding[] => scanSource(name, lines.join('\n'));
const only = (findings: readonly Finding[], rule: string): Finding[] => findings.filter((f) => f.rule === rule);

describe('executeQuery suggestions pass params before options', () => {
  it('suggests executeQuery(sql, [], { readOnly: false }) for a per-request client whose statement has no params', () => {
    const findings = scan('cpr-dynamic.js', [
      "const pg = require('pg');",
      'async function purge2(sql) {',
      '  const client = new pg.Client();',
      '  await client.connect();',
      '  await client.query(sql);',
      '  await client.end();',
      '}',
      'async function rename(id, name) {',
      '  const client = new pg.Client();',
      '  await client.connect();',
      "  await client.query('UPDATE reg SET name = $2 WHERE id = $1', [id, name]);",
      '  await client.end();',
      '}',
      'async function count() {',
      '  const client = new pg.Client();',
      '  await client.connect();',
      "  await client.query('SELECT count(*) FROM reg');",
      '  await client.end();',
      '}',
      'module.exports = { purge2, rename, count };',
    ]);
    const afters = only(findings, 'client-per-request').map((f) => f.after.split('\n')[1]);
    expect(afters).toEqual([
      'const rows = await db.executeQuery(sql, [], { readOnly: false }); // resolves to the rows',
      "const rows = await db.executeQuery('UPDATE reg SET name = $2 WHERE id = $1', [id, name], { readOnly: false }); // resolves to the rows",
      "const rows = await db.executeQuery('SELECT count(*) FROM reg'); // resolves to the rows",
    ]);
    for (const finding of findings) expect(syntaxErrors(finding.after), finding.after).toEqual([]);
  });

  it('suggests withDb rather than executeQuery for a per-request client queried with a config object or a callback', () => {
    const findings = scan('cpr-config.js', [
      "const pg = require('pg');",
      'async function f(id) {',
      '  const client = new pg.Client();',
      '  await client.connect();',
      "  await client.query({ text: 'DELETE FROM reg WHERE id = $1', values: [id] });",
      '  await client.end();',
      '}',
      'module.exports = { f };',
    ]);
    expect(only(findings, 'client-per-request')[0]?.after.split('\n')[1]).toBe('await db.withDb(false, async (client) => {');
  });

  it('passes [] and { readOnly: false } in the executeQuery note of a write whose splice is rewritten', () => {
    const findings = scan('delete.js', [
      "const pool = require('./db');",
      'exports.remove = (id) => pool.query(`DELETE FROM reg WHERE id = ${id}`);',
      'exports.read = (id) => pool.query(`SELECT * FROM reg WHERE id = ${id}`);',
    ]);
    expect(only(findings, 'sql-interpolation').map((f) => f.after)).toEqual([
      "pool.query('DELETE FROM reg WHERE id = $1', [id])\n" +
        "// with @codecheck/db: await db.executeQuery('DELETE FROM reg WHERE id = $1', [id], { readOnly: false }) resolves to the rows",
      "pool.query('SELECT * FROM reg WHERE id = $1', [id])\n" +
        "// with @codecheck/db: await db.executeQuery('SELECT * FROM reg WHERE id = $1', [id]) resolves to the rows",
    ]);
  });
});

describe('sql-interpolation inside pg-format strings', () => {
  it('reports a template substitution inside a format string and moves it into format() behind %L', () => {
    const findings = scan('fmt.js', [
      "const pool = require('./db');",
      "const format = require('pg-format');",
      'exports.update = (data, value) => pool.query(format(`UPDATE reg SET name = %L WHERE id = ${data.id}`, value));',
      "exports.update2 = (data, value) => pool.query(format('UPDATE reg SET name = %L WHERE id = %s', value, data.id));",
      "exports.update3 = (data) => pool.query(`UPDATE reg SET name = 'x' WHERE id = ${data.id}`);",
      'exports.fine = (value) => pool.query(format(`UPDATE reg SET name = %L WHERE id = ${Number(value.id)}`, value.name));',
    ]);
    expect(findings.map((f) => `${f.rule} ${f.line}:${f.column}`)).toEqual([
      'sql-interpolation 3:46',
      'sql-interpolation 4:47',
      'sql-interpolation 5:40',
    ]);
    expect(findings[0]?.message).toBe(
      'pg-format string interpolates data.id (value): format() quotes only its arguments, so a value with a quote in ' +
        'it rewrites the statement (SQL injection); use %L for a value (quoted as a literal) and %I for a name (quoted as an identifier)',
    );
    expect(findings[0]?.after).toBe("pool.query(format('UPDATE reg SET name = %L WHERE id = %L', value, data.id))");
    for (const finding of findings) expect(syntaxErrors(finding.after), finding.after).toEqual([]);
  });

  it('reports column lists and ids spliced into a concatenated format string, with %I for names and arguments in order', () => {
    const findings = scan('registrations.js', [
      "const pool = require('../db');",
      "const format = require('pg-format');",
      "const table = 'app' + '.registration';",
      'exports.create = async (data, helpers) => {',
      '  const { key, value } = await helpers.serialize(data);',
      "  return pool.query(format('INSERT INTO ' + table + ` (${key}) VALUES (%L) RETURNING *`, value));",
      '};',
      'exports.update = async (data, helpers) => {',
      '  const { key, value } = helpers.serialize(data);',
      "  const sql = format('UPDATE ' + table + ` SET (${key}) = (%L) WHERE id = ${data.id} RETURNING *`, value);",
      '  return pool.query(sql);',
      '};',
      'exports.numbered = (data, value) => pool.query(format(`UPDATE reg SET name = %1$L WHERE id = ${data.id}`, value));',
    ]);
    expect(findings.map((f) => `${f.rule} ${f.line}`)).toEqual([
      'sql-interpolation 6',
      'sql-interpolation 10',
      'sql-interpolation 13',
    ]);
    expect(findings.map((f) => f.after)).toEqual([
      "pool.query(format('INSERT INTO app.registration (%I) VALUES (%L) RETURNING *', key, value))",
      "format('UPDATE app.registration SET (%I) = (%L) WHERE id = %L RETURNING *', key, value, data.id)",
      'pool.query(format(`UPDATE reg SET name = %1$L WHERE id = ${data.id}`, value))\n' +
        '// numbered %n$ arguments: move each substitution into format() behind %L or %I by hand',
    ]);
    expect(findings[1]?.message).toContain('pg-format string interpolates key (identifier), data.id (value):');
    for (const finding of findings) expect(syntaxErrors(finding.after), finding.after).toEqual([]);
  });
});

describe('transaction-on-pool keeps the branches around COMMIT and ROLLBACK', () => {
  it('keeps an if/else whose branches COMMIT or ROLLBACK and return, rolling back by a throw caught outside withDb', () => {
    const [finding] = only(
      scan('branch.js', [
        "const pool = require('./db');",
        'async function register(data, exists) {',
        "  await pool.query('BEGIN');",
        '  if (!exists) {',
        "    await pool.query('INSERT INTO reg (name) VALUES ($1)', [data.name]);",
        "    await pool.query('COMMIT');",
        '  } else {',
        "    await pool.query('ROLLBACK');",
        "    return 'already';",
        '  }',
        "  return 'ok';",
        '}',
        'module.exports = { register };',
      ]),
      'transaction-on-pool',
    );
    expect(finding?.after).toBe(
      [
        'let rolledBack; // set where the code rolled back, with what it returns',
        'try {',
        '  return await db.withDb(false, async (client) => {',
        '    if (!exists) {',
        "      await client.query('INSERT INTO reg (name) VALUES ($1)', [data.name]);",
        '      // COMMIT: withDb commits when this callback returns',
        '    } else {',
        "      rolledBack = { result: 'already' };",
        "      throw new Error('ROLLBACK'); // withDb rolls back when this callback throws; the catch below returns",
        '    }',
        "    return 'ok';",
        '  }); // BEGIN before, COMMIT when the callback returns, ROLLBACK when it throws',
        '} catch (err) {',
        '  if (rolledBack === undefined) throw err;',
        '  return rolledBack.result; // withDb rolled back',
        '}',
      ].join('\n'),
    );
    expect(syntaxErrors(finding!.after)).toEqual([]);
  });

  it('keeps the guard around a COMMIT inside try, with the catch ROLLBACK left to withDb', () => {
    const [finding] = only(
      scan('registrations.js', [
        "const pool = require('../db');",
        'class Registrations {',
        '  async create(data, helpers) {',
        '    try {',
        '      let created;',
        '      const isAlreadyThere = await helpers.exists(data);',
        "      await pool.query('BEGIN');",
        '      if (isAlreadyThere == false) {',
        "        created = await pool.query('INSERT INTO registration (name) VALUES ($1) RETURNING *', [data.name]);",
        "        await pool.query('COMMIT');",
        '      } else {',
        "        return { status: '400', error: 'already registered' };",
        '      }',
        "      return { status: '200', data: created.rows[0] };",
        '    } catch (ex) {',
        "      await pool.query('ROLLBACK');",
        "      return { status: '400', error: '' + ex };",
        '    }',
        '  }',
        '}',
        'module.exports = new Registrations();',
      ]),
      'transaction-on-pool',
    );
    expect(finding?.after).toBe(
      [
        'return await db.withDb(false, async (client) => {',
        '  if (isAlreadyThere == false) {',
        "    created = await client.query('INSERT INTO registration (name) VALUES ($1) RETURNING *', [data.name]);",
        '    // COMMIT: withDb commits when this callback returns',
        '  } else {',
        "    return { status: '400', error: 'already registered' };",
        '  }',
        "  return { status: '200', data: created.rows[0] };",
        '}); // BEGIN before, COMMIT when the callback returns, ROLLBACK when it throws',
      ].join('\n'),
    );
    expect(syntaxErrors(finding!.after)).toEqual([]);
  });

  it('turns a ROLLBACK before a throw into a comment, the throw being what makes withDb roll back', () => {
    const [finding] = only(
      scan('throw.mjs', [
        "import { pool } from './db.mjs';",
        'export async function move(from, to, amount) {',
        "  await pool.query('BEGIN');",
        "  const { rows } = await pool.query('UPDATE account SET balance = balance - $2 WHERE id = $1 RETURNING balance', [from, amount]);",
        '  if (rows[0].balance < 0) {',
        "    await pool.query('ROLLBACK');",
        "    throw new Error('insufficient funds');",
        '  }',
        "  await pool.query('UPDATE account SET balance = balance + $2 WHERE id = $1', [to, amount]);",
        "  await pool.query('COMMIT');",
        '}',
      ]),
      'transaction-on-pool',
    );
    expect(finding?.after).toBe(
      [
        'await db.withDb(false, async (client) => {',
        "  const { rows } = await client.query('UPDATE account SET balance = balance - $2 WHERE id = $1 RETURNING balance', [from, amount]);",
        '  if (rows[0].balance < 0) {',
        '    // ROLLBACK: withDb rolls back when this callback throws',
        "    throw new Error('insufficient funds');",
        '  }',
        "  await client.query('UPDATE account SET balance = balance + $2 WHERE id = $1', [to, amount]);",
        '  // COMMIT: withDb commits when this callback returns',
        '}); // BEGIN before, COMMIT when the callback returns, ROLLBACK when it throws',
      ].join('\n'),
    );
  });

  it('reports without a code suggestion, saying to move the statements by hand, when a ROLLBACK branch goes on', () => {
    const [finding] = only(
      scan('goes-on.js', [
        "const pool = require('./db');",
        'exports.save = async (item, log) => {',
        "  await pool.query('BEGIN');",
        "  const { rowCount } = await pool.query('UPDATE item SET name = $2 WHERE id = $1', [item.id, item.name]);",
        '  if (rowCount === 0) {',
        "    await pool.query('ROLLBACK');",
        "    log('not found');",
        '  } else {',
        "    await pool.query('COMMIT');",
        '  }',
        "  log('done');",
        '};',
      ]),
      'transaction-on-pool',
    );
    expect(finding?.message).toBe(
      'BEGIN, ROLLBACK and COMMIT sent through pool.query: each pool.query may run on a different connection, so the ' +
        'statements between them are not one transaction; the ROLLBACK on line 6 is followed by code that goes on ' +
        'inside the function, which the suggestion cannot rewrite: move the statements into withDb by hand',
    );
    expect(finding?.after).toBe(
      [
        '// no rewrite suggested: the ROLLBACK on line 6 is followed by code that goes on inside the function',
        '// move the statements after BEGIN into db.withDb(false, async (client) => { ... }) by hand, keeping the',
        '// branches: withDb commits when the callback returns and rolls back when it throws',
      ].join('\n'),
    );
  });
});
