/**
 * The library as the example service imports it. In your own service these lines are
 * `from '@codecheck/db'` and `from '@codecheck/db/fastify'`; the example imports the source so it
 * runs on a fresh clone (`npm ci && npm run demo`) without a build step.
 */
export * from '../../src/index.js';
export { codecheckDb, type CodecheckDbPluginOptions } from '../../src/integrations/fastify.js';
