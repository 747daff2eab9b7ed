/**
 * Scenario 5: a connection held past `leakDetectionThresholdMillis` is logged once, with the stack of
 * the code that acquired it, and counted in stats (`leaksDetected`); one held less is not.
 */
import { afterAll, describe, expect, test } from 'vitest';
import { Database } from '../../../src/index.js';
import { getTestDatabaseUrl } from '../../support/database-url.js';
import { guardProcess, memoryLogger, printFigures, sleep, urlVia } from './support.js';

const THRESHOLD_MILLIS = 150;
const guard = guardProcess();
const { logger, lines } = memoryLogger('warn');
const db = new Database({
  connectionString: urlVia(getTestDatabaseUrl()),
  logger,
  min: 0,
  max: 2,
  connectionTimeoutMillis: 2000,
  leakDetectionThresholdMillis: THRESHOLD_MILLIS,
});

afterAll(async () => {
  await db.shutdown({ timeoutMillis: 1000 });
  guard.dispose();
});

const leakLines = () => lines.filter((line) => /possible leak/.test(String(line.msg)));

/** Named so the acquiring stack can be recognised in the log. */
async function holdTheConnectionForAWhile(millis: number): Promise<void> {
  await db.withDb(true, async (client) => {
    await client.query('SELECT 1');
    await sleep(millis);
  });
}

describe('scenario 5: leak detection', () => {
  test('a connection held past the threshold is logged once with the acquiring stack and counted', async () => {
    await holdTheConnectionForAWhile(THRESHOLD_MILLIS / 3);
    expect(leakLines()).toHaveLength(0);
    expect(db.getStats().leaksDetected).toBe(0);

    // Held for four thresholds: still one warning, not one per threshold.
    await holdTheConnectionForAWhile(THRESHOLD_MILLIS * 4);
    const warnings = leakLines();
    expect(warnings).toHaveLength(1);
    const warning = warnings[0]!;
    expect(warning.level).toBe(40);
    expect(String(warning.acquiredAt)).toContain('holdTheConnectionForAWhile');
    expect(String(warning.acquiredAt)).toContain('leak-detection.test.ts');
    expect(Number(warning.heldMillis)).toBeGreaterThanOrEqual(THRESHOLD_MILLIS - 5);
    expect(db.getStats().leaksDetected).toBe(1);

    // The connection is returned and reused normally afterwards.
    expect(await db.executeQuery('SELECT 1 AS one')).toEqual([{ one: 1 }]);
    expect(db.getStats()).toMatchObject({ leaksDetected: 1, activeConnections: 0, errors: 0 });
    expect(guard.crashes).toEqual([]);
    printFigures('leak-detection', {
      thresholdMillis: THRESHOLD_MILLIS,
      heldMillis: THRESHOLD_MILLIS * 4,
      warnings: warnings.length,
      leaksDetected: db.getStats().leaksDetected,
      stackNamesCaller: String(warning.acquiredAt).includes('holdTheConnectionForAWhile'),
    });
  });
});
