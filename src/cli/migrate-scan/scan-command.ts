import { parseArgs } from 'node:util';
import { RULE_IDS } from './rules.js';
import { scanPaths, type ScanOptions, type ScanReport } from './scan.js';
import { MigrateScanError } from './scan-error.js';

/** Where `migrate-scan` writes: the CLI passes process.stdout/stderr writers, tests collect strings. */
export interface ScanIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
}

/** Exit codes of `migrate-scan` (docs/migration.md). */
export const SCAN_EXIT = {
  /** Every file scanned, nothing found. */
  clean: 0,
  /** Findings; every file scanned. */
  findings: 1,
  /** Nothing scanned: no paths, an unknown option, a named path unreadable, `typescript` missing or unusable (7.x). */
  usage: 2,
  /** Some files could not be scanned (listed on stderr); the others are clean. */
  unscannedClean: 3,
  /** Some files could not be scanned (listed on stderr); the others have findings. */
  unscannedFindings: 4,
} as const;

export const MIGRATE_SCAN_USAGE = `usage: codecheck-db migrate-scan [--json] [--include-bundles] [--no-ignore] <paths...>
  Scans .js .mjs .cjs .jsx .ts .mts .cts .tsx files for pg code to migrate to @codecheck/db. Directories are
  walked recursively, skipping what .gitignore files ignore and node_modules, dist, .git, declaration files.
  A path named on the command line is always scanned.
  --json             print { findings, unscanned, skipped, scannedFiles } as JSON
  --include-bundles  also scan files that look bundled or minified (over 1 MiB, or very long lines)
  --no-ignore        do not read .gitignore files, do not skip node_modules, dist, .git
Exit codes: 0 nothing found; 1 findings; 2 usage error (nothing scanned);
  3 some files could not be scanned, the rest clean; 4 some files could not be scanned, findings in the rest.
`;

/**
 * Renders a report: the findings grouped per file, each with its explanation and before/after
 * suggestion, followed by a count per rule and of the files scanned. (`--json` prints the report as is.)
 */
export function formatReport(report: ScanReport): string {
  const { findings } = report;
  const noun = (count: number, word: string): string => `${count} ${word}${count === 1 ? '' : 's'}`;
  const scanned = `${noun(report.scannedFiles, 'file')} scanned`;
  if (findings.length === 0) return `migrate-scan: no findings (${scanned})\n`;
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
  out.push(`${noun(findings.length, 'finding')} in ${noun(files.length, 'file')} (${counts.join(', ')}); ${scanned}`);
  return `${out.join('\n')}\n`;
}

/**
 * The `codecheck-db migrate-scan` subcommand; returns one of {@link SCAN_EXIT}. Files that could not be
 * scanned are listed on stderr (and in `--json`), with the reason, and the others are still scanned;
 * skipped bundles are counted on stderr. Never throws for usage errors; other errors propagate.
 *
 * @param setup where to resolve `typescript` from (the CLI leaves the default; see `ScanOptions`).
 */
export async function runMigrateScan(
  argv: readonly string[],
  io: ScanIo,
  setup: Pick<ScanOptions, 'typescriptFrom'> = {},
): Promise<number> {
  let values;
  let paths: string[];
  try {
    const parsed = parseArgs({
      args: [...argv],
      options: {
        json: { type: 'boolean', default: false },
        'include-bundles': { type: 'boolean', default: false },
        'no-ignore': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      allowPositionals: true,
    });
    values = parsed.values;
    paths = parsed.positionals;
  } catch (error) {
    io.stderr(`migrate-scan: ${(error as Error).message}\n${MIGRATE_SCAN_USAGE}`);
    return SCAN_EXIT.usage;
  }
  if (values.help) {
    io.stdout(MIGRATE_SCAN_USAGE);
    return SCAN_EXIT.clean;
  }
  if (paths.length === 0) {
    io.stderr(`migrate-scan: no paths given\n${MIGRATE_SCAN_USAGE}`);
    return SCAN_EXIT.usage;
  }
  let report: ScanReport;
  try {
    report = await scanPaths(paths, {
      ...setup,
      includeBundles: values['include-bundles'],
      useIgnoreRules: !values['no-ignore'],
    });
  } catch (error) {
    if (!(error instanceof MigrateScanError)) throw error;
    io.stderr(`migrate-scan: ${error.message}\n`);
    return SCAN_EXIT.usage;
  }
  io.stdout(values.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
  for (const { file, reason } of report.unscanned) io.stderr(`migrate-scan: could not scan ${file}: ${reason}\n`);
  if (report.skipped.length > 0 && !values.json) {
    const count = report.skipped.length;
    io.stderr(
      `migrate-scan: skipped ${count} bundled or minified file${count === 1 ? '' : 's'} (--include-bundles scans them)\n`,
    );
  }
  const hasFindings = report.findings.length > 0;
  if (report.unscanned.length > 0) return hasFindings ? SCAN_EXIT.unscannedFindings : SCAN_EXIT.unscannedClean;
  return hasFindings ? SCAN_EXIT.findings : SCAN_EXIT.clean;
}

function labelled(label: string, code: string): string[] {
  return code.split('\n').map((line, index) => `      ${index === 0 ? label : '      '}  ${line}`);
}
