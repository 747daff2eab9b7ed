import { readFile } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { existsSync } from 'node:fs';

/** One line of a `.gitignore`, compiled. */
interface IgnorePattern {
  readonly base: string;
  readonly regex: RegExp;
  readonly isNegated: boolean;
  readonly isDirectoryOnly: boolean;
}

/**
 * The `.gitignore` patterns in force for a directory: its own file's and its ancestors'. Supports what
 * git does for paths (`#` comments, `!` negation, a leading or inner `/` anchoring to the file's
 * directory, a trailing `/` for directories, `*`, `?`, `[...]` and `**`); the last matching line wins.
 */
export class IgnoreRules {
  readonly #patterns: readonly IgnorePattern[];

  private constructor(patterns: readonly IgnorePattern[]) {
    this.#patterns = patterns;
  }

  /** No patterns at all: `--no-ignore`. */
  static none(): IgnoreRules {
    return new IgnoreRules([]);
  }

  /**
   * The rules of the `.gitignore` files in `directory`'s ancestors up to the repository root (the
   * nearest directory holding `.git`); none when `directory` is not inside a git work tree.
   */
  static async forAncestorsOf(directory: string): Promise<IgnoreRules> {
    const chain: string[] = [];
    for (let current = dirname(directory); ; current = dirname(current)) {
      chain.unshift(current);
      if (existsSync(join(current, '.git'))) break;
      if (dirname(current) === current) return IgnoreRules.none();
    }
    let rules = IgnoreRules.none();
    for (const ancestor of chain) rules = await rules.enter(ancestor);
    return rules;
  }

  /** These rules plus those of `directory/.gitignore`, if it exists and can be read. */
  async enter(directory: string): Promise<IgnoreRules> {
    let text: string;
    try {
      text = await readFile(join(directory, '.gitignore'), 'utf8');
    } catch {
      return this;
    }
    const added = text.split(/\r?\n/).flatMap((line) => compile(directory, line) ?? []);
    return added.length === 0 ? this : new IgnoreRules([...this.#patterns, ...added]);
  }

  /** Whether a path (file or directory) is ignored. */
  isIgnored(path: string, isDirectory: boolean): boolean {
    let ignored = false;
    for (const pattern of this.#patterns) {
      if (pattern.isDirectoryOnly && !isDirectory) continue;
      const relativePath = relative(pattern.base, path).split(sep).join('/');
      if (relativePath.startsWith('..') || relativePath === '') continue;
      if (pattern.regex.test(relativePath)) ignored = !pattern.isNegated;
    }
    return ignored;
  }
}

function compile(base: string, line: string): IgnorePattern | undefined {
  let pattern = line.replace(/(?<!\\)\s+$/, '');
  if (pattern === '' || pattern.startsWith('#')) return undefined;
  const isNegated = pattern.startsWith('!');
  if (isNegated) pattern = pattern.slice(1);
  if (pattern.startsWith('\\#') || pattern.startsWith('\\!')) pattern = pattern.slice(1);
  const isDirectoryOnly = pattern.endsWith('/');
  if (isDirectoryOnly) pattern = pattern.slice(0, -1);
  const isAnchored = pattern.includes('/');
  if (pattern.startsWith('/')) pattern = pattern.slice(1);
  if (pattern === '') return undefined;
  const body = globToRegex(pattern);
  return { base, regex: new RegExp(isAnchored ? `^${body}$` : `^(?:.*/)?${body}$`), isNegated, isDirectoryOnly };
}

function globToRegex(glob: string): string {
  let out = '';
  for (let index = 0; index < glob.length; index += 1) {
    const char = glob[index]!;
    if (glob.startsWith('**/', index)) {
      out += '(?:.*/)?';
      index += 2;
    } else if (glob.startsWith('/**', index) && index + 3 === glob.length) {
      out += '/.*';
      index += 2;
    } else if (char === '*') {
      out += '[^/]*';
    } else if (char === '?') {
      out += '[^/]';
    } else if (char === '[') {
      const close = glob.indexOf(']', index + 2);
      if (close < 0) out += '\\[';
      else {
        out += `[${glob
          .slice(index + 1, close)
          .replace(/^!/, '^')
          .replace(/\\/g, '\\\\')}]`;
        index = close;
      }
    } else if (char === '\\' && index + 1 < glob.length) {
      out += escapeRegex(glob[index + 1]!);
      index += 1;
    } else {
      out += escapeRegex(char);
    }
  }
  return out;
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}
