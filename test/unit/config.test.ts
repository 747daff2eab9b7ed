import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, Database, loadConfig, SETTINGS, type ResolvedConfig, type SettingSpec } from '../../src/index.js';
import { captureLogs } from '../support/test-database.js';

const SECRET = 'Sup3r-Secret-Pw';

let certDir: string;
let certFile: string;
let keyFile: string;

beforeAll(() => {
  certDir = mkdtempSync(join(tmpdir(), 'codecheck-config-test-'));
  certFile = join(certDir, 'client.crt');
  keyFile = join(certDir, 'client.key');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=config-test',
      '-keyout',
      keyFile,
      '-out',
      certFile,
    ],
    { stdio: 'ignore' },
  );
});
afterAll(() => rmSync(certDir, { recursive: true, force: true }));

/** Catches the ConfigError `run` throws (failing the test when it throws nothing or something else). */
function configError(run: () => unknown): ConfigError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('expected a ConfigError, but nothing was thrown');
}

/** Where a setting lands in the resolved config. */
function resolvedValue(config: ResolvedConfig, option: string): unknown {
  const ssl: Record<string, string> = { sslMode: 'mode', sslRootCert: 'rootCertPath', sslCert: 'certPath', sslKey: 'keyPath' };
  if (ssl[option]) return (config.ssl as unknown as Record<string, unknown>)[ssl[option]];
  if (option === 'replicas') return config.replicas.map((r) => `${r.host}:${r.port}`);
  if (option === 'listenUrl') return config.listen && `${config.listen.host}:${config.listen.port}`;
  return (config as unknown as Record<string, unknown>)[option];
}

/** A valid, non-default value for a setting's variable, and what it resolves to. */
function sampleFor(spec: SettingSpec): { text: string; expected: unknown } {
  switch (spec.option) {
    case 'sslMode':
      return { text: 'require', expected: 'require' };
    case 'sslRootCert':
      return { text: certFile, expected: certFile };
    case 'sslCert':
      return { text: certFile, expected: certFile };
    case 'sslKey':
      return { text: keyFile, expected: keyFile };
    case 'passwordFile':
      // Any readable file: it is checked at construction, read for each connection.
      return { text: certFile, expected: certFile };
    case 'targetSessionAttrs':
      return { text: 'standby', expected: 'standby' };
    case 'loadBalanceHosts':
      return { text: 'random', expected: 'random' };
    case 'readTargetSessionAttrs':
      return { text: 'prefer-standby', expected: 'prefer-standby' };
    case 'replicas':
      return {
        text: 'postgres://r1.example:5433/app, postgres://r2.example/app',
        expected: ['r1.example:5433', 'r2.example:5432'],
      };
    case 'listenUrl':
      return { text: 'postgres://direct.example:5433/app', expected: 'direct.example:5433' };
  }
  switch (spec.kind) {
    case 'string':
      return { text: `${spec.option}-value`, expected: `${spec.option}-value` };
    case 'boolean':
      return { text: String(!spec.default), expected: !spec.default };
    case 'level':
      return { text: spec.default === 'debug' ? 'error' : 'debug', expected: spec.default === 'debug' ? 'error' : 'debug' };
    case 'seconds': {
      const seconds = (spec.default as number) / 1000 + 1;
      return { text: String(seconds), expected: seconds * 1000 };
    }
    case 'integer': {
      const value = (spec.default as number) + 1 <= spec.max! ? (spec.default as number) + 1 : (spec.default as number) - 1;
      return { text: String(value), expected: value };
    }
    case 'list':
      throw new Error(`no sample value for the list setting ${spec.option}`);
  }
}

const withEnv = SETTINGS.filter((spec): spec is SettingSpec & { env: string } => spec.env !== undefined);
const numeric = withEnv.filter((spec) => spec.kind === 'integer' || spec.kind === 'seconds');

