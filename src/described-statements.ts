import pg from 'pg';

/**
 * Named statements sent without asking the server to describe their result again. pg sends Bind,
 * Describe, Execute and Sync for every use of a prepared statement, so the server builds and sends a
 * RowDescription each time and pg parses it each time, although a prepared statement's result type
 * cannot change: if DDL would change it, the server refuses to run the statement (SQLSTATE 0A000,
 * which src/query-client.ts answers by preparing the text afresh). A {@link DescribedQuery} remembers
 * the description the server gave for its name on its connection and, once the connection has parsed
 * the statement, sends Bind, Execute and Sync only. Whenever it sends Parse it also sends Describe,
 * so a statement parsed again (after pg forgot it) is described again.
 */

/** What pg's Connection offers that this file uses (pg 8.23's own, undeclared in @types/pg). */
interface QueryConnection {
  parsedStatements: Record<string, string | undefined>;
  close(message: { type: 'S'; name: string }): void;
  bind(message: {
    portal: string;
    statement: string;
    values: unknown[];
    binary: boolean | undefined;
    valueMapper: unknown;
  }): void;
  sync(): void;
}

/** pg.Query's members this file overrides or calls (pg 8.23's own, undeclared in @types/pg). */
interface QueryInternals {
  text: string;
  name: string;
  values: unknown[];
  portal: string;
  binary: boolean | undefined;
  rows: number | undefined;
  _result: { addFields(fields: readonly pg.FieldDef[]): void };
  _accumulateRows: boolean;
  submit(connection: QueryConnection): Error | null;
  prepare(connection: QueryConnection): void;
  handleRowDescription(message: { fields: pg.FieldDef[] }): void;
  handleError(error: Error, connection: QueryConnection): void;
  _getRows(connection: QueryConnection, rows: number | undefined): void;
}

type QueryCallback = (error: Error | undefined, result: unknown) => void;
/** A statement as {@link DescribedQuery} takes it: its text, or a config with only these keys (pg copies it). */
export type DescribedStatement = string | { text: string; rowMode?: 'array'; types?: pg.CustomTypesConfig };
const BaseQuery = pg.Query as unknown as new (
  statement: DescribedStatement,
  values: unknown[],
  callback: QueryCallback,
) => QueryInternals;

/** pg's function that turns a bound value into its wire text (the one pg's own Query hands to bind). */
const prepareValue: unknown = (pg as unknown as { utils?: { prepareValue?: unknown } }).utils?.prepareValue;

/** Each connection's remembered descriptions, by statement name. */
const descriptions = new WeakMap<QueryConnection, Map<string, readonly pg.FieldDef[]>>();

/** Each connection's statement names to prepare afresh at their next use ({@link prepareAfresh}). */
const refreshes = new WeakMap<QueryConnection, Set<string>>();
/** How many names wait in {@link refreshes}: while none does, a statement does not look there. */
let pendingRefreshes = 0;

/**
 * Makes `client`'s connection prepare `name` afresh the next time a {@link DescribedQuery} sends it:
 * Close, Parse and Describe go out with its Bind, in the same write, so the server plans it with
 * parameter types inferred from the schema as it is now. For a statement that failed in a
 * transaction on what may be a stale parameter type, where it cannot be sent again at once.
 */
export function prepareAfresh(client: pg.Client, name: string): void {
  const connection = (client as unknown as { connection?: QueryConnection }).connection;
  if (connection === undefined) return;
  let names = refreshes.get(connection);
  if (names === undefined) refreshes.set(connection, (names = new Set()));
  if (!names.has(name)) pendingRefreshes++;
  names.add(name);
}

/** Whether `connection` was asked to prepare `name` afresh (the request is used up). */
function takeRefresh(connection: QueryConnection, name: string): boolean {
  if (pendingRefreshes === 0 || refreshes.get(connection)?.delete(name) !== true) return false;
  pendingRefreshes--;
  return true;
}

/**
 * A named statement (text, values and a callback, as pg.Query takes them) that is described once per
 * connection. Its automatic name is set when pg submits it, not before: what looks at the query while
 * `client.query` takes it (OpenTelemetry's instrumentation-pg names its span after a query's `name`)
 * sees the caller's statement, as it would without automatic prepared statements.
 */
export class DescribedQuery extends BaseQuery {
  /** The connection this query asked to describe its result on; its RowDescription is remembered for it. */
  #describing: QueryConnection | undefined;
  readonly #name: string;
  /** Set when pg sends it: the connection had prepared this statement before (no Parse went out). */
  wasParsed = false;

  constructor(statement: DescribedStatement, values: unknown[], name: string, callback: QueryCallback) {
    super(statement, values, callback);
    this.#name = name;
  }

  override submit(connection: QueryConnection): Error | null {
    this.name = this.#name;
    return super.submit(connection);
  }

  override prepare(connection: QueryConnection): void {
    if (takeRefresh(connection, this.name) && connection.parsedStatements[this.name] === this.text) {
      connection.close({ type: 'S', name: this.name });
      delete connection.parsedStatements[this.name];
      descriptions.get(connection)?.delete(this.name);
    }
    this.wasParsed = connection.parsedStatements[this.name] === this.text;
    const fields = this.wasParsed ? descriptions.get(connection)?.get(this.name) : undefined;
    if (fields === undefined || prepareValue === undefined) {
      this.#describing = connection;
      super.prepare(connection);
      return;
    }
    try {
      connection.bind({
        portal: this.portal,
        statement: this.name,
        values: this.values,
        binary: this.binary,
        valueMapper: prepareValue,
      });
    } catch (error) {
      // Nothing was written (the value could not be serialized); the statement stays prepared.
      connection.sync();
      this.handleError(error as Error, connection);
      return;
    }
    this._result.addFields(fields);
    this._accumulateRows = true;
    this._getRows(connection, this.rows);
  }

  override handleRowDescription(message: { fields: pg.FieldDef[] }): void {
    super.handleRowDescription(message);
    const connection = this.#describing;
    if (connection === undefined) return;
    let known = descriptions.get(connection);
    if (known === undefined) descriptions.set(connection, (known = new Map()));
    // Shared by every later result of this statement on this connection: frozen, so a caller cannot change it.
    for (const field of message.fields) Object.freeze(field);
    known.set(this.name, Object.freeze(message.fields));
  }
}
