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
import { summaryRole, type HistoryEntry, type ReleaseSummary } from '../server/history.js';
import type { Job } from '../server/job-store.js';
import type { SavedClient } from '../server/registry.js';
import type { StoredRelease } from '../server/release-store.js';
import type { TokenRecord } from '../server/api-tokens.js';
import type { CampaignRecord } from '../server/campaign.js';
import { NxtError } from '../errors.js';
import { formatReleaseVersion } from '../protocol/release-version.js';
import { DIALECTS, type SqlEngine, type SqlValue, type Statement } from './engine.js';
import { migrate } from './schema.js';

export const EMBEDDED_FILE = 'nxt.db';

export interface NodeRow {
  readonly name: string;
  readonly number: number;
  /** Where its devices reach it (host:port), for people. */
  readonly address: string;
  readonly startedAt: string;
  /** '' once it stopped. */
  readonly heartbeatAt: string;
}

const doc = (value: unknown): string => JSON.stringify(value);
const parse = <T>(rows: readonly { doc: string }[]): T[] => rows.map((r) => JSON.parse(r.doc) as T);
/** Ids per `IN (…)` when jobs are read by id: well under either engine's limit on parameters. */
const WATCHED_PER_QUERY = 500;

/** Delete a file's parts when `when` (a condition with `params`) holds and no job not yet done
 *  (at any node) sends the same bytes. */
const filePartsNoJobNeeds = (sha256: string, when: string, params: readonly SqlValue[]): Statement => ({
  sql: `DELETE FROM file_parts WHERE sha256 = ? AND ${when} AND NOT EXISTS (SELECT 1 FROM jobs WHERE state IN ('queued', 'sent') AND doc LIKE ?)`,
  params: [sha256, ...params, `%"sha256":"${sha256}"%`],
});

/** A history entry, and its release's summary (release_stats, release_installs) brought up to
 *  date; the summary's module and version stay those of the first entry. */
