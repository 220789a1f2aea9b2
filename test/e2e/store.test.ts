/**
 * The store on both engines: the embedded SQLite file and a real PostgreSQL server started for
 * this file. The same checks run on each: migrations, every kind of record through the classes
 * that use it, reopening, the import of a JSON state dir.
 */
import { createHash, randomBytes } from 'node:crypto';
import { appendFileSync, existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiTokens } from '../../src/server/api-tokens.js';
import type { CampaignRecord } from '../../src/server/campaign.js';
import { Devices, type DeviceRecord } from '../../src/server/devices.js';
import { History, summarizeReleases, type HistoryEntry } from '../../src/server/history.js';
import { JobStore } from '../../src/server/job-store.js';
import { PART_BYTES, PART_PATIENCE_MS, readParts, writeParts } from '../../src/server/shared-files.js';
import { LAST_SEEN_SAVE_MS, RegistrySaver } from '../../src/server/registry-saver.js';
import type { SavedClient } from '../../src/server/registry.js';
import { openStore } from '../../src/store/open-store.js';
import { numberParameters, openPostgres } from '../../src/store/postgres.js';
import { SCHEMA_VERSION } from '../../src/store/schema.js';
import { openSqlite } from '../../src/store/sqlite.js';
import { Store } from '../../src/store/store.js';
import { tempDir } from '../support/processes.js';
import { havePostgres, startPostgres, type Postgres } from '../support/postgres.js';

const peer = { address: '127.0.0.1', port: 4000 };
const at = (s: number): Date => new Date(Date.UTC(2026, 10, 30, 12, 0, s));
const entry = (client: string, result: string): HistoryEntry => ({
  at: at(0).toISOString(), client, address: '127.0.0.1:1', module: 'm_2_0.mjs', version: '2.0.0', sha256: '1'.repeat(64), result, message: '', elapsedMs: 1, resent: 0,
});
const client = (id: string, over: Partial<SavedClient> = {}): SavedClient => ({
  id, address: '127.0.0.1', port: 5000, version: { major: 5, minor: 6, patch: 0 }, product: { major: 5, minor: 6, productName: 'nxtgen' },
  lastSeenAt: at(0).toISOString(), tags: [], ...over,
});

let pg: Postgres | undefined;
let databases = 0;
beforeAll(async () => { if (havePostgres) pg = await startPostgres(); });
afterAll(() => pg?.stop());

/** A new, empty database of each kind, and a state dir beside it. */
const engines = [
  { kind: 'sqlite', fresh: (): { stateDir: string; database?: string } => ({ stateDir: tempDir('nxt-store-') }) },
  { kind: 'postgres', fresh: (): { stateDir: string; database?: string } => ({ stateDir: tempDir('nxt-store-'), database: pg!.newDatabase(`t${++databases}`) }) },
] as const;

const open = (where: { stateDir: string; database?: string }, notes: string[] = []): Promise<Store> =>
  openStore({ ...where, note: (l) => notes.push(l), warn: (l) => notes.push(`warning: ${l}`) });

