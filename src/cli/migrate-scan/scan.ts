import { readFile } from 'node:fs/promises';
import type ts from 'typescript';
import { SourceAnalysis } from './analysis.js';
import { clientPerRequest } from './client-per-request.js';
import { loadTypeScript } from './load-typescript.js';
import { poolToDatabase } from './pool-to-database.js';
import { poolWithoutErrorListener } from './pool-without-error-listener.js';
import type { RuleFinding, RuleId } from './rules.js';
import { MigrateScanError } from './scan-error.js';
import { bundleReason, cannotRead, sourceFiles, type UnscannedFile } from './source-files.js';
import { sqlInterpolation } from './sql-interpolation.js';
import { transactionOnPool } from './transaction-on-pool.js';
import { unreleasedClient } from './unreleased-client.js';

export type { UnscannedFile } from './source-files.js';

/** One thing to migrate, at a 1-based line and column. */
export interface Finding {
  readonly file: string;
  readonly line: number;
  readonly column: number;
  readonly rule: RuleId;
  /** One line: what is wrong and why it matters. */
  readonly message: string;
  /** The code as written. */
  readonly before: string;
  /** The same code with @codecheck/db: complete code that parses (comments say what stays as it was). */
  readonly after: string;
}

/** What a run over paths found: the findings, and the files it could not scan or skipped on purpose. */
export interface ScanReport {
  readonly findings: Finding[];
  /** Files that could not be read or analysed (a syntax the parser gave up on, nesting too deep, ...). */
  readonly unscanned: UnscannedFile[];
  /** Files skipped as bundled or minified (scan them with `includeBundles`). */
  readonly skipped: UnscannedFile[];
  /** How many files were scanned, with or without findings. */
  readonly scannedFiles: number;
}

/** Options of {@link scanPaths}. */
export interface ScanOptions {
  /** Scan files that look bundled or minified too (default false). */
  readonly includeBundles?: boolean;
  /** Honour `.gitignore` files and skip `node_modules`, `dist`, `.git` inside directories (default true). */
  readonly useIgnoreRules?: boolean;
  /**
   * Files to resolve the `typescript` package from, in order (default: this package's location, then
   * the current directory's `package.json`); see `loadTypeScript`.
   */
  readonly typescriptFrom?: readonly string[];
}

const IGNORE_COMMENT = /(?:\/\/|\/\*)\s*migrate-scan-ignore-next-line\s+([a-z-]+(?:\s*,\s*[a-z-]+)*)/;
/**
 * Every rule needs one of these in the text: a pg entry point, or a call of `query`, `connect`,
 * `executeQuery` or a Knex `raw` method. A file with none is clean without being parsed.
 */
const MAY_HAVE_FINDINGS =
  /['"](?:pg|pg-pool|pg\/[^'"\n]*)['"]|\b(?:query|executeQuery|connect|raw|[a-z]+Raw)\s*(?:\?\.)?(?:<[^>()]*>)?\s*\(/;

/**
 * Scans one file's text and returns its findings in source order. Parses with the TypeScript compiler
 * (`.ts`/`.tsx`/`.mts`/`.cts` as TypeScript, anything else as JavaScript). A finding is dropped when
 * the line above it says `// migrate-scan-ignore-next-line <rule-id>[, <rule-id>]`.
 *
 * @param t the compiler to parse with (default: {@link loadTypeScript}'s).
 * @throws {MigrateScanError} code `TYPESCRIPT_MISSING` or `TYPESCRIPT_UNSUPPORTED` when the optional
 *   `typescript` peer dependency is absent or unusable; a `SyntaxError` naming the first syntax error
 *   (line:column and TypeScript's message) when the text does not parse, since suggestions built from a
 *   recovered tree would not parse either; a `RangeError` when the code nests deeper than the call
 *   stack allows (see {@link scanPaths}).
 */
export function scanSource(fileName: string, text: string, t: typeof ts = loadTypeScript()): Finding[] {
  if (!MAY_HAVE_FINDINGS.test(text)) return [];
  const analysis = new SourceAnalysis(fileName, text, t);
  const found: RuleFinding[] = [
    ...clientPerRequest(analysis),
    ...unreleasedClient(analysis),
    ...transactionOnPool(analysis),
    ...sqlInterpolation(analysis),
    ...poolToDatabase(analysis),
    ...poolWithoutErrorListener(analysis),
  ];
  const lines = text.split(/\r?\n/);
  return found
    .map(({ rule, node, message, before, after }): Finding => ({
      file: fileName,
      ...analysis.position(node),
      rule,
      message,
      before,
      after,
    }))
    .filter((finding) => !isIgnored(lines[finding.line - 2], finding.rule))
    .sort(compareFindings);
}

/**
 * Scans files and directories (see `sourceFiles` for what a directory stands for). Each file is scanned
 * on its own: one that cannot be read, parsed or analysed is listed in `unscanned` with the reason,
 * and the run goes on; bundled or minified files are listed in `skipped` unless `includeBundles`.
 * TypeScript is loaded first, so a missing or unusable one fails the run even when there is no file.
 *
 * @throws {MigrateScanError} code `TYPESCRIPT_MISSING` or `TYPESCRIPT_UNSUPPORTED` as {@link scanSource},
 *   `PATH_UNREADABLE` when a named path does not exist or cannot be read, `UNSUPPORTED_FILE` when a
 *   named file is not a JS/TS source.
 */
export async function scanPaths(paths: readonly string[], options: ScanOptions = {}): Promise<ScanReport> {
  const t = options.typescriptFrom === undefined ? loadTypeScript() : loadTypeScript(options.typescriptFrom);
  const { files, unreadable } = await sourceFiles(paths, { useIgnoreRules: options.useIgnoreRules ?? true });
  const findings: Finding[] = [];
  const unscanned: UnscannedFile[] = [...unreadable];
  const skipped: UnscannedFile[] = [];
  let scannedFiles = 0;
  for (const file of files) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      unscanned.push({ file, reason: cannotRead(file, error).reason });
      continue;
    }
    const bundle = options.includeBundles === true ? undefined : bundleReason(file, text);
    if (bundle !== undefined) {
      skipped.push({ file, reason: bundle });
      continue;
    }
    try {
      findings.push(...scanSource(file, text, t));
      scannedFiles += 1;
    } catch (error) {
      if (error instanceof MigrateScanError) throw error;
      unscanned.push({ file, reason: analysisFailure(error) });
    }
  }
  const byFile = (a: UnscannedFile, b: UnscannedFile): number => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0);
  return { findings: findings.sort(compareFindings), unscanned: unscanned.sort(byFile), skipped, scannedFiles };
}

/** A short reason for a file the analysis gave up on; the stack overflow of deeply nested code named as such. */
function analysisFailure(error: unknown): string {
  if (error instanceof RangeError && /call stack/i.test(error.message)) {
    return 'nested too deeply to analyse (the call stack ran out); if it is generated code, it needs no migration';
  }
  if (error instanceof SyntaxError) return error.message;
  return `analysis failed: ${error instanceof Error ? error.message : String(error)}`;
}

function isIgnored(lineAbove: string | undefined, rule: RuleId): boolean {
  const match = lineAbove === undefined ? null : IGNORE_COMMENT.exec(lineAbove);
  return match?.[1] !== undefined && match[1].split(',').some((listed) => listed.trim() === rule);
}

function compareFindings(a: Finding, b: Finding): number {
  if (a.file !== b.file) return a.file < b.file ? -1 : 1;
  return a.line - b.line || a.column - b.column || a.rule.localeCompare(b.rule);
}
