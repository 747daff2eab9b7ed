import { accessSync, constants, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';

/** A password file larger than this is not a password file (a wrong path, a certificate bundle). */
const MAX_BYTES = 64 * 1024;

/**
 * Checks at construction that the password file exists and can be read, so a wrong path is a
 * ConfigError at startup rather than a failure at the first connection. The contents are not kept:
 * the file is read again for every new connection.
 */
export function checkPasswordFile(path: string, name: string, problems: string[]): boolean {
  try {
    const stat = statSync(path);
    if (!stat.isFile()) {
      problems.push(`${name} (${path}) is not a file.`);
      return false;
    }
    accessSync(path, constants.R_OK);
    return true;
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    problems.push(`${name} (${path}) cannot be read${typeof code === 'string' ? ` (${code})` : ''}.`);
    return false;
  }
}

/**
 * Reads the password from `path`, as the `_FILE` convention of Docker and Kubernetes secrets has it:
 * the whole file, without its trailing line breaks (as the shell's `$(< file)` reads it).
 * @throws {PasswordFileError} when the file cannot be read, is empty, too large or not text; its
 * message names the problem, never the contents.
 */
export async function readPasswordFile(path: string, signal: AbortSignal): Promise<string> {
  let data: Buffer;
  try {
    data = await readFile(path, { signal });
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    throw new PasswordFileError(`the file could not be read (${typeof code === 'string' ? code : 'unreadable'})`, error);
  }
  if (data.length > MAX_BYTES) throw new PasswordFileError(`the file is larger than ${MAX_BYTES} bytes`);
  const password = data.toString('utf8').replace(/[\r\n]+$/, '');
  if (password === '') throw new PasswordFileError('the file is empty');
  if (password.includes('\0')) throw new PasswordFileError('the file is not text (it has a NUL character)');
  return password;
}

/** Why a password file gave no password; the message never quotes the file. */
export class PasswordFileError extends Error {
  constructor(message: string, cause?: unknown) {
    super(message, { cause });
    this.name = 'PasswordFileError';
  }
}
