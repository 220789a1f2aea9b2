/**
 * The record of every push result and probation outcome, kept in the store: each entry saved on
 * its own as it happens, read back oldest first.
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
  /** `store` undefined: kept in memory only (tests). */
  private readonly memory: HistoryEntry[] = [];

  constructor(private readonly store: Store | undefined) {}

  /** Resolves once saved. */
  async append(entry: HistoryEntry): Promise<void> {
    if (this.store) await this.store.appendHistory(entry);
    else this.memory.push(entry);
  }

  /** Entries oldest first, optionally only for clients whose id starts with `clientPrefix`, and
   *  only the `last` newest. */
  async list(clientPrefix?: string, last?: number): Promise<HistoryEntry[]> {
    if (this.store) return this.store.history(clientPrefix, last);
    const all = this.memory.filter((e) => clientPrefix === undefined || e.client.startsWith(clientPrefix));
    return last === undefined ? all : all.slice(-last);
  }
}

export interface ReleaseSummary {
  readonly module: string;
  readonly version: string;
  readonly sha256: string;
  readonly firstPushed: string;
  readonly lastPushed: string;
  /** Devices that report it active after a push of it. */
  readonly installedOn: number;
  readonly failures: number;
}

/** What was pushed, one line per distinct module (by content), in the order first pushed. */
export function summarizeReleases(entries: readonly HistoryEntry[]): ReleaseSummary[] {
  const bySha = new Map<string, { s: Omit<ReleaseSummary, 'installedOn'>; installed: Set<string> }>();
  for (const e of entries) {
    let r = bySha.get(e.sha256);
    if (!r) {
      r = { s: { module: e.module, version: e.version, sha256: e.sha256, firstPushed: e.at, lastPushed: e.at, failures: 0 }, installed: new Set() };
      bySha.set(e.sha256, r);
    }
    r.s = { ...r.s, lastPushed: e.at, failures: r.s.failures + (e.result === 'ok' ? 0 : 1) };
    if (e.result === 'ok') r.installed.add(e.client);
  }
  return [...bySha.values()].map(({ s, installed }) => ({ ...s, installedOn: installed.size }));
}
