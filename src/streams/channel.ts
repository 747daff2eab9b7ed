/**
 * Channel names and payloads of LISTEN/NOTIFY, checked before anything reaches the server.
 * A channel is a case-sensitive name: `LISTEN` gets it as a quoted identifier and `pg_notify` as a
 * bound text value, so both name exactly the same channel.
 */

/** PostgreSQL's NAMEDATALEN - 1: a longer channel name is refused by pg_notify. */
const MAX_CHANNEL_BYTES = 63;
/** The server refuses a payload of 8000 bytes or more ("payload string too long"). */
export const MAX_PAYLOAD_BYTES = 7999;

/** @throws {TypeError} unless `channel` is a non-empty string of at most 63 bytes without NUL. */
export function checkChannel(channel: unknown): asserts channel is string {
  if (typeof channel !== 'string' || channel === '') throw new TypeError('The channel must be a non-empty string');
  if (channel.includes('\0')) throw new TypeError('The channel name may not contain a NUL character');
  const bytes = Buffer.byteLength(channel, 'utf8');
  if (bytes > MAX_CHANNEL_BYTES)
    throw new TypeError(`The channel name is ${bytes} bytes long; PostgreSQL allows at most ${MAX_CHANNEL_BYTES}`);
}

/** @throws {TypeError} unless `payload` is a string shorter than 8000 bytes (UTF-8). */
export function checkPayload(payload: unknown): asserts payload is string {
  if (typeof payload !== 'string')
    throw new TypeError('The notification payload must be a string (JSON.stringify objects first)');
  const bytes = Buffer.byteLength(payload, 'utf8');
  if (bytes > MAX_PAYLOAD_BYTES)
    throw new TypeError(
      `The notification payload is ${bytes} bytes; PostgreSQL takes at most ${MAX_PAYLOAD_BYTES} (send a key and read the data instead)`,
    );
}

/** The channel as a quoted identifier for LISTEN/UNLISTEN (checked by {@link checkChannel} first). */
export function quoteChannel(channel: string): string {
  return `"${channel.replace(/"/g, '""')}"`;
}
