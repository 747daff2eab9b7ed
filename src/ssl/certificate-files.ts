import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { closeSync, constants, fstatSync, openSync, readFileSync, type Stats } from 'node:fs';

/** One raw setting and where it came from (`DB_SSLROOTCERT`, `DATABASE_URL sslrootcert`, ...). */
export interface NamedValue {
  readonly value: string;
  readonly name: string;
}

/** The largest certificate or key file we read; AWS's global RDS bundle is about 170 kB. */
const MAX_FILE_BYTES = 4 * 1024 * 1024;
const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;
const OPEN_ERRORS: Record<string, string> = {
  ENOENT: 'it does not exist',
  ENOTDIR: 'a part of the path is not a directory',
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  ENAMETOOLONG: 'the path is too long',
  ELOOP: 'too many symbolic links',
};

/**
 * How a path is shown in a problem sentence. Never the file's content; and a value that looks like
 * pasted PEM (a private key, say) is not quoted at all, not even its first characters.
 */
function showPath(path: string): string {
  const shown = path.length > 120 ? `${path.slice(0, 120)}...` : path;
  return JSON.stringify(shown);
}

/**
 * Opens, checks and reads one small regular file. O_NONBLOCK keeps a FIFO or a device given as the
 * path from blocking the process; fstat on the open descriptor then refuses anything but a regular
 * file, so /dev/zero or a named pipe is a problem, not a hang.
 */
function readSmallFile(source: NamedValue, what: string, problems: string[]): { text: string; stats: Stats } | undefined {
  const { value, name } = source;
  if (value === '') return void problems.push(`${name} is empty; expected the path of ${what}.`);
  if (value.includes('\0')) return void problems.push(`${name} contains a NUL character; expected the path of ${what}.`);
  if (/-----BEGIN|[\r\n]/.test(value)) {
    return void problems.push(
      `${name} looks like PEM content, not a file path; write it to a file and give the path of ${what}.`,
    );
  }
  let fd: number;
  try {
    fd = openSync(value, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'unknown error';
    return void problems.push(
      `${name} names the file ${showPath(value)}, which cannot be opened (${OPEN_ERRORS[code] ?? code}).`,
    );
  }
  try {
    const stats = fstatSync(fd);
    if (!stats.isFile())
      return void problems.push(`${name} names ${showPath(value)}, which is not a regular file; expected ${what}.`);
    if (stats.size > MAX_FILE_BYTES) {
      return void problems.push(
        `${name} names the file ${showPath(value)}, which is larger than ${MAX_FILE_BYTES / 1024 / 1024} MB; expected ${what}.`,
      );
    }
    const text = readFileSync(fd, 'utf8');
    if (text.length > MAX_FILE_BYTES) {
      return void problems.push(
        `${name} names the file ${showPath(value)}, which is larger than ${MAX_FILE_BYTES / 1024 / 1024} MB; expected ${what}.`,
      );
    }
    return { text, stats };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'unknown error';
    return void problems.push(`${name} names the file ${showPath(value)}, which cannot be read (${OPEN_ERRORS[code] ?? code}).`);
  } finally {
    closeSync(fd);
  }
}

/** Parses every PEM certificate in `text`; pushes a problem (never quoting the text) when there is none or one is broken. */
function parseCertificates(text: string, source: NamedValue, problems: string[]): X509Certificate[] | undefined {
  const blocks = text.match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0) {
    return void problems.push(
      `${source.name} names the file ${showPath(source.value)}, which contains no PEM certificate (-----BEGIN CERTIFICATE-----).`,
    );
  }
  const certificates: X509Certificate[] = [];
  for (const [index, block] of blocks.entries()) {
    try {
      certificates.push(new X509Certificate(block));
    } catch {
      return void problems.push(
        `${source.name} names the file ${showPath(source.value)}, whose certificate number ${index + 1} cannot be parsed.`,
      );
    }
  }
  return certificates;
}

/** Reads a root certificate file (one or more PEM certificates: a CA or a bundle such as AWS RDS's). */
export function readRootCertificates(source: NamedValue, problems: string[]): string | undefined {
  const file = readSmallFile(source, 'a PEM file of trusted root certificates', problems);
  if (!file) return undefined;
  return parseCertificates(file.text, source, problems) ? file.text : undefined;
}

/** Reads a client certificate file: the client's certificate first, optionally followed by intermediates. */
export function readClientCertificate(
  source: NamedValue,
  problems: string[],
): { pem: string; leaf: X509Certificate } | undefined {
  const file = readSmallFile(source, 'a PEM client certificate file', problems);
  if (!file) return undefined;
  const certificates = parseCertificates(file.text, source, problems);
  return certificates?.[0] ? { pem: file.text, leaf: certificates[0] } : undefined;
}

/**
 * libpq's rule for a private key file (fe-secure-openssl.c): when owned by the current user it may
 * have no group or world access (0600 or less); when owned by root, 0640 or less. Not checked on
 * Windows, as in libpq.
 */
function keyPermissionProblem(stats: Stats): boolean {
  if (process.platform === 'win32') return false;
  const mode = stats.mode & 0o777;
  if (stats.uid === process.geteuid?.()) return (mode & 0o077) !== 0;
  if (stats.uid === 0) return (mode & 0o037) !== 0;
  return false;
}

/** Reads a client private key file (unencrypted PEM, as libpq without sslpassword). */
export function readPrivateKey(source: NamedValue, problems: string[]): { pem: string; key: KeyObject } | undefined {
  const file = readSmallFile(source, 'a PEM private key file', problems);
  if (!file) return undefined;
  if (keyPermissionProblem(file.stats)) {
    const mode = (file.stats.mode & 0o777).toString(8).padStart(4, '0');
    return void problems.push(
      `${source.name} names the private key file ${showPath(source.value)}, which has group or world access (mode ${mode}); as libpq, we require 0600 or less when you own it, or 0640 or less when root owns it.`,
    );
  }
  try {
    return { pem: file.text, key: createPrivateKey(file.text) };
  } catch (error) {
    // PKCS#8 "ENCRYPTED PRIVATE KEY" and legacy "Proc-Type: 4,ENCRYPTED" PEM; Node's error code differs between them.
    const isEncrypted =
      (error as NodeJS.ErrnoException).code === 'ERR_MISSING_PASSPHRASE' ||
      /-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(file.text);
    return void problems.push(
      isEncrypted
        ? `${source.name} names the file ${showPath(source.value)}, whose private key is protected by a passphrase; passphrase-protected keys are not supported.`
        : `${source.name} names the file ${showPath(source.value)}, which contains no PEM private key.`,
    );
  }
}
