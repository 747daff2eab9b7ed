/**
 * sslmode against real PostgreSQL 18 servers with TLS: every mode against every server variant,
 * from DATABASE_URL and from DB_SSLMODE, compared with what libpq does.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { Database } from '../../src/database.js';
import { DatabaseConnectionError } from '../../src/errors.js';
import {
  SSL_MODES,
  connectNegotiated,
  createClientClass,
  describeTls,
  type SslEvents,
  type SslMode,
  type SslSettings,
} from '../../src/ssl/ssl-settings.js';
import { startPostgres, type PostgresServer } from '../support/postgres-server.js';
import { createTlsCertificates, type TlsCertificates } from '../support/tls-certs.js';
import { cancelRequestPacket } from '../../src/client-internals.js';

/** Tests connect as this role; the harness keeps `postgres` for its own unencrypted connections. */
const APP_USER = 'app';
const APP_PASSWORD = 'app-tls-password';

type Outcome = 'encrypted' | 'plain' | 'refused';
const VARIANTS = ['ssl=on', 'ssl=off', 'hostssl only', 'hostnossl only'] as const;
type Variant = (typeof VARIANTS)[number];

/** What libpq does, mode by server (root certificate = the right CA for verify-ca and verify-full). */
const EXPECTED: Record<SslMode, Record<Variant, Outcome>> = {
  disable: { 'ssl=on': 'plain', 'ssl=off': 'plain', 'hostssl only': 'refused', 'hostnossl only': 'plain' },
  allow: { 'ssl=on': 'plain', 'ssl=off': 'plain', 'hostssl only': 'encrypted', 'hostnossl only': 'plain' },
  prefer: { 'ssl=on': 'encrypted', 'ssl=off': 'plain', 'hostssl only': 'encrypted', 'hostnossl only': 'plain' },
  require: { 'ssl=on': 'encrypted', 'ssl=off': 'refused', 'hostssl only': 'encrypted', 'hostnossl only': 'refused' },
  'verify-ca': { 'ssl=on': 'encrypted', 'ssl=off': 'refused', 'hostssl only': 'encrypted', 'hostnossl only': 'refused' },
  'verify-full': { 'ssl=on': 'encrypted', 'ssl=off': 'refused', 'hostssl only': 'encrypted', 'hostnossl only': 'refused' },
};

interface Attempt {
  outcome: Outcome;
  error?: string;
  user?: string;
  hasFallenBack?: boolean;
}

let certs: TlsCertificates;
const servers = {} as Record<Variant | 'cert auth' | 'wrong host', PostgresServer>;

/** The harness logs in as `postgres` (with or without TLS); the variants below apply to APP_USER. */
const HARNESS_HBA = 'host all postgres 127.0.0.1/32 scram-sha-256';

function tlsConf(cert: string, key: string, extra: Record<string, string> = {}): Record<string, string> {
  return { ssl: 'on', ssl_cert_file: cert, ssl_key_file: key, ...extra };
}

beforeAll(async () => {
  certs = await createTlsCertificates({ clientUser: APP_USER });
  const specs: Array<[keyof typeof servers, Parameters<typeof startPostgres>[0]]> = [
    ['ssl=on', { conf: tlsConf(certs.serverCert, certs.serverKey) }],
    ['ssl=off', { conf: { ssl: 'off' } }],
    [
      'hostssl only',
      {
        conf: tlsConf(certs.serverCert, certs.serverKey),
        hba: ['local all all trust', HARNESS_HBA, 'hostssl all all 127.0.0.1/32 scram-sha-256'],
      },
    ],
    [
      'hostnossl only',
      {
        conf: tlsConf(certs.serverCert, certs.serverKey),
        hba: ['local all all trust', HARNESS_HBA, 'hostnossl all all 127.0.0.1/32 scram-sha-256'],
      },
    ],
    [
      'cert auth',
      {
        conf: tlsConf(certs.serverCert, certs.serverKey, { ssl_ca_file: certs.caCert }),
        hba: ['local all all trust', HARNESS_HBA, `hostssl all ${APP_USER} 127.0.0.1/32 cert`],
      },
    ],
    ['wrong host', { conf: tlsConf(certs.wrongHostCert, certs.wrongHostKey) }],
  ];
  await Promise.all(
    specs.map(async ([name, options]) => {
      const server = await startPostgres(options);
      servers[name] = server;
      await server.query(`CREATE ROLE ${APP_USER} LOGIN PASSWORD '${APP_PASSWORD}'`);
    }),
  );
}, 180_000);

