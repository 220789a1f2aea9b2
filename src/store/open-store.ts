/**
 * `--database`: where the fleet's state lives. Nothing given: the embedded SQLite file in the
 * state dir. `postgres://…` (or `postgresql://…`): a PostgreSQL server, which several nodes may
 * share. `sqlite:PATH`: an SQLite file elsewhere.
 */
import { NxtError } from '../errors.js';
import { importStateDir } from './import-state-dir.js';
import { openPostgres } from './postgres.js';
import { openSqlite } from './sqlite.js';
import { Store, embeddedPath } from './store.js';

export function checkDatabaseUrl(database: string): void {
  if (/^postgres(ql)?:\/\//.test(database) || /^sqlite:.+/.test(database)) return;
  throw new NxtError('usage', `--database "${database.replace(/\/\/[^@/]*@/, '//…@')}" is neither a postgres:// URL nor sqlite:PATH`);
}

export async function openStore(o: { database?: string; stateDir: string; note: (line: string) => void; warn: (line: string) => void }): Promise<Store> {
  if (o.database !== undefined) checkDatabaseUrl(o.database);
  const engine = o.database === undefined ? await openSqlite(embeddedPath(o.stateDir))
    : o.database.startsWith('sqlite:') ? await openSqlite(o.database.slice('sqlite:'.length))
      : await openPostgres(o.database);
  const store = await Store.open(engine);
  try {
    const imported = await importStateDir(store, o.stateDir, o.warn);
    if (imported.files.length > 0) o.note(`imported ${imported.files.join(', ')} (${imported.records} records) into ${store.where}; the files are kept as *.imported`);
  } catch (err) {
    await store.close();
    throw err;
  }
  return store;
}
