import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { SourceAnalysis } from './analysis.js';
import { clientPerRequest, unreleasedClient } from './rules-client.js';
import { poolToDatabase, poolWithoutErrorListener, transactionOnPool } from './rules-pool.js';
import { sqlInterpolation } from './rules-sql.js';
import { RULE_IDS, type RuleFinding, type RuleId } from './rules.js';
import { MigrateScanError } from './scan-error.js';

export { RULE_IDS, type RuleId } from './rules.js';
export { MigrateScanError, type MigrateScanErrorCode } from './scan-error.js';

/** One thing to migrate, at a 1-based line and column (the `--json` output is an array of these). */
export interface Finding {
  readonly file: string;
  readonly line: number;
  readonly column: number;
  readonly rule: RuleId;
  /** One line: what is wrong and why it matters. */
  readonly message: string;
  /** The code as written. */
  readonly before: string;
  /** The same code with @codecheck/db. */
  readonly after: string;
}

/** Where `migrate-scan` writes: the CLI passes process.stdout/stderr writers, tests collect strings. */
export interface ScanIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
}

const SOURCE_FILE = /\.(?:[cm]?[jt]s|[jt]sx)$/i;
const DECLARATION_FILE = /\.d\.[cm]?ts$/i;
const SKIPPED_DIRECTORIES = new Set(['node_modules', 'dist', '.git']);
const IGNORE_COMMENT = /(?:\/\/|\/\*)\s*migrate-scan-ignore-next-line\s+([a-z-]+(?:\s*,\s*[a-z-]+)*)/;
const USAGE =
  'usage: codecheck-db migrate-scan [--json] <paths...>\n' +
  '  Scans .js .mjs .cjs .jsx .ts .mts .cts .tsx files (directories recursively, skipping node_modules, dist, .git)\n' +
  '  for pg code to migrate to @codecheck/db. Exit 0: nothing found; 1: findings; 2: usage error.\n';

/**
 * Scans one file's text and returns its findings in source order. Parses with the TypeScript compiler
 * (`.ts`/`.tsx`/`.mts`/`.cts` as TypeScript, anything else as JavaScript); a syntax error does not
 * throw, the parser recovers and the rules see what it could read. A finding is dropped when the line
 * above it says `// migrate-scan-ignore-next-line <rule-id>[, <rule-id>]`.
 *
 * @throws {MigrateScanError} code `TYPESCRIPT_MISSING` when the optional `typescript` peer dependency is absent.
 */
