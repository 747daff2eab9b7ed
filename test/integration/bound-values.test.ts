/**
 * Bound values never appear in the library's errors or log lines: the server's data-exception
 * messages (SQLSTATE class 22) quote the input they could not use, anywhere in the sentence, and
 * messages of other classes quote a value handed to the server as a name (regclass, set_config, ...).
 */
import { afterAll, describe, expect, test } from 'vitest';
import { DatabaseQueryError, type Database } from '../../src/index.js';
import { captureLogs, openDatabase } from '../support/test-database.js';

const logs = captureLogs('trace');
let db: Database | undefined;
afterAll(async () => {
  await db?.shutdown();
});

/** [SQL, the bound value, a part of it that must not appear, the SQLSTATE the server answers]. */
const CASES: [string, unknown, string, string][] = [
  ['SELECT $1::int AS v', '98765432109', '98765432109', '22003'],
  ['SELECT $1::int AS v', 'Zq7secret', 'Zq7secret', '22P02'],
  ['SELECT $1::int AS v', 'a"Zq8secret"b', 'Zq8secret', '22P02'],
  ['SELECT $1::timestamptz AS v', 'Zq9secret', 'Zq9secret', '22007'],
  ['SELECT $1::interval AS v', '5 Zqsecretnights', 'Zqsecretnights', '22007'],
  ["SELECT to_date($1, 'YYYY') AS v", 'Zq10', 'Zq10', '22007'],
  ['SELECT make_date($1::int, 13, 1) AS v', 2417, '2417', '22008'],
  ["SELECT convert_from($1::bytea, 'UTF8') AS v", '\\xc328', '0xc3', '22021'],
  ['SELECT $1::uuid AS v', 'Zq11secret-uuid', 'Zq11secret', '22P02'],
  ['SELECT (\'{"a":1}\'::jsonb) #> $1::text[] AS v', '{Zq12secret', 'Zq12secret', '22P02'],
];

describe('class-22 messages', () => {
  test('carry no part of the bound value, in the error, its JSON or any log line of the library', async () => {
    db = openDatabase({ logger: logs.logger, logLevel: 'trace', max: 2 });
    const seen: string[] = [];
    for (const [sql, value, secret, state] of CASES) {
      for (const run of [
        () => db!.executeQuery(sql, [value]),
        () => db!.withDb(false, (client) => client.query(sql, [value])),
        () => db!.executeTransaction([{ text: sql, params: [value] }]),
      ]) {
        const error = await run().then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(error).toBeInstanceOf(DatabaseQueryError);
        const queryError = error as DatabaseQueryError;
        expect([sql, queryError.sqlState]).toEqual([sql, state]);
        expect(queryError.message).toContain('<value redacted>');
        for (const text of [queryError.message, JSON.stringify(queryError), String(queryError.stack)]) {
          if (text.includes(secret)) seen.push(`${sql}: ${text}`);
        }
      }
    }
    for (const line of logs.lines) for (const [, , secret] of CASES) if (line.includes(secret)) seen.push(`log: ${line}`);
    expect(seen).toEqual([]);
  });

  test('keep the parts that are not input: the type, and the SQLSTATE', async () => {
    db ??= openDatabase({ logger: logs.logger, logLevel: 'trace', max: 2 });
    const error = (await db.executeQuery('SELECT $1::int AS v', ['98765432109']).catch((e: unknown) => e)) as Error;
    expect(error.message).toBe('value <value redacted> is out of range for type integer (SQLSTATE 22003)');
    const trailing = (await db.executeQuery('SELECT $1::int AS v', ['x']).catch((e: unknown) => e)) as Error;
    expect(trailing.message).toBe('invalid input syntax for type integer: <value redacted> (SQLSTATE 22P02)');
  });
});

/** [SQL, the bound value, the SQLSTATE]: a value read as a name is quoted (often folded to lower case) outside class 22. */
const NAME_CASES: [string, string, string][] = [
  ['SELECT $1::regclass AS v', 'Zq20Secret', '42P01'],
  ['SELECT nextval($1) AS v', 'Zq21Secret', '42P01'],
  ['SELECT $1::regproc AS v', 'Zq22Secret', '42883'],
  ['SELECT $1::regtype AS v', 'Zq23Secret', '42704'],
  ['SELECT $1::regrole AS v', 'Zq24Secret', '42704'],
  ['SELECT $1::regnamespace AS v', 'Zq25Secret', '3F000'],
  ['SELECT current_setting($1) AS v', 'Zq26Secret', '42704'],
  ["SELECT set_config($1, '1', true) AS v", 'Zq27Secret.x y', '42602'],
  ['SELECT to_tsquery($1) AS v', 'Zq28Secret & & x', '42601'],
];

describe('messages of other classes', () => {
  test('carry no bound value read as a name, in any case, through executeQuery, withDb, executeTransaction or a stream', async () => {
    db ??= openDatabase({ logger: logs.logger, logLevel: 'trace', max: 2 });
    const seen: string[] = [];
    for (const [sql, value, state] of NAME_CASES) {
      const secret = value.slice(0, 10).toLowerCase();
      for (const run of [
        () => db!.executeQuery(sql, [value]),
        () => db!.withDb(false, (client) => client.query(sql, [value])),
        () => db!.executeTransaction([{ text: sql, params: [value] }]),
        async () => {
          for await (const row of db!.stream(sql, [value])) void row;
        },
      ]) {
        const error = (await run().then(
          () => undefined,
          (e: unknown) => e,
        )) as DatabaseQueryError;
        expect([sql, error]).toEqual([sql, expect.any(DatabaseQueryError)]);
        expect([sql, error.sqlState]).toEqual([sql, state]);
        expect(error.message).toContain('<value redacted>');
        for (const text of [error.message, JSON.stringify(error), String(error.stack)])
          if (text.toLowerCase().includes(secret)) seen.push(`${sql}: ${text}`);
      }
    }
    for (const line of logs.lines)
      for (const [, value] of NAME_CASES)
        if (line.toLowerCase().includes(value.slice(0, 10).toLowerCase())) seen.push(`log: ${line}`);
    expect(seen).toEqual([]);
  });

  test('keep the names that come from the SQL text', async () => {
    db ??= openDatabase({ logger: logs.logger, logLevel: 'trace', max: 2 });
    const error = (await db
      .executeQuery('SELECT * FROM no_such_table_zq WHERE $1::text IS NULL', ['abc'])
      .catch((e: unknown) => e)) as Error;
    expect(error.message).toBe('relation "no_such_table_zq" does not exist (SQLSTATE 42P01)');
  });
});
