import type ts from 'typescript';
import type { SourceAnalysis } from './analysis.js';
import { isHandedOver, poolConstructions, poolName } from './pool-constructions.js';
import { holderOf, storedIn, type RuleFinding } from './rules.js';
import { SHARED_KEYS } from '../../pg-compat/pool-config.js';

/** pg.Pool options with no Database equivalent that tie the pool to pg: such a pool stays a pg.Pool. */
const PG_ONLY_OPTIONS = new Set(['Client', 'Promise', 'log', 'verify', 'onConnect', 'types', 'stream']);
/** pg.Pool options that Database takes under another name (values in milliseconds, as in pg). */
const RENAMED_OPTIONS = new Map([
  ['application_name', 'applicationName'],
  ['statement_timeout', 'statementTimeoutMillis'],
  ['idle_in_transaction_session_timeout', 'idleInTransactionTimeoutMillis'],
  ['lock_timeout', 'lockTimeoutMillis'],
]);
/** Why an option is not carried over, for those with a known reason. */
const DROPPED_BECAUSE = new Map([
  ['query_timeout', 'a client-side timer; statementTimeoutMillis has the server cancel the statement instead'],
  ['keepAlive', 'no Database option; the drop-in Pool keeps it'],
  ['keepAliveInitialDelayMillis', 'no Database option; the drop-in Pool keeps it'],
  ['allowExitOnIdle', "Database never holds the process open: its timers and idle sockets are unref'd"],
  ['maxUses', 'use maxLifetimeMillis to retire connections'],
  ['ssl', 'set sslMode, sslRootCert, sslCert and sslKey (file paths) instead: docs/security.md'],
]);

/**
 * Rule `pool-to-database`: a pg Pool this library can replace. The suggestion offers the one-line switch
 * to the drop-in `Pool` first (a pg.Pool subclass: the pool code stays as it is), then `new Database()`
 * with the options that mean something to it, naming each option it drops and why. Pools handed to
 * another library (`new PgStore({ pool })`, `drizzle(pool)`) or configured with pg-only hooks (`Client`,
 * `types`, `onConnect`, ...) must stay pg.Pools and are not reported.
 */
export function poolToDatabase(analysis: SourceAnalysis): RuleFinding[] {
  const t = analysis.ts;
  return poolConstructions(analysis).flatMap((node): RuleFinding[] => {
    const options = node.arguments?.[0] === undefined ? undefined : analysis.unwrap(node.arguments[0]);
    const hasPgOnlyOption =
      options !== undefined &&
      t.isObjectLiteralExpression(options) &&
      options.properties.some((property) => property.name !== undefined && PG_ONLY_OPTIONS.has(property.name.getText()));
    if (hasPgOnlyOption || isHandedOver(analysis, node)) return [];
    const stored = storedIn(analysis, node);
    const symbol = stored === undefined ? undefined : analysis.symbolOf(stored);
    if (
      symbol !== undefined &&
      analysis.references(symbol).some((reference) => isHandedOver(analysis, holderOf(analysis, reference)))
    ) {
      return [];
    }
    const name = poolName(analysis, node);
    const isModule = analysis.sourceFile.statements.some((statement) => t.isImportDeclaration(statement));
    const dropIn = isModule ? "import { Pool } from '@codecheck/db';" : "const { Pool } = require('@codecheck/db');";
    const database = isModule ? "import { Database } from '@codecheck/db';" : "const { Database } = require('@codecheck/db');";
    const isQualified = t.isPropertyAccessExpression(analysis.unwrap(node.expression));
    return [
      {
        rule: 'pool-to-database',
        node,
        message:
          'pg Pool can become the drop-in Pool of @codecheck/db (one import), or new Database(): configuration ' +
          'from the environment, validated checkouts, connections released on every path, stats and health checks',
        before: analysis.snippet(analysis.statementOf(node)),
        after: [
          `// 1. drop-in: replace the pg import; ${name} keeps the pg.Pool API`,
          dropIn,
          ...(isQualified ? [`// (then write new Pool(...) for new ${analysis.text(node.expression)}(...))`] : []),
          '// 2. or move to the Database API:',
          database,
          ...databaseConstruction(analysis, options),
          `// ${name}.query(text, params) -> db.executeQuery(text, params) (read-only by default; writes: { readOnly: false })`,
          `// ${name}.connect() ... release() -> db.withDb(readOnly, async (client) => ...)`,
        ].join('\n'),
      },
    ];
  });
}

