import { afterEach, beforeEach, expect } from 'vitest';

/**
 * Fails each test of the file during which the process saw an uncaught exception or an unhandled
 * rejection: what would have crashed a service. Call it at the top of a test file, before the file's
 * own hooks, so its check runs after their cleanup (vitest runs after-hooks in reverse order).
 */
export function failOnCrashes(): void {
  const crashes: unknown[] = [];
  const onCrash = (error: unknown) => crashes.push(error);
  beforeEach(() => {
    crashes.length = 0;
    process.on('uncaughtException', onCrash);
    process.on('unhandledRejection', onCrash);
  });
  afterEach(() => {
    process.off('uncaughtException', onCrash);
    process.off('unhandledRejection', onCrash);
    expect(crashes).toEqual([]);
  });
}