afterAll(async () => {
  try {
    await Promise.all(Object.values(servers).map((server) => server.destroy()));
  } finally {
    await certs?.destroy();
  }
});

/** Settings as the config resolver makes them, from the URL or from the DB_* variables. */
function configFor(
  source: 'url' | 'env',
  server: PostgresServer,
  ssl: { mode?: string; rootCert?: string; cert?: string; key?: string },
  host = '127.0.0.1',
) {
  if (source === 'url') {
    const query = new URLSearchParams();
    if (ssl.mode) query.set('sslmode', ssl.mode);
    if (ssl.rootCert) query.set('sslrootcert', ssl.rootCert);
    if (ssl.cert) query.set('sslcert', ssl.cert);
    if (ssl.key) query.set('sslkey', ssl.key);
    return loadConfig({ DATABASE_URL: `postgres://${APP_USER}:${APP_PASSWORD}@${host}:${server.port}/postgres?${query}` });
  }
  return loadConfig({
    DB_HOST: host,
    DB_PORT: String(server.port),
    DB_USER: APP_USER,
    DB_PASSWORD: APP_PASSWORD,
    DB_NAME: 'postgres',
    DB_SSLMODE: ssl.mode,
    DB_SSLROOTCERT: ssl.rootCert,
    DB_SSLCERT: ssl.cert,
    DB_SSLKEY: ssl.key,
  });
}

