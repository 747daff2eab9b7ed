import type pg from 'pg';

/**
 * What a pooled connection's session holds beyond its startup state, so that one caller's `SET`,
 * `LISTEN` or temp table never reaches the next caller. Read from the command tag pg reports for each
 * caller statement (`result.command`, the tag's first word), with a look at the text for the few tags
 * that need it. A clean session costs nothing on release; a changed one is reset in one round trip,
 * or destroyed when no statement can restore it. Shared by the Database's leases and the drop-in Pool
 * (docs/operations.md, "Session state between callers").
 */

/** Bit set of what a session changed; {@link SESSION_CLEAN} when nothing. */
export type SessionChanges = number;

export const SESSION_CLEAN: SessionChanges = 0;
/** `SET`, `RESET`, `set_config(..., false)`: undone by `RESET ALL`. */
const SETTINGS = 1;
/** `LISTEN`: undone by `UNLISTEN *`. */
const LISTENING = 2;
/** `CREATE TEMP ...`: undone by `DISCARD TEMP`. */
const TEMP_OBJECTS = 4;
/** A session advisory lock: undone by `pg_advisory_unlock_all()`. */
const ADVISORY_LOCKS = 8;
/** `SET ROLE`, `SET SESSION AUTHORIZATION`: `RESET ALL` leaves them (GUC_NO_RESET_ALL). Destroy. */
const ROLE = 16;
/** `PREPARE`, `DEALLOCATE`, `DISCARD ALL`: pg's list of prepared names would lie. Destroy. */
const PREPARED = 32;
/**
 * The holder changed what the connection's own setup changed (a drop-in Pool `connect` listener's
 * `SET`): the reset would undo the setup too. Destroy.
 */
const OVERLAPS_SETUP = 64;
/** `DECLARE ... WITH HOLD`: the cursor outlives its transaction; undone by `CLOSE ALL`. */
const HELD_CURSORS = 128;
/** What an anonymous `DO` block may have changed through PERFORM / EXECUTE: everything a reset undoes. */
const ANYTHING_RESETTABLE = SETTINGS | LISTENING | TEMP_OBJECTS | ADVISORY_LOCKS | HELD_CURSORS;

const DESTROY = ROLE | PREPARED | OVERLAPS_SETUP;

/** SET forms that end with the transaction: nothing to undo. */
const TRANSACTION_SCOPED_SET = /^\s*set\s+(?:local|transaction|constraints)\b/i;
const IDENTITY = /\b(?:role|session\s+authorization)\b/i;
const TEMP_CREATE = /^\s*create\s+(?:or\s+replace\s+)?(?:(?:global|local)\s+)?temp(?:orary)?\b/i;
const TEMP_ANYWHERE = /\btemp(?:orary)?\b/i;
/** An object created in the session's temp schema by name (`CREATE TABLE pg_temp.t`, `CREATE FUNCTION pg_temp.f`). */
const TEMP_SCHEMA = /\bpg_temp"?\s*\./i;
/** `SELECT ... INTO TEMP t` (tag SELECT). */
const INTO_TEMP = /\binto\s+(?:(?:global|local)\s+)?(?:temp(?:orary)?\b|(?:unlogged\s+)?(?:table\s+)?"?pg_temp"?\s*\.)/i;
const CREATE_IN_TEMP_SCHEMA = /\bcreate\b[^;]*?\bpg_temp"?\s*\./i;
const CREATE_TEMP_ANYWHERE = /\bcreate\s+(?:(?:global|local)\s+)?temp(?:orary)?\b/i;
const WITH_HOLD = /\bwith\s+hold\b/i;
/** Leading `--` and `/* *\/` comments (as ORMs and query tags add them), which the anchored checks must skip. */
const LEADING_COMMENTS = /^(?:\s*(?:--[^\n]*(?:\n|$)|\/\*[\s\S]*?\*\/))*/;
const DISCARD_ALL = /\bdiscard\s+all\b/i;
const SESSION_FUNCTIONS = /advisory|set_config/i;
/**
 * A word every check of {@link selectChanges} needs (temp, pg_temp, into, advisory, set_config): a
 * SELECT without one changed nothing.
 */
const SELECT_SUSPECT = /temp|into|advisory|set_config/i;

/** Whether the session ran `PREPARE`, `DEALLOCATE` or `DISCARD ALL`: pg's list of its prepared statements may lie. */
export function hasTouchedPreparedStatements(changes: SessionChanges): boolean {
  return (changes & PREPARED) !== 0;
}

/** How to give a connection back. */
export type ReleasePlan =
  | { readonly action: 'reuse' }
  | {
      readonly action: 'reset';
      /** One simple-protocol message. */
      readonly sql: string;
      /** It includes `RESET ALL`: the session's settings, read-only default included, are back to their startup values. */
      readonly resetsSettings: boolean;
    }
  | { readonly action: 'destroy'; readonly reason: string };

const REUSE: ReleasePlan = Object.freeze({ action: 'reuse' });

/**
 * The changes one statement made, from its tag and (for a few tags) its text. In a text of several
 * statements (`isOneOfSeveral`) the text checks cannot tell which statement they read, so they lean
 * to "changed".
 */
