import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DatabaseConnectionError, type Database, type DatabaseOptions } from '../../src/index.js';
import { getTestDatabaseUrl } from '../support/database-url.js';
import { adminQuery, captureLogs, eventually, openDatabase, uniqueName, within } from '../support/test-database.js';

const serverUrl = new URL(getTestDatabaseUrl());
/** The shared server's address, without its superuser login: each test logs in with a role of its own. */
const address = { host: serverUrl.hostname, port: Number(serverUrl.port), database: serverUrl.pathname.slice(1) || 'postgres' };

const roles: string[] = [];
const databases: Database[] = [];
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'codecheck-credentials-'));
});
afterEach(async () => {
  await Promise.all(databases.splice(0).map((db) => db.shutdown({ timeoutMillis: 2000 })));
});
afterAll(async () => {
  for (const role of roles) {
    await adminQuery(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, [role]);
    await adminQuery(`DROP ROLE IF EXISTS ${role}`);
  }
  rmSync(dir, { recursive: true, force: true });
});

/** A login role of this test with `password`; its name is returned. */
async function createRole(password: string): Promise<string> {
  const role = uniqueName('cred');
  roles.push(role);
  await adminQuery(`CREATE ROLE ${role} LOGIN PASSWORD '${password}'`);
  return role;
}

function open(options: DatabaseOptions): Database {
  const db = openDatabase({ connectionString: undefined, ...address, sslMode: 'disable', min: 0, max: 4, ...options });
  databases.push(db);
  return db;
}

/** The sessions of `applicationName` on the server: user and start time of each. */
async function sessions(applicationName: string): Promise<{ usename: string; backend_start: Date; pid: number }[]> {
  return adminQuery(`SELECT usename, backend_start, pid FROM pg_stat_activity WHERE application_name = $1 ORDER BY pid`, [
    applicationName,
  ]);
}

/** Opens `count` connections one after another, each held while the next opens. */
async function openNested(db: Database, count: number): Promise<void> {
  if (count === 0) return;
  await db.withDb(true, async (client) => {
    await client.query('SELECT 1');
    await openNested(db, count - 1);
  });
}

/** Everything a caller or operator could see, as text. */
function exposures(values: unknown[], logs: string[]): string {
  return [
    ...logs,
    ...values.flatMap((value) => [
      JSON.stringify(value) ?? '',
      inspect(value, { depth: 20, showHidden: true }),
      value instanceof Error ? `${value.message}\n${value.stack ?? ''}` : '',
    ]),
  ].join('\n');
}

describe('a password function', () => {
  it('is called for a new connection, and its login is reused within credentialsCacheMillis', async () => {
    const secret = 'Fn-secret-1!a';
    const user = await createRole(secret);
    let calls = 0;
    const db = open({
      user,
      password: async () => {
        calls++;
        return secret;
      },
      max: 3,
    });
    // Three connections at once (each holds its own), one provider call.
    await Promise.all([1, 2, 3].map(() => db.withDb(true, (client) => client.query('SELECT pg_sleep(0.05)'))));
    expect(db.getStats().totalConnections).toBe(3);
    expect(calls).toBe(1);
  });

  it('is called for every new connection when credentialsCacheMillis is 0', async () => {
    const secret = 'Fn-secret-2!b';
    const user = await createRole(secret);
    let calls = 0;
    const db = open({
      user,
      password: () => {
        calls++;
        return secret;
      },
      credentialsCacheMillis: 0,
      max: 3,
    });
    await openNested(db, 3);
    expect(db.getStats().totalConnections).toBe(3);
    expect(calls).toBe(3);
  });
});

