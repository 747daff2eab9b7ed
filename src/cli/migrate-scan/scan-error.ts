/** Stable codes of {@link MigrateScanError}. */
export type MigrateScanErrorCode = 'TYPESCRIPT_MISSING' | 'TYPESCRIPT_UNSUPPORTED' | 'PATH_UNREADABLE' | 'UNSUPPORTED_FILE';

/**
 * Why `migrate-scan` could not scan at all (as opposed to what it found): the optional `typescript`
 * peer dependency is missing or has no usable compiler API (TypeScript 7), or a path the caller named cannot be read or is not a JS/TS source.
 * The CLI reports it on stderr and exits with 2.
 */
export class MigrateScanError extends Error {
  override readonly name = 'MigrateScanError';
  readonly code: MigrateScanErrorCode;

  constructor(code: MigrateScanErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}
