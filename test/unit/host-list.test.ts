import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, loadConfig } from '../../src/index.js';
import { formatHost, orderHosts, parseHostSpec, splitUrlHostList, zipHostsAndPorts } from '../../src/replicas/host-list.js';
import { HostSelector } from '../../src/replicas/host-selector.js';
import { matchesTarget, TARGET_SESSION_ATTRS, type TargetSessionAttrs } from '../../src/replicas/session-attrs.js';

const SECRET = 'Hosts-Secret-Pw';

function problemsOf(env: Record<string, string>, options = {}): string[] {
  try {
    loadConfig(env, options);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return [...(error as ConfigError).problems];
  }
  throw new Error('expected a ConfigError');
}

describe('host lists', () => {
  it('reads host:port pairs from the URL authority, giving a host without a port DB_PORT or 5432', () => {
    const config = loadConfig({ DATABASE_URL: `postgres://app:${SECRET}@db-a:5433,db-b,[::1]:6000/app` });
    expect(config.hosts).toEqual([
      { host: 'db-a', port: 5433 },
      { host: 'db-b', port: 5432 },
      { host: '::1', port: 6000 },
    ]);
    expect([config.host, config.port, config.user, config.password, config.database]).toEqual([
      'db-a',
      5433,
      'app',
      SECRET,
      'app',
    ]);
    expect(loadConfig({ DATABASE_URL: 'postgres://u@a,b:1/db', DB_PORT: '7000' }).hosts).toEqual([
      { host: 'a', port: 7000 },
      { host: 'b', port: 1 },
    ]);
  });

  it('pairs ?host=a,b with ?port=p1,p2 and DB_HOST=a,b with DB_PORT (one port for all, or one each)', () => {
    expect(loadConfig({ DATABASE_URL: 'postgres:///db?host=a,b&port=1,2' }).hosts).toEqual([
      { host: 'a', port: 1 },
      { host: 'b', port: 2 },
    ]);
    expect(loadConfig({ DB_HOST: 'a, b', DB_PORT: '7' }).hosts).toEqual([
      { host: 'a', port: 7 },
      { host: 'b', port: 7 },
    ]);
    expect(loadConfig({ DB_HOST: 'a,b', DB_PORT: '1,2' }).hosts).toEqual([
      { host: 'a', port: 1 },
      { host: 'b', port: 2 },
    ]);
  });

  it('reads ?host= and ?port= after a user with an empty host, as libpq does (user:password@/db)', () => {
    const config = loadConfig({ DATABASE_URL: `postgres://app:${SECRET}@/db?host=a,b&port=1,2` });
    expect(config.hosts).toEqual([
      { host: 'a', port: 1 },
      { host: 'b', port: 2 },
    ]);
    expect([config.user, config.password, config.database]).toEqual(['app', SECRET, 'db']);
    expect(loadConfig({ DATABASE_URL: `postgres://app:${SECRET}@/db?host=a&port=7` }).hosts).toEqual([{ host: 'a', port: 7 }]);
    expect(loadConfig({ DATABASE_URL: `postgres://app:${SECRET}@/db`, DB_HOST: 'from-env' }).hosts).toEqual([
      { host: 'from-env', port: 5432 },
    ]);
  });

  it('with readTargetSessionAttrs prefer-standby, lists every host of the list as a read replica with the primary login', () => {
    const config = loadConfig({
      DATABASE_URL: `postgres://app:${SECRET}@db-a:5433,db-b/app`,
      DB_READ_TARGET_SESSION_ATTRS: 'prefer-standby',
      DB_POOL_MAX: '4',
    });
    expect(
      config.replicas.map((r) => [r.name, r.host, r.port, r.user, r.password, r.database, r.min, r.max, r.isListHost]),
    ).toEqual([
      ['db-a:5433', 'db-a', 5433, 'app', SECRET, 'app', 0, 4, true],
      ['db-b:5432', 'db-b', 5432, 'app', SECRET, 'app', 0, 4, true],
    ]);
    expect(JSON.stringify(config.replicas)).not.toContain(SECRET);
    expect(loadConfig({ DB_HOST: 'a,b' }).replicas).toEqual([]);
    const single = loadConfig({ DB_HOST: 'a' }, { readTargetSessionAttrs: 'prefer-standby' });
    expect(single.replicas).toEqual([]);
    expect(single.warnings).toEqual([
      'readTargetSessionAttrs prefer-standby has no effect without a host list (it reads from the standbys of the list).',
    ]);
    expect(problemsOf({ DB_HOST: 'a,b', DB_READ_TARGET_SESSION_ATTRS: 'standby' })).toEqual([
      'DB_READ_TARGET_SESSION_ATTRS is "standby"; expected any or prefer-standby.',
    ]);
  });

  it('rejects a port written into a DB_HOST or ?host= list, naming the entry and the port variable', () => {
    expect(problemsOf({ DB_HOST: 'db-a:5432,db-b' })).toEqual([
      'DB_HOST entry "db-a:5432" (host 1 of the list) is not a host name; give ports in DB_PORT (one for all hosts or one per host).',
    ]);
    expect(problemsOf({ DB_HOST: 'db-a,[::1]:5432' })[0]).toContain('"[::1]:5432" (host 2 of the list) is not a host name');
    expect(loadConfig({ DB_HOST: 'db-a,::1', DB_PORT: '1,2' }).hosts).toEqual([
      { host: 'db-a', port: 1 },
      { host: '::1', port: 2 },
    ]);
  });

  it('takes the hosts option over the URL and DB_HOST, with port defaulting to the resolved port', () => {
    const config = loadConfig(
      { DB_HOST: 'ignored-a,ignored-b', DB_PORT: '6543' },
      { hosts: [{ host: 'x' }, { host: 'y', port: 7 }] },
    );
    expect(config.hosts).toEqual([
      { host: 'x', port: 6543 },
      { host: 'y', port: 7 },
    ]);
  });

  it('keeps one host as a list of one, with target_session_attrs any (libpq default)', () => {
    const config = loadConfig({ DB_HOST: 'solo', DB_PORT: '5444' });
    expect(config.hosts).toEqual([{ host: 'solo', port: 5444 }]);
    expect(config.targetSessionAttrs).toBe('any');
    expect(config.loadBalanceHosts).toBe('disable');
  });

  it('defaults target_session_attrs to read-write for a host list, and reads it from the URL, DB_* and options', () => {
    expect(loadConfig({ DB_HOST: 'a,b' }).targetSessionAttrs).toBe('read-write');
    expect(loadConfig({ DATABASE_URL: 'postgres://u@a,b/db?target_session_attrs=prefer-standby' }).targetSessionAttrs).toBe(
      'prefer-standby',
    );
    expect(loadConfig({ DB_HOST: 'a,b', DB_TARGET_SESSION_ATTRS: 'any', DB_LOAD_BALANCE_HOSTS: 'random' })).toMatchObject({
      targetSessionAttrs: 'any',
      loadBalanceHosts: 'random',
    });
    expect(loadConfig({}, { hosts: [{ host: 'a' }, { host: 'b' }], targetSessionAttrs: 'standby' }).targetSessionAttrs).toBe(
      'standby',
    );
  });

  it('reports every malformed entry in one ConfigError naming the variable and the entry, never the password', () => {
    const problems = problemsOf({ DATABASE_URL: `postgres://u:${SECRET}@h1:99999,h2:x,,h3/db` });
    expect(problems).toEqual([
      'DATABASE_URL host (host 1 of the list) has the port "99999", which is not a port number; expected 1–65535.',
      'DATABASE_URL host (host 2 of the list) has the port "x", which is not a port number; expected 1–65535.',
      'DATABASE_URL host (host 3 of the list) is "", which is not host or host:port.',
    ]);
    expect(problems.join('\n')).not.toContain(SECRET);
    expect(problemsOf({ DB_HOST: 'a,,b' })).toEqual([
      'DB_HOST has an empty entry (host 2 of the list); expected host names separated by commas.',
    ]);
    expect(problemsOf({ DB_HOST: 'a,b', DB_PORT: '1,2,3' })).toEqual([
      'DB_PORT lists 3 ports for 2 hosts in DB_HOST; give one port for all hosts or one per host.',
    ]);
    expect(problemsOf({}, { hosts: [] })).toEqual(['option hosts must be a non-empty array of { host, port? } objects.']);
    expect(problemsOf({}, { hosts: [{ host: 'a', port: 70000 }] })).toEqual([
      'option hosts[0] port is "70000", out of range; expected 1–65535.',
    ]);
    expect(problemsOf({ DB_TARGET_SESSION_ATTRS: 'master', DB_LOAD_BALANCE_HOSTS: 'yes' })).toEqual([
      'DB_TARGET_SESSION_ATTRS is "master"; expected one of any, read-write, read-only, primary, standby, prefer-standby (target_session_attrs).',
      'DB_LOAD_BALANCE_HOSTS is "yes"; expected disable or random (load_balance_hosts).',
    ]);
    // Named after where the value came from, as every other problem is.
    expect(problemsOf({ DATABASE_URL: 'postgres://h1,h2/db?target_session_attrs=bogus&load_balance_hosts=on' })).toEqual([
      'DATABASE_URL target_session_attrs is "bogus"; expected one of any, read-write, read-only, primary, standby, prefer-standby (target_session_attrs).',
      'DATABASE_URL load_balance_hosts is "on"; expected disable or random (load_balance_hosts).',
    ]);
    expect(problemsOf({}, { targetSessionAttrs: 'master' as never })).toEqual([
      'option targetSessionAttrs is "master"; expected one of any, read-write, read-only, primary, standby, prefer-standby (target_session_attrs).',
    ]);
  });

  it('applies the URL TLS settings to every host: one sslmode for the whole list', () => {
    const config = loadConfig({ DATABASE_URL: 'postgres://u@a:1,b:2/db?sslmode=require' });
    expect(config.ssl.mode).toBe('require');
    expect(config.hosts).toHaveLength(2);
  });

  it('parses the building blocks: hostspec, host and port lists, URL splitting, order, formatting', () => {
    const problems: string[] = [];
    expect(parseHostSpec('a:1,[fe80::1]:2,b', 9, 'X', problems)).toEqual([
      { host: 'a', port: 1 },
      { host: 'fe80::1', port: 2 },
      { host: 'b', port: 9 },
    ]);
    expect(zipHostsAndPorts('a,b', undefined, 5, { hosts: 'H', ports: 'P' }, problems)).toEqual([
      { host: 'a', port: 5 },
      { host: 'b', port: 5 },
    ]);
    expect(problems).toEqual([]);
    expect(splitUrlHostList('postgres://u:p@a:1,b:2/db?x=1')).toEqual({
      url: 'postgres://u:p@localhost/db?x=1',
      hostSpec: 'a:1,b:2',
      hasEmptyHost: false,
    });
    expect(splitUrlHostList('postgres://u:p@a:1/db')).toEqual({
      url: 'postgres://u:p@a:1/db',
      hostSpec: undefined,
      hasEmptyHost: false,
    });
    expect(splitUrlHostList('postgres://u:p@/db?host=a,b')).toEqual({
      url: 'postgres://u:p@localhost/db?host=a,b',
      hostSpec: undefined,
      hasEmptyHost: true,
    });
    expect(orderHosts([1, 2, 3], 'disable')).toEqual([1, 2, 3]);
    expect(orderHosts([1, 2, 3], 'random', () => 0)).toEqual([2, 3, 1]);
    expect(formatHost({ host: '::1', port: 5 })).toBe('[::1]:5');
  });
});

