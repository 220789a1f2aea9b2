/**
 * The client's store of verified modules, in its private data dir:
 *   incoming/<sha256>.part   a module arriving (resumable)
 *   modules/<sha256>.mjs     verified modules, named by content: never by a peer-supplied name
 *   active.json              which one is active (written atomically)
 *   deferred.json            a verified module waiting for `upgrade` (the defer policy)
 *
 * No check-then-reread: the sha256 is of the bytes as they arrived and were written by this
 * process, the file is made read-only before it is renamed into modules/, and the data dir must be
 * private (ours, not writable by group or others, not a symlink: checked here), so nobody but this
 * user (who could change the agent itself) can swap the bytes between the check and import().
 */
import { existsSync, lstatSync, readFileSync, statSync, unlinkSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { NxtError, errorMessage } from '../errors.js';
import type { ProductInfo } from '../protocol/messages.js';
import { formatReleaseVersion, parseReleaseVersion, type ReleaseVersion } from '../protocol/release-version.js';
import type { Manifest } from '../security/manifest.js';
import { ensureDir, readStateFile, writeFileAtomic } from '../util/atomic-file.js';
import { hashFile } from '../util/hash-file.js';
import { loadPlugin } from './plugin-shape.js';

/** The release version of the plugin every client ships with (libfunctional_1_0 is the same one). */
export const BUILTIN_RELEASE: ReleaseVersion = { major: 1, minor: 0, patch: 0 };

export interface ActiveModule {
  readonly version: ReleaseVersion;
  readonly product: ProductInfo;
  /** undefined for the built-in plugin. */
  readonly sha256?: string;
  readonly name: string;
}

interface ActiveRecord {
  name: string;
  version: string;
  sha256: string;
}

export class ModuleStore {
  readonly incomingDir: string;
  readonly modulesDir: string;
  private readonly activePath: string;
  private readonly deferredPath: string;

  constructor(readonly dataDir: string) {
    this.incomingDir = join(dataDir, 'incoming');
    this.modulesDir = join(dataDir, 'modules');
    this.activePath = join(dataDir, 'active.json');
    this.deferredPath = join(dataDir, 'deferred.json');
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

  /**
   * Import a verified module and, if it loads and has the right shape, make it the active one.
   * On any failure nothing changes and the error says why.
   */
  async activate(manifest: Manifest): Promise<ActiveModule> {
    const product = await loadPlugin(pathToFileURL(this.modulePath(manifest.sha256)).href);
    const record: ActiveRecord = { name: manifest.name, version: formatReleaseVersion(manifest.version), sha256: manifest.sha256 };
    writeFileAtomic(this.activePath, `${JSON.stringify(record)}\n`);
    try { this.setDeferred(undefined); } catch { /* a stale deferred record is checked (and dropped) at start */ }
    return { version: manifest.version, product, sha256: manifest.sha256, name: manifest.name };
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
   * The module to run at start: the recorded active one if it is intact and loads, else the
   * built-in plugin (with a warning saying why).
   */
  async loadActive(): Promise<{ active: ActiveModule; warning?: string }> {
    const builtin = await loadBuiltin();
    try {
      const record = readStateFile(this.activePath, (text) => JSON.parse(text) as ActiveRecord);
      if (!record) return { active: builtin };
      const path = this.modulePath(record.sha256);
      // Re-hash at start: a module corrupted or altered at rest is not run.
      const digest = await hashFile(path);
      if (digest !== record.sha256) throw new NxtError('hash-mismatch', `${path} no longer matches its recorded sha256`);
      const product = await loadPlugin(pathToFileURL(path).href);
      return { active: { version: parseReleaseVersion(record.version), product, sha256: record.sha256, name: record.name } };
    } catch (err) {
      return { active: builtin, warning: `recorded active module not usable (${errorMessage(err)}); running the built-in plugin` };
    }
  }
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

function checkHex(sha256: string): string {
  if (!/^[0-9a-f]{64}$/.test(sha256)) throw new NxtError('bad-manifest', 'sha256 is not 64 hex digits');
  return sha256;
}
