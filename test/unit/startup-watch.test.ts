import { describe, expect, it } from 'vitest';
import { parseErrorFields, StartupWatch } from '../../src/ssl/startup-messages.js';

/** A backend message: type byte, Int32 length (including itself), body. */
function message(type: string, body: Buffer): Buffer {
  const header = Buffer.alloc(5);
  header.write(type, 0, 'latin1');
  header.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([header, body]);
}

/** An Authentication message with the given request code (0 ok, 3 cleartext, 10 SASL, ...). */
function authentication(request: number): Buffer {
  const body = Buffer.alloc(4);
  body.writeInt32BE(request, 0);
  return message('R', request === 10 ? Buffer.concat([body, Buffer.from('SCRAM-SHA-256\0\0')]) : body);
}

function errorResponse(code: string, text: string): Buffer {
  return message('E', Buffer.from(`SFATAL\0C${code}\0M${text}\0\0`));
}

/** A StartupMessage-shaped first packet of `length` bytes. */
function startupPacket(length: number): Buffer {
  const packet = Buffer.alloc(length, 0x61);
  packet.writeInt32BE(length, 0);
  return packet;
}

describe('StartupWatch (the TLS negotiation watching the startup phase)', () => {
  it('reports a refusal that answers the startup packet, with its SQLSTATE and message', () => {
    const watch = new StartupWatch();
    watch.onClientBytes(startupPacket(40));
    const result = watch.onServerBytes(errorResponse('28000', 'no pg_hba.conf entry'));
    expect(result.kind).toBe('refused');
    expect(result.kind === 'refused' && result.error).toEqual({ code: '28000', message: 'no pg_hba.conf entry' });
    expect(result.forward).toHaveLength(0);
  });

  it('settles at any message that is neither an authentication request nor an error, forwarding it', () => {
    const watch = new StartupWatch();
    watch.onClientBytes(startupPacket(40));
    const notice = message('N', Buffer.from('SNOTICE\0\0'));
    expect(watch.onServerBytes(notice)).toEqual({ kind: 'settled', forward: notice });
  });

  it('lets pg report an error that arrives while pg still owes an answer to an authentication request', () => {
    const watch = new StartupWatch();
    watch.onClientBytes(startupPacket(40));
    const bytes = Buffer.concat([authentication(10), errorResponse('28P01', 'password authentication failed')]);
    const result = watch.onServerBytes(bytes);
    expect(result.kind).toBe('settled');
    expect(result.forward).toEqual(bytes);
  });

  it('reports a refusal once pg has answered the authentication request (a wrong password)', () => {
    const watch = new StartupWatch();
    watch.onClientBytes(startupPacket(40));
    expect(watch.onServerBytes(authentication(3))).toEqual({ kind: 'watching', forward: authentication(3) });
    watch.onClientBytes(Buffer.from('p-answer'));
    const result = watch.onServerBytes(errorResponse('28P01', 'password authentication failed'));
    expect(result.kind).toBe('refused');
    expect(result.forward).toHaveLength(0);
  });

  it('never treats 57P03 (the server is starting up) as a refusal of the encryption', () => {
    const watch = new StartupWatch();
    watch.onClientBytes(startupPacket(40));
    expect(watch.onServerBytes(errorResponse('57P03', 'the database system is starting up')).kind).toBe('settled');
  });

  it('settles at AuthenticationOk and forwards everything from there to pg', () => {
    const watch = new StartupWatch();
    watch.onClientBytes(startupPacket(40));
    const bytes = Buffer.concat([authentication(0), message('S', Buffer.from('server_version\x0018\0'))]);
    expect(watch.onServerBytes(bytes)).toEqual({ kind: 'settled', forward: bytes });
  });

  it('holds back a message split across chunks until it is whole', () => {
    const watch = new StartupWatch();
    watch.onClientBytes(startupPacket(40));
    const refusal = errorResponse('28000', 'refused');
    const first = watch.onServerBytes(refusal.subarray(0, 7));
    expect(first).toEqual({ kind: 'watching', forward: Buffer.alloc(0) });
    const second = watch.onServerBytes(refusal.subarray(7));
    expect(second.kind).toBe('refused');
  });

  it('hands a message it cannot judge (a length beyond libpq’s bound) to pg as it is', () => {
    const watch = new StartupWatch();
    const bogus = Buffer.from([0x45, 0x7f, 0xff, 0xff, 0xff, 0x00]);
    expect(watch.onServerBytes(bogus)).toEqual({ kind: 'settled', forward: bogus });
  });

  it('keeps only pg’s first packet for the replay, however it was split, and forgets nothing on reset', () => {
    const watch = new StartupWatch();
    const packet = startupPacket(12);
    watch.onClientBytes(packet.subarray(0, 5));
    watch.onClientBytes(packet.subarray(5));
    watch.onClientBytes(Buffer.from('later bytes'));
    watch.reset();
    expect(watch.startupPacket).toEqual(packet);
  });
});

describe('parseErrorFields', () => {
  it('reads the SQLSTATE and the message, shortening a message over 300 characters', () => {
    const long = 'x'.repeat(400);
    const fields = parseErrorFields(Buffer.from(`SFATAL\0C08P01\0M${long}\0\0`));
    expect(fields.code).toBe('08P01');
    expect(fields.message).toBe(`${'x'.repeat(300)}...`);
  });

  it('stops at a field without its terminator instead of reading past the body', () => {
    expect(parseErrorFields(Buffer.from('C28000\0Mtruncated'))).toEqual({ code: '28000', message: '' });
  });
});
