/**
 * The record of every push result and probation outcome, kept in the store: each entry saved on
 * its own as it happens, read back oldest first, forgotten after --keep-history days. Each entry
 * also updates its release's summary (`releases`), which outlives the entries.
 */
import type { Store } from '../store/store.js';

export interface HistoryEntry {
  /** ISO 8601 wall-clock time of the result. */
  readonly at: string;
  readonly client: string;
  readonly address: string;
  readonly module: string;
  readonly version: string;
  readonly sha256: string;
  /** 'ok' or the failure reason's code name. */
  readonly result: string;
  readonly message: string;
  readonly elapsedMs: number;
  readonly resent: number;
}

export class History {
  /** `store` undefined: kept in memory only (tests), the summaries beside the entries as the
   *  store keeps them. */
  private memory: HistoryEntry[] = [];
  private readonly tally = new ReleaseTally();

  constructor(private readonly store: Store | undefined) {}

  /** Resolves once saved. */
  async append(entry: HistoryEntry): Promise<void> {
    if (this.store) {
      await this.store.appendHistory(entry);
    } else {
      this.memory.push(entry);
      this.tally.add(entry);
    }
  }

  /** Entries oldest first, optionally only for clients whose id starts with `clientPrefix`, and
   *  only the `last` newest. */
  async list(clientPrefix?: string, last?: number): Promise<HistoryEntry[]> {
    if (this.store) return this.store.history(clientPrefix, last);
    const all = this.memory.filter((e) => clientPrefix === undefined || e.client.startsWith(clientPrefix));
    return last === undefined ? all : all.slice(-last);
  }

  /** One summary per module pushed (by content), in the order first pushed; kept as entries are
   *  appended, so it reads a row per release, not the history, and survives `forget`. */
  async releases(): Promise<ReleaseSummary[]> {
    return this.store ? this.store.releaseSummaries() : this.tally.list();
  }

  /** Forget at most `max` entries from before `before` (ISO 8601), oldest first; how many. */
  async forget(before: string, max: number): Promise<number> {
    if (this.store) return this.store.forgetHistory(before, max);
    const old = new Set(this.memory.filter((e) => e.at < before).sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0)).slice(0, max));
    this.memory = this.memory.filter((e) => !old.has(e));
    return old.size;
  }
}

/** How an entry counts in its release's summary. The results are those server.ts records: a
 *  push's (ok, "already installed", or why it failed) and a trial's (committed, rolled back). */
export function summaryRole(result: string): 'installed' | 'failed' | 'neither' {
  if (INSTALLED_RESULTS.includes(result)) return 'installed';
  return result === COMMITTED_RESULT ? 'neither' : 'failed';
}
/** The device runs the release after this push. */
export const INSTALLED_RESULTS: readonly string[] = ['ok', 'already installed'];
/** A trial kept: the push was counted already. */
export const COMMITTED_RESULT = 'committed';

export interface ReleaseSummary {
  readonly module: string;
  readonly version: string;
  readonly sha256: string;
  readonly firstPushed: string;
  readonly lastPushed: string;
  /** Devices that reported it active after a push of it (or already running it). */
  readonly installedOn: number;
  /** Pushes of it that failed, and trials of it rolled back. */
  readonly failures: number;
}

/** What was pushed, one line per distinct module (by content), in the order first pushed: the
 *  store keeps the same summary as entries arrive (Store.releaseSummaries); this is it in memory. */
export function summarizeReleases(entries: readonly HistoryEntry[]): ReleaseSummary[] {
  const tally = new ReleaseTally();
  for (const e of entries) tally.add(e);
  return tally.list();
}

/** Release summaries, one entry at a time (summaryRole says how each counts). */
class ReleaseTally {
  private readonly bySha = new Map<string, { s: Omit<ReleaseSummary, 'installedOn'>; installed: Set<string> }>();

  add(e: HistoryEntry): void {
    let r = this.bySha.get(e.sha256);
    if (!r) {
      r = { s: { module: e.module, version: e.version, sha256: e.sha256, firstPushed: e.at, lastPushed: e.at, failures: 0 }, installed: new Set() };
      this.bySha.set(e.sha256, r);
    }
    const role = summaryRole(e.result);
    r.s = { ...r.s, lastPushed: e.at, failures: r.s.failures + (role === 'failed' ? 1 : 0) };
    if (role === 'installed') r.installed.add(e.client);
  }

  list(): ReleaseSummary[] {
    return [...this.bySha.values()].map(({ s, installed }) => ({ ...s, installedOn: installed.size }));
  }
}
