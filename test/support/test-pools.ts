import { afterEach } from 'vitest';
import { Pool, type PoolConfig } from '../../src/index.js';
import { getTestDatabaseUrl } from './database-url.js';

/**
 * An opener of drop-in Pools on the test server (plaintext, silent), each ended after its test unless
 * the test ended it. Call it at the top of a test file.
 */
export function poolOpener(): (config?: PoolConfig) => Pool {
  const pools: Pool[] = [];
  afterEach(async () => {
    for (const pool of pools.splice(0)) if (!pool.ending) await pool.end();
  });
  return (config = {}) => {
    const pool = new Pool({ connectionString: getTestDatabaseUrl(), sslMode: 'disable', logLevel: 'silent', ...config });
    pools.push(pool);
    return pool;
  };
}