function changesOf(command: string | null | undefined, fullText: string, isOneOfSeveral: boolean): SessionChanges {
  // The hot path: most statements are SELECTs whose text has none of the words below (one scan).
  if (command === 'SELECT' && !SELECT_SUSPECT.test(fullText)) return SESSION_CLEAN;
  const text = fullText.replace(LEADING_COMMENTS, '');
  switch (command) {
    case 'SELECT':
      // CREATE TABLE AS and SELECT INTO report SELECT; functions with session effects hide behind it too.
      return selectChanges(text, isOneOfSeveral);
    case 'SET':
    case 'RESET':
      if (IDENTITY.test(text)) return ROLE;
      return !isOneOfSeveral && command === 'SET' && TRANSACTION_SCOPED_SET.test(text) ? SESSION_CLEAN : SETTINGS;
    case 'LISTEN':
      return LISTENING;
    case 'CREATE':
      return (isOneOfSeveral ? TEMP_ANYWHERE : TEMP_CREATE).test(text) || TEMP_SCHEMA.test(text) ? TEMP_OBJECTS : SESSION_CLEAN;
    case 'DECLARE':
      return WITH_HOLD.test(text) ? HELD_CURSORS : SESSION_CLEAN;
    case 'DO':
      // An anonymous block can SET, LISTEN, create temp objects or lock through PERFORM / EXECUTE.
      return IDENTITY.test(text) ? ROLE : ANYTHING_RESETTABLE;
    case 'DISCARD':
      return DISCARD_ALL.test(text) ? PREPARED : SESSION_CLEAN;
    case 'PREPARE':
    case 'DEALLOCATE':
      return PREPARED;
    default:
      return SESSION_CLEAN;
  }
}

/** The changes of a statement tagged SELECT: a temp table made by CREATE TABLE AS / SELECT INTO, or a session function. */
function selectChanges(text: string, isOneOfSeveral: boolean): SessionChanges {
  const createsTemp =
    (isOneOfSeveral ? CREATE_TEMP_ANYWHERE : TEMP_CREATE).test(text) || CREATE_IN_TEMP_SCHEMA.test(text) || INTO_TEMP.test(text);
  const changes = createsTemp ? TEMP_OBJECTS : SESSION_CLEAN;
  if (!SESSION_FUNCTIONS.test(text)) return changes;
  return (
    changes |
    (/pg_(?:try_)?advisory_lock(?:_shared)?\s*\(/i.test(text) ? ADVISORY_LOCKS : 0) |
    (/set_config\s*\(/i.test(text) ? SETTINGS : 0)
  );
}

/**
 * Folds one caller statement's result into `changes`. `text` is the statement text when known. A text
 * of several statements gives pg several results: each tag counts, and the text as a whole is what
 * the text checks see (a conservative reading). A failed statement has no result and changes nothing
 * that its transaction's end does not undo.
 */
export function observeStatement(
  changes: SessionChanges,
  text: string | undefined,
  result: pg.QueryResult | readonly pg.QueryResult[] | undefined,
): SessionChanges {
  if (result === undefined) return changes;
  if (!Array.isArray(result)) return changes | changesOf((result as pg.QueryResult).command, text ?? '', false);
  for (const one of result as readonly pg.QueryResult[]) changes |= changesOf(one.command, text ?? '', true);
  return changes;
}

/**
 * `changes` measured against the connection's baseline, what its own setup changed before its first
 * caller (a drop-in Pool `connect` listener or `onConnect` hook): a holder's change of the same kind
 * cannot be reset without undoing that setup, so the connection is destroyed instead.
 */
export function beyondBaseline(changes: SessionChanges, baseline: SessionChanges): SessionChanges {
  return (changes & baseline) === SESSION_CLEAN ? changes : changes | OVERLAPS_SETUP;
}

/** A statement name quoted as an SQL identifier. */
function quoteName(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/**
 * What release must do for a session with `changes`: nothing, one reset message, or destroy.
 * `preparedNames`: statements the holder prepared by name through pg (`name` in a query config, on a
 * drop-in Pool client), deallocated in the same message.
 */
export function planRelease(changes: SessionChanges, preparedNames?: readonly string[]): ReleasePlan {
  if (changes === SESSION_CLEAN && preparedNames === undefined) return REUSE;
  if (changes & DESTROY) {
    const reason =
      changes & ROLE
        ? 'the session changed its role (SET ROLE / SESSION AUTHORIZATION), which RESET ALL does not undo'
        : changes & PREPARED
          ? "the session prepared or deallocated statements by SQL (PREPARE, DEALLOCATE, DISCARD ALL), which pg's own record of prepared statements does not follow"
          : "the session changed what the connection's own setup (a connect listener) set, which a reset would undo";
    return { action: 'destroy', reason };
  }
  const statements: string[] = [];
  if (changes & SETTINGS) statements.push('RESET ALL');
  if (changes & LISTENING) statements.push('UNLISTEN *');
  if (changes & TEMP_OBJECTS) statements.push('DISCARD TEMP');
  if (changes & HELD_CURSORS) statements.push('CLOSE ALL');
  if (changes & ADVISORY_LOCKS) statements.push('SELECT pg_advisory_unlock_all()');
  for (const name of preparedNames ?? []) statements.push(`DEALLOCATE ${quoteName(name)}`);
  return { action: 'reset', sql: statements.join('; '), resetsSettings: (changes & SETTINGS) !== 0 };
}
