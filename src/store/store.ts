/**
 * The fleet's durable state, whatever holds it: the one interface the server's parts use
 * (enrollment decisions, registrations, jobs, releases, history, API tokens, campaigns), written
 * once in SQL over an engine (engine.ts). Open it with openStore: the embedded SQLite file in the
 * state dir by default, or PostgreSQL given a postgres:// URL.
 *
 * Writes go one after another, in the order they were asked for (a later save of a record never
 * lands before an earlier one); each resolves once the engine has it on disk.
 */
import { join } from 'node:path';
import type { DeviceRecord } from '../server/devices.js';
import type { HistoryEntry } from '../server/history.js';
import type { Job } from '../server/job-store.js';
import type { SavedClient } from '../server/registry.js';
import type { StoredRelease } from '../server/release-store.js';
import type { TokenRecord } from '../server/api-tokens.js';
import type { CampaignRecord } from '../server/campaign.js';
import { formatReleaseVersion } from '../protocol/release-version.js';
import type { SqlEngine, SqlValue, Statement } from './engine.js';
import { migrate } from './schema.js';

export const EMBEDDED_FILE = 'nxt.db';

const doc = (value: unknown): string => JSON.stringify(value);
const parse = <T>(rows: readonly { doc: string }[]): T[] => rows.map((r) => JSON.parse(r.doc) as T);

export class Store {
  private writes: Promise<unknown> = Promise.resolve();

  /** previousVersion: the schema version the database had (0: it was new, and empty). */
  private constructor(readonly engine: SqlEngine, readonly previousVersion: number) {}

  static async open(engine: SqlEngine): Promise<Store> {
    try {
      return new Store(engine, await migrate(engine));
    } catch (err) {
      await engine.close();
      throw err;
    }
  }

  get where(): string { return this.engine.where; }

  close(): Promise<void> {
    return this.writes.then(() => this.engine.close(), () => this.engine.close());
  }

  // --- enrollment decisions

  async devices(): Promise<DeviceRecord[]> {
    return parse(await this.engine.query<{ doc: string }>('SELECT doc FROM devices ORDER BY id'));
  }

  saveDevices(records: readonly DeviceRecord[]): Promise<void> {
    return this.write(records.map((d) => ({
      sql: 'INSERT INTO devices (id, state, doc) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET state = excluded.state, doc = excluded.doc',
      params: [d.id, d.state, doc(d)],
    })));
  }

  // --- registrations (soft state)

  async registrations(): Promise<SavedClient[]> {
    return parse(await this.engine.query<{ doc: string }>('SELECT doc FROM registrations ORDER BY id'));
  }

  saveRegistrations(changed: readonly SavedClient[], removed: readonly string[]): Promise<void> {
    return this.write([
      ...changed.map((c) => ({ sql: 'INSERT INTO registrations (id, doc) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET doc = excluded.doc', params: [c.id, doc(c)] })),
      ...removed.map((id) => ({ sql: 'DELETE FROM registrations WHERE id = ?', params: [id] })),
    ]);
  }

  // --- jobs

  async jobs(): Promise<Job[]> {
    return parse(await this.engine.query<{ doc: string }>('SELECT doc FROM jobs ORDER BY id'));
  }

  /** A job id no node has handed out. */
  async nextJobId(): Promise<number> {
    const run = this.writes.then(() => this.engine.query<{ value: number | string }>("UPDATE counters SET value = value + 1 WHERE name = 'job' RETURNING value"));
    this.writes = run.catch(() => {});
    const [row] = await run;
    return Number(row!.value);
  }

  saveJob(job: Job): Promise<void> {
    return this.write([{
      sql: 'INSERT INTO jobs (id, device, state, doc) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET state = excluded.state, doc = excluded.doc',
      params: [job.id, job.device, job.state, doc(job)],
    }]);
  }

  // --- releases pushed

  async releases(): Promise<StoredRelease[]> {
    return parse(await this.engine.query<{ doc: string }>('SELECT doc FROM releases ORDER BY sha256, version, for_key'));
  }

