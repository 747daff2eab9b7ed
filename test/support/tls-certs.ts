/**
 * Certificates for TLS tests, made with the openssl CLI at test time in a temp directory (never
 * committed): a CA, a second CA nobody trusts, server certificates and a client certificate.
 * EC P-256 keys keep generation fast.
 */
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { readdirSync, rmSync } from 'node:fs';
import { chmod, chown, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Paths of the generated files; keys are 0600. */
export interface TlsCertificates {
  readonly dir: string;
  /** The CA that signed every server and client certificate below. */
  readonly caCert: string;
  /** A CA that signed nothing here: as a root file it makes every server certificate untrusted. */
  readonly untrustedCaCert: string;
  /** Server certificate for DNS `localhost`, IP 127.0.0.1 and ::1; its key is owned by the postgres OS user. */
  readonly serverCert: string;
  readonly serverKey: string;
  /** Server certificate for DNS `wrong.example` only (no IP SAN); key owned by the postgres OS user. */
  readonly wrongHostCert: string;
  readonly wrongHostKey: string;
  /** Client certificate with CN = `clientUser` (for the `cert` auth method); key owned by this process. */
  readonly clientCert: string;
  readonly clientKey: string;
  /** Removes the directory (also done when the process exits). */
  destroy(): Promise<void>;
}

/** The postgres OS user, which must own a server key when we run as root; created when missing, as the server harness does. */
function serverKeyOwner(): { uid: number; gid: number } | null {
  if (process.getuid?.() !== 0) return null;
  const id = (flag: string): number => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
  try {
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    const groupExists = spawnSync('getent', ['group', 'postgres']).status === 0;
    execFileSync('useradd', [
      '--system',
      '--no-create-home',
      '--shell',
      '/usr/sbin/nologin',
      ...(groupExists ? ['--gid', 'postgres'] : ['--user-group']),
      'postgres',
    ]);
    return { uid: id('-u'), gid: id('-g') };
  }
}

const DIR_PREFIX = 'codecheck-tls-';

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes directories left by test processes that died without cleaning up (a killed worker runs no 'exit' hook). */
function reapOrphans(): void {
  for (const name of readdirSync(tmpdir())) {
    const owner = Number(new RegExp(`^${DIR_PREFIX}(\\d+)-`).exec(name)?.[1]);
    if (owner && !isAlive(owner)) rmSync(join(tmpdir(), name), { recursive: true, force: true });
  }
}

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

async function makeCa(dir: string, name: string, commonName: string): Promise<{ cert: string; key: string }> {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  await run('openssl', [
    'req',
    '-x509',
    '-new',
    ...EC_KEY,
    '-keyout',
    key,
    '-out',
    cert,
    '-days',
    '3',
    '-subj',
    `/CN=${commonName}`,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  await chmod(key, 0o600);
  return { cert, key };
}

async function makeLeaf(
  dir: string,
  name: string,
  ca: { cert: string; key: string },
  commonName: string,
  extensions: string[],
): Promise<{ cert: string; key: string }> {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const ext = join(dir, `${name}.ext`);
  await writeFile(
    ext,
    `${['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature', ...extensions].join('\n')}\n`,
  );
  await run('openssl', ['req', '-new', ...EC_KEY, '-keyout', key, '-out', csr, '-subj', `/CN=${commonName}`]);
  await run('openssl', [
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    ca.cert,
    '-CAkey',
    ca.key,
    '-set_serial',
    `0x${randomBytes(8).toString('hex')}`,
    '-days',
    '3',
    '-out',
    cert,
    '-extfile',
    ext,
  ]);
  await chmod(key, 0o600);
  await Promise.all([rm(csr), rm(ext)]);
  return { cert, key };
}

/**
 * Generates the certificate set. `clientUser` is the client certificate's CN, which the `cert` auth
 * method compares with the database user name (default `postgres`).
 */
export async function createTlsCertificates(options: { clientUser?: string } = {}): Promise<TlsCertificates> {
  reapOrphans();
  const dir = await mkdtemp(join(tmpdir(), `${DIR_PREFIX}${process.pid}-`));
  // Keys must not outlive the test process, even when a test never reaches its afterAll.
  const removeOnExit = () => rmSync(dir, { recursive: true, force: true });
  process.once('exit', removeOnExit);
  try {
    // The server (postgres OS user) reads the CA and its certificate from here.
    await chmod(dir, 0o755);
    const ca = await makeCa(dir, 'ca', 'codecheck test CA');
    const untrusted = await makeCa(dir, 'untrusted-ca', 'codecheck untrusted CA');
    const server = await makeLeaf(dir, 'server', ca, 'localhost', [
      'extendedKeyUsage=serverAuth',
      'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1',
    ]);
    const wrongHost = await makeLeaf(dir, 'wrong-host', ca, 'wrong.example', [
      'extendedKeyUsage=serverAuth',
      'subjectAltName=DNS:wrong.example',
    ]);
    const client = await makeLeaf(dir, 'client', ca, options.clientUser ?? 'postgres', ['extendedKeyUsage=clientAuth']);
    await Promise.all([ca.cert, untrusted.cert, server.cert, wrongHost.cert, client.cert].map((file) => chmod(file, 0o644)));
    // Nothing needs the CA keys after signing.
    await Promise.all([rm(ca.key), rm(untrusted.key)]);
    const owner = serverKeyOwner();
    if (owner) await Promise.all([server.key, wrongHost.key].map((file) => chown(file, owner.uid, owner.gid)));
    return {
      dir,
      caCert: ca.cert,
      untrustedCaCert: untrusted.cert,
      serverCert: server.cert,
      serverKey: server.key,
      wrongHostCert: wrongHost.cert,
      wrongHostKey: wrongHost.key,
      clientCert: client.cert,
      clientKey: client.key,
      destroy: async () => {
        process.removeListener('exit', removeOnExit);
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    process.removeListener('exit', removeOnExit);
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}
