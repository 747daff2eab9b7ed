import { clientPerOpVariant } from './client-per-op.js';
import { dropInPoolVariant } from './drop-in-pool.js';
import { libraryVariant } from './library.js';
import { pgPromiseVariant } from './pg-promise.js';
import { postgresJsVariant } from './postgres-js.js';
import { rawPipelineVariant } from './raw-pipeline.js';
import { rawAgainPoolVariant, rawNamedPoolVariant, rawPoolVariant } from './raw-pool.js';
import type { VariantSpec } from './types.js';

export type { Variant, VariantSpec } from './types.js';

/**
 * The variants of a default run, in table order. `raw` is the baseline every ratio refers to;
 * `raw-again`, a second identical pg.Pool, shows in every cell how far a ratio lands from 1.0× by chance.
 */
export const DEFAULT_VARIANTS = ['lib', 'pool', 'raw', 'raw-again', 'postgresjs', 'pgp', 'client'];

/**
 * Every known variant. Besides the defaults, diagnostic variants that run only when named:
 * `lib-noprep` (the library without automatic prepared statements), `lib-validate` (a `SELECT 1`
 * validation on every checkout instead of after 1 s idle), `lib-prefer` (sslmode=prefer
 * against this plaintext server: the TLS negotiation stream stays in the byte path), `raw-named`
 * (pg.Pool with a `name` on every parameterized statement: what prepared statements alone save),
 * and `raw-pipeline` (a write transaction in one round trip with pg's pipeline mode, not adopted).
 */
export const VARIANTS: Record<string, VariantSpec> = {
  lib: libraryVariant('lib', '@codecheck/db'),
  pool: dropInPoolVariant,
  raw: rawPoolVariant,
  postgresjs: postgresJsVariant,
  pgp: pgPromiseVariant,
  client: clientPerOpVariant,
  'lib-noprep': libraryVariant('lib-noprep', '@codecheck/db, no prepared stmts', { maxPreparedStatements: 0 }),
  'lib-validate': libraryVariant('lib-validate', '@codecheck/db, validate every checkout', { validationIntervalMillis: 0 }),
  'lib-prefer': libraryVariant('lib-prefer', '@codecheck/db, sslmode=prefer', { sslMode: 'prefer' }),
  'raw-named': rawNamedPoolVariant,
  'raw-pipeline': rawPipelineVariant,
  'raw-again': rawAgainPoolVariant,
};
