/**
 * sslmode resolution (pure), the negotiation against scripted fake servers (no PostgreSQL needed),
 * and a property test of the config resolver with random and hostile values.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, type DatabaseOptions } from '../../src/config.js';
import { ConfigError } from '../../src/errors.js';
import { methodsFor } from '../../src/ssl/encryption-policy.js';
import {
  SSL_MODES,
  connectNegotiated,
  createClientClass,
  describeTls,
  resolveSsl,
  type SslInputs,
  type SslSettings,
} from '../../src/ssl/ssl-settings.js';
import { createTlsCertificates, type TlsCertificates } from '../support/tls-certs.js';

let certs: TlsCertificates;
let scratch: string;

beforeAll(async () => {
  certs = await createTlsCertificates();
  scratch = mkdtempSync(join(certs.dir, 'scratch-'));
});

afterAll(async () => {
  await certs?.destroy();
});

function resolve(inputs: Record<string, string | undefined>): { settings: SslSettings; problems: string[] } {
  const problems: string[] = [];
  const named: SslInputs = {};
  const names: Record<string, string> = { mode: 'DB_SSLMODE', rootCert: 'DB_SSLROOTCERT', cert: 'DB_SSLCERT', key: 'DB_SSLKEY' };
  for (const [key, value] of Object.entries(inputs)) {
    if (value !== undefined) named[key as keyof SslInputs] = { value, name: names[key]! };
  }
  return { settings: resolveSsl(named, problems), problems };
}

describe('sslmode table', () => {
  const rows: Array<
    [mode: string | undefined, root: 'none' | 'file' | 'system', expectedMode: string, verification: string, methods: string[]]
  > = [
    [undefined, 'none', 'prefer', 'none', ['tls', 'plaintext']],
    ['disable', 'none', 'disable', 'none', ['plaintext']],
    ['disable', 'file', 'disable', 'none', ['plaintext']],
    ['allow', 'none', 'allow', 'none', ['plaintext', 'tls']],
    ['allow', 'file', 'allow', 'ca', ['plaintext', 'tls']],
    ['prefer', 'none', 'prefer', 'none', ['tls', 'plaintext']],
    ['prefer', 'file', 'prefer', 'ca', ['tls', 'plaintext']],
    ['require', 'none', 'require', 'none', ['tls']],
    ['require', 'file', 'require', 'ca', ['tls']],
    ['verify-ca', 'file', 'verify-ca', 'ca', ['tls']],
    ['verify-full', 'file', 'verify-full', 'full', ['tls']],
    ['verify-full', 'system', 'verify-full', 'full', ['tls']],
    [undefined, 'system', 'verify-full', 'full', ['tls']],
  ];

  it.each(rows)(
    'sslmode %s with root %s resolves to %s, verifying %s, trying %j',
    (mode, root, expectedMode, verification, methods) => {
      const rootCert = root === 'file' ? certs.caCert : root === 'system' ? 'system' : undefined;
      const { settings, problems } = resolve({ mode, rootCert });
      expect(problems).toEqual([]);
      expect(settings).toMatchObject({ mode: expectedMode, serverVerification: verification });
      expect(methodsFor(settings.mode)).toEqual(methods);
    },
  );

  it.each(['disable', 'allow', 'prefer', 'require', 'verify-ca'])(
    'refuses sslmode %s with sslrootcert=system, naming both variables',
    (mode) => {
      const { problems } = resolve({ mode, rootCert: 'system' });
      expect(problems).toHaveLength(1);
      expect(problems[0]).toMatch(/^DB_SSLROOTCERT is "system".*verify-full.*DB_SSLMODE is/);
    },
  );

  it.each(['verify-ca', 'verify-full'])('refuses %s without a root certificate', (mode) => {
    const { problems } = resolve({ mode });
    expect(problems).toEqual([
      expect.stringMatching(new RegExp(`^DB_SSLMODE is "${mode}", which needs a root certificate.*DB_SSLROOTCERT`)),
    ]);
  });

  it.each([
    ['Require', 'Require', /did you mean "require"\? sslmode is case-sensitive/],
    ['a trailing space', 'require ', /did you mean "require"\?/],
    ['no-verify', 'no-verify', /node-postgres' own value/],
    ['empty', '', /^DB_SSLMODE is "", which is not an sslmode/],
    [
      'true',
      'true',
      /^DB_SSLMODE is "true", which is not an sslmode; expected one of disable, allow, prefer, require, verify-ca, verify-full\.$/,
    ],
    ['a NUL byte', 're\0quire', /"re\\u0000quire"/],
    ['a 1 MB string', 'x'.repeat(1_000_000), /^DB_SSLMODE is "x{40}\.\.\.", which/],
    ['unicode', 'véryfull😀', /"véryfull😀"/],
  ])('rejects the sslmode %s with a sentence naming the variable', (_label, value, pattern) => {
    const { problems } = resolve({ mode: value });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(pattern);
    expect(problems[0]!.length).toBeLessThan(300);
  });

  it('keeps certificate contents out of JSON; paths stay visible', () => {
    const { settings, problems } = resolve({
      mode: 'verify-full',
      rootCert: certs.caCert,
      cert: certs.clientCert,
      key: certs.clientKey,
    });
    expect(problems).toEqual([]);
    expect(settings.key).toContain('PRIVATE KEY');
    expect(settings.ca).toContain('BEGIN CERTIFICATE');
    const json = JSON.stringify(settings);
    expect(json).not.toContain('BEGIN');
    expect(JSON.parse(json)).toEqual({
      mode: 'verify-full',
      serverVerification: 'full',
      rootCertPath: certs.caCert,
      certPath: certs.clientCert,
      keyPath: certs.clientKey,
    });
    expect(Object.isFrozen(settings)).toBe(true);
  });
});

describe('the same settings from DATABASE_URL, DB_* and options', () => {
  it.each([...SSL_MODES, undefined].flatMap((mode) => ['none', 'file', 'system'].map((root) => [mode, root] as const)))(
    'sslmode %s with root %s resolves identically, or fails identically',
    (mode, root) => {
      const rootCert = root === 'file' ? certs.caCert : root === 'system' ? 'system' : undefined;
      const query = new URLSearchParams();
      if (mode) query.set('sslmode', mode);
      if (rootCert) query.set('sslrootcert', rootCert);
      const outcome = (load: () => { ssl: SslSettings }) => {
        try {
          return JSON.stringify(load().ssl);
        } catch (error) {
          return `ConfigError ${(error as ConfigError).problems.length}`;
        }
      };
      const byUrl = outcome(() => loadConfig({ DATABASE_URL: `postgres://u:p@h:5432/d?${query}` }));
      const byEnv = outcome(() => loadConfig({ DB_SSLMODE: mode, DB_SSLROOTCERT: rootCert }));
      const byOptions = outcome(() => loadConfig({}, { sslMode: mode, sslRootCert: rootCert }));
      expect(byEnv).toBe(byUrl);
      expect(byOptions).toBe(byUrl);
    },
  );

  it('names the URL parameter when the URL carries the bad value', () => {
    expect(() => loadConfig({ DATABASE_URL: 'postgres://u:p@h/d?sslmode=verify-full' })).toThrow(
      /DATABASE_URL sslmode is "verify-full", which needs a root certificate/,
    );
  });
});

describe('certificate files', () => {
  function file(name: string, content: string, mode = 0o600): string {
    const path = join(scratch, name);
    writeFileSync(path, content, { mode });
    chmodSync(path, mode);
    return path;
  }

  it.each([
    [
      'a missing file',
      () => join(scratch, 'missing.crt'),
      /^DB_SSLROOTCERT names the file ".*missing\.crt", which cannot be opened \(it does not exist\)\.$/,
    ],
    ['a directory', () => scratch, /which is not a regular file/],
    ['a device', () => '/dev/zero', /"\/dev\/zero", which is not a regular file/],
    ['an empty path', () => '', /^DB_SSLROOTCERT is empty/],
    ['a path with NUL', () => 'ca\0.crt', /contains a NUL character/],
    [
      'a path that is too long',
      () => `/tmp/${'a'.repeat(100_000)}`,
      /^DB_SSLROOTCERT names the file "\/tmp\/a{115}\.\.\.", which cannot be opened \(the path is too long\)\.$/,
    ],
    ['a file without certificates', () => file('not-a-cert.pem', 'hello SECRET-CONTENT\n'), /contains no PEM certificate/],
    [
      'a broken certificate',
      () => file('broken.pem', '-----BEGIN CERTIFICATE-----\nSECRET-CONTENT\n-----END CERTIFICATE-----\n'),
      /certificate number 1 cannot be parsed/,
    ],
    [
      'pasted PEM',
      () => '-----BEGIN CERTIFICATE-----\nMIIB-SECRET-CONTENT',
      /^DB_SSLROOTCERT looks like PEM content, not a file path/,
    ],
  ])('reports %s as a root certificate, never quoting content', (_label, path, pattern) => {
    const { problems } = resolve({ mode: 'verify-full', rootCert: path() });
    expect(problems).toEqual([expect.stringMatching(pattern)]);
    expect(problems[0]).not.toContain('SECRET-CONTENT');
  });

  it('does not block on a named pipe', () => {
    const fifo = join(scratch, 'pipe');
    execFileSync('mkfifo', [fifo]);
    const { problems } = resolve({ mode: 'verify-full', rootCert: fifo });
    expect(problems).toEqual([expect.stringMatching(/which is not a regular file/)]);
  });

  it('requires the certificate and key together, and matching', () => {
    expect(resolve({ cert: certs.clientCert }).problems).toEqual([
      expect.stringMatching(/^DB_SSLCERT names a client certificate but no private key is set/),
    ]);
    expect(resolve({ key: certs.clientKey }).problems).toEqual([
      expect.stringMatching(/^DB_SSLKEY names a private key but no client certificate is set/),
    ]);
    const otherKey = file(
      'other.key',
      execFileSync('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:prime256v1'], { encoding: 'utf8' }),
    );
    expect(resolve({ cert: certs.clientCert, key: otherKey }).problems).toEqual([
      expect.stringMatching(/^DB_SSLCERT and DB_SSLKEY do not belong together/),
    ]);
  });

  it('refuses a key file others can read, as libpq does', () => {
    const key = file(
      'open.key',
      execFileSync('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:prime256v1'], { encoding: 'utf8' }),
      0o644,
    );
    const { problems } = resolve({ cert: certs.clientCert, key });
    expect(problems).toEqual([
      expect.stringMatching(/^DB_SSLKEY names the private key file ".*open\.key", which has group or world access \(mode 0644\)/),
    ]);
  });

  it('refuses a passphrase-protected key and a file that holds no key', () => {
    const encrypted = file(
      'encrypted.key',
      execFileSync('openssl', ['pkey', '-in', certs.clientKey, '-aes256', '-passout', 'pass:secret'], { encoding: 'utf8' }),
    );
    expect(resolve({ cert: certs.clientCert, key: encrypted }).problems).toEqual([
      expect.stringMatching(/protected by a passphrase/),
    ]);
    const notKey = file('not.key', 'SECRET-CONTENT');
    const { problems } = resolve({ cert: certs.clientCert, key: notKey });
    expect(problems).toEqual([expect.stringMatching(/contains no PEM private key/)]);
    expect(problems[0]).not.toContain('SECRET-CONTENT');
  });

  it('reports every problem at once', () => {
    const { problems } = resolve({
      mode: 'verify-ca',
      rootCert: '/nonexistent/ca.crt',
      cert: '/nonexistent/client.crt',
      key: '/nonexistent/client.key',
    });
    expect(problems.map((p) => p.split(' ')[0])).toEqual(['DB_SSLROOTCERT', 'DB_SSLCERT', 'DB_SSLKEY']);
  });
});

/** A scripted server: each accepted connection runs `script` with a reader for its bytes. */
interface FakeServer {
  readonly port: number;
  readonly connections: number;
  close(): Promise<void>;
}

