/**
 * The client's store of verified modules, in its private data dir:
 *   incoming/<sha256>.part   a module arriving (resumable)
 *   modules/<sha256>.mjs     verified modules, named by content: never by a peer-supplied name
 *   active.json              which one runs, committed or on probation (see ActiveRecord)
 *   trying.json              the module being tried, while it is (see beginTrying)
 *   deferred.json            a verified module waiting for `upgrade` (the defer policy)
 *
 * No check-then-reread: the sha256 is of the bytes as they arrived and were written by this
 * process, the file is made read-only before it is renamed into modules/, and the data dir must be
 * private (ours, not writable by group or others, not a symlink: checked here), so nobody but this
 * user (who could change the agent itself) can swap the bytes between the check and the plugin
 * thread's read (module-loader.ts).
 */
import { existsSync, lstatSync, readdirSync, readFileSync, rmSync, statSync, unlinkSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { NxtError, errorMessage } from '../errors.js';
import type { ProductInfo } from '../protocol/messages.js';
import { formatReleaseVersion, parseReleaseVersion, type ReleaseVersion } from '../protocol/release-version.js';
import type { Manifest } from '../security/manifest.js';
import { describeFsError, ensureDir, readStateFile, writeFileAtomic } from '../util/atomic-file.js';
import { hashFile } from '../util/hash-file.js';
import { PluginHost, type HostLimits } from './plugin-host.js';
import { loadPlugin } from './plugin-shape.js';

/** The release version of the plugin every client ships with (libfunctional_1_0 is the same one). */
export const BUILTIN_RELEASE: ReleaseVersion = { major: 1, minor: 0, patch: 0 };

export interface ActiveModule {
  readonly version: ReleaseVersion;
  readonly product: ProductInfo;
  /** undefined for the built-in plugin. */
  readonly sha256?: string;
  readonly name: string;
  /** The thread the module runs in (undefined: the built-in plugin, which runs in the agent's). */
  readonly host?: PluginHost;
}

/** A module as active.json names it (sha256 undefined: the built-in plugin). */
export interface ModuleRef {
  readonly name: string;
  readonly version: string;
  readonly sha256?: string;
}

/** A module the agent stopped during: on probation (active.json said so) or on trial (trying.json). */
export interface Interrupted {
  readonly ref: ModuleRef;
  readonly during: 'probation' | 'trial';
}

/**
 * active.json. 'committed': `current` proved itself (or is the built-in plugin). 'trial':
 * `current` was activated and is on probation, `previous` is the committed one to go back to;
 * an agent that starts and finds a trial goes back to `previous` (the trial did not commit: the
 * agent crashed or was killed during it). `rejected`: modules rolled back here, not tried again.
 * The rollback floor is the committed version: it rises only at commit.
 */
interface ActiveRecord {
  state: 'committed' | 'trial';
  current: ModuleRef;
  previous?: ModuleRef;
  /** When the trial began (ISO), for people reading the file. */
  since?: string;
  rejected: string[];
}

export const BUILTIN_REF: ModuleRef = { name: 'built-in', version: formatReleaseVersion(BUILTIN_RELEASE) };
/** Rolled-back modules remembered (the oldest forgotten first). */
const MAX_REJECTED = 32;

export function refOf(m: { name: string; version: ReleaseVersion; sha256?: string }): ModuleRef {
  return m.sha256 === undefined ? { name: m.name, version: formatReleaseVersion(m.version) } : { name: m.name, version: formatReleaseVersion(m.version), sha256: m.sha256 };
}

export class ModuleStore {
  readonly incomingDir: string;
  readonly modulesDir: string;
  private readonly activePath: string;
  private readonly deferredPath: string;
  private readonly tryingPath: string;

  constructor(readonly dataDir: string) {
    this.incomingDir = join(dataDir, 'incoming');
    this.modulesDir = join(dataDir, 'modules');
    this.activePath = join(dataDir, 'active.json');
    this.deferredPath = join(dataDir, 'deferred.json');
    this.tryingPath = join(dataDir, 'trying.json');
    for (const dir of [dataDir, this.incomingDir, this.modulesDir]) {
      ensureDir(dir);
      // The data dir itself may be a link (/var/lib/nxt → /data/nxt); what is inside may not.
      assertPrivate(dir, dir !== dataDir);
    }
  }

  /** sha256 comes from a verified manifest and is 64 hex digits: safe as a file name. */
  partialPath(sha256: string): string { return join(this.incomingDir, `${checkHex(sha256)}.part`); }

  /** Bytes free for modules (for the user the device runs as), or undefined if the filesystem
   *  does not say. */
  freeBytes(): number | undefined {
    try {
      const fs = statfsSync(this.incomingDir);
      return fs.bavail * fs.bsize;
    } catch {
      return undefined;
    }
  }
  modulePath(sha256: string): string { return join(this.modulesDir, `${checkHex(sha256)}.mjs`); }

  /** What active.json says (the built-in plugin, committed, when there is none). */
  private record(): ActiveRecord {
    const saved = readStateFile(this.activePath, (text) => parseRecord(JSON.parse(text)));
    return saved ?? { state: 'committed', current: BUILTIN_REF, rejected: [] };
  }

  private saveRecord(record: ActiveRecord): void {
    writeFileAtomic(this.activePath, `${JSON.stringify(record)}\n`);
  }

  /** Whether this module was rolled back here before. */
  wasRolledBack(sha256: string): boolean {
    return this.record().rejected.includes(sha256);
  }

  /**
   * A module is about to be tried (loaded, shape checked, selfTest() run in a thread of its own):
   * said before it runs, until endTrying. Most faults end only the module's thread; one that
   * takes the agent's process with it (it filled the device's memory before the host's next
   * look, and the kernel killed the agent) would do so again at every push of it. An agent that
   * starts and finds this file died during that trial: the module is remembered as rolled back,
   * not tried again (loadActive). Not fsynced: it must outlive the process, not a power cut
   * (after which nothing is found, as before).
   */
  beginTrying(manifest: Manifest, wallNow: Date): void {
    try {
      writeFileSync(this.tryingPath, `${JSON.stringify({ ...refOf(manifest), since: wallNow.toISOString() })}\n`, { mode: 0o600 });
    } catch (err) {
      throw new NxtError('storage', `cannot write ${this.tryingPath}: ${describeFsError(err)}`, { cause: err });
    }
  }

  /** The trial is over (passed and recorded in active.json, or failed with the agent alive). */
  endTrying(): void {
    try { rmSync(this.tryingPath, { force: true }); } catch { /* left: the next start reads it as a trial the agent did not survive */ }
  }

  /** The module passed its trial and runs now: record it as on probation, with the committed
   *  one to go back to. Throws (nothing changed) when that cannot be saved. */
  beginTrial(manifest: Manifest, wallNow: Date): void {
    const r = this.record();
    const committed = r.state === 'trial' ? r.previous ?? BUILTIN_REF : r.current;
    this.saveRecord({ state: 'trial', current: refOf(manifest), previous: committed, since: wallNow.toISOString(), rejected: r.rejected });
    try { this.setDeferred(undefined); } catch { /* a stale deferred record is checked (and dropped) at start */ }
  }

  /** The module on probation proved itself: it is the committed one, and the floor rises. */
  commit(): void {
    const r = this.record();
    if (r.state !== 'trial') return;
    this.saveRecord({ state: 'committed', current: r.current, rejected: r.rejected });
  }

  /** The module trying.json names, if it is there (and then it is removed). A file cut short
   *  (the agent died as it wrote it) names none. */
  private takeTrying(): ModuleRef | undefined {
    let tried: ModuleRef | undefined;
    try {
      const v = JSON.parse(readFileSync(this.tryingPath, 'utf8')) as Partial<ModuleRef>;
      if (typeof v.name === 'string' && typeof v.version === 'string' && typeof v.sha256 === 'string' && /^[0-9a-f]{64}$/.test(v.sha256)) {
        tried = { name: v.name, version: v.version, sha256: v.sha256 };
      }
    } catch { /* none, or unreadable */ }
    this.endTrying();
    return tried;
  }

  /** Remember `sha256` as rolled back here (not tried again), whatever runs. */
  private reject(sha256: string): void {
    const r = this.record();
    if (!r.rejected.includes(sha256)) this.saveRecord({ ...r, rejected: withRejected(r.rejected, sha256) });
  }

  /** The module on probation failed: the previous one is committed again, and this one is
   *  remembered as rolled back. Returns what to run. */
  rollBack(): ModuleRef {
    const r = this.record();
    if (r.state !== 'trial') return r.current;
    const back = r.previous ?? BUILTIN_REF;
    const rejected = r.current.sha256 === undefined ? r.rejected : withRejected(r.rejected, r.current.sha256);
    this.saveRecord({ state: 'committed', current: back, rejected });
    return back;
  }

  /**
   * Start `ref` in a plugin host (the built-in plugin runs in the agent's thread), after checking
   * its file still has the recorded sha256. Used at start and to go back to a previous module.
   */
  async start(ref: ModuleRef, limits: Partial<HostLimits>): Promise<ActiveModule> {
    if (ref.sha256 === undefined) return loadBuiltin();
    const path = this.modulePath(ref.sha256);
    // Re-hash: a module corrupted or altered at rest is not run.
    const digest = await hashFile(path);
    if (digest !== ref.sha256) throw new NxtError('hash-mismatch', `${path} no longer matches its recorded sha256`);
    const host = await PluginHost.load(pathToFileURL(path).href, { selfTest: false, limits, sizeBytes: statSync(path).size });
    return { version: parseReleaseVersion(ref.version), product: host.product, sha256: ref.sha256, name: ref.name, host };
  }

  /**
   * Delete the module files nothing needs any more: every one but the module that runs, the
   * committed one its trial would go back to, the one kept for `upgrade`, the one being tried,
   * and those named in `alsoKeep`: what the agent has in hand (a module verified and in place
   * whose trial or wait for `upgrade` is not recorded yet; one kept for `upgrade` in memory only,
   * deferred.json not written). Without this a device kept every module it ever received: a
   * 128 MiB module a week fills a small device's flash within a year. The agent prunes as soon
   * as a module is active, not minutes later: a trial replaced by a newer module goes at once,
   * and the page cache's memory its file held is what the next module is written into (on the
   * benchmark's VMs, memory never touched before cost ~10 times as much to write into:
   * docs/benchmarks.md, eighteenth session). A file that cannot be deleted now is left for the
   * next time. Returns the files deleted.
   */
  prune(alsoKeep: readonly (string | undefined)[] = []): string[] {
    let names: string[];
    let needed: Set<string | undefined>;
    try {
      const r = this.record();
      needed = new Set([r.current.sha256, r.state === 'trial' ? r.previous?.sha256 : undefined, shaNamedIn(this.deferredPath), shaNamedIn(this.tryingPath), ...alsoKeep]);
      names = readdirSync(this.modulesDir);
    } catch {
      // What is needed is not known for sure: nothing is deleted.
      return [];
    }
    const deleted: string[] = [];
    for (const name of names) {
      const m = /^([0-9a-f]{64})\.mjs$/.exec(name);
      if (!m || needed.has(m[1])) continue;
      const path = join(this.modulesDir, name);
      try {
        unlinkSync(path);
        deleted.push(path);
      } catch { /* gone already, or not deletable now: the next look */ }
    }
    return deleted;
  }

  /**
   * Make room for the module `sha256` from the downloads other offers superseded: their partial
   * files in incoming/ are kept for a resume, but when a newer module does not fit beside them
   * they go (before, the newer one was refused for want of the space they held). Returns the
   * files deleted and the bytes they held; one that cannot be deleted is left.
   */
  dropOtherPartials(sha256: string): { files: number; bytes: number } {
    const keep = `${checkHex(sha256)}.part`;
    let names: string[];
    try {
      names = readdirSync(this.incomingDir);
    } catch {
      return { files: 0, bytes: 0 };
    }
    let files = 0;
    let bytes = 0;
    for (const name of names) {
      if (name === keep || !/^[0-9a-f]{64}\.part$/.test(name)) continue;
      const path = join(this.incomingDir, name);
      try {
        const size = lstatSync(path).size;
        unlinkSync(path);
        files++;
        bytes += size;
      } catch { /* gone already, or not deletable */ }
    }
    return { files, bytes };
  }

  /** Remember (or forget) the verified module waiting for `upgrade`, across restarts. */
  setDeferred(manifest: Manifest | undefined): void {
    if (manifest) writeFileAtomic(this.deferredPath, `${JSON.stringify(manifest)}\n`);
    else if (existsSync(this.deferredPath)) unlinkSync(this.deferredPath);
  }

  /** The module kept for `upgrade` before a restart, if its file is still intact. */
  async loadDeferred(): Promise<Manifest | undefined> {
    if (!existsSync(this.deferredPath)) return undefined;
    try {
      const manifest = JSON.parse(readFileSync(this.deferredPath, 'utf8')) as Manifest;
      if (typeof manifest.version?.major !== 'number') throw new Error('not a manifest');
      if (await hashFile(this.modulePath(manifest.sha256)) !== manifest.sha256) throw new Error('changed on disk');
      return manifest;
    } catch {
      this.setDeferred(undefined);
      return undefined;
    }
  }

  /**
   * The module to run at start: the committed one if it is intact and loads, else the built-in
   * plugin (with a warning saying why). A trial found here did not commit (the agent stopped
   * during its probation): the previous module runs. A module whose trial it did not survive
   * (trying.json) is remembered as rolled back. `interrupted` names each, to be reported to the
   * server.
   */
  async loadActive(limits: Partial<HostLimits> = {}): Promise<{ active: ActiveModule; warning?: string; interrupted: Interrupted[] }> {
    let ref: ModuleRef;
    const interrupted: Interrupted[] = [];
    const warnings: string[] = [];
    try {
      const r = this.record();
      const tried = this.takeTrying();
      if (r.state === 'trial') {
        interrupted.push({ ref: r.current, during: 'probation' });
        ref = this.rollBack();
        warnings.push(`${r.current.name} ${r.current.version} was on probation when the agent stopped: it is rolled back, ${ref.name} ${ref.version} runs`);
      } else {
        ref = r.current;
      }
      // The trial of a module the agent did not survive (never the one that runs now).
      if (tried?.sha256 !== undefined && tried.sha256 !== ref.sha256 && tried.sha256 !== r.current.sha256) {
        interrupted.push({ ref: tried, during: 'trial' });
        try {
          this.reject(tried.sha256);
          warnings.push(`${tried.name} ${tried.version} was being tried when the agent stopped (it may have taken the agent down): it is not tried again`);
        } catch (err) {
          // What ran before still runs; only the memory of this module is lost.
          warnings.push(`${tried.name} ${tried.version} was being tried when the agent stopped, and cannot be remembered as rolled back (${errorMessage(err)})`);
        }
      }
    } catch (err) {
      return { active: await loadBuiltin(), warning: `recorded active module not usable (${errorMessage(err)}); running the built-in plugin`, interrupted };
    }
    const warning = warnings.length === 0 ? undefined : warnings.join('; ');
    try {
      return { active: await this.start(ref, limits), warning, interrupted };
    } catch (err) {
      const why = `recorded active module not usable (${errorMessage(err)}); running the built-in plugin`;
      return { active: await loadBuiltin(), warning: warning ? `${warning}; ${why}` : why, interrupted };
    }
  }
}

/** The sha256 a state file (deferred.json, trying.json) names, if the file is there. Throws if it
 *  cannot be read or names none: then what is needed is not known, and prune deletes nothing. */
function shaNamedIn(path: string): string | undefined {
  if (!existsSync(path)) return undefined;
  const v = JSON.parse(readFileSync(path, 'utf8')) as { sha256?: unknown };
  if (typeof v.sha256 !== 'string') throw new Error(`${path} names no module`);
  return v.sha256;
}

/** `rejected` with `sha256` as its newest entry (the oldest forgotten beyond MAX_REJECTED). */
function withRejected(rejected: readonly string[], sha256: string): string[] {
  return [...rejected.filter((x) => x !== sha256), sha256].slice(-MAX_REJECTED);
}

async function loadBuiltin(): Promise<ActiveModule> {
  const product = await loadPlugin(new URL('./default-plugin.js', import.meta.url).href);
  return { version: BUILTIN_RELEASE, product, name: 'built-in' };
}

function assertPrivate(dir: string, noLink: boolean): void {
  const st = noLink ? lstatSync(dir) : statSync(dir);
  const uid = process.getuid?.();
  if (st.isSymbolicLink() || !st.isDirectory()) throw new NxtError('unsafe-dir', `${dir} must be a directory, not a link`);
  if ((uid !== undefined && st.uid !== uid) || (st.mode & 0o022) !== 0) {
    throw new NxtError('unsafe-dir', `${dir} must belong to this user and not be writable by others (modules are imported from it): chmod 700 ${dir}`);
  }
}

/** active.json as written now, or by an agent before trials (then: { name, version, sha256 }). */
function parseRecord(value: unknown): ActiveRecord {
  const v = value as Record<string, unknown>;
  const isRef = (x: unknown): x is ModuleRef => {
    const o = x as Record<string, unknown> | null;
    return typeof o === 'object' && o !== null && typeof o.name === 'string' && typeof o.version === 'string'
      && (o.sha256 === undefined || (typeof o.sha256 === 'string' && /^[0-9a-f]{64}$/.test(o.sha256)));
  };
  if (isRef(v) && typeof v.sha256 === 'string' && v.state === undefined) return { state: 'committed', current: v, rejected: [] };
  if ((v.state !== 'committed' && v.state !== 'trial') || !isRef(v.current) || (v.previous !== undefined && !isRef(v.previous))) {
    throw new Error('not an active-module record');
  }
  const rejected = Array.isArray(v.rejected) ? v.rejected.filter((x): x is string => typeof x === 'string') : [];
  return { state: v.state, current: v.current, previous: v.previous as ModuleRef | undefined, since: typeof v.since === 'string' ? v.since : undefined, rejected };
}

function checkHex(sha256: string): string {
  if (!/^[0-9a-f]{64}$/.test(sha256)) throw new NxtError('bad-manifest', 'sha256 is not 64 hex digits');
  return sha256;
}