/** Connects once with our client class and asks the server whether the session is encrypted. */
async function attempt(settings: SslSettings, server: PostgresServer, host = '127.0.0.1', events?: SslEvents): Promise<Attempt> {
  const Client = createClientClass(settings, events);
  const client = new Client({
    host,
    port: server.port,
    user: APP_USER,
    password: APP_PASSWORD,
    database: 'postgres',
    connectionTimeoutMillis: 10_000,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const { rows } = await client.query<{ ssl: boolean; user: string }>(
      'SELECT ssl, current_user AS user FROM pg_stat_ssl WHERE pid = pg_backend_pid()',
    );
    const row = rows[0]!;
    // The client's own view must agree with the server's.
    expect(describeTls(client)?.isEncrypted).toBe(row.ssl);
    return { outcome: row.ssl ? 'encrypted' : 'plain', user: row.user, hasFallenBack: describeTls(client)?.hasFallenBack };
  } catch (error) {
    return { outcome: 'refused', error: (error as Error).message };
  } finally {
    await client.end().catch(() => undefined);
  }
}

function rootFor(mode: SslMode): string | undefined {
  return mode === 'verify-ca' || mode === 'verify-full' ? certs.caCert : undefined;
}

function printTable(
  title: string,
  rows: string[],
  columns: readonly string[],
  cell: (row: string, column: string) => string,
): void {
  const lines = [`| ${title} | ${columns.join(' | ')} |`, `|---|${columns.map(() => '---').join('|')}|`];
  for (const row of rows) lines.push(`| ${row} | ${columns.map((column) => cell(row, column)).join(' | ')} |`);
  console.log(lines.join('\n'));
}

describe('sslmode × server matrix', () => {
  it('connects, encrypts or refuses as libpq does, with the same result from DATABASE_URL and from DB_SSLMODE', async () => {
    const seen: Record<string, Record<string, Attempt>> = {};
    for (const mode of SSL_MODES) {
      seen[mode] = {};
      for (const variant of VARIANTS) {
        const byUrl = await attempt(configFor('url', servers[variant], { mode, rootCert: rootFor(mode) }).ssl, servers[variant]);
        const byEnv = await attempt(configFor('env', servers[variant], { mode, rootCert: rootFor(mode) }).ssl, servers[variant]);
        expect(byEnv.outcome, `${mode} on ${variant}: DB_SSLMODE and DATABASE_URL disagree`).toBe(byUrl.outcome);
        seen[mode][variant] = byUrl;
      }
    }
    printTable('sslmode \\ server', [...SSL_MODES], VARIANTS, (mode, variant) => seen[mode]![variant]!.outcome);
    for (const mode of SSL_MODES) {
      for (const variant of VARIANTS) {
        const got = seen[mode]![variant]!;
        expect(got.outcome, `${mode} on ${variant}: ${got.error ?? ''}`).toBe(EXPECTED[mode][variant]);
      }
    }
  });

  it('says why it refused: no TLS on the server, or pg_hba refusing the session', async () => {
    const noTls = await attempt(configFor('env', servers['ssl=off'], { mode: 'require' }).ssl, servers['ssl=off']);
    expect(noTls.error).toMatch(/does not accept TLS connections, but sslmode=require requires TLS/);
    const hba = await attempt(configFor('env', servers['hostssl only'], { mode: 'disable' }).ssl, servers['hostssl only']);
    expect(hba.error).toMatch(/no pg_hba\.conf entry .* no encryption/);
  });
});

describe('certificate checks', () => {
  const cases: Array<{
    name: string;
    server: keyof typeof servers;
    host: string;
    mode: SslMode;
    root?: 'ca' | 'untrusted';
    expected: Outcome;
  }> = [
    { name: 'wrong CA', server: 'ssl=on', host: '127.0.0.1', mode: 'verify-full', root: 'untrusted', expected: 'refused' },
    { name: 'wrong CA', server: 'ssl=on', host: '127.0.0.1', mode: 'verify-ca', root: 'untrusted', expected: 'refused' },
    {
      name: 'wrong CA (root file makes require verify-ca)',
      server: 'ssl=on',
      host: '127.0.0.1',
      mode: 'require',
      root: 'untrusted',
      expected: 'refused',
    },
    {
      name: 'wrong CA (prefer falls back after the failed handshake)',
      server: 'ssl=on',
      host: '127.0.0.1',
      mode: 'prefer',
      root: 'untrusted',
      expected: 'plain',
    },
    {
      name: 'wrong CA (allow never tries TLS here)',
      server: 'ssl=on',
      host: '127.0.0.1',
      mode: 'allow',
      root: 'untrusted',
      expected: 'plain',
    },
    { name: 'unknown CA, no root file', server: 'ssl=on', host: '127.0.0.1', mode: 'require', expected: 'encrypted' },
    {
      name: 'cert for wrong.example, via localhost',
      server: 'wrong host',
      host: 'localhost',
      mode: 'verify-full',
      root: 'ca',
      expected: 'refused',
    },
    {
      name: 'cert for wrong.example, via localhost',
      server: 'wrong host',
      host: 'localhost',
      mode: 'verify-ca',
      root: 'ca',
      expected: 'encrypted',
    },
    {
      name: 'cert for wrong.example, via localhost',
      server: 'wrong host',
      host: 'localhost',
      mode: 'require',
      root: 'ca',
      expected: 'encrypted',
    },
    {
      name: 'cert for wrong.example, via localhost',
      server: 'wrong host',
      host: 'localhost',
      mode: 'require',
      expected: 'encrypted',
    },
    {
      name: 'cert for wrong.example (no IP SAN), via 127.0.0.1',
      server: 'wrong host',
      host: '127.0.0.1',
      mode: 'verify-full',
      root: 'ca',
      expected: 'refused',
    },
    {
      name: 'cert for localhost + IP SAN 127.0.0.1, via 127.0.0.1',
      server: 'ssl=on',
      host: '127.0.0.1',
      mode: 'verify-full',
      root: 'ca',
      expected: 'encrypted',
    },
    {
      name: 'cert for localhost + IP SAN 127.0.0.1, via localhost',
      server: 'ssl=on',
      host: 'localhost',
      mode: 'verify-full',
      root: 'ca',
      expected: 'encrypted',
    },
  ];

  it('rejects a wrong CA and a wrong host name exactly where libpq does', async () => {
    const results: Array<{ label: string; got: Attempt; expected: Outcome }> = [];
    for (const item of cases) {
      const rootCert = item.root === 'ca' ? certs.caCert : item.root === 'untrusted' ? certs.untrustedCaCert : undefined;
      for (const source of ['url', 'env'] as const) {
        const config = configFor(source, servers[item.server], { mode: item.mode, rootCert }, item.host);
        const got = await attempt(config.ssl, servers[item.server], item.host);
        results.push({
          label: `${item.name}: ${item.mode}${item.root ? ` + ${item.root} root` : ''} [${source}]`,
          got,
          expected: item.expected,
        });
      }
    }
    console.log(
      results.map((r) => `${r.label} → ${r.got.outcome}${r.got.error ? ` (${r.got.error.split('\n')[0]})` : ''}`).join('\n'),
    );
    for (const { label, got, expected } of results) expect(got.outcome, `${label}: ${got.error ?? ''}`).toBe(expected);
  });

  it('names the failed check in the error', async () => {
    const wrongHost = await attempt(
      configFor('env', servers['wrong host'], { mode: 'verify-full', rootCert: certs.caCert }, 'localhost').ssl,
      servers['wrong host'],
      'localhost',
    );
    expect(wrongHost.error).toMatch(/sslmode=verify-full.*(altnames|wrong\.example)/);
    const wrongCa = await attempt(
      configFor('env', servers['ssl=on'], { mode: 'verify-ca', rootCert: certs.untrustedCaCert }).ssl,
      servers['ssl=on'],
    );
    expect(wrongCa.error).toMatch(/sslmode=verify-ca.*certificate/i);
  });

  it('treats sslrootcert=system as verify-full against the system store, which does not trust the test CA', async () => {
    const config = configFor('env', servers['ssl=on'], { rootCert: 'system' }, 'localhost');
    expect(config.ssl.mode).toBe('verify-full');
    const got = await attempt(config.ssl, servers['ssl=on'], 'localhost');
    expect(got.outcome).toBe('refused');
    expect(got.error).toMatch(/certificate/i);
  });
});

describe('fallback and upgrade', () => {
  it('prefer falls back to plaintext on an ssl=off server and reports it for every attempt', async () => {
    const fallbacks: string[] = [];
    const got = await attempt(configFor('env', servers['ssl=off'], { mode: 'prefer' }).ssl, servers['ssl=off'], '127.0.0.1', {
      onPlaintextFallback: (event) => fallbacks.push(event.reason),
    });
    expect(got).toMatchObject({ outcome: 'plain', hasFallenBack: true });
    expect(fallbacks).toEqual(['the server does not accept TLS connections (ssl=off)']);
  });

  it('prefer does not report a fallback when TLS works', async () => {
    const fallbacks: string[] = [];
    const got = await attempt(configFor('env', servers['ssl=on'], { mode: 'prefer' }).ssl, servers['ssl=on'], '127.0.0.1', {
      onPlaintextFallback: (event) => fallbacks.push(event.reason),
    });
    expect(got).toMatchObject({ outcome: 'encrypted', hasFallenBack: false });
    expect(fallbacks).toEqual([]);
  });

  it('prefer retries without TLS when pg_hba refuses the TLS session (hostnossl only)', async () => {
    const fallbacks: string[] = [];
    const got = await attempt(
      configFor('env', servers['hostnossl only'], { mode: 'prefer' }).ssl,
      servers['hostnossl only'],
      '127.0.0.1',
      {
        onPlaintextFallback: (event) => fallbacks.push(event.reason),
      },
    );
    expect(got).toMatchObject({ outcome: 'plain', hasFallenBack: true });
    expect(fallbacks[0]).toMatch(/refused the TLS connection: no pg_hba\.conf entry .*SSL encryption \(SQLSTATE 28000\)/);
  });

  it('allow upgrades to TLS when pg_hba refuses the plaintext session (hostssl only)', async () => {
    const got = await attempt(configFor('url', servers['hostssl only'], { mode: 'allow' }).ssl, servers['hostssl only']);
    expect(got).toMatchObject({ outcome: 'encrypted', hasFallenBack: true, user: APP_USER });
  });

  it("retries a wrong password with the other encryption, as libpq does, and reports the server's error", async () => {
    const server = servers['ssl=on'];
    const failures = () =>
      server
        .logTail(10_000)
        .split('\n')
        .filter((line) => line.includes(`password authentication failed for user "${APP_USER}"`)).length;
    for (const mode of ['prefer', 'allow', 'require'] as const) {
      const before = failures();
      const config = loadConfig({
        DATABASE_URL: `postgres://${APP_USER}:wrong@127.0.0.1:${server.port}/postgres?sslmode=${mode}`,
      });
      const Client = createClientClass(config.ssl);
      const client = new Client({
        host: '127.0.0.1',
        port: server.port,
        user: APP_USER,
        password: 'wrong',
        database: 'postgres',
      });
      client.on('error', () => undefined);
      await expect(client.connect()).rejects.toMatchObject({ code: '28P01' });
      await client.end().catch(() => undefined);
      // prefer and allow try both encryptions (libpq's CONNECTION_FAILED after an ErrorResponse); require only TLS.
      await expect.poll(() => failures() - before, { timeout: 5000 }).toBe(mode === 'require' ? 1 : 2);
    }
  });
});

describe('client certificate authentication', () => {
  const clientFiles = () => ({ cert: certs.clientCert, key: certs.clientKey });

  it('logs in with the cert method using the client certificate', async () => {
    for (const mode of ['verify-full', 'require', 'prefer', 'allow'] as const) {
      const config = configFor('env', servers['cert auth'], {
        mode,
        rootCert: mode === 'verify-full' ? certs.caCert : undefined,
        ...clientFiles(),
      });
      const got = await attempt(config.ssl, servers['cert auth']);
      expect(got, `${mode}: ${got.error ?? ''}`).toMatchObject({ outcome: 'encrypted', user: APP_USER });
    }
  });

  it('is refused without a client certificate, and with disable', async () => {
    const noCert = await attempt(
      configFor('env', servers['cert auth'], { mode: 'verify-full', rootCert: certs.caCert }).ssl,
      servers['cert auth'],
    );
    expect(noCert.outcome).toBe('refused');
    expect(noCert.error).toMatch(/certificate/i);
    const disabled = await attempt(
      configFor('env', servers['cert auth'], { mode: 'disable', ...clientFiles() }).ssl,
      servers['cert auth'],
    );
    expect(disabled.outcome).toBe('refused');
  });
});

describe('through the library', () => {
  it('Database.healthCheck reports TLS and its protocol on an encrypted pool', async () => {
    const server = servers['hostssl only'];
    const db = new Database({
      host: '127.0.0.1',
      port: server.port,
      user: APP_USER,
      password: APP_PASSWORD,
      database: 'postgres',
      sslMode: 'verify-full',
      sslRootCert: certs.caCert,
      min: 0,
      max: 2,
    });
    try {
      const report = await db.healthCheck({ timeoutMillis: 10_000 });
      expect(report.status).toBe('healthy');
      expect(report.tls).toMatchObject({ encrypted: true, protocol: expect.stringMatching(/^TLSv1\.[23]$/) });
    } finally {
      await db.shutdown();
    }
  });

  it("applies the URL's TLS settings to every host of a list: verify-full passes over a host whose certificate names another server and reaches the next, encrypted", async () => {
    const wrong = servers['wrong host'];
    const right = servers['hostssl only'];
    const query = new URLSearchParams({ sslmode: 'verify-full', sslrootcert: certs.caCert });
    const db = new Database({
      connectionString: `postgres://${APP_USER}:${APP_PASSWORD}@127.0.0.1:${wrong.port},127.0.0.1:${right.port}/postgres?${query}`,
      min: 0,
      max: 2,
      logLevel: 'silent',
    });
    try {
      const rows = await db.executeQuery<{ port: number; ssl: boolean }>(
        'SELECT inet_server_port() AS port, (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()) AS ssl',
      );
      expect(rows).toEqual([{ port: right.port, ssl: true }]);
      expect(db.getStats().nodes[0]!.currentHost).toBe(`127.0.0.1:${right.port}`);
    } finally {
      await db.shutdown();
    }
  });

  it('with sslmode=require, every host of a list gets TLS: a list of servers that refuse it fails, naming each host and why', async () => {
    const plainOnly = servers['ssl=off'];
    const noSsl = servers['hostnossl only'];
    const db = new Database({
      connectionString: `postgres://${APP_USER}:${APP_PASSWORD}@127.0.0.1:${plainOnly.port},127.0.0.1:${noSsl.port}/postgres?sslmode=require`,
      min: 0,
      max: 2,
      logLevel: 'silent',
    });
    try {
      const error = await db.executeQuery('SELECT 1').catch((caught: unknown) => caught as DatabaseConnectionError);
      expect(error).toBeInstanceOf(DatabaseConnectionError);
      expect((error as DatabaseConnectionError).code).toBe('CONNECTION_FAILED');
      const message = (error as Error).message;
      expect(message).toContain(`127.0.0.1:${plainOnly.port} refused the connection`);
      expect(message).toContain(`127.0.0.1:${noSsl.port} refused the connection`);
      // The first refuses TLS outright; the second (hostnossl only) refuses the login because it came over TLS.
      expect(message).toContain('does not accept TLS connections, but sslmode=require requires TLS');
      expect(message).toContain('SSL encryption');
      expect(message).not.toContain(APP_PASSWORD);
    } finally {
      await db.shutdown();
    }
  });

  it('Database.healthCheck reports no TLS after a prefer fallback, from a connection string', async () => {
    const server = servers['ssl=off'];
    const db = new Database({
      connectionString: `postgres://${APP_USER}:${APP_PASSWORD}@127.0.0.1:${server.port}/postgres?sslmode=prefer`,
      min: 0,
      max: 2,
    });
    try {
      const report = await db.healthCheck({ timeoutMillis: 10_000 });
      expect(report.status).toBe('healthy');
      expect(report.tls).toMatchObject({ encrypted: false });
    } finally {
      await db.shutdown();
    }
  });

  it("a pg.Pool built on the class ignores pg's own ssl and sslmode settings", async () => {
    const server = servers['ssl=off'];
    const settings = loadConfig({ DB_SSLMODE: 'prefer' }).ssl;
    const pool = new pg.Pool({
      Client: createClientClass(settings),
      connectionString: `postgres://${APP_USER}:${APP_PASSWORD}@127.0.0.1:${server.port}/postgres?sslmode=verify-full&sslrootcert=/nonexistent`,
      ssl: { rejectUnauthorized: true },
      max: 2,
    });
    try {
      const { rows } = await pool.query<{ ssl: boolean }>('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
      expect(rows[0]!.ssl).toBe(false);
    } finally {
      await pool.end();
    }
  });

  it('a pg.Pool passes its (hidden) password through the class, for every mode', async () => {
    const server = servers['hostssl only'];
    for (const mode of ['disable', 'allow', 'prefer', 'require'] as const) {
      const pool = new pg.Pool({
        Client: createClientClass(loadConfig({ DB_SSLMODE: mode }).ssl),
        host: '127.0.0.1',
        port: server.port,
        user: APP_USER,
        password: APP_PASSWORD,
        database: 'postgres',
        max: 1,
      });
      try {
        const result = await pool.query<{ ssl: boolean }>('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()').then(
          (r) => r.rows[0]!.ssl,
          (e: Error) => e.message,
        );
        expect(result, mode).toEqual(mode === 'disable' ? expect.stringMatching(/no pg_hba\.conf entry/) : true);
      } finally {
        await pool.end();
      }
    }
  });

  it('sends cancel requests over TLS when the session uses TLS', async () => {
    const server = servers['hostssl only'];
    const settings = configFor('env', server, { mode: 'require' }).ssl;
    const Client = createClientClass(settings);
    const client = new Client({
      host: '127.0.0.1',
      port: server.port,
      user: APP_USER,
      password: APP_PASSWORD,
      database: 'postgres',
    });
    client.on('error', () => undefined);
    await client.connect();
    try {
      // Settled at once: the cancellation may arrive before the cancel stream reports its close.
      const running = client.query('SELECT pg_sleep(30)').then(
        () => 'finished',
        (error: unknown) => error,
      );
      await new Promise((resolve) => setTimeout(resolve, 200));
      const { processID, secretKey } = client as unknown as { processID: number; secretKey: number };
      const stream = connectNegotiated(settings, { host: '127.0.0.1', port: server.port });
      await new Promise<void>((resolve, reject) => {
        stream.once('error', reject);
        stream.once('connect', () => {
          expect(stream.describe().isEncrypted).toBe(true);
          stream.end(cancelRequestPacket(processID, secretKey));
        });
        stream.once('close', () => resolve());
        stream.resume();
      });
      expect(await running).toMatchObject({ code: '57014' });
    } finally {
      await client.end();
    }
  });
});
