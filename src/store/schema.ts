/**
 * The store's tables, as numbered migrations that a server applies by itself at start (each in one
 * transaction, together with its row in nxt_schema). A database newer than this code is refused,
 * not guessed at. Several nodes starting at once on one PostgreSQL: the first applies a migration,
 * the others find it applied.
 *
 * Most tables keep a record as a JSON document (`doc`) beside the columns that are looked up or
 * filtered on: the records are the server's own types, read and written whole, and one document
 * per row keeps the two engines' SQL the same.
 */
import { NxtError } from '../errors.js';
import { COMMITTED_RESULT, INSTALLED_RESULTS } from '../server/history.js';
import { DIALECTS, type Dialect, type SqlEngine } from './engine.js';

interface Migration {
  readonly version: number;
  readonly what: string;
  readonly statements: (dialect: Dialect) => readonly string[];
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    what: 'devices, registrations, jobs, releases, history, API tokens, campaigns',
    statements: ({ serialKey }) => [
      // Enrollment decisions (approved, rejected, revoked); pending requests stay in memory.
      'CREATE TABLE devices (id TEXT PRIMARY KEY, state TEXT NOT NULL, doc TEXT NOT NULL)',
      // What is known of each registered device across restarts (soft state, renewed by devices).
      'CREATE TABLE registrations (id TEXT PRIMARY KEY, doc TEXT NOT NULL)',
      'CREATE TABLE jobs (id BIGINT PRIMARY KEY, device TEXT NOT NULL, state TEXT NOT NULL, doc TEXT NOT NULL)',
      'CREATE INDEX jobs_by_device ON jobs (device, state)',
      // for_key: the JSON of what the release is for ('' for any device).
      'CREATE TABLE releases (sha256 TEXT NOT NULL, version TEXT NOT NULL, for_key TEXT NOT NULL, doc TEXT NOT NULL, PRIMARY KEY (sha256, version, for_key))',
      `CREATE TABLE history (seq ${serialKey}, client TEXT NOT NULL, doc TEXT NOT NULL)`,
      'CREATE INDEX history_by_client ON history (client)',
      'CREATE TABLE api_tokens (name TEXT PRIMARY KEY, sha256 TEXT NOT NULL, created_at TEXT NOT NULL)',
      'CREATE TABLE campaigns (id BIGINT PRIMARY KEY, doc TEXT NOT NULL)',
      // Numbers handed out once per fleet (job ids), whichever node asks.
      'CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL)',
      "INSERT INTO counters (name, value) VALUES ('job', 0)",
    ],
  },
  {
    version: 2,
    what: 'several nodes: nodes, who holds each device, pushes handed to another node, release files',
    statements: ({ serialKey, blob }) => [
      // Each server node sharing the database: its number (the top byte of its session indexes),
      // where it listens, and when it last said it was alive.
      'CREATE TABLE nodes (name TEXT PRIMARY KEY, number INTEGER NOT NULL UNIQUE, address TEXT NOT NULL, started_at TEXT NOT NULL, heartbeat_at TEXT NOT NULL)',
      // The node that holds the device's session (the only one that can reach it).
      "ALTER TABLE registrations ADD COLUMN node TEXT NOT NULL DEFAULT ''",
      // A push typed at one node for devices another node holds: one row per device, claimed by
      // that node (FOR UPDATE SKIP LOCKED), answered in the same row.
      `CREATE TABLE remote_pushes (id ${serialKey}, batch TEXT NOT NULL, node TEXT NOT NULL, device TEXT NOT NULL, sha256 TEXT NOT NULL, `
        + 'state TEXT NOT NULL, report TEXT, created_at TEXT NOT NULL)',
      'CREATE INDEX remote_pushes_by_node ON remote_pushes (node, state)',
      'CREATE INDEX remote_pushes_by_batch ON remote_pushes (batch)',
      // A release's bytes, for the nodes that did not receive the file (and its offline
      // signature, when it has one).
      `CREATE TABLE release_files (sha256 TEXT PRIMARY KEY, name TEXT NOT NULL, doc TEXT NOT NULL, bytes ${blob} NOT NULL, presigned TEXT)`,
    ],
  },
  {
    version: 3,
    what: 'several nodes: which node runs each campaign, events one node hears for the others',
    statements: ({ serialKey }) => [
      // The node that runs the campaign (once per fleet); a live node takes over a dead one's.
      "ALTER TABLE campaigns ADD COLUMN node TEXT NOT NULL DEFAULT ''",
      // What a device told its node that another node acts on (a probation's outcome, for the
      // node running the campaign), kept for a node that takes a campaign over.
      `CREATE TABLE events (id ${serialKey}, node TEXT NOT NULL, kind TEXT NOT NULL, doc TEXT NOT NULL, at TEXT NOT NULL)`,
      // Campaign ids, handed out once per fleet as job ids are.
      "INSERT INTO counters (name, value) SELECT 'campaign', COALESCE(MAX(id), 0) FROM campaigns",
    ],
  },
  {
    version: 4,
    what: 'release files carry the release key\'s approval',
    statements: () => [
      // The release key's signature over the release (security/manifest.ts, signApproval), or
      // NULL for one signed offline (its own signed manifest is the proof).
      'ALTER TABLE release_files ADD COLUMN approval TEXT',
    ],
  },
  {
    version: 5,
    what: 'several nodes: commands for a device another node holds (tag, untag)',
    statements: ({ serialKey }) => [
      // Typed at one node for a device another holds: claimed by that node as pushes are, its
      // result in the same row; `batch` is the asking node's name for it.
      `CREATE TABLE remote_commands (id ${serialKey}, batch TEXT NOT NULL, node TEXT NOT NULL, device TEXT NOT NULL, command TEXT NOT NULL, `
        + 'doc TEXT NOT NULL, state TEXT NOT NULL, result TEXT, created_at TEXT NOT NULL)',
      'CREATE INDEX remote_commands_by_node ON remote_commands (node, state)',
      'CREATE INDEX remote_commands_by_batch ON remote_commands (batch)',
    ],
  },
  {
    version: 6,
    what: 'several nodes: files in parts (releases, the files jobs send)',
    statements: ({ blob }) => [
      // A file one node shares with the others, by content, in parts of 2 MiB written in order
      // (server/shared-files.ts): a reader starts before the writer is done, and no node holds a
      // whole file in memory.
      `CREATE TABLE file_parts (sha256 TEXT NOT NULL, part INTEGER NOT NULL, bytes ${blob} NOT NULL, PRIMARY KEY (sha256, part))`,
      // How many parts of file_parts hold the release's bytes; 0: they are in `bytes` (a release
      // written before version 6).
      'ALTER TABLE release_files ADD COLUMN parts INTEGER NOT NULL DEFAULT 0',
    ],
  },
  {
    version: 7,
    what: 'several nodes: jobs still to run found without reading every job',
    statements: () => [
      // Each node reads the jobs still to run every 2 s (Store.jobsChanged), and the files jobs
      // send stay while one still to run names them: both look jobs up by state.
      'CREATE INDEX jobs_by_state ON jobs (state)',
    ],
  },
  {
    version: 8,
    what: 'releases summarised as results arrive; push history kept for a time (--keep-history)',
    statements: ({ jsonText }) => {
      // Every entry has these fields; '' for one that somehow lacks one (the columns require them).
      const j = (key: string, table = 'history'): string => `COALESCE(${jsonText(`${table}.doc`, key)}, '')`;
      // How each result counts, as summaryRole says (server/history.ts).
      const installed = `${j('result')} IN (${INSTALLED_RESULTS.map((r) => `'${r}'`).join(', ')})`;
      const failed = `${j('result')} NOT IN (${[...INSTALLED_RESULTS, COMMITTED_RESULT].map((r) => `'${r}'`).join(', ')})`;
      return [
        // When the result happened (the entry's own `at`), to forget entries by age.
        "ALTER TABLE history ADD COLUMN at TEXT NOT NULL DEFAULT ''",
        `UPDATE history SET at = ${j('at')}`,
        'CREATE INDEX history_by_at ON history (at)',
        // One row per module pushed (by content), kept up to date by each history entry, so that
        // `releases` reads a row per release instead of the whole history, and stays right once
        // old entries are forgotten. The module and version are those of its first push.
        'CREATE TABLE release_stats (sha256 TEXT PRIMARY KEY, module TEXT NOT NULL, version TEXT NOT NULL, '
          + 'first_pushed TEXT NOT NULL, last_pushed TEXT NOT NULL, failures BIGINT NOT NULL)',
        // The devices that reported a release active after a push of it.
        'CREATE TABLE release_installs (sha256 TEXT NOT NULL, client TEXT NOT NULL, PRIMARY KEY (sha256, client))',
        'INSERT INTO release_stats (sha256, module, version, first_pushed, last_pushed, failures) '
          + `SELECT r.sha256, ${j('module', 'f')}, ${j('version', 'f')}, ${j('at', 'f')}, ${j('at', 'l')}, r.failures FROM `
          + `(SELECT ${j('sha256')} AS sha256, MIN(seq) AS first_seq, MAX(seq) AS last_seq, SUM(CASE WHEN ${failed} THEN 1 ELSE 0 END) AS failures `
          + `FROM history GROUP BY ${j('sha256')}) r JOIN history f ON f.seq = r.first_seq JOIN history l ON l.seq = r.last_seq`,
        `INSERT INTO release_installs (sha256, client) SELECT DISTINCT ${j('sha256')}, client FROM history WHERE ${installed}`,
      ];
    },
  },
];

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

