/**
 * The CodeCheck API example over real HTTP (a listening server and fetch) against real PostgreSQL:
 * its own database on the shared server for the routes, a private server for the outage.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { buildApp } from '../../examples/codecheck-api/app.js';
import { toErrorAnswer } from '../../examples/codecheck-api/errors.js';
import { migrate } from '../../examples/codecheck-api/schema.js';
import { DatabaseQueryError, type DatabaseOptions } from '../../src/index.js';
import { getTestDatabaseUrl } from '../support/database-url.js';
import { startPostgres, type PostgresServer } from '../support/postgres-server.js';
import { adminQuery, eventually, ROOT, uniqueName } from '../support/test-database.js';

const DATABASE = uniqueName('example_api');
const apps: FastifyInstance[] = [];
let url: string;
let base: string;
let app: FastifyInstance;

function urlOf(server: string, database: string): string {
  const parsed = new URL(server);
  parsed.pathname = `/${database}`;
  parsed.searchParams.set('sslmode', 'disable');
  return parsed.toString();
}

async function startApp(databaseOptions: DatabaseOptions): Promise<{ app: FastifyInstance; base: string }> {
  const started = await buildApp({
    databaseOptions: { logLevel: 'silent', connectionTimeoutMillis: 2000, ...databaseOptions },
    logger: false,
  });
  apps.push(started);
  const address = await started.listen({ host: '127.0.0.1', port: 0 });
  return { app: started, base: address };
}

// Response bodies are whatever the API sent; the assertions check their shape.
async function call(
  method: string,
  path: string,
  body?: unknown,
  at = base,
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
): Promise<{ status: number; headers: Headers; text: string; json: any }> {
  const response = await fetch(`${at}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, headers: response.headers, text, json: text === '' ? undefined : JSON.parse(text) };
}

/** Nothing in a body may come from the database's message, its DETAIL, the SQL or the connection settings. */
function expectNoLeak(text: string): void {
  for (const secret of [
    'postgres-test-secret',
    'INSERT',
    'SELECT',
    'duplicate key',
    'Key (',
    'violates',
    'SQLSTATE',
    'jurisdiction_codes',
    'stack',
  ])
    expect(text).not.toContain(secret);
}

beforeAll(async () => {
  await adminQuery(`CREATE DATABASE ${DATABASE}`);
  url = urlOf(getTestDatabaseUrl(), DATABASE);
  ({ app, base } = await startApp({ connectionString: url }));
});

afterAll(async () => {
  await Promise.all(apps.map((a) => a.close()));
  await adminQuery(`DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)`);
});