describe.each(engines)('the store on $kind', ({ kind, fresh }) => {
  const skip = kind === 'postgres' && !havePostgres;

  it.skipIf(skip)('creates its schema in a new database, finds it at the next start, and refuses a newer one', async () => {
    const where = fresh();
    const first = await open(where);
    expect(first.previousVersion).toBe(0);
    await first.close();
    const again = await open(where);
    expect(again.previousVersion).toBe(SCHEMA_VERSION);
    await again.engine.batch([{ sql: 'INSERT INTO nxt_schema (version, applied_at) VALUES (?, ?)', params: [SCHEMA_VERSION + 1, 'later'] }]);
    await again.close();
    await expect(open(where)).rejects.toThrow(new RegExp(`has schema version ${SCHEMA_VERSION + 1}; this nxt-server knows up to ${SCHEMA_VERSION}`));
  });

  it.skipIf(skip)('keeps enrollment decisions, tokens, jobs, history and campaigns across a reopen', async () => {
    const where = fresh();
    let store = await open(where);
    const devices = await Devices.open(store);
    devices.request('a'.repeat(32), 'fp-a', { hostname: 'kiosk-1' }, peer, at(1));
    devices.request('b'.repeat(32), 'fp-b', {}, peer, at(1));
    devices.request('c'.repeat(32), 'fp-c', {}, peer, at(1));
    await devices.decide('a'.repeat(32), 'approved', 'operator', at(2));
    await devices.decide('b'.repeat(32), 'rejected', 'operator', at(2));
    await devices.approveSoon('c'.repeat(32), at(3));
    const tokens = await ApiTokens.open(store, (n) => new Uint8Array(n).fill(7));
    const token = await tokens.create('ci', at(4));
    await tokens.create('old', at(4));
    await tokens.revoke('old');
    const jobs = await JobStore.open(store);
    const j1 = await jobs.add('a'.repeat(32), 'logs', { filter: 'x' }, at(5));
    const j2 = await jobs.add('a'.repeat(32), 'clean', { dir: 'logs' }, at(5));
    await jobs.update(j1, { state: 'done', result: 'ok' }, at(6));
    const history = new History(store);
    await history.append(entry('ab'.repeat(16), 'ok'));
    await history.append(entry('cd'.repeat(16), 'timeout'));
    await history.append(entry('ab'.repeat(16), 'committed'));
    const campaign = { id: 1, state: 'running', stage: 0, members: ['a'.repeat(32)], devices: {}, acceptedFailures: 0, createdAt: 'x', updatedAt: 'x' } as unknown as CampaignRecord;
    await store.saveCampaigns([campaign]);
    await store.close();

    store = await open(where);
    const d = await Devices.open(store);
    expect(d.get('a'.repeat(32))).toMatchObject({ state: 'approved', decidedBy: 'operator', inventory: { hostname: 'kiosk-1' } });
    expect(d.get('b'.repeat(32))?.state).toBe('rejected');
    expect(d.get('c'.repeat(32))).toMatchObject({ state: 'approved', decidedBy: 'enrollment token' });
    const t = await ApiTokens.open(store, (n) => new Uint8Array(n));
    expect(t.list().map((x) => x.name)).toEqual(['ci']);
    expect(t.check(token)).toBe('ci');
    const js = await JobStore.open(store);
    expect(js.list().map((j) => [j.id, j.state])).toEqual([[j1.id, 'done'], [j2.id, 'queued']]);
    expect(js.nextFor('a'.repeat(32))?.id).toBe(j2.id);
    expect((await js.add('b'.repeat(32), 'logs', {}, at(7))).id).toBe(j2.id + 1); // ids go on, never reused
    // Read again by another node: jobs still to run, those above an id, and those watched.
    const ids = async (since: number, watched: number[]): Promise<number[]> => [...new Set((await store.jobsChanged(since, watched)).map((j) => j.id))].sort((x, y) => x - y);
    expect(await ids(j2.id + 1, [])).toEqual([j2.id, j2.id + 1]); // both still to run
    await js.update(js.get(j2.id)!, { state: 'done', result: 'ok' }, at(8));
    expect(await ids(j2.id + 1, [])).toEqual([j2.id + 1]);
    expect(await ids(j2.id + 1, [j2.id])).toEqual([j2.id, j2.id + 1]); // finished since it was read
    expect(await ids(0, [])).toEqual([j1.id, j2.id, j2.id + 1]);
    // A finished job forgotten (--keep-jobs) is gone from the store; the others stay.
    await js.forget([j1.id]);
    expect((await JobStore.open(store)).list().map((j) => j.id)).toEqual([j2.id, j2.id + 1]);
    expect(js.nextFor('a'.repeat(32))).toBeUndefined();
    expect(js.listFor('b'.repeat(32)).map((j) => j.id)).toEqual([j2.id + 1]);
    expect(await ids(0, [j1.id])).toEqual([j2.id, j2.id + 1]);
    const h = new History(store);
    expect((await h.list()).map((e) => e.result)).toEqual(['ok', 'timeout', 'committed']);
    expect((await h.list('abab')).map((e) => e.result)).toEqual(['ok', 'committed']);
    expect((await h.list(undefined, 2)).map((e) => e.result)).toEqual(['timeout', 'committed']);
    expect((await store.campaigns()).map((c) => c.id)).toEqual([1]);
    await store.close();
  });

  it.skipIf(skip)('summarises releases as results arrive, also from a history written before (migration 8), and forgets old entries but not what they counted', async () => {
    const where = fresh();
    let store = await open(where);
    // The database as a server before schema version 8 left it: history entries only.
    await store.engine.batch([
      { sql: 'DROP TABLE release_installs' }, { sql: 'DROP TABLE release_stats' }, { sql: 'DROP INDEX history_by_at' },
      { sql: 'ALTER TABLE history DROP COLUMN at' }, { sql: 'DELETE FROM nxt_schema WHERE version = 8' },
    ]);
    const one = '1'.repeat(64);
    const two = '2'.repeat(64);
    const e = (s: number, c: string, result: string, sha256 = one, version = '2.0.0'): HistoryEntry => ({ ...entry(c.repeat(32), result), at: at(s).toISOString(), sha256, version });
    const before = [e(1, 'a', 'ok'), e(2, 'b', 'timeout'), e(3, 'a', 'committed'), e(4, 'c', 'already installed'), e(5, 'a', 'ok', two, '3.0.0')];
    await store.engine.batch(before.map((x) => ({ sql: 'INSERT INTO history (client, doc) VALUES (?, ?)', params: [x.client, JSON.stringify(x)] })));
    await store.close();
    store = await open(where);
    const h = new History(store);
    const summary = (sha256: string, first: number, last: number, installedOn: number, failures: number): object => ({
      module: 'm_2_0.mjs', version: sha256 === one ? '2.0.0' : '3.0.0', sha256, firstPushed: at(first).toISOString(), lastPushed: at(last).toISOString(), installedOn, failures,
    });
    expect(await h.releases()).toEqual([summary(one, 1, 4, 2, 1), summary(two, 5, 5, 1, 0)]);
    expect(await h.releases()).toEqual(summarizeReleases(before));
    // Entries appended now keep the summaries up to date, as the history itself would count them.
    const after = [e(6, 'b', 'ok'), e(7, 'd', 'rolled back (selfTest)', two, '3.0.0'), e(8, 'a', 'ok')];
    for (const x of after) await h.append(x);
    expect(await h.releases()).toEqual([summary(one, 1, 8, 3, 1), summary(two, 5, 7, 1, 1)]);
    expect(await h.releases()).toEqual(summarizeReleases([...before, ...after]));
    // Entries before at(5) go, at most so many at a time, oldest first; the summaries stay.
    expect(await h.forget(at(5).toISOString(), 3)).toBe(3);
    expect((await h.list()).map((x) => x.at)).toEqual([4, 5, 6, 7, 8].map((s) => at(s).toISOString()));
    expect(await h.forget(at(5).toISOString(), 3)).toBe(1);
    expect(await h.forget(at(5).toISOString(), 3)).toBe(0);
    expect(await h.releases()).toEqual([summary(one, 1, 8, 3, 1), summary(two, 5, 7, 1, 1)]);
    expect((await h.list('dddd')).map((x) => x.result)).toEqual(['rolled back (selfTest)']);
    // A whole id, and a prefix whose ids go on with a digit and with "f" (the range the index reads).
    expect((await h.list('a'.repeat(32))).map((x) => x.at)).toEqual([5, 8].map((s) => at(s).toISOString()));
    await h.append(e(9, 'f9', 'ok'));
    await h.append(e(10, 'ff', 'ok'));
    expect((await h.list('f')).map((x) => x.client.slice(0, 2))).toEqual(['f9', 'ff']);
    await store.close();
  });

  it.skipIf(skip)('keeps enrollment requests for every node, never over a decision, dropping those that made room', async () => {
    const store = await open(fresh());
    const record = (id: string, state: DeviceRecord['state']): DeviceRecord => ({ id, fingerprint: `fp-${id[0]}`, state, inventory: {}, address: '127.0.0.1:1', requestedAt: at(1).toISOString() });
    await store.saveDevices([record('e'.repeat(32), 'approved')]);
    // Another node's request for a device decided meanwhile: the decision stays.
    await store.saveRequests([record('e'.repeat(32), 'pending'), record('f'.repeat(32), 'pending')], []);
    const states = async (): Promise<Record<string, string>> => Object.fromEntries((await store.devices()).map((d) => [d.id[0]!, d.state]));
    expect(await states()).toEqual({ e: 'approved', f: 'pending' });
    await store.saveRequests([], ['e'.repeat(32), 'f'.repeat(32)]);
    expect(await states()).toEqual({ e: 'approved' });

    // Requests made here are written in a batch; at most 2 kept, the oldest making room.
    const devices = await Devices.open(store, 2);
    for (const x of ['1', '2', '3']) devices.request(x.repeat(32), `fp-${x}`, {}, peer, at(2));
    const until = Date.now() + 5000;
    while (Object.keys(await states()).length < 3 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    expect(await states()).toEqual({ e: 'approved', 2: 'pending', 3: 'pending' });
    expect((await Devices.open(store, 2)).pending().map((d) => d.id[0])).toEqual(['2', '3']);
    await store.close();
  });

  it.skipIf(skip)('saves registrations that changed, a mere renewal at most once a minute, and forgets removed ones', async () => {
    const store = await open(fresh());
    const saver = new RegistrySaver(store, []);
    const fleet = new Map([['a', client('a')], ['b', client('b')]]);
    saver.touch('a');
    saver.touch('b');
    await saver.save((id) => fleet.get(id));
    expect((await store.registrations()).map((c) => c.id)).toEqual(['a', 'b']);
    // Renewed 10 s later: nothing written; tagged: written; a minute later: the time too.
    fleet.set('a', client('a', { lastSeenAt: new Date(at(0).getTime() + 10_000).toISOString() }));
    fleet.set('b', client('b', { tags: ['kiosks'], lastSeenAt: new Date(at(0).getTime() + 10_000).toISOString() }));
    saver.touch('a');
    saver.touch('b');
    await saver.save((id) => fleet.get(id));
    let saved = new Map((await store.registrations()).map((c) => [c.id, c]));
    expect(saved.get('a')?.lastSeenAt).toBe(at(0).toISOString());
    expect(saved.get('b')?.tags).toEqual(['kiosks']);
    fleet.set('a', client('a', { lastSeenAt: new Date(at(0).getTime() + LAST_SEEN_SAVE_MS).toISOString() }));
    fleet.delete('b');
    saver.touch('a');
    saver.touch('b');
    await saver.save((id) => fleet.get(id));
    saved = new Map((await store.registrations()).map((c) => [c.id, c]));
    expect([...saved.keys()]).toEqual(['a']);
    expect(saved.get('a')?.lastSeenAt).toBe(new Date(at(0).getTime() + LAST_SEEN_SAVE_MS).toISOString());
    await store.close();
  });

  it.skipIf(skip)('imports a JSON state dir once, keeping the files as *.imported', async () => {
    const where = fresh();
    const dir = where.stateDir;
    const json = (name: string, value: unknown): void => writeFileSync(join(dir, name), JSON.stringify(value));
    json('devices.json', { version: 1, devices: [{ id: 'd'.repeat(32), fingerprint: 'fp', state: 'revoked', inventory: {}, address: 'x', requestedAt: 'y' }] });
    json('clients.json', { version: 1, clients: [client('e'.repeat(32), { tags: ['lab'] })] });
    json('jobs.json', { version: 1, nextId: 42, jobs: [{ id: 41, device: 'e'.repeat(32), kind: 'logs', params: {}, state: 'queued', createdAt: 'x', updatedAt: 'x' }] });
    json('api-tokens.json', { version: 1, tokens: [{ name: 'ops', sha256: '0'.repeat(64), createdAt: 'x' }] });
    json('campaigns.json', { version: 1, campaigns: [{ id: 3, state: 'done', stage: 0, members: [], devices: {}, acceptedFailures: 0, createdAt: 'x', updatedAt: 'x' }] });
    json('releases.json', { version: 1, releases: [{ name: 'm.mjs', version: { major: 2, minor: 0, patch: 0 }, sha256: '2'.repeat(64), size: 1, file: 'f', presigned: false, storedAt: 'x' }] });
    writeFileSync(join(dir, 'history.jsonl'), `${JSON.stringify(entry('e'.repeat(32), 'ok'))}\n`);
    appendFileSync(join(dir, 'history.jsonl'), '{"at":"torn by a cra');
    const notes: string[] = [];
    let store = await open(where, notes);
    expect(notes.join('\n')).toMatch(/imported clients\.json, devices\.json, jobs\.json, releases\.json, history\.jsonl, api-tokens\.json, campaigns\.json \(\d+ records\)/);
    expect(readdirSync(dir).filter((f) => f.endsWith('.json') || f.endsWith('.jsonl'))).toEqual([]);
    expect(existsSync(join(dir, 'devices.json.imported'))).toBe(true);
    expect((await Devices.open(store)).isRevoked('d'.repeat(32))).toBe(true);
    expect((await store.registrations())[0]?.tags).toEqual(['lab']);
    const jobs = await JobStore.open(store);
    expect(jobs.list().map((j) => j.id)).toEqual([41]);
    expect((await jobs.add('e'.repeat(32), 'logs', {}, at(1))).id).toBe(42);
    expect((await store.tokens()).map((t) => t.name)).toEqual(['ops']);
    expect((await store.campaigns()).map((c) => c.id)).toEqual([3]);
    expect((await store.releases()).map((r) => r.name)).toEqual(['m.mjs']);
    expect((await new History(store).list()).map((e) => e.result)).toEqual(['ok']);
    await store.close();
    store = await open(where, notes);
    expect(await store.count('history')).toBe(1);
    await store.close();
  });
});

describe.each(engines)('files shared in parts, on $kind', ({ kind, fresh }) => {
  const skip = kind === 'postgres' && !havePostgres;

  it.skipIf(skip)('keep every byte (not only text), are read back whole and checked, and a missing part gives up with the reason', async () => {
    const where = fresh();
    const store = await open(where);
    const bytes = randomBytes(2 * PART_BYTES + 777); // three parts, all byte values
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const source = join(where.stateDir, 'source.bin');
    writeFileSync(source, bytes);
    await writeParts(store, sha256, source, bytes.length);
    const dest = join(where.stateDir, 'copy.bin');
    await readParts(store, sha256, bytes.length, dest, () => Promise.resolve());
    expect(readFileSync(dest).equals(bytes)).toBe(true);

    // Named for other content: refused, and nothing left behind.
    const other = join(where.stateDir, 'other.bin');
    await writeParts(store, 'f'.repeat(64), source, bytes.length);
    await expect(readParts(store, 'f'.repeat(64), bytes.length, other, () => Promise.resolve())).rejects.toThrow(/hashes to .*refused/);
    // Its last part never written (the sharing node died): waited for, then given up.
    const cut = randomBytes(PART_BYTES + 10);
    const cutSha = createHash('sha256').update(cut).digest('hex');
    await store.putFilePart(cutSha, 0, cut.subarray(0, PART_BYTES));
    let clock = 0;
    let waits = 0;
    const wait = (): Promise<void> => { waits++; clock += 1000; return Promise.resolve(); };
    await expect(readParts(store, cutSha, cut.length, other, wait, () => clock)).rejects.toThrow(/part 2 of 2 never came/);
    expect(waits).toBe(PART_PATIENCE_MS / 1000 + 1);
    expect(readdirSync(where.stateDir).filter((f) => f.startsWith('other.bin'))).toEqual([]);
    await store.close();
  });
});

describe.skipIf(!havePostgres)('PostgreSQL', () => {
  it('numbers parameters as PostgreSQL wants them', () => {
    expect(numberParameters('SELECT doc FROM history WHERE substr(client, 1, ?) = ? LIMIT ?')).toBe('SELECT doc FROM history WHERE substr(client, 1, $1) = $2 LIMIT $3');
  });

  it('lets several nodes start at once on a new database: one creates the schema, all use it', async () => {
    const url = pg!.newDatabase('race');
    const stores = await Promise.all([1, 2, 3, 4].map(async () => Store.open(await openPostgres(url))));
    expect(stores.filter((s) => s.previousVersion === 0).length).toBeGreaterThanOrEqual(1);
    const ids = await Promise.all(stores.map((s) => s.nextJobId()));
    expect(new Set(ids).size).toBe(4); // job ids are handed out once per fleet, whichever node asks
    await Promise.all(stores.map((s) => s.close()));
  });

  it('says which database it cannot reach, without its password', async () => {
    await expect(openPostgres(`postgres://nxt:secret@127.0.0.1:${pg!.port + 1}/x`)).rejects.toThrow(/cannot reach the database \(PostgreSQL 127\.0\.0\.1:\d+\/x\): the database server is not answering/);
    await expect(openPostgres(`postgres://nxt:secret@127.0.0.1:${pg!.port + 1}/x`)).rejects.not.toThrow(/secret/);
  });
});

describe('SQLite', () => {
  it('names a file it cannot open', async () => {
    await expect(openSqlite(join(tempDir('nxt-store-'), 'missing', 'nxt.db'))).rejects.toThrow(/cannot open the database .*nxt\.db: .*(directory does not exist|it cannot be opened)/);
  });
});
