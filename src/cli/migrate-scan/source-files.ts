import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { IgnoreRules } from './ignore-rules.js';
import { MigrateScanError } from './scan-error.js';

const SOURCE_FILE = /\.(?:[cm]?[jt]s|[jt]sx)$/i;
const DECLARATION_FILE = /\.d\.[cm]?ts$/i;
/** Skipped inside directories unless `--no-ignore`: dependencies, build output, git's own files. */
const SKIPPED_DIRECTORIES = new Set(['node_modules', 'dist', '.git']);
const MINIFIED_NAME = /[.-](?:min|bundle)\.[cm]?js$/i;
/** Hand-written sources stay far below these; bundles and minified files pass them. */
const MAX_SOURCE_CHARS = 1024 * 1024;
const MAX_LINE_CHARS = 10_000;
const MAX_AVERAGE_LINE_CHARS = 250;
const MIN_CHARS_FOR_AVERAGE = 20_000;

/** A file found but not scanned, and why. */
export interface UnscannedFile {
  readonly file: string;
  readonly reason: string;
}

/** The files to scan, and the directories found inside the named ones that could not be read. */
export interface SourceList {
  readonly files: string[];
  readonly unreadable: UnscannedFile[];
}

/** How directories are walked. */
export interface WalkOptions {
  /** Read `.gitignore` files and skip `node_modules`, `dist` and `.git` (default true). */
  readonly useIgnoreRules?: boolean;
}

/**
 * The source files that named paths stand for, in a stable order: a named file as is; a directory's
 * `.js .mjs .cjs .jsx .ts .mts .cts .tsx` files recursively, without declaration files, symbolic
 * links, and (by default) what `.gitignore` files ignore and `node_modules`, `dist`, `.git`. A named
 * path is always scanned, even when ignored: the rules apply below it.
 *
 * @throws {MigrateScanError} code `PATH_UNREADABLE` when a named path does not exist or cannot be read,
 *   `UNSUPPORTED_FILE` when a named file is not a JS/TS source.
 */
export async function sourceFiles(paths: readonly string[], options: WalkOptions = {}): Promise<SourceList> {
  const useIgnoreRules = options.useIgnoreRules ?? true;
  const files: string[] = [];
  const unreadable: UnscannedFile[] = [];
  for (const path of paths) {
    let info;
    try {
      info = await stat(path);
    } catch (error) {
      throw cannotRead(path, error);
    }
    if (info.isFile()) {
      if (!SOURCE_FILE.test(path)) {
        throw new MigrateScanError(
          'UNSUPPORTED_FILE',
          `${path}: not a JavaScript or TypeScript source (.js .mjs .cjs .jsx .ts .mts .cts .tsx)`,
        );
      }
      files.push(path);
    } else if (info.isDirectory()) {
      const rules = useIgnoreRules ? await IgnoreRules.forAncestorsOf(path) : IgnoreRules.none();
      await readDirectory(path, rules, useIgnoreRules, { files, unreadable });
    } else {
      throw new MigrateScanError('UNSUPPORTED_FILE', `${path}: neither a file nor a directory`);
    }
  }
  return { files: [...new Set(files)], unreadable };
}

/** A named directory that cannot be read is a usage error; one found inside it is reported and skipped. */
async function readDirectory(directory: string, rules: IgnoreRules, useIgnoreRules: boolean, out: SourceList): Promise<void> {
  try {
    await walk(directory, rules, useIgnoreRules, out, true);
  } catch (error) {
    throw cannotRead(directory, error);
  }
}

async function walk(
  directory: string,
  inherited: IgnoreRules,
  useIgnoreRules: boolean,
  out: SourceList,
  isNamed = false,
): Promise<void> {
  const rules = useIgnoreRules ? await inherited.enter(directory) : inherited;
  let entries;
  try {
    entries = await readdir(directory, { withFileTypes: true });
  } catch (error) {
    if (isNamed) throw error;
    out.unreadable.push({ file: directory, reason: cannotRead(directory, error).reason });
    return;
  }
  const files = out.files;
  for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const child = join(directory, entry.name);
    if (entry.isDirectory()) {
      if (useIgnoreRules && (SKIPPED_DIRECTORIES.has(entry.name) || rules.isIgnored(child, true))) continue;
      await walk(child, rules, useIgnoreRules, out);
    } else if (entry.isFile() && SOURCE_FILE.test(entry.name) && !DECLARATION_FILE.test(entry.name)) {
      if (!rules.isIgnored(child, false)) files.push(child);
    }
  }
}

/**
 * Why a file looks generated (a bundle or minified output) rather than written by hand, or undefined:
 * its name (`.min.js`, `.bundle.js`), its size (over 1 MiB), a line over 10,000 characters, or lines of
 * 250 characters on average in a file of 20,000 characters or more.
 */
export function bundleReason(file: string, text: string): string | undefined {
  if (MINIFIED_NAME.test(file)) return 'minified or bundled (by its name)';
  if (text.length > MAX_SOURCE_CHARS) return `bundled or generated (${Math.round(text.length / 1024)} KiB, over 1024 KiB)`;
  let lines = 0;
  let start = 0;
  while (start <= text.length) {
    const end = text.indexOf('\n', start);
    const stop = end < 0 ? text.length : end;
    if (stop - start > MAX_LINE_CHARS) return `minified (a line of ${stop - start} characters)`;
    lines += 1;
    if (end < 0) break;
    start = end + 1;
  }
  const average = text.length / lines;
  return text.length >= MIN_CHARS_FOR_AVERAGE && average > MAX_AVERAGE_LINE_CHARS
    ? `minified (${Math.round(average)} characters per line on average)`
    : undefined;
}

/** The `PATH_UNREADABLE` error for a path, with the short reason it carries. */
export function cannotRead(path: string, cause: unknown): MigrateScanError & { reason: string } {
  const reason =
    (cause as NodeJS.ErrnoException).code === 'ENOENT'
      ? 'no such file or directory'
      : (cause as NodeJS.ErrnoException).code === 'EACCES'
        ? 'permission denied'
        : (cause as Error).message;
  return Object.assign(new MigrateScanError('PATH_UNREADABLE', `${path}: cannot read (${reason})`, { cause }), {
    reason: `cannot read (${reason})`,
  });
}
