import type { EventEmitter } from 'node:events';
import net from 'node:net';
import { Duplex } from 'node:stream';
import tls from 'node:tls';
import {
  tlsConnectOptions,
  type EncryptionMethod,
  type NegotiationPolicy,
  type ServerVerification,
} from './encryption-policy.js';
import { SSL_REQUEST, StartupWatch, type ServerError } from './startup-messages.js';

/**
 * Why a custom stream: pg's own TLS path (Connection#connect) can only require TLS or skip it, and
 * pg never retries a connection attempt. libpq's sslmodes need three decisions pg cannot make: use
 * the same socket unencrypted after the server answers 'N' (prefer), open a new connection without
 * TLS when the handshake fails or the TLS session is refused (prefer), and open a new connection with
 * TLS when the unencrypted one is refused (allow). pg accepts any Duplex as its `stream`, calls
 * `connect(port, host)` on it and sends its startup packet on 'connect'. So this stream does the
 * SSLRequest, the TLS handshake and any retry itself, and only then emits 'connect'; pg is told
 * `ssl: false` and sees an already negotiated byte stream. A retry after the server refused a started
 * session replays pg's startup packet on the new connection, and pg answers the new authentication
 * requests as it would the first. No pg private field is read.
 *
 * The decisions follow libpq 17/18 (fe-connect.c: init_allowed_encryption_methods,
 * select_next_encryption_method, CONNECTION_SSL_STARTUP, CONNECTION_AWAITING_RESPONSE).
 */

type Phase = 'idle' | 'negotiating' | 'watching' | 'open' | 'closed';
type Listener = Parameters<EventEmitter['on']>[1];

/** Passed to `onPlaintextFallback`: a `prefer` connection attempt is going on without TLS. */
export interface PlaintextFallback {
  readonly reason: string;
  readonly host: string;
  readonly port: number;
}

/** Hooks a pool passes in; they must not throw (a throwing hook is ignored). */
export interface NegotiationEvents {
  onPlaintextFallback?: (event: PlaintextFallback) => void;
}

/** Whether one connection is encrypted, as the client negotiated it. */
export interface TlsDescription {
  readonly isEncrypted: boolean;
  /** `TLSv1.3`, `TLSv1.2`; null without TLS. */
  readonly protocol: string | null;
  readonly cipher: string | null;
  /** What was checked about the server certificate; null without TLS. */
  readonly serverVerification: ServerVerification | null;
  /** The sslmode's first choice failed and its second is in use (prefer without TLS, allow with TLS). */
  readonly hasFallenBack: boolean;
}

const ignore = (): void => undefined;
const NOT_CONNECTED: TlsDescription = Object.freeze({
  isEncrypted: false,
  protocol: null,
  cipher: null,
  serverVerification: null,
  hasFallenBack: false,
});

/**
 * The socket pg talks through: negotiates TLS as the sslmode says, retries as libpq does, then
 * passes bytes both ways. Failures surface as an 'error' (then 'close'), as on a net.Socket.
 */
export class NegotiatedStream extends Duplex {
  readonly #policy: NegotiationPolicy;
  readonly #events: NegotiationEvents;
  #methods: EncryptionMethod[];
  #host = 'localhost';
  #port = 5432;
  #path: string | undefined;
  #phase: Phase = 'idle';
  /** Bumped when an attempt is abandoned, so late events of its sockets are ignored. */
  #attemptId = 0;
  #socket: net.Socket | undefined;
  #transport: net.Socket | tls.TLSSocket | undefined;
  #listeners: Array<[EventEmitter, string, Listener]> = [];
  #hasConnected = false;
  #queued: Array<{ chunk: Buffer; callback: (error?: Error | null) => void }> = [];
  /** Watches the startup phase while a refusal would make us retry (phase 'watching'). */
  readonly #watch = new StartupWatch();
  #previousFailure: string | undefined;
  #hasFallenBack = false;
  #description = NOT_CONNECTED;
  #noDelay = true;
  #keepAlive: { enable: boolean; delayMillis: number } | undefined;
  #isRefed = true;

