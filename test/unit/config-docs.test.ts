import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { SETTINGS, type SettingSpec } from '../../src/index.js';
import { ROOT } from '../support/test-database.js';

interface DocRow {
  variable: string;
  option: string;
  defaultText: string;
  acceptedText: string;
}

/** The rows of the settings table in docs/configuration.md (the one headed `| Variable | Option | Default | ...`). */
function documentedSettings(): DocRow[] {
  const lines = readFileSync(join(ROOT, 'docs', 'configuration.md'), 'utf8').split('\n');
  const header = lines.findIndex((line) => /^\|\s*Variable\s*\|\s*Option\s*\|\s*Default\s*\|\s*Accepted\s*\|/.test(line));
  expect(header, 'the settings table header in docs/configuration.md').toBeGreaterThanOrEqual(0);
  const rows: DocRow[] = [];
  for (const line of lines.slice(header + 2)) {
    if (!line.startsWith('|')) break;
    const cells = line
      .split('|')
      .slice(1, -1)
      .map((cell) => cell.trim());
    rows.push({ variable: unquote(cells[0]!), option: unquote(cells[1]!), defaultText: cells[2]!, acceptedText: cells[3]! });
  }
  return rows;
}

function unquote(cell: string): string {
  return cell.replace(/^`|`$/g, '');
}

/** Backticked tokens in a cell, in order. */
function tokens(cell: string): string[] {
  return [...cell.matchAll(/`([^`]*)`/g)].map((match) => match[1]!);
}

/** `a–b` ranges in a cell, in order. */
function ranges(cell: string): Array<[number, number]> {
  return [...cell.matchAll(/([\d.]+)–([\d.]+)/g)].map((match) => [Number(match[1]), Number(match[2])]);
}

const withEnv = SETTINGS.filter((spec): spec is SettingSpec & { env: string } => spec.env !== undefined);

describe('docs/configuration.md', () => {
  const rows = documentedSettings();
  const byVariable = new Map(rows.map((row) => [row.variable, row]));

  it('lists every environment variable of SETTINGS once, in the same order, and nothing else', () => {
    expect(rows.map((row) => row.variable)).toEqual(withEnv.map((spec) => spec.env));
  });

  it.each(withEnv.map((spec) => [spec.env, spec] as const))('gives %s the option name and default of SETTINGS', (env, spec) => {
    const row = byVariable.get(env)!;
    expect(row, env).toBeDefined();
    expect(row.option).toBe(spec.option);
    const shown = tokens(row.defaultText);
    if (spec.default === undefined) {
      expect(row.defaultText).toBe('—');
    } else if (spec.kind === 'seconds') {
      // "`30` s (option: `30000` ms)": seconds for the variable, milliseconds for the option.
      expect(Number(shown[0]) * 1000).toBe(spec.default);
      expect(Number(shown[1])).toBe(spec.default);
    } else {
      expect(shown[0]).toBe(String(spec.default));
    }
  });

  it.each(withEnv.filter((spec) => spec.kind === 'integer' || spec.kind === 'seconds').map((spec) => [spec.env, spec] as const))(
    'gives %s the accepted range of SETTINGS',
    (env, spec) => {
      const found = ranges(byVariable.get(env)!.acceptedText);
      if (spec.kind === 'seconds') {
        expect(found[0]).toEqual([spec.min! / 1000, spec.max! / 1000]);
        expect(found[1]).toEqual([spec.min, spec.max]);
      } else {
        expect(found[0]).toEqual([spec.min, spec.max]);
      }
    },
  );
});

/** A setting's default as its environment variable spells it (DB_TIMEOUT in seconds), or '' when unset. */
function envDefault(spec: SettingSpec): string {
  if (spec.default === undefined) return '';
  return spec.kind === 'seconds' ? String(Number(spec.default) / 1000) : String(spec.default);
}

describe('docs/configuration.md units', () => {
  const rows = new Map(documentedSettings().map((row) => [row.variable, row]));

  it.each(withEnv.filter((spec) => spec.default !== undefined).map((spec) => [spec.env, spec] as const))(
    'shows the default of %s in ms when it is a duration, in seconds for DB_TIMEOUT, bare otherwise',
    (env, spec) => {
      const unit = /^`[^`]*`( s| ms)?/.exec(rows.get(env)!.defaultText)?.[1] ?? '';
      expect(unit).toBe(spec.kind === 'seconds' ? ' s' : spec.option.endsWith('Millis') ? ' ms' : '');
    },
  );
});

