import { describe, expect, test } from 'vitest';
import { checkCopyStatement, isCopyStatement } from '../../src/streams/copy-statement.js';

describe('checkCopyStatement', () => {
  test.each([
    'COPY cv FROM STDIN',
    'copy cv from stdin',
    '  COPY cv FROM STDIN ;  ',
    '/* load */ COPY cv FROM STDIN',
    '-- load\nCOPY cv FROM STDIN',
    '/* outer /* nested */ still a comment */ COPY cv FROM STDIN',
    'COPY public.cv (id, name) FROM STDIN WITH (FORMAT csv, HEADER true)',
    'COPY "Odd Table" ("from", "to") FROM STDIN',
    'COPY "a"".b".cv FROM STDIN',
    "COPY cv FROM STDIN WITH (FORMAT csv, DELIMITER ';', NULL '')",
    "COPY cv FROM STDIN WITH (FORMAT csv, QUOTE E'\\'')",
    'COPY cv FROM STDIN WHERE id > 1 -- trailing comment; SELECT 1',
    'COPY BINARY cv FROM STDIN',
    'COPY U&"My\\0020Table" FROM STDIN',
    'COPY public.U&"t" (a) FROM STDIN',
    'COPY U&"t!0061" UESCAPE \'!\' (a) FROM STDIN',
  ])('accepts %j for copyFrom', (sql) => {
    expect(() => checkCopyStatement('copyFrom', sql)).not.toThrow();
  });

  test.each([
    'COPY cv TO STDOUT',
    '/* x */ COPY cv TO STDOUT',
    'COPY (SELECT 1) TO STDOUT',
    "COPY (SELECT ';', 'x) FROM y', $$ ; TO 'f' $$, $t$a$t$) TO STDOUT WITH (FORMAT csv)",
    'COPY (SELECT g FROM generate_series(1, 3) AS g WHERE g IN (SELECT 1)) TO STDOUT',
    'COPY cv (id) TO STDOUT;',
    'COPY u&"d\\0061ta" TO STDOUT',
    "COPY (SELECT U&'a;b' UESCAPE '!') TO STDOUT",
  ])('accepts %j for copyTo', (sql) => {
    expect(() => checkCopyStatement('copyTo', sql)).not.toThrow();
  });

  test.each([
    ['COPY cc FROM STDIN; SELECT 1', 'the text has 2 statements; send one COPY alone'],
    ["COPY cc FROM '/tmp/f' -- FROM STDIN", "COPY ... FROM 'file' reads or writes a file on the server, which is refused"],
    ["COPY cc FROM PROGRAM 'cat /etc/passwd'", 'COPY ... FROM PROGRAM runs a program on the server, which is refused'],
    ['COPY cc TO STDOUT', 'the statement is a COPY ... TO, the other direction'],
    ['COPY cc FROM STDOUT', 'STDIN does not follow FROM'],
    ["SELECT 'COPY cc FROM STDIN'", 'the statement is a SELECT'],
    ['/* COPY cc FROM STDIN */ SELECT 1', 'the statement is a SELECT'],
    ['-- COPY cc FROM STDIN', 'the text has no statement'],
    ['', 'the text has no statement'],
    ['COPY cc FROM STDIN /* open', 'the text has an unterminated /* comment'],
    ["COPY cc FROM 'x", 'the text has an unterminated string literal'],
    ['COPY "cc FROM STDIN', 'the text has an unterminated quoted identifier'],
    ['COPY cc FROM $a$ STDIN', 'the text has an unterminated dollar-quoted string'],
    ['COPY FROM STDIN', 'no FROM or TO where COPY gives its direction'],
    ['COPY', 'no table name or (query) follows COPY'],
  ])('refuses %j for copyFrom, naming the problem', (sql, problem) => {
    expect(() => checkCopyStatement('copyFrom', sql)).toThrow(
      new TypeError(`copyFrom needs a COPY ... FROM STDIN statement, such as COPY items (id, name) FROM STDIN: ${problem}`),
    );
  });

  test.each([
    ["COPY cc TO '/tmp/cc.out' -- TO STDOUT", "COPY ... TO 'file' reads or writes a file on the server, which is refused"],
    ['COPY (SELECT 1) TO STDOUT; SELECT 2', 'the text has 2 statements; send one COPY alone'],
    ["COPY (SELECT 'TO STDOUT') TO PROGRAM 'x'", 'COPY ... TO PROGRAM runs a program on the server, which is refused'],
    ['COPY cc FROM STDIN', 'the statement is a COPY ... FROM, the other direction'],
    ['WITH x AS (SELECT 1) COPY x TO STDOUT', 'the statement is a WITH'],
  ])('refuses %j for copyTo, naming the problem', (sql, problem) => {
    expect(() => checkCopyStatement('copyTo', sql)).toThrow(
      new TypeError(`copyTo needs a COPY ... TO STDOUT statement, such as COPY (SELECT ...) TO STDOUT: ${problem}`),
    );
  });

  test('refuses text that is not a string', () => {
    expect(() => checkCopyStatement('copyTo', 42)).toThrow(
      new TypeError('copyTo needs a COPY ... TO STDOUT statement, such as COPY (SELECT ...) TO STDOUT'),
    );
  });
});

describe('isCopyStatement', () => {
  test.each([
    ['COPY t TO STDOUT', true],
    ['  /* a /* nested */ still */ -- line\n copy t FROM STDIN', true],
    ['copy', true],
    ['SELECT 1', false],
    ['copying_table', false],
    ['copy$x', false],
    ["SELECT 'COPY t FROM STDIN'", false],
    ['WITH copy AS (SELECT 1) SELECT * FROM copy', false],
    ['/* unterminated COPY', false],
  ])('reads %j as a COPY: %s', (text, expected) => {
    expect(isCopyStatement(text)).toBe(expected);
  });
});
