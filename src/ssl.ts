import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import pg from 'pg';

/** The six libpq sslmodes, weakest first. */
export const SSL_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;
export type SslMode = (typeof SSL_MODES)[number];

/** One raw setting and where it came from (`DB_SSLMODE`, `DATABASE_URL sslmode`, `option sslMode`). */
export interface SslSource {
  readonly value: string;
  readonly name: string;
}

/** The raw TLS settings the config resolver found, already narrowed by precedence. */
export interface SslInputs {
  mode?: SslSource;
  rootCert?: SslSource;
  cert?: SslSource;
  key?: SslSource;
}

/** Resolved TLS settings: the mode plus certificate contents read once at config time. */
export interface SslSettings {
  readonly mode: SslMode;
  /** Path of the root certificate file, or `system`. */
  readonly rootCertPath?: string;
  readonly certPath?: string;
  readonly keyPath?: string;
  readonly ca?: string;
  readonly cert?: string;
  /** Private key contents; not enumerable, so it never reaches JSON or logs. */
  readonly key?: string;
}

/** Hooks the connection layer calls so the pool can log and count per-connection TLS facts. */
export interface SslEvents {
  /** Called when a `prefer` connection fell back to plaintext. */
  onPlaintextFallback?: () => void;
}

function readFile(source: SslSource, problems: string[]): string | undefined {
  try {
    return readFileSync(source.value, 'utf8');
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? 'unreadable';
    problems.push(`${source.name}: cannot read the file ${JSON.stringify(source.value)} (${reason}).`);
    return undefined;
  }
}

/**
 * Resolves sslmode and certificate files into {@link SslSettings}. Problems (unknown mode, unreadable
 * file) are pushed to `problems` in sentences that name the variable; file contents are never quoted.
 */
export function resolveSsl(inputs: SslInputs, problems: string[]): SslSettings {
  let mode: SslMode = 'prefer';
  if (inputs.mode) {
    const value = inputs.mode.value.trim().toLowerCase();
    if ((SSL_MODES as readonly string[]).includes(value)) mode = value as SslMode;
    else problems.push(`${inputs.mode.name}: unknown sslmode ${JSON.stringify(inputs.mode.value)}; expected one of ${SSL_MODES.join(', ')}.`);
  }
  const settings: { -readonly [K in keyof SslSettings]: SslSettings[K] } = { mode };
  if (inputs.rootCert) {
    settings.rootCertPath = inputs.rootCert.value;
    if (inputs.rootCert.value !== 'system') settings.ca = readFile(inputs.rootCert, problems);
  }
  if (inputs.cert) {
    settings.certPath = inputs.cert.value;
    settings.cert = readFile(inputs.cert, problems);
  }
  if (inputs.key) {
    settings.keyPath = inputs.key.value;
    Object.defineProperty(settings, 'key', { value: readFile(inputs.key, problems), enumerable: false });
  }
  return Object.freeze(settings);
}

/** The tls options for a connection that must be encrypted, or `false` for plaintext. */
export function tlsOptions(settings: SslSettings): ConnectionOptions | false {
  if (settings.mode === 'disable' || settings.mode === 'allow') return false;
  const options: ConnectionOptions = {};
  if (settings.ca) options.ca = settings.ca;
  if (settings.cert) options.cert = settings.cert;
  if (settings.key) options.key = settings.key;
  // Interim mapping: every mode that may use TLS verifies the full chain and host name, which is
  // never weaker than what libpq would do (prefer/require get stricter, not looser).
  options.rejectUnauthorized = true;
  return options;
}

/**
 * A pg.Client class that negotiates TLS as `settings.mode` says. Each pool passes it as its `Client`.
 */
export function createClientClass(settings: SslSettings, _events: SslEvents = {}): typeof pg.Client {
  const ssl = tlsOptions(settings);
  return class SslClient extends pg.Client {
    constructor(config?: pg.ClientConfig) {
      // pg-pool hides `password` as a non-enumerable property, so a spread would drop it.
      super({ ...config, password: config?.password, ssl });
    }
  };
}