export function scanSource(fileName: string, text: string): Finding[] {
  const analysis = new SourceAnalysis(fileName, text);
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
 * Scans files and directories (recursively; `node_modules`, `dist` and `.git` skipped, symbolic links
 * inside directories not followed) and returns every finding, ordered by file, line and column.
 *
 * @throws {MigrateScanError} code `PATH_UNREADABLE` when a named path does not exist or cannot be read,
 *   `UNSUPPORTED_FILE` when a named file is not a JS/TS source, `TYPESCRIPT_MISSING` as {@link scanSource}.
 */
export async function scanPaths(paths: readonly string[]): Promise<Finding[]> {
  const files: string[] = [];
  for (const path of paths) files.push(...(await sourcesUnder(path)));
  const findings: Finding[] = [];
  for (const file of [...new Set(files)]) findings.push(...scanSource(file, await readSource(file)));
  return findings.sort(compareFindings);
}

/**
 * Renders findings: `--json` gives a JSON array of {@link Finding}; otherwise findings are grouped per
 * file, each with its explanation and before/after suggestion, followed by a count per rule.
 */
export function formatFindings(findings: readonly Finding[], options: { json: boolean }): string {
  if (options.json) return `${JSON.stringify(findings, null, 2)}\n`;
  if (findings.length === 0) return 'migrate-scan: no findings\n';
  const out: string[] = [];
  const files = [...new Set(findings.map((finding) => finding.file))];
  for (const file of files) {
    out.push(file);
    for (const finding of findings.filter((candidate) => candidate.file === file)) {
      out.push(`  ${finding.line}:${finding.column}  ${finding.rule}  ${finding.message}`);
      out.push(...labelled('before', finding.before), ...labelled('after ', finding.after), '');
    }
  }
  const counts = RULE_IDS.map((rule) => [rule, findings.filter((finding) => finding.rule === rule).length] as const)
    .filter(([, count]) => count > 0)
    .map(([rule, count]) => `${rule}: ${count}`);
  const noun = (count: number, word: string): string => `${count} ${word}${count === 1 ? '' : 's'}`;
  out.push(`${noun(findings.length, 'finding')} in ${noun(files.length, 'file')} (${counts.join(', ')})`);
  return `${out.join('\n')}\n`;
}

/**
 * The `codecheck-db migrate-scan [--json] <paths...>` subcommand; returns the exit code: 0 nothing
 * found, 1 findings, 2 usage error (no paths, unknown option, unreadable path, typescript missing),
 * with the reason on stderr. Never throws for those; other errors propagate.
 */
export async function runMigrateScan(argv: readonly string[], io: ScanIo): Promise<number> {
  let json: boolean;
  let paths: string[];
  try {
    const { values, positionals } = parseArgs({
      args: [...argv],
      options: { json: { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h', default: false } },
      allowPositionals: true,
    });
    if (values.help) {
      io.stdout(USAGE);
      return 0;
    }
    json = values.json;
    paths = positionals;
  } catch (error) {
    io.stderr(`migrate-scan: ${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  if (paths.length === 0) {
    io.stderr(`migrate-scan: no paths given\n${USAGE}`);
    return 2;
  }
  let findings: Finding[];
  try {
    findings = await scanPaths(paths);
  } catch (error) {
    if (!(error instanceof MigrateScanError)) throw error;
    io.stderr(`migrate-scan: ${error.message}\n`);
    return 2;
  }
  io.stdout(formatFindings(findings, { json }));
  return findings.length > 0 ? 1 : 0;
}

/** The source files a named path stands for, in a stable order. */
async function sourcesUnder(path: string): Promise<string[]> {
  let info;
  try {
    info = await stat(path);
  } catch (error) {
    throw unreadable(path, error);
  }
  if (info.isFile()) {
    if (!SOURCE_FILE.test(path)) {
      throw new MigrateScanError(
        'UNSUPPORTED_FILE',
        `${path}: not a JavaScript or TypeScript source (.js .mjs .cjs .jsx .ts .mts .cts .tsx)`,
      );
    }
    return [path];
  }
  if (!info.isDirectory()) throw new MigrateScanError('UNSUPPORTED_FILE', `${path}: neither a file nor a directory`);
  let entries;
  try {
    entries = await readdir(path, { withFileTypes: true });
  } catch (error) {
    throw unreadable(path, error);
  }
  const files: string[] = [];
  for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const child = join(path, entry.name);
    if (entry.isDirectory() && !SKIPPED_DIRECTORIES.has(entry.name)) files.push(...(await sourcesUnder(child)));
    else if (entry.isFile() && SOURCE_FILE.test(entry.name) && !DECLARATION_FILE.test(entry.name)) files.push(child);
  }
  return files;
}

async function readSource(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    throw unreadable(file, error);
  }
}

function unreadable(path: string, cause: unknown): MigrateScanError {
  const reason =
    (cause as NodeJS.ErrnoException).code === 'ENOENT'
      ? 'no such file or directory'
      : (cause as NodeJS.ErrnoException).code === 'EACCES'
        ? 'permission denied'
        : (cause as Error).message;
  return new MigrateScanError('PATH_UNREADABLE', `${path}: cannot read (${reason})`, { cause });
}

function isIgnored(lineAbove: string | undefined, rule: RuleId): boolean {
  const match = lineAbove === undefined ? null : IGNORE_COMMENT.exec(lineAbove);
  return match?.[1] !== undefined && match[1].split(',').some((listed) => listed.trim() === rule);
}

function labelled(label: string, code: string): string[] {
  return code.split('\n').map((line, index) => `      ${index === 0 ? label : '      '}  ${line}`);
}

function compareFindings(a: Finding, b: Finding): number {
  if (a.file !== b.file) return a.file < b.file ? -1 : 1;
  return a.line - b.line || a.column - b.column || a.rule.localeCompare(b.rule);
}