describe('rotating a password with ALTER ROLE while the pool runs', () => {
  it('keeps existing connections, opens new ones with the new secret, and retires them all on rotateCredentials()', async () => {
    const applicationName = uniqueName('rotate');
    let current = 'Old-secret-1!x';
    const user = await createRole(current);
    const db = open({ user, password: async () => current, applicationName, min: 2, max: 4 });
    await db.ready();
    const before = await sessions(applicationName);
    expect(before).toHaveLength(2);

    current = 'New-secret-2!y';
    await adminQuery(`ALTER ROLE ${user} PASSWORD '${current}'`);
    // Existing connections keep working; a new one is refused the cached old login once, then gets the provider's new one.
    await db.withDb(true, async (a) => {
      await a.query('SELECT 1');
      await db.withDb(true, async (b) => {
        await b.query('SELECT 1');
        // A third connection is opened now. Its first try uses the cached login, which the server
        // refuses (28P01); that drops the cache, and the checkout connects again with the provider's
        // new secret within the same deadline: the caller sees no error.
        const errorsBefore = db.getStats().connectionErrors;
        expect(await db.executeQuery('SELECT 1 AS one')).toEqual([{ one: 1 }]);
        expect(db.getStats().connectionErrors - errorsBefore).toBe(1);
        expect(db.getStats().errors).toBe(0);
      });
    });

    const rotatedAt = new Date();
    await db.rotateCredentials({ drainMillis: 0 });
    const after = await eventually(
      async () => {
        const rows = await sessions(applicationName);
        return rows.length >= 2 && rows.every((row) => row.backend_start >= rotatedAt) ? rows : undefined;
      },
      10_000,
      'every session opened after the rotation',
    );
    expect(after.map((row) => row.pid)).not.toContain(before[0]!.pid);
    expect(await db.executeQuery('SELECT current_user AS user')).toEqual([{ user }]);
  });

  it('does not connect again when the login the server refused came fresh from the provider: CONNECTION_FAILED with 28P01, one provider call', async () => {
    const user = await createRole('Right-secret-1!r');
    let calls = 0;
    const db = open({
      user,
      password: async () => {
        calls++;
        return 'Wrong-secret-1!w';
      },
      circuitBreakerThreshold: 0,
    });
    const refused = (await db.executeQuery('SELECT 1').catch((error: unknown) => error)) as DatabaseConnectionError;
    expect(refused).toBeInstanceOf(DatabaseConnectionError);
    expect(refused.code).toBe('CONNECTION_FAILED');
    expect((refused.cause as { code?: string }).code).toBe('28P01');
    expect(calls).toBe(1);
    expect(db.getStats().connectionErrors).toBe(1);
  });

  it('replaces the notification listener connection on rotateCredentials(): a new session with the new secret that LISTENs again, onReconnect once', async () => {
    const applicationName = uniqueName('rotlisten');
    let current = 'Listen-secret-1!a';
    const user = await createRole(current);
    const db = open({ user, password: async () => current, applicationName });
    const received: string[] = [];
    let reconnects = 0;
    await db.listen('rotation_channel', (payload) => void received.push(payload), {
      onReconnect: () => {
        reconnects++;
      },
    });
    const [before] = await sessions(`${applicationName} listener`);
    expect(before).toBeDefined();

    current = 'Listen-secret-2!b';
    await adminQuery(`ALTER ROLE ${user} PASSWORD '${current}'`);
    await db.rotateCredentials({ drainMillis: 0 });
    const after = await eventually(
      async () => {
        const rows = await sessions(`${applicationName} listener`);
        return rows.length === 1 && rows[0]!.pid !== before!.pid ? rows[0] : undefined;
      },
      10_000,
      'one listener session, a new one',
    );
    expect(after.usename).toBe(user);
    await eventually(async () => (reconnects === 1 ? true : undefined), 5000, 'onReconnect called once');
    await db.notify('rotation_channel', 'after the rotation');
    await eventually(async () => (received.includes('after the rotation') ? true : undefined), 5000, 'the notification');
    expect(db.getStats().listener).toMatchObject({ connected: true, channels: 1, reconnects: 1 });
  });

  it('retires a connection checked out during the rotation when it is released', async () => {
    const applicationName = uniqueName('rotatebusy');
    const user = await createRole('Busy-secret-1!q');
    const db = open({ user, password: async () => 'Busy-secret-1!q', applicationName, min: 1, max: 2 });
    await db.ready();
    let heldPid = 0;
    await db.withDb(true, async (client) => {
      heldPid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      await db.rotateCredentials({ drainMillis: 0 });
      // Still usable while held.
      await client.query('SELECT 1');
    });
    await eventually(
      async () => ((await sessions(applicationName)).some((row) => row.pid === heldPid) ? undefined : true),
      10_000,
      'the held connection closed after release',
    );
  });
});

describe('the notification listener', () => {
  it('logs in through the password provider too', async () => {
    const secret = 'Listen-pw-1!l';
    const user = await createRole(secret);
    let calls = 0;
    const db = open({
      user,
      password: async () => {
        calls++;
        return secret;
      },
    });
    const received: string[] = [];
    const subscription = await db.listen('credentials_listener', (payload) => void received.push(payload));
    await db.notify('credentials_listener', 'hello');
    await eventually(() => (received.length > 0 ? true : undefined));
    expect(received).toEqual(['hello']);
    expect(calls).toBe(1);
    await subscription.unlisten();
  });
});

describe('a credentials provider', () => {
  it('changes the user: after rotateCredentials() no session logs in as the old one', async () => {
    const applicationName = uniqueName('vault');
    const first = { user: await createRole('Vault-pw-1!a'), password: 'Vault-pw-1!a' };
    const second = { user: await createRole('Vault-pw-2!b'), password: 'Vault-pw-2!b' };
    let current = first;
    const db = open({ credentials: async () => current, applicationName, min: 2, max: 3 });
    await db.ready();
    expect(new Set((await sessions(applicationName)).map((row) => row.usename))).toEqual(new Set([first.user]));
    current = second;
    await db.rotateCredentials({ drainMillis: 0 });
    await eventually(
      async () => {
        const rows = await sessions(applicationName);
        return rows.length >= 2 && rows.every((row) => row.usename === second.user) ? rows : undefined;
      },
      10_000,
      'only the new user logged in',
    );
    expect(await db.executeQuery('SELECT current_user AS user')).toEqual([{ user: second.user }]);
  });

  it('reuses a login only until its expiresAt', async () => {
    const secret = 'Exp-pw-1!c';
    const user = await createRole(secret);
    let calls = 0;
    const db = open({
      credentials: () => {
        calls++;
        return { user, password: secret, expiresAt: Date.now() - 1 };
      },
      max: 2,
    });
    await openNested(db, 2);
    expect(calls).toBe(2);
  });
});