describe('loadConfig defaults', () => {
  it('resolves every setting of the table to its default when the environment is empty', () => {
    const config = loadConfig({});
    for (const spec of SETTINGS) {
      const value = resolvedValue(config, spec.option);
      if (spec.option === 'replicas') expect(value, spec.option).toEqual([]);
      // Unset, it resolves to libpq's `any` for one host (read-write for a host list: test/unit/host-list.test.ts).
      else if (spec.option === 'targetSessionAttrs') expect(value, spec.option).toBe('any');
      else expect(value, spec.option).toEqual(spec.default);
    }
    expect(config.warnings).toEqual([]);
  });

  it('defaults to localhost:5432, user postgres, database postgres, sslmode prefer, pool 2..10 and a 30 s timeout', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      host: 'localhost',
      port: 5432,
      user: 'postgres',
      database: 'postgres',
      min: 2,
      max: 10,
      connectionTimeoutMillis: 30_000,
    });
    expect(config.password).toBeUndefined();
    expect(config.ssl.mode).toBe('prefer');
  });
});

describe('loadConfig DB_LISTEN_URL', () => {
  it('keeps only the resolved target, its password hidden, with the primary TLS settings', () => {
    const config = loadConfig({ DB_LISTEN_URL: 'postgres://u:listen-secret@direct.example:5433/app', DB_SSLMODE: 'disable' });
    expect(config.listen).toMatchObject({ name: 'listener', host: 'direct.example', port: 5433, user: 'u', database: 'app' });
    expect(config.listen?.password).toBe('listen-secret');
    expect(JSON.stringify(config)).not.toContain('listen-secret');
    expect(config).not.toHaveProperty('listenUrl');
  });

  it('is undefined when unset (the listener uses the primary)', () => {
    expect(loadConfig({}).listen).toBeUndefined();
  });
});

describe('loadConfig environment variables', () => {
  it.each(withEnv.map((spec) => [spec.env, spec] as const))('reads %s', (env, spec) => {
    const { text, expected } = sampleFor(spec);
    // A client certificate needs its key and vice versa; the pair belongs together.
    const extra: Record<string, string> =
      spec.option === 'sslCert' ? { DB_SSLKEY: keyFile } : spec.option === 'sslKey' ? { DB_SSLCERT: certFile } : {};
    const config = loadConfig({ [env]: text, ...extra });
    expect(resolvedValue(config, spec.option)).toEqual(expected);
  });

  it('reads DB_TIMEOUT in seconds, fractions included, and exposes milliseconds', () => {
    expect(loadConfig({ DB_TIMEOUT: '5' }).connectionTimeoutMillis).toBe(5000);
    expect(loadConfig({ DB_TIMEOUT: '0.25' }).connectionTimeoutMillis).toBe(250);
    expect(loadConfig({}, { connectionTimeoutMillis: 5 }).connectionTimeoutMillis).toBe(5);
  });

  it('treats empty and blank variables as unset', () => {
    const env = Object.fromEntries(withEnv.map((spec) => [spec.env, spec.option.length % 2 === 0 ? '' : '   ']));
    const config = loadConfig({ ...env, DATABASE_URL: '' });
    expect(config.host).toBe('localhost');
    expect(config.port).toBe(5432);
    expect(config.connectionTimeoutMillis).toBe(30_000);
    expect(config.ssl.mode).toBe('prefer');
    expect(config.pgbouncer).toBe(false);
    expect(config.replicas).toEqual([]);
  });

  it('keeps DB_REPLICA_URLS passwords hidden and fills missing replica fields from the primary', () => {
    const config = loadConfig({
      DB_USER: 'app',
      DB_PASSWORD: SECRET,
      DB_NAME: 'appdb',
      DB_REPLICA_URLS: `postgres://reader:${SECRET}x@r1.example:5433/other,postgres://r2.example`,
    });
    expect(config.replicas).toHaveLength(2);
    expect(config.replicas[0]).toMatchObject({
      host: 'r1.example',
      port: 5433,
      user: 'reader',
      database: 'other',
      name: 'r1.example:5433',
    });
    expect(config.replicas[0]!.password).toBe(`${SECRET}x`);
    expect(config.replicas[1]).toMatchObject({ host: 'r2.example', port: 5432, user: 'app', database: 'appdb' });
    expect(config.replicas[1]!.password).toBe(SECRET);
    expect(JSON.stringify(config)).not.toContain(SECRET);
    expect(inspect(config, { depth: 10 })).not.toContain(SECRET);
  });
});

