/**
 * The embedded engine: SQLite in the server's own process, in one file of the state dir
 * (`nxt.db`, with its write-ahead log beside it). Write-ahead logging with synchronous=FULL: a
 * write is on disk when its call returns, so a server killed at any moment (kill -9, power loss)
 * keeps every decision it acknowledged. Why SQLite and not the others: docs/storage.md.
 *
 * The binding is Node's own `node:sqlite` where the running Node has it (22.13 and later, 24), and
 * better-sqlite3 (a native addon, built at install) on Node 20. Both are synchronous and take the
 * same calls; each is loaded only when used, so a Node 24 never loads an addon built for Node 20.
 */
import { NxtError, errorMessage } from '../errors.js';
import type { SqlEngine, SqlValue, Statement } from './engine.js';

interface SyncStatement {
  all(...params: SqlValue[]): unknown[];
  run(...params: SqlValue[]): unknown;
}
interface SyncDatabase {
  exec(sql: string): void;
  prepare(sql: string): SyncStatement;
  close(): void;
}

/** Which binding this Node uses: node:sqlite, or better-sqlite3 where there is none. */
async function openBinding(path: string): Promise<{ db: SyncDatabase; binding: string }> {
  const nodeSqlite = await importNodeSqlite();
  if (nodeSqlite) return { db: new nodeSqlite.DatabaseSync(path) as unknown as SyncDatabase, binding: 'node:sqlite' };
  let Database: typeof import('better-sqlite3');
  try {
    ({ default: Database } = await import('better-sqlite3'));
  } catch (err) {
    throw new NxtError('storage', `this Node (${process.version}) has no SQLite of its own (22.13 and later have), and better-sqlite3 is not installed or not built for it `
      + `(npm ci builds it, with python3, make and g++): use a newer Node, build it, or give --database postgres://… (${errorMessage(err)})`, { cause: err });
  }
  return { db: new Database(path) as unknown as SyncDatabase, binding: 'better-sqlite3' };
}

async function importNodeSqlite(): Promise<{ DatabaseSync: new (path: string) => unknown } | undefined> {
  if (process.env.NXT_SQLITE_BINDING === 'better-sqlite3') return undefined;
  // Node 22 prints "SQLite is an experimental feature" once on loading it; the store is not
  // experimental to the operator reading the server's log, so that one warning is left out.
  const emitWarning = process.emitWarning;
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    if (!String(warning).includes('SQLite')) (emitWarning as (...a: unknown[]) => void).call(process, warning, ...rest);
  }) as typeof process.emitWarning;
  try {
    return await import('node:sqlite' as string) as { DatabaseSync: new (path: string) => unknown };
  } catch {
    return undefined; // Node 20, or a Node 22 before 22.13 without --experimental-sqlite
  } finally {
    process.emitWarning = emitWarning;
  }
}

export async function openSqlite(path: string): Promise<SqlEngine> {
  let opened: { db: SyncDatabase; binding: string };
  try {
    opened = await openBinding(path);
  } catch (err) {
    throw err instanceof NxtError ? err : sqliteError(err, `cannot open the database ${path}`);
  }
  const { db, binding } = opened;
  try {
    db.exec('PRAGMA journal_mode = WAL');
    db.exec('PRAGMA synchronous = FULL');
    // A second process on the same file (nxt-server ctl never opens it; an operator's sqlite3
    // might) is waited for, not failed on.
    db.exec('PRAGMA busy_timeout = 5000');
  } catch (err) {
    db.close();
    throw sqliteError(err, `cannot open the database ${path}`);
  }
  const statements = new Map<string, SyncStatement>();
  const prepared = (sql: string): SyncStatement => {
    let s = statements.get(sql);
    if (!s) statements.set(sql, s = db.prepare(sql));
    return s;
  };
  let closed = false;
  return {
    kind: 'sqlite',
    where: `SQLite ${path} (${binding})`,
    query<Row extends object>(sql: string, params: readonly SqlValue[] = []): Promise<Row[]> {
      try {
        return Promise.resolve(prepared(sql).all(...params) as Row[]);
      } catch (err) {
        return Promise.reject(sqliteError(err, `${/^\s*SELECT/i.test(sql) ? 'cannot read the database' : 'cannot save to the database'} ${path}`));
      }
    },
    async bytes(sql: string, params: readonly SqlValue[] = []): Promise<Uint8Array | undefined> {
      const [row] = prepared(sql).all(...params) as Record<string, Uint8Array>[];
      return row && Object.values(row)[0];
    },
    batch(list: readonly Statement[]): Promise<void> {
      // Synchronous from BEGIN to COMMIT: nothing else can slip into the transaction.
      try {
        db.exec('BEGIN IMMEDIATE');
        try {
          for (const s of list) prepared(s.sql).run(...(s.params ?? []));
          db.exec('COMMIT');
        } catch (err) {
          try { db.exec('ROLLBACK'); } catch { /* a failed COMMIT may have rolled back already */ }
          throw err;
        }
        return Promise.resolve();
      } catch (err) {
        return Promise.reject(sqliteError(err, `cannot save to the database ${path}`));
      }
    },
    close(): Promise<void> {
      if (!closed) { closed = true; db.close(); }
      return Promise.resolve();
    },
  };
}

/** SQLite's result codes (the primary code is the low byte of an extended one). */
const SQLITE_CODES: Record<number, [code: string, says: string]> = {
  13: ['ENOSPC', 'the disk is full'],
  8: ['EROFS', 'the database is read-only (a read-only filesystem, or not the server user\'s file)'],
  10: ['EIO', 'an I/O error (the disk may be failing)'],
  14: ['EACCES', 'it cannot be opened (a missing folder, or permission denied)'],
  11: ['bad-state', 'the database file is damaged: restore it from a backup'],
  26: ['bad-state', 'the file is not an SQLite database'],
  5: ['busy', 'another process holds the database'],
};
const NAMED: Record<string, number> = { SQLITE_FULL: 13, SQLITE_READONLY: 8, SQLITE_IOERR: 10, SQLITE_CANTOPEN: 14, SQLITE_CORRUPT: 11, SQLITE_NOTADB: 26, SQLITE_BUSY: 5 };

/** One error for both bindings: better-sqlite3 names the code (SQLITE_FULL), node:sqlite numbers it. */
function sqliteError(err: unknown, doing: string): NxtError {
  const e = err as { code?: string; errcode?: number };
  const primary = typeof e.errcode === 'number' ? e.errcode & 0xff : NAMED[String(e.code).replace(/^(SQLITE_[A-Z]+?)(_.*)?$/, '$1')];
  const known = primary === undefined ? undefined : SQLITE_CODES[primary];
  if (known) return new NxtError(known[0], `${doing}: ${known[1]}`, { cause: err });
  return new NxtError('storage', `${doing}: ${errorMessage(err)}`, { cause: err });
}