describe('codecheck-api example', () => {
  test('creates and seeds its schema on first start; a second run of the migration changes nothing', async () => {
    const counts = await app.db.executeQuery<{ j: number; c: number; a: number }>(
      'SELECT (SELECT count(*) FROM jurisdictions)::int AS j, (SELECT count(*) FROM building_codes)::int AS c, (SELECT count(*) FROM jurisdiction_codes)::int AS a',
    );
    expect(counts).toEqual([{ j: 7, c: 8, a: 14 }]);
    expect(await migrate(app.db)).toBe(false);
  });

  test('GET /jurisdictions lists them, filters by type and by a name fragment whose wildcards match literally', async () => {
    const all = await call('GET', '/jurisdictions');
    expect(all.status).toBe(200);
    expect(all.json.jurisdictions.length).toBeGreaterThanOrEqual(7);
    const counties = await call('GET', '/jurisdictions?type=county');
    expect(counties.json.jurisdictions.map((j: { name: string }) => j.name)).toEqual(['Los Angeles County', 'Travis County']);
    const fragment = await call('GET', '/jurisdictions?q=TEX');
    expect(fragment.json.jurisdictions).toEqual([{ id: expect.any(Number), name: 'Texas', type: 'state', codeCount: 2 }]);
    expect((await call('GET', '/jurisdictions?q=%25')).json.jurisdictions).toEqual([]);
  });

  test('GET /jurisdictions?type=town answers 400 naming the allowed types', async () => {
    const response = await call('GET', '/jurisdictions?type=town');
    expect(response.status).toBe(400);
    expect(response.json).toEqual({
      statusCode: 400,
      error: 'Bad Request',
      message: 'querystring/type must be one of: city, county, state.',
    });
  });

  test('GET /jurisdictions/:id returns one with its adopted codes; 404 for an unknown id, 400 for a malformed one', async () => {
    const [travis] = await app.db.executeQuery<{ id: number }>("SELECT id FROM jurisdictions WHERE name = 'Travis County'");
    const found = await call('GET', `/jurisdictions/${travis!.id}`);
    expect(found.status).toBe(200);
    expect(found.json).toMatchObject({ id: travis!.id, name: 'Travis County', type: 'county' });
    expect(found.json.codes.map((c: { code: string }) => c.code)).toEqual(['IBC-2018', 'IFC-2021']);
    const missing = await call('GET', '/jurisdictions/99999');
    expect(missing.status).toBe(404);
    expect(missing.json.message).toBe('Jurisdiction 99999 does not exist.');
    expect((await call('GET', '/jurisdictions/abc')).status).toBe(400);
  });

  test('POST /jurisdictions creates one (201 with Location); the same name again is a 409 that leaks nothing', async () => {
    const created = await call('POST', '/jurisdictions', { name: '  Portland ', type: 'city' });
    expect(created.status).toBe(201);
    expect(created.json).toMatchObject({ id: expect.any(Number), name: 'Portland', type: 'city' });
    expect(created.headers.get('location')).toBe(`/jurisdictions/${created.json.id}`);
    expect((await call('GET', `/jurisdictions/${created.json.id}`)).json.name).toBe('Portland');
    const duplicate = await call('POST', '/jurisdictions', { name: 'Portland', type: 'county' });
    expect(duplicate.status).toBe(409);
    expect(duplicate.json).toEqual({
      statusCode: 409,
      error: 'Conflict',
      message: 'A jurisdiction with this name already exists.',
    });
    expectNoLeak(duplicate.text);
  });

  test('POST /jurisdictions answers 400 with a clear message for each kind of invalid body', async () => {
    const cases: [unknown, string][] = [
      [{ type: 'city' }, "body must have the property 'name'."],
      [{ name: 'Boise', type: 'town' }, 'body/type must be one of: city, county, state.'],
      [{ name: '   ', type: 'city' }, 'body/name must not be blank.'],
      [{ name: 'x'.repeat(201), type: 'city' }, 'body/name must NOT have more than 200 characters.'],
      [{ name: { first: 'Boise' }, type: 'city' }, 'body/name must be string.'],
      ['{"name": "Boise",', "Body is not valid JSON but content-type is set to 'application/json'"],
    ];
    for (const [body, message] of cases) {
      const response = await call('POST', '/jurisdictions', body);
      expect([response.status, response.json.message]).toEqual([400, message]);
    }
    expect((await call('GET', '/jurisdictions?q=Boise')).json.jurisdictions).toEqual([]);
  });

  test('POST /jurisdictions/:id/codes adopts the codes in one transaction and reports those already adopted', async () => {
    const created = (await call('POST', '/jurisdictions', { name: 'Boulder', type: 'city' })).json;
    const first = await call('POST', `/jurisdictions/${created.id}/codes`, { codes: ['IBC-2021', 'NEC-2023'] });
    expect(first.status).toBe(200);
    expect(first.json).toEqual({ jurisdictionId: created.id, adopted: ['IBC-2021', 'NEC-2023'], alreadyAdopted: [] });
    const second = await call('POST', `/jurisdictions/${created.id}/codes`, { codes: ['NEC-2023', 'IFC-2021'] });
    expect(second.json).toEqual({ jurisdictionId: created.id, adopted: ['IFC-2021'], alreadyAdopted: ['NEC-2023'] });
    const codes = (await call('GET', `/jurisdictions/${created.id}`)).json.codes.map((c: { code: string }) => c.code);
    expect(codes).toEqual(['IBC-2021', 'IFC-2021', 'NEC-2023']);
  });

  test('POST /jurisdictions/:id/codes with an unknown code is a 400 and adopts none of the codes (all or nothing)', async () => {
    const created = (await call('POST', '/jurisdictions', { name: 'Tacoma', type: 'city' })).json;
    const transactionsBefore = app.db.getStats().transactionsExecuted;
    const response = await call('POST', `/jurisdictions/${created.id}/codes`, { codes: ['IBC-2021', 'IPC-2021', 'NOT-A-CODE'] });
    expect(response.status).toBe(400);
    expect(response.json.message).toBe('Unknown building code: NOT-A-CODE. Nothing was adopted.');
    expect((await call('GET', `/jurisdictions/${created.id}`)).json.codes).toEqual([]);
    expect(app.db.getStats().transactionsExecuted).toBe(transactionsBefore);
  });

  test('POST /jurisdictions/:id/codes answers 404 for an unknown jurisdiction and 400 for an empty or malformed list', async () => {
    expect((await call('POST', '/jurisdictions/99999/codes', { codes: ['IBC-2021'] })).status).toBe(404);
    expect((await call('POST', '/jurisdictions/1/codes', { codes: [] })).json.message).toBe(
      'body/codes must NOT have fewer than 1 items.',
    );
    expect((await call('POST', '/jurisdictions/1/codes', { codes: ['IBC-2021', 'IBC-2021'] })).status).toBe(400);
  });

  test('answers 400 naming the field for wrong JSON types and extra properties: nothing is coerced or dropped', async () => {
    const cases: [string, string, unknown, string][] = [
      ['POST', '/jurisdictions', { name: 12345, type: 'city' }, 'body/name must be string.'],
      ['POST', '/jurisdictions', { name: ['Reno'], type: 'city' }, 'body/name must be string.'],
      ['POST', '/jurisdictions', { name: true, type: 'city' }, 'body/name must be string.'],
      ['POST', '/jurisdictions', { name: 'Reno', type: 'city', mayor: 'x' }, "body must not have the property 'mayor'."],
      ['POST', '/jurisdictions/1/codes', { codes: 'IBC-2021' }, 'body/codes must be array.'],
      ['POST', '/jurisdictions/1/codes', { codes: [2021] }, 'body/codes/0 must be string.'],
      ['POST', '/jurisdictions/1/codes', { codes: ['IBC-2021'], force: true }, "body must not have the property 'force'."],
    ];
    const answers = [];
    for (const [method, path, body] of cases) {
      const response = await call(method, path, body);
      answers.push([response.status, response.json.message]);
    }
    expect(answers).toEqual(cases.map(([, , , message]) => [400, message]));
    expect(await app.db.executeQuery("SELECT name FROM jurisdictions WHERE name IN ('12345', 'Reno', 'true')")).toEqual([]);
  });

  test('answers 400 to ids that are not plain decimal integers in range (0x10, +1, 1e3, 01, 2147483648, -1)', async () => {
    for (const id of ['0x10', '+1', '1e3', '01', '2147483648', '99999999999', '-1', '0', '1.0', '%201']) {
      for (const [method, path, body] of [
        ['GET', `/jurisdictions/${id}`, undefined],
        ['POST', `/jurisdictions/${id}/codes`, { codes: ['IBC-2021'] }],
      ] as const) {
        const response = await call(method, path, body);
        expect([id, method, response.status, response.json.message]).toEqual([
          id,
          method,
          400,
          'params/id must be a whole number from 1 to 2147483647.',
        ]);
      }
    }
    expect((await call('GET', '/jurisdictions/2147483647')).status).toBe(404);
  });

  test('answers 400 to a NUL byte in any string input and logs it as one info line without a stack', async () => {
    const lines: string[] = [];
    const logged = await buildApp({
      databaseOptions: { connectionString: url, logLevel: 'silent', connectionTimeoutMillis: 2000 },
      logger: { level: 'info', stream: { write: (line: string) => void lines.push(line) } },
    });
    apps.push(logged);
    const at = await logged.listen({ host: '127.0.0.1', port: 0 });
    const cases: [string, string, unknown, string][] = [
      ['POST', '/jurisdictions', { name: 'Nul\u0000ville', type: 'city' }, 'body/name must not contain control characters.'],
      ['GET', '/jurisdictions?q=a%00b', undefined, 'querystring/q must not contain control characters.'],
      ['POST', '/jurisdictions/1/codes', { codes: ['IBC\u0000'] }, 'body/codes/0 must not contain control characters.'],
    ];
    for (const [method, path, body, message] of cases) {
      const response = await call(method, path, body, at);
      expect([response.status, response.json.message]).toEqual([400, message]);
    }
    // Whatever still reaches the server as a bad value (class 22) is the client's mistake too.
    const nul = await app.db.executeQuery('SELECT $1::text AS v', ['a\u0000b']).catch((e: unknown) => e);
    expect([(nul as DatabaseQueryError).sqlState, toErrorAnswer(nul).statusCode]).toEqual(['22021', 400]);
    const date = await app.db.executeQuery('SELECT make_date($1::int, 13, 1) AS v', [2020]).catch((e: unknown) => e);
    expect([(date as DatabaseQueryError).sqlState, toErrorAnswer(date).statusCode]).toEqual(['22008', 400]);
    const records = lines.map((line) => JSON.parse(line) as { level: number; msg: string });
    expect(records.filter((r) => r.level >= 50)).toEqual([]);
    expect(lines.filter((line) => line.includes('"stack"'))).toEqual([]);
    expect(records.filter((r) => r.msg === 'request rejected')).toHaveLength(3);
  });

  test('maps the server errors 23505, 23503, 22P02 and 23514 to 409/400 without the server message, DETAIL or SQL', async () => {
    const failures = [
      "INSERT INTO jurisdictions (name, type) VALUES ('Texas', 'state')",
      'INSERT INTO jurisdiction_codes (jurisdiction_id, code_id) VALUES (99999, 1)',
      "SELECT 'not a number'::int",
      "INSERT INTO jurisdictions (name, type) VALUES ('Gotham', 'town')",
    ];
    const answers = [];
    for (const sql of failures) {
      const error = await app.db.executeQuery(sql, [], { readOnly: false }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(DatabaseQueryError);
      answers.push(toErrorAnswer(error));
    }
    expect(answers.map((a) => [a.statusCode, a.message])).toEqual([
      [409, 'A jurisdiction with this name already exists.'],
      [400, 'The request refers to a record that does not exist.'],
      [400, 'A value in the request has the wrong format or is out of range.'],
      [400, 'type must be one of: city, county, state.'],
    ]);
    for (const answer of answers) expectNoLeak(JSON.stringify(answer));
  });

  test('answers 503 with Retry-After when no connection becomes free within the acquire deadline', async () => {
    const busy = await startApp({ connectionString: url, min: 0, max: 1, connectionTimeoutMillis: 500 });
    let release!: () => void;
    const holder = busy.app.db.withDb(true, () => new Promise<void>((resolve) => (release = resolve)));
    try {
      const response = await call('GET', '/jurisdictions', undefined, busy.base);
      expect(response.status).toBe(503);
      expect(response.headers.get('retry-after')).toBe('1');
      expect(response.json).toEqual({
        statusCode: 503,
        error: 'Service Unavailable',
        message: 'The database is busy: no connection became free in time. Try again shortly.',
      });
      expect(busy.app.db.getStats().poolExhaustedCount).toBe(1);
    } finally {
      release();
      await holder;
    }
    expect((await call('GET', '/jurisdictions', undefined, busy.base)).status).toBe(200);
  });

  describe('with a private server that stops', () => {
    let server: PostgresServer;
    beforeAll(async () => {
      server = await startPostgres();
    });
    afterAll(async () => {
      await server?.destroy();
    });

    test('/health/ready turns from 200 to 503 when the server stops, routes answer 503, /health/live stays 200', async () => {
      const outage = await startApp({
        connectionString: `${server.url}?sslmode=disable`,
        min: 1,
        max: 2,
        connectionTimeoutMillis: 1000,
      });
      const ready = await call('GET', '/health/ready', undefined, outage.base);
      expect(ready.status).toBe(200);
      expect(ready.json.status).toBe('healthy');
      await server.stop('fast');
      const down = await call('GET', '/health/ready', undefined, outage.base);
      expect(down.status).toBe(503);
      expect(down.json).toMatchObject({ status: 'unhealthy', databaseVersion: null });
      expectNoLeak(down.text);
      const route = await call('GET', '/jurisdictions', undefined, outage.base);
      expect(route.status).toBe(503);
      expect(route.json.message).toBe('The database is unavailable. Try again shortly.');
      expectNoLeak(route.text);
      expect((await call('GET', '/health/live', undefined, outage.base)).status).toBe(200);
    });
  });

  test('the server closes gracefully on SIGTERM: exit 0, the pool drained, no connection left', async () => {
    const applicationName = uniqueName('example_sigterm');
    const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'examples', 'codecheck-api', 'server.ts')], {
      cwd: ROOT,
      env: { PATH: process.env.PATH, DATABASE_URL: url, DB_APPLICATION_NAME: applicationName, HOST: '127.0.0.1', PORT: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const address = await eventually(
        () => /"msg":"Server listening at (http:\/\/127\.0\.0\.1:\d+)"/.exec(output)?.[1],
        20_000,
        `the server to listen:\n${output}`,
      );
      expect((await call('GET', '/jurisdictions?type=state', undefined, address)).status).toBe(200);
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(output).toContain('database shutdown complete');
      const left = await adminQuery<{ n: number }>(
        'SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1',
        [applicationName],
      );
      expect(left[0]!.n).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
