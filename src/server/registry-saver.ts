/**
 * The fleet registry in the store. Registrations are soft state (every client renews within
 * seconds), so the server saves them at most once a second, and only the clients that changed
 * since: a renewal that changed nothing but the time it was seen is written at most once a
 * minute per client (10,000 devices renewing every 10 s would otherwise be a thousand writes a
 * second for a time stamp). Operator decisions (tags) are saved at once.
 */
import type { Store } from '../store/store.js';
import type { SavedClient } from './registry.js';

/** A renewal's new last-seen time is saved once it is this much newer than the saved one. */
export const LAST_SEEN_SAVE_MS = 60_000;

export class RegistrySaver {
  /** Per client, what was saved: everything but the time (as JSON), and the time. */
  private readonly saved = new Map<string, { key: string; seenMs: number }>();
  private readonly dirty = new Set<string>();

  /** `node`: this node's name when several share the store ('' alone). */
  constructor(private readonly store: Store, restored: readonly SavedClient[], private readonly node = '') {
    for (const c of restored) this.saved.set(c.id, { key: keyOf(c), seenMs: Date.parse(c.lastSeenAt) });
  }

  /** `id` registered, renewed, changed or left: look at it at the next save. */
  touch(id: string): void { this.dirty.add(id); }

  get pending(): boolean { return this.dirty.size > 0; }

  /** Save one client now (the operator changed it): resolves once saved, or throws. */
  async saveNow(c: SavedClient): Promise<void> {
    await this.store.saveRegistrations([c], [], this.node);
    this.saved.set(c.id, { key: keyOf(c), seenMs: Date.parse(c.lastSeenAt) });
  }

  /**
   * Save what changed among the clients touched (`current` gives a client's record, or undefined
   * when it is gone). On failure nothing counts as saved and the clients stay touched.
   */
  async save(current: (id: string) => SavedClient | undefined): Promise<void> {
    const ids = [...this.dirty];
    this.dirty.clear();
    const changed: { c: SavedClient; key: string; seenMs: number }[] = [];
    const removed: string[] = [];
    for (const id of ids) {
      const c = current(id);
      const was = this.saved.get(id);
      if (!c) { if (was) removed.push(id); continue; }
      const key = keyOf(c);
      const seenMs = Date.parse(c.lastSeenAt);
      if (was && was.key === key && seenMs - was.seenMs < LAST_SEEN_SAVE_MS) continue;
      changed.push({ c, key, seenMs });
    }
    try {
      await this.store.saveRegistrations(changed.map((x) => x.c), removed, this.node);
    } catch (err) {
      for (const id of ids) this.dirty.add(id);
      throw err;
    }
    for (const x of changed) this.saved.set(x.c.id, { key: x.key, seenMs: x.seenMs });
    for (const id of removed) this.saved.delete(id);
  }
}

function keyOf(c: SavedClient): string {
  const { lastSeenAt: _, ...rest } = c;
  return JSON.stringify(rest);
}
