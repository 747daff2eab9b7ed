/**
 * pg reads some of its settings from a connection string's query as well as from config keys
 * (`?statement_timeout=5000`, `?options=-c%20search_path%3Dapp`), the URL's value winning over the
 * key's. The Database ignores a URL parameter it has no field for, with a warning; the drop-in Pool,
 * which gives every pg key pg's meaning or refuses it by name, takes these out of the URL and handles
 * them as the keys they stand for.
 */

/** pg's keys that it also reads from a connection string's query, and the Database's URL does not. */
const URL_KEYS = [
  'statement_timeout',
  'lock_timeout',
  'idle_in_transaction_session_timeout',
  'query_timeout',
  'options',
  'client_encoding',
  'fallback_application_name',
] as const;
const MILLISECOND_KEYS: ReadonlySet<string> = new Set([
  'statement_timeout',
  'lock_timeout',
  'idle_in_transaction_session_timeout',
  'query_timeout',
]);

/**
 * `connectionString` without the parameters of {@link URL_KEYS}, and those parameters as config
 * entries (durations as numbers). A malformed duration is a problem named after the parameter.
 */
export function splitUrlSettings(
  connectionString: string,
  problems: string[],
): { connectionString: string; entries: [string, unknown][] } {
  const queryAt = connectionString.indexOf('?');
  if (queryAt < 0) return { connectionString, entries: [] };
  const hashAt = connectionString.indexOf('#', queryAt);
  const end = hashAt < 0 ? connectionString.length : hashAt;
  const params = new URLSearchParams(connectionString.slice(queryAt + 1, end));
  const entries: [string, unknown][] = [];
  let isChanged = false;
  for (const key of URL_KEYS) {
    const value = params.get(key);
    if (value === null) continue;
    params.delete(key);
    isChanged = true;
    if (!MILLISECOND_KEYS.has(key)) entries.push([key, value]);
    else if (/^\d{1,10}$/.test(value)) entries.push([key, Number(value)]);
    else problems.push(`connectionString parameter ${key} must be a non-negative integer (ms).`);
  }
  if (!isChanged) return { connectionString, entries };
  const rest = params.toString();
  return {
    connectionString: `${connectionString.slice(0, queryAt)}${rest ? `?${rest}` : ''}${connectionString.slice(end)}`,
    entries,
  };
}
