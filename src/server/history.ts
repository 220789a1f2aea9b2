/**
 * The record of every push result, kept in the server's state dir as JSON lines
 * (`history.jsonl`): appended and fsynced one entry at a time, so a server killed at any moment
 * loses at most the entry it was writing, and a torn last line is skipped when read.
 */
import { closeSync, existsSync, fstatSync, fsyncSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';

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
  private readonly path: string;

  constructor(stateDir: string) {
    this.path = join(stateDir, 'history.jsonl');
  }

  append(entry: HistoryEntry): void {
    const fd = openSync(this.path, 'a+', 0o600);
    try {
      // After a crash mid-write the file may end in a torn line: start a fresh one, or this
      // entry would be glued to it and lost too.
      const size = fstatSync(fd).size;
      const last = Buffer.alloc(1);
      const torn = size > 0 && readSync(fd, last, 0, 1, size - 1) === 1 && last[0] !== 0x0a;
      writeSync(fd, `${torn ? '\n' : ''}${JSON.stringify(entry)}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  /** Entries oldest first, optionally only for clients whose id starts with `clientPrefix`. */
  list(clientPrefix?: string): HistoryEntry[] {
    if (!existsSync(this.path)) return [];
    const entries: HistoryEntry[] = [];
    for (const line of readFileSync(this.path, 'utf8').split('\n')) {
      if (line.trim() === '') continue;
      try {
        const e = JSON.parse(line) as HistoryEntry;
        if (clientPrefix === undefined || e.client.startsWith(clientPrefix)) entries.push(e);
      } catch {
        // A line torn by a crash mid-write: skip it.
      }
    }
    return entries;
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
