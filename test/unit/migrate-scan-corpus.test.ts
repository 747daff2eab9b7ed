import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { RULE_IDS, type RuleId } from '../../src/cli/migrate-scan/rules.js';
import { scanPaths, scanSource, type Finding } from '../../src/cli/migrate-scan/scan.js';
import { syntaxErrors } from '../support/suggestion-syntax.js';

const corpus = fileURLToPath(new URL('../fixtures/migrate-scan/corpus/', import.meta.url));
const fixtures = fileURLToPath(new URL('../fixtures/migrate-scan/', import.meta.url));
const docs = fileURLToPath(new URL('../../docs/migration.md', import.meta.url));
const EXPECT = /\/\/ expect: ([a-z-]+(?:, [a-z-]+)*)\s*$/;

interface Tally {
  truePositives: number;
  falsePositives: string[];
  falseNegatives: string[];
}

/** Scans every corpus file and compares each finding with the `// expect:` marks, rule by rule. */
function tallyCorpus(): Map<RuleId, Tally> {
  const tally = new Map<RuleId, Tally>(
    RULE_IDS.map((rule) => [rule, { truePositives: 0, falsePositives: [], falseNegatives: [] }]),
  );
  for (const name of readdirSync(corpus).filter((file) => /\.[cm]?[jt]s$/.test(file))) {
    const text = readFileSync(join(corpus, name), 'utf8');
    const expected = new Set<string>();
    text.split('\n').forEach((line, index) => {
      const rules = EXPECT.exec(line)?.[1]?.split(', ') ?? [];
      for (const rule of rules) expected.add(`${rule} ${name}:${index + 1}`);
    });
    const found = new Set(scanSource(name, text).map((finding) => `${finding.rule} ${name}:${finding.line}`));
    for (const key of new Set([...expected, ...found])) {
      const rule = key.split(' ')[0] as RuleId;
      const entry = tally.get(rule)!;
      if (expected.has(key) && found.has(key)) entry.truePositives += 1;
      else if (found.has(key)) entry.falsePositives.push(key);
      else entry.falseNegatives.push(key);
    }
  }
  return tally;
}

function percent(part: number, whole: number): string {
  return whole === 0 ? 'n/a' : `${Math.round((part / whole) * 1000) / 10}%`;
}

/** The markdown table docs/migration.md keeps. */
function table(tally: Map<RuleId, Tally>): string {
  const rows = [...tally].map(([rule, entry]) => {
    const found = entry.truePositives + entry.falsePositives.length;
    const real = entry.truePositives + entry.falseNegatives.length;
    return `| \`${rule}\` | ${real} | ${found} | ${entry.truePositives} | ${percent(entry.truePositives, found)} | ${percent(entry.truePositives, real)} |`;
  });
  return ['| rule | expected | reported | correct | precision | recall |', '|---|---|---|---|---|---|', ...rows].join('\n');
}

describe('migrate-scan over the corpus', () => {
  it('reaches 90% precision and recall for unreleased-client and sql-interpolation, and prints the table per rule', () => {
    const tally = tallyCorpus();
    const printed = table(tally);
    console.log(`migrate-scan precision and recall over test/fixtures/migrate-scan/corpus:\n${printed}`);
    for (const [rule, entry] of tally) {
      for (const miss of entry.falseNegatives) console.log(`  missed      ${miss}`);
      for (const noise of entry.falsePositives) console.log(`  not expected ${noise}`);
      if (rule === 'unreleased-client' || rule === 'sql-interpolation') {
        const found = entry.truePositives + entry.falsePositives.length;
        const real = entry.truePositives + entry.falseNegatives.length;
        expect(real).toBeGreaterThanOrEqual(10);
        expect(entry.truePositives / found).toBeGreaterThanOrEqual(0.9);
        expect(entry.truePositives / real).toBeGreaterThanOrEqual(0.9);
      }
    }
    expect(readFileSync(docs, 'utf8')).toContain(printed);
  });

  it('gives suggestions that parse, are complete, and keep the values already passed', async () => {
    const findings: Finding[] = (await scanPaths([fixtures])).findings;
    expect(findings.length).toBeGreaterThan(60);
    for (const finding of findings) {
      const where = `${finding.file}:${finding.line} ${finding.rule}\n${finding.after}`;
      expect(syntaxErrors(finding.after), where).toEqual([]);
      expect(finding.after, where).not.toContain('…');
    }
  });
});
