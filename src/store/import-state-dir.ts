/**
 * State dirs from before the database (JSON files) are imported at the first start that finds
 * them, in one transaction, and each file is then renamed `<name>.imported` (kept, not deleted: a
 * person may want to look). Importing again is harmless — records are keyed — except for the
 * history, which is imported only into an empty history.
 */
import { existsSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import type { DeviceRecord } from '../server/devices.js';
import type { HistoryEntry } from '../server/history.js';
import type { Job } from '../server/job-store.js';
import type { SavedClient } from '../server/registry.js';
import type { StoredRelease } from '../server/release-store.js';
import type { TokenRecord } from '../server/api-tokens.js';
import type { CampaignRecord } from '../server/campaign.js';
import { formatReleaseVersion } from '../protocol/release-version.js';
import { readStateFile } from '../util/atomic-file.js';
import type { Statement } from './engine.js';
import { historyStatements, type Store } from './store.js';

export const LEGACY_FILES = ['clients.json', 'devices.json', 'jobs.json', 'releases.json', 'history.jsonl', 'api-tokens.json', 'campaigns.json'] as const;

export interface Imported { readonly files: string[]; readonly records: number }

export async function importStateDir(store: Store, dir: string, warn: (line: string) => void): Promise<Imported> {
  const present = LEGACY_FILES.filter((f) => existsSync(join(dir, f)));
  if (present.length === 0) return { files: [], records: 0 };
  const list = <T>(file: string, key: string): T[] => readStateFile(join(dir, file), (text) => {
    const value = (JSON.parse(text) as Record<string, unknown>)[key];
    if (!Array.isArray(value)) throw new Error(`no "${key}" list`);
    return value as T[];
  }, warn) ?? [];
  const doc = JSON.stringify;
  const statements: Statement[] = [];

  for (const c of list<SavedClient>('clients.json', 'clients')) {
    if (typeof c?.id !== 'string') continue;
    statements.push({ sql: 'INSERT INTO registrations (id, doc) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET doc = excluded.doc', params: [c.id, doc(c)] });
  }
  for (const d of list<DeviceRecord>('devices.json', 'devices')) {
    if (typeof d?.id !== 'string' || !['approved', 'rejected', 'revoked'].includes(d.state)) continue;
    statements.push({ sql: 'INSERT INTO devices (id, state, doc) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET state = excluded.state, doc = excluded.doc', params: [d.id, d.state, doc(d)] });
  }
  const jobs = list<Job>('jobs.json', 'jobs').filter((j) => Number.isSafeInteger(j?.id) && typeof j.device === 'string');
  for (const j of jobs) {
    statements.push({ sql: 'INSERT INTO jobs (id, device, state, doc) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO NOTHING', params: [j.id, j.device, j.state, doc(j)] });
  }
  if (jobs.length > 0) {
    const top = Math.max(...jobs.map((j) => j.id));
    statements.push({ sql: "UPDATE counters SET value = ? WHERE name = 'job' AND value < ?", params: [top, top] });
  }
  for (const r of list<StoredRelease>('releases.json', 'releases')) {
    if (typeof r?.sha256 !== 'string' || typeof r.version !== 'object') continue;
    statements.push({
      sql: 'INSERT INTO releases (sha256, version, for_key, doc) VALUES (?, ?, ?, ?) ON CONFLICT (sha256, version, for_key) DO NOTHING',
      params: [r.sha256, formatReleaseVersion(r.version), r.for === undefined ? '' : doc(r.for), doc(r)],
    });
  }
  for (const t of list<TokenRecord>('api-tokens.json', 'tokens')) {
    if (typeof t?.name !== 'string' || typeof t.sha256 !== 'string') continue;
    statements.push({ sql: 'INSERT INTO api_tokens (name, sha256, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING', params: [t.name, t.sha256, t.createdAt] });
  }
  const campaigns = list<CampaignRecord>('campaigns.json', 'campaigns').filter((c) => Number.isSafeInteger(c?.id));
  for (const c of campaigns) {
    statements.push({ sql: 'INSERT INTO campaigns (id, doc) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET doc = excluded.doc', params: [c.id, doc(c)] });
  }
  if (campaigns.length > 0) {
    const top = Math.max(...campaigns.map((c) => c.id));
    statements.push({ sql: "UPDATE counters SET value = ? WHERE name = 'campaign' AND value < ?", params: [top, top] });
  }
  // A history entry is two or three statements (its release's summary too): counted apart.
  const otherRecords = statements.length;
  let historyEntries = 0;
  if (present.includes('history.jsonl') && await store.count('history') === 0) {
    for (const line of readFileSync(join(dir, 'history.jsonl'), 'utf8').split('\n')) {
      let e: HistoryEntry;
      try {
        e = JSON.parse(line) as HistoryEntry;
      } catch {
        continue; // an empty line, or one torn by a crash mid-write
      }
      if (typeof e?.client !== 'string') continue;
      // The summary's columns are required: a field an old file lacks is imported empty.
      const text = (v: unknown): string => (typeof v === 'string' ? v : '');
      statements.push(...historyStatements({ ...e, at: text(e.at), module: text(e.module), version: text(e.version), sha256: text(e.sha256), result: text(e.result) }));
      historyEntries++;
    }
  }
  await store.write(statements);
  for (const f of present) {
    renameSync(join(dir, f), join(dir, `${f}.imported`));
  }
  return { files: present, records: otherRecords + historyEntries };
}