describe('loadConfig DATABASE_URL', () => {
  it('reads host, port, user, password, database, sslmode and application_name from the URL', () => {
    const config = loadConfig({
      DATABASE_URL: `postgresql://alice:${encodeURIComponent(`${SECRET}/@`)}@db.example:6543/shop?sslmode=disable&application_name=shop-api`,
    });
    expect(config).toMatchObject({
      host: 'db.example',
      port: 6543,
      user: 'alice',
      database: 'shop',
      applicationName: 'shop-api',
    });
    expect(config.password).toBe(`${SECRET}/@`);
    expect(config.ssl.mode).toBe('disable');
  });

  it('wins over DB_* variables and warns once per ignored variable, naming it', () => {
    const config = loadConfig({
      DATABASE_URL: 'postgres://alice@url-host:6543/urldb',
      DB_HOST: 'env-host',
      DB_PORT: '7000',
      DB_NAME: 'envdb',
      DB_POOL_MAX: '7',
    });
    expect(config).toMatchObject({ host: 'url-host', port: 6543, database: 'urldb', user: 'alice', max: 7 });
    expect(config.warnings).toHaveLength(3);
    for (const name of ['DB_HOST', 'DB_PORT', 'DB_NAME'])
      expect(
        config.warnings.filter((w) => w.includes(name)),
        name,
      ).toHaveLength(1);
  });

  it('uses DB_* variables for the fields the URL leaves out, without a warning', () => {
    const config = loadConfig({
      DATABASE_URL: 'postgres://url-host/urldb',
      DB_USER: 'bob',
      DB_PASSWORD: SECRET,
      DB_PORT: '7000',
    });
    expect(config).toMatchObject({ host: 'url-host', database: 'urldb', user: 'bob', port: 7000 });
    expect(config.password).toBe(SECRET);
    expect(config.warnings).toEqual([]);
  });

  it('logs the precedence warning through the Database logger, naming the ignored variable', async () => {
    const { logger, records } = captureLogs('warn');
    const saved = process.env.DB_HOST;
    process.env.DB_HOST = 'env-host';
    try {
      const db = new Database({ connectionString: 'postgres://u@url-host/db?sslmode=disable', logger });
      await db.shutdown();
    } finally {
      if (saved === undefined) delete process.env.DB_HOST;
      else process.env.DB_HOST = saved;
    }
    const warnings = records().filter((r) => r.level === 40 && String(r.msg).includes('DB_HOST'));
    expect(warnings).toHaveLength(1);
  });
});

describe('loadConfig explicit options', () => {
  it('win over DATABASE_URL and DB_* variables', () => {
    const config = loadConfig(
      { DATABASE_URL: 'postgres://u:p@url-host:6543/urldb?sslmode=require', DB_POOL_MAX: '7', DB_TIMEOUT: '9' },
      { host: 'opt-host', port: 1234, max: 3, connectionTimeoutMillis: 1500, sslMode: 'disable', password: SECRET },
    );
    expect(config).toMatchObject({ host: 'opt-host', port: 1234, database: 'urldb', max: 3, connectionTimeoutMillis: 1500 });
    expect(config.password).toBe(SECRET);
    expect(config.ssl.mode).toBe('disable');
  });

  it('take connectionString in place of DATABASE_URL', () => {
    const config = loadConfig({ DATABASE_URL: 'postgres://env-url-host/a' }, { connectionString: 'postgres://opt-url-host/b' });
    expect(config).toMatchObject({ host: 'opt-url-host', database: 'b' });
  });

  it('accept 0 and false where the table allows them', () => {
    const config = loadConfig(
      { DB_POOL_MIN: '3', DB_PGBOUNCER: 'true' },
      { min: 0, pgbouncer: false, statementTimeoutMillis: 0 },
    );
    expect(config).toMatchObject({ min: 0, pgbouncer: false, statementTimeoutMillis: 0 });
  });

  it('are validated like variables and named as options in problems', () => {
    const error = configError(() => loadConfig({}, { max: 0, port: 70_000, statementTimeoutMillis: -5 }));
    expect(error.problems).toHaveLength(3);
    expect(error.problems.find((p) => p.includes('option max'))).toMatch(/out of range; expected 1–10000/);
    expect(error.problems.find((p) => p.includes('option port'))).toMatch(/expected 1–65535/);
    expect(error.problems.find((p) => p.includes('option statementTimeoutMillis'))).toBeDefined();
  });
});