/** `const db = new Database(...)` with the options Database understands, and a comment per dropped option. */
function databaseConstruction(analysis: SourceAnalysis, options: ts.Node | undefined): string[] {
  const t = analysis.ts;
  if (options === undefined) return ['const db = new Database(); // reads DATABASE_URL and DB_* from process.env'];
  if (!t.isObjectLiteralExpression(options)) {
    return [`const db = new Database(${analysis.text(options)}); // check its option names against docs/configuration.md`];
  }
  const kept: string[] = [];
  const dropped: string[] = [];
  for (const property of options.properties) {
    const key = property.name === undefined ? undefined : property.name.getText().replace(/^['"]|['"]$/g, '');
    if (t.isSpreadAssignment(property)) {
      dropped.push(`...${analysis.text(property.expression)} (spread: copy the options it holds that Database takes)`);
    } else if (key === undefined || !(t.isPropertyAssignment(property) || t.isShorthandPropertyAssignment(property))) {
      dropped.push(`${key ?? analysis.text(property)} (not a plain option)`);
    } else if (SHARED_KEYS.has(key)) {
      kept.push(analysis.text(property));
    } else if (RENAMED_OPTIONS.has(key)) {
      kept.push(`${RENAMED_OPTIONS.get(key)}: ${valueText(analysis, property)}`);
    } else if (key === 'maxLifetimeSeconds') {
      kept.push(`maxLifetimeMillis: ${seconds(analysis, property)}`);
    } else if (key === 'ssl' && sslMode(analysis, property) !== undefined) {
      kept.push(`sslMode: '${sslMode(analysis, property)}'`);
    } else {
      dropped.push(`${key} (${DROPPED_BECAUSE.get(key) ?? 'not a Database option'})`);
    }
  }
  const isFromEnvironment = kept.length === 1 && /^connectionString: process\.env\.DATABASE_URL$/.test(kept[0]!);
  const construction =
    kept.length === 0 || isFromEnvironment
      ? 'const db = new Database(); // reads DATABASE_URL and DB_* from process.env'
      : kept.join(', ').length <= 90
        ? `const db = new Database({ ${kept.join(', ')} }); // option names: docs/configuration.md`
        : ['const db = new Database({ // option names: docs/configuration.md', ...kept.map((line) => `  ${line},`), '});'].join(
            '\n',
          );
  return [...construction.split('\n'), ...dropped.map((reason) => `// dropped: ${reason}`)];
}

function valueText(analysis: SourceAnalysis, property: ts.PropertyAssignment | ts.ShorthandPropertyAssignment): string {
  return analysis.ts.isPropertyAssignment(property) ? analysis.text(property.initializer) : property.name.text;
}

function seconds(analysis: SourceAnalysis, property: ts.PropertyAssignment | ts.ShorthandPropertyAssignment): string {
  const value = valueText(analysis, property);
  return /^\d+$/.test(value) ? String(Number(value) * 1000) : `(${value}) * 1000`;
}

/** `ssl: false` → disable, `ssl: true` → verify-full, `ssl: { rejectUnauthorized: false }` → require. */
function sslMode(analysis: SourceAnalysis, property: ts.PropertyAssignment | ts.ShorthandPropertyAssignment): string | undefined {
  const t = analysis.ts;
  if (!t.isPropertyAssignment(property)) return undefined;
  const value = analysis.unwrap(property.initializer);
  if (value.kind === t.SyntaxKind.FalseKeyword) return 'disable';
  if (value.kind === t.SyntaxKind.TrueKeyword) return 'verify-full';
  if (!t.isObjectLiteralExpression(value) || value.properties.length !== 1) return undefined;
  const [only] = value.properties;
  return only !== undefined && t.isPropertyAssignment(only) && only.name.getText() === 'rejectUnauthorized'
    ? only.initializer.kind === t.SyntaxKind.FalseKeyword
      ? 'require'
      : 'verify-full'
    : undefined;
}
