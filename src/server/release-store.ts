/**
 * Every module pushed, kept so the server can push it again by itself (`rollout latest`,
 * automatic catch-up): `releases/<sha256>/<name>` in the state dir (with its `.nxt-signed` file
 * when it was signed offline), and the list in the store.
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { copyFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { compareReleaseVersions, formatReleaseVersion, type ReleaseVersion } from '../protocol/release-version.js';
import type { Compatibility } from '../security/compatibility.js';
import type { Store } from '../store/store.js';
import { syncDir, syncFile } from '../util/atomic-file.js';
import { PRESIGNED_SUFFIX, type Release } from './release.js';

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
    for (const r of (await this.store?.releases()) ?? []) {
      if (!this.find(r) && (!ready || await ready(r))) this.adopt(r);
    }
  }

  /** The releases here and, with several nodes, those only others stored since this one started
   *  (their records, from the store). */
  async everywhere(): Promise<StoredRelease[]> {
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

  /** Keep a copy of a release being pushed (once per content). The copy runs on libuv's thread
   *  pool, so a push need not wait for it before its first chunk. */
  async add(release: Release, wallNow: Date): Promise<StoredRelease> {
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
      await copyFile(release.path, tmp);
      // On disk before it is recorded, and flushed on the pool: a record that outlives a power
      // cut must not name a copy that did not; and the record's own flush (the database's, on
      // the server's main thread) then has no module's worth of data to push out with it. A
      // 128 MiB copy made that flush ~65 ms, during the push's first chunks: the device's ACKs
      // went unread past the retransmission timeout in nearly every push (docs/benchmarks.md).
      await syncFile(tmp);
      renameSync(tmp, file);
    }
    const again = this.find(m);
    if (again) return again; // added meanwhile by a concurrent push of the same release
    const presigned = existsSync(release.path + PRESIGNED_SUFFIX);
    if (presigned) {
      copyFileSync(release.path + PRESIGNED_SUFFIX, file + PRESIGNED_SUFFIX);
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