describe('loadConfig bad values', () => {
  it.each(numeric.map((spec) => [spec.env, spec] as const))(
    'rejects a non-numeric %s, naming it and the accepted range',
    (env, spec) => {
      const error = configError(() => loadConfig({ [env]: 'twelve' }));
      expect(error.code).toBe('CONFIG_INVALID');
      expect(error.problems).toHaveLength(1);
      expect(error.problems[0]).toContain(env);
      expect(error.problems[0]).toContain('"twelve"');
      const unit = spec.kind === 'seconds' ? ' seconds' : '';
      expect(error.problems[0]).toContain(
        `expected ${spec.kind === 'seconds' ? spec.min! / 1000 : spec.min}–${spec.kind === 'seconds' ? spec.max! / 1000 : spec.max}`,
      );
      expect(error.problems[0]).toContain(unit);
    },
  );

  it.each(numeric.map((spec) => [spec.env, spec] as const))('rejects a negative %s', (env) => {
    const error = configError(() => loadConfig({ [env]: '-1' }));
    expect(error.problems).toHaveLength(1);
    expect(error.problems[0]).toContain(env);
  });

  it.each(numeric.map((spec) => [spec.env, spec] as const))('rejects %s above its maximum', (env, spec) => {
    const tooBig = spec.kind === 'seconds' ? spec.max! / 1000 + 1 : spec.max! + 1;
    const error = configError(() => loadConfig({ [env]: String(tooBig) }));
    expect(error.problems).toHaveLength(1);
    expect(error.problems[0]).toContain(env);
    expect(error.problems[0]).toContain('out of range');
  });

  it.each(numeric.filter((spec) => spec.min! > 0).map((spec) => [spec.env, spec] as const))(
    'rejects %s below its minimum',
    (env, spec) => {
      const tooSmall = spec.kind === 'seconds' ? 0 : spec.min! - 1;
      const error = configError(() => loadConfig({ [env]: String(tooSmall) }));
      expect(error.problems[0]).toContain(env);
      expect(error.problems[0]).toContain('out of range');
    },
  );

  it('rejects a fractional integer such as DB_POOL_MAX=2.5', () => {
    expect(configError(() => loadConfig({ DB_POOL_MAX: '2.5' })).problems[0]).toContain('DB_POOL_MAX');
  });

  it('rejects a pool minimum larger than the maximum, naming both variables', () => {
    const error = configError(() => loadConfig({ DB_POOL_MIN: '5', DB_POOL_MAX: '3' }));
    expect(error.problems).toHaveLength(1);
    expect(error.problems[0]).toContain('DB_POOL_MIN');
    expect(error.problems[0]).toContain('DB_POOL_MAX');
  });

  it('rejects an unknown sslmode, listing the six libpq modes', () => {
    const error = configError(() => loadConfig({ DB_SSLMODE: 'sometimes' }));
    expect(error.problems).toHaveLength(1);
    expect(error.problems[0]).toContain('DB_SSLMODE');
    for (const mode of ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'])
      expect(error.problems[0]).toContain(mode);
  });

  it('rejects an unknown sslmode in the URL, naming DATABASE_URL', () => {
    expect(configError(() => loadConfig({ DATABASE_URL: 'postgres://h/db?sslmode=always' })).problems[0]).toContain(
      'DATABASE_URL',
    );
  });

  it('rejects DB_PGBOUNCER and DB_LOG_LEVEL values outside their vocabularies', () => {
    const error = configError(() => loadConfig({ DB_PGBOUNCER: 'maybe', DB_LOG_LEVEL: 'loud' }));
    expect(error.problems).toHaveLength(2);
    expect(error.problems.find((p) => p.includes('DB_PGBOUNCER'))).toContain('true or false');
    expect(error.problems.find((p) => p.includes('DB_LOG_LEVEL'))).toContain('trace');
  });

  it('rejects a malformed DATABASE_URL without quoting it', () => {
    // (`user:password@/db` with no host is libpq's form for ?host= and is accepted: test/unit/host-list.test.ts.)
    for (const url of [`postgres://u:${SECRET}@host:99999/db`, `postgres://u:${SECRET}@[::1/db`, 'not a url at all']) {
      const error = configError(() => loadConfig({ DATABASE_URL: url }));
      expect(error.problems, url).toHaveLength(1);
      expect(error.problems[0]).toContain('DATABASE_URL');
      expect(error.message).not.toContain(SECRET);
      expect(error.message).not.toContain(url);
    }
  });

  it('gives a port above 65535 in DATABASE_URL the same range problem as port 0, never quoting the URL', () => {
    for (const [port, quoted] of [
      ['99999', '"99999"'],
      ['0', '"0"'],
    ]) {
      const error = configError(() => loadConfig({ DATABASE_URL: `postgres://u:${SECRET}@db.example:${port}/app` }));
      expect(error.problems).toEqual([`DATABASE_URL port is ${quoted}, out of range; expected 1–65535.`]);
    }
    // Digits in the password are never taken for the port.
    const digits = configError(() => loadConfig({ DATABASE_URL: 'postgres://u:99999@db.example:70000/app' }));
    expect(digits.problems).toEqual(['DATABASE_URL port is "70000", out of range; expected 1–65535.']);
  });

  it('rejects replicas given as a string option, naming the array form and DB_REPLICA_URLS', () => {
    const error = configError(() => loadConfig({}, { replicas: 'postgres://u:p@replica.example/app' as unknown as string[] }));
    expect(error.problems).toEqual([
      'option replicas must be an array of URLs or replica objects (a comma-separated string is the form of DB_REPLICA_URLS).',
    ]);
  });

  it('rejects an empty host, user, database or application name given as options (blank variables count as unset)', () => {
    const error = configError(() => loadConfig({ DB_HOST: ' ' }, { host: '', user: ' ', database: '', applicationName: '' }));
    expect(error.problems).toEqual([
      'option host must not be empty.',
      'option user must not be empty.',
      'option database must not be empty.',
      'option applicationName must not be empty.',
    ]);
  });

  it('says that ssl is ignored because sslmode is present, rather than unsupported', () => {
    const config = loadConfig({ DATABASE_URL: 'postgres://u@db.example/app?ssl=true&sslmode=disable' });
    expect(config.ssl.mode).toBe('disable');
    expect(config.warnings).toEqual(['DATABASE_URL: the parameter "ssl" is ignored because sslmode is present.']);
  });

  it('rejects a DATABASE_URL with a scheme other than postgres:// or postgresql://', () => {
    const error = configError(() => loadConfig({ DATABASE_URL: `mysql://root:${SECRET}@db.example/app` }));
    expect(error.problems).toHaveLength(1);
    expect(error.problems[0]).toContain('postgres://');
    expect(error.problems[0]).toContain('"mysql:"');
    expect(error.message).not.toContain(SECRET);
  });

  it('reports every problem at once in one ConfigError', () => {
    const error = configError(() =>
      loadConfig({
        DATABASE_URL: `mysql://root:${SECRET}@h/db`,
        DB_PORT: 'abc',
        DB_POOL_MIN: '-1',
        DB_POOL_MAX: '99999999',
        DB_SSLMODE: 'bogus',
        DB_TIMEOUT: 'soon',
        DB_STATEMENT_TIMEOUT: '1e3',
        DB_PGBOUNCER: 'maybe',
        DB_LOG_LEVEL: 'loud',
        DB_PASSWORD: SECRET,
      }),
    );
    const named = [
      'DATABASE_URL',
      'DB_PORT',
      'DB_POOL_MIN',
      'DB_POOL_MAX',
      'DB_SSLMODE',
      'DB_TIMEOUT',
      'DB_STATEMENT_TIMEOUT',
      'DB_PGBOUNCER',
      'DB_LOG_LEVEL',
    ];
    expect(error.problems).toHaveLength(named.length);
    for (const name of named)
      expect(
        error.problems.filter((p) => p.startsWith(name)),
        name,
      ).toHaveLength(1);
    expect(error.message).toContain(`${named.length} problems`);
    for (const problem of error.problems) expect(error.message).toContain(problem);
  });

  it('says that DB_REPLICA_URLS cannot hold a host list when a comma cut one replica URL, without quoting the piece', () => {
    const error = configError(() => loadConfig({ DB_REPLICA_URLS: `postgres://u:${SECRET}@r1:5432,u2:${SECRET}@r2:5433/db` }));
    expect(error.problems).toEqual([
      'DB_REPLICA_URLS[1] is not a URL: DB_REPLICA_URLS is a comma-separated list of postgres:// URLs, each naming one server; a replica URL cannot hold a host list (host1,host2), so list each replica on its own.',
    ]);
    expect(error.message).not.toContain(SECRET);
  });

  it('never puts a password in a problem, whichever way the password was given', () => {
    const attempts = [
      () => loadConfig({ DB_PASSWORD: SECRET, DB_PORT: 'x', DB_SSLMODE: 'bogus' }),
      () => loadConfig({ DATABASE_URL: `postgres://u:${SECRET}@h:5432/db?sslmode=nope`, DB_POOL_MAX: '0' }),
      () => loadConfig({ DATABASE_URL: `postgres://u:${encodeURIComponent(SECRET)}%zz@h/db`, DB_POOL_MAX: '0' }),
      () => loadConfig({ DB_REPLICA_URLS: `postgres://u:${SECRET}@r1:notaport/db,ftp://u:${SECRET}@r2/db` }),
      () => loadConfig({}, { password: SECRET, connectionString: `postgres://u:${SECRET}@h/db`, port: -1 }),
    ];
    for (const attempt of attempts) {
      const error = configError(attempt);
      expect(error.problems.length).toBeGreaterThan(0);
      for (const text of [error.message, error.stack ?? '', JSON.stringify(error), inspect(error, { depth: 10 })]) {
        expect(text).not.toContain(SECRET);
        expect(text).not.toContain(encodeURIComponent(SECRET));
      }
    }
  });

  it('makes new Database() throw the ConfigError before opening any connection', () => {
    const error = configError(() => new Database({ connectionString: 'postgres://h/db', max: 0, sslMode: 'disable' }));
    expect(error.problems[0]).toContain('option max');
  });
});

describe('the resolved config', () => {
  const make = () => loadConfig({ DB_PASSWORD: SECRET, DB_REPLICA_URLS: 'postgres://r1.example/db' }, { sslMode: 'disable' });

  it('is frozen, with frozen replicas, ssl settings and warnings', () => {
    const config = make();
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.replicas)).toBe(true);
    expect(Object.isFrozen(config.replicas[0])).toBe(true);
    expect(Object.isFrozen(config.ssl)).toBe(true);
    expect(Object.isFrozen(config.warnings)).toBe(true);
    expect(() => {
      (config as { host: string }).host = 'elsewhere';
    }).toThrow(TypeError);
    expect(config.host).toBe('localhost');
  });

  it('keeps the password readable but not enumerable', () => {
    const config = make();
    expect(config.password).toBe(SECRET);
    expect(Object.keys(config)).not.toContain('password');
    expect({ ...config }).not.toHaveProperty('password');
  });

  it('shows the password as <redacted> in JSON.stringify and util.inspect', () => {
    const config = make();
    const json = JSON.stringify(config);
    expect(JSON.parse(json)).toMatchObject({ password: '<redacted>' });
    expect(json).not.toContain(SECRET);
    const inspected = inspect(config, { depth: 10 });
    expect(inspected).toContain('<redacted>');
    expect(inspected).not.toContain(SECRET);
  });

  it('is not affected by later changes to the environment it was read from', () => {
    const env: Record<string, string> = { DB_HOST: 'first' };
    const config = loadConfig(env);
    env.DB_HOST = 'second';
    expect(config.host).toBe('first');
  });
});
