/**
 * Every module pushed, kept so the server can push it again by itself (`rollout latest`,
 * automatic catch-up): `releases/<sha256>/<name>` in the state dir (with its `.nxt-signed` file
 * when it was signed offline), and the list in the store.
 */
import { constants, existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { copyFile, type FileHandle } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { compareReleaseVersions, formatReleaseVersion, type ReleaseVersion } from '../protocol/release-version.js';
import type { Compatibility } from '../security/compatibility.js';
import type { Store } from '../store/store.js';
import { syncDir, syncFile } from '../util/atomic-file.js';
import { NxtError } from '../errors.js';
import { encodePresigned, hashModule, PRESIGNED_SUFFIX, type Release } from './release.js';

export interface StoredRelease {
  readonly name: string;
  readonly version: ReleaseVersion;
  readonly sha256: string;
  readonly size: number;
  /** The stored copy (content-addressed). */
  readonly file: string;
  readonly presigned: boolean;
  readonly storedAt: string;
  /** What it is for (signed into every manifest made from it again). */
  readonly for?: Compatibility;
}

export class ReleaseStore {
  private readonly dir: string;
  private readonly releases: StoredRelease[] = [];

  /** `store` undefined: the list is kept in memory only (tests). */
  constructor(stateDir: string, private readonly store?: Store, saved: readonly StoredRelease[] = []) {
    this.dir = join(stateDir, 'releases');
    for (const r of saved) this.adopt(r);
  }

  /**
   * A release known from the store: its copy is looked for in this state dir's releases folder
   * (with several nodes, the record may come from another node, whose path is not ours; the
   * cluster fetches the bytes when they are not here: cluster.ts).
   */
  adopt(r: StoredRelease): StoredRelease {
    const known = this.find(r);
    if (known) return known;
    const local = { ...r, file: join(this.dir, r.sha256, basename(r.file)) };
    this.releases.push(local);
    return local;
  }

  static async open(stateDir: string, store: Store): Promise<ReleaseStore> {
    const releases = new ReleaseStore(stateDir, store, await store.releases());
    releases.removeStrays();
    return releases;
  }

  /** Copies no record names (a release removed while this node was down, or a copy whose record
   *  a crash kept from being written): deleted. */
  private removeStrays(): void {
    let names: string[];
    try { names = readdirSync(this.dir); } catch { return; }
    for (const name of names) {
      if (/^[0-9a-f]{64}$/.test(name) && !this.releases.some((r) => r.sha256 === name)) rmSync(join(this.dir, name), { recursive: true, force: true });
    }
  }

  list(): readonly StoredRelease[] { return this.releases; }

  /** The stored release with this content, version and purpose (one of each is kept). */
  find(r: Pick<StoredRelease, 'sha256' | 'version' | 'for'>): StoredRelease | undefined {
    return this.releases.find((x) => x.sha256 === r.sha256 && compareReleaseVersions(x.version, r.version) === 0 && sameFor(x.for, r.for));
  }

  /** With several nodes: take in the records others stored since this one started or last
   *  looked (their bytes come from the database when a push needs them: Cluster.copyOf); with
   *  `ready`, only those it accepts (whose bytes are in the database yet). */
  async refresh(ready?: (r: StoredRelease) => Promise<boolean>): Promise<void> {
    await this.settled();
    for (const r of (await this.store?.releases()) ?? []) {
      if (!this.find(r) && (!ready || await ready(r))) this.adopt(r);
    }
  }

  /** The releases here and, with several nodes, those only others stored since this one started
   *  (their records, from the store). */
  async everywhere(): Promise<StoredRelease[]> {
    await this.settled();
    const saved = (await this.store?.releases()) ?? [];
    return [...this.releases, ...saved.filter((r) => !this.find(r))];
  }

  /** The highest version stored. */
  latest(): StoredRelease | undefined {
    return this.releases.reduce<StoredRelease | undefined>((best, r) => (!best || compareReleaseVersions(r.version, best.version) > 0 ? r : best), undefined);
  }

  /**
   * Forget a stored release: its record (in the store too, unless `o.inStore` is false: another
   * node removed it there) and, when no other record has the same content, its copy here (unless
   * `o.keepCopy`: a push still reads it; the next start deletes it as a stray).
   */
  async remove(r: StoredRelease, o: { inStore?: boolean; keepCopy?: boolean } = {}): Promise<void> {
    if (o.inStore !== false) await this.store?.removeRelease(r);
    const known = this.find(r);
    if (known) this.releases.splice(this.releases.indexOf(known), 1);
    if (!o.keepCopy && !this.releases.some((x) => x.sha256 === r.sha256)) rmSync(join(this.dir, r.sha256), { recursive: true, force: true });
  }

  /** The copies asked for (add), one after another: two pushes of one release do not copy it
   *  into the same temporary file at once. */
  private adding: Promise<unknown> = Promise.resolve();

  /** Resolves once every copy asked for so far is kept (or has failed). */
  async settled(): Promise<void> {
    await this.adding.catch(() => undefined);
  }

  /**
   * Keep a copy of a release (once per content), checked against its manifest's SHA-256 before
   * it counts: a module rewritten after its push is not kept as the release. `source`: the module
   * as it was opened when its push began (Server keeps a release once its push is over, when the
   * operator may have deleted the file). The copy and its check run on libuv's pool and in the
   * hashing thread.
   */
  add(release: Release, wallNow: Date, source?: FileHandle): Promise<StoredRelease> {
    const adding = this.adding.catch(() => undefined).then(() => this.copy(release, wallNow, source));
    this.adding = adding;
    return adding;
  }

  private async copy(release: Release, wallNow: Date, source: FileHandle | undefined): Promise<StoredRelease> {
    const m = release.manifest;
    const known = this.find(m);
    if (known) return known;
    const dir = join(this.dir, m.sha256);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    // The name came from the operator's file or a signed manifest; still, only a plain file name.
    const file = join(dir, /^[\w.-]+$/.test(m.name) && !m.name.startsWith('.') ? m.name : 'module.mjs');
    if (!existsSync(file)) {
      // Under a temporary name first: a copy cut short (a crash, a full disk) is never taken
      // for the release.
      const tmp = `${file}.tmp-${process.pid}`;
      try {
        // From the file the push opened, deleted since or not (Linux names an open file in
        // /proc/self/fd); a copy-on-write clone where the filesystem makes one (Btrfs, XFS).
        const from = source !== undefined && existsSync(`/proc/self/fd/${source.fd}`) ? `/proc/self/fd/${source.fd}` : release.path;
        await copyFile(from, tmp, constants.COPYFILE_FICLONE);
        // On disk before it is recorded, and flushed on the pool: a record that outlives a power
        // cut must not name a copy that did not; and the record's own flush (the database's, on
        // the server's main thread) then has no module's worth of data to push out with it (a
        // 128 MiB copy made that flush ~65 ms: docs/benchmarks.md).
        await syncFile(tmp);
        const copied = statSync(tmp).size;
        if (copied !== m.size || (await hashModule(tmp, copied)).sha256 !== m.sha256) {
          throw new NxtError('module-changed', `${m.name} changed after it was signed: not kept for rollouts (push it again to keep it)`);
        }
      } catch (err) {
        rmSync(tmp, { force: true });
        throw err;
      }
      renameSync(tmp, file);
    }
    const again = this.find(m);
    if (again) return again; // added meanwhile by a concurrent push of the same release
    const presigned = release.presigned;
    if (presigned) {
      // Its signed manifest as the server checked it (the operator's file may be gone by now).
      writeFileSync(file + PRESIGNED_SUFFIX, encodePresigned(release.signedFor('', m.chunkSize)), { mode: 0o600 });
      await syncFile(file + PRESIGNED_SUFFIX);
    }
    await syncDir(dir);
    await syncDir(this.dir);
    const stored: StoredRelease = {
      name: m.name, version: m.version, sha256: m.sha256, size: m.size, file, presigned, storedAt: wallNow.toISOString(), ...(m.for === undefined ? {} : { for: m.for }),
    };
    await this.store?.addRelease(stored);
    const saved = this.find(m);
    if (saved) return saved; // saved meanwhile by a concurrent push of the same release
    this.releases.push(stored);
    return stored;
  }
}

export function describeStored(r: StoredRelease): string {
  return `${r.name} ${formatReleaseVersion(r.version)}`;
}

function sameFor(a: Compatibility | undefined, b: Compatibility | undefined): boolean {
  return JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
}
