import type pg from 'pg';
import { describe, expect, test } from 'vitest';
import { beyondBaseline, observeStatement, planRelease, SESSION_CLEAN } from '../../src/pool/session-state.js';

const result = (command: string) => ({ command }) as pg.QueryResult;
const plan = (text: string, ...commands: string[]) =>
  planRelease(observeStatement(SESSION_CLEAN, text, commands.length === 1 ? result(commands[0]!) : commands.map(result)));

describe('session state read from command tags', () => {
  test.each([
    ['SELECT 1', 'SELECT'],
    ['INSERT INTO t VALUES (1)', 'INSERT'],
    ['SET LOCAL statement_timeout = 5', 'SET'],
    ['SET TRANSACTION ISOLATION LEVEL SERIALIZABLE', 'SET'],
    ['set constraints all deferred', 'SET'],
    ['CREATE TABLE t (id int)', 'CREATE'],
    ['DISCARD TEMP', 'DISCARD'],
    ['UNLISTEN *', 'UNLISTEN'],
    ['SELECT pg_advisory_xact_lock(1)', 'SELECT'],
    ["SELECT to_regclass('pg_temp.t') IS NULL", 'SELECT'],
    ['SELECT temp FROM weather', 'SELECT'],
    ['DECLARE c CURSOR FOR SELECT 1', 'DECLARE'],
  ])('%j leaves the session clean: reused with no round trip', (text, command) => {
    expect(plan(text, command)).toEqual({ action: 'reuse' });
  });

  test.each([
    ['SET search_path = other', 'SET', 'RESET ALL', true],
    ['set statement_timeout to 1', 'SET', 'RESET ALL', true],
    ['RESET ALL', 'RESET', 'RESET ALL', true],
    ["SELECT set_config('search_path', 'x', false)", 'SELECT', 'RESET ALL', true],
    ['LISTEN jobs', 'LISTEN', 'UNLISTEN *', false],
    ['CREATE TEMP TABLE scratch (id int)', 'CREATE', 'DISCARD TEMP', false],
    ['create temporary view v as select 1', 'CREATE', 'DISCARD TEMP', false],
    ['SELECT pg_advisory_lock(42)', 'SELECT', 'SELECT pg_advisory_unlock_all()', false],
    ['SELECT PG_TRY_ADVISORY_LOCK_SHARED(1, 2)', 'SELECT', 'SELECT pg_advisory_unlock_all()', false],
    ['CREATE TEMP TABLE t AS SELECT 1', 'SELECT', 'DISCARD TEMP', false],
    ['SELECT 1 AS x INTO TEMPORARY t', 'SELECT', 'DISCARD TEMP', false],
    ['CREATE TABLE pg_temp.t AS SELECT 1', 'SELECT', 'DISCARD TEMP', false],
    ['CREATE TABLE "pg_temp".t (x int)', 'CREATE', 'DISCARD TEMP', false],
    ["CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'SELECT 1'", 'CREATE', 'DISCARD TEMP', false],
    ['-- tag\n/* more */ create temp table t (x int)', 'CREATE', 'DISCARD TEMP', false],
    ['DECLARE c CURSOR WITH HOLD FOR SELECT 1', 'DECLARE', 'CLOSE ALL', false],
    [
      "DO $$ BEGIN PERFORM set_config('a.b', '1', false); END $$",
      'DO',
      'RESET ALL; UNLISTEN *; DISCARD TEMP; CLOSE ALL; SELECT pg_advisory_unlock_all()',
      true,
    ],
  ])('%j is reset on release with %j', (text, command, sql, resetsSettings) => {
    expect(plan(text, command)).toEqual({ action: 'reset', sql, resetsSettings });
  });

  test.each([
    ['SET ROLE reader', 'SET'],
    ['SET SESSION AUTHORIZATION reader', 'SET'],
    ['RESET ROLE', 'RESET'],
    ['PREPARE q AS SELECT 1', 'PREPARE'],
    ['DEALLOCATE ALL', 'DEALLOCATE'],
    ['DISCARD ALL', 'DISCARD'],
    ["DO $$ BEGIN EXECUTE 'SET ROLE reader'; END $$", 'DO'],
  ])('%j has the connection destroyed on release', (text, command) => {
    expect(plan(text, command).action).toBe('destroy');
  });

  test('several changes are reset in one message; one that needs destroying wins', () => {
    let changes = observeStatement(SESSION_CLEAN, 'SET x.y = 1', result('SET'));
    changes = observeStatement(changes, 'LISTEN a', result('LISTEN'));
    changes = observeStatement(changes, 'CREATE TEMP TABLE t ()', result('CREATE'));
    expect(planRelease(changes)).toEqual({ action: 'reset', sql: 'RESET ALL; UNLISTEN *; DISCARD TEMP', resetsSettings: true });
    expect(planRelease(observeStatement(changes, 'SET ROLE r', result('SET'))).action).toBe('destroy');
  });

  test('a text of several statements is read per tag and leans to "changed"', () => {
    expect(plan('SET LOCAL a.b = 1; SET c.d = 2', 'SET', 'SET')).toEqual({
      action: 'reset',
      sql: 'RESET ALL',
      resetsSettings: true,
    });
    expect(plan('SELECT 1; CREATE TEMP TABLE x ()', 'SELECT', 'CREATE')).toEqual({
      action: 'reset',
      sql: 'DISCARD TEMP',
      resetsSettings: false,
    });
  });

  test('a failed statement (no result) changes nothing', () => {
    expect(observeStatement(SESSION_CLEAN, 'SET x = 1', undefined)).toBe(SESSION_CLEAN);
  });

  test('named statements a holder prepared are deallocated in the reset message, quoted as identifiers', () => {
    expect(planRelease(SESSION_CLEAN, ['q1', 'say "hi"'])).toEqual({
      action: 'reset',
      sql: 'DEALLOCATE "q1"; DEALLOCATE "say ""hi"""',
      resetsSettings: false,
    });
    expect(planRelease(observeStatement(SESSION_CLEAN, 'LISTEN a', result('LISTEN')), ['q1'])).toEqual({
      action: 'reset',
      sql: 'UNLISTEN *; DEALLOCATE "q1"',
      resetsSettings: false,
    });
  });

  test("a change of the kind the connection's own setup made has it destroyed; another kind is reset around it", () => {
    const setup = observeStatement(SESSION_CLEAN, 'SET search_path TO s', result('SET'));
    const listen = observeStatement(SESSION_CLEAN, 'LISTEN a', result('LISTEN'));
    const set = observeStatement(SESSION_CLEAN, 'SET work_mem = 1234', result('SET'));
    expect(planRelease(beyondBaseline(listen, setup))).toEqual({ action: 'reset', sql: 'UNLISTEN *', resetsSettings: false });
    expect(planRelease(beyondBaseline(set, setup)).action).toBe('destroy');
    expect(planRelease(beyondBaseline(SESSION_CLEAN, setup))).toEqual({ action: 'reuse' });
  });
});
