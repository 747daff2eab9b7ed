import { describe, expect, it } from 'vitest';
import { isConnectionFailure, sqlStateOf } from '../../src/errors.js';

/** A socket error as Node raises it on a write to a connection the server closed. */
function socketError(code: string): Error {
  return Object.assign(new Error(`write ${code}`), { code, errno: -32, syscall: 'write' });
}

describe('sqlStateOf and isConnectionFailure', () => {
  it('reads a five-character socket error code (EPIPE, EBADF) as no SQLSTATE, and the error as a lost connection', () => {
    for (const code of ['EPIPE', 'EBADF']) {
      expect(sqlStateOf(socketError(code))).toBeUndefined();
      expect(isConnectionFailure(socketError(code))).toBe(true);
    }
  });

  it("reads a server error's SQLSTATE, and only a FATAL 57P01 or class 08 as a lost connection", () => {
    const server = (code: string, severity: string) => Object.assign(new Error('from the server'), { code, severity });
    expect(sqlStateOf(server('23505', 'ERROR'))).toBe('23505');
    expect(isConnectionFailure(server('23505', 'ERROR'))).toBe(false);
    expect(isConnectionFailure(server('57P01', 'FATAL'))).toBe(true);
    expect(isConnectionFailure(server('08006', 'FATAL'))).toBe(true);
  });
});
