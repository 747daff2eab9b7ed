import net from 'node:net';
import tls from 'node:tls';

/** What a TLS connection checks about the server's certificate. */
export type ServerVerification = 'none' | 'ca' | 'full';

/** How one connection attempt is made: without TLS, or with SSLRequest and a TLS handshake. */
export type EncryptionMethod = 'plaintext' | 'tls';

/** Everything a connection attempt needs, built once per pool from the resolved settings. */
export interface NegotiationPolicy {
  readonly mode: string;
  /** Encryption methods in the order libpq tries them for this sslmode. */
  readonly methods: readonly EncryptionMethod[];
  readonly serverVerification: ServerVerification;
  /** Root certificates, client certificate and key; undefined when TLS is never used. */
  readonly secureContext: tls.SecureContext | undefined;
}

/** The settings a policy is built from (a subset of the resolved SslSettings). */
export interface PolicySource {
  readonly mode: string;
  readonly serverVerification: ServerVerification;
  readonly ca?: string;
  readonly cert?: string;
  readonly key?: string;
}

/**
 * The order libpq tries encryption methods in (select_next_encryption_method): allow tries plaintext
 * first, prefer TLS first; disable and require/verify-* have one method only.
 */
export function methodsFor(mode: string): EncryptionMethod[] {
  switch (mode) {
    case 'disable':
      return ['plaintext'];
    case 'allow':
      return ['plaintext', 'tls'];
    case 'prefer':
      return ['tls', 'plaintext'];
    default:
      return ['tls'];
  }
}

const policies = new WeakMap<PolicySource, NegotiationPolicy>();

/** The policy for `settings`, its TLS context built once and cached (parsing a CA bundle is not free). */
export function policyFor(settings: PolicySource): NegotiationPolicy {
  let policy = policies.get(settings);
  if (!policy) {
    const methods = methodsFor(settings.mode);
    policy = Object.freeze({
      mode: settings.mode,
      methods,
      serverVerification: settings.serverVerification,
      // Without `ca`, Node uses its default store (bundled roots plus NODE_EXTRA_CA_CERTS): sslrootcert=system.
      // With `ca`, only those roots are trusted, as libpq trusts only its root file.
      secureContext: methods.includes('tls')
        ? tls.createSecureContext({ ca: settings.ca, cert: settings.cert, key: settings.key, minVersion: 'TLSv1.2' })
        : undefined,
    });
    policies.set(settings, policy);
  }
  return policy;
}

/** tls.connect options for a handshake on `socket` with the server the caller named `host`. */
export function tlsConnectOptions(policy: NegotiationPolicy, socket: net.Socket, host: string): tls.ConnectionOptions {
  const verification = policy.serverVerification;
  return {
    socket,
    secureContext: policy.secureContext,
    // SNI for host names, never for IP addresses (RFC 6066); libpq's sslsni=1 default.
    ...(net.isIP(host) === 0 ? { servername: host } : {}),
    // libpq 17+ offers ALPN "postgresql"; servers that do not use ALPN ignore it.
    ALPNProtocols: ['postgresql'],
    // ssl_min_protocol_version's default in libpq.
    minVersion: 'TLSv1.2',
    rejectUnauthorized: verification !== 'none',
    // verify-full checks the name the caller connected to (DNS or IP SANs, RFC 6125); verify-ca and
    // weaker modes do not check the name at all.
    checkServerIdentity:
      verification === 'full' ? (_name, certificate) => tls.checkServerIdentity(host, certificate) : () => undefined,
  };
}
