import { describe, expect, it } from 'vitest';
import { preparedStatementFailure, StatementNames } from '../../src/prepared-statements.js';

const TEXT = 'SELECT * FROM items WHERE id = $1';

describe('StatementNames', () => {
  it('sends a text unnamed on its first use and names it from its second use on', () => {
    const names = new StatementNames(10);
    expect([names.nameFor(TEXT), names.nameFor(TEXT), names.nameFor(TEXT)]).toEqual([undefined, 'codecheck_s1', 'codecheck_s1']);
  });

  it('gives different texts different names, in the order they are named', () => {
    const names = new StatementNames(10);
    for (const text of ['SELECT $1', 'SELECT $1, $2', 'SELECT $1']) names.nameFor(text);
    expect([names.nameFor('SELECT $1'), names.nameFor('SELECT $1, $2')]).toEqual(['codecheck_s1', 'codecheck_s2']);
  });

  it('gives out at most `max` names; later texts stay unnamed', () => {
    const names = new StatementNames(1);
    names.nameFor('SELECT $1');
    names.nameFor('SELECT $1');
    names.nameFor('SELECT $1, $2');
    expect([names.nameFor('SELECT $1'), names.nameFor('SELECT $1, $2')]).toEqual(['codecheck_s1', undefined]);
  });

  it('treats a forgotten text as new: unnamed once more, then named under a new name while the budget lasts', () => {
    const names = new StatementNames(2);
    names.nameFor(TEXT);
    names.nameFor(TEXT);
    names.forget(TEXT);
    expect([names.nameFor(TEXT), names.nameFor(TEXT)]).toEqual([undefined, 'codecheck_s2']);
  });

  it('keeps its memory of texts seen once bounded: past 1000 it starts over', () => {
    const names = new StatementNames(10);
    names.nameFor(TEXT);
    for (let i = 0; i < 1000; i++) names.nameFor(`SELECT ${i} WHERE $1`);
    expect(names.nameFor(TEXT)).toBeUndefined();
    expect(names.nameFor(TEXT)).toBe('codecheck_s1');
  });
});

describe('preparedStatementFailure', () => {
  it("reads SQLSTATE 0A000 'cached plan must not change result type' as a stale plan", () => {
    expect(preparedStatementFailure('0A000', 'cached plan must not change result type')).toBe('stale-plan');
  });

  it('reads SQLSTATE 26000 as a statement the server no longer has', () => {
    expect(preparedStatementFailure('26000', 'prepared statement "codecheck_s1" does not exist')).toBe('missing');
  });

  it('leaves every other failure alone, including another 0A000', () => {
    expect([
      preparedStatementFailure('0A000', 'unsupported feature'),
      preparedStatementFailure('23505', 'duplicate key value'),
      preparedStatementFailure(undefined, 'Connection terminated'),
    ]).toEqual([undefined, undefined, undefined]);
  });
});
