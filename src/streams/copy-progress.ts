import type { Readable, Writable } from 'node:stream';
import { socketOf } from '../client-internals.js';
import { statementAnswered, statementSent, type Lease } from '../pool/lease.js';
import { startInterval } from '../timers.js';

/** How often a COPY's state is looked at: well under the statement watchdog's smallest limit. */
const LOOK_MILLIS = 100;

/**
 * The deadline of a COPY on a link that goes silent. A COPY is one statement whose answer arrives in
 * pieces, so instead of counting it unanswered for its whole life (which would flag a COPY held up by
 * the caller's slow source or destination), it counts as one of the library's unanswered statements
 * on the lease only while it waits on the server: COPY TO while the destination wants data and the
 * socket has nothing unread, COPY FROM while written data is not yet taken by the server (before
 * CopyInResponse, or still buffered in the socket) and after its end until the server's answer. Its
 * clock restarts whenever bytes move either way (looked at every 100 ms). The statement watchdog
 * (src/pool/statement-watchdog.ts) does the rest, as for any statement: past statement_timeout plus
 * its grace it probes the server, and abandons the connection when the server cannot be reached or
 * the backend is gone, idle, or itself waiting on this client (a COPY the link stopped carrying):
 * the COPY fails with `CONNECTION_LOST`. Stops once pg is done with the COPY (`finished`).
 */
export function watchCopyProgress(
  lease: Lease,
  copy: Readable | Writable,
  direction: 'from' | 'to',
  finished: Promise<void>,
): void {
  const socket = socketOf(lease.client);
  if (!socket) return;
  let lastProgressAt = performance.now();
  let bytesSeen = -1;
  let isCounted = false;
  const uncount = () => {
    if (!isCounted) return;
    isCounted = false;
    statementAnswered(lease, false);
  };
  // Bytes read, and bytes handed to the kernel (written minus still buffered). Polled, not listened
  // for: pg-copy-streams' COPY TO takes the socket's only 'data' listener and reads it paused.
  const bytesMoved = () => socket.bytesRead + socket.bytesWritten - socket.writableLength;
  const readable = copy as Readable;
  const writable = copy as Writable;
  const isWaitingOnServer = () =>
    direction === 'to'
      ? socket.readableLength === 0 && readable.readableLength < readable.readableHighWaterMark
      : writable.writableEnded || writable.writableLength > 0 || socket.writableLength > 0;
  const look = () => {
    const moved = bytesMoved();
    if (moved !== bytesSeen || !isWaitingOnServer()) {
      // Progress; or time the caller's source or destination takes, which is not the server's.
      bytesSeen = moved;
      lastProgressAt = performance.now();
      uncount();
    } else if (!isCounted) {
      isCounted = true;
      statementSent(lease, false, lastProgressAt);
    }
  };
  const timer = startInterval(LOOK_MILLIS, look, 'unref');
  // pg is done with it (ReadyForQuery or an error): what the caller still does with the data is not the server's.
  void finished.then(() => {
    clearInterval(timer);
    uncount();
  });
}
