/**
 * The startup phase of the PostgreSQL protocol as the TLS negotiation sees it (protocol.html,
 * "Message Flow: Start-up"): the SSLRequest, pg's startup packet, and whether the server refused the
 * session before authentication completed. pg parses everything else.
 */

/** SSLRequest: length 8, code 80877103. */
export const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);

const ERROR_RESPONSE = 0x45; // 'E'
const AUTHENTICATION = 0x52; // 'R'
const AUTH_OK = 0;
/** Authentication requests the client must answer: cleartext, MD5, SASL, SASLContinue. */
const AUTH_REQUESTS_NEEDING_REPLY = new Set([3, 5, 10, 11]);
/** libpq's bound on a message before authentication (MAX_ERRLEN in fe-connect.c). */
const MAX_STARTUP_MESSAGE_BYTES = 30_000;
/** 57P03 cannot_connect_now: libpq tries the next host, never another encryption method. */
const CANNOT_CONNECT_NOW = '57P03';
const EMPTY = Buffer.alloc(0);

/** The fields of an ErrorResponse we report: SQLSTATE and the primary message. */
export interface ServerError {
  readonly code: string;
  readonly message: string;
}

/** What to do with server bytes: pass `forward` to pg, then keep watching, stop, or retry. */
export type WatchResult =
  | { readonly kind: 'watching' | 'settled'; readonly forward: Buffer }
  | { readonly kind: 'refused'; readonly forward: Buffer; readonly error: ServerError };

/** Parses an ErrorResponse body (the bytes after type and length): field byte, C string, ..., NUL. */
export function parseErrorFields(body: Buffer): ServerError {
  let code = '';
  let message = '';
  let offset = 0;
  while (offset < body.length && body[offset] !== 0) {
    const field = body[offset]!;
    const end = body.indexOf(0, offset + 1);
    if (end === -1) break;
    const value = body.toString('utf8', offset + 1, end);
    if (field === 0x43)
      code = value; // 'C'
    else if (field === 0x4d) message = value; // 'M'
    offset = end + 1;
  }
  return { code, message: message.length > 300 ? `${message.slice(0, 300)}...` : message };
}

/**
 * Frames server messages until authentication succeeds, to spot a refusal: libpq retries with the
 * next encryption method after any ErrorResponse before AuthenticationOk (pg_hba refusing the
 * encryption, but also a wrong password), except 57P03. A refusal only counts when it answers
 * something pg sent, never while pg still owes an answer to an authentication request, so no late
 * answer of pg's can reach the next connection. Also keeps pg's startup packet for the replay.
 */
export class StartupWatch {
  #inbox = EMPTY;
  #owesReply = false;
  #startup = EMPTY;

  /** pg's first packet (StartupMessage or CancelRequest), as far as it has been written. */
  get startupPacket(): Buffer {
    return this.#startup;
  }

  /** Bytes pg wrote: the first packet is kept, and any write answers the pending request. */
  onClientBytes(chunk: Buffer): void {
    this.#owesReply = false;
    const expected = this.#startup.length >= 4 ? this.#startup.readInt32BE(0) : undefined;
    if (expected === undefined || this.#startup.length < expected) this.#startup = Buffer.concat([this.#startup, chunk]);
  }

  /** Starts over for a new connection; the startup packet is kept for the replay. */
  reset(): void {
    this.#inbox = EMPTY;
    this.#owesReply = false;
  }

  onServerBytes(chunk: Buffer): WatchResult {
    const inbox = this.#inbox.length === 0 ? chunk : Buffer.concat([this.#inbox, chunk]);
    let offset = 0;
    while (inbox.length - offset >= 5) {
      const type = inbox[offset]!;
      const length = inbox.readInt32BE(offset + 1);
      // Not a message we can judge: pg reports it.
      if (length < 4 || length > MAX_STARTUP_MESSAGE_BYTES) return this.#settle(inbox);
      const end = offset + 1 + length;
      if (end > inbox.length) break;
      if (type === ERROR_RESPONSE) {
        const error = parseErrorFields(inbox.subarray(offset + 5, end));
        if (this.#owesReply || error.code === CANNOT_CONNECT_NOW) return this.#settle(inbox);
        this.#inbox = EMPTY;
        return { kind: 'refused', forward: inbox.subarray(0, offset), error };
      }
      if (type !== AUTHENTICATION || length < 8) return this.#settle(inbox);
      const request = inbox.readInt32BE(offset + 5);
      if (request === AUTH_OK) return this.#settle(inbox);
      if (AUTH_REQUESTS_NEEDING_REPLY.has(request)) this.#owesReply = true;
      offset = end;
    }
    this.#inbox = Buffer.from(inbox.subarray(offset));
    return { kind: 'watching', forward: inbox.subarray(0, offset) };
  }

  #settle(inbox: Buffer): WatchResult {
    this.#inbox = EMPTY;
    return { kind: 'settled', forward: inbox };
  }
}