describe('.env.example', () => {
  const text = readFileSync(join(ROOT, '.env.example'), 'utf8');
  /** `VAR=value` lines, commented out or not. */
  const assignments = new Map(
    [...text.matchAll(/^#?\s*([A-Z][A-Z0-9_]*)=(.*)$/gm)].map((match) => [match[1]!, match[2]!.trim()] as const),
  );

  it('mentions DATABASE_URL', () => {
    expect(assignments.has('DATABASE_URL')).toBe(true);
  });

  it.each(withEnv.map((spec) => [spec.env, spec] as const))('mentions %s with its default', (env, spec) => {
    expect(assignments.has(env), `${env}=... in .env.example`).toBe(true);
    expect(assignments.get(env)).toBe(envDefault(spec));
  });
});

/** The members of `DatabaseOptions` in src/config.ts with their TSDoc summary and `@default` tag text. */
function optionDocs(): Map<string, { summary: string; defaultTag: string | undefined }> {
  const path = join(ROOT, 'src', 'config.ts');
  const file = ts.createSourceFile(path, readFileSync(path, 'utf8'), ts.ScriptTarget.Latest, true);
  const docs = new Map<string, { summary: string; defaultTag: string | undefined }>();
  file.forEachChild((node) => {
    if (!ts.isInterfaceDeclaration(node) || node.name.text !== 'DatabaseOptions') return;
    for (const member of node.members) {
      const jsDoc = ts.getJSDocCommentsAndTags(member).find(ts.isJSDoc);
      const tag = ts.getJSDocTags(member).find((candidate) => candidate.tagName.text === 'default');
      docs.set((member.name as ts.Identifier).text, {
        summary: ts.getTextOfJSDocComment(jsDoc?.comment) ?? '',
        defaultTag: tag ? ts.getTextOfJSDocComment(tag.comment) : undefined,
      });
    }
  });
  return docs;
}

/** How an option's TSDoc spells a default: the value in option units (or `unset`), then the variable. */
function tsDocDefault(spec: SettingSpec): string {
  const value =
    spec.default === undefined ? 'unset' : typeof spec.default === 'string' ? `'${spec.default}'` : String(spec.default);
  return spec.env === undefined ? value : `${value} (${spec.env})`;
}

describe('DatabaseOptions TSDoc (what an editor shows on hover)', () => {
  const docs = optionDocs();

  it('documents every option with a sentence', () => {
    const undocumented = [...docs].filter(([, doc]) => doc.summary.trim().length < 8).map(([name]) => name);
    expect(undocumented).toEqual([]);
  });

  it.each(SETTINGS.map((spec) => [spec.option, spec] as const))(
    'gives %s a @default tag with the default of SETTINGS and its variable',
    (option, spec) => {
      const tag = docs.get(option)?.defaultTag;
      // A default the table leaves unset may be worked out from other settings (targetSessionAttrs):
      // the tag then says how, and still names the variable.
      if (spec.default === undefined && tag !== 'unset' && spec.env !== undefined)
        expect(tag, option).toMatch(new RegExp(`\\(${spec.env}\\)$`));
      else expect(tag, option).toBe(tsDocDefault(spec));
    },
  );
});

describe('docs/errors.md', () => {
  // The codes come from the source text of the DbErrorCode union: a type has no runtime value to import.
  const union = /export type DbErrorCode\s*=([^;]*);/.exec(readFileSync(join(ROOT, 'src', 'errors.ts'), 'utf8'))?.[1] ?? '';
  const codes = [...union.matchAll(/'([A-Z_]+)'/g)].map((match) => match[1]!);
  const doc = readFileSync(join(ROOT, 'docs', 'errors.md'), 'utf8');

  it('finds the DbErrorCode union in src/errors.ts', () => {
    expect(codes.length).toBeGreaterThan(0);
  });

  it.each(codes)('documents %s in the codes table and in a section of its own', (errorCode) => {
    expect(doc).toMatch(new RegExp(`^\\| \`${errorCode}\` \\|`, 'm'));
    expect(doc).toMatch(new RegExp(`^###.*\`${errorCode}\``, 'm'));
  });

  it('documents no code that DbErrorCode lacks', () => {
    const documented = [...doc.matchAll(/^\| `([A-Z_]+)` \|/gm)].map((match) => match[1]!);
    expect(documented.filter((errorCode) => !codes.includes(errorCode))).toEqual([]);
  });
});