export function historyStatements(e: HistoryEntry): Statement[] {
  const role = summaryRole(e.result);
  return [
    { sql: 'INSERT INTO history (client, at, doc) VALUES (?, ?, ?)', params: [e.client, e.at, doc(e)] },
    {
      sql: 'INSERT INTO release_stats (sha256, module, version, first_pushed, last_pushed, failures) VALUES (?, ?, ?, ?, ?, ?) '
        + 'ON CONFLICT (sha256) DO UPDATE SET last_pushed = excluded.last_pushed, failures = release_stats.failures + excluded.failures',
      params: [e.sha256, e.module, e.version, e.at, e.at, role === 'failed' ? 1 : 0],
    },
    ...role === 'installed' ? [{ sql: 'INSERT INTO release_installs (sha256, client) VALUES (?, ?) ON CONFLICT (sha256, client) DO NOTHING', params: [e.sha256, e.client] }] : [],
  ];
}

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

  /**
   * Enrollment requests (pending devices), so that every node lists them and any can decide:
   * `added` only where the store has no record of the device yet (a decision made meanwhile, at
   * any node, stays), `dropped` only while still pending.
   */
  saveRequests(added: readonly DeviceRecord[], dropped: readonly string[]): Promise<void> {
    return this.write([
      ...added.map((d) => ({ sql: 'INSERT INTO devices (id, state, doc) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING', params: [d.id, d.state, doc(d)] })),
      ...dropped.map((id) => ({ sql: "DELETE FROM devices WHERE id = ? AND state = 'pending'", params: [id] })),
    ]);
  }

  // --- registrations (soft state)

  /** The registrations this node holds (`node`: its name; '' on a lone server). */
  async registrations(node = ''): Promise<SavedClient[]> {
    return parse(await this.engine.query<{ doc: string }>('SELECT doc FROM registrations WHERE node = ? ORDER BY id', [node]));
  }

  /** The devices other nodes hold, with which node. */
  async otherNodesRegistrations(node: string): Promise<{ client: SavedClient; node: string }[]> {
    const rows = await this.engine.query<{ doc: string; node: string }>('SELECT doc, node FROM registrations WHERE node <> ? ORDER BY id', [node]);
    return rows.map((r) => ({ client: JSON.parse(r.doc) as SavedClient, node: r.node }));
  }

  /** Save what `node` holds; a device registered at `node` is held by it from now on. Removing
   *  removes only what this node holds (the device may have moved to another). */
  saveRegistrations(changed: readonly SavedClient[], removed: readonly string[], node = ''): Promise<void> {
    return this.write([
      ...changed.map((c) => ({
        sql: 'INSERT INTO registrations (id, doc, node) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET doc = excluded.doc, node = excluded.node', params: [c.id, doc(c), node],
      })),
      ...removed.map((id) => ({ sql: 'DELETE FROM registrations WHERE id = ? AND node = ?', params: [id, node] })),
    ]);
  }

  // --- jobs

  async jobs(): Promise<Job[]> {
    return parse(await this.engine.query<{ doc: string }>('SELECT doc FROM jobs ORDER BY id'));
  }

  /**
   * The jobs that may have changed since a read that saw ids up to `sinceId` (JobsSeen): every job
   * still to run, every job above that id, and of `watched` (jobs read as still to run before)
   * those that are not still to run now: finished since (forgotten ones are simply not there).
   */
  async jobsChanged(sinceId: number, watched: readonly number[]): Promise<Job[]> {
    // Two index searches (by id, by state): with `OR` and `ORDER BY id` SQLite scanned the table.
    const rows = parse<Job>(await this.engine.query<{ doc: string }>(
      "SELECT doc FROM jobs WHERE id > ? UNION ALL SELECT doc FROM jobs WHERE state IN ('queued', 'sent') AND id <= ?", [sinceId, sinceId]));
    const have = new Set(rows.map((j) => j.id));
    const missing = watched.filter((id) => !have.has(id));
    for (let i = 0; i < missing.length; i += WATCHED_PER_QUERY) {
      const ids = missing.slice(i, i + WATCHED_PER_QUERY);
      for (const j of parse<Job>(await this.engine.query<{ doc: string }>(`SELECT doc FROM jobs WHERE id IN (${ids.map(() => '?').join(', ')})`, ids))) rows.push(j);
    }
    return rows.sort((a, b) => a.id - b.id);
  }

  /** A job id no node has handed out. */
  nextJobId(): Promise<number> { return this.nextId('job'); }

  /** A campaign id no node has handed out. */
  nextCampaignId(): Promise<number> { return this.nextId('campaign'); }

  private async nextId(counter: 'job' | 'campaign'): Promise<number> {
    const run = this.writes.then(() => this.engine.query<{ value: number | string }>('UPDATE counters SET value = value + 1 WHERE name = ? RETURNING value', [counter]));
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

  /** Forget these jobs (their records only: what they uploaded is swept on its own). */
  deleteJobs(ids: readonly number[]): Promise<void> {
    return this.write(ids.map((id) => ({ sql: 'DELETE FROM jobs WHERE id = ?', params: [id] })));
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

  /**
   * Forget a stored release: its row; and when no other row has its content, what several nodes
   * share of it (its description and approval, and its bytes unless a job not yet done sends the
   * same file). One transaction.
   */
  removeRelease(r: StoredRelease): Promise<void> {
    const noOther = 'NOT EXISTS (SELECT 1 FROM releases WHERE sha256 = ?)';
    return this.write([
      { sql: 'DELETE FROM releases WHERE sha256 = ? AND version = ? AND for_key = ?', params: [r.sha256, formatReleaseVersion(r.version), r.for === undefined ? '' : doc(r.for)] },
      { sql: `DELETE FROM release_files WHERE sha256 = ? AND ${noOther}`, params: [r.sha256, r.sha256] },
      filePartsNoJobNeeds(r.sha256, noOther, [r.sha256]),
    ]);
  }

  // --- push history

  /** The entry, and its release's summary brought up to date, in one transaction. */
  appendHistory(e: HistoryEntry): Promise<void> {
    return this.write(historyStatements(e));
  }

  /** Per release (by content), in the order first pushed (migration 8 explains the tables). */
  async releaseSummaries(): Promise<ReleaseSummary[]> {
    const rows = await this.engine.query<{ sha256: string; module: string; version: string; first_pushed: string; last_pushed: string; failures: number | string; installed: number | string }>(
      'SELECT s.sha256, s.module, s.version, s.first_pushed, s.last_pushed, s.failures, '
        + '(SELECT COUNT(*) FROM release_installs i WHERE i.sha256 = s.sha256) AS installed FROM release_stats s ORDER BY s.first_pushed, s.sha256',
    );
    return rows.map((r) => ({
      module: r.module, version: r.version, sha256: r.sha256, firstPushed: r.first_pushed, lastPushed: r.last_pushed,
      installedOn: Number(r.installed), failures: Number(r.failures),
    }));
  }

  /** Delete at most `max` history entries from before `before` (ISO 8601), oldest first; how
   *  many. Release summaries stay. */
  async forgetHistory(before: string, max: number): Promise<number> {
    const rows = await this.engine.query<{ seq: number | string }>('SELECT seq FROM history WHERE at < ? ORDER BY at, seq LIMIT ?', [before, max]);
    const seqs = rows.map((r) => Number(r.seq));
    const statements: Statement[] = [];
    for (let i = 0; i < seqs.length; i += WATCHED_PER_QUERY) {
      const some = seqs.slice(i, i + WATCHED_PER_QUERY);
      statements.push({ sql: `DELETE FROM history WHERE seq IN (${some.map(() => '?').join(', ')})`, params: some });
    }
    await this.write(statements);
    return seqs.length;
  }

  /** Oldest first; only the clients whose id starts with `clientPrefix`, if given; only the
   *  `last` newest, if given. */
  async history(clientPrefix?: string, last?: number): Promise<HistoryEntry[]> {
    // Ids are lowercase hex: those starting with the prefix sort from it to it + "g", a range the
    // index by client finds (substr alone read every entry: ~50 ms at 200,000, for every refresh
    // of a device's page in the dashboard).
    const where = clientPrefix === undefined ? '' : 'WHERE client >= ? AND client < ? AND substr(client, 1, ?) = ?';
    const params = clientPrefix === undefined ? [] : [clientPrefix, `${clientPrefix}g`, clientPrefix.length, clientPrefix];
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

  /** Every campaign, whichever node runs it. */
  async allCampaigns(): Promise<CampaignRecord[]> {
    return parse(await this.engine.query<{ doc: string }>('SELECT doc FROM campaigns ORDER BY id'));
  }

  /** The campaigns `node` runs ('' on a lone server). */
  async campaigns(node = ''): Promise<CampaignRecord[]> {
    return parse(await this.engine.query<{ doc: string }>('SELECT doc FROM campaigns WHERE node = ? ORDER BY id', [node]));
  }

  saveCampaigns(records: readonly CampaignRecord[], removed: readonly number[] = [], node = ''): Promise<void> {
    return this.write([
      ...records.map((c) => ({ sql: 'INSERT INTO campaigns (id, doc, node) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET doc = excluded.doc, node = excluded.node', params: [c.id, doc(c), node] })),
      ...removed.map((id) => ({ sql: 'DELETE FROM campaigns WHERE id = ? AND node = ?', params: [id, node] })),
    ]);
  }

  /**
   * The campaigns of nodes that are gone (no heartbeat since `liveSince`), now `to`'s; with the
   * names of the nodes they were taken from. Two nodes taking them at once: the rows are locked
   * by the first, whose change the second's condition then no longer matches.
   */
  async takeCampaigns(to: string, liveSince: string): Promise<{ records: CampaignRecord[]; from: string[] }> {
    // The names first (RETURNING gives the new node's), then the same condition in the UPDATE.
    const gone = "node <> '' AND node <> ? AND node NOT IN (SELECT name FROM nodes WHERE heartbeat_at >= ?)";
    const from = (await this.engine.query<{ node: string }>(`SELECT DISTINCT node FROM campaigns WHERE ${gone}`, [to, liveSince])).map((r) => r.node);
    if (from.length === 0) return { records: [], from };
    const records = parse<CampaignRecord>(await this.engine.query<{ doc: string }>(`UPDATE campaigns SET node = ? WHERE ${gone} RETURNING doc`, [to, to, liveSince]));
    return { records, from };
  }

  /** Rows of work between nodes that nobody needs any more: pushes answered before `pushesBefore`,
   *  events older than `eventsBefore`. */
  prune(pushesBefore: string, eventsBefore: string): Promise<void> {
    return this.write([
      { sql: "DELETE FROM remote_pushes WHERE state = 'done' AND created_at < ?", params: [pushesBefore] },
      { sql: "DELETE FROM remote_commands WHERE state = 'done' AND created_at < ?", params: [pushesBefore] },
      { sql: 'DELETE FROM events WHERE at < ?', params: [eventsBefore] },
    ]);
  }

  // --- events between nodes

  addEvent(node: string, kind: string, value: unknown, at: string): Promise<void> {
    return this.write([{ sql: 'INSERT INTO events (node, kind, doc, at) VALUES (?, ?, ?, ?)', params: [node, kind, doc(value), at] }]);
  }

  /** Events after `afterId`, oldest first (at most `limit`). */
  async events(afterId: number, limit = 1000): Promise<{ id: number; node: string; kind: string; doc: string; at: string }[]> {
    const rows = await this.engine.query<{ id: number | string; node: string; kind: string; doc: string; at: string }>(
      'SELECT id, node, kind, doc, at FROM events WHERE id > ? ORDER BY id LIMIT ?', [afterId, limit],
    );
    return rows.map((r) => ({ ...r, id: Number(r.id) }));
  }

  async lastEventId(): Promise<number> {
    const [row] = await this.engine.query<{ id: number | string | null }>('SELECT MAX(id) AS id FROM events');
    return Number(row?.id ?? 0);
  }

  // --- several nodes on one database (PostgreSQL)

  /**
   * Join as `name`: its number is kept if it had one, else the smallest not used by a live node
   * (one whose heartbeat is not older than `liveSince`). Two nodes taking the same number at once:
   * the loser's insert fails on the number's uniqueness and tries again.
   */
  async joinNode(name: string, address: string, now: string, liveSince: string): Promise<number> {
    for (let attempt = 0; ; attempt++) {
      const rows = await this.engine.query<{ name: string; number: number | string; heartbeat_at: string }>('SELECT name, number, heartbeat_at FROM nodes');
      const mine = rows.find((r) => r.name === name);
      const taken = new Set(rows.filter((r) => r.name !== name && r.heartbeat_at >= liveSince).map((r) => Number(r.number)));
      const number = mine && !taken.has(Number(mine.number)) ? Number(mine.number) : [...Array(255).keys()].map((i) => i + 1).find((n) => !taken.has(n));
      if (number === undefined) throw new NxtError('usage', 'there are 255 live nodes on this database already');
      try {
        await this.write([
          { sql: 'DELETE FROM nodes WHERE name <> ? AND number = ?', params: [name, number] },
          {
            sql: 'INSERT INTO nodes (name, number, address, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?) '
              + 'ON CONFLICT (name) DO UPDATE SET number = excluded.number, address = excluded.address, started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at',
            params: [name, number, address, now, now],
          },
        ]);
        return number;
      } catch (err) {
        if (attempt >= 5) throw err;
      }
    }
  }

  heartbeat(name: string, now: string): Promise<void> {
    return this.write([{ sql: 'UPDATE nodes SET heartbeat_at = ? WHERE name = ?', params: [now, name] }]);
  }

  async nodes(): Promise<NodeRow[]> {
    const rows = await this.engine.query<{ name: string; number: number | string; address: string; started_at: string; heartbeat_at: string }>(
      'SELECT name, number, address, started_at, heartbeat_at FROM nodes ORDER BY number',
    );
    return rows.map((r) => ({ name: r.name, number: Number(r.number), address: r.address, startedAt: r.started_at, heartbeatAt: r.heartbeat_at }));
  }

  /** A node stopping says so: the others see it gone at once, not at its heartbeat's timeout. */
  leaveNode(name: string): Promise<void> {
    return this.write([{ sql: "UPDATE nodes SET heartbeat_at = '' WHERE name = ?", params: [name] }]);
  }

  /** A release's description and approval; its bytes go in file_parts (server/shared-files.ts). */
  putReleaseFile(r: { sha256: string; name: string; doc: unknown; parts: number; presigned?: string; approval?: string }): Promise<void> {
    return this.write([{
      sql: 'INSERT INTO release_files (sha256, name, doc, bytes, presigned, approval, parts) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sha256) DO NOTHING',
      params: [r.sha256, r.name, doc(r.doc), new Uint8Array(0), r.presigned ?? null, r.approval ?? null, r.parts],
    }]);
  }

  /** `inParts` false: a release written before schema version 6, its bytes in `bytes`. */
  async releaseFile(sha256: string): Promise<{ name: string; doc: string; presigned: string | null; approval: string | null; inParts: boolean } | undefined> {
    const [row] = await this.engine.query<{ name: string; doc: string; presigned: string | null; approval: string | null; parts: number | string }>(
      'SELECT name, doc, presigned, approval, parts FROM release_files WHERE sha256 = ?', [sha256],
    );
    return row && { name: row.name, doc: row.doc, presigned: row.presigned, approval: row.approval, inParts: Number(row.parts) > 0 };
  }

  /** The bytes of a release written before schema version 6. */
  releaseBytes(sha256: string): Promise<Uint8Array | undefined> {
    return this.engine.bytes(`SELECT ${this.bytesOut('bytes')} FROM release_files WHERE sha256 = ?`, [sha256]);
  }

  /** The bytes go as they are, a parameter in binary form (16 MiB into PostgreSQL in ~110-170 ms;
   *  as base64 text, decoded there, ~180-300 ms). */
  putFilePart(sha256: string, part: number, bytes: Uint8Array, wake?: string): Promise<void> {
    // Not queued behind the store's other writes (nor they behind megabytes of parts): a part
    // is written once, by content, and orders with nothing else.
    return this.engine.batch([
      { sql: 'INSERT INTO file_parts (sha256, part, bytes) VALUES (?, ?, ?) ON CONFLICT (sha256, part) DO NOTHING', params: [sha256, part, bytes] },
      ...this.wakeUp(wake),
    ]);
  }

  /** How many parts of this content are in the database. */
  async filePartCount(sha256: string): Promise<number> {
    const [row] = await this.engine.query<{ n: number | string }>('SELECT COUNT(*) AS n FROM file_parts WHERE sha256 = ?', [sha256]);
    return Number(row?.n ?? 0);
  }

  /** A job's file no job still to run (on any node) sends, and no release has as its bytes: its
   *  parts go (server/job-files.ts). */
  removeFileParts(sha256: string): Promise<void> {
    return this.write([filePartsNoJobNeeds(sha256, 'NOT EXISTS (SELECT 1 FROM release_files WHERE sha256 = ?)', [sha256])]);
  }

  filePart(sha256: string, part: number): Promise<Uint8Array | undefined> {
    return this.engine.bytes(`SELECT ${this.bytesOut('bytes')} FROM file_parts WHERE sha256 = ? AND part = ?`, [sha256, part]);
  }

  private bytesOut(column: string): string {
    return DIALECTS[this.engine.kind].bytesOut(column);
  }

  /** `wake`: a channel to NOTIFY in the same transaction (PostgreSQL: sent when it commits). */
  addRemotePushes(batch: string, rows: readonly { node: string; device: string; sha256: string }[], now: string, wake?: string): Promise<void> {
    return this.write([
      ...rows.map((r) => ({
        sql: "INSERT INTO remote_pushes (batch, node, device, sha256, state, created_at) VALUES (?, ?, ?, ?, 'queued', ?)", params: [batch, r.node, r.device, r.sha256, now],
      })),
      ...this.wakeUp(wake),
    ]);
  }

  private wakeUp(channel: string | undefined): Statement[] {
    if (channel === undefined || this.engine.kind !== 'postgres') return [];
    if (!/^[a-z_]+$/.test(channel)) throw new RangeError(`not a channel name: ${channel}`);
    return [{ sql: `NOTIFY ${channel}` }];
  }

  /** The pushes waiting for `node`, now its own: no other process claims them (SKIP LOCKED). */
  async claimRemotePushes(node: string): Promise<{ id: number; batch: string; device: string; sha256: string }[]> {
    return this.claim<{ batch: string; device: string; sha256: string }>('remote_pushes', node, 'batch, device, sha256');
  }

  /** The rows of `table` queued for `node`, marked running and returned: no other process
   *  claims them (PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite has one writer). */
  private async claim<Row extends object>(table: 'remote_pushes' | 'remote_commands', node: string, columns: string): Promise<(Row & { id: number })[]> {
    const lock = this.engine.kind === 'postgres' ? ' FOR UPDATE SKIP LOCKED' : '';
    const rows = await this.engine.query<Row & { id: number | string }>(
      `UPDATE ${table} SET state = 'running' WHERE id IN (SELECT id FROM ${table} WHERE node = ? AND state = 'queued' ORDER BY id${lock}) RETURNING id, ${columns}`,
      [node],
    );
    return rows.map((r) => ({ ...r, id: Number(r.id) }));
  }

  finishRemotePushes(done: readonly { id: number; report: unknown }[], wake?: string): Promise<void> {
    if (done.length === 0) return Promise.resolve();
    return this.write([...done.map((d) => ({ sql: "UPDATE remote_pushes SET state = 'done', report = ? WHERE id = ?", params: [doc(d.report), d.id] })), ...this.wakeUp(wake)]);
  }

  /** The pushes of a node that is gone, not done: failed with `report`. */
  failRemotePushes(batch: string, node: string, report: (device: string) => unknown): Promise<void> {
    return this.engine.query<{ id: number | string; device: string }>(
      "SELECT id, device FROM remote_pushes WHERE batch = ? AND node = ? AND state <> 'done'", [batch, node],
    ).then((rows) => this.write(rows.map((r) => ({ sql: "UPDATE remote_pushes SET state = 'done', report = ? WHERE id = ? AND state <> 'done'", params: [doc(report(r.device)), Number(r.id)] }))));
  }

  /** A command for a device `node` holds (`wake`: NOTIFY in the same transaction). */
  addRemoteCommand(row: { batch: string; node: string; device: string; command: string; args: unknown }, now: string, wake?: string): Promise<void> {
    return this.write([
      { sql: "INSERT INTO remote_commands (batch, node, device, command, doc, state, created_at) VALUES (?, ?, ?, ?, ?, 'queued', ?)", params: [row.batch, row.node, row.device, row.command, doc(row.args), now] },
      ...this.wakeUp(wake),
    ]);
  }

  /** The commands waiting for `node`, now its own (SKIP LOCKED, as pushes). */
  async claimRemoteCommands(node: string): Promise<{ id: number; device: string; command: string; args: unknown }[]> {
    const rows = await this.claim<{ device: string; command: string; doc: string }>('remote_commands', node, 'device, command, doc');
    return rows.map((r) => ({ id: r.id, device: r.device, command: r.command, args: JSON.parse(r.doc) as unknown }));
  }

  /** A command's result (`batch`: all of the asker's rows for it; `id`: one claimed row). */
  finishRemoteCommand(where: { id: number } | { batch: string }, result: unknown, wake?: string): Promise<void> {
    const [column, key] = 'id' in where ? ['id', where.id] : ['batch', where.batch];
    return this.write([{ sql: `UPDATE remote_commands SET state = 'done', result = ? WHERE ${column} = ? AND state <> 'done'`, params: [doc(result), key] }, ...this.wakeUp(wake)]);
  }

  async remoteCommand(batch: string): Promise<{ state: string; result: string | null } | undefined> {
    const [row] = await this.engine.query<{ state: string; result: string | null }>('SELECT state, result FROM remote_commands WHERE batch = ?', [batch]);
    return row;
  }

  async remotePushes(batch: string): Promise<{ node: string; device: string; state: string; report: string | null }[]> {
    return this.engine.query('SELECT node, device, state, report FROM remote_pushes WHERE batch = ? ORDER BY id', [batch]);
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