describe('target_session_attrs', () => {
  const primary = { isInHotStandby: false, isDefaultReadOnly: undefined };
  const standby = { isInHotStandby: true, isDefaultReadOnly: undefined };
  const readOnlyPrimary = { isInHotStandby: false, isDefaultReadOnly: true };

  it("matches servers with libpq's meanings", () => {
    const table = Object.fromEntries(
      TARGET_SESSION_ATTRS.map((target: TargetSessionAttrs) => [
        target,
        [matchesTarget(target, primary), matchesTarget(target, standby), matchesTarget(target, readOnlyPrimary)],
      ]),
    );
    expect(table).toEqual({
      any: [true, true, true],
      'read-write': [true, false, false],
      'read-only': [false, true, true],
      primary: [true, false, true],
      standby: [false, true, false],
      'prefer-standby': [false, true, false],
    });
    expect(matchesTarget('prefer-standby', primary, 2)).toBe(true);
  });
});

describe('HostSelector', () => {
  const a = { host: 'a', port: 1 };
  const b = { host: 'b', port: 2 };

  it('walks the list in order, keeps the first host that fits, and counts a primary taken up after a loss', () => {
    const selector = new HostSelector([a, b], 'read-write', 'disable');
    const first = selector.pick();
    expect(first.host.key).toBe('a:1');
    selector.reject(first.host, 'wrong-role', 'is a standby (in hot standby)');
    const second = selector.pick();
    expect(second.host.key).toBe('b:2');
    selector.accept(second, true);
    expect(selector.current?.key).toBe('b:2');
    expect(selector.primaryChanges).toBe(0);
    selector.markNotPrimary(second.host, 'refused read-write work');
    expect(selector.isCurrentGeneration(second.host, 0)).toBe(false);
    expect(selector.status()).toEqual({
      currentHost: null,
      isFinding: true,
      reason:
        'no host accepted writes (target_session_attrs=read-write): a:1 is a standby (in hot standby); b:2 refused read-write work',
    });
    const third = selector.pick();
    expect(third.host.key).toBe('a:1');
    selector.accept(third, true);
    expect(selector.primaryChanges).toBe(1);
  });

  it('tries every host twice for prefer-standby, taking any host in the second pass', () => {
    const selector = new HostSelector([a, b], 'prefer-standby', 'disable');
    for (const key of ['a:1', 'b:2']) {
      const choice = selector.pick();
      expect([choice.host.key, choice.pass]).toEqual([key, 1]);
      selector.reject(choice.host, 'wrong-role', 'is a primary');
    }
    expect(selector.pick()).toMatchObject({ host: { key: 'a:1' }, pass: 2 });
  });

  it('keeps target any after a not-primary mark when the pool never reached a primary (a standby on purpose)', () => {
    const selector = new HostSelector([a], 'any', 'disable', { followsPrimary: true });
    selector.accept(selector.pick(), false);
    selector.markNotPrimary(selector.current!, 'refused read-write work', false);
    expect([selector.effectiveTarget, selector.needsRole]).toEqual(['any', false]);
  });

  it('asks for a primary after a not-primary mark with target any, until one is found or a search gives up', () => {
    const selector = new HostSelector([a], 'any', 'disable', { followsPrimary: true });
    selector.accept(selector.pick(), true);
    expect(selector.needsRole).toBe(false);
    selector.markNotPrimary(selector.current!, 'refused read-write work');
    expect(selector.effectiveTarget).toBe('primary');
    selector.giveUp();
    expect(selector.effectiveTarget).toBe('any');
  });
});

