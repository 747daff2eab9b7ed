/**
 * The rotating-credentials examples of docs/security.md, run against the shared server: each snippet as
 * the doc gives it, with the connection fields pointed at the test server.
 */
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Database } from '../../src/index.js';
import { getTestDatabaseUrl } from '../support/database-url.js';
import { adminQuery, eventually, uniqueName } from '../support/test-database.js';

const serverUrl = new URL(getTestDatabaseUrl());
const testServer = {
  host: serverUrl.hostname,
  port: Number(serverUrl.port),
  sslMode: 'disable' as const,
  logLevel: 'silent' as const,
  connectionTimeoutMillis: 3000,
};

const roles: string[] = [];
const databases: Database[] = [];
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'codecheck-credential-examples-'));
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

async function createRole(password: string): Promise<string> {
  const role = uniqueName('example');
  roles.push(role);
  await adminQuery(`CREATE ROLE ${role} LOGIN PASSWORD '${password}'`);
  return role;
}

describe('docs/security.md examples', () => {
  it('RDS IAM: a token from the signer is the password, reused within the cache time', async () => {
    const user = await createRole('iam-token-1');
    let tokens = 0;
    // A stand-in with @aws-sdk/rds-signer's shape: getAuthToken() resolves to a token string.
    class Signer {
      constructor(readonly options: { hostname: string; port: number; username: string }) {}
      getAuthToken(): Promise<string> {
        tokens++;
        return Promise.resolve('iam-token-1');
      }
    }
    const signer = new Signer({ hostname: testServer.host, port: testServer.port, username: user });
    const db = new Database({
      ...testServer,
      user,
      password: () => signer.getAuthToken(),
      credentialsCacheMillis: 10 * 60_000, // a token is reused for 10 minutes (refreshed from minute 8)
    });
    databases.push(db);
    await db.withDb(true, async (a) => {
      await a.query('SELECT 1');
      expect(await db.executeQuery('SELECT current_user AS user')).toEqual([{ user }]);
    });
    expect(db.getStats().totalConnections).toBe(2);
    expect(tokens).toBe(1);
  });

  it('Vault: each lease is a user and password pair; rotateCredentials() moves every connection to the new pair', async () => {
    const leases = [
      { username: await createRole('vault-lease-1'), password: 'vault-lease-1' },
      { username: await createRole('vault-lease-2'), password: 'vault-lease-2' },
    ];
    let lease = 0;
    const vault: Server = createServer((request, response) => {
      if (request.url !== '/v1/database/creds/app' || request.headers['x-vault-token'] !== 'test-token') {
        response.writeHead(403).end();
        return;
      }
      response.setHeader('content-type', 'application/json');
      response.end(JSON.stringify({ lease_duration: 3600, data: leases[lease] }));
    });
    await new Promise<void>((resolve) => vault.listen(0, '127.0.0.1', resolve));
    process.env.VAULT_ADDR = `http://127.0.0.1:${(vault.address() as { port: number }).port}`;
    process.env.VAULT_TOKEN = 'test-token';
    const applicationName = uniqueName('vault_example');
    try {
      const db = new Database({
        ...testServer,
        applicationName,
        min: 2,
        credentials: async ({ signal }) => {
          const response = await fetch(`${process.env.VAULT_ADDR}/v1/database/creds/app`, {
            headers: { 'X-Vault-Token': process.env.VAULT_TOKEN ?? '' },
            signal,
          });
          if (!response.ok) throw new Error(`Vault answered ${response.status}`);
          const body = (await response.json()) as { lease_duration: number; data: { username: string; password: string } };
          // Stop handing the pair to new connections well before Vault revokes it.
          return { user: body.data.username, password: body.data.password, expiresAt: Date.now() + body.lease_duration * 500 };
        },
      });
      databases.push(db);
      await db.ready();
      expect(await db.executeQuery('SELECT current_user AS user')).toEqual([{ user: leases[0]!.username }]);
      lease = 1;
      // Before the old lease is revoked, move every connection to a new pair:
      await db.rotateCredentials({ drainMillis: 300 });
      await eventually(async () => {
        const rows = await adminQuery<{ usename: string }>('SELECT usename FROM pg_stat_activity WHERE application_name = $1', [
          applicationName,
        ]);
        return rows.length >= 2 && rows.every((row) => row.usename === leases[1]!.username) ? true : undefined;
      });
      expect(await db.executeQuery('SELECT current_user AS user')).toEqual([{ user: leases[1]!.username }]);
    } finally {
      delete process.env.VAULT_ADDR;
      delete process.env.VAULT_TOKEN;
      await new Promise((resolve) => vault.close(resolve));
    }
  });

  it('Kubernetes: a secret volume updated the way the kubelet does it is used by the next connection', async () => {
    // The kubelet's layout: password -> ..data/password, ..data -> a timestamped directory, swapped atomically.
    const volume = join(dir, 'secret-volume');
    mkdirSync(join(volume, '..2026_01'), { recursive: true });
    writeFileSync(join(volume, '..2026_01', 'password'), 'k8s-secret-1');
    symlinkSync('..2026_01', join(volume, '..data'));
    symlinkSync(join('..data', 'password'), join(volume, 'password'));
    const user = await createRole('k8s-secret-1');
    process.env.DB_PASSWORD_FILE = join(volume, 'password');
    let db: Database;
    try {
      db = new Database({ ...testServer, user, min: 1 });
    } finally {
      delete process.env.DB_PASSWORD_FILE;
    }
    databases.push(db);
    await db.ready();
    const handler = () => {
      void db.rotateCredentials().catch((error: unknown) => db.log.error({ error }, 'credentials rotation failed'));
    };
    process.on('SIGHUP', handler);
    try {
      await adminQuery(`ALTER ROLE ${user} PASSWORD 'k8s-secret-2'`);
      mkdirSync(join(volume, '..2026_02'));
      writeFileSync(join(volume, '..2026_02', 'password'), 'k8s-secret-2\n');
      symlinkSync('..2026_02', join(volume, '..data_tmp'));
      renameSync(join(volume, '..data_tmp'), join(volume, '..data'));
      const before = db.getStats().totalConnections;
      process.emit('SIGHUP', 'SIGHUP');
      // rotateCredentials() spreads the retirement over its default drainMillis (10 s) for one connection.
      await eventually(() => (db.getStats().totalConnections > before ? true : undefined), 20_000, 'a new connection');
      expect(db.getStats().connectionErrors).toBe(0);
      expect(await db.executeQuery('SELECT current_user AS user')).toEqual([{ user }]);
    } finally {
      process.off('SIGHUP', handler);
    }
  });
});