class Reader {
  #buffer = Buffer.alloc(0);
  #wake: (() => void) | undefined;
  constructor(socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.#buffer = Buffer.concat([this.#buffer, chunk]);
      this.#wake?.();
    });
    socket.on('error', () => undefined);
  }

  /** The next untyped packet (SSLRequest, StartupMessage, CancelRequest). */
  async packet(): Promise<Buffer> {
    for (;;) {
      if (this.#buffer.length >= 4 && this.#buffer.length >= this.#buffer.readInt32BE(0)) {
        const packet = this.#buffer.subarray(0, this.#buffer.readInt32BE(0));
        this.#buffer = this.#buffer.subarray(packet.length);
        return packet;
      }
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
  }
}

const SSL_REQUEST_CODE = 80877103;
const PROTOCOL_3 = 196608;

function message(type: string, body: Buffer): Buffer {
  const header = Buffer.alloc(5);
  header.write(type, 0);
  header.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([header, body]);
}

function errorResponse(code: string, text: string): Buffer {
  return message('E', Buffer.from(`SFATAL\0C${code}\0M${text}\0\0`));
}

function authRequest(code: number): Buffer {
  const body = Buffer.alloc(4);
  body.writeInt32BE(code);
  return message('R', body);
}

const READY = Buffer.concat([authRequest(0), message('Z', Buffer.from('I'))]);