describe('host-list examples in the docs', () => {
  /** The `sh` blocks after `heading` in a doc, each line's `VAR=value` pairs (comments dropped). */
  function shBlocks(doc: string, heading: string): Record<string, string>[][] {
    const text = readFileSync(join(import.meta.dirname, '..', '..', 'docs', doc), 'utf8');
    const section = text.slice(text.indexOf(heading)).split(/\n#{2,3} /)[0]!;
    return [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((block) =>
      block[1]!
        .split('\n')
        .map((line) => line.replace(/\s+#.*$/, '').trim())
        .filter((line) => line !== '')
        .map((line) =>
          Object.fromEntries(
            line.split(/\s+/).map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)]),
          ),
        ),
    );
  }

  it('resolves each line of the docs/configuration.md host-list example to the hosts it names', () => {
    const [lines] = shBlocks('configuration.md', '## Host lists and target_session_attrs');
    expect(lines!.map((env) => loadConfig(env).hosts.map((h) => `${h.host}:${h.port}`))).toEqual([
      ['db-a:5432', 'db-b:5432'],
      ['db-a:5432', 'db-b:5433'],
      ['db-a:5432', 'db-b:5432'],
    ]);
  });

  it('resolves the Patroni and RDS examples of docs/operations.md as they describe', () => {
    const [patroni] = shBlocks('operations.md', '### Patroni (a host list)');
    const patroniConfig = loadConfig(Object.assign({}, ...patroni!));
    expect(patroniConfig.hosts).toHaveLength(3);
    expect(patroniConfig.targetSessionAttrs).toBe('read-write');
    const [rds] = shBlocks('operations.md', '### RDS Multi-AZ and Aurora (one DNS name)');
    const rdsEnv: Record<string, string> = Object.assign({}, ...rds!);
    // The example's root certificate file does not exist here: the system store stands in for it.
    const rdsConfig = loadConfig({
      ...rdsEnv,
      DATABASE_URL: rdsEnv.DATABASE_URL!.replace(/sslrootcert=[^&]*/, 'sslrootcert=system'),
    });
    expect([rdsConfig.hosts.length, rdsConfig.targetSessionAttrs, rdsConfig.maxLifetimeMillis]).toEqual([
      1,
      'read-write',
      300_000,
    ]);
  });
});
