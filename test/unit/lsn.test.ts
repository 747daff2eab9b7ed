import { describe, expect, it } from 'vitest';
import { parseLsn } from '../../src/replicas/router.js';

describe('parseLsn', () => {
  it('reads a pg_lsn text as the 64-bit position it names', () => {
    expect([parseLsn('0/0'), parseLsn('0/16B3748'), parseLsn('16/B374D848')]).toEqual([
      0n,
      0x16b3748n,
      (0x16n << 32n) + 0xb374d848n,
    ]);
  });

  it('orders positions across the 32-bit boundary as the server does', () => {
    expect(parseLsn('1/0')! > parseLsn('0/FFFFFFFF')!).toBe(true);
  });

  it('accepts lower-case hex and surrounding white space', () => {
    expect(parseLsn(' 1a/ff ')).toBe((0x1an << 32n) + 0xffn);
  });

  it('gives undefined for anything that is not a pg_lsn text', () => {
    expect(
      ['', '16B3748', '0/', '/1', '0/1/2', 'g/1', '123456789/1', '0x1/2'].map(parseLsn).concat([parseLsn(42), parseLsn(null)]),
    ).toEqual(Array(10).fill(undefined));
  });
});
