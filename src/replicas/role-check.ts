import type pg from 'pg';
import { onParameterStatus } from '../client-internals.js';
import { describeRole, describeTarget, matchesTarget, type ServerRole, type TargetSessionAttrs } from './session-attrs.js';

/** ParameterStatus values of each connection, as the server last reported them. */
const parameters = new WeakMap<pg.Client, Map<string, string>>();

/**
 * Records the ParameterStatus messages of `client` (call before it connects) and calls `onRoleChange`
 * when `in_hot_standby` changes after startup (a standby promoted under an open session).
 */
export function watchServerParameters(client: pg.Client, onRoleChange: (isInHotStandby: boolean) => void): void {
  const values = new Map<string, string>();
  parameters.set(client, values);
  onParameterStatus(client, (name, value) => {
    const before = values.get(name);
    values.set(name, value);
    if (name === 'in_hot_standby' && before !== undefined && before !== value) onRoleChange(value === 'on');
  });
}

/** A ParameterStatus value the server reported on `client`, if it did. */
export function serverParameter(client: pg.Client, name: string): string | undefined {
  return parameters.get(client)?.get(name);
}

/**
 * The server's role from what it reported at startup, without a round trip (PostgreSQL 14+ reports
 * `in_hot_standby`); for older servers (and poolers that do not pass it on), one query.
 * `isReadOnlyOurs`: the library set default_transaction_read_only for the session itself, so the
 * reported value says nothing about the server and is left out.
 */
export async function readServerRole(client: pg.Client, isReadOnlyOurs: boolean): Promise<ServerRole> {
  const hotStandby = serverParameter(client, 'in_hot_standby');
  const readOnly = serverParameter(client, 'default_transaction_read_only');
  if (hotStandby !== undefined)
    return {
      isInHotStandby: hotStandby === 'on',
      isDefaultReadOnly: isReadOnlyOurs || readOnly === undefined ? undefined : readOnly === 'on',
    };
  const { rows } = await client.query<{ in_recovery: boolean; read_only: string }>(
    "SELECT pg_is_in_recovery() AS in_recovery, current_setting('default_transaction_read_only') AS read_only",
  );
  const row = rows[0]!;
  return { isInHotStandby: row.in_recovery, isDefaultReadOnly: isReadOnlyOurs ? undefined : row.read_only === 'on' };
}

/** A new connection reached a server whose role does not satisfy target_session_attrs; it was closed. */
export class RoleMismatchError extends Error {
  constructor(
    readonly hostKey: string,
    readonly role: ServerRole,
    target: TargetSessionAttrs,
  ) {
    super(
      `${hostKey} is ${describeRole(role)}, and target_session_attrs=${target} needs a server that ${describeTarget(target)}`,
    );
    this.name = 'RoleMismatchError';
  }
}

/** Throws {@link RoleMismatchError} unless `role` satisfies `target` in search pass `pass`. */
export function checkRole(hostKey: string, role: ServerRole, target: TargetSessionAttrs, pass: 1 | 2): void {
  if (!matchesTarget(target, role, pass)) throw new RoleMismatchError(hostKey, role, target);
}