async function fakeServer(
  script: (socket: net.Socket, reader: Reader, index: number) => Promise<void>,
  path?: string,
): Promise<FakeServer> {
  let connections = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    const index = connections++;
    script(socket, new Reader(socket), index).catch(() => socket.destroy());
  });
  await new Promise<void>((done) => (path ? server.listen(path, done) : server.listen(0, '127.0.0.1', done)));
  const address = server.address();
  return {
    port: typeof address === 'object' && address ? address.port : 0,
    get connections() {
      return connections;
    },
    close: () =>
      new Promise((done) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => done());
      }),
  };
}

function settingsFor(mode: string): SslSettings {
  const { settings, problems } = resolve({ mode });
  expect(problems).toEqual([]);
  return settings;
}

async function connectTo(
  mode: string,
  server: FakeServer,
  extra: pg.ClientConfig = {},
  fallbacks: string[] = [],
): Promise<pg.Client> {
  const Client = createClientClass(settingsFor(mode), { onPlaintextFallback: (event) => fallbacks.push(event.reason) });
  const client = new Client({
    host: '127.0.0.1',
    port: server.port,
    user: 'u',
    password: 'p',
    database: 'd',
    connectionTimeoutMillis: 5000,
    ...extra,
  });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

describe('negotiation against scripted servers', () => {
  it('refuses unencrypted bytes sent after the server agreed to TLS', async () => {
    const server = await fakeServer(async (socket, reader) => {
      await reader.packet();
      socket.write('SX');
    });
    try {
      await expect(connectTo('require', server)).rejects.toThrow(/sent unencrypted data after its answer to the TLS request/);
    } finally {
      await server.close();
    }
  });

  it('does not fall back when the server answers the TLS request with an error, even in prefer', async () => {
    const server = await fakeServer(async (socket, reader) => {
      await reader.packet();
      socket.end('E');
    });
    try {
      await expect(connectTo('prefer', server)).rejects.toThrow(/answered the TLS request with an error/);
      expect(server.connections).toBe(1);
    } finally {
      await server.close();
    }
  });

  it('prefer goes on without TLS on the same connection after N; require refuses', async () => {
    const firstPackets: number[] = [];
    const server = await fakeServer(async (socket, reader) => {
      const request = await reader.packet();
      firstPackets.push(request.readInt32BE(4));
      socket.write('N');
      const startup = await reader.packet();
      firstPackets.push(startup.readInt32BE(4));
      socket.write(READY);
    });
    try {
      const fallbacks: string[] = [];
      const client = await connectTo('prefer', server, {}, fallbacks);
      expect(describeTls(client)).toEqual({
        isEncrypted: false,
        protocol: null,
        cipher: null,
        serverVerification: null,
        hasFallenBack: true,
      });
      expect(fallbacks).toEqual(['the server does not accept TLS connections (ssl=off)']);
      expect(server.connections).toBe(1);
      expect(firstPackets).toEqual([SSL_REQUEST_CODE, PROTOCOL_3]);
      client.end().catch(() => undefined);
      await expect(connectTo('require', server)).rejects.toThrow(
        /does not accept TLS connections, but sslmode=require requires TLS/,
      );
    } finally {
      await server.close();
    }
  });

  it('prefer retries without TLS on a new connection when the handshake fails', async () => {
    const firstPackets: number[] = [];
    const server = await fakeServer(async (socket, reader, index) => {
      const first = await reader.packet();
      firstPackets.push(first.readInt32BE(4));
      // Agree to TLS, then hang up instead of a ServerHello.
      if (index === 0) return void socket.end('S');
      socket.write(READY);
    });
    try {
      const fallbacks: string[] = [];
      const client = await connectTo('prefer', server, {}, fallbacks);
      expect(describeTls(client)?.isEncrypted).toBe(false);
      expect(firstPackets).toEqual([SSL_REQUEST_CODE, PROTOCOL_3]);
      expect(fallbacks).toEqual([expect.stringMatching(/^the TLS handshake failed/)]);
      await client.end().catch(() => undefined);
    } finally {
      await server.close();
    }
  });

  it('allow retries with TLS after a refusal, and reports both reasons when TLS is not offered', async () => {
    const firstPackets: number[] = [];
    const server = await fakeServer(async (socket, reader, index) => {
      const first = await reader.packet();
      firstPackets.push(first.readInt32BE(4));
      socket.end(index === 0 ? errorResponse('28000', 'no pg_hba.conf entry for host "127.0.0.1", no encryption') : 'N');
    });
    try {
      const error = await connectTo('allow', server).catch((e: Error) => e);
      expect((error as Error).message).toMatch(
        /does not accept TLS connections, but sslmode=allow requires TLS \(after the server refused the unencrypted connection: no pg_hba\.conf entry .*no encryption \(SQLSTATE 28000\)\)/,
      );
      expect(firstPackets).toEqual([PROTOCOL_3, SSL_REQUEST_CODE]);
    } finally {
      await server.close();
    }
  });

  it('does not retry on 57P03 (cannot connect now) or on an error that arrives before pg answered', async () => {
    for (const reply of [
      errorResponse('57P03', 'the database system is starting up'),
      Buffer.concat([authRequest(3), errorResponse('28000', 'refused')]),
    ]) {
      const server = await fakeServer(async (socket, reader) => {
        await reader.packet();
        socket.write(reply);
        await reader.packet().catch(() => undefined);
      });
      try {
        await expect(connectTo('allow', server)).rejects.toMatchObject({ code: expect.stringMatching(/^(57P03|28000)$/) });
        expect(server.connections).toBe(1);
      } finally {
        await server.close();
      }
    }
  });

  it('never negotiates TLS over a Unix-domain socket, as libpq', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'codecheck-sock-'));
    const firstPackets: number[] = [];
    const server = await fakeServer(
      async (socket, reader) => {
        firstPackets.push((await reader.packet()).readInt32BE(4));
        socket.write(READY);
      },
      join(dir, '.s.PGSQL.5432'),
    );
    try {
      const Client = createClientClass(settingsFor('require'));
      const client = new Client({ host: dir, port: 5432, user: 'u', database: 'd' });
      await client.connect();
      expect(firstPackets).toEqual([PROTOCOL_3]);
      await client.end().catch(() => undefined);
    } finally {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("ignores pg's own ssl, sslmode and PGSSLMODE", async () => {
    const firstPackets: number[] = [];
    const server = await fakeServer(async (socket, reader) => {
      firstPackets.push((await reader.packet()).readInt32BE(4));
      socket.write(READY);
    });
    const previous = process.env.PGSSLMODE;
    process.env.PGSSLMODE = 'require';
    try {
      const client = await connectTo('disable', server, {
        ssl: { rejectUnauthorized: true },
        connectionString: `postgres://u:p@127.0.0.1:${server.port}/d?sslmode=verify-full&sslrootcert=/nonexistent&application_name=x`,
      });
      expect(firstPackets).toEqual([PROTOCOL_3]);
      await client.end().catch(() => undefined);
    } finally {
      if (previous === undefined) delete process.env.PGSSLMODE;
      else process.env.PGSSLMODE = previous;
      await server.close();
    }
  });

  it('sends a cancel request only after the TLS request, whatever pg would do', async () => {
    const firstPackets: number[] = [];
    const server = await fakeServer(async (socket, reader) => {
      firstPackets.push((await reader.packet()).readInt32BE(4));
      socket.end('N');
    });
    try {
      const stream = connectNegotiated(settingsFor('require'), { host: '127.0.0.1', port: server.port });
      const error = await new Promise<Error>((resolve) => stream.once('error', resolve));
      expect(error.message).toMatch(/does not accept TLS connections/);
      expect(firstPackets).toEqual([SSL_REQUEST_CODE]);
    } finally {
      await server.close();
    }
  });
});

describe('config resolver with random and hostile values', () => {
  const hostile = fc.oneof(
    fc.constantFrom(
      '',
      ' ',
      '\0',
      'system',
      'SYSTEM',
      '/dev/zero',
      '/dev/null',
      '/proc/self/environ',
      '/',
      '.',
      '..',
      '-----BEGIN PRIVATE KEY-----\nAAAA',
      'require\r',
      'verify-full ',
      'no-verify',
      'true',
      '%00',
      '${HOME}',
      '~/.postgresql/root.crt',
      '\u202e',
      '😀'.repeat(50),
    ),
    fc.string({ maxLength: 60 }),
    fc.string({ unit: 'binary', maxLength: 60 }),
    fc.constantFrom(...SSL_MODES),
    fc.nat(20).map((n) => 'x'.repeat(2 ** n)),
  );
  const maybe = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined });
  const password = fc.string({ unit: 'binary', minLength: 1, maxLength: 20 }).map((s) => `pw-Zq9-${s}`);

  it('resolves or throws ConfigError, and never shows the password', () => {
    fc.assert(
      fc.property(
        password,
        fc.record({
          DB_SSLMODE: maybe(hostile),
          DB_SSLROOTCERT: maybe(hostile),
          DB_SSLCERT: maybe(hostile),
          DB_SSLKEY: maybe(hostile),
          DB_HOST: maybe(hostile),
          DB_PORT: maybe(hostile),
          DB_USER: maybe(hostile),
          DB_NAME: maybe(hostile),
        }),
        fc.option(
          fc.record({
            sslmode: maybe(hostile),
            sslrootcert: maybe(hostile),
            sslcert: maybe(hostile),
            sslkey: maybe(hostile),
            host: maybe(hostile),
          }),
          { nil: undefined },
        ),
        fc.boolean(),
        fc.option(
          fc.record({
            sslMode: maybe(fc.oneof(hostile, fc.anything())),
            sslRootCert: maybe(fc.oneof(hostile, fc.anything())),
            sslCert: maybe(hostile),
            sslKey: maybe(hostile),
            hasPassword: fc.boolean(),
          }),
          { nil: undefined },
        ),
        (secret, vars, query, isUrlHostile, given) => {
          const env: Record<string, string | undefined> = { ...vars, DB_PASSWORD: secret };
          const { hasPassword, ...rest } = given ?? { hasPassword: false };
          const options = { ...rest, ...(hasPassword ? { password: secret } : {}) } as DatabaseOptions;
          if (query) {
            const params = Object.entries(query)
              .filter(([, v]) => v !== undefined)
              .map(([k, v]) => `${k}=${isUrlHostile ? v : encodeURIComponent(v!)}`);
            // A hostile URL also carries the password unencoded, as users often paste it.
            env.DATABASE_URL = `postgres://user:${isUrlHostile ? secret : encodeURIComponent(secret)}@db.example:5432/app?${params.join('&')}`;
          }
          const forms = [secret, encodeURIComponent(secret), JSON.stringify(secret).slice(1, -1)];
          try {
            const config = loadConfig(env, options);
            expect(Object.isFrozen(config)).toBe(true);
            const shown = [JSON.stringify(config), ...config.warnings].join('\n');
            for (const form of forms) expect(shown).not.toContain(form);
          } catch (error) {
            expect(error).toBeInstanceOf(ConfigError);
            const configError = error as ConfigError;
            const shown = [configError.message, ...configError.problems].join('\n');
            for (const form of forms) expect(shown).not.toContain(form);
          }
        },
      ),
      { numRuns: 400, endOnFailure: true },
    );
  });

  it('resolveSsl pushes sentences that name the variable, and never throws', () => {
    fc.assert(
      fc.property(
        fc.record({ mode: maybe(hostile), rootCert: maybe(hostile), cert: maybe(hostile), key: maybe(hostile) }),
        (inputs) => {
          const { settings, problems } = resolve(inputs);
          expect(SSL_MODES).toContain(settings.mode);
          for (const problem of problems) {
            expect(problem).toMatch(/^DB_SSL(MODE|ROOTCERT|CERT|KEY)\b/);
            expect(problem.length).toBeLessThan(600);
          }
        },
      ),
      { numRuns: 400, endOnFailure: true },
    );
  });
});