/** Apply what is missing; the version the database had before (0: it was empty). */
export async function migrate(db: SqlEngine): Promise<number> {
  const create = { sql: 'CREATE TABLE IF NOT EXISTS nxt_schema (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)' };
  // Two PostgreSQL nodes creating it at the same moment: one of them fails, and finds it made.
  await db.batch([create]).catch(() => db.batch([create]));
  const had = await schemaVersion(db);
  if (had > SCHEMA_VERSION) {
    throw new NxtError('bad-state', `the database (${db.where}) has schema version ${had}; this nxt-server knows up to ${SCHEMA_VERSION}: run the newer nxt-server it was made by`);
  }
  for (const m of MIGRATIONS.filter((x) => x.version > had)) {
    try {
      await db.batch([
        ...m.statements(DIALECTS[db.kind]).map((sql) => ({ sql })),
        // Its primary key makes a second node applying the same migration fail here, undone.
        { sql: 'INSERT INTO nxt_schema (version, applied_at) VALUES (?, ?)', params: [m.version, new Date().toISOString()] },
      ]);
    } catch (err) {
      if (await schemaVersion(db) >= m.version) continue; // another node applied it meanwhile
      throw new NxtError((err as NxtError).code ?? 'storage', `cannot bring the database (${db.where}) to schema version ${m.version} (${m.what}): ${(err as Error).message}`, { cause: err });
    }
  }
  return had;
}

async function schemaVersion(db: SqlEngine): Promise<number> {
  const [row] = await db.query<{ v: number | string | null }>('SELECT MAX(version) AS v FROM nxt_schema');
  return Number(row?.v ?? 0);
}
