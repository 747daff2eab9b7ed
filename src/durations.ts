/**
 * Durations callers pass in. Node keeps a timer's delay in a signed 32-bit integer: a longer delay
 * fires after 1 ms (with a TimeoutOverflowWarning), which would turn a generous deadline into an
 * immediate one. Every caller-given duration is checked against that bound.
 */

/** The longest delay a Node timer keeps: 2^31−1 ms (about 24.8 days). */
export const MAX_TIMER_MILLIS = 2_147_483_647;

/**
 * `value` when it is undefined or a number of milliseconds from `min` (1, or 0 where 0 means "now")
 * to {@link MAX_TIMER_MILLIS}.
 * @throws {TypeError} naming `name`, the accepted range and why the bound exists.
 */
export function checkMillis(value: unknown, name: string, min: 0 | 1 = 1): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !(value >= min && value <= MAX_TIMER_MILLIS))
    throw new TypeError(
      `${name} must be a number of milliseconds from ${min} to ${MAX_TIMER_MILLIS} (the longest delay a Node timer keeps)`,
    );
  return value;
}
