/**
 * The one thing the store needs from a database: run a query for its rows, apply a few writes
 * together or not at all. Two engines implement it — SQLite embedded in the server process
 * (sqlite.ts) and PostgreSQL for one or many nodes (postgres.ts) — and every query is written once
 * (store.ts), with `?` for parameters and SQL both engines speak.
 */
export type SqlValue = string | number | null | Uint8Array;

export interface Statement {
  readonly sql: string;
  readonly params?: readonly SqlValue[];
}

export interface SqlEngine {
  readonly kind: 'sqlite' | 'postgres';
  /** Where the data is, for people ("SQLite /var/lib/nxt-server/nxt.db"); never a password. */
  readonly where: string;
  /** A statement that returns rows (SELECT, or a write with RETURNING, committed when it returns). */
  query<Row extends object>(sql: string, params?: readonly SqlValue[]): Promise<Row[]>;
  /** One bytes value: the first column of the first row (undefined: no row), selected with
   *  Dialect.bytesOut. */
  bytes(sql: string, params?: readonly SqlValue[]): Promise<Uint8Array | undefined>;
  /** Writes applied together, or none of them (the error is thrown); durable when it resolves. */
  batch(statements: readonly Statement[]): Promise<void>;
  close(): Promise<void>;
  /** PostgreSQL only (undefined elsewhere): call `onNotify` at every NOTIFY on `channel` (a
   *  wake-up between nodes; what changed is read from the tables), and send one. */
  readonly listen?: (channel: string, onNotify: () => void) => Promise<void>;
  readonly notify?: (channel: string) => Promise<void>;
}

/** Both engines' way of writing what they differ in (DDL only: queries are shared). */
export interface Dialect {
  /** A column that numbers rows by itself, as the table's key. */
  readonly serialKey: string;
  /** Bytes. */
  readonly blob: string;
  /** A bytes column as SqlEngine.bytes reads it: PostgreSQL as base64 text (16 MiB in ~115-190
   *  ms; its hex form is twice as long and slower to decode), SQLite as it is. */
  bytesOut(column: string): string;
  /** A text field of a JSON document column (migrations that fill a new column from `doc`). */
  jsonText(column: string, key: string): string;
}

export const DIALECTS: Record<SqlEngine['kind'], Dialect> = {
  sqlite: {
    serialKey: 'INTEGER PRIMARY KEY AUTOINCREMENT', blob: 'BLOB', bytesOut: (column) => column,
    jsonText: (column, key) => `json_extract(${column}, '$.${key}')`,
  },
  postgres: {
    serialKey: 'BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY', blob: 'BYTEA', bytesOut: (column) => `encode(${column}, 'base64')`,
    jsonText: (column, key) => `(${column}::json ->> '${key}')`,
  },
};
