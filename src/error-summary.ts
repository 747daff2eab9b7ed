import { redactServerMessage, sqlStateOf } from './errors.js';

/** What is safe to log about an error: its class, code and message — never values or secrets. */
export function summarize(error: unknown): { type: string; code?: string; message: string } {
  const e = error as { name?: string; code?: unknown; message?: unknown };
  return {
    type: e?.name ?? typeof error,
    ...(typeof e?.code === 'string' ? { code: e.code } : {}),
    // A pg error's own message: a data exception may quote a bound value.
    message: redactServerMessage(String(e?.message ?? error), sqlStateOf(error)),
  };
}