  addRelease(r: StoredRelease): Promise<void> {
    return this.write([{
      sql: 'INSERT INTO releases (sha256, version, for_key, doc) VALUES (?, ?, ?, ?) ON CONFLICT (sha256, version, for_key) DO NOTHING',
      params: [r.sha256, formatReleaseVersion(r.version), r.for === undefined ? '' : doc(r.for), doc(r)],
    }]);
  }

  // --- push history

  appendHistory(e: HistoryEntry): Promise<void> {
    return this.write([{ sql: 'INSERT INTO history (client, doc) VALUES (?, ?)', params: [e.client, doc(e)] }]);
  }

  /** Oldest first; only the clients whose id starts with `clientPrefix`, if given; only the
   *  `last` newest, if given. */
  async history(clientPrefix?: string, last?: number): Promise<HistoryEntry[]> {
    const where = clientPrefix === undefined ? '' : 'WHERE substr(client, 1, ?) = ?';
    const params = clientPrefix === undefined ? [] : [clientPrefix.length, clientPrefix];
    if (last === undefined) return parse(await this.engine.query<{ doc: string }>(`SELECT doc FROM history ${where} ORDER BY seq`, params));
    const newest = await this.engine.query<{ doc: string }>(`SELECT doc FROM history ${where} ORDER BY seq DESC LIMIT ?`, [...params, last]);
    return parse<HistoryEntry>(newest).reverse();
  }

  // --- API tokens

  async tokens(): Promise<TokenRecord[]> {
    const rows = await this.engine.query<{ name: string; sha256: string; created_at: string }>('SELECT name, sha256, created_at FROM api_tokens ORDER BY created_at, name');
    return rows.map((r) => ({ name: r.name, sha256: r.sha256, createdAt: r.created_at }));
  }

  addToken(t: TokenRecord): Promise<void> {
    return this.write([{ sql: 'INSERT INTO api_tokens (name, sha256, created_at) VALUES (?, ?, ?)', params: [t.name, t.sha256, t.createdAt] }]);
  }

  deleteToken(name: string): Promise<void> {
    return this.write([{ sql: 'DELETE FROM api_tokens WHERE name = ?', params: [name] }]);
  }

  // --- rollout campaigns

  async campaigns(): Promise<CampaignRecord[]> {
    return parse(await this.engine.query<{ doc: string }>('SELECT doc FROM campaigns ORDER BY id'));
  }

  saveCampaigns(records: readonly CampaignRecord[], removed: readonly number[] = []): Promise<void> {
    return this.write([
      ...records.map((c) => ({ sql: 'INSERT INTO campaigns (id, doc) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET doc = excluded.doc', params: [c.id, doc(c)] })),
      ...removed.map((id) => ({ sql: 'DELETE FROM campaigns WHERE id = ?', params: [id] })),
    ]);
  }

  /** Resolves when every write asked for so far has been tried (each caller hears its own error). */
  settled(): Promise<void> {
    return this.writes.then(() => {}, () => {});
  }

  /** Statements of an import (import-state-dir.ts), applied with the others in order. */
  write(statements: readonly Statement[]): Promise<void> {
    if (statements.length === 0) return this.settled();
    const run = this.writes.then(() => this.engine.batch(statements), () => this.engine.batch(statements));
    this.writes = run.catch(() => {});
    return run;
  }

  /** For tests and diagnostics: a count of a table's rows. */
  async count(table: 'devices' | 'registrations' | 'jobs' | 'releases' | 'history' | 'api_tokens' | 'campaigns'): Promise<number> {
    const [row] = await this.engine.query<{ n: SqlValue }>(`SELECT COUNT(*) AS n FROM ${table}`);
    return Number(row?.n ?? 0);
  }
}

/** The embedded database's path in a state dir. */
export const embeddedPath = (stateDir: string): string => join(stateDir, EMBEDDED_FILE);