  constructor(policy: NegotiationPolicy, events: NegotiationEvents = {}) {
    super({ allowHalfOpen: false });
    this.#policy = policy;
    this.#events = events;
    this.#methods = [...policy.methods];
  }

  /** The negotiated state of this connection (not connected yet: not encrypted). */
  describe(): TlsDescription {
    return this.#description;
  }

  /**
   * Opens the connection as pg's Connection does: `connect(port, host)` for TCP, `connect(path)` for
   * a Unix-domain socket. Emits 'connect' once the encryption is settled.
   */
  connect(portOrPath: number | string, host?: string): this {
    if (this.#phase !== 'idle') throw new Error('NegotiatedStream.connect() may only be called once');
    if (host === undefined && typeof portOrPath === 'string') {
      this.#path = portOrPath;
      // libpq never negotiates TLS over a Unix-domain socket, whatever the sslmode.
      this.#methods = ['plaintext'];
    } else {
      this.#port = Number(portOrPath);
      this.#host = host ?? 'localhost';
    }
    this.#attempt();
    return this;
  }

  setNoDelay(noDelay = true): this {
    this.#noDelay = noDelay;
    this.#socket?.setNoDelay(noDelay);
    return this;
  }

  setKeepAlive(enable = false, delayMillis = 0): this {
    this.#keepAlive = { enable, delayMillis };
    this.#socket?.setKeepAlive(enable, delayMillis);
    return this;
  }

  /** pg-pool unrefs idle clients (allowExitOnIdle); the TCP socket holds the event loop, TLS or not. */
  ref(): this {
    this.#isRefed = true;
    this.#socket?.ref();
    return this;
  }

  unref(): this {
    this.#isRefed = false;
    this.#socket?.unref();
    return this;
  }

  get remoteAddress(): string | undefined {
    return this.#socket?.remoteAddress;
  }

  get remotePort(): number | undefined {
    return this.#socket?.remotePort;
  }

  /** The server certificate, for SCRAM-SHA-256-PLUS channel binding (pg calls this when enabled). */
  getPeerCertificate(detailed?: boolean): tls.PeerCertificate | Record<string, never> {
    return this.#transport instanceof tls.TLSSocket ? this.#transport.getPeerCertificate(detailed ?? false) : {};
  }

  /** Starts one connection attempt with the first remaining method. */
  #attempt(): void {
    const attemptId = ++this.#attemptId;
    const method = this.#methods[0]!;
    const socket =
      this.#path !== undefined ? net.connect({ path: this.#path }) : net.connect({ port: this.#port, host: this.#host });
    socket.setNoDelay(this.#noDelay);
    if (!this.#isRefed) socket.unref();
    this.#socket = socket;
    this.#transport = undefined;
    this.#phase = 'negotiating';
    const isCurrent = () => attemptId === this.#attemptId;
    this.#listen(socket, 'error', (error: Error) => isCurrent() && this.#fail(error));
    this.#listen(
      socket,
      'close',
      () =>
        isCurrent() && this.#fail(new Error(`The server at ${this.#where()} closed the connection before it was established`)),
    );
    this.#listen(socket, 'connect', () => {
      if (!isCurrent()) return;
      if (method === 'plaintext') return this.#ready(socket);
      socket.write(SSL_REQUEST);
      const onAnswer = (chunk: Buffer) => {
        socket.removeListener('data', onAnswer);
        if (isCurrent()) this.#onSslAnswer(socket, chunk);
      };
      this.#listen(socket, 'data', onAnswer);
    });
  }

  /** The server's one-byte answer to SSLRequest. */
  #onSslAnswer(socket: net.Socket, chunk: Buffer): void {
    const answer = chunk[0];
    // Bytes after the answer arrived before any handshake, so they are unencrypted and may have been
    // injected by a man in the middle (CVE-2021-23222); libpq refuses them too.
    if (chunk.length > 1)
      return this.#fail(
        new Error(
          `The server at ${this.#where()} sent unencrypted data after its answer to the TLS request; the connection was refused`,
        ),
      );
    if (answer === 0x53) return this.#startTls(socket); // 'S'
    if (answer === 0x4e) {
      // 'N'
      this.#methods.shift();
      if (this.#methods[0] !== 'plaintext') {
        return this.#fail(
          new Error(
            `The server at ${this.#where()} does not accept TLS connections, but sslmode=${this.#policy.mode} requires TLS`,
          ),
        );
      }
      // prefer: go on without TLS on the same connection, as libpq does.
      this.#fallBack('the server does not accept TLS connections (ssl=off)');
      return this.#ready(socket);
    }
    if (answer === 0x45)
      return this.#fail(
        new Error(
          `The server at ${this.#where()} answered the TLS request with an error (it may be out of connection slots or processes)`,
        ),
      );
    this.#fail(
      new Error(
        `The server at ${this.#where()} answered the TLS request with the unexpected byte 0x${(answer ?? 0).toString(16)}; it may not be PostgreSQL`,
      ),
    );
  }

  #startTls(socket: net.Socket): void {
    const attemptId = this.#attemptId;
    this.#unlisten();
    const tlsSocket = tls.connect(tlsConnectOptions(this.#policy, socket, this.#host));
    const isCurrent = () => attemptId === this.#attemptId && this.#phase === 'negotiating';
    const onFailure = (error: Error) => isCurrent() && this.#onHandshakeFailure(error);
    this.#listen(tlsSocket, 'secureConnect', () => isCurrent() && this.#ready(tlsSocket));
    this.#listen(tlsSocket, 'error', onFailure);
    this.#listen(socket, 'error', onFailure);
    this.#listen(tlsSocket, 'close', () => onFailure(new Error('the server closed the connection during the TLS handshake')));
    this.#transport = tlsSocket;
  }

  /** libpq: a failed handshake moves on to the next method on a new connection (prefer: plaintext). */
  #onHandshakeFailure(error: Error): void {
    const reason = `the TLS handshake failed: ${error.message}`;
    if (this.#methods[1] === 'plaintext') {
      this.#abandon();
      this.#methods.shift();
      this.#previousFailure = reason;
      this.#fallBack(reason);
      return this.#attempt();
    }
    this.#fail(new Error(`TLS with ${this.#where()} failed (sslmode=${this.#policy.mode}): ${error.message}`, { cause: error }));
  }

  /** Encryption is settled on `transport`: start passing bytes (or replay pg's startup packet). */
  #ready(transport: net.Socket | tls.TLSSocket): void {
    this.#unlisten();
    this.#transport = transport;
    const socket = this.#socket!;
    if (this.#keepAlive) socket.setKeepAlive(this.#keepAlive.enable, this.#keepAlive.delayMillis);
    this.#listen(transport, 'data', (chunk: Buffer) => this.#onData(chunk));
    this.#listen(transport, 'end', () => this.push(null));
    this.#listen(transport, 'error', (error: Error) => this.destroy(error));
    if (transport !== socket) this.#listen(socket, 'error', (error: Error) => this.destroy(error));
    this.#listen(transport, 'close', () => {
      // After an orderly 'end', allowHalfOpen=false ends and closes this stream by itself.
      if (!this.readableEnded) this.destroy();
    });
    this.#phase = this.#methods.length > 1 ? 'watching' : 'open';
    this.#description =
      transport instanceof tls.TLSSocket
        ? Object.freeze({
            isEncrypted: true,
            protocol: transport.getProtocol() ?? null,
            cipher: transport.getCipher()?.name ?? null,
            serverVerification: this.#policy.serverVerification,
            hasFallenBack: this.#hasFallenBack,
          })
        : Object.freeze({ ...NOT_CONNECTED, hasFallenBack: this.#hasFallenBack });
    if (this.#hasConnected) {
      transport.write(this.#watch.startupPacket);
      return;
    }
    this.#hasConnected = true;
    this.emit('connect');
    for (const { chunk, callback } of this.#queued.splice(0)) this.#writeOut(chunk, callback);
  }

  #onData(chunk: Buffer): void {
    if (this.#phase !== 'watching') return this.#forward(chunk);
    const result = this.#watch.onServerBytes(chunk);
    this.#forward(result.forward);
    if (result.kind === 'settled') this.#phase = 'open';
    else if (result.kind === 'refused') this.#retryAfterRefusal(result.error);
  }

  #retryAfterRefusal(error: ServerError): void {
    const what = this.#methods[0] === 'tls' ? 'TLS' : 'unencrypted';
    const reason = `the server refused the ${what} connection: ${error.message} (SQLSTATE ${error.code})`;
    this.#abandon();
    this.#methods.shift();
    this.#previousFailure = reason;
    this.#hasFallenBack = true;
    this.#watch.reset();
    if (this.#methods[0] === 'plaintext') this.#fallBack(reason);
    this.#attempt();
  }

  #fallBack(reason: string): void {
    this.#hasFallenBack = true;
    try {
      this.#events.onPlaintextFallback?.({ reason, host: this.#host, port: this.#port });
    } catch {
      // A logging hook must not break the connection.
    }
  }

  #forward(bytes: Buffer): void {
    if (bytes.length > 0 && !this.push(bytes)) this.#transport?.pause();
  }

  override _read(): void {
    if ((this.#phase === 'open' || this.#phase === 'watching') && this.#transport?.isPaused()) this.#transport.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#accept(chunk, callback);
  }

  /** pg corks the stream around an extended-protocol query: send its messages in one write. */
  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (error?: Error | null) => void): void {
    this.#accept(chunks.length === 1 ? chunks[0]!.chunk : Buffer.concat(chunks.map((c) => c.chunk)), callback);
  }

  #accept(chunk: Buffer, callback: (error?: Error | null) => void): void {
    switch (this.#phase) {
      case 'idle':
      case 'negotiating':
        if (!this.#hasConnected) return void this.#queued.push({ chunk, callback });
        // An answer pg wrote for the attempt we abandoned: it must never reach the next server.
        return callback();
      case 'closed':
        return callback(new Error('The connection is closed'));
      case 'watching':
        this.#watch.onClientBytes(chunk);
        break;
      case 'open':
        break;
    }
    this.#writeOut(chunk, callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (this.#phase === 'open' || this.#phase === 'watching') {
      this.#transport?.end();
      return callback();
    }
    callback();
    this.destroy();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#phase = 'closed';
    this.#unlisten();
    for (const socket of [this.#transport, this.#socket]) {
      socket?.on('error', ignore);
      socket?.destroy();
    }
    for (const { callback: queued } of this.#queued.splice(0)) queued(error ?? new Error('The connection is closed'));
    callback(error);
  }

  #writeOut(chunk: Buffer, callback: (error?: Error | null) => void): void {
    const transport = this.#transport!;
    if (transport.write(chunk)) callback();
    else transport.once('drain', () => callback());
  }

  #fail(error: Error): void {
    const previous = this.#previousFailure;
    this.destroy(previous ? new Error(`${error.message} (after ${previous})`, { cause: error }) : error);
  }

  /** Drops the current attempt's sockets; their late events are ignored. */
  #abandon(): void {
    this.#attemptId++;
    this.#unlisten();
    for (const socket of [this.#transport, this.#socket]) {
      socket?.on('error', ignore);
      socket?.destroy();
    }
    this.#transport = undefined;
    this.#socket = undefined;
  }

  #listen(emitter: EventEmitter, event: string, listener: Listener): void {
    emitter.on(event, listener);
    this.#listeners.push([emitter, event, listener]);
  }

  #unlisten(): void {
    for (const [emitter, event, listener] of this.#listeners.splice(0)) emitter.removeListener(event, listener);
  }

  #where(): string {
    return this.#path ?? `${this.#host}:${this.#port}`;
  }
}
