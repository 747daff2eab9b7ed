#!/usr/bin/env node
/**
 * Runs the reliability scenarios (test/integration/reliability, issue 4) against real PostgreSQL
 * servers and prints the one-line figures each scenario reports, then the test summary.
 *
 *   npm run reliability                  # every scenario
 *   npm run reliability -- soak restart  # only the files whose names contain these words
 *   npm run reliability -- --testNamePattern=fast  # options (with =) go to vitest
 *
 * Exits with vitest's exit code, so a failed scenario fails the script.
 */
/* global process, console */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

const PREFIX = '[reliability]';
const DIR = 'test/integration/reliability';
const given = process.argv.slice(2);
const filters = given.filter((arg) => !arg.startsWith('-')).map((word) => `${DIR}/${word}`);
const args = ['vitest', 'run', ...(filters.length > 0 ? filters : [DIR]), ...given.filter((arg) => arg.startsWith('-'))];
const child = spawn('npx', args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });

const figures = [];
const summary = [];
const failures = [];
const lines = createInterface({ input: child.stdout });
// eslint-disable-next-line no-control-regex
const stripColors = (text) => text.replace(/\x1b\[[0-9;]*m/g, '');
lines.on('line', (raw) => {
  const line = stripColors(raw);
  const at = line.indexOf(PREFIX);
  if (at !== -1) {
    figures.push(line.slice(at));
    console.log(line.slice(at));
  } else if (/^\s*(Test Files|Tests|Duration)\s/.test(line)) {
    summary.push(line.trim());
  } else if (/^\s*(FAIL|×)\s/.test(line)) {
    failures.push(line.trim());
  }
});
const errors = [];
createInterface({ input: child.stderr }).on('line', (line) => errors.push(line));

child.on('close', (code) => {
  if (failures.length > 0) console.log(`\nFailed:\n${[...new Set(failures)].join('\n')}`);
  if (summary.length > 0) console.log(`\n${summary.join('\n')}`);
  if (code !== 0 && figures.length === 0) console.error(errors.slice(-40).join('\n'));
  process.exitCode = code ?? 1;
});
