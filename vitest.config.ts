import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Files run in parallel, but this machine has 2 cores and each integration file may run servers.
    fileParallelism: true,
    maxWorkers: 2,
  },
});
