import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { LoginCache } from '../../src/credentials/login-cache.js';
import type { Login, LoginSource } from '../../src/credentials/login-source.js';
import { ConfigError, DatabaseConnectionError, loadConfig } from '../../src/index.js';

let dir: string;
let file: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'codecheck-credentials-unit-'));
  file = join(dir, 'password');
  writeFileSync(file, 'Unit-file-pw\n');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function problemsOf(run: () => unknown): readonly string[] {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}

describe('login settings', () => {
  it('takes DB_PASSWORD_FILE as a password file source and keeps its contents out of the configuration', () => {
    const config = loadConfig({ DB_PASSWORD_FILE: file });
    expect(config.loginSource?.kind).toBe('password-file');
    expect(config.loginSource?.origin).toBe(`DB_PASSWORD_FILE (${file})`);
    expect(config.password).toBeUndefined();
    expect(JSON.stringify(config)).not.toContain('Unit-file-pw');
    expect(inspect(config, { depth: 10, showHidden: true })).not.toContain('Unit-file-pw');
  });

  it('reports a password file that cannot be read as a ConfigError naming the variable and path', () => {
    const missing = join(dir, 'missing');
    expect(problemsOf(() => loadConfig({ DB_PASSWORD_FILE: missing }))).toEqual([
      `DB_PASSWORD_FILE (${missing}) cannot be read (ENOENT).`,
    ]);
    expect(problemsOf(() => loadConfig({ DB_PASSWORD_FILE: dir }))).toEqual([`DB_PASSWORD_FILE (${dir}) is not a file.`]);
  });

  it('refuses two ways of giving the password at once, without quoting either', () => {
    expect(problemsOf(() => loadConfig({ DB_PASSWORD: 'Fixed-pw', DB_PASSWORD_FILE: file }))).toEqual([
      `Give the password one way only; found DB_PASSWORD_FILE, DB_PASSWORD.`,
    ]);
    expect(problemsOf(() => loadConfig({ DATABASE_URL: 'postgres://u:Url-pw@h/db' }, { password: () => 'x' }))).toEqual([
      'Give the password one way only; found option password (a function), DATABASE_URL password.',
    ]);
    expect(
      problemsOf(() => loadConfig({}, { password: () => 'x', credentials: async () => ({ user: 'u', password: 'p' }) })),
    ).toEqual(['Give the password one way only; found option password (a function), option credentials.']);
  });

  it('refuses credentials that are not a function', () => {
    expect(problemsOf(() => loadConfig({}, { credentials: { user: 'u', password: 'p' } as never }))).toEqual([
      'option credentials must be a function returning { user, password } (or a promise of it).',
    ]);
  });

  it('gives replicas without a password of their own the primary login source', () => {
    const config = loadConfig({}, { password: () => 'x', replicas: ['postgres://r1/db', 'postgres://u:own@r2/db'] });
    expect(config.replicas[0]!.loginSource).toBe(config.loginSource);
    expect(config.replicas[1]!.loginSource).toBeUndefined();
  });

  it('warns when the credentials timeout is longer than the connection timeout', () => {
    const config = loadConfig({ DB_TIMEOUT: '1', DB_CREDENTIALS_TIMEOUT: '2000' }, { password: () => 'x' });
    expect(config.warnings).toContain(
      'The credentials timeout (DB_CREDENTIALS_TIMEOUT) is longer than the connection timeout (DB_TIMEOUT): a provider gets at most the connection timeout.',
    );
  });
});

/** A source whose answers the test sets, counting calls. */
function fakeSource(isCacheable = true) {
  const state = {
    calls: 0,
    next: (): Promise<Login> => Promise.resolve({ user: undefined, password: 'p1', expiresAt: undefined }),
  };
  const source: LoginSource = {
    kind: 'password-function',
    origin: 'the test provider',
    isCacheable,
    fetch: () => {
      state.calls++;
      return state.next();
    },
  };
  return { source, state };
}

