import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { raceDeadline, sleep, startTimer } from '../../src/timers.js';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../../src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

/** Source text without comments, so a comment that mentions setTimeout does not count. */
function code(path: string): string {
  return readFileSync(path, 'utf8')
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
}

describe('timers', () => {
  it('no file in src but src/timers.ts starts a timer itself', () => {
    const starting = sourceFiles(SRC)
      .filter((path) => !path.endsWith(`${join('src', 'timers.ts')}`))
      .filter((path) => /\b(setTimeout|setInterval|setImmediate)\s*\(/.test(code(path)))
      .map((path) => relative(SRC, path));
    expect(starting).toEqual([]);
  });

  it("keeps ref'd only the timers a caller waits on (ready()'s sleeps, a host-list search's pause, a refused write's retry pause, a wait for a pooled connection, a listen() waiting for its connection) and the two keep-alives", () => {
    const refSites = sourceFiles(SRC).flatMap((path) =>
      [...code(path).matchAll(/'ref'[,)]/g)].map(() => relative(SRC, path).split('\\').join('/')),
    );
    expect(refSites.sort()).toEqual([
      'call-frame.ts',
      'cli/main.ts',
      'database.ts',
      'pool/host-placement.ts',
      'pool/node-pool.ts',
      'pool/ready.ts',
      'streams/listener.ts',
      'streams/listener.ts',
      'streams/listener.ts',
    ]);
  });

  it("an 'unref' timer does not keep the process alive and a 'ref' one does", () => {
    const unref = startTimer(60_000, () => undefined, 'unref');
    const ref = startTimer(60_000, () => undefined, 'ref');
    expect([unref.hasRef(), ref.hasRef()]).toEqual([false, true]);
    clearTimeout(unref);
    clearTimeout(ref);
  });

  it('raceDeadline settles with the work when it settles first, and clears its timer', async () => {
    let timedOut = false;
    const result = await raceDeadline(
      () => Promise.resolve('done'),
      60_000,
      () => {
        timedOut = true;
        return 'late';
      },
      'unref',
    );
    expect([result, timedOut]).toEqual(['done', false]);
  });

  it('raceDeadline resolves with onTimeout when the work is still pending at the deadline', async () => {
    const never = new Promise<string>(() => undefined);
    expect(
      await raceDeadline(
        () => never,
        5,
        () => 'timeout' as const,
        'unref',
      ),
    ).toBe('timeout');
  });

  it('raceDeadline arms its deadline before the work starts, so it wins a tie with a timer the work arms', async () => {
    const work = () => new Promise<string>((_, reject) => startTimer(20, () => reject(new Error('work timed out')), 'unref'));
    expect(await raceDeadline(work, 20, () => 'deadline' as const, 'unref')).toBe('deadline');
  });

  it('raceDeadline rejects with what onTimeout throws', async () => {
    const never = new Promise<string>(() => undefined);
    const raced = raceDeadline(
      () => never,
      5,
      () => {
        throw new Error('probe did not answer within 5 ms');
      },
      'unref',
    );
    await expect(raced).rejects.toThrow('probe did not answer within 5 ms');
  });

  it('raceDeadline rejects with the work’s error when the work fails first', async () => {
    await expect(
      raceDeadline(
        () => Promise.reject(new Error('refused')),
        60_000,
        () => 'late',
        'unref',
      ),
    ).rejects.toThrow('refused');
  });

  it('sleep resolves after its time, a negative time counting as zero', async () => {
    await expect(sleep(-5, 'unref')).resolves.toBeUndefined();
    await expect(sleep(1, 'unref')).resolves.toBeUndefined();
  });
});
