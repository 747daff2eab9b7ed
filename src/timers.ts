/**
 * Every timer of the library is made here, and every call site says whether its timer may keep the
 * process alive: `'unref'` (the rule: a pending timer alone never holds Node open) or `'ref'` (kept on
 * purpose, with the reason at the call site). A timer a caller's pending call waits on is `'ref'`, as
 * the call's socket would be: a one-shot script awaiting the call must get its result or its error,
 * not exit mid-wait. The ref'd timers: shutdown's keep-alive (src/database.ts), ready()'s backoff sleep
 * (src/pool/ready.ts), the pause between two searches of a host list (src/pool/host-placement.ts), the
 * pause before a retry of work a standby refused (src/call-frame.ts), an acquire's wait for a pooled
 * connection while the server has no slot (src/pool/node-pool.ts), a `listen()` waiting for the
 * listener's connection and its LISTEN (src/streams/listener.ts) and the CLI's keep-alive.
 * test/unit/timers.test.ts checks that nothing else in src calls setTimeout or setInterval, and that
 * `'ref'` appears only there.
 */

/** Whether a timer may keep the process alive: `'unref'` unless there is a written reason. */
export type TimerHold = 'unref' | 'ref';

/** Calls `fn` once after `millis` (negative counts as 0). Clear it with `clearTimeout`. */
export function startTimer(millis: number, fn: () => void, hold: TimerHold): NodeJS.Timeout {
  const timer = setTimeout(fn, Math.max(0, millis));
  if (hold === 'unref') timer.unref();
  return timer;
}

/** Calls `fn` every `millis`. Clear it with `clearInterval`. */
export function startInterval(millis: number, fn: () => void, hold: TimerHold): NodeJS.Timeout {
  const timer = setInterval(fn, millis);
  if (hold === 'unref') timer.unref();
  return timer;
}

/**
 * Resolves after `millis` (negative counts as 0), or as soon as `signal` aborts (at once when it has
 * already): the caller looks at the signal afterwards. Never rejects.
 */
export function sleep(millis: number, hold: TimerHold, signal?: AbortSignal): Promise<void> {
  if (!signal) return new Promise((resolve) => startTimer(millis, resolve, hold));
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = startTimer(millis, done, hold);
    signal.addEventListener('abort', done, { once: true });
  });
}

/**
 * Arms a deadline of `millis`, then starts `work`: settles as the work does, or, if the deadline comes
 * first, resolves with `onTimeout()` (which may instead throw to reject). The deadline is armed before
 * the work starts, so it fires before any timer of the same length the work arms (pg's connect
 * timeout, for example). The timer is cleared as soon as either side settles. The work is not
 * stopped: the caller cleans up what it started (destroys the connection, for example); a rejection
 * of the work after the deadline is handled by the race, never reported as unhandled.
 */
export async function raceDeadline<T, U>(
  work: () => Promise<T>,
  millis: number,
  onTimeout: () => U,
  hold: TimerHold,
): Promise<T | U> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<U>((resolve, reject) => {
    timer = startTimer(
      millis,
      () => {
        try {
          resolve(onTimeout());
        } catch (error) {
          reject(error);
        }
      },
      hold,
    );
  });
  try {
    return await Promise.race([work(), deadline]);
  } finally {
    clearTimeout(timer);
  }
}