describe('a provider that fails', () => {
  const secret = 'Never-shown-7!z';

  async function expectCredentialsFailure(options: DatabaseOptions, messagePart: string): Promise<DatabaseConnectionError> {
    const logs = captureLogs();
    const db = open({ user: 'nobody', logger: logs.logger, connectionTimeoutMillis: 1500, ...options });
    const outcome = await within(3000, db.executeQuery('SELECT 1'));
    expect(outcome).not.toBe('pending');
    const error = (outcome as { error: unknown }).error as DatabaseConnectionError;
    expect(error).toBeInstanceOf(DatabaseConnectionError);
    expect(error.code).toBe('CREDENTIALS_FAILED');
    expect(error.message).toContain(messagePart);
    const health = await db.healthCheck({ timeoutMillis: 1000 });
    expect(health.status).toBe('unhealthy');
    expect(exposures([error, health, db.getStats(), db.config], logs.lines)).not.toContain(secret);
    return error;
  }

  it('rejects with CREDENTIALS_FAILED and the provider error as cause when it throws', async () => {
    const thrown = new Error('vault is sealed');
    const error = await expectCredentialsFailure(
      {
        password: () => {
          throw thrown;
        },
      },
      'vault is sealed',
    );
    expect(error.cause).toBe(thrown);
  });

  it('rejects with CREDENTIALS_FAILED within credentialsTimeoutMillis when it hangs, and aborts its signal', async () => {
    let signal: AbortSignal | undefined;
    const error = await expectCredentialsFailure(
      {
        password: (context) => {
          signal = context.signal;
          return new Promise<string>(() => undefined);
        },
        credentialsTimeoutMillis: 200,
      },
      'did not answer within 200 ms',
    );
    expect(signal?.aborted).toBe(true);
    expect(error.cause).toBeUndefined();
  });

  it('rejects with CREDENTIALS_FAILED naming the type, not the value, when it returns a non-string', async () => {
    await expectCredentialsFailure(
      { password: (() => Promise.resolve({ token: secret })) as unknown as () => Promise<string> },
      'it returned an object as the password, not a string',
    );
    await expectCredentialsFailure(
      { credentials: (() => ({ user: 'x', password: Buffer.from(secret) })) as unknown as DatabaseOptions['credentials'] },
      'it returned a Buffer as the password, not a string',
    );
  });

  it('makes ready() reject with the CREDENTIALS_FAILED error as its cause', async () => {
    const db = open({ password: () => Promise.reject(new Error('no token')), min: 1 });
    const error = (await db.ready({ timeoutMillis: 500 }).catch((e: unknown) => e)) as DatabaseConnectionError;
    expect(error.code).toBe('CONNECTION_FAILED');
    expect((error.cause as DatabaseConnectionError).code).toBe('CREDENTIALS_FAILED');
    expect(error.message).toContain('no token');
  });
});

describe('DB_PASSWORD_FILE', () => {
  it('is read again for each new connection, so a rewritten file is used without a restart', async () => {
    const file = join(dir, 'password');
    writeFileSync(file, 'File-pw-1!a\n');
    const user = await createRole('File-pw-1!a');
    const applicationName = uniqueName('pwfile');
    const logs = captureLogs();
    const db = open({ user, passwordFile: file, applicationName, min: 0, max: 2, logger: logs.logger });
    expect(await db.executeQuery('SELECT current_user AS user')).toEqual([{ user }]);

    writeFileSync(file, 'File-pw-2!b\r\n');
    await adminQuery(`ALTER ROLE ${user} PASSWORD 'File-pw-2!b'`);
    // A second connection, opened after the rewrite, logs in with the file's new contents.
    await db.withDb(true, async (a) => {
      await a.query('SELECT 1');
      await db.withDb(true, async (b) => {
        expect((await b.query('SELECT current_user AS user')).rows).toEqual([{ user }]);
      });
    });
    expect(db.getStats().totalConnections).toBe(2);
    expect(exposures([db.getStats(), db.config, await db.healthCheck()], logs.lines)).not.toMatch(/File-pw-[12]/);
  });

  it('fails a connection with CREDENTIALS_FAILED when the file became empty', async () => {
    const file = join(dir, 'empty-later');
    writeFileSync(file, 'x');
    const db = open({ user: 'nobody', passwordFile: file });
    writeFileSync(file, '\n');
    const error = (await db.executeQuery('SELECT 1').catch((e: unknown) => e)) as DatabaseConnectionError;
    expect(error.code).toBe('CREDENTIALS_FAILED');
    expect(error.message).toBe(`Could not get a login from option passwordFile (${file}): the file is empty`);
  });
});