describe('LoginCache', () => {
  const log = pino({ level: 'silent' });
  afterEach(() => vi.useRealTimers());

  it('shares one provider call among concurrent logins', async () => {
    const { source, state } = fakeSource();
    const cache = new LoginCache(source, { timeoutMillis: 1000, cacheMillis: 10_000, log });
    const logins = await Promise.all([cache.get(), cache.get(), cache.get()]);
    expect(logins.map((login) => login.password)).toEqual(['p1', 'p1', 'p1']);
    expect(state.calls).toBe(1);
  });

  it('serves the cached login in the last fifth of its time and refreshes it in the background', async () => {
    vi.useFakeTimers({ now: 1_000_000 });
    const { source, state } = fakeSource();
    const cache = new LoginCache(source, { timeoutMillis: 1000, cacheMillis: 10_000, log });
    expect((await cache.get()).password).toBe('p1');
    vi.setSystemTime(1_000_000 + 7_999);
    await cache.get();
    expect(state.calls).toBe(1);
    state.next = () => Promise.resolve({ user: undefined, password: 'p2', expiresAt: undefined });
    vi.setSystemTime(1_000_000 + 8_000);
    expect((await cache.get()).password).toBe('p1');
    expect(state.calls).toBe(2);
    await vi.advanceTimersByTimeAsync(0);
    expect((await cache.get()).password).toBe('p2');
    expect(state.calls).toBe(2);
  });

  it('keeps the cached login when a refresh fails, until it expires', async () => {
    vi.useFakeTimers({ now: 2_000_000 });
    const { source, state } = fakeSource();
    const cache = new LoginCache(source, { timeoutMillis: 1000, cacheMillis: 10_000, log });
    await cache.get();
    state.next = () => Promise.reject(new Error('vault down'));
    vi.setSystemTime(2_000_000 + 9_000);
    expect((await cache.get()).password).toBe('p1');
    await vi.advanceTimersByTimeAsync(0);
    expect((await cache.get()).password).toBe('p1');
    vi.setSystemTime(2_000_000 + 10_000);
    await expect(cache.get()).rejects.toThrow('vault down');
  });

  it('calls the source for every login when it is not cacheable (a password file)', async () => {
    const { source, state } = fakeSource(false);
    const cache = new LoginCache(source, { timeoutMillis: 1000, cacheMillis: 10_000, log });
    await cache.get();
    await cache.get();
    expect(state.calls).toBe(2);
  });

  it('forgets the login on invalidate(), and a call started before it does not refill the cache', async () => {
    const { source, state } = fakeSource();
    const cache = new LoginCache(source, { timeoutMillis: 1000, cacheMillis: 10_000, log });
    let finish!: (login: Login) => void;
    state.next = () => new Promise<Login>((resolve) => (finish = resolve));
    const early = cache.get();
    cache.invalidate();
    state.next = () => Promise.resolve({ user: undefined, password: 'fresh', expiresAt: undefined });
    finish({ user: undefined, password: 'stale', expiresAt: undefined });
    expect((await early).password).toBe('stale');
    expect((await cache.get()).password).toBe('fresh');
    expect(state.calls).toBe(2);
  });

  it('rejects with CREDENTIALS_FAILED once the timeout passes', async () => {
    vi.useFakeTimers();
    const { source, state } = fakeSource();
    state.next = () => new Promise<Login>(() => undefined);
    const cache = new LoginCache(source, { timeoutMillis: 250, cacheMillis: 10_000, log });
    const outcome = cache.get().catch((error: unknown) => error);
    await vi.advanceTimersByTimeAsync(250);
    const error = (await outcome) as DatabaseConnectionError;
    expect(error.code).toBe('CREDENTIALS_FAILED');
    expect(error.message).toBe(
      'Could not get a login from the test provider: it did not answer within 250 ms (credentialsTimeoutMillis)',
    );
  });

  it('never shows the login in util.inspect or JSON', async () => {
    const { source } = fakeSource();
    const cache = new LoginCache(source, { timeoutMillis: 1000, cacheMillis: 10_000, log });
    await cache.get();
    expect(inspect(cache, { depth: 10, showHidden: true })).not.toContain('p1');
    expect(JSON.stringify(cache)).not.toContain('p1');
  });
});
