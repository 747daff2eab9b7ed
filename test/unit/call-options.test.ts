import { describe, expect, it } from 'vitest';
import { checkOperations, checkQueryCall, checkWithDbCall, parseIsolationLevel } from '../../src/call-options.js';

const fn = async () => 'done';

describe('checkQueryCall', () => {
  it('defaults executeQuery to read-only, with no target, token, signal or timeout', () => {
    expect(checkQueryCall('SELECT 1', undefined, {})).toEqual({
      isReadOnly: true,
      target: undefined,
      afterWrite: undefined,
      signal: undefined,
      timeoutMillis: undefined,
      text: 'SELECT 1',
      params: undefined,
    });
  });

  it('parses afterWrite into the WAL position it names', () => {
    expect(checkQueryCall('SELECT 1', [], { afterWrite: '1/0' }).afterWrite).toBe(1n << 32n);
  });

  it.each([
    ['empty SQL text', () => checkQueryCall('  ', [], {}), 'executeQuery needs SQL text as its first argument'],
    ['params that are not an array', () => checkQueryCall('SELECT $1', 'x', {}), 'executeQuery params must be an array'],
    [
      'options that are not an object',
      () => checkQueryCall('SELECT 1', [], null as never),
      'executeQuery options must be an object',
    ],
    [
      'a negative timeout',
      () => checkQueryCall('SELECT 1', [], { timeoutMillis: -1 }),
      'timeoutMillis must be a number of milliseconds',
    ],
    [
      'a signal that is not an AbortSignal',
      () => checkQueryCall('SELECT 1', [], { signal: {} as never }),
      'signal must be an AbortSignal',
    ],
    [
      'an unknown target',
      () => checkQueryCall('SELECT 1', [], { target: 'standby' as never }),
      "target must be 'primary', 'replica' or 'any'",
    ],
    [
      'a write aimed at a replica',
      () => checkQueryCall('SELECT 1', [], { readOnly: false, target: 'replica' }),
      "target 'replica' needs readOnly: true",
    ],
    [
      'a malformed write token',
      () => checkQueryCall('SELECT 1', [], { afterWrite: 'yesterday' }),
      'afterWrite must be a token from getWriteToken()',
    ],
  ])('refuses %s with a TypeError that names it', (_what, check, message) => {
    expect(check).toThrow(TypeError);
    expect(check).toThrow(message);
  });
});

describe('checkWithDbCall', () => {
  it('takes a boolean as the short form of { readOnly }, read-write by default, no retries', () => {
    expect(checkWithDbCall(true, fn)).toMatchObject({ isReadOnly: true, retries: 0, isolationLevel: undefined, fn });
    expect(checkWithDbCall({}, fn)).toMatchObject({ isReadOnly: false, retries: 0 });
  });

  it('refuses a missing callback, retries outside 0..100 and an unknown isolation level', () => {
    expect(() => checkWithDbCall(true, undefined)).toThrow('withDb needs a callback');
    expect(() => checkWithDbCall({ retries: 101 }, fn)).toThrow('retries must be an integer from 0 to 100');
    expect(() => checkWithDbCall({ retries: 1.5 }, fn)).toThrow('retries must be an integer from 0 to 100');
    expect(() => checkWithDbCall({ isolationLevel: 'snapshot' as never }, fn)).toThrow('isolationLevel must be one of');
  });
});

describe('parseIsolationLevel', () => {
  it('accepts the three levels in any case, with underscores or spaces', () => {
    expect(['READ_COMMITTED', 'Repeatable Read', ' serializable '].map(parseIsolationLevel)).toEqual([
      'read committed',
      'repeatable read',
      'serializable',
    ]);
  });

  it('names the accepted levels and at most 40 characters of what it got', () => {
    expect(() => parseIsolationLevel('x'.repeat(100))).toThrow(
      /^isolationLevel must be one of read committed, repeatable read, serializable \(got "x{39}\)$/,
    );
  });
});

describe('checkOperations', () => {
  it('accepts operations with text and optional params', () => {
    const operations = [{ text: 'SELECT 1' }, { text: 'SELECT $1', params: [1] }];
    expect(checkOperations(operations)).toBe(operations);
  });

  it('refuses anything else with one sentence that shows the expected shape', () => {
    for (const operations of [undefined, {}, [{ text: 1 }], [{ text: 'SELECT $1', params: 1 }], [null]])
      expect(() => checkOperations(operations)).toThrow(
        'executeTransaction needs an array of { text: string, params?: unknown[] }',
      );
  });
});
