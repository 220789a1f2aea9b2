/**
 * PostgreSQL, for one node or several sharing one fleet (`--database postgres://…`), through the
 * `pg` client's connection pool. Queries are the store's shared SQL with `?` parameters, numbered
 * here ($1, $2, …) as PostgreSQL wants them.
 */
import pg from 'pg';
import { NxtError, errorMessage } from '../errors.js';
import type { SqlEngine, SqlValue, Statement } from './engine.js';

/** `?` → `$n`. The store's SQL has no `?` inside a string literal (checked by its tests). */
export function numberParameters(sql: string): string {
  let n = 0;
  return sql.replace(/\?/g, () => `$${++n}`);
}

/** The URL without its password, for logs and messages. */
export function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `PostgreSQL ${u.hostname || decodeURIComponent(u.searchParams.get('host') ?? 'localhost')}${u.port ? `:${u.port}` : ''}${u.pathname}`;
  } catch {
    return 'PostgreSQL (an unreadable URL)';
  }
}

export async function openPostgres(url: string, options: { poolSize?: number } = {}): Promise<SqlEngine> {
  const where = describeUrl(url);
  const pool = new pg.Pool({ connectionString: url, max: options.poolSize ?? 8, connectionTimeoutMillis: 10_000, application_name: 'nxt-server' });
  // An idle connection the server drops (a restart) is replaced at the next query; not a crash.
  pool.on('error', () => {});
  const failed = (err: unknown, doing: string): NxtError => pgError(err, `${doing} (${where})`);
  try {
    await pool.query('SELECT 1');
  } catch (err) {
    await pool.end().catch(() => {});
    throw failed(err, 'cannot reach the database');
  }
  const cache = new Map<string, string>();
  const text = (sql: string): string => {
    let t = cache.get(sql);
    if (t === undefined) cache.set(sql, t = numberParameters(sql));
    return t;
  };
  // LISTEN needs a connection of its own, kept open; lost, it is opened again (a wake-up missed
  // meanwhile is made up by the periodic checks of whoever listens).
  const listeners = new Map<string, (() => void)[]>();
  let listener: pg.Client | undefined;
  let closed = false;
  const openListener = async (): Promise<void> => {
    const client = new pg.Client({ connectionString: url, application_name: 'nxt-server (listen)' });
    client.on('notification', (n) => { for (const f of listeners.get(n.channel) ?? []) f(); });
    client.on('error', () => {
      listener = undefined;
      void client.end().catch(() => {});
      if (!closed) setTimeout(() => { void openListener().catch(() => {}); }, 2000).unref();
    });
    await client.connect();
    for (const channel of listeners.keys()) await client.query(`LISTEN ${channel}`);
    listener = client;
  };
  const identifier = (channel: string): string => {
    if (!/^[a-z_]+$/.test(channel)) throw new RangeError(`not a channel name: ${channel}`);
    return channel;
  };
  return {
    kind: 'postgres',
    where,
    async listen(channel: string, onNotify: () => void): Promise<void> {
      const known = listeners.get(identifier(channel));
      if (known) { known.push(onNotify); return; }
      listeners.set(channel, [onNotify]);
      try {
        if (!listener) await openListener();
        else await listener.query(`LISTEN ${channel}`);
      } catch (err) {
        throw failed(err, 'cannot listen for the other nodes');
      }
    },
    async notify(channel: string): Promise<void> {
      try {
        await pool.query(`NOTIFY ${identifier(channel)}`);
      } catch (err) {
        throw failed(err, 'cannot wake the other nodes');
      }
    },
    async query<Row extends object>(sql: string, params: readonly SqlValue[] = []): Promise<Row[]> {
      try {
        return (await pool.query(text(sql), params as SqlValue[])).rows as Row[];
      } catch (err) {
        throw failed(err, /^\s*SELECT/i.test(sql) ? 'cannot read the database' : 'cannot save to the database');
      }
    },
    async bytes(sql: string, params: readonly SqlValue[] = []): Promise<Uint8Array | undefined> {
      try {
        // The store asks for bytes as base64 (Dialect.bytesOut): the driver's own text form is hex,
        // twice as long, and its binary mode decodes every value as UTF-8 (bytes are lost).
        const [row] = (await pool.query<Record<string, string>>(text(sql), params as SqlValue[])).rows;
        return row && Buffer.from(Object.values(row)[0]!, 'base64');
      } catch (err) {
        throw failed(err, 'cannot read the database');
      }
    },
    async batch(list: readonly Statement[]): Promise<void> {
      let client: pg.PoolClient;
      try {
        client = await pool.connect();
      } catch (err) {
        throw failed(err, 'cannot reach the database');
      }
      try {
        await client.query('BEGIN');
        for (const s of list) await client.query(text(s.sql), (s.params ?? []) as SqlValue[]);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {});
        throw failed(err, 'cannot save to the database');
      } finally {
        client.release();
      }
    },
    async close(): Promise<void> {
      closed = true;
      await listener?.end().catch(() => {});
      await pool.end();
    },
  };
}

/** PostgreSQL's SQLSTATE classes that mean the same as a local disk's errors. */
function pgError(err: unknown, doing: string): NxtError {
  const code = (err as { code?: string }).code ?? '';
  if (code === '53100') return new NxtError('ENOSPC', `${doing}: the database server's disk is full`, { cause: err });
  if (code === '25006') return new NxtError('EROFS', `${doing}: the database is read-only (a standby?)`, { cause: err });
  if (code === '28P01' || code === '28000') return new NxtError('database', `${doing}: the database refused the login (${errorMessage(err)})`, { cause: err });
  if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'ETIMEDOUT' || code.startsWith('08') || code === '57P01') {
    return new NxtError('database', `${doing}: the database server is not answering (${errorMessage(err) || code})`, { cause: err });
  }
  return new NxtError('database', `${doing}: ${errorMessage(err) || code}`, { cause: err });
}
